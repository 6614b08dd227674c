"""Prometheus metrics of one app: what the ledger rows say, as counters and histograms.

Each `Metrics` owns its `CollectorRegistry` (never the process-global one), so tests and
several apps in one process never share counters. Per-answer numbers come from the same
`LedgerRow` the ledger stores (`observe_row`, once per row), so `/metrics` and the reports
cannot disagree about what a request cost. Sizes that are cheaper to read than to track
(cache entries, index vectors, budget use) are read from callables at scrape time. Savings
can be negative (routing to a stronger model than the baseline, prompt-cache writes never
read), but a Prometheus counter may only grow: the positive part of each source goes to
`promptcache_saved_usd_total`, the negative part to `promptcache_overspend_usd_total`, and
the net saving is the difference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from service.ledger import LedgerRow

logger = logging.getLogger(__name__)

# The classic text format, which `generate_latest` writes and every Prometheus reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

SAVING_SOURCES: tuple[str, ...] = ("exact", "semantic", "routing", "prompt_cache", "batch")

# An exact hit is a hash lookup (well under a millisecond); a semantic hit embeds and searches
# (a few ms on CPU, up to ~100 ms under load); a whole request that went upstream takes seconds.
LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
REQUEST_BUCKETS = (
    *(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
UPSTREAM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

_MICROS_PER_USD = 1_000_000


class CacheSize(Protocol):
    """What the scrape reads about the cache; `SemanticCache.stats()` returns one."""

    @property
    def entries(self) -> int: ...

    @property
    def index_entries(self) -> int: ...

    @property
    def bytes(self) -> int: ...


# (budget name, spent / limit, USD held by requests in flight) for each budget.
BudgetReadings = Callable[[], Iterable[tuple[str, float, float]]]


def _no_budgets() -> Iterable[tuple[str, float, float]]:
    return ()


class _ScrapeTimeCollector:
    """Gauges read when Prometheus scrapes; a failing source is logged and left out."""

    def __init__(self, budgets: BudgetReadings, cache_size: Callable[[], CacheSize] | None):
        self._budgets = budgets
        self._cache_size = cache_size

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering does not call the sources.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        budgets, held, entries, vectors, size = self._families()
        try:
            for name, fraction, held_usd in self._budgets():
                budgets.add_metric([name], float(fraction))
                held.add_metric([name], float(held_usd))
        except Exception:  # a broken budget source must not break the whole scrape
            logger.exception("metrics: reading budget fractions failed")
        yield from (budgets, held)
        if self._cache_size is None:
            return
        try:
            stats = self._cache_size()
        except Exception:
            logger.exception("metrics: reading the cache size failed")
            return
        entries.add_metric([], float(stats.entries))
        vectors.add_metric([], float(stats.index_entries))
        size.add_metric([], float(stats.bytes))
        yield from (entries, vectors, size)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "promptcache_budget_used_ratio",
                "Spent / limit of each budget in its current period (1 = exhausted).",
                labels=["budget"],
            ),
            GaugeMetricFamily(
                "promptcache_budget_held_usd",
                "Cost bounds held against each budget by misses and batches in flight.",
                labels=["budget"],
            ),
            GaugeMetricFamily("promptcache_cache_entries", "Entries in the cache store."),
            GaugeMetricFamily("promptcache_index_vectors", "Vectors in the semantic index."),
            GaugeMetricFamily("promptcache_cache_bytes", "Bytes of stored cache entries."),
        )


class Metrics:
    """The app's metrics. Thread-safe: the proxy, the batcher thread and scrapes share it.

    `budgets` returns `(budget name, used fraction, USD held in flight)` triples and
    `cache_size` the cache's sizes; both are called at scrape time, from the thread that
    renders.
    """

    def __init__(
        self,
        *,
        budgets: BudgetReadings = _no_budgets,
        cache_size: Callable[[], CacheSize] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self._requests = Counter(
            "promptcache_requests",
            "Answers by ledger kind, tenant and the model that answered.",
            ["kind", "tenant", "model"],
            registry=reg,
        )
        self._request_seconds = Histogram(
            "promptcache_request_duration_seconds",
            "Whole-request latency by ledger kind (a miss includes its upstream call).",
            ["kind"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self._lookup_seconds = Histogram(
            "promptcache_lookup_duration_seconds",
            "Cache lookup latency (key, embed, search, policy) by result.",
            ["result"],
            buckets=LOOKUP_BUCKETS,
            registry=reg,
        )
        self._upstream_seconds = Histogram(
            "promptcache_upstream_duration_seconds",
            "Latency of calls to the Anthropic API, until the whole answer arrived.",
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self._cost = Counter(
            "promptcache_cost_usd",
            "What promptcache paid upstream, in USD.",
            ["tenant", "model"],
            registry=reg,
        )
        self._baseline = Counter(
            "promptcache_baseline_usd",
            "What the same answers would have cost without promptcache, in USD.",
            ["tenant", "model"],
            registry=reg,
        )
        self._saved = Counter(
            "promptcache_saved_usd",
            "Savings against the baseline by source, in USD (positive parts only).",
            ["tenant", "source"],
            registry=reg,
        )
        self._overspend = Counter(
            "promptcache_overspend_usd",
            "Negative savings by source, in USD: net saving = saved - overspend.",
            ["tenant", "source"],
            registry=reg,
        )
        self._unpriced = Counter(
            "promptcache_unpriced_requests",
            "Answers from a model missing in the price table (no cost, no saving claimed).",
            ["model"],
            registry=reg,
        )
        self._batch_sizes = Histogram(
            "promptcache_embedding_batch_size",
            "Texts per embedding call of the micro-batcher.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        reg.register(_ScrapeTimeCollector(budgets, cache_size))

    def observe_row(self, row: LedgerRow) -> None:
        """Count one ledger row: the request, its latency, cost, baseline and savings."""
        model = row.model_used
        self._requests.labels(row.kind, row.tenant, model).inc()
        self._request_seconds.labels(row.kind).observe(row.latency_ms / 1000)
        self._cost.labels(row.tenant, model).inc(row.cost_micros / _MICROS_PER_USD)
        self._baseline.labels(row.tenant, model).inc(row.baseline_micros / _MICROS_PER_USD)
        for source in SAVING_SOURCES:
            micros: int = getattr(row, f"saved_{source}_micros")
            if micros > 0:
                self._saved.labels(row.tenant, source).inc(micros / _MICROS_PER_USD)
            elif micros < 0:
                self._overspend.labels(row.tenant, source).inc(-micros / _MICROS_PER_USD)
        if not row.priced:
            self._unpriced.labels(model).inc()

    def observe_lookup(self, result: str, seconds: float) -> None:
        """One cache lookup; `result` is `hit-exact`, `hit-semantic`, `miss` or `bypass`."""
        self._lookup_seconds.labels(result).observe(seconds)

    def observe_upstream(self, seconds: float) -> None:
        """One upstream call, successful or not, until its last byte."""
        self._upstream_seconds.observe(seconds)

    def observe_embedding_batch(self, size: int) -> None:
        """One call of the embedding model by the micro-batcher with `size` texts."""
        self._batch_sizes.observe(size)

    def render(self) -> bytes:
        """The Prometheus text format (`CONTENT_TYPE`); calls the scrape-time sources."""
        return generate_latest(self.registry)
