"""Local calendar days and months as UTC windows: the periods of reports and budgets.

Windows are half-open `[start_ts, end_ts)` from local midnight to local midnight in an IANA
zone, so a day may be 23 or 25 hours long.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.errors import InvalidRequest


def zone(tz: str) -> ZoneInfo:
    """The IANA zone `tz`; `InvalidRequest` naming it when there is no such zone."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"unknown time zone {tz!r}") from exc


# Periods end at the next local midnight, which must be a date too: 9999-12-31 has none.
FIRST_YEAR, LAST_YEAR = 1970, 9998


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidRequest(f"year must be {FIRST_YEAR}..{LAST_YEAR}, got {year}")


def day_window(day: date, tz: str = "UTC") -> tuple[float, float]:
    """Epoch seconds of local midnight starting `day` and the next one, in zone `tz`."""
    local = zone(tz)
    _check_year(day.year)
    start = datetime(day.year, day.month, day.day, tzinfo=local)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=local)
    return start.timestamp(), end.timestamp()


def month_window(year: int, month: int, tz: str = "UTC") -> tuple[float, float]:
    """Epoch seconds of local midnight starting the month and the one starting the next."""
    local = zone(tz)
    _check_year(year)
    if not 1 <= month <= 12:
        raise InvalidRequest(f"month must be 1..12, got {month}")
    start = datetime(year, month, 1, tzinfo=local)
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=local)
    return start.timestamp(), following.timestamp()
