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
    period = _shortest_period(text)
    return None if period is None else _bounds(period, now, tz)[1]


def relative_start(text: str, now: float, tz: str) -> float | None:
    """Epoch seconds since which an answer can be about the period `text` asks about, asked
    at `now` ("today": local midnight); None when `text` names no relative date.

    The other side of `relative_expiry`: "오늘 서울 날씨" must not be served an answer to
    "서울 날씨" stored three days ago (the dates guard lets "today" on one side pass, since it
    usually means "now")."""
    period = _shortest_period(text)
    return None if period is None else _bounds(period, now, tz)[0]


def _shortest_period(text: str) -> str | None:
    periods = relative_periods(text)
    return min(periods, key=_ORDER.index) if periods else None


def _bounds(period: str, now: float, tz: str) -> tuple[float, float]:
    local = datetime.fromtimestamp(now, zone(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, midnight + timedelta(days=1)
    elif period == "week":
        start = midnight - timedelta(days=local.weekday())
        end = midnight + timedelta(days=7 - local.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
        end = midnight.replace(
            day=1, month=local.month % 12 + 1, year=local.year + local.month // 12
        )
    else:
        start = midnight.replace(day=1, month=1)
        end = midnight.replace(day=1, month=1, year=local.year + 1)
    # Wall-clock midnights in the zone: rebuilt from their fields, so a DST change in between
    # does not shift them by an hour.
    return _wall_midnight(start, tz), _wall_midnight(end, tz)


def _wall_midnight(day: datetime, tz: str) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz)).timestamp()
