"""`service.metrics` and `GET /metrics`: the text format parses, and its numbers follow the rows.

The registry is per `Metrics` object, so every test builds its own; the HTTP tests mount the
ops router on a tiny app whose state carries only what the router reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from service.api.auth import KeyRing
from service.api.errors import install_error_handlers
from service.api.ops_routes import router
from service.api.state import AppState
from service.config import Settings
from service.ledger import Ledger, LedgerRow
from service.metrics import CONTENT_TYPE, Metrics
from tests.conftest import make_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SOURCES = ("exact", "semantic", "routing", "prompt_cache", "batch")
ADMIN_KEY = "admin-key-123456"


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(metrics: Metrics) -> Samples:
    return samples(metrics.render().decode())


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def make_row(
    kind: Any = "miss",
    *,
    tenant: str = "acme",
    model: str = "claude-haiku-4-5",
    feature: str | None = "search",
    cost: int = 0,
    latency_ms: float = 12.0,
    priced: bool = True,
    ts: float = 1_800_000_000.0,
    **saved: int,
) -> LedgerRow:
    """A balanced row: baseline = cost + the savings given as `exact=...`, `routing=...`."""
    savings = {f"saved_{source}_micros": saved.get(source, 0) for source in SOURCES}
    return LedgerRow(
        ts=ts,
        request_id="req",
        tenant=tenant,
        namespace="default",
        feature=feature,
        kind=kind,
        model_requested="auto",
        model_used=model,
        route_tier=None,
        route_reasons=None,
        input_tokens=10,
        output_tokens=5,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_micros=cost,
        baseline_micros=cost + sum(savings.values()),
        priced=priced,
        similarity=None,
        latency_ms=latency_ms,
        entry_id=None,
        status=200,
        **savings,
    )


def test_a_fresh_registry_renders_every_family_and_parses() -> None:
    text = Metrics().render().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "promptcache_requests",
        "promptcache_request_duration_seconds",
        "promptcache_lookup_duration_seconds",
        "promptcache_upstream_duration_seconds",
        "promptcache_cost_usd",
        "promptcache_baseline_usd",
        "promptcache_saved_usd",
        "promptcache_overspend_usd",
        "promptcache_embedding_batch_size",
    } <= names
    # Nothing from the process-global registry (python_gc_*, process_*) leaks in.
    assert not any(name.startswith(("python_", "process_")) for name in names)


def test_rows_move_requests_cost_and_savings() -> None:
    metrics = Metrics()
    metrics.observe_row(make_row("miss", cost=350, routing=700, latency_ms=900.0))
    metrics.observe_row(make_row("hit-exact", exact=1_050, latency_ms=0.3))
    metrics.observe_row(make_row("hit-semantic", tenant="globex", semantic=2_000, latency_ms=8))
    # Routed to a stronger model than the baseline: a negative routing saving.
    metrics.observe_row(make_row("miss", model="claude-opus-4-6", cost=5_000, routing=-4_000))
    found = scrape(metrics)

    def requests(kind: str, tenant: str, model: str) -> float:
        return value(found, "promptcache_requests_total", kind=kind, tenant=tenant, model=model)

    assert requests("miss", "acme", "claude-haiku-4-5") == 1
    assert requests("hit-exact", "acme", "claude-haiku-4-5") == 1
    assert requests("hit-semantic", "globex", "claude-haiku-4-5") == 1
    assert requests("miss", "acme", "claude-opus-4-6") == 1
    cost = value(found, "promptcache_cost_usd_total", tenant="acme", model="claude-haiku-4-5")
    assert cost == pytest.approx(350e-6)
    assert value(
        found, "promptcache_baseline_usd_total", tenant="acme", model="claude-haiku-4-5"
    ) == pytest.approx(2_100e-6)
    assert value(
        found, "promptcache_saved_usd_total", tenant="acme", source="exact"
    ) == pytest.approx(1_050e-6)
    assert value(
        found, "promptcache_saved_usd_total", tenant="acme", source="routing"
    ) == pytest.approx(700e-6)
    assert value(
        found, "promptcache_overspend_usd_total", tenant="acme", source="routing"
    ) == pytest.approx(4_000e-6)
    assert value(
        found, "promptcache_saved_usd_total", tenant="globex", source="semantic"
    ) == pytest.approx(2_000e-6)
    # Latency: the exact hit sits in the sub-millisecond buckets, the miss does not.
    exact_fast = value(
        found, "promptcache_request_duration_seconds_bucket", kind="hit-exact", le="0.0005"
    )
    miss_fast = value(found, "promptcache_request_duration_seconds_bucket", kind="miss", le="0.5")
    miss_all = value(found, "promptcache_request_duration_seconds_count", kind="miss")
    assert (exact_fast, miss_fast, miss_all) == (1, 1, 2)


def test_unpriced_rows_are_counted_by_model() -> None:
    metrics = Metrics()
    metrics.observe_row(make_row(model="mystery-model", priced=False))
    metrics.observe_row(make_row(model="claude-haiku-4-5", cost=10))
    found = scrape(metrics)
    assert value(found, "promptcache_unpriced_requests_total", model="mystery-model") == 1
    assert value(found, "promptcache_unpriced_requests_total", model="claude-haiku-4-5") == 0


def test_lookup_upstream_and_batch_histograms() -> None:
    metrics = Metrics()
    metrics.observe_lookup("hit-exact", 0.0003)
    metrics.observe_lookup("hit-semantic", 0.04)
    metrics.observe_upstream(1.5)
    for size in (1, 3, 3, 17):
        metrics.observe_embedding_batch(size)
    found = scrape(metrics)
    lookup = "promptcache_lookup_duration_seconds_bucket"
    assert value(found, lookup, result="hit-exact", le="0.00025") == 0
    assert value(found, lookup, result="hit-exact", le="0.0005") == 1
    assert value(found, lookup, result="hit-semantic", le="0.025") == 0
    assert value(found, lookup, result="hit-semantic", le="0.05") == 1
    upstream = "promptcache_upstream_duration_seconds"
    assert value(found, f"{upstream}_bucket", le="1.0") == 0
    assert value(found, f"{upstream}_bucket", le="2.0") == 1
    assert value(found, f"{upstream}_sum") == pytest.approx(1.5)
    batch = "promptcache_embedding_batch_size"
    assert value(found, f"{batch}_count") == 4
    assert value(found, f"{batch}_sum") == 24
    assert value(found, f"{batch}_bucket", le="2.0") == 1
    assert value(found, f"{batch}_bucket", le="4.0") == 3


@dataclass
class Sizes:
    entries: int = 0
    index_entries: int = 0
    bytes: int = 0


def test_gauges_are_read_at_scrape_time() -> None:
    sizes = Sizes(3, 2, 4096)
    budgets: list[tuple[str, float, float]] = [("monthly", 0.25, 0.0)]
    metrics = Metrics(budgets=lambda: list(budgets), cache_size=lambda: sizes)
    found = scrape(metrics)
    assert value(found, "promptcache_cache_entries") == 3
    assert value(found, "promptcache_index_vectors") == 2
    assert value(found, "promptcache_cache_bytes") == 4096
    assert value(found, "promptcache_budget_used_ratio", budget="monthly") == 0.25
    sizes.entries, sizes.index_entries = 10, 9
    budgets[:] = [("monthly", 0.5, 0.0), ("tenant:acme", 1.2, 0.0045)]
    found = scrape(metrics)
    assert value(found, "promptcache_cache_entries") == 10
    assert value(found, "promptcache_index_vectors") == 9
    assert value(found, "promptcache_budget_used_ratio", budget="monthly") == 0.5
    assert value(found, "promptcache_budget_used_ratio", budget="tenant:acme") == 1.2
    assert value(found, "promptcache_budget_held_usd", budget="tenant:acme") == 0.0045


def test_a_failing_source_leaves_the_rest_of_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Sizes:
        raise OSError("disk gone")

    def broken_budgets() -> list[tuple[str, float, float]]:
        raise RuntimeError("budget store down")

    metrics = Metrics(budgets=broken_budgets, cache_size=broken)
    metrics.observe_row(make_row(cost=5))
    found = scrape(metrics)
    assert value(found, "promptcache_requests_total", **_miss_labels()) == 1
    assert ("promptcache_cache_entries", ()) not in found
    assert "disk gone" in caplog.text and "budget store down" in caplog.text


def _miss_labels() -> dict[str, str]:
    return {"kind": "miss", "tenant": "acme", "model": "claude-haiku-4-5"}


def test_two_metrics_objects_share_nothing() -> None:
    first, second = Metrics(), Metrics()
    first.observe_row(make_row(cost=5))
    assert value(scrape(first), "promptcache_requests_total", **_miss_labels()) == 1
    assert value(scrape(second), "promptcache_requests_total", **_miss_labels()) == 0


money = st.integers(min_value=0, max_value=10_000_000)
signed = st.integers(min_value=-5_000_000, max_value=5_000_000)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(money, money, money, signed, signed, money, st.sampled_from(["a", "b"])),
        max_size=12,
    )
)
def test_net_savings_equal_baseline_minus_cost(
    rows: list[tuple[int, int, int, int, int, int, str]],
) -> None:
    """However the savings split into positive and negative parts, the books balance."""
    metrics = Metrics()
    for cost, exact, semantic, routing, prompt_cache, batch, tenant in rows:
        if cost + exact + semantic + routing + prompt_cache + batch < 0:
            routing -= cost + exact + semantic + routing + prompt_cache + batch  # baseline >= 0
        metrics.observe_row(
            make_row(
                tenant=tenant,
                cost=cost,
                exact=exact,
                semantic=semantic,
                routing=routing,
                prompt_cache=prompt_cache,
                batch=batch,
            )
        )
    found = scrape(metrics)

    def total(name: str) -> float:
        return sum(v for (sample, _), v in found.items() if sample == name)

    net = total("promptcache_saved_usd_total") - total("promptcache_overspend_usd_total")
    expected = total("promptcache_baseline_usd_total") - total("promptcache_cost_usd_total")
    assert net == pytest.approx(expected, abs=1e-6)
    assert total("promptcache_requests_total") == len(rows)
    assert all(v >= 0 for (name, _), v in found.items() if name.endswith("_total"))


# --- GET /metrics -------------------------------------------------------------------------


@dataclass
class OpsState:
    """Stand-in for `AppState`: exactly the attributes the ops router reads."""

    settings: Settings
    keyring: KeyRing
    proxy: Any
    metrics: Metrics
    clock: Callable[[], float] = lambda: 1_800_000_000.0
    budget_statuses: Callable[[], list[Any]] = field(default=list)
    recent_alerts: Callable[[], list[dict[str, Any]]] = field(default=list)


def ops_app(state: OpsState) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.promptcache = state
    return app


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[OpsState]:
    settings = make_settings(
        tmp_path / "data", auth={"keys": [{"key": ADMIN_KEY, "role": "admin", "tenant": "ops"}]}
    )
    with Ledger(settings.ledger_path) as ledger:
        yield OpsState(
            settings=settings,
            keyring=KeyRing(settings.auth),
            proxy=SimpleNamespace(ledger=ledger),
            metrics=Metrics(cache_size=lambda: Sizes(7, 7, 1000)),
        )


def test_metrics_endpoint_serves_the_text_format(ops: OpsState) -> None:
    with TestClient(ops_app(ops)) as client:
        before = client.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"] == CONTENT_TYPE
        assert value(samples(before.text), "promptcache_requests_total", **_miss_labels()) == 0
        ops.metrics.observe_row(make_row(cost=1_000, exact=0, routing=250))
        ops.metrics.observe_row(make_row(cost=2_000))
        after = samples(client.get("/metrics").text)
    assert value(after, "promptcache_requests_total", **_miss_labels()) == 2
    cost = value(after, "promptcache_cost_usd_total", tenant="acme", model="claude-haiku-4-5")
    assert cost == pytest.approx(0.003)
    assert value(after, "promptcache_cache_entries") == 7


def test_metrics_endpoint_needs_no_key(ops: OpsState) -> None:
    """Scrapers send no key; the dashboard next door does need one."""
    with TestClient(ops_app(ops)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/dashboard/data").status_code == 401


def test_with_client_keys_metrics_need_the_admin_key(ops: OpsState) -> None:
    """Metrics name every tenant's spend: once tenants have keys, only an admin reads them."""
    keys = [
        {"key": ADMIN_KEY, "role": "admin", "tenant": "ops"},
        {"key": "client-key-acme", "role": "client", "tenant": "acme"},
    ]
    settings = make_settings(ops.settings.data_dir, auth={"keys": keys})
    shared = OpsState(**{**vars(ops), "settings": settings, "keyring": KeyRing(settings.auth)})
    with TestClient(ops_app(shared)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"x-api-key": "client-key-acme"}).status_code == 403
        admin = client.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert admin.status_code == 200 and "promptcache_cache_entries" in admin.text


# --- through the real app, once `create_app` wires metrics ------------------------------


@pytest.mark.skipif(
    "metrics" not in getattr(AppState, "__dataclass_fields__", {}),
    reason="create_app does not wire service.metrics into AppState yet",
)
def test_real_requests_move_the_counters(tmp_path: Path, embedder: Any) -> None:
    import anthropic

    from service.api.app import create_app
    from service.standin import StandinState
    from tests.servers import running
    from tests.standin_server import running_standin

    with ExitStack() as stack:
        standin = stack.enter_context(running_standin(StandinState()))
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
        )
        url = stack.enter_context(running(create_app(settings, embedder=embedder)))
        client = anthropic.Anthropic(base_url=url, api_key="client-key-1", max_retries=0)
        stack.callback(client.close)
        for _ in range(2):  # a miss, then an exact hit
            client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
            )
        found = samples(httpx.get(f"{url}/metrics", timeout=10).text)

    def kind_total(kind: str) -> float:
        return sum(
            v
            for (name, labels), v in found.items()
            if name == "promptcache_requests_total" and ("kind", kind) in labels
        )

    assert kind_total("miss") == 1
    assert kind_total("hit-exact") == 1
    cost = sum(v for (name, _), v in found.items() if name == "promptcache_cost_usd_total")
    assert cost > 0 and math.isfinite(cost)
    assert value(found, "promptcache_upstream_duration_seconds_count") == 1
    assert value(found, "promptcache_cache_entries") == 1
