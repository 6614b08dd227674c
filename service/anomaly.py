"""Anomaly detection on the ledger: a cost spike or a hit-rate collapse against recent days.

Two rules, as pure functions of daily sums (`Activity`) so they can be tested without a ledger:
- **cost anomaly**: today's cost so far is above `cost_multiplier` x the average daily cost of
  the trailing `trailing_days` days, once today has cost at least `min_cost_usd`;
- **hit-rate collapse**: today's hit rate is below `hit_rate_fraction` x the average of the
  trailing days' hit rates, once today has `min_requests` looked-up requests.
Averages are over days with data only (a quiet weekend does not drag the average to zero),
and nothing is compared until the trailing window holds `min_history_days` such days. "Today"
is the local day in `Settings.timezone`, still in progress: both sums only move towards the
alert as the day goes on, so checking early is safe.

`AnomalyWatch.check_now` reads the ledger and raises what it finds as global alerts for the
day; the alert store's dedupe makes repeated checks (the service's schedule, `promptcache
report`) raise each at most once per day.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from service.alerts import AlertKind, AlertSink
from service.config import AnomalySettings, Settings
from service.errors import ConfigError, InvalidRequest
from service.ledger import Activity, AlertRecord, Ledger
from service.periods import day_window, zone
from service.pricing import format_usd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """Something worth an alert: `value` crossed `threshold` (USD for cost, rates for hits)."""

    kind: AlertKind
    value: float
    threshold: float
    message: str


def _usd(micros: float) -> str:
    return f"${format_usd(round(micros))}"


def cost_anomaly(
    today: Activity, history: Sequence[Activity], rules: AnomalySettings
) -> Finding | None:
    """Today's cost against the trailing days' average cost (days with requests only)."""
    if today.cost_micros < rules.min_cost_usd * 1_000_000:
        return None
    days = [day for day in history if day.requests > 0]
    if len(days) < rules.min_history_days:
        return None
    average = sum(day.cost_micros for day in days) / len(days)
    limit = rules.cost_multiplier * average
    if today.cost_micros <= limit:
        return None
    ratio = "" if average == 0 else f", {today.cost_micros / average:.1f}x"
    return Finding(
        "cost_anomaly",
        value=today.cost_micros / 1_000_000,
        threshold=limit / 1_000_000,
        message=(
            f"today's cost {_usd(today.cost_micros)} is above {rules.cost_multiplier:g}x the "
            f"average daily cost of the last {len(days)} days with data "
            f"({_usd(average)}{ratio})"
        ),
    )


def hit_rate_collapse(
    today: Activity, history: Sequence[Activity], rules: AnomalySettings
) -> Finding | None:
    """Today's hit rate against the trailing days' average rate (days with lookups only)."""
    rate = today.hit_rate
    if rate is None or today.looked_up < rules.min_requests:
        return None
    rates = [r for r in (day.hit_rate for day in history) if r is not None]
    if len(rates) < rules.min_history_days:
        return None
    average = sum(rates) / len(rates)
    limit = rules.hit_rate_fraction * average
    if rate >= limit:
        return None
    return Finding(
        "hit_rate_collapse",
        value=rate,
        threshold=limit,
        message=(
            f"today's hit rate {rate:.1%} over {today.looked_up:,} requests is below "
            f"{rules.hit_rate_fraction:g}x the average of the last {len(rates)} days with data "
            f"({average:.1%})"
        ),
    )


def detect(today: Activity, history: Sequence[Activity], rules: AnomalySettings) -> list[Finding]:
    """Every rule's finding for today, in a fixed order."""
    found = (cost_anomaly(today, history, rules), hit_rate_collapse(today, history, rules))
    return [finding for finding in found if finding is not None]


class AnomalyWatch:
    """Runs the rules over the ledger for the current local day and raises the findings."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        alerts: AlertSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = settings.anomaly
        self._tz = settings.timezone
        try:
            self._zone = zone(self._tz)
        except InvalidRequest as exc:
            raise ConfigError(f"invalid setting timezone: {exc.message}") from exc
        self._ledger = ledger
        self._alerts = alerts
        self._clock = clock

    @property
    def interval_seconds(self) -> float:
        return self._rules.check_interval_seconds

    def days(self) -> tuple[date, Activity, list[Activity]]:
        """Today's local date, today's sums and the trailing days' sums (oldest first)."""
        today = datetime.fromtimestamp(self._clock(), self._zone).date()
        history = []
        for back in range(self._rules.trailing_days, 0, -1):
            start, end = day_window(today - timedelta(days=back), self._tz)
            history.append(self._ledger.activity(start, end))
        start, end = day_window(today, self._tz)
        return today, self._ledger.activity(start, end), history

    def check_now(self) -> list[AlertRecord]:
        """Run the rules now; the alerts newly raised (none when they were raised before)."""
        today, activity, history = self.days()
        raised = []
        for finding in detect(activity, history, self._rules):
            record = self._alerts.raise_alert(
                finding.kind,
                "global",
                today.isoformat(),
                f"{today.isoformat()}: {finding.message}",
                finding.value,
                finding.threshold,
            )
            if record is not None:
                raised.append(record)
        return raised


async def run_periodic(watch: AnomalyWatch, interval_seconds: float | None = None) -> None:
    """Check now and then every interval until cancelled; the ledger work runs in a thread."""
    interval = watch.interval_seconds if interval_seconds is None else interval_seconds
    while True:
        try:
            await asyncio.to_thread(watch.check_now)
        except Exception:  # keep watching; the next round tries again
            logger.exception("anomaly check failed")
        await asyncio.sleep(interval)
