"""The values a request carries through the proxy, shared by the proxy, its books and the
batch service: its controls, its prepared form, what the cost levers did, and its answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.invalidations import Began
from service.keys import CacheKeys
from service.ledger import Kind
from service.policy import LookupOptions
from service.pricing import Charge


@dataclass(frozen=True)
class Controls:
    """Per-request cache controls, from headers (DESIGN §6)."""

    no_cache: bool = False  # skip lookup, store the answer
    no_store: bool = False  # do not store the answer
    max_age: float | None = None
    ttl: float | None = None
    namespace: str | None = None
    min_similarity: float | None = None
    feature: str | None = None
    task: str | None = None
    semantic_opt_in: bool = False  # allow semantic hits above the temperature ceiling
    context_budget: int | None = None  # x-promptcache-context-budget: keep the newest turns
    forward_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    request: dict[str, Any]
    keys: CacheKeys
    options: LookupOptions
    model_requested: str
    baseline_model: str
    stream: bool
    controls: Controls
    tenant: str
    request_id: str
    started: float
    # Taken before the lookup: an invalidation after it keeps the answer out of the cache.
    began: Began | None = None


@dataclass(frozen=True)
class Levers:
    """What the cost levers did to one upstream request (estimated tokens)."""

    context_tokens_removed: int = 0
    context_trimmed: bool = False
    whitespace_tokens_saved: int = 0
    cache_breakpoints: int = 0


@dataclass(frozen=True)
class Answer:
    kind: Kind
    message: dict[str, Any]
    model_used: str
    charge: Charge
    reason: str
    similarity: float | None = None
    entry_id: int | None = None
