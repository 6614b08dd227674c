"""What the app's handlers share, built once per app in its lifespan (no globals)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.alerts import AlertCenter
from service.anomaly import AnomalyWatch
from service.api.auth import KeyRing
from service.budgets import BudgetBook
from service.cache import SemanticCache
from service.config import Settings
from service.ledger import Ledger
from service.metrics import Metrics
from service.policy import LookupOptions
from service.proxy import Proxy
from service.router import TASK_HINTS


@dataclass
class AppState:
    settings: Settings
    cache: SemanticCache
    keyring: KeyRing
    proxy: Proxy
    metrics: Metrics
    ledger: Ledger
    alerts: AlertCenter
    budgets: BudgetBook
    anomaly: AnomalyWatch
    clock: Callable[[], float] = time.time
    budget_statuses: Callable[[], Sequence[Any]] = field(default=lambda: ())
    recent_alerts: Callable[[], Sequence[Mapping[str, Any]]] = field(default=lambda: ())

    @functools.cached_property
    def known_tasks(self) -> frozenset[str]:
        """`x-promptcache-task` values: the router's hints and every task with a default
        `max_tokens` (`[proxy] task_max_tokens` may add tasks of a team's own)."""
        return TASK_HINTS | frozenset(self.settings.proxy.task_max_tokens)

    def lookup_options(
        self, *, min_similarity: float | None = None, max_age: float | None = None
    ) -> LookupOptions:
        return self.cache.options(min_similarity=min_similarity, max_age=max_age)
