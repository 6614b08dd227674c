"""The dashboard: its data against sums of the seeded rows, its access rules, and the page itself
rendered by headless Chromium from a loopback server (charts drawn, no console errors, no
request leaving 127.0.0.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from service.api.auth import KeyRing
from service.api.ops_routes import COOKIE, COOKIE_TTL_SECONDS
from service.dashboard import MAX_GROUPS, dashboard_data
from service.errors import InvalidRequest
from service.ledger import Ledger, LedgerRow
from service.metrics import Metrics
from tests.conftest import FakeClock, make_settings
from tests.servers import running
from tests.test_metrics import ADMIN_KEY, OpsState, make_row, ops_app

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
TODAY = date(2027, 1, 15)
CLIENT_KEY = "client-key-98765"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A client-chosen feature name: the page must show it as text, never parse it as markup.
HOSTILE_FEATURE = "<img src=/xss-probe>"


def at(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp()


def seeded_rows(days: int = 30) -> list[LedgerRow]:
    """Each day: haiku misses (routing saves), a sonnet miss, two exact hits, a semantic hit
    on odd days, a bypass every fifth day; features search, chat, none and a hostile one."""
    rows: list[LedgerRow] = []
    for i in range(days):
        day = TODAY - timedelta(days=days - 1 - i)
        ts = at(day, 3)
        for _ in range(1 + i % 3):
            rows.append(make_row("miss", ts=ts, cost=300, routing=700, feature="search"))
        rows.append(
            make_row("miss", ts=ts, model="claude-sonnet-4-6", cost=2_000 + 10 * i, feature="chat")
        )
        for _ in range(2):
            rows.append(make_row("hit-exact", ts=ts, exact=1_000, feature="search"))
        if i % 2:
            rows.append(
                make_row(
                    "hit-semantic", ts=ts, model="claude-sonnet-4-6", semantic=2_000, feature=None
                )
            )
        if i % 5 == 0:
            rows.append(
                make_row(
                    "bypass", ts=ts, model="claude-sonnet-4-6", cost=2_000, feature=HOSTILE_FEATURE
                )
            )
    return rows


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


# --- dashboard_data -----------------------------------------------------------------------


def test_daily_series_and_groups_match_the_rows(ledger: Ledger) -> None:
    rows = seeded_rows()
    ledger.record_many(rows)
    ledger.record(make_row(ts=at(TODAY - timedelta(days=30), 12), cost=99_999))  # outside
    data = dashboard_data(ledger, 30, NOW, "UTC")

    assert [d["day"] for d in data["daily"]] == [
        (TODAY - timedelta(days=29 - i)).isoformat() for i in range(30)
    ]
    for entry in data["daily"]:
        mine = [
            r for r in rows if datetime.fromtimestamp(r.ts, UTC).date().isoformat() == entry["day"]
        ]
        assert entry["requests"] == len(mine)
        assert entry["cost_usd"] == pytest.approx(sum(r.cost_micros for r in mine) / 1e6)
        assert entry["baseline_usd"] == pytest.approx(sum(r.baseline_micros for r in mine) / 1e6)
        assert entry["hits_exact"] == 2
        assert entry["hits_semantic"] == sum(r.kind == "hit-semantic" for r in mine)
        looked_up = sum(r.kind in ("hit-exact", "hit-semantic", "miss") for r in mine)
        assert entry["hit_rate"] == pytest.approx((2 + entry["hits_semantic"]) / looked_up)

    summary = data["summary"]
    assert summary["requests"] == len(rows)
    cost = sum(r.cost_micros for r in rows)
    baseline = sum(r.baseline_micros for r in rows)
    assert summary["cost_usd"] == pytest.approx(cost / 1e6)
    assert summary["saved_usd"] == pytest.approx((baseline - cost) / 1e6)
    assert summary["saved_fraction"] == pytest.approx((baseline - cost) / baseline)
    assert summary["saved_by_source_usd"]["exact"] == pytest.approx(60 * 1_000 / 1e6)
    assert summary["bypasses"] == 6

    by_model = {m["name"]: m for m in data["by_model"]}
    assert set(by_model) == {"claude-haiku-4-5", "claude-sonnet-4-6"}
    haiku = [r for r in rows if r.model_used == "claude-haiku-4-5"]
    assert by_model["claude-haiku-4-5"]["requests"] == len(haiku)
    assert by_model["claude-haiku-4-5"]["cost_usd"] == pytest.approx(
        sum(r.cost_micros for r in haiku) / 1e6
    )
    # Largest baseline first.
    baselines = [m["baseline_usd"] for m in data["by_model"]]
    assert baselines == sorted(baselines, reverse=True)
    assert {f["name"] for f in data["by_feature"]} == {"search", "chat", None, HOSTILE_FEATURE}


def test_days_are_local_days_of_the_zone(ledger: Ledger) -> None:
    # 23:30 UTC on Jan 14 is 08:30 on Jan 15 in Seoul.
    ledger.record(make_row(ts=at(TODAY - timedelta(days=1), 23, 30), cost=500))
    utc = dashboard_data(ledger, 2, NOW, "UTC")
    seoul = dashboard_data(ledger, 2, NOW, "Asia/Seoul")
    assert [d["requests"] for d in utc["daily"]] == [1, 0]
    assert [d["requests"] for d in seoul["daily"]] == [0, 1]
    assert seoul["window"]["start"] == "2027-01-13T15:00:00Z"


def test_an_empty_ledger_gives_zeros_not_errors(ledger: Ledger) -> None:
    data = dashboard_data(ledger, 7, NOW)
    assert len(data["daily"]) == 7
    assert data["summary"]["requests"] == 0
    assert data["summary"]["hit_rate"] is None
    assert data["summary"]["saved_fraction"] is None
    assert data["by_model"] == [] and data["by_feature"] == []


@pytest.mark.parametrize("days", [0, -1, 367])
def test_days_out_of_range_are_refused(ledger: Ledger, days: int) -> None:
    with pytest.raises(InvalidRequest, match="days"):
        dashboard_data(ledger, days, NOW)


def test_models_past_the_limit_are_summed_as_others(ledger: Ledger) -> None:
    models = [f"model-{n:02d}" for n in range(MAX_GROUPS + 3)]
    for n, model in enumerate(models):
        ledger.record(make_row(ts=NOW - 60, model=model, cost=1_000 * (n + 1)))
    rows = dashboard_data(ledger, 1, NOW)["by_model"]
    assert len(rows) == MAX_GROUPS + 1
    assert rows[0]["name"] == models[-1]
    assert rows[-1]["name"] == "3 others"
    assert rows[-1]["requests"] == 3
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(sum(range(1, 14)) * 1_000 / 1e6)


@dataclass(frozen=True)
class BudgetStatus:
    name: str
    spent: Any
    limit: Any
    fraction: float | None
    resets_at: Any
    held: Any = None  # what requests in flight hold; a source may not know


def test_budgets_and_alerts_are_normalized(ledger: Ledger) -> None:
    resets = datetime(2027, 2, 1, tzinfo=UTC)
    statuses = [
        BudgetStatus("monthly", 42_500_000, 50_000_000, 0.85, resets, 2_500_000),  # int micros
        BudgetStatus("tenant:acme", 12.5, 10.0, None, resets.timestamp()),  # float dollars
    ]
    alerts = [{"kind": "budget", "scope": "tenant:acme", "message": "over", "created_at": NOW}]
    data = dashboard_data(ledger, 1, NOW, budgets=lambda: statuses, alerts=lambda: alerts)
    assert data["budgets"] == [
        {
            "name": "monthly",
            "spent_usd": 42.5,
            "limit_usd": 50.0,
            "held_usd": 2.5,
            "fraction": 0.85,
            "resets_at": "2027-02-01T00:00:00Z",
        },
        {
            "name": "tenant:acme",
            "spent_usd": 12.5,
            "limit_usd": 10.0,
            "held_usd": None,
            "fraction": 1.25,
            "resets_at": "2027-02-01T00:00:00Z",
        },
    ]
    assert data["alerts"] == [
        {
            "kind": "budget",
            "scope": "tenant:acme",
            "message": "over",
            "created_at": "2027-01-15T08:00:00Z",
        }
    ]


# --- access -------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path, ledger: Ledger) -> OpsState:
    keys = [
        {"key": ADMIN_KEY, "role": "admin", "tenant": "ops"},
        {"key": CLIENT_KEY, "role": "client", "tenant": "acme"},
    ]
    settings = make_settings(tmp_path / "data", auth={"keys": keys})
    return OpsState(
        settings=settings,
        keyring=KeyRing(settings.auth),
        proxy=SimpleNamespace(ledger=ledger),
        metrics=Metrics(),
        clock=FakeClock(NOW),
    )


def test_dashboard_wants_an_admin(state: OpsState) -> None:
    with TestClient(ops_app(state)) as client:
        anonymous = client.get("/dashboard")
        assert anonymous.status_code == 401
        assert "text/html" in anonymous.headers["content-type"]
        assert "/dashboard?key=" in anonymous.text
        assert client.get("/dashboard", headers={"x-api-key": CLIENT_KEY}).status_code == 403
        assert client.get("/dashboard/data", headers={"x-api-key": CLIENT_KEY}).status_code == 403
        assert client.get(f"/dashboard?key={CLIENT_KEY}", follow_redirects=False).status_code == 403
        wrong = client.get("/dashboard?key=not-a-key-at-all", follow_redirects=False)
        assert wrong.status_code == 401 and COOKIE not in wrong.cookies
        page = client.get("/dashboard", headers={"x-api-key": ADMIN_KEY})
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert '<svg id="cost-chart"' in page.text
        data = client.get(
            "/dashboard/data?days=3", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert data.status_code == 200 and len(data.json()["daily"]) == 3


def test_key_in_the_url_becomes_a_cookie_that_is_not_the_key(state: OpsState) -> None:
    with TestClient(ops_app(state)) as client:
        answer = client.get(f"/dashboard?key={ADMIN_KEY}&days=7", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard?days=7"
        cookie = answer.headers["set-cookie"]
        assert ADMIN_KEY not in cookie
        for flag in (
            "HttpOnly",
            "SameSite=strict",
            "Path=/dashboard",
            f"Max-Age={COOKIE_TTL_SECONDS}",
        ):
            assert flag.lower() in cookie.lower()
        token = answer.cookies[COOKIE]
        # The query key is not accepted by the data endpoint: only header or cookie.
        client.cookies.clear()
        assert client.get(f"/dashboard/data?key={ADMIN_KEY}").status_code == 401
        client.cookies.set(COOKIE, token, path="/dashboard")
        assert client.get("/dashboard").status_code == 200
        assert client.get("/dashboard/data?days=2").status_code == 200
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        client.cookies.set(COOKIE, forged, path="/dashboard")
        assert client.get("/dashboard/data").status_code == 401
        # A later expiry cannot be written in: the MAC covers it.
        expires, _, mac = token.partition(".")
        client.cookies.set(COOKIE, f"{int(expires) + 3600}.{mac}", path="/dashboard")
        assert client.get("/dashboard/data").status_code == 401
        client.cookies.set(COOKIE, token, path="/dashboard")
        state.clock.advance(COOKIE_TTL_SECONDS + 1)  # type: ignore[attr-defined]
        assert client.get("/dashboard/data").status_code == 401


def test_data_rejects_bad_days_and_assets_are_whitelisted(state: OpsState) -> None:
    admin = {"x-api-key": ADMIN_KEY}
    with TestClient(ops_app(state)) as client:
        assert client.get("/dashboard/data?days=0", headers=admin).status_code == 422
        assert client.get("/dashboard/data?days=400", headers=admin).status_code == 422
        script = client.get("/dashboard/static/dashboard.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/dashboard/static/dashboard.css").status_code == 200
        assert client.get("/dashboard/static/dashboard.html").status_code == 404
        assert client.get("/dashboard/static/..%2Fops_routes.py").status_code == 404


# --- the page in a real browser -----------------------------------------------------------


@dataclass
class PageLog:
    requests: list[str]
    documents: list[str]
    errors: list[str]


def _watch(page: Any) -> PageLog:
    log = PageLog([], [], [])

    def on_request(request: Any) -> None:
        log.requests.append(request.url)
        if request.resource_type == "document":
            log.documents.append(request.url)

    page.on("request", on_request)
    page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: log.errors.append(str(exc)))
    return log


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
)
def test_page_draws_the_charts_in_chromium(state: OpsState, ledger: Ledger, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    rows = seeded_rows()
    ledger.record_many(rows)
    state.budget_statuses = lambda: [
        BudgetStatus("monthly", 42_500_000, 50_000_000, 0.85, NOW + 86_400 * 16, 5_000_000),
        BudgetStatus("tenant:acme", 12_000_000, 10_000_000, 1.2, NOW + 86_400 * 16),
        BudgetStatus("feature:chat", 1_000_000, 10_000_000, 0.1, None),
    ]
    state.recent_alerts = lambda: [
        {"kind": "budget", "scope": "tenant:acme", "message": "budget exceeded", "created_at": NOW},
        {
            "kind": "anomaly",
            "scope": "feature:chat",
            "message": "cost 4x usual",
            "created_at": NOW - 600,
        },
    ]
    with running(ops_app(state)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            log = _watch(page)
            page.clock.install()
            page.goto(f"{base}/dashboard?key={ADMIN_KEY}&days=30")
            assert page.url == f"{base}/dashboard?days=30"  # the key left the address
            page.wait_for_selector("body[data-refreshes='1']")

            cost_points = page.get_attribute("#cost-chart polyline.series-cost", "points") or ""
            base_points = page.get_attribute("#cost-chart polyline.series-baseline", "points") or ""
            assert len(cost_points.split()) == 30 and len(base_points.split()) == 30
            assert page.locator("#cost-chart polygon.gap").count() == 1
            assert page.locator("#cost-chart circle.point-cost").count() == 30
            # Baseline is above cost every day (the seeded traffic always saves something).
            for cost_xy, base_xy in zip(cost_points.split(), base_points.split(), strict=True):
                assert float(base_xy.split(",")[1]) < float(cost_xy.split(",")[1])  # SVG y down
            assert page.locator("#hit-chart rect.bar-exact").count() == 30
            assert page.locator("#hit-chart rect.bar-semantic").count() == 15
            assert page.locator("#hit-chart rect.bar-miss").count() == 30
            assert page.locator("#model-chart rect.bar-cost").count() == 2
            models = page.locator("#model-chart text.label").all_text_contents()
            assert set(models) == {"claude-haiku-4-5", "claude-sonnet-4-6"}
            features = page.locator("#feature-chart text.label").all_text_contents()
            assert set(features) == {"search", "chat", "(none)", HOSTILE_FEATURE}
            budget_bars = page.locator("#budget-chart rect.bar-budget")
            assert budget_bars.count() == 3
            assert page.locator("#budget-chart rect.bar-budget.over").count() == 1
            assert page.locator("#budget-chart rect.bar-budget.warn").count() == 1
            held = page.locator("#budget-chart rect.bar-held")
            assert held.count() == 1  # drawn after the spent part, up to the limit
            assert held.get_attribute("x") == page.locator(
                "#budget-chart rect.bar-budget"
            ).first.evaluate("r => (r.x.baseVal.value + r.width.baseVal.value).toFixed(1)")
            labels = " ".join(page.locator("#budget-chart text.label").all_text_contents())
            assert "(85%) + $5.00 held, resets" in labels
            assert page.locator("#alerts tbody tr").count() == 2
            assert "budget exceeded" in page.inner_text("#alerts")
            assert page.inner_text("#t-requests") == f"{len(rows):,}"
            assert re.fullmatch(r"\d+(\.\d)?%", page.inner_text("#t-hit-rate"))
            assert page.locator("text=Jan 15").count() >= 1  # day labels on the axis

            # New traffic shows up on the next 30 s tick, without reloading the page.
            ledger.record_many(
                make_row("hit-exact", ts=at(TODAY, 4), exact=1_000) for _ in range(5)
            )
            page.clock.fast_forward(31_000)
            page.wait_for_selector("body[data-refreshes='2']")
            assert page.inner_text("#t-requests") == f"{len(rows) + 5:,}"
            assert len(log.documents) == 2  # the ?key= request and its redirect, nothing more

            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()

    assert log.errors == []
    outside = [url for url in log.requests if not url.startswith(f"{base}/")]
    assert outside == []
    assert not any("xss-probe" in url for url in log.requests)
    assert sum("/dashboard/data" in url for url in log.requests) == 2
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
