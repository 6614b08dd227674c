"""What the dashboard page shows, as one JSON-ready dict read from the ledger.

The page is a thin renderer: every number it draws is computed here from `Ledger` sums, so
the dashboard, the daily report and `/metrics` all read the same rows. Days are local days
in the configured IANA zone (a day may be 23 or 25 hours long); the window is the last
`days` of them, today included (today only up to now). Money leaves this module as US
dollars (floats, for display); the ledger keeps integer micro-dollars. Budget statuses and
alerts come from callables owned by other parts of the service and are passed through,
normalized, so the page does not depend on their classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from service.errors import InvalidRequest
from service.ledger import GroupBy, Ledger, Totals
from service.periods import day_window, zone

MAX_DAYS = 366
# Models or features beyond this many (by baseline cost) are summed into one "other" row.
MAX_GROUPS = 10
MAX_ALERTS = 50

BudgetStatuses = Callable[[], Sequence[Any]]
Alerts = Callable[[], Sequence[Mapping[str, Any]]]


def no_budgets() -> Sequence[Any]:
    return ()


def no_alerts() -> Sequence[Mapping[str, Any]]:
    return ()


def usd(micros: int) -> float:
    return micros / 1_000_000


def iso(moment: object) -> str | None:
    """An ISO 8601 UTC time from epoch seconds or a datetime; strings pass through."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(moment, int | float) and not isinstance(moment, bool):
        return iso(datetime.fromtimestamp(moment, UTC))
    return str(moment)


def _money(value: object) -> float | None:
    """Budget money: an int is micro-dollars (the ledger's unit), a float or Decimal dollars."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return usd(value)
    if isinstance(value, float | Decimal):
        return float(value)
    raise TypeError(f"budget amount must be int micros or float dollars, got {value!r}")


def _amount(status: Any, name: str) -> float | None:
    micros = getattr(status, f"{name}_micros", None)
    return _money(micros if isinstance(micros, int) else getattr(status, name, None))


def _budget(status: Any) -> dict[str, Any]:
    spent = _amount(status, "spent")
    limit = _amount(status, "limit")
    fraction = getattr(status, "fraction", None)
    if fraction is None and spent is not None and limit:
        fraction = spent / limit
    return {
        "name": str(status.name),
        "spent_usd": spent,
        "limit_usd": limit,
        "held_usd": _amount(status, "held"),
        "fraction": None if fraction is None or not math.isfinite(fraction) else float(fraction),
        "resets_at": iso(getattr(status, "resets_at", None)),
    }


def _alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": str(alert.get("kind", "")),
        "scope": str(alert.get("scope", "")),
        "message": str(alert.get("message", "")),
        "created_at": iso(alert.get("created_at")),
    }


def _money_fields(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "cost_usd": usd(totals.cost_micros),
        "baseline_usd": usd(totals.baseline_micros),
        "saved_usd": usd(totals.saved_micros),
    }


def _kind_fields(totals: Totals) -> dict[str, Any]:
    return {
        "hits_exact": totals.hits_exact,
        "hits_semantic": totals.hits_semantic,
        # A batch row went upstream after the cache had no answer: a miss for the hit rate.
        "misses": totals.misses + totals.batches,
        "bypasses": totals.bypasses,
        "errors": totals.errors,
        "hit_rate": totals.hit_rate,
    }


def _ranked(groups: Sequence[Totals]) -> list[dict[str, Any]]:
    """Groups by baseline cost, largest first; the tail past `MAX_GROUPS` summed as other."""
    ordered = sorted(
        groups, key=lambda t: (-t.baseline_micros, -t.cost_micros, str(t.group[0] or ""))
    )
    rows = [{"name": t.group[0], **_money_fields(t)} for t in ordered[:MAX_GROUPS]]
    tail = ordered[MAX_GROUPS:]
    if tail:
        other = {
            "name": f"{len(tail)} others",
            "requests": sum(t.requests for t in tail),
            "cost_usd": usd(sum(t.cost_micros for t in tail)),
            "baseline_usd": usd(sum(t.baseline_micros for t in tail)),
            "saved_usd": usd(sum(t.saved_micros for t in tail)),
        }
        rows.append(other)
    return rows


def dashboard_data(
    ledger: Ledger,
    days: int,
    now: float,
    tz: str = "UTC",
    *,
    budgets: BudgetStatuses = no_budgets,
    alerts: Alerts = no_alerts,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Everything the page draws for the last `days` local days up to `now` (epoch seconds).

    Blocks on SQLite (one sum per day plus three over the window): call it off the loop.
    """
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be between 1 and {MAX_DAYS}, got {days}")
    today = datetime.fromtimestamp(now, zone(tz)).date()
    first = today - timedelta(days=days - 1)
    daily: list[dict[str, Any]] = []
    for offset in range(days):
        day: date = first + timedelta(days=offset)
        start_ts, end_ts = day_window(day, tz)
        totals = ledger.totals(start_ts, end_ts, tenant=tenant)
        daily.append({"day": day.isoformat(), **_money_fields(totals), **_kind_fields(totals)})
    window_start, _ = day_window(first, tz)
    _, window_end = day_window(today, tz)

    def by(column: GroupBy) -> list[Totals]:
        return ledger.totals_by(window_start, window_end, (column,), tenant=tenant)

    overall = ledger.totals(window_start, window_end, tenant=tenant)
    baseline = overall.baseline_micros
    return {
        "generated_at": iso(now),
        "timezone": tz,
        "days": days,
        "window": {"start": iso(window_start), "end": iso(window_end)},
        "summary": {
            **_money_fields(overall),
            **_kind_fields(overall),
            "saved_fraction": overall.saved_micros / baseline if baseline > 0 else None,
            "saved_by_source_usd": {k: usd(v) for k, v in overall.saved_by_source.items()},
            "unpriced_models": list(overall.unpriced_models),
        },
        "daily": daily,
        "by_model": _ranked(by("model_used")),
        "by_feature": _ranked(by("feature")),
        "budgets": [_budget(status) for status in budgets()],
        "alerts": [_alert(alert) for alert in list(alerts())[:MAX_ALERTS]],
    }
