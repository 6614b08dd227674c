"""The dates guard: years, months, weekdays, days of month, relative days and am/pm.

English and Korean share one vocabulary of labels ("내일" and "tomorrow" are both "tomorrow"), so
a cached English prompt and a Korean one compare on the same terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from service.guards.text import HANGUL, GuardVerdict, accept, normalize, refuse, sentence_initial

_MONTHS: Final = tuple(
    "January February March April May June July August September October November December".split()
)
_WEEKDAYS: Final = tuple("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())
_MONTH_WORD: Final = re.compile(
    r"\b(?P<word>january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\b\.?",
    re.IGNORECASE,
)
_WEEKDAY_WORD: Final = re.compile(
    r"\b(?:(?P<full>monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
    r"|(?P<abbr>Mon|Tues?|Wed|Thu(?:rs?)?|Fri)\.?)\b",
    re.IGNORECASE,
)
_YEAR: Final = re.compile(r"(?<![\d.,$€£¥₩])(1[5-9]\d\d|20\d\d)(?![\d%]|,\d|\.\d)")
_ISO_DATE: Final = re.compile(r"(?<!\d)(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?!\d)")
_DIGIT_AFTER: Final = re.compile(r"\s?\d")
_DAY_AFTER_MONTH: Final = re.compile(r"\s([0-3]?\d)(?:st|nd|rd|th)?(?![\d:])", re.IGNORECASE)
_DAY_BEFORE_MONTH: Final = re.compile(
    r"(?<!\d)([0-3]?\d)(?:st|nd|rd|th)?\s(?:of\s)?$", re.IGNORECASE
)
_MONTH_PREPOSITION: Final = re.compile(
    r"\b(?:in|of|for|during|until|till|since|by|early|late|mid|before|after|from|through)[\s-]+$",
    re.IGNORECASE,
)
_AM_PM: Final = re.compile(r"\d\s?(?P<x>[ap])\.?m\.?(?![a-z])", re.IGNORECASE)
_RELATIVE_EN: Final = re.compile(
    r"\b(?:(?P<day>yesterday|today(?!'s)|tonight|tomorrow)"
    r"|(?P<after>day after tomorrow|day before yesterday)"
    r"|(?P<which>last|next|this|coming|past|previous)\s+(?P<unit>week|weekend|month|year)"
    r"|(?P<span>weekend|weekday)s?)\b",
    re.IGNORECASE,
)
_KO_WEEKDAY: Final = re.compile(r"([월화수목금토일])\s?요일")
_KO_MONTH: Final = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s?월(?!요일)")
_KO_MONTH_DAY: Final = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s?월\s?([0-3]?\d)\s?일")
# Korean relative dates, one group per label (in English, so "내일" matches "tomorrow").
_KO_RELATIVE_LABELS: Final = (
    ("day before yesterday", r"그저께|그제"),
    ("yesterday", r"어제|어저께|어젯|(?<![가-힣])작일"),
    ("today", r"오늘(?!날)|(?<![가-힣])금일"),
    ("tomorrow", r"(?<![가-힣])내일|(?<![가-힣])명일(?!동)"),
    ("day after tomorrow", r"(?<![가-힣])모레"),
    ("last weekend", r"지난\s?주말|저번\s?주말"),
    ("this weekend", r"이번\s?주말"),
    ("next weekend", r"다음\s?주말"),
    ("last week", r"지난\s?주|저번\s?주"),
    ("this week", r"이번\s?주"),
    ("next week", r"다음\s?주|담주"),
    ("last month", r"지난\s?달|저번\s?달"),
    ("this month", r"이번\s?달"),
    ("next month", r"다음\s?달"),
    ("year before last", r"재작년"),
    ("last year", r"(?<!재)작년|지난\s?해"),
    ("this year", r"올해|금년|이번\s?해"),
    ("next year", r"(?<![가-힣])내년|다음\s?해"),
    ("year after next", r"내후년"),
    ("weekend", r"주말"),
    ("weekday", r"평일"),
    ("am", r"오전"),
    ("pm", r"오후"),
)
_KO_RELATIVE: Final = re.compile(
    "|".join(f"(?P<k{i}>{pattern})" for i, (_, pattern) in enumerate(_KO_RELATIVE_LABELS))
)
_PRESENT: Final = frozenset({"today", "this week", "this weekend", "this month", "this year"})
# Dates that mean something else depending on when they are said, and the calendar period
# they move with ("tomorrow" names another day each day; "Friday" another one each week).
RELATIVE_PERIODS: Final = {
    **dict.fromkeys(
        ("today", "yesterday", "tomorrow", "day after tomorrow", "day before yesterday"), "day"
    ),
    **dict.fromkeys(
        (
            *(f"{w} {u}" for w in ("this", "next", "last") for u in ("week", "weekend")),
            *_WEEKDAYS,
        ),
        "week",
    ),
    **dict.fromkeys(("this month", "next month", "last month"), "month"),
    **dict.fromkeys(
        ("this year", "next year", "last year", "year before last", "year after next"), "year"
    ),
}
_TODAYS: Final = re.compile(r"\b(?:today|tonight)'s\b", re.IGNORECASE)
# A span counted from now ("3 days ago", "in two weeks", "사흘 뒤", "2주 후") names another date
# each day it is asked.
_COUNT_WORD: Final = r"(?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few|several)"
_OFFSET: Final = re.compile(
    rf"\b{_COUNT_WORD}\s+(?:days?|weeks?|months?|years?)\s+(?:ago|from\s+(?:now|today))\b"
    rf"|\bin\s+{_COUNT_WORD}\s+(?:days?|weeks?)(?:'|\s+time)?(?=\W|$)"
    r"|(?:(?:\d+|(?<![가-힣])(?:한|두|세|네|몇))\s?(?:일|주|달|개월|년)"
    r"|(?<![가-힣])(?:일주일|보름|이틀|사흘|나흘|닷새|엿새|이레|열흘))"
    r"\s?(?:후|뒤|전)(?:에|엔|에는|의)?(?![가-힣])",
    re.IGNORECASE,
)


def _month_mentions(text: str) -> Iterator[str]:
    for m in _MONTH_WORD.finditer(text):
        word = m["word"]
        before = text[max(0, m.start() - 24) : m.start()]
        near_digit = _DIGIT_AFTER.match(text, m.end()) or _DAY_BEFORE_MONTH.search(before)
        # "may", "march" and the abbreviations are common words or names: they need a number
        # beside them ("May 5", "5 Mar"); "May"/"March" also count after "in", "of", ... or
        # capitalised mid-sentence.
        ambiguous = word.lower() in ("may", "march")
        as_month = _MONTH_PREPOSITION.search(before) or (
            word[0].isupper() and not sentence_initial(text, m.start())
        )
        if not ((len(word) > 3 and not ambiguous) or near_digit or (ambiguous and as_month)):
            continue
        month = next(name for name in _MONTHS if name.lower().startswith(word.lower()[:3]))
        yield month
        day = _DAY_AFTER_MONTH.match(text, m.end() - (1 if m.group(0).endswith(".") else 0))
        day = day or _DAY_BEFORE_MONTH.search(before)
        if day and 1 <= int(day.group(1)) <= 31:
            yield f"{month} {int(day.group(1))}"


def _dates(text: str) -> set[str]:
    """Date features: years, months, weekdays, days of month, relative days/weeks, am/pm."""
    found = {m.group(1) for m in _YEAR.finditer(text)}
    found.update(_month_mentions(text))
    for m in _WEEKDAY_WORD.finditer(text):
        if m["abbr"] and not (m["abbr"][0].isupper() and m["abbr"][1:].islower()):
            continue
        prefix = (m["full"] or m["abbr"]).lower()[:3]
        found.add(next(d for d in _WEEKDAYS if d.lower().startswith(prefix)))
    for m in _ISO_DATE.finditer(text):
        if 1 <= int(m.group(2)) <= 12:
            month = _MONTHS[int(m.group(2)) - 1]
            found.update((month, f"{month} {int(m.group(3))}"))
    found.update(m["x"].lower() + "m" for m in _AM_PM.finditer(text))
    for m in _RELATIVE_EN.finditer(text):
        if m["day"]:
            found.add("today" if m["day"].lower() == "tonight" else m["day"].lower())
        elif m["after"]:
            found.add(m["after"].lower())
        elif m["which"]:
            which = m["which"].lower()
            which = {"past": "last", "previous": "last", "coming": "next"}.get(which, which)
            found.add(f"{which} {m['unit'].lower()}")
            if m["unit"].lower() == "weekend":
                found.add("weekend")
        else:
            found.add(m["span"].lower())
    if HANGUL.search(text):
        found.update(
            _WEEKDAYS["월화수목금토일".index(m.group(1))] for m in _KO_WEEKDAY.finditer(text)
        )
        found.update(_MONTHS[int(m.group(1)) - 1] for m in _KO_MONTH.finditer(text))
        found.update(
            f"{_MONTHS[int(m.group(1)) - 1]} {int(m.group(2))}"
            for m in _KO_MONTH_DAY.finditer(text)
        )
        for m in _KO_RELATIVE.finditer(text):
            label = _KO_RELATIVE_LABELS[int((m.lastgroup or "k0")[1:])][0]
            found.update((label, "weekend") if label.endswith(" weekend") else (label,))
    return found


def check_dates(cached: str, new: str) -> GuardVerdict:
    """Refuse when years, months, weekdays, days of month, relative days ("tomorrow", "어제",
    "next week", "작년") or am/pm differ; Korean and English share one vocabulary, so "내일"
    matches "tomorrow". Only presence counts, not how often a date is repeated. "today" or "this
    year" on one side only passes (it usually means "now"); against another date it refuses.

    Limits: "May"/"March" and month abbreviations need a number beside them, a preposition
    ("in May") or a capital mid-sentence (they are also common words); any 4-digit number from
    1500 to 2099 reads as a year; durations ("3 years") are left to the numbers guard.
    """
    a, b = _dates(normalize(cached)), _dates(normalize(new))
    a_only, b_only = a - b, b - a
    if not b_only:
        a_only -= _PRESENT
    if not a_only:
        b_only -= _PRESENT
    if not a_only and not b_only:
        return accept("dates")
    return refuse("dates", "dates", a_only, b_only)


def relative_periods(text: str) -> set[str]:
    """The calendar periods ("day", "week", "month", "year") that `text`'s dates move with:
    "What should I cook today?" gives {"day"}, "이번 주 일정" {"week"}, "What is a mutex?" none."""
    norm = normalize(text)
    found = {RELATIVE_PERIODS[label] for label in _dates(norm) if label in RELATIVE_PERIODS}
    if _TODAYS.search(norm) or _OFFSET.search(norm):
        found.add("day")
    return found
