"""Anomaly detection: cost spikes and hit-rate collapses against the trailing days, once a day."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from service.alerts import AlertCenter
from service.anomaly import AnomalyWatch, cost_anomaly, detect, hit_rate_collapse, run_periodic
from service.cli import report as report_cmd
from service.config import AnomalySettings, Settings
from service.ledger import Activity, Ledger, LedgerRow
from service.periods import day_window
from tests.conftest import FakeClock, make_settings
from tests.test_alerts import webhook_receiver
from tests.test_reports import row

TZ = "America/Los_Angeles"
TODAY = date(2026, 3, 10)
NOW = datetime.fromisoformat("2026-03-10T15:00:00-07:00").timestamp()
RULES = AnomalySettings()
USD = 1_000_000


def activity(cost_usd: float = 1.0, looked_up: int = 100, hits: int = 60) -> Activity:
    return Activity(looked_up, looked_up, hits, round(cost_usd * USD))


def day_rows(day: date, *, cost: int, requests: int = 100, hits: int = 60) -> list[LedgerRow]:
    """`hits` exact hits and `requests - hits` misses sharing `cost` micros, in local `day`."""
    start, _ = day_window(day, TZ)
    misses = requests - hits
    rows = [row(start + 60 + i, "hit-exact", baseline=100, exact=100) for i in range(hits)]
    for i in range(misses):
        share = cost // misses + (cost % misses if i == 0 else 0)
        rows.append(row(start + 7_200 + i, "miss", cost=share, baseline=share))
    return rows


@contextlib.contextmanager
def watched(
    tmp_path: Path, days: dict[int, dict[str, int]], **settings: object
) -> Iterator[tuple[Settings, Ledger, AnomalyWatch]]:
    """A ledger with the given days (days back from today -> day_rows arguments) and a watch."""
    config = make_settings(tmp_path / "data", timezone=TZ, **settings)
    with Ledger(config.ledger_path) as ledger:
        for back, spec in days.items():
            ledger.record_many(day_rows(TODAY - timedelta(days=back), **spec))
        center = AlertCenter(ledger, config.alerts, clock=FakeClock(NOW))
        yield config, ledger, AnomalyWatch(config, ledger, center, clock=FakeClock(NOW))
        center.close()


def flat_week(cost: int = USD) -> dict[int, dict[str, int]]:
    return {back: {"cost": cost} for back in range(1, 8)}


# --- the rules as pure functions ----------------------------------------------------------------


def test_a_cost_spike_is_found_and_a_flat_day_is_not() -> None:
    week = [activity(1.0)] * 7
    finding = cost_anomaly(activity(2.5), week, RULES)
    assert finding is not None
    assert (finding.kind, finding.value, finding.threshold) == ("cost_anomaly", 2.5, 2.0)
    assert "$2.500000" in finding.message and "$1.000000" in finding.message
    assert cost_anomaly(activity(2.0), week, RULES) is None  # exactly 2x is not above
    assert cost_anomaly(activity(1.0), week, RULES) is None


def test_a_spike_below_the_minimum_spend_is_not_an_anomaly() -> None:
    cheap_week = [activity(0.1)] * 7
    assert cost_anomaly(activity(0.9), cheap_week, RULES) is None
    assert cost_anomaly(activity(1.0), cheap_week, RULES) is not None


def test_only_days_with_data_make_the_average() -> None:
    quiet = Activity(0, 0, 0, 0)
    history = [quiet] * 4 + [activity(1.0)] * 3
    # Averaged over 7 days the week cost $0.43 a day and $1.50 would be 3.5x; over the
    # three days with data it is 1.5x: no alert.
    assert cost_anomaly(activity(1.5), history, RULES) is None
    assert cost_anomaly(activity(2.1), history, RULES) is not None
    # Too little history: two days with data are not enough to judge.
    assert cost_anomaly(activity(50.0), [quiet] * 5 + [activity(1.0)] * 2, RULES) is None
    assert cost_anomaly(activity(50.0), [], RULES) is None


def test_a_hit_rate_collapse_needs_enough_requests_today() -> None:
    week = [activity(hits=60)] * 7  # 60% every day
    finding = hit_rate_collapse(activity(hits=20), week, RULES)
    assert finding is not None
    assert finding.kind == "hit_rate_collapse"
    assert (finding.value, finding.threshold) == pytest.approx((0.2, 0.3))
    assert hit_rate_collapse(activity(hits=30), week, RULES) is None  # exactly half
    assert hit_rate_collapse(activity(looked_up=49, hits=0), week, RULES) is None
    assert hit_rate_collapse(activity(looked_up=50, hits=0), week, RULES) is not None
    no_lookups = Activity(10, 0, 0, 0)
    assert hit_rate_collapse(activity(hits=0), [no_lookups] * 5 + week[:2], RULES) is None
    assert detect(activity(5.0, hits=0), week, RULES) == [
        cost_anomaly(activity(5.0, hits=0), week, RULES),
        hit_rate_collapse(activity(5.0, hits=0), week, RULES),
    ]


# --- on a real ledger ---------------------------------------------------------------------------


def test_a_spike_on_an_eight_day_ledger_raises_exactly_one_alert(tmp_path: Path) -> None:
    with watched(tmp_path, {**flat_week(), 0: {"cost": 3 * USD}}) as (_, ledger, watch):
        [raised] = watch.check_now()
        assert watch.check_now() == []
        assert [(a.kind, a.scope, a.period) for a in ledger.alerts()] == [
            ("cost_anomaly", "global", "2026-03-10")
        ]
    assert (raised.value, raised.threshold) == (3.0, 2.0)
    assert raised.message.startswith("2026-03-10: today's cost $3.000000")


def test_a_flat_ledger_or_a_short_history_raises_nothing(tmp_path: Path) -> None:
    with watched(tmp_path / "flat", {**flat_week(), 0: {"cost": USD}}) as (_, ledger, watch):
        assert watch.check_now() == []
        assert ledger.alerts() == []
    short = {1: {"cost": USD}, 2: {"cost": USD}, 0: {"cost": 30 * USD, "hits": 0}}
    with watched(tmp_path / "short", short) as (_, ledger, watch):
        assert watch.check_now() == []
        assert ledger.alerts() == []


def test_the_day_is_the_local_day(tmp_path: Path) -> None:
    # $2.50 spent at 20:00 on the 9th in Los Angeles: already the 10th in UTC, but yesterday
    # here, so today ($1, at 15:00) is no spike.
    evening = datetime.fromisoformat("2026-03-09T20:00:00-07:00").timestamp()
    spike = [row(evening + i, "miss", cost=250_000, baseline=250_000) for i in range(10)]
    with watched(tmp_path, {**flat_week(), 0: {"cost": USD}}) as (_, ledger, watch):
        ledger.record_many(spike)
        assert watch.check_now() == []
        _, today, history = watch.days()
        assert today.cost_micros == USD
        assert [day.cost_micros for day in history] == [USD] * 6 + [USD + 2_500_000]


def test_a_hit_rate_collapse_on_a_ledger_raises_one_alert(tmp_path: Path) -> None:
    days = {**flat_week(), 0: {"cost": USD, "hits": 10}}
    with watched(tmp_path, days) as (_, ledger, watch):
        [raised] = watch.check_now()
        watch.check_now()
        assert len(ledger.alerts()) == 1
    assert (raised.kind, raised.period) == ("hit_rate_collapse", "2026-03-10")
    assert (raised.value, raised.threshold) == pytest.approx((0.1, 0.3))
    too_few = {**flat_week(), 0: {"cost": USD, "requests": 30, "hits": 0}}
    with watched(tmp_path / "few", too_few) as (_, ledger, watch):
        assert watch.check_now() == []


def test_the_periodic_runner_checks_at_once_and_keeps_going(tmp_path: Path) -> None:
    async def scenario(ledger: Ledger, watch: AnomalyWatch) -> int:
        task = asyncio.create_task(run_periodic(watch, 3_600))
        for _ in range(1_000):  # at most ~10 s; usually the first rounds
            if ledger.alerts():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return len(ledger.alerts())

    with watched(tmp_path, {**flat_week(), 0: {"cost": 3 * USD}}) as (_, ledger, watch):
        assert asyncio.run(scenario(ledger, watch)) == 1


# --- promptcache report ---------------------------------------------------------------------------


def test_promptcache_report_raises_prints_and_delivers_a_new_alert_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PROMPTCACHE_CONFIG", "PROMPTCACHE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        for back, spec in {**flat_week(), 0: {"cost": 3 * USD}}.items():
            ledger.record_many(day_rows(TODAY - timedelta(days=back), **spec))
    with webhook_receiver() as receiver:
        config = tmp_path / "promptcache.toml"
        config.write_text(
            f'timezone = "{TZ}"\n[alerts]\nwebhooks = ["{receiver.url}"]\n', encoding="utf-8"
        )
        parser = argparse.ArgumentParser(prog="promptcache")
        report_cmd.add_parser(parser.add_subparsers(dest="command", required=True))

        def run(*argv: str) -> str:
            args = parser.parse_args(
                ["report", "--data-dir", str(tmp_path), "--config", str(config), *argv]
            )
            assert report_cmd.run(args, clock=FakeClock(NOW)) == 0
            return capsys.readouterr().out

        first = run()
        second = run("--format", "json")
        quiet = run("--no-check", "--format", "json")
    alert_lines = [line for line in first.splitlines() if line.startswith("new alert:")]
    assert alert_lines == [
        "new alert: cost_anomaly (global): 2026-03-10: today's cost $3.000000 is "
        "above 2x the average daily cost of the last 7 days with data ($1.000000, 3.0x)"
    ]
    assert first.startswith("promptcache report for 2026-03-10 (America/Los_Angeles)")
    assert json.loads(second)["alerts"] == []
    assert json.loads(quiet)["alerts"] == []
    [body] = receiver.bodies
    assert (body["kind"], body["period"], body["value"]) == ("cost_anomaly", "2026-03-10", 3.0)
