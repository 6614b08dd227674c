"""Write `docs/dashboard.png`, the README's picture of the dashboard.

Seeds a throwaway ledger with 30 days of plausible traffic (seeded random, priced by the
shipped price table), serves the ops router alone on 127.0.0.1, opens `/dashboard` in
Debian's headless Chromium through Playwright and saves a full-page screenshot. Nothing
leaves the machine. Run from the repository root:

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.api.auth import KeyRing
from service.api.errors import install_error_handlers
from service.api.ops_routes import router
from service.config import Settings, load_settings
from service.ledger import Kind, Ledger, LedgerRow, day_window
from service.metrics import Metrics
from service.pricing import HitKind, PriceTable, Usage, load_prices

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "screenshot-admin-key"
NOW = datetime(2026, 11, 28, 16, 30, tzinfo=UTC).timestamp()
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
BASELINE = "claude-sonnet-4-6"
FEATURES = ("support-bot", "search", "summaries", "code-review", None)
FEATURE_WEIGHTS = (40, 25, 18, 10, 7)


@dataclass(frozen=True)
class BudgetStatus:
    name: str
    spent: int  # micro-dollars
    limit: int
    fraction: float
    resets_at: float
    held: int = 0  # micro-dollars held by requests in flight


@dataclass
class State:
    """The attributes the ops router reads from `app.state.promptcache`."""

    settings: Settings
    keyring: KeyRing
    proxy: Any
    metrics: Metrics
    clock: Callable[[], float]
    budget_statuses: Callable[[], Sequence[Any]] = field(default=list)
    recent_alerts: Callable[[], Sequence[dict[str, Any]]] = field(default=list)


def _row(rng: random.Random, prices: PriceTable, ts: float, day_index: int, days: int) -> LedgerRow:
    warm = day_index / max(1, days - 1)  # the cache warms up over the month
    feature = rng.choices(FEATURES, FEATURE_WEIGHTS)[0]
    roll = rng.random()
    kind: Kind
    if roll < 0.12 + 0.22 * warm:
        kind = "hit-exact"
    elif roll < 0.17 + 0.32 * warm:
        kind = "hit-semantic"
    elif roll < 0.19 + 0.32 * warm:
        kind = "bypass"
    else:
        kind = "miss"
    prompt = int(rng.lognormvariate(6.5, 0.8))
    output = int(rng.lognormvariate(5.5, 0.7))
    if feature == "code-review":
        prompt, output = prompt * 4, output * 3
    model = rng.choices(["claude-haiku-4-5", BASELINE, "claude-opus-4-6"], [55, 38, 7])[0]
    cached = prompt // 2 if kind == "miss" and rng.random() < 0.3 else 0
    usage = Usage(
        input_tokens=prompt - cached, output_tokens=output, cache_read_input_tokens=cached
    )
    hits: dict[str, HitKind] = {"hit-exact": "exact", "hit-semantic": "semantic"}
    hit = hits.get(kind)
    charge = prices.charge(usage, baseline_model=BASELINE, model_used=model, hit=hit)
    return LedgerRow(
        ts=ts,
        request_id=f"demo-{ts:.3f}-{rng.random():.6f}",
        tenant=rng.choices(["acme", "globex", "initech"], [60, 30, 10])[0],
        namespace="default",
        feature=feature,
        kind=kind,
        model_requested="auto",
        model_used=model,
        route_tier=None,
        route_reasons=None,
        input_tokens=0 if hit else usage.input_tokens,
        output_tokens=0 if hit else usage.output_tokens,
        cache_creation_tokens=0,
        cache_read_tokens=0 if hit else cached,
        similarity=rng.uniform(0.95, 0.99) if kind == "hit-semantic" else None,
        latency_ms=rng.uniform(0.2, 0.9) if hit else rng.uniform(600, 4000),
        entry_id=None,
        status=200,
        **asdict(charge),
    )


def seed(ledger: Ledger, *, now: float, days: int, rng: random.Random) -> int:
    """Write `days` days of demo traffic up to `now`; returns how many rows."""
    prices = load_prices()
    today = datetime.fromtimestamp(now, UTC).date()
    written = 0
    for index in range(days):
        day = today - timedelta(days=days - 1 - index)
        start, end = day_window(day)
        end = min(end, now)
        weekend = day.weekday() >= 5
        volume = int(rng.gauss(160 if weekend else 420, 40) * (1 + index / days))
        stamps = sorted(rng.uniform(start, end) for _ in range(max(volume, 10)))
        written += ledger.record_many(_row(rng, prices, ts, index, days) for ts in stamps)
    return written


def budgets(ledger: Ledger, now: float) -> list[BudgetStatus]:
    today = datetime.fromtimestamp(now, UTC).date()
    month_start, _ = day_window(today.replace(day=1))
    resets = day_window((today.replace(day=28) + timedelta(days=4)).replace(day=1))[0]
    spent = ledger.totals(month_start, now).cost_micros
    acme = ledger.totals(month_start, now, tenant="acme").cost_micros
    statuses = [("monthly", spent, 60_000_000), ("tenant:acme", acme, 36_000_000)]
    statuses.append(("feature:code-review", 8_400_000, 10_000_000))
    held = {"tenant:acme": 2_700_000}  # a batch upstream: drawn after the spend
    return [BudgetStatus(n, s, lim, s / lim, resets, held.get(n, 0)) for n, s, lim in statuses]


def alerts(now: float) -> list[dict[str, Any]]:
    return [
        {
            "kind": "budget",
            "scope": "feature:code-review",
            "message": "84% of the monthly budget used with 2 days left",
            "created_at": now - 3_600,
        },
        {
            "kind": "anomaly",
            "scope": "tenant:globex",
            "message": "spend 3.1x the usual for a Thursday afternoon",
            "created_at": now - 86_400 * 2,
        },
    ]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            None,
            overrides={
                "data_dir": scratch,
                "auth": {"keys": [{"key": ADMIN_KEY, "role": "admin", "tenant": "ops"}]},
            },
            env={},
        )
        with Ledger(settings.ledger_path) as ledger:
            rows = seed(ledger, now=NOW, days=args.days, rng=random.Random(args.seed))
            state = State(
                settings=settings,
                keyring=KeyRing(settings.auth),
                proxy=SimpleNamespace(ledger=ledger),
                metrics=Metrics(),
                clock=lambda: NOW,
                budget_statuses=lambda: budgets(ledger, NOW),
                recent_alerts=lambda: alerts(NOW),
            )
            app = FastAPI()
            install_error_handlers(app)
            app.include_router(router)
            app.state.promptcache = state
            with serving(app) as base, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(
                        viewport={"width": 1280, "height": 900},
                        locale="en-US",
                        timezone_id="UTC",
                    )
                    page.clock.install(time=NOW + 5)
                    page.goto(f"{base}/dashboard?key={ADMIN_KEY}&days={args.days}")
                    page.wait_for_selector("body[data-refreshes='1']", timeout=30_000)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.out), full_page=True)
                finally:
                    browser.close()
    print(f"wrote {args.out} ({rows:,} seeded ledger rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
