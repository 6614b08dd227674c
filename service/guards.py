"""Precision guards: veto a semantic hit when two prompts differ in a detail that changes answers.

Sentence embeddings are blind to the details users ask about: "15% of 200" and "25% of 200",
"Paris" and "London", "can" and "can't" all land at cosine ~0.95. After the cosine check the
policy runs the enabled guards on (cached text, new text); each is a pure function returning a
`GuardVerdict`, and the first refusal turns the hit into a miss. Each guard is a narrow,
explainable lexical rule for one false-hit family in English and Korean, switchable by name in
`GUARDS` so that it can be measured alone. They are heuristics, not parsers: a refused paraphrase
costs one upstream call, a wrong cached answer costs trust, but a guard that refuses what users
merely rephrase is worthless, so each rule was loosened where labelled paraphrase data showed it
refusing true duplicates. The known limits of each rule are in its docstring. Every guard runs in
time linear in the text (long prompts included) and keeps no state between calls.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """One guard's decision on a pair; `reason` is a short line for logs and the benchmark."""

    passed: bool
    guard: str
    reason: str


Guard = Callable[[str, str], GuardVerdict]


def _table(spec: str) -> Mapping[str, str]:
    """A constant lexicon written compactly as "key=value key=value ..."."""
    return MappingProxyType(dict(item.split("=", 1) for item in spec.split()))


def _numbers_table(spec: str) -> Mapping[str, int]:
    return MappingProxyType({key: int(value) for key, value in _table(spec).items()})


_CHAR_MAP: Final = str.maketrans(
    {"‘": "'", "’": "'", "ʼ": "'", "“": '"', "”": '"', "−": "-", "–": "-", "—": " - "}
)
_SPACES: Final = re.compile(r"\s+")
_HANGUL: Final = re.compile(r"[가-힣]")
_WORD: Final = re.compile(r"[a-z]+", re.IGNORECASE)
_SENTENCE_END: Final = frozenset('.!?:;"(\n')
_STOPWORDS: Final = frozenset(
    """a about above across after again against all almost also am among an and any anyone
    anything are as at be because been before being below between both but by can could did do
    does doing done down during each either else even ever every few for from further get gets
    getting got had has have having he her here hers him his how however i if in into is it its
    just let like many may me might mine more most much must my need no nor not now of off often
    on once one ones only or other others our out over own per please quite rather really same
    shall she should so some someone something such than that the their them then there these
    they thing things this those though through thus to too under until up upon us use used using
    very via vs want was way ways we well were what whats when where whether which while who whom
    whose why will with within without would yes yet you your yours hi hello thanks thank ok okay
    can't don't doesn't isn't i'm i've i'd i'll it's what's how's that's there's let's won't
    aren't didn't wasn't weren't haven't hasn't wouldn't shouldn't couldn't you're we're they're
    dont doesnt cant isnt im ive hows""".split()
)


def normalize(text: str) -> str:
    """NFKC (full-width forms to ASCII), plain quotes and dashes, single spaces; case is kept."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)).strip()


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def _fmt(items: Iterable[str], limit: int = 8) -> str:
    shown = sorted(items)
    more = f", ... +{len(shown) - limit}" if len(shown) > limit else ""
    return "{" + ", ".join(shown[:limit]) + more + "}"


def _ok(guard: str) -> GuardVerdict:
    return GuardVerdict(True, guard, "ok")


def _differ(guard: str, what: str, a: Iterable[str], b: Iterable[str]) -> GuardVerdict:
    return GuardVerdict(False, guard, f"{what} differ: {_fmt(a)} vs {_fmt(b)}")


# ------------------------------------------------------------------------------------ numbers

_EN_SCALE: Final = _numbers_table(
    "hundred=100 thousand=1000 million=1000000 billion=1000000000 trillion=1000000000000"
)
_KO_SCALE: Final = _numbers_table("십=10 백=100 천=1000 만=10000 억=100000000 조=1000000000000")
_DIGIT_NUMBER: Final = re.compile(
    r"(?P<sign>(?<![\w.,])(?<!\d )-)?"  # not a minus: COVID-19, 2024-03, "1946 -1947"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
    r"(?:\s?(?P<scale>hundred|thousand|million|billion|trillion)\b|(?P<k>k)\b"
    r"|(?P<ko>[십백천만억조]+)(?!각|큼))?"
    r"(?:(?P<ord>st|nd|rd|th)\b|\s?(?P<ord_ko>번째|째))?"
    r"(?:\s?(?P<pct>%|percent\b|per cent\b|퍼센트|프로(?!그)))?",
    re.IGNORECASE,
)
_EN_TENS: Final = _numbers_table(
    "twenty=20 thirty=30 forty=40 fifty=50 sixty=60 seventy=70 eighty=80 ninety=90"
)
_EN_UNITS: Final = _numbers_table(
    "zero=0 one=1 two=2 three=3 four=4 five=5 six=6 seven=7 eight=8 nine=9 ten=10 eleven=11 "
    "twelve=12 thirteen=13 fourteen=14 fifteen=15 sixteen=16 seventeen=17 eighteen=18 "
    "nineteen=19 dozen=12"
)
_EN_ORDINALS: Final = _numbers_table(
    "first=1 second=2 third=3 fourth=4 fifth=5 sixth=6 seventh=7 eighth=8 ninth=9 tenth=10 "
    "eleventh=11 twelfth=12 twentieth=20 hundredth=100"
)
_PERCENT_AFTER: Final = re.compile(r"[\s-]?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_TIME_BEFORE_SECOND: Final = re.compile(r"(?:\b(?:a|per|one|few|split)|\d)\s+$", re.IGNORECASE)
# Native Korean numerals count only before a counter ("두 개", "세 번째"): bare "세", "네", "한"
# are also "world", "yes" and "did". Glued forms ("세대" = generation) need a safe counter.
_KO_TENS: Final = _numbers_table(
    "열=10 스물=20 스무=20 서른=30 마흔=40 쉰=50 예순=60 일흔=70 여든=80 아흔=90"
)
_KO_UNITS: Final = _numbers_table(
    "하나=1 한=1 두=2 둘=2 세=3 셋=3 네=4 넷=4 다섯=5 여섯=6 일곱=7 여덟=8 아홉=9"
)
_KO_SINO_DIGITS: Final = _numbers_table("일=1 이=2 삼=3 사=4 오=5 육=6 칠=7 팔=8 구=9")
_KO_GLUED_COUNTERS: Final = frozenset("번째 째 개 번 명 가지 시간 시 살 마리 달 사람".split())
# What may follow a counter: a particle, or the end of the word.
_KO_AFTER_COUNTER: Final = r"(?=[을를이가은는의에도만씩로으과와까부보뿐밖당마쯤정짜]|[^가-힣]|$)"
_KO_NATIVE: Final = re.compile(
    r"(?<![가-힣])(?:(?P<tens>" + "|".join(_KO_TENS) + r")\s?)?"
    r"(?P<unit>" + "|".join(_KO_UNITS) + r")?(?P<gap>\s?)"
    r"(?P<counter>번째|째|개월|개|명|번|살|시간|시|달|마리|잔|병|권|장|대|가지|사람|분|그릇|줄"
    r"|쪽|주|곳|군데|배|켤레|벌|송이|통|칸|끼|판|차례|바퀴|해)" + _KO_AFTER_COUNTER
)
_KO_NATIVE_NOUN: Final = re.compile(
    r"(?<![가-힣])(?P<unit>하나|둘|셋|넷|다섯|여섯|일곱|여덟|아홉)"
    r"(?=(?:는|은|를|을|가|이|의|도|만|와|과|씩|뿐)?(?:[^가-힣]|$))"
)
_KO_FIRST: Final = re.compile(r"(?<![가-힣])첫\s?(?P<ord>번째|째)?")
_KO_SINO: Final = re.compile(
    r"(?<![가-힣])(?P<num>[일이삼사오육칠팔구십백천만억조]+)\s?"
    r"(?=(?:원|달러|년|개월|층|퍼센트|프로|학년|세|주년|회|차|명|개|번째|번|시간|분|초|배|위|등)"
    + _KO_AFTER_COUNTER
    + ")"
)


@dataclass(frozen=True, slots=True)
class _Number:
    start: int
    end: int
    key: str  # "15", "15%", "#2" (the ordinal 2nd)
    soft: bool  # "one", "first", "한 번": often not a count; forgiven when left unmatched


def _key(value: Decimal, *, percent: bool = False, ordinal: bool = False) -> str:
    text = format(value.normalize(), "f")
    return f"#{text}" if ordinal else f"{text}%" if percent else text


def _sino_value(word: str) -> int | None:
    """Value of a Sino-Korean numeral word ("삼천", "십만"); None for a lone "이" (= "this")."""
    if word == "이":
        return None
    total, section, digit = 0, 0, 0
    for char in word:
        if char in _KO_SINO_DIGITS:
            digit = _KO_SINO_DIGITS[char]
        elif char in "십백천":
            section += (digit or 1) * _KO_SCALE[char]
            digit = 0
        else:
            total += ((section + digit) or 1) * _KO_SCALE[char]
            section, digit = 0, 0
    return total + section + digit


def _english_number_runs(text: str) -> Iterator[tuple[int, int, int, bool]]:
    """(start, end, value, is_lone_one) for runs like "twenty five", "two hundred and six"."""
    run: list[tuple[int, int, str]] = []

    def flush() -> Iterator[tuple[int, int, int, bool]]:
        if run:
            total, current = 0, 0
            for _, _, word in run:
                if word == "hundred":
                    current = (current or 1) * 100
                elif word in _EN_SCALE:
                    total += (current or 1) * _EN_SCALE[word]
                    current = 0
                else:
                    current += _EN_UNITS.get(word, 0) + _EN_TENS.get(word, 0)
            yield run[0][0], run[-1][1], total + current, [w for _, _, w in run] == ["one"]
            run.clear()

    for m in _WORD.finditer(text):
        word = m.group(0).lower()
        if word == "and" and run and run[-1][2] in _EN_SCALE:
            continue  # "two hundred and six"
        if word not in _EN_UNITS and word not in _EN_TENS and word not in _EN_SCALE:
            yield from flush()
            continue
        if run:
            prev = run[-1][2]
            joins = (
                (prev in _EN_TENS and _EN_UNITS.get(word, 10) < 10)
                or word in _EN_SCALE
                or (prev in _EN_SCALE and word not in _EN_SCALE)
            )
            if not joins or text[run[-1][1] : m.start()].lower().strip(" -") not in ("", "and"):
                yield from flush()
        run.append((m.start(), m.end(), word))
    yield from flush()


def _numbers(text: str) -> list[_Number]:
    """Every number mention with its span, sorted: digits, English words, Korean numerals."""
    found: list[_Number] = []
    starts: list[int] = []

    def add(start: int, end: int, key: str, soft: bool = False) -> None:
        i = bisect.bisect_left(starts, start)
        if (i > 0 and found[i - 1].end > start) or (i < len(found) and found[i].start < end):
            return  # an earlier, more specific reading already covers this span
        starts.insert(i, start)
        found.insert(i, _Number(start, end, key, soft))

    for m in _DIGIT_NUMBER.finditer(text):
        value = Decimal(m["int"].replace(",", "") + (m["frac"] or ""))
        if m["scale"]:
            value *= _EN_SCALE[m["scale"].lower()]
        elif m["k"]:
            value *= 1000
        elif m["ko"]:
            for char in m["ko"]:
                value *= _KO_SCALE[char]
        ordinal = bool(m["ord"] or m["ord_ko"])
        add(
            m.start(),
            m.end(),
            _key(-value if m["sign"] else value, percent=bool(m["pct"]), ordinal=ordinal),
        )
    for start, end, run_value, lone_one in _english_number_runs(text):
        pct = _PERCENT_AFTER.match(text, end)
        key = _key(Decimal(run_value), percent=bool(pct))
        add(start, pct.end() if pct else end, key, lone_one)
    for m in _WORD.finditer(text):
        word = m.group(0).lower()
        if word not in _EN_ORDINALS or (
            word == "second" and _TIME_BEFORE_SECOND.search(text, max(0, m.start() - 8), m.start())
        ):
            continue  # "a second", "per second": time, not order
        add(
            m.start(),
            m.end(),
            _key(Decimal(_EN_ORDINALS[word]), ordinal=True),
            word in ("first", "second"),
        )
    if not _HANGUL.search(text):
        return found
    for m in _KO_NATIVE.finditer(text):
        if not (m["tens"] or m["unit"]) or (
            not m["gap"] and m["counter"] not in _KO_GLUED_COUNTERS
        ):
            continue
        native = _KO_TENS.get(m["tens"] or "", 0) + _KO_UNITS.get(m["unit"] or "", 0)
        ordinal = m["counter"] in ("번째", "째")
        add(m.start(), m.end(), _key(Decimal(native), ordinal=ordinal), native == 1 and not ordinal)
    for m in _KO_NATIVE_NOUN.finditer(text):
        native = _KO_UNITS[m["unit"]]
        add(m.start(), m.end(), _key(Decimal(native)), native == 1)
    for m in _KO_FIRST.finditer(text):
        add(m.start(), m.end(), "#1", not m["ord"])
    for m in _KO_SINO.finditer(text):
        sino = _sino_value(m["num"])
        if sino is not None:
            add(m.start(), m.end("num"), _key(Decimal(sino)))
    return found


def _number_label(key: str) -> str:
    if not key.startswith("#"):
        return key
    value = key[1:]
    if value[-2:] in ("11", "12", "13"):
        return value + "th"
    return value + {"1": "st", "2": "nd", "3": "rd"}.get(value[-1], "th")


def check_numbers(cached: str, new: str) -> GuardVerdict:
    """Refuse when the multisets of numbers differ ("15%" vs "25%", "2nd" vs "3rd", "세 개" vs
    "네 개"); "1,000" == "1000" == "one thousand", "five" == "5", "3천" == "3000", "1.50" == "1.5",
    and an ordinal equals its cardinal ("13th" == "13번째" == "13").

    Soft mentions ("one", "first", "한 번") are forgiven when the other side has no unmatched
    number left, so "How does one ..." still matches "How do I ...". Limits: units are not
    compared ("5 kg" == "5 lb"); roman numerals, fractions in words ("a half") and Korean
    compounds with spaces ("1억 2천만") are not read as one number.
    """
    a_nums, b_nums = _numbers(normalize(cached)), _numbers(normalize(new))
    a = Counter(n.key.lstrip("#") for n in a_nums)
    b = Counter(n.key.lstrip("#") for n in b_nums)
    if a == b:
        return _ok("numbers")
    a_only, b_only = a - b, b - a

    def soft(nums: list[_Number]) -> set[str]:
        """Values only ever mentioned softly."""
        return {n.key.lstrip("#") for n in nums if n.soft} - {
            n.key.lstrip("#") for n in nums if not n.soft
        }

    if (not b_only and set(a_only) <= soft(a_nums)) or (not a_only and set(b_only) <= soft(b_nums)):
        return _ok("numbers")
    labels = {n.key.lstrip("#"): _number_label(n.key) for n in (*a_nums, *b_nums)}
    return _differ(
        "numbers",
        "numbers",
        (labels[k] for k in a_only.elements()),
        (labels[k] for k in b_only.elements()),
    )


# -------------------------------------------------------------------------------------- dates

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
    ("yesterday", r"어제|어저께|어젯"),
    ("today", r"오늘(?!날)"),
    ("tomorrow", r"(?<![가-힣])내일"),
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
            word[0].isupper() and not _sentence_initial(text, m.start())
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
    if _HANGUL.search(text):
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
        return _ok("dates")
    return _differ("dates", "dates", a_only, b_only)


# ------------------------------------------------------------------------------------ amounts

_CURRENCY_SYMBOLS: Final = _table(
    "US$=USD C$=CAD A$=AUD HK$=HKD $=USD €=EUR £=GBP ¥=JPY 円=JPY ₩=KRW ₹=INR ₽=RUB ₺=TRY "
    "₫=VND ₱=PHP ฿=THB ₿=BTC 元=CNY"
)
_CURRENCY_WORDS: Final = _table(
    "dollar=USD dollars=USD buck=USD bucks=USD usd=USD euro=EUR euros=EUR eur=EUR sterling=GBP "
    "quid=GBP gbp=GBP pence=GBX yen=JPY jpy=JPY yuan=CNY renminbi=CNY rmb=CNY cny=CNY krw=KRW "
    "rupee=INR rupees=INR inr=INR rs=INR ruble=RUB rubles=RUB rouble=RUB roubles=RUB cad=CAD "
    "aud=AUD chf=CHF franc=CHF francs=CHF hkd=HKD sgd=SGD btc=BTC bitcoin=BTC bitcoins=BTC "
    "peso=MXN pesos=MXN cent=cent cents=cent 달러=USD 유로=EUR 파운드=GBP 엔화=JPY 위안=CNY "
    "위안화=CNY 원화=KRW 루피=INR 센트=cent 비트코인=BTC"
)
# Currencies only right after a number: "won" (verb), "원" (want), "엔" ("에는"), "불" (fire).
_CURRENCY_AFTER_NUMBER: Final = _table("won=KRW 원=KRW 엔=JPY 불=USD")
_CURRENCY: Final = re.compile(
    r"(?P<sym>US\$|C\$|A\$|HK\$|[$€£¥円₩₹₽₺₫₱฿₿元])"
    r"|(?<![A-Za-z])(?P<word>"
    + "|".join(sorted(_CURRENCY_WORDS, key=len, reverse=True))
    + r")(?![A-Za-z])"
    r"|(?P<after>(?<![A-Za-z])won(?![A-Za-z])|원|엔|불)",
    re.IGNORECASE,
)
_PER_CENT: Final = re.compile(r"per\s$", re.IGNORECASE)


def _amounts(text: str) -> tuple[frozenset[str], Counter[str]]:
    """(currencies mentioned, "CODE amount" for each currency with a number beside it)."""
    numbers = _numbers(text)
    by_end = {n.end: n for n in numbers}
    by_start = {n.start: n for n in numbers}
    currencies: set[str] = set()
    amounts: Counter[str] = Counter()
    for m in _CURRENCY.finditer(text):
        start, end = m.span()
        word = (m["word"] or "").lower()
        if word.startswith("cent") and _PER_CENT.search(text, max(0, start - 4), start):
            continue  # "per cent"
        # A number right before ("5 dollars", "5만 원") or right after ("$5", "USD 5", "Rs.5").
        before = by_end.get(start) or (
            by_end.get(start - 1) if text[start - 1 : start] == " " else None
        )
        after = next(
            (
                by_start[i]
                for i in range(end, end + 3)
                if i in by_start and text[end:i].strip(" .") == ""
            ),
            None,
        )
        if m["after"]:
            if before is None:
                continue
            code = _CURRENCY_AFTER_NUMBER[m["after"].lower()]
        elif m["sym"]:
            code = _CURRENCY_SYMBOLS[m["sym"].upper()]
        else:
            code = _CURRENCY_WORDS[word]
        currencies.add(code)
        number = after if m["sym"] and after is not None else before or after
        if number is not None:
            amounts[f"{code} {number.key.lstrip('#')}"] += 1
    return frozenset(currencies), amounts


def check_amounts(cached: str, new: str) -> GuardVerdict:
    """Refuse when both sides name money and the currencies or amounts differ ("$5" vs "€5",
    "$5" vs "$50", "5달러" vs "5유로"); "$5" == "5 dollars" == "5달러" == "USD 5", "5만 원" ==
    "₩50,000". A currency on one side only passes: "under 15k" vs "under INR 15k" asks the same,
    and the bare number is the numbers guard's business.

    Limits: "pound(s)" is not read as money (it is as often a weight); "¥" is read as yen.
    """
    a_cur, a_amt = _amounts(normalize(cached))
    b_cur, b_amt = _amounts(normalize(new))
    if not a_cur or not b_cur:
        return _ok("amounts")
    if a_cur != b_cur:
        return _differ("amounts", "currencies", a_cur - b_cur, b_cur - a_cur)
    if a_amt != b_amt:
        return _differ("amounts", "amounts", (a_amt - b_amt).elements(), (b_amt - a_amt).elements())
    return _ok("amounts")


# ----------------------------------------------------------------------------------- negation

_EN_NEGATIONS: Final = frozenset(
    "not no never none nobody nothing nowhere neither without cannot unable noone nope dont "
    "doesnt didnt cant wont isnt arent wasnt werent havent hasnt hadnt shouldnt wouldnt couldnt "
    "mustnt neednt aint".split()
)
_EN_NEGATION_TOKEN: Final = re.compile(r"[a-z]+(?:'[a-z]+)?", re.IGNORECASE)
# Phrases with a negation word that do not negate: removed before counting.
_NOT_NEGATIONS: Final = re.compile(
    r"\bnot (?:only|just)\b|\bno matter\b|\bor (?:why )?not\b|\bno\.?\s?\d|뿐(?:만)?\s?아니라",
    re.IGNORECASE,
)
_KO_NEGATION_LABELS: Final = (
    # "안" before a verb, spaced or glued to a common one (not 안녕, 안내, 안드로이드).
    (
        "안",
        r"(?<![가-힣])안(?=\s)|(?<![가-힣])안(?:되|돼|됨|됐|될|된|하|해|했|함|할|한|가|와|먹"
        r"|보이|보여|봐|나와|나오|나요|열려|들|써|쓰|맞|좋)",
    ),
    ("않", r"않"),
    ("못", r"(?<![가-힣])못(?!생)|(?<!잘)(?<=[가-힣])못(?=하|해|했|한|할|함)"),  # not 잘못, 못생긴
    ("없", r"없(?!애|앤|앨|앴)"),  # not 없애다 (to remove)
    ("아니", r"아니(?!면)|아닌|아닙|아닐|아냐|아뇨"),  # not 아니면 (or else)
    ("지 마", r"지\s?(?:마|말)"),
    ("말고", r"(?<!지)(?<!지 )말고"),
    ("금지", r"금지"),
)
_KO_NEGATIONS: Final = re.compile(
    "|".join(f"(?P<k{i}>{pattern})" for i, (_, pattern) in enumerate(_KO_NEGATION_LABELS))
)


def _negations(text: str) -> list[str]:
    """Negation markers; "not only", "no matter", "or not", "뿐만 아니라" are not negations."""
    cleaned = _NOT_NEGATIONS.sub(" ", text)
    markers = [
        token
        for token in (m.group(0).lower() for m in _EN_NEGATION_TOKEN.finditer(cleaned))
        if token in _EN_NEGATIONS or token.endswith("n't")
    ]
    if _HANGUL.search(cleaned):
        markers.extend(
            _KO_NEGATION_LABELS[int(m.lastgroup[1:])][0]
            for m in _KO_NEGATIONS.finditer(cleaned)
            if m.lastgroup is not None
        )
    return markers


def check_negation(cached: str, new: str) -> GuardVerdict:
    """Refuse when the parity of negation markers differs (one side negated, the other not).

    English: not, n't, never, no, none, nothing, nobody, without, cannot, unable, ...; Korean:
    안, 않, 못, 없, 아니, 말고, 지 마, 금지. Double negation counts as positive. Limits: lexical
    antonyms ("fail" vs "pass", "모르다" vs "알다") and negative prefixes ("un-", "non-", "비-")
    are not markers; "안" glued to a verb is recognised only for common verbs.
    """
    a, b = _negations(normalize(cached)), _negations(normalize(new))
    if len(a) % 2 == len(b) % 2:
        return _ok("negation")
    return GuardVerdict(
        False,
        "negation",
        f"negation differs: {len(a)} vs {len(b)} markers {_fmt(set(a))} vs {_fmt(set(b))}",
    )


# ----------------------------------------------------------------------------------- entities

# Spans that are identifiers as a whole, blanked out before words are looked at.
_STRUCTURED: Final = re.compile(
    r"(?P<url>(?i:https?://|www\.)[^\s<>\"'`]+)"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|`+(?P<code>[^`]+)`+"
    # A call needs empty parentheses or a dotted/underscored name: "lesson(s)" is English.
    r"|(?P<call>[A-Za-z_]\w*\(\)|[A-Za-z_]\w*(?:[._]\w+)+\([^()\s]{0,40}\))"
    r"|(?P<scoped>[A-Za-z_]\w*(?:(?:::|->)[A-Za-z_~]\w*)+)"
    r"|(?P<flag>(?<![\w-])--[A-Za-z][\w-]+)"
    r"|(?P<path>(?<![\w/])(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*)"
)
_DOTTED_ACRONYM: Final = re.compile(r"\b(?:[A-Z]\.){2,}")
# "work.Then what?": a missing space, told from code ("pandas.DataFrame") by the next word.
_GLUED_SENTENCE: Final = re.compile(r"(?<=[a-z])\.(?P<next>[A-Z][a-z']*)")
_CODE_TOKENS: Final = re.compile(r"[\w. ]+")
_CHUNK: Final = re.compile(r"[^\s?!;,()\[\]{}\"<>/]+")
_LATIN_RUN: Final = re.compile(r"(?<![A-Za-zÀ-ɏ0-9])[A-Za-zÀ-ɏ_][A-Za-zÀ-ɏ0-9_.+#-]*")
# Code: snake_case, lower.dotted (os.path, config.yaml, example.com), v1.2, 1.2.3.
_CODE_LIKE: Final = re.compile(
    r"\w*_\w*[A-Za-z]\w*|[a-z_][\w-]*(?:\.[A-Za-z_][\w-]*)+|v\d+(?:\.\d+)*|\d+\.\d+\.\d+.*"
)
# Product-like names: camelCase/PascalCase inside (iPhone, GitHub), letters+digits (mp3, A102),
# C++ / C#, capitalised dotted (Node.js, ASP.NET).
_NAME_LIKE: Final = re.compile(
    r".*[a-z][A-Z].*|[A-Za-z]+\d\w*|[A-Za-z]\+\+|[A-Za-z]#|[A-Z][\w-]*(?:\.[A-Za-z_][\w-]*)+"
)
_ACRONYM: Final = re.compile(r"[A-Z][A-Z0-9&]*[A-Z][A-Z0-9&]*")
_VERSION_AFTER: Final = re.compile(
    r"\s?(?:(?P<dotted>v?\d+(?:\.\d+)+)|(?P<int>v?\d{1,2}))(?![\w.,])"
)
_ASCII_LETTER: Final = re.compile(r"[A-Za-z]")
_ASCII_UPPER: Final = re.compile(r"[A-Z]")
_FOLDED_TOKEN: Final = re.compile(r"[0-9a-zß-ÿā-ɏ]+")
_WORDISH: Final = re.compile(r"[\w' -]+")


@dataclass(frozen=True, slots=True)
class _Entities:
    strong: frozenset[str]  # identifiers, code, URLs, versions: any difference matters
    names: frozenset[str]  # capitalised words, acronyms, product names: a conflict matters


@dataclass(frozen=True, slots=True)
class _Folded:
    """A text prepared for "does it mention X?": casefolded, with a token -> positions index."""

    text: str
    tokens: list[str]
    index: Mapping[str, list[int]]

    @classmethod
    def of(cls, text: str) -> _Folded:
        folded = text.casefold()
        tokens = _FOLDED_TOKEN.findall(folded)
        index: dict[str, list[int]] = {}
        for i, token in enumerate(tokens):
            index.setdefault(token, []).append(i)
        return cls(folded, tokens, index)

    def mentions(self, entity: str) -> bool:
        """Whether the text mentions `entity`: names also as a plural or possessive ("Paris's"),
        identifiers as the same token sequence ("pandas.DataFrame" ~ "pandas DataFrame")."""
        parts = _FOLDED_TOKEN.findall(entity)
        if not parts:
            return entity in self.text
        *head, last = parts
        if _WORDISH.fullmatch(entity):
            endings: tuple[str, ...] = (last, last + "s", last + "es")
        elif _CODE_TOKENS.fullmatch(entity):
            endings = (last,)
        else:
            return entity in self.text  # URLs, emails, calls, paths: verbatim only
        if not head:
            return any(ending in self.index for ending in endings)
        return any(
            self.tokens[i : i + len(head)] == head
            and i + len(head) < len(self.tokens)
            and self.tokens[i + len(head)] in endings
            for i in self.index.get(head[0], ())
        )


def _prepare(text: str) -> str:
    text = _DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), normalize(text))
    return _GLUED_SENTENCE.sub(
        lambda m: (". " if m["next"].casefold() in _STOPWORDS else ".") + m["next"], text
    )


def _is_code(word: str) -> bool:
    return bool(_CODE_LIKE.fullmatch(word)) and any(len(part) > 1 for part in word.split("."))


def _entities(text: str) -> _Entities:
    """Casefolded entities: identifiers and code, URLs, emails, versions, acronyms, names."""
    strong: set[str] = set()
    names: set[str] = set()
    for m in _STRUCTURED.finditer(text):
        span = m[m.lastgroup] if m.lastgroup else m.group(0)
        strong.add(_SPACES.sub(" ", span).strip().casefold().rstrip(".,"))
    text = _STRUCTURED.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets
    if _HANGUL.search(text):
        # In Korean text any Latin-script word is a name or an identifier.
        for m in _LATIN_RUN.finditer(text):
            word = m.group(0).rstrip(".-")
            if len(word) > 1 and word.casefold() not in _STOPWORDS:
                (strong if _is_code(word) else names).add(word.casefold())
        return _Entities(frozenset(strong), frozenset(names))
    letters = len(_ASCII_LETTER.findall(text))
    shouting = letters >= 8 and len(_ASCII_UPPER.findall(text)) > 0.7 * letters
    long_words = [w for w in _WORD.findall(text) if len(w) >= 4]
    capitalised = sum(w[0].isupper() for w in long_words)
    title_case = len(long_words) >= 3 and capitalised >= 0.7 * len(long_words)
    for m in _CHUNK.finditer(text):
        chunk = m.group(0).strip(".:'*-")
        if not chunk or not any(c.isalpha() for c in chunk):
            continue
        start = m.start() + m.group(0).index(chunk[0])
        chunk = chunk.removesuffix("'s")
        version = _VERSION_AFTER.match(text, m.end())
        if version and version["dotted"] and chunk.casefold() not in _STOPWORDS:
            # "Python 3.11", "python v3.10": an exact version belongs to the word before it.
            strong.add(f"{chunk.casefold()} {version['dotted']}")
            continue
        if _is_code(chunk):
            kind = strong
        elif (
            (_NAME_LIKE.fullmatch(chunk) and len(chunk) > 1)
            or (_ACRONYM.fullmatch(chunk) and not shouting and chunk not in ("OK", "II"))
            or (
                chunk[0].isupper()
                and any(c.islower() for c in chunk)
                and not title_case
                and not shouting
                and chunk.casefold() not in _STOPWORDS
                and not _sentence_initial(text, start)
            )
        ):
            kind = names
        else:
            continue
        if version:  # "Windows 10", "iPhone 12"
            names.add(f"{chunk.casefold()} {version['int']}")
        else:
            kind.add(chunk.casefold())
    return _Entities(frozenset(strong), frozenset(names))


def check_entities(cached: str, new: str) -> GuardVerdict:
    """Refuse when the prompts name different things (case-insensitive).

    Identifiers refuse on any difference: code (`snake_case`, `foo.bar()`, `a::b`, backticked
    spans, `--flags`, paths), file names and domains, URLs, emails and versions ("v1.2",
    "Python 3.11"). Names (ALL-CAPS acronyms, camelCase products, capitalised words not at a
    sentence start; in Korean text every Latin-script word) refuse on a conflict: each side
    names something the other never mentions ("Paris" vs "London"). A name only one side adds
    ("Obama" vs "Barack Obama", "... in India") passes: on Quora duplicates, refusing those cost
    18% of true paraphrases, mostly people adding context. Limits: Title-Case and ALL-CAPS texts
    skip the capital rules; lowercase names in English text are invisible; names written in
    Hangul ("파리" vs "런던") are not recognised, and a transliteration ("Python" vs "파이썬") is
    neither a match nor a conflict unless the other side also names something unmatched.
    """
    a_text, b_text = _prepare(cached), _prepare(new)
    a_in, b_in = _Folded.of(a_text), _Folded.of(b_text)
    a_ent, b_ent = _entities(a_text), _entities(b_text)
    a_strong = {e for e in a_ent.strong if not b_in.mentions(e)}
    b_strong = {e for e in b_ent.strong if not a_in.mentions(e)}
    a_names = {e for e in a_ent.names if not b_in.mentions(e)}
    b_names = {e for e in b_ent.names if not a_in.mentions(e)}
    if a_strong or b_strong or (a_names and b_names):
        return _differ("entities", "entities", a_strong | a_names, b_strong | b_names)
    return _ok("entities")


# -------------------------------------------------------------------------------- comparatives

# One opposite pair per line: "left forms | right forms". English forms are whole words (or a
# two-word phrase joined by "_"); Korean ones are regexes matched inside words, since Korean
# glues endings on.
_EN_OPPOSITE_PAIRS: Final = """
better | worse
best | worst
more | less fewer
most | least fewest
faster quicker | slower
fastest quickest | slowest
fast quick quickly | slow slowly
increase increases increased increasing | decrease decreases decreased decreasing
high higher highest | low lower lowest
larger largest bigger biggest | smaller smallest
longer longest | shorter shortest
older oldest | younger youngest
cheap cheaper cheapest inexpensive | expensive costlier
before | after
earlier earliest | later latest
above | below
max maximum maximize maximise maximized | min minimum minimize minimise minimized
first | last
top | bottom
ascending | descending
upload uploads uploaded uploading | download downloads downloaded downloading
import imports imported importing | export exports exported exporting
input inputs | output outputs
encrypt encrypts encrypted encrypting encryption | decrypt decrypts decrypted decryption
enable enables enabled enabling | disable disables disabled disabling
buy buying bought purchase | sell selling sold
gain gaining gained | lose losing lost loss
positive | negative
true | false
advantage advantages | disadvantage disadvantages
hot hotter hottest | cold colder coldest
men man male males boy boys | women woman female females girl girls
love loves loved | hate hates hated
install installs installed installing | uninstall uninstalls uninstalled uninstalling
turn_on turned_on turning_on switch_on | turn_off turned_off turning_off switch_off
north | south
east | west
"""
_KO_OPPOSITE_PAIRS: Final = """
증가|늘리|늘어|늘려|늘린|늘었|늘이 | 감소|줄이|줄어|줄여|줄인|줄었
많 | 적은|적게|적다|적습|적어지|적을수록|적으면
높 | 낮[은게다아추춰출을]
빠르|빠른|빨리|빨라|빠름 | 느리|느린|느려|느림
일찍 | 늦게|늦은|늦다|늦어
큰|크게|크다|크고|클수록|커지|커져 | 작은|작게|작다|작고|작을수록|작아
이전|전에 | 이후|(?<!오)후에
최대 | 최소
최고 | 최저|최악
이상(?!하|한|해|형|적|이) | 이하|미만
좋 | 나쁘|나쁜|나빠|나빴
장점 | 단점
찬성 | 반대
입력 | 출력
업로드 | 다운로드
수입 | 수출
암호화 | 복호화
오름차순 | 내림차순
상승 | 하락
인상 | 인하
구매|구입|매수 | 판매|매도
위에|위로 | 아래|밑에|밑으로
남자|남성 | 여자|여성
켜기|켜는|켜다|켜져|켜지|켜요|켜고|켜줘 | 끄기|끄는|끄다|꺼져|꺼지|꺼요|끄고|꺼줘
(?<!비)활성화 | 비활성화
추가 | 삭제|제거
"""


def _english_opposites() -> Mapping[str, str]:
    """word (or "turn_on") -> "l<i>" / "r<i>": the side of opposite pair i it belongs to."""
    table: dict[str, str] = {}
    for i, line in enumerate(_EN_OPPOSITE_PAIRS.strip().splitlines()):
        left, right = line.split(" | ")
        table.update({word: f"l{i}" for word in left.split()})
        table.update({word: f"r{i}" for word in right.split()})
    return MappingProxyType(table)


def _korean_opposites() -> re.Pattern[str]:
    """One pattern whose group `l<i>` / `r<i>` tells which side of pair i matched."""
    sides = []
    for i, line in enumerate(_KO_OPPOSITE_PAIRS.strip().splitlines()):
        left, right = line.split(" | ")
        sides.append(f"(?P<l{i}>{left})|(?P<r{i}>{right})")
    return re.compile("|".join(sides))


_EN_OPPOSITES: Final = _english_opposites()
_KO_OPPOSITES: Final = _korean_opposites()
_EN_LOWER_WORD: Final = re.compile(r"[a-z]+|\d+")


def _terms(text: str) -> dict[str, str]:
    """Which side of which opposite pair a text uses: {"l3": "better", "kr0": "감소", ...}."""
    found: dict[str, str] = {}
    words = _EN_LOWER_WORD.findall(text.lower())
    for i, word in enumerate(words):
        phrase = f"{word}_{words[i + 1]}" if i + 1 < len(words) else ""
        if phrase in _EN_OPPOSITES:
            found.setdefault(_EN_OPPOSITES[phrase], phrase.replace("_", " "))
        elif word in _EN_OPPOSITES and not (word == "min" and i and words[i - 1].isdigit()):
            found.setdefault(_EN_OPPOSITES[word], word)  # (but "5 min" is minutes)
    if _HANGUL.search(text):
        for m in _KO_OPPOSITES.finditer(text):
            if m.lastgroup is not None:
                found.setdefault("k" + m.lastgroup, m.group(0))
    return found


def _opposite(key: str) -> str:
    """ "l3" -> "r3", "kr0" -> "kl0" (k: a Korean pair)."""
    lang = "k" if key.startswith("k") else ""
    side, index = key[len(lang)], key[len(lang) + 1 :]
    return lang + ("r" if side == "l" else "l") + index


def check_comparatives(cached: str, new: str) -> GuardVerdict:
    """Refuse when one side uses a term and the other its opposite, neither using both
    ("better" vs "worse", "before" vs "after", "증가" vs "감소", "upload" vs "download").

    A side with both terms ("more or less", "boys and girls") is neutral: the stricter reading
    (refuse unless the first side has both) refused Quora duplicates like "Is ice more or less
    dense than water?" / "Why is ice less dense than water?". Limits: word lists, not meaning:
    "not better" vs "worse" is refused, and opposites said in other words pass.
    """
    a, b = _terms(normalize(cached)), _terms(normalize(new))
    for key, word in sorted(a.items()):
        opposite = _opposite(key)
        if opposite in b and opposite not in a and key not in b:
            reason = f"comparatives differ: '{word}' vs '{b[opposite]}'"
            return GuardVerdict(False, "comparatives", reason)
    return _ok("comparatives")


# ------------------------------------------------------------------------------ swapped roles

_EN_TOKEN: Final = re.compile(r"[a-z0-9][a-z0-9+#'.-]*[a-z0-9+#]|[a-z0-9]|[^\sa-z0-9]")
_CONNECTORS: Final = frozenset({"to", "into", "than", "from"})
# "X to Y" is a direction only after "from X" or a verb of conversion or motion; elsewhere "to"
# is mostly an infinitive ("safe to travel").
_DIRECTION_VERBS: Final = re.compile(
    r"(?:convert|translat|migrat|mov|switch|transfer|port|chang|cast|map|export|import|send|sent"
    r"|copy|copie|sync|upgrad|downgrad|rewrit|compil|transpil|renam|redirect|forward|travel|fly"
    r"|flew|flight|driv|drove|ship|exchang|transform|turn)\w*"
)
_DETERMINERS: Final = frozenset("a an the my your our their his her its this that".split())
_COORDINATION: Final = frozenset({"and", "or", ",", "&", "vs", "versus", "/", "with", "nor"})
_PASSIVE_EN: Final = re.compile(r"\bby\b", re.IGNORECASE)
# Korean particles, longest first, and the role they mark; 와/과/하고/랑 are symmetric, so absent.
_KO_PARTICLES: Final = tuple(
    tuple(pair.split("="))
    for pair in (
        "에서부터=source 으로부터=source 에게서=source 한테서=source 에서=source 부터=source "
        "으로=goal 까지=goal 로=goal 에게=recipient 한테=recipient 보다=compared 을=object "
        "를=object 께서=subject 은=subject 는=subject 이=subject 가=subject 의=owner"
    ).split()
)
_KO_WORD: Final = re.compile(r"[가-힣A-Za-z0-9]+")
_KO_PASSIVE: Final = re.compile(r"에\s?의해|당하|되었|된다|됩니다|받았|받는")
# Long prompts: only the first relations are compared (the comparison is quadratic in them).
_MAX_FRAMES: Final = 64


@dataclass(frozen=True, slots=True)
class _Frame:
    """Content words left and right of one relation ("convert PDF to Word": {pdf}, {word})."""

    left: frozenset[str]
    right: frozenset[str]


def _is_word(token: str) -> bool:
    return "a" <= token[0] <= "z" or "0" <= token[0] <= "9"


def _content(tokens: Iterable[str]) -> frozenset[str]:
    return frozenset(t for t in tokens if _is_word(t) and t not in _STOPWORDS)


def _english_frames(text: str) -> list[_Frame]:
    """Ordered word groups around "X to Y" (after a direction verb or "from"), "X than Y" and
    "to Y from X" (read as X -> Y)."""
    tokens = _EN_TOKEN.findall(text.casefold())
    frames: list[_Frame] = []

    def window(start: int, step: int, size: int) -> list[str]:
        out: list[str] = []
        i = start
        while 0 <= i < len(tokens) and len(out) < size:
            token = tokens[i]
            if not _is_word(token) or token in _CONNECTORS:
                break
            if not (step > 0 and not out and token in _DETERMINERS):
                out.append(token)
            i += step
        return out

    for i, token in enumerate(tokens):
        if token not in _CONNECTORS or len(frames) >= _MAX_FRAMES:
            continue
        before = window(i - 1, -1, 4)
        left, right = _content(before), _content(window(i + 1, 1, 3))
        j = i - len(before) - 1  # the token just before the left group
        if token == "from":
            if j < 0 or tokens[j] != "to":
                continue
            left, right = right, left
        elif token in ("to", "into"):
            verb = any(_DIRECTION_VERBS.fullmatch(t) for t in tokens[max(0, i - 6) : i])
            if not (verb or (j >= 0 and tokens[j] == "from")):
                continue
            left = frozenset(t for t in left if not _DIRECTION_VERBS.fullmatch(t))
        if left and right:
            frames.append(_Frame(left, right))
    return frames


def _swaps(a: list[_Frame], b: list[_Frame]) -> set[tuple[str, str]]:
    """(x, y) where x is left of a frame in `a` and right in `b`, and y the other way round."""
    found: set[tuple[str, str]] = set()
    for fa in a:
        for fb in b:
            xs = (fa.left & fb.right) - fa.right - fb.left
            ys = (fa.right & fb.left) - fa.left - fb.right
            found.update((x, y) for x in xs for y in ys)
    return found


def _english_triples(text: str) -> set[tuple[str, str, str]]:
    """(x, r, y) for three consecutive content words, each used once in the text, none joined
    to r by and/or/vs ("alice paid bob")."""
    tokens = _EN_TOKEN.findall(text.casefold())
    content = [(i, t) for i, t in enumerate(tokens) if "a" <= t[0] <= "z" and t not in _STOPWORDS]
    uses = Counter(t for _, t in content)

    def coordinated(i: int, j: int) -> bool:
        return any(t in _COORDINATION for t in tokens[i + 1 : j])

    return {
        (x, r, y)
        for (px, x), (pr, r), (py, y) in zip(content, content[1:], content[2:], strict=False)
        if uses[x] == uses[r] == uses[y] == 1
        and not coordinated(px, pr)
        and not coordinated(pr, py)
    }


def _korean_roles(text: str) -> dict[str, str]:
    """Noun stem -> role from its particle, for stems that occur once with a role."""
    roles: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for word in _KO_WORD.findall(text):
        for particle, role in _KO_PARTICLES:
            if word.endswith(particle) and len(word) > len(particle):
                stem = word[: -len(particle)]
                seen[stem] += 1
                roles[stem] = role
                break
    return {stem: role for stem, role in roles.items() if seen[stem] == 1}


def check_swapped_roles(cached: str, new: str) -> GuardVerdict:
    """Refuse when the same two things trade places around a relation.

    English: "convert X to Y" / "from X to Y" / "to Y from X" / "X than Y" with the sides
    reversed ("convert PDF to Word" vs "convert Word to PDF"), and subject/object swaps ("Alice
    paid Bob" vs "Bob paid Alice": three consecutive content words x r y on one side, y r x on
    the other, each used once, none joined by and/or/vs). Korean: two nouns whose particles
    trade roles ("서울에서 부산으로" vs "부산에서 서울로", "A가 B를" vs "B가 A를", "A보다 B가" vs
    "B보다 A가"); word order alone never counts, since Korean marks roles with particles.

    Limits: a passive paraphrase ("Bob was paid by Alice", "에 의해") turns the subject/object
    rule off; "X vs Y", "X and Y" and "between X and Y" are symmetric by design (paraphrases
    reorder them freely); roles carried by the verb ("buy from" vs "sell to") and swaps of
    multi-word phrases outside the frames above are not seen; particles are stripped without
    a dictionary, so a noun ending in 이/가/로 may be misread.
    """
    a, b = normalize(cached), normalize(new)
    a_frames, b_frames = _english_frames(a), _english_frames(b)
    # A text that already says both "X to Y" and "Y to X" gives no order to compare.
    swapped = _swaps(a_frames, b_frames) - _swaps(a_frames, a_frames) - _swaps(b_frames, b_frames)
    if swapped:
        x, y = min(swapped)
        return GuardVerdict(False, "swapped_roles", f"roles swapped: {x} -> {y} reversed")
    if not (_PASSIVE_EN.search(a) or _PASSIVE_EN.search(b)):
        b_triples = _english_triples(b)
        for x, r, y in sorted(_english_triples(a)):
            if (y, r, x) in b_triples:
                reason = f"roles swapped: {x} {r} {y} vs {y} {r} {x}"
                return GuardVerdict(False, "swapped_roles", reason)
    if not (_HANGUL.search(a) and _HANGUL.search(b)) or _KO_PASSIVE.search(a + " " + b):
        return _ok("swapped_roles")
    a_roles, b_roles = _korean_roles(a), _korean_roles(b)
    # x with roles (p, q) on the two sides and y with (q, p): the two traded places.
    seen: dict[tuple[str, str], str] = {}
    for x in sorted(set(a_roles) & set(b_roles)):
        roles = (a_roles[x], b_roles[x])
        if roles[0] == roles[1]:
            continue
        other = seen.get((roles[1], roles[0]))
        if other is not None:
            reason = f"roles swapped: {other}/{x} as {roles[1]}/{roles[0]} vs {roles[0]}/{roles[1]}"
            return GuardVerdict(False, "swapped_roles", reason)
        seen.setdefault(roles, x)
    return _ok("swapped_roles")


# ----------------------------------------------------------------------------------- registry

GUARDS: Final[Mapping[str, Guard]] = MappingProxyType(
    {
        "numbers": check_numbers,
        "dates": check_dates,
        "amounts": check_amounts,
        "negation": check_negation,
        "entities": check_entities,
        "comparatives": check_comparatives,
        "swapped_roles": check_swapped_roles,
    }
)


def check_all(cached: str, new: str, enabled: Iterable[str]) -> GuardVerdict:
    """Run the enabled guards in `GUARDS` order: the first refusal, or a pass naming them all.

    An unknown name raises `KeyError`: a typo in the settings must not silently switch a guard
    off (settings validation should check names against `GUARDS` at start).
    """
    names = set(enabled)
    unknown = names - GUARDS.keys()
    if unknown:
        raise KeyError(f"unknown guard(s): {', '.join(sorted(unknown))}")
    for name, guard in GUARDS.items():
        if name in names:
            verdict = guard(cached, new)
            if not verdict.passed:
                return verdict
    return GuardVerdict(True, "all", "ok: " + ",".join(n for n in GUARDS if n in names))
