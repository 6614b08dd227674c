"""What the app's handlers share, built once per app in its lifespan (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from service.api.auth import KeyRing
from service.cache import SemanticCache
from service.config import Settings
from service.policy import LookupOptions
from service.proxy import Proxy


@dataclass
class AppState:
    settings: Settings
    cache: SemanticCache
    keyring: KeyRing
    proxy: Proxy

    def lookup_options(
        self, *, min_similarity: float | None = None, max_age: float | None = None
    ) -> LookupOptions:
        return self.cache.options(min_similarity=min_similarity, max_age=max_age)
