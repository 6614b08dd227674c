"""The ledger's values: one answer's row, the sums over many, and a stored alert.

What the money fields mean, and how rows are written and summed, is `service.ledger`; these
are the plain records it reads and writes, shared by reports, budgets and the dashboard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Literal, get_args

Kind = Literal["hit-exact", "hit-semantic", "miss", "bypass", "error", "batch"]
KINDS: tuple[Kind, ...] = get_args(Kind)
GroupBy = Literal[
    "tenant", "namespace", "feature", "kind", "model_requested", "model_used", "route_tier"
]
GROUP_COLUMNS: tuple[GroupBy, ...] = get_args(GroupBy)

_SAVING_SOURCES = ("exact", "semantic", "routing", "prompt_cache", "batch")
_NEVER_NEGATIVE = (
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "cost_micros",
    "baseline_micros",
    "saved_exact_micros",
    "saved_semantic_micros",
    "saved_batch_micros",
)


@dataclass(frozen=True)
class MaxTokensOpportunity:
    task: str
    table_value: int
    requests: int
    largest_max_tokens: int


@dataclass(frozen=True)
class LedgerRow:
    """One answer's ledger entry; `service.ledger`'s docstring says what the money fields mean.

    `feature` is the caller's cost-attribution label (`x-promptcache-feature`), `route_reasons`
    the router's reasons as text, `similarity` the cosine similarity of a semantic hit,
    `entry_id` the cache entry served or stored, `status` the HTTP status returned.
    """

    ts: float
    request_id: str
    tenant: str
    namespace: str
    feature: str | None
    kind: Kind
    model_requested: str
    model_used: str
    route_tier: str | None
    route_reasons: str | None
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cost_micros: int
    baseline_micros: int
    saved_exact_micros: int
    saved_semantic_micros: int
    saved_routing_micros: int
    saved_prompt_cache_micros: int
    saved_batch_micros: int
    priced: bool
    similarity: float | None
    latency_ms: float
    entry_id: int | None
    status: int
    error: str | None = None
    price_version: str | None = None
    context_tokens_removed: int = 0
    whitespace_tokens_saved: int = 0
    cache_breakpoints: int = 0
    task: str | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ledger kind {self.kind!r}; expected one of {KINDS}")
        if not math.isfinite(self.ts):
            raise ValueError(f"ts must be finite, got {self.ts}")
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"latency_ms must be finite and >= 0, got {self.latency_ms}")
        for name in _NEVER_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.baseline_micros - self.cost_micros != self.saved_micros:
            raise ValueError(
                f"ledger row does not balance: baseline {self.baseline_micros} - cost "
                f"{self.cost_micros} != sum of savings {self.saved_micros}"
            )

    @property
    def saved_micros(self) -> int:
        return (
            self.saved_exact_micros
            + self.saved_semantic_micros
            + self.saved_routing_micros
            + self.saved_prompt_cache_micros
            + self.saved_batch_micros
        )


@dataclass(frozen=True)
class Totals:
    """Sums over a window (and one group, when grouped). Money in micros, latency in ms.

    `hit_rate` = hits / (hits + misses), where misses are `miss` and `batch` rows (both went
    upstream after the cache had no answer); bypasses and errors are not counted. None when
    there was neither. Latency percentiles are nearest-rank over all rows; None when empty.
    `interrupted` counts the rows of misses the service was cut off from (it stopped while
    they were upstream), whose cost is their upper bound, not what upstream billed:
    `interrupted_micros` of `cost_micros` is such an estimate. `stated_micros` of the saving
    was made by hits on entries no ledger row paid for (stored through the cache API): it is
    priced from the usage their caller stated, and the ledger cannot prove it.
    """

    group: tuple[str | None, ...]
    requests: int
    hits_exact: int
    hits_semantic: int
    misses: int
    bypasses: int
    errors: int
    batches: int
    cost_micros: int
    baseline_micros: int
    saved_exact_micros: int
    saved_semantic_micros: int
    saved_routing_micros: int
    saved_prompt_cache_micros: int
    saved_batch_micros: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    unpriced: int
    interrupted: int
    interrupted_micros: int
    stated_micros: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    unpriced_models: tuple[str, ...] = ()

    @property
    def saved_micros(self) -> int:
        return (
            self.saved_exact_micros
            + self.saved_semantic_micros
            + self.saved_routing_micros
            + self.saved_prompt_cache_micros
            + self.saved_batch_micros
        )

    @property
    def hits(self) -> int:
        return self.hits_exact + self.hits_semantic

    @property
    def hit_rate(self) -> float | None:
        looked_up = self.hits + self.misses + self.batches
        return None if looked_up == 0 else self.hits / looked_up

    @property
    def by_kind(self) -> dict[str, int]:
        return {
            "hit-exact": self.hits_exact,
            "hit-semantic": self.hits_semantic,
            "miss": self.misses,
            "bypass": self.bypasses,
            "error": self.errors,
            "batch": self.batches,
        }

    @property
    def saved_by_source(self) -> dict[str, int]:
        return {source: getattr(self, f"saved_{source}_micros") for source in _SAVING_SOURCES}


@dataclass(frozen=True)
class DayTotals:
    """One local day's totals: `[start_ts, end_ts)` is midnight to midnight in `tz`."""

    day: date
    tz: str
    start_ts: float
    end_ts: float
    totals: Totals


@dataclass(frozen=True)
class Spend:
    """Money paid upstream in a window, and the newest ledger id the sum had seen.

    `through_id` lets a cache of the sum skip rows it already counted (`BudgetBook.on_row`).
    """

    micros: int
    through_id: int


@dataclass(frozen=True)
class Activity:
    """The few sums anomaly detection needs, without the cost of latency percentiles.

    `looked_up` counts hits, misses and batch rows: the denominator of the hit rate.
    """

    requests: int
    looked_up: int
    hits: int
    cost_micros: int

    @property
    def hit_rate(self) -> float | None:
        return None if self.looked_up == 0 else self.hits / self.looked_up


@dataclass(frozen=True)
class AlertRecord:
    """One stored alert (see `service.alerts` for kinds and the webhook payload).

    `subject` tells alerts of one kind, scope and period apart (a budget's name and
    threshold); `created_at`/`delivered_at` are UTC epoch seconds, `delivered_at` None until
    every webhook accepted it.
    """

    id: int
    kind: str
    scope: str
    period: str
    subject: str
    message: str
    value: float
    threshold: float
    created_at: float
    delivered_at: float | None
    delivery_attempts: int
    delivery_error: str | None
