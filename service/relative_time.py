"""An answer to a prompt that names a relative time holds for the period it was asked in.

"What should I cook today?" answered at 15:00 is the wrong answer to the same words tomorrow,
and "이번 주 회의 일정" to the same words next week: the words stay, their meaning moves. So an
entry whose prompt names a date relative to when it is asked ("today", "tomorrow", "어제",
"next week", "Friday", "이번 달", "last year") expires at the end of the shortest such
calendar period (local midnight, Monday, the 1st, 1 January) in the configured `timezone`,
unless its TTL ends sooner. A prompt misread as relative only loses hits after that time,
never serves a wrong one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from service.guards.dates import relative_periods
from service.periods import zone

# Shortest first: the entry lives to the end of the shortest period its prompt names.
_ORDER = ("day", "week", "month", "year")


def relative_expiry(text: str, now: float, tz: str) -> float | None:
    """Epoch seconds when an answer to `text`, asked at `now`, stops holding; None when
    `text` names no relative date."""
    periods = relative_periods(text)
    if not periods:
        return None
    period = min(periods, key=_ORDER.index)
    local = datetime.fromtimestamp(now, zone(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = midnight + timedelta(days=1)
    elif period == "week":
        end = midnight + timedelta(days=7 - local.weekday())
    elif period == "month":
        end = midnight.replace(
            day=1, month=local.month % 12 + 1, year=local.year + local.month // 12
        )
    else:
        end = midnight.replace(day=1, month=1, year=local.year + 1)
    # Wall-clock midnight in the zone: rebuilt from its fields, so a DST change in between
    # does not shift it by an hour.
    return datetime(end.year, end.month, end.day, tzinfo=zone(tz)).timestamp()
