"""Budgets on the ledger: periods in a local zone, thresholds, refusals, restarts, estimates."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from service.alerts import AlertCenter
from service.api.errors import install_error_handlers
from service.budgets import (
    HOLD_SECONDS,
    BudgetBook,
    estimate_miss_micros,
    prompt_token_bound,
    request_bound_micros,
)
from service.config import AlertSettings, Settings
from service.errors import ConfigError, RateLimited
from service.ledger import Ledger, LedgerRow
from service.pricing import CacheTtl, Usage, load_prices
from service.standin_wire import count_input_tokens
from tests.conftest import FakeClock, make_settings
from tests.servers import running

PRICES = load_prices()


def at(text: str) -> float:
    """Epoch seconds of an ISO time written with its offset."""
    return datetime.fromisoformat(text).timestamp()


def miss(ts: float, cost: int, *, tenant: str = "acme", feature: str | None = None) -> LedgerRow:
    """A miss that cost `cost` micros and saved nothing."""
    return LedgerRow(
        ts=ts,
        request_id="req",
        tenant=tenant,
        namespace="default",
        feature=feature,
        kind="miss",
        model_requested="claude-haiku-4-5",
        model_used="claude-haiku-4-5",
        route_tier=None,
        route_reasons=None,
        input_tokens=10,
        output_tokens=10,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_micros=cost,
        baseline_micros=cost,
        saved_exact_micros=0,
        saved_semantic_micros=0,
        saved_routing_micros=0,
        saved_prompt_cache_micros=0,
        saved_batch_micros=0,
        priced=True,
        similarity=None,
        latency_ms=1.0,
        entry_id=None,
        status=200,
    )


def budget_settings(tmp_path: Path, tz: str, *budgets: dict[str, Any]) -> Settings:
    return make_settings(tmp_path / "data", timezone=tz, budgets=list(budgets))


class Books:
    """A ledger file, its alert center and a budget book, re-openable like a restart."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        self.open()

    def open(self) -> None:
        self.ledger = Ledger(self.settings.ledger_path)
        self.alerts = AlertCenter(self.ledger, AlertSettings(), clock=self.clock)
        self.book = BudgetBook(self.settings, self.ledger, self.clock, alerts=self.alerts)

    def close(self) -> None:
        self.alerts.close()
        self.ledger.close()

    def spend(self, cost: int, **row: Any) -> None:
        """Record a miss now and tell the book, as the proxy does."""
        recorded = miss(self.clock(), cost, **row)
        self.book.on_row(recorded, self.ledger.record(recorded))

    def alert_list(self, kind: str | None = None) -> list[tuple[str, str, str, float]]:
        return [(a.kind, a.scope, a.period, a.threshold) for a in self.ledger.alerts(kind=kind)]


@pytest.fixture
def seoul(tmp_path: Path) -> Iterator[Books]:
    settings = budget_settings(
        tmp_path,
        "Asia/Seoul",
        {"name": "acme-daily", "scope": "tenant:acme", "period": "daily", "amount_usd": 1.0},
    )
    books = Books(settings, FakeClock(at("2026-03-10T12:00:00+09:00")))
    yield books
    books.close()


def test_eighty_percent_alerts_once_and_a_miss_past_the_limit_is_refused(seoul: Books) -> None:
    seoul.spend(700_000)
    assert seoul.alert_list() == []
    seoul.spend(100_000)  # 80%
    seoul.spend(50_000)  # 85%: no second alert
    assert seoul.alert_list() == [("budget_threshold", "tenant:acme", "2026-03-10", 0.8)]
    [alert] = seoul.ledger.alerts()
    assert "acme-daily" in alert.message and "85%" not in alert.message
    assert alert.value == pytest.approx(0.8)

    seoul.book.check_before_miss("acme", None, 150_000)  # 850k + 150k = the limit exactly
    with pytest.raises(RateLimited) as info:
        seoul.book.check_before_miss("acme", None, 150_001)
    error = info.value
    assert (error.status, error.error_type) == (429, "budget_exceeded")
    assert error.message == (
        "budget 'acme-daily' (tenant:acme, daily) would be exceeded: spent $0.850000 of its "
        "$1.000000 limit this day, and this request may cost up to $0.150001; it resets at "
        "2026-03-11T00:00:00+09:00"
    )
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", "search", 200_000)
    # Other tenants are not in this budget's scope.
    seoul.book.check_before_miss("globex", None, 5_000_000)
    assert seoul.alert_list("budget_exceeded") == [
        ("budget_exceeded", "tenant:acme", "2026-03-10", 1.0)
    ]
    [status] = seoul.book.status()
    assert (status.name, status.scope, status.period, status.period_key) == (
        "acme-daily",
        "tenant:acme",
        "daily",
        "2026-03-10",
    )
    assert (status.spent_micros, status.limit_micros, status.hard_limit_micros) == (
        850_000,
        1_000_000,
        1_000_000,
    )
    assert status.fraction == pytest.approx(0.85)
    assert status.resets_at == "2026-03-11T00:00:00+09:00"


def test_misses_in_flight_hold_their_bound_until_released(seoul: Books) -> None:
    seoul.spend(500_000)
    first = seoul.book.hold_before_miss("acme", None, 300_000)
    with pytest.raises(RateLimited) as info:  # 500k spent + 300k held + 300k > 1M
        seoul.book.hold_before_miss("acme", None, 300_000)
    assert "spent $0.500000 (and $0.300000 held by requests in flight) of its" in (
        info.value.message
    )
    second = seoul.book.hold_before_miss("acme", None, 200_000)  # exactly the limit
    seoul.book.check_before_miss("globex", None, 900_000)  # out of scope: holds nothing
    seoul.spend(40_000, tenant="acme")  # the first answer's real cost lands ...
    seoul.book.release(first)  # ... then its hold goes
    seoul.book.release(first)  # releasing twice changes nothing
    seoul.book.check_before_miss("acme", None, 260_000)  # 540k + 200k held + 260k = 1M
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", None, 260_001)
    seoul.book.release(second)
    seoul.book.check_before_miss("acme", None, 460_000)


def test_spend_in_flight_elsewhere_counts_within_its_scope(seoul: Books) -> None:
    """Batches upstream report their requests' bounds; only the budget's tenant counts."""
    in_flight = [("acme", "search", 600_000), ("globex", None, 5_000_000)]
    seoul.book.count_pending(lambda: list(in_flight))
    seoul.book.check_before_miss("acme", None, 400_000)  # 600k + 400k = the limit
    with pytest.raises(RateLimited) as info:
        seoul.book.check_before_miss("acme", None, 400_001)
    assert "($0.600000 held by requests in flight)" in info.value.message.replace("and ", "")
    in_flight.pop(0)  # its result was settled
    seoul.book.check_before_miss("acme", None, 1_000_000)


def test_the_status_shows_what_requests_in_flight_hold(tmp_path: Path) -> None:
    """An operator sees the spend a refusal counts: recorded spend and the bounds held."""
    settings = budget_settings(
        tmp_path,
        "UTC",
        {"name": "cap", "scope": "tenant:acme", "period": "daily", "amount_usd": 1},
        {
            "name": "watch",
            "scope": "global",
            "period": "daily",
            "amount_usd": 1,
            "alert_only": True,
        },
    )
    books = Books(settings, FakeClock(at("2026-03-10T12:00:00+00:00")))
    try:
        in_flight = [("globex", None, 70_000)]
        books.book.count_pending(lambda: list(in_flight))
        hold = books.book.hold_before_miss("acme", None, 300_000)
        books.spend(100_000, tenant="acme")
        held = {s.name: (s.spent_micros, s.held_micros) for s in books.book.status()}
        # The alert-only budget refuses nothing, yet shows the same holds.
        assert held == {"cap": (100_000, 300_000), "watch": (100_000, 370_000)}
        books.book.release(hold)
        in_flight.clear()
        assert [s.held_micros for s in books.book.status()] == [0, 0]
    finally:
        books.close()


def test_a_hold_never_released_stops_counting(seoul: Books) -> None:
    """A stream whose response never started never reports back: its hold runs out."""
    seoul.book.hold_before_miss("acme", None, 900_000)
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", None, 200_000)
    seoul.clock.advance(HOLD_SECONDS)
    seoul.book.check_before_miss("acme", None, 200_000)


def test_a_spent_budget_refuses_even_a_free_looking_miss(seoul: Books) -> None:
    seoul.spend(1_000_000)
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", None, 0)
    # Reaching the limit crossed the 100% threshold: the highest threshold is the one raised.
    assert seoul.alert_list("budget_threshold") == [
        ("budget_threshold", "tenant:acme", "2026-03-10", 1.0)
    ]


def test_the_refusal_is_a_429_with_the_documented_error_body(seoul: Books) -> None:
    seoul.spend(990_000)
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/miss")
    def miss_route() -> dict[str, str]:
        seoul.book.check_before_miss("acme", None, 60_000)
        return {"ok": "yes"}

    with running(app) as url:
        response = httpx.post(f"{url}/miss", timeout=10)
    assert response.status_code == 429
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "budget_exceeded"
    assert body["error"]["message"].startswith("budget 'acme-daily' (tenant:acme, daily)")
    assert "resets at 2026-03-11T00:00:00+09:00" in body["error"]["message"]


def test_a_daily_budget_resets_at_local_midnight(seoul: Books) -> None:
    seoul.clock.now = at("2026-03-10T23:59:59+09:00")
    seoul.spend(900_000)
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", None, 200_000)
    # 15:00 UTC is midnight in Seoul: a new day and an empty budget.
    seoul.clock.now = at("2026-03-11T00:00:00+09:00")
    seoul.book.check_before_miss("acme", None, 200_000)
    [status] = seoul.book.status()
    assert (status.period_key, status.spent_micros) == ("2026-03-11", 0)
    assert status.resets_at == "2026-03-12T00:00:00+09:00"
    # A row of yesterday reported late does not count today.
    late = miss(at("2026-03-10T23:59:59+09:00"), 500_000)
    seoul.book.on_row(late, seoul.ledger.record(late))
    assert seoul.book.status()[0].spent_micros == 0
    # The new day alerts again at its own 80%.
    seoul.spend(800_000)
    assert [a[2] for a in seoul.alert_list("budget_threshold")] == ["2026-03-11", "2026-03-10"]


def test_a_monthly_budget_follows_the_local_calendar(tmp_path: Path) -> None:
    settings = budget_settings(
        tmp_path,
        "America/New_York",
        {"name": "all", "scope": "global", "period": "monthly", "amount_usd": 10.0},
    )
    # Local February but UTC March: not in March's budget.
    before = miss(at("2026-02-28T23:30:00-05:00"), 3_000_000)
    first = miss(at("2026-03-01T00:30:00-05:00"), 4_000_000, tenant="globex")
    with Ledger(settings.ledger_path) as ledger:
        ledger.record_many([before, first])
    # 23:30 on 31 March in New York is already April in UTC.
    books = Books(settings, FakeClock(at("2026-03-31T23:30:00-04:00")))
    try:
        [status] = books.book.status()
        assert (status.period_key, status.spent_micros) == ("2026-03", 4_000_000)
        assert status.resets_at == "2026-04-01T00:00:00-04:00"
        books.spend(5_000_000, tenant="initech")
        assert books.alert_list() == [("budget_threshold", "global", "2026-03", 0.8)]
        with pytest.raises(RateLimited, match=r"global, monthly.*this month"):
            books.book.check_before_miss("anyone", None, 1_000_001)
        books.clock.now = at("2026-04-01T00:00:00-04:00")
        books.book.check_before_miss("anyone", None, 9_000_000)
        assert books.book.status()[0].period_key == "2026-04"
        assert books.book.status()[0].resets_at == "2026-05-01T00:00:00-04:00"
    finally:
        books.close()


def test_spend_and_alerts_survive_a_restart(seoul: Books) -> None:
    seoul.spend(850_000)
    seoul.close()
    # Another process recorded a row while we were down; the book re-derives from the ledger.
    with Ledger(seoul.settings.ledger_path) as other:
        other.record(miss(seoul.clock(), 100_000))
    seoul.open()
    [status] = seoul.book.status()
    assert status.spent_micros == 950_000
    with pytest.raises(RateLimited):
        seoul.book.check_before_miss("acme", None, 60_000)
    # Still one threshold alert: it was raised before the restart.
    assert len(seoul.alert_list("budget_threshold")) == 1


def test_a_row_is_counted_once_whatever_order_sums_and_rows_arrive_in(seoul: Books) -> None:
    early = miss(seoul.clock(), 100_000)
    early_id = seoul.ledger.record(early)
    seoul.book.refresh()  # sees the row in the ledger
    seoul.book.on_row(early, early_id)  # ... so this is not counted again
    late_a, late_b = miss(seoul.clock(), 20_000), miss(seoul.clock(), 30_000)
    id_a, id_b = seoul.ledger.record(late_a), seoul.ledger.record(late_b)
    seoul.book.on_row(late_b, id_b)  # threads may report out of order
    seoul.book.on_row(late_a, id_a)
    assert seoul.book.status()[0].spent_micros == 150_000
    seoul.book.refresh()
    assert seoul.book.status()[0].spent_micros == 150_000


def test_scopes_hard_limits_and_alert_only_budgets(tmp_path: Path) -> None:
    settings = budget_settings(
        tmp_path,
        "UTC",
        {
            "name": "search",
            "scope": "feature:search",
            "period": "daily",
            "amount_usd": 1,
            "thresholds": [0.5],
            "hard_limit": 1.5,
        },
        {
            "name": "watch",
            "scope": "global",
            "period": "daily",
            "amount_usd": 0.1,
            "alert_only": True,
        },
    )
    books = Books(settings, FakeClock(at("2026-03-10T12:00:00+00:00")))
    try:
        books.spend(1_200_000, feature="search")
        # The global budget is 12x over but alert-only; the feature budget refuses past 1.5x.
        books.book.check_before_miss("acme", None, 10_000_000)
        books.book.check_before_miss("acme", "search", 300_000)
        with pytest.raises(RateLimited, match=r"of its \$1.500000 \(1.5 x \$1.000000\) limit"):
            books.book.check_before_miss("acme", "search", 300_001)
        kinds = sorted((kind, scope, threshold) for kind, scope, _, threshold in books.alert_list())
        assert kinds == [
            ("budget_exceeded", "feature:search", 1.5),
            ("budget_threshold", "feature:search", 0.5),
            ("budget_threshold", "global", 1.0),
        ]
    finally:
        books.close()


def test_a_bad_timezone_is_a_config_error(tmp_path: Path) -> None:
    # Refused with the settings, before the service opens anything (it was a traceback from
    # inside the app's start-up: `test_cli.py`).
    with pytest.raises(ConfigError, match="timezone: .*unknown time zone 'Mars/Olympus'"):
        budget_settings(tmp_path, "Mars/Olympus")


def test_the_estimate_prices_input_and_the_whole_max_tokens() -> None:
    # Haiku 4.5: $1 in, $5 out per million tokens = 1 and 5 micros per token.
    assert estimate_miss_micros(PRICES, "claude-haiku-4-5", 1_000, 500) == 1_000 + 2_500
    assert estimate_miss_micros(PRICES, "claude-haiku-4-5", 1_000, 500, prompt_cache_ttl="1h") == (
        2_000 + 2_500
    )
    assert estimate_miss_micros(PRICES, "claude-nonesuch-9", 1_000, 500) == 0


@given(
    prompt=st.integers(0, 200_000),
    max_tokens=st.integers(1, 64_000),
    used_out=st.integers(0, 64_000),
    split=st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)),
    ttl=st.sampled_from(["5m", "1h"]),
    model=st.sampled_from(["claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6"]),
)
def test_no_answer_within_the_bounds_costs_more_than_the_estimate(
    prompt: int,
    max_tokens: int,
    used_out: int,
    split: tuple[int, int, int],
    ttl: CacheTtl,
    model: str,
) -> None:
    """However the prompt tokens are billed (plain, cache writes, reads), the bound holds."""
    weights = sum(split) or 1
    written = prompt * split[0] // weights
    read = prompt * split[1] // weights
    usage = Usage(
        input_tokens=prompt - written - read,
        output_tokens=min(used_out, max_tokens),
        cache_creation_input_tokens=written,
        cache_read_input_tokens=read,
    )
    actual = PRICES.cost(model, usage, cache_ttl=ttl).micros
    bound = estimate_miss_micros(PRICES, model, prompt, max_tokens, prompt_cache_ttl=ttl)
    assert actual <= bound
    if written == 0:
        assert actual <= estimate_miss_micros(PRICES, model, prompt, max_tokens)


def test_the_prompt_bound_counts_bytes_so_korean_is_not_undercounted() -> None:
    system, question = "요약해 주세요", "오늘 회의 내용을 세 줄로 정리해 줘"
    request = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": system,
        "messages": [{"role": "user", "content": question}],
    }
    bound = prompt_token_bound(request)
    assert bound >= len((system + question).encode("utf-8"))
    assert prompt_token_bound({**request, "max_tokens": 9_999}) == bound


def test_a_request_bound_follows_its_cache_markers() -> None:
    plain = {
        "model": "claude-haiku-4-5",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Summarize the meeting notes in three lines."}],
    }
    tokens = prompt_token_bound(plain)
    assert request_bound_micros(PRICES, "claude-haiku-4-5", plain) == tokens + 300 * 5
    marked = {
        **plain,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
    }
    five = estimate_miss_micros(
        PRICES, "claude-haiku-4-5", prompt_token_bound(marked), 300, prompt_cache_ttl="5m"
    )
    assert request_bound_micros(PRICES, "claude-haiku-4-5", marked) == five
    hour = {**marked, "tools": [{"name": "t", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    assert request_bound_micros(PRICES, "claude-haiku-4-5", hour) == estimate_miss_micros(
        PRICES, "claude-haiku-4-5", prompt_token_bound(hour), 300, prompt_cache_ttl="1h"
    )
    automatic = {**plain, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert request_bound_micros(PRICES, "claude-haiku-4-5", automatic) == estimate_miss_micros(
        PRICES, "claude-haiku-4-5", tokens, 300, prompt_cache_ttl="1h"
    )
    # The stand-in Anthropic server never counts more prompt tokens than the bound.
    for request in (plain, marked, hour):
        assert count_input_tokens(dict(request)) <= prompt_token_bound(request)


def test_what_a_check_registers_in_then_is_counted_by_every_check_after_it(
    seoul: Books,
) -> None:
    """The batch service registers its spend in `then`, under the book's lock: a check that
    starts while another is registering waits, and sees the spend (without `then` both
    counted on the same headroom)."""
    in_flight: list[tuple[str, str | None, int]] = []
    seoul.book.count_pending(lambda: list(in_flight))
    registering = threading.Event()

    def register() -> None:
        registering.set()
        time.sleep(0.2)  # a slow registration: the second check must not slip in before it
        in_flight.append(("acme", None, 600_000))

    first = threading.Thread(
        target=seoul.book.check_before_miss, args=("acme", None, 600_000), kwargs={"then": register}
    )
    first.start()
    assert registering.wait(5)
    with pytest.raises(RateLimited, match="held by requests in flight"):
        seoul.book.check_before_miss("acme", None, 600_000)
    first.join()
