"""Precision guards: veto a semantic hit when two prompts differ in a detail that changes answers.

Sentence embeddings are blind to the details users ask about: "15% of 200" and "25% of 200",
"Paris" and "London", "can" and "can't" all land at cosine ~0.95. After the cosine check the
policy runs the enabled guards on (cached text, new text); each is a pure function returning a
`GuardVerdict`, and the first refusal turns the hit into a miss. Each guard is a narrow,
explainable lexical rule for one false-hit family in English and Korean, switchable by name in
`GUARDS` so that it can be measured alone. They are heuristics, not parsers: where a rule is
unsure it refuses, because a refused paraphrase costs one upstream call and a wrong cached answer
costs trust. The known limits of each rule are in its docstring.
"""

from __future__ import annotations

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

_CHAR_MAP: Final = str.maketrans(
    {"‘": "'", "’": "'", "ʼ": "'", "“": '"', "”": '"', "−": "-", "–": "-", "—": " - "}
)
_SPACES: Final = re.compile(r"\s+")
_HANGUL: Final = re.compile(r"[가-힣]")
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
    dont doesnt cant isnt im ive whats hows""".split()
)


def normalize(text: str) -> str:
    """NFKC (full-width forms to ASCII), plain quotes and dashes, single spaces; case is kept."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)).strip()


def _fmt(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(items)) + "}"


def _ok(guard: str) -> GuardVerdict:
    return GuardVerdict(True, guard, "ok")


def _differ(guard: str, what: str, a: Iterable[str], b: Iterable[str]) -> GuardVerdict:
    return GuardVerdict(False, guard, f"{what} differ: {_fmt(a)} vs {_fmt(b)}")


def _compare(guard: str, what: str, a: Counter[str], b: Counter[str]) -> GuardVerdict:
    if a == b:
        return _ok(guard)
    return _differ(guard, what, (a - b).elements(), (b - a).elements())


# ------------------------------------------------------------------------------------ numbers

_EN_SCALE: Final = {
    "hundred": 100,
    "thousand": 10**3,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
}
_KO_SCALE: Final = {"십": 10, "백": 100, "천": 10**3, "만": 10**4, "억": 10**8, "조": 10**12}
_DIGIT_NUMBER: Final = re.compile(
    r"(?P<sign>(?<![\w.,])(?<!\d )-)?"  # not a minus: COVID-19, 2024-03, "1946 -1947"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
    r"(?:\s?(?P<scale>hundred|thousand|million|billion|trillion)\b|(?P<k>k)\b"
    r"|(?P<ko>[십백천만억조]+)(?!각|큼))?"
    r"(?:(?P<ord>st|nd|rd|th)\b|\s?(?P<ord_ko>번째|째))?"
    r"(?:\s?(?P<pct>%|percent\b|per cent\b|퍼센트|프로(?!그)))?",
    re.IGNORECASE,
)
_EN_TENS: Final = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_UNITS: Final = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
} | {"dozen": 12}
_EN_ORDINALS: Final = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "twentieth": 20,
    "hundredth": 100,
}
_WORD: Final = re.compile(r"[a-z]+", re.IGNORECASE)
_PERCENT_AFTER: Final = re.compile(r"[\s-]?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_TIME_BEFORE_SECOND: Final = re.compile(r"(?:\b(?:a|per|one|few|split)|\d)\s+$", re.IGNORECASE)
# Native Korean numerals count only before a counter ("두 개", "세 번째"): bare "세", "네", "한"
# are also "world", "yes" and "did". Glued forms ("세대" = generation) need a safe counter.
_KO_TENS: Final = {
    "열": 10,
    "스물": 20,
    "스무": 20,
    "서른": 30,
    "마흔": 40,
    "쉰": 50,
    "예순": 60,
    "일흔": 70,
    "여든": 80,
    "아흔": 90,
}
_KO_UNITS: Final = {
    "하나": 1,
    "한": 1,
    "두": 2,
    "둘": 2,
    "세": 3,
    "셋": 3,
    "네": 4,
    "넷": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
}
_KO_GLUED_COUNTERS: Final = frozenset("번째 째 개 번 명 가지 시간 시 살 마리 달 사람".split())
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
_KO_SINO_DIGITS: Final = {
    "일": 1,
    "이": 2,
    "삼": 3,
    "사": 4,
    "오": 5,
    "육": 6,
    "칠": 7,
    "팔": 8,
    "구": 9,
}
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
        elif char in ("십", "백", "천"):
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
                if word in _EN_UNITS or word in _EN_TENS:
                    current += _EN_UNITS.get(word, 0) + _EN_TENS.get(word, 0)
                elif word == "hundred":
                    current = (current or 1) * 100
                else:
                    total += (current or 1) * _EN_SCALE[word]
                    current = 0
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
            gap = text[run[-1][1] : m.start()].lower().strip(" -")
            prev = run[-1][2]
            joins = (
                (prev in _EN_TENS and word in _EN_UNITS and _EN_UNITS[word] < 10)
                or (word in _EN_SCALE)
                or (prev in _EN_SCALE and word not in _EN_SCALE)
            )
            if not joins or gap not in ("", "and"):
                yield from flush()
        run.append((m.start(), m.end(), word))
    yield from flush()


def _numbers(text: str) -> list[_Number]:
    """Every number mention with its span: digits, English number words, Korean numerals."""
    found: list[_Number] = []

    def add(start: int, end: int, key: str, soft: bool = False) -> None:
        if not any(start < n.end and n.start < end for n in found):
            found.append(_Number(start, end, key, soft))

    for m in _DIGIT_NUMBER.finditer(text):
        value = Decimal(m["int"].replace(",", "") + (m["frac"] or ""))
        if m["scale"]:
            value *= _EN_SCALE[m["scale"].lower()]
        elif m["k"]:
            value *= 1000
        elif m["ko"]:
            for char in m["ko"]:
                value *= _KO_SCALE[char]
        if m["sign"]:
            value = -value
        ordinal = bool(m["ord"] or m["ord_ko"])
        add(m.start(), m.end(), _key(value, percent=bool(m["pct"]), ordinal=ordinal))
    for start, end, run_value, lone_one in _english_number_runs(text):
        pct = _PERCENT_AFTER.match(text, end)
        add(start, pct.end() if pct else end, _key(Decimal(run_value), percent=bool(pct)), lone_one)
    for m in _WORD.finditer(text):
        word = m.group(0).lower()
        if word not in _EN_ORDINALS:
            continue
        if word == "second" and _TIME_BEFORE_SECOND.search(text, 0, m.start()):
            continue  # "a second", "per second": time, not order
        add(
            m.start(),
            m.end(),
            _key(Decimal(_EN_ORDINALS[word]), ordinal=True),
            word in ("first", "second"),
        )
    for m in _KO_NATIVE.finditer(text):
        if not (m["tens"] or m["unit"]):
            continue
        if not m["gap"] and m["counter"] not in _KO_GLUED_COUNTERS:
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
    found.sort(key=lambda n: n.start)
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
        return {n.key.lstrip("#") for n in nums if n.soft} - {
            n.key.lstrip("#") for n in nums if not n.soft
        }

    soft_a, soft_b = soft(a_nums), soft(b_nums)
    if (all(k in soft_a for k in a_only) and not b_only) or (
        all(k in soft_b for k in b_only) and not a_only
    ):
        return _ok("numbers")
    labels = {n.key.lstrip("#"): _number_label(n.key) for n in (*a_nums, *b_nums)}
    return _differ(
        "numbers",
        "numbers",
        (labels[k] for k in a_only.elements()),
        (labels[k] for k in b_only.elements()),
    )


# -------------------------------------------------------------------------------------- dates

_MONTHS: Final = (
    "January February March April May June July August September October " "November December"
).split()
_MONTH_WORD: Final = re.compile(
    r"\b(?P<word>january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\b\.?",
    re.IGNORECASE,
)
_WEEKDAYS: Final = ("Monday Tuesday Wednesday Thursday Friday Saturday Sunday").split()
_WEEKDAY_WORD: Final = re.compile(
    r"\b(?:(?P<full>monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
    r"|(?P<abbr>Mon|Tues?|Wed|Thu(?:rs?)?|Fri)\.?)\b",
    re.IGNORECASE,
)
_KO_WEEKDAY: Final = re.compile(r"([월화수목금토일])\s?요일")
_YEAR: Final = re.compile(r"(?<![\d.,$€£¥₩])(1[5-9]\d\d|20\d\d)(?![\d%]|,\d|\.\d)")
_KO_MONTH: Final = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s?월(?!요일)")
_KO_MONTH_DAY: Final = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s?월\s?([0-3]?\d)\s?일")
_ISO_DATE: Final = re.compile(r"(?<!\d)(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?!\d)")
_DAY_AFTER_MONTH: Final = re.compile(r"\s([0-3]?\d)(?:st|nd|rd|th)?(?![\d:])", re.IGNORECASE)
_DAY_BEFORE_MONTH: Final = re.compile(
    r"(?<!\d)([0-3]?\d)(?:st|nd|rd|th)?\s(?:of\s)?$", re.IGNORECASE
)
_DIGIT_AFTER: Final = re.compile(r"\s?\d")
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
_RELATIVE_KO: Final = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (r"그저께|그제", "day before yesterday"),
        (r"어제|어저께|어젯", "yesterday"),
        (r"오늘(?!날)", "today"),
        (r"(?<![가-힣])내일", "tomorrow"),
        (r"(?<![가-힣])모레", "day after tomorrow"),
        (r"지난\s?주|저번\s?주", "last week"),
        (r"이번\s?주", "this week"),
        (r"다음\s?주|담주", "next week"),
        (r"지난\s?달|저번\s?달", "last month"),
        (r"이번\s?달", "this month"),
        (r"다음\s?달", "next month"),
        (r"재작년", "year before last"),
        (r"(?<!재)작년|지난\s?해", "last year"),
        (r"올해|금년|이번\s?해", "this year"),
        (r"(?<![가-힣])내년|다음\s?해", "next year"),
        (r"내후년", "year after next"),
        (r"주말", "weekend"),
        (r"평일", "weekday"),
        (r"오전", "am"),
        (r"오후", "pm"),
    )
)
_SENTENCE_END: Final = frozenset('.!?:;"(\n')
_PRESENT: Final = frozenset({"today", "this week", "this month", "this year"})


def _sentence_initial(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in _SENTENCE_END


def _dates(text: str) -> Counter[str]:
    """Date features: years, months, weekdays, days of month, relative days/weeks, am/pm."""
    found: Counter[str] = Counter()
    for m in _YEAR.finditer(text):
        found[m.group(1)] += 1
    for m in _MONTH_WORD.finditer(text):
        word = m["word"]
        before = text[: m.start()]
        near_digit = bool(_DIGIT_AFTER.match(text, m.end()) or _DAY_BEFORE_MONTH.search(before))
        # "may", "march" and the abbreviations are common words or names: they need a number
        # beside them ("May 5", "5 Mar"); "May"/"March" also count after "in", "of", ... or
        # capitalised mid-sentence.
        ambiguous = word.lower() in ("may", "march")
        unambiguous = len(word) > 3 and not ambiguous
        as_month = _MONTH_PREPOSITION.search(before) or (
            word[0].isupper() and not _sentence_initial(text, m.start())
        )
        if not (unambiguous or near_digit or (ambiguous and as_month)):
            continue
        month = next(
            i for i, name in enumerate(_MONTHS) if name.lower().startswith(word.lower()[:3])
        )
        found[_MONTHS[month]] += 1
        day = _DAY_AFTER_MONTH.match(text, m.end() - (1 if m.group(0).endswith(".") else 0))
        day = day or _DAY_BEFORE_MONTH.search(text[: m.start()])
        if day and 1 <= int(day.group(1)) <= 31:
            found[f"{_MONTHS[month]} {int(day.group(1))}"] += 1
    for m in _WEEKDAY_WORD.finditer(text):
        if m["abbr"] and not (m["abbr"][0].isupper() and m["abbr"][1:].islower()):
            continue
        prefix = (m["full"] or m["abbr"]).lower()[:3]
        found[next(d for d in _WEEKDAYS if d.lower().startswith(prefix))] += 1
    for m in _KO_WEEKDAY.finditer(text):
        found[_WEEKDAYS["월화수목금토일".index(m.group(1))]] += 1
    for m in _KO_MONTH.finditer(text):
        found[_MONTHS[int(m.group(1)) - 1]] += 1
    for m in _KO_MONTH_DAY.finditer(text):
        found[f"{_MONTHS[int(m.group(1)) - 1]} {int(m.group(2))}"] += 1
    for m in _ISO_DATE.finditer(text):
        if 1 <= int(m.group(2)) <= 12:
            found[_MONTHS[int(m.group(2)) - 1]] += 1
            found[f"{_MONTHS[int(m.group(2)) - 1]} {int(m.group(3))}"] += 1
    for m in _AM_PM.finditer(text):
        found[m["x"].lower() + "m"] += 1
    for m in _RELATIVE_EN.finditer(text):
        if m["day"]:
            relative = m["day"].lower()
            found["today" if relative == "tonight" else relative] += 1
        elif m["after"]:
            found[m["after"].lower()] += 1
        elif m["which"]:
            which = {"past": "last", "previous": "last", "coming": "next"}.get(
                m["which"].lower(), m["which"].lower()
            )
            found[f"{which} {m['unit'].lower()}"] += 1
        else:
            found[m["span"].lower()] += 1
    for pattern, label in _RELATIVE_KO:
        found[label] += len(pattern.findall(text))
    return +found


def check_dates(cached: str, new: str) -> GuardVerdict:
    """Refuse when years, months, weekdays, days of month, relative days ("tomorrow", "어제",
    "next week", "작년") or am/pm differ; Korean and English labels share one vocabulary, so
    "내일" matches "tomorrow". Only presence counts, not how often a date is repeated. "today" or
    "this year" on one side only passes (it usually means "now"); against another date it fails.

    Limits: "May"/"March" and month abbreviations count only capitalised mid-sentence or beside
    a number (they are also common words); any 4-digit number from 1500 to 2099 reads as a year;
    durations ("3 years") are left to the numbers guard.
    """
    a, b = set(_dates(normalize(cached))), set(_dates(normalize(new)))
    a_only, b_only = a - b, b - a
    # "today", "this year" alone on one side is how people say "now"; only a conflict counts.
    if not b_only:
        a_only -= _PRESENT
    if not a_only:
        b_only -= _PRESENT
    if not a_only and not b_only:
        return _ok("dates")
    return _differ("dates", "dates", a_only, b_only)


# ------------------------------------------------------------------------------------ amounts

_CURRENCY_SYMBOLS: Final = {
    "US$": "USD",
    "C$": "CAD",
    "A$": "AUD",
    "HK$": "HKD",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "円": "JPY",
    "₩": "KRW",
    "₹": "INR",
    "₽": "RUB",
    "₺": "TRY",
    "₫": "VND",
    "₱": "PHP",
    "฿": "THB",
    "₿": "BTC",
    "元": "CNY",
}
_CURRENCY_WORDS: Final = {
    "dollar": "USD",
    "dollars": "USD",
    "buck": "USD",
    "bucks": "USD",
    "usd": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "eur": "EUR",
    "sterling": "GBP",
    "quid": "GBP",
    "gbp": "GBP",
    "yen": "JPY",
    "jpy": "JPY",
    "yuan": "CNY",
    "renminbi": "CNY",
    "rmb": "CNY",
    "cny": "CNY",
    "krw": "KRW",
    "rupee": "INR",
    "rupees": "INR",
    "inr": "INR",
    "ruble": "RUB",
    "rubles": "RUB",
    "rouble": "RUB",
    "roubles": "RUB",
    "cad": "CAD",
    "aud": "AUD",
    "chf": "CHF",
    "franc": "CHF",
    "francs": "CHF",
    "hkd": "HKD",
    "sgd": "SGD",
    "btc": "BTC",
    "bitcoin": "BTC",
    "bitcoins": "BTC",
    "peso": "MXN",
    "pesos": "MXN",
    "cent": "cent",
    "cents": "cent",
    "pence": "GBP-pence",
    "rs": "INR",
    "달러": "USD",
    "유로": "EUR",
    "파운드": "GBP",
    "엔화": "JPY",
    "위안": "CNY",
    "위안화": "CNY",
    "원화": "KRW",
    "루피": "INR",
    "센트": "cent",
    "비트코인": "BTC",
}
# Words that are currencies only right after a number: "won" (verb), "원" (want, circle),
# "엔" (particle "에는"), "불" (fire).
_CURRENCY_AFTER_NUMBER: Final = {"won": "KRW", "원": "KRW", "엔": "JPY", "불": "USD"}
_CURRENCY: Final = re.compile(
    r"(?P<sym>US\$|C\$|A\$|HK\$|[$€£¥円₩₹₽₺₫₱฿₿元])"
    r"|(?<![A-Za-z])(?P<word>"
    + "|".join(sorted(_CURRENCY_WORDS, key=len, reverse=True))
    + r")(?![A-Za-z])"
    r"|(?P<after>(?<![A-Za-z])won(?![A-Za-z])|원|엔|불)",
    re.IGNORECASE,
)


def _amounts(text: str) -> tuple[frozenset[str], Counter[str]]:
    """(currencies mentioned, "CODE amount" for each currency with a number beside it)."""
    numbers = _numbers(text)
    currencies: set[str] = set()
    amounts: Counter[str] = Counter()
    for m in _CURRENCY.finditer(text):
        if (
            m["word"]
            and m["word"].lower() in ("cent", "cents")
            and text[: m.start()].lower().endswith("per ")
        ):
            continue  # "per cent"
        before = next(
            (
                n
                for n in reversed(numbers)
                if 0 <= m.start() - n.end <= 1 and text[n.end : m.start()].strip() == ""
            ),
            None,
        )
        after = next(
            (
                n
                for n in numbers
                if 0 <= n.start - m.end() <= 2 and text[m.end() : n.start].strip(" .") == ""
            ),
            None,
        )
        if m["after"]:
            if before is None:
                continue
            code = _CURRENCY_AFTER_NUMBER[m["after"].lower()]
        elif m["sym"]:
            code = _CURRENCY_SYMBOLS[m["sym"].upper() if m["sym"][0].isalpha() else m["sym"]]
        else:
            code = _CURRENCY_WORDS[m["word"].lower()]
        currencies.add(code)
        number = after if m["sym"] and after is not None else before or after
        if number is not None:
            amounts[f"{code} {number.key}"] += 1
    return frozenset(currencies), amounts


def check_amounts(cached: str, new: str) -> GuardVerdict:
    """Refuse when both sides name money and the currencies or amounts differ ("$5" vs "€5",
    "$5" vs "$50", "5달러" vs "5유로"); "$5" == "5 dollars" == "5달러" == "USD 5", "5만 원" ==
    "₩50,000". A currency on one side only passes: the bare number is the numbers guard's.

    Limits: "pound(s)" is not read as money (it is as often a weight); "¥" is read as yen; an
    amount without any currency marker is the numbers guard's business.
    """
    a_cur, a_amt = _amounts(normalize(cached))
    b_cur, b_amt = _amounts(normalize(new))
    if not a_cur or not b_cur:
        return _ok("amounts")  # "under 15k" vs "under INR 15k": the numbers guard compares 15k
    if a_cur != b_cur:
        return _differ("amounts", "currencies", a_cur - b_cur, b_cur - a_cur)
    return _compare("amounts", "amounts", a_amt, b_amt)


# ----------------------------------------------------------------------------------- negation

_EN_NEGATIONS: Final = frozenset(
    "not no never none nobody nothing nowhere neither without cannot unable noone nope".split()
)
_EN_NEGATION_TOKEN: Final = re.compile(r"[a-z]+(?:'[a-z]+)?", re.IGNORECASE)
_EN_NEGATION_NOT_COUNTED: Final = re.compile(
    r"\bnot (?:only|just)\b|\bno matter\b|\bor (?:why )?not\b|\bno\.?\s?\d|뿐(?:만)?\s?아니라",
    re.IGNORECASE,
)
_EN_CONTRACTED: Final = frozenset(
    "dont doesnt didnt cant wont isnt arent wasnt werent havent hasnt hadnt shouldnt wouldnt "
    "couldnt mustnt neednt aint".split()
)
_KO_NEGATIONS: Final = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (
            r"(?<![가-힣])안(?=\s)|(?<![가-힣])안(?:되|돼|됨|됐|될|된|하|해|했|함|할|한|가|와|먹"
            r"|보이|보여|봐|나와|나오|나요|열려|들|써|쓰|맞|좋|는)",
            "안",
        ),
        (r"않", "않"),
        (r"(?<![가-힣])못(?!생)|(?<!잘)(?<=[가-힣])못(?=하|해|했|한|할|함)", "못"),
        (r"없(?!애|앤|앨|앴)", "없"),
        (r"아니(?!면)|아닌|아닙|아닐|아냐|아뇨", "아니"),
        (r"지\s?(?:마|말)", "지 마"),
        (r"(?<!지)(?<!지 )말고", "말고"),
        (r"금지", "금지"),
    )
)


def _negations(text: str) -> list[str]:
    """Negation markers; "not only", "no matter", "or not", "뿐만 아니라" are not negations."""
    markers: list[str] = []
    cleaned = _EN_NEGATION_NOT_COUNTED.sub(" ", text)
    for m in _EN_NEGATION_TOKEN.finditer(cleaned):
        token = m.group(0).lower()
        if token in _EN_NEGATIONS or token in _EN_CONTRACTED or token.endswith("n't"):
            markers.append(token)
    for pattern, label in _KO_NEGATIONS:
        markers.extend(label for _ in pattern.finditer(cleaned))
    return markers


def check_negation(cached: str, new: str) -> GuardVerdict:
    """Refuse when the parity of negation markers differs (one side negated, the other not).

    English: not, n't, never, no, none, nothing, nobody, without, cannot, unable, ...; Korean:
    안, 않, 못, 없, 아니, 말고, 지 마, 금지. Double negation counts as positive. Limits: lexical
    antonyms ("fail" vs "pass", "모르다" vs "알다") and negative prefixes ("un-", "비-", "불-") are
    not markers; "안" glued to a verb is recognised only for common verbs.
    """
    a, b = _negations(normalize(cached)), _negations(normalize(new))
    if len(a) % 2 == len(b) % 2:
        return _ok("negation")
    return GuardVerdict(
        False,
        "negation",
        f"negation differs: {len(a)} vs {len(b)} markers " f"{_fmt(set(a))} vs {_fmt(set(b))}",
    )


# ----------------------------------------------------------------------------------- entities

_URL: Final = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_BACKTICKED: Final = re.compile(r"`+([^`]+)`+")
# A call needs empty parentheses or a dotted/underscored name: "lesson(s)" is English.
_CALL: Final = re.compile(r"[A-Za-z_]\w*\(\)|[A-Za-z_]\w*(?:[._]\w+)+\([^()\s]{0,40}\)")
_SCOPED: Final = re.compile(r"[A-Za-z_]\w*(?:(?:::|->)[A-Za-z_~]\w*)+")
_FLAG: Final = re.compile(r"(?<![\w-])--[A-Za-z][\w-]+")
_PATH: Final = re.compile(r"(?<![\w/])(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*")
_DOTTED_ACRONYM: Final = re.compile(r"\b(?:[A-Z]\.){2,}")
_GLUED_SENTENCE: Final = re.compile(r"(?<=[a-z])\.(?=[A-Z][a-z])")  # "it.Then": a missing space
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
_FOLDED_TOKEN: Final = re.compile(r"[0-9a-zß-ÿā-ɏ]+")
_CHUNK_STRIP: Final = ".:'*-"


@dataclass(frozen=True, slots=True)
class _Entities:
    strong: frozenset[str]  # identifiers, code, URLs, versions: any difference matters
    names: frozenset[str]  # capitalised words and acronyms: a conflict matters


def _prepare(text: str) -> str:
    return _GLUED_SENTENCE.sub(
        ". ", _DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), normalize(text))
    )


def _is_code(word: str) -> bool:
    return bool(_CODE_LIKE.fullmatch(word)) and any(len(part) > 1 for part in word.split("."))


def _entities(text: str) -> _Entities:
    """Casefolded entities: identifiers and code, URLs, emails, versions, acronyms, names."""
    strong: set[str] = set()
    names: set[str] = set()
    for pattern in (_URL, _EMAIL, _BACKTICKED, _CALL, _SCOPED, _FLAG, _PATH):
        for m in pattern.finditer(text):
            strong.add(_SPACES.sub(" ", m.group(m.lastindex or 0)).strip().casefold().rstrip(".,"))
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets
    if _HANGUL.search(text):
        # In Korean text any Latin-script word is a name or an identifier.
        for m in _LATIN_RUN.finditer(text):
            word = m.group(0).rstrip(".-")
            if len(word) > 1 and word.casefold() not in _STOPWORDS:
                (strong if _is_code(word) else names).add(word.casefold())
        return _Entities(frozenset(strong), frozenset(names))
    letters = [c for c in text if c.isascii() and c.isalpha()]
    shouting = len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.7 * len(letters)
    long_words = [w for w in _WORD.findall(text) if len(w) >= 4]
    title_case = len(long_words) >= 3 and sum(w[0].isupper() for w in long_words) >= 0.7 * len(
        long_words
    )
    for m in _CHUNK.finditer(text):
        chunk = m.group(0).strip(_CHUNK_STRIP)
        if not chunk or not any(c.isalpha() for c in chunk):
            continue
        start = m.start() + m.group(0).index(chunk[0])
        if chunk.endswith("'s"):
            chunk = chunk[:-2]
        kind = None
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
        if kind is None:
            continue
        version = _VERSION_AFTER.match(text, m.end())
        # "Python 3.11", "Windows 10": the version belongs to the name; a dotted one is exact.
        if version and version["dotted"]:
            strong.add(f"{chunk.casefold()} {version['dotted']}")
        elif version:
            names.add(f"{chunk.casefold()} {version['int']}")
        else:
            kind.add(chunk.casefold())
    return _Entities(frozenset(strong), frozenset(names))


def _mentions(entity: str, folded: str, tokens: list[str]) -> bool:
    """Whether the casefolded other text mentions `entity`, allowing a plural or possessive."""
    parts = _FOLDED_TOKEN.findall(entity)
    if not parts or not re.fullmatch(r"[\w' -]+", entity):
        return entity in folded
    size = len(parts)
    for i in range(len(tokens) - size + 1):
        window = tokens[i : i + size]
        last = window[-1]
        if window[:-1] == parts[:-1] and last in (parts[-1], parts[-1] + "s", parts[-1] + "es"):
            return True
    return False


def check_entities(cached: str, new: str) -> GuardVerdict:
    """Refuse when the prompts name different things (case-insensitive).

    Identifiers refuse on any difference: code (`snake_case`, `camelCase`, `foo.bar()`, `a::b`,
    backticked spans, `--flags`, paths), file names and domains, URLs, emails and versions
    ("v1.2", "Python 3.11"). Names (ALL-CAPS acronyms, capitalised words not at a sentence start;
    in Korean text every Latin-script word) refuse on a conflict: each side names something the
    other never mentions ("Paris" vs "London"). A name only one side adds ("Obama" vs "Barack
    Obama", "in India") passes: measured on Quora duplicates, refusing those cost 18% of true
    paraphrases, mostly people adding context. Limits: Title-Case and ALL-CAPS texts skip the
    capital rules; lowercase names in English text are invisible; names written in Hangul
    ("파리" vs "런던") are not recognised, and a transliteration ("Python" vs "파이썬") is neither a
    match nor a conflict unless the other side also names something unmatched.
    """
    a_text, b_text = _prepare(cached), _prepare(new)
    a_folded, b_folded = a_text.casefold(), b_text.casefold()
    a_tokens, b_tokens = _FOLDED_TOKEN.findall(a_folded), _FOLDED_TOKEN.findall(b_folded)
    a_ent, b_ent = _entities(a_text), _entities(b_text)
    a_strong = {e for e in a_ent.strong if not _mentions(e, b_folded, b_tokens)}
    b_strong = {e for e in b_ent.strong if not _mentions(e, a_folded, a_tokens)}
    a_names = {e for e in a_ent.names if not _mentions(e, b_folded, b_tokens)}
    b_names = {e for e in b_ent.names if not _mentions(e, a_folded, a_tokens)}
    if a_strong or b_strong or (a_names and b_names):
        return _differ("entities", "entities", a_strong | a_names, b_strong | b_names)
    return _ok("entities")


# -------------------------------------------------------------------------------- comparatives

# One opposite pair per line: "left forms | right forms". English forms are whole words (or a
# two-word phrase); Korean ones are regexes matched inside words, since Korean glues endings on.
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
encrypt encrypts encrypted encrypting encryption | decrypt decrypts decrypted decrypting decryption
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
    """word (or "turn_on") -> "l<i>" / "r<i>" for pair i."""
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
    """Which side of which opposite pair a text uses: {"l3": "better", "r27": "감소", ...}."""
    found: dict[str, str] = {}
    words = _EN_LOWER_WORD.findall(text.lower())
    for i, word in enumerate(words):
        phrase = f"{word}_{words[i + 1]}" if i + 1 < len(words) else ""
        key = _EN_OPPOSITES.get(phrase) or _EN_OPPOSITES.get(word)
        if key is None or (word == "min" and i and words[i - 1].isdigit()):  # "5 min"
            continue
        found.setdefault(key, phrase.replace("_", " ") if phrase in _EN_OPPOSITES else word)
    if _HANGUL.search(text):
        for m in _KO_OPPOSITES.finditer(text):
            if m.lastgroup is not None:
                found.setdefault("k" + m.lastgroup, m.group(0))
    return found


def check_comparatives(cached: str, new: str) -> GuardVerdict:
    """Refuse when one side uses a term and the other its opposite, neither using both
    ("better" vs "worse", "before" vs "after", "증가" vs "감소", "upload" vs "download").

    A side with both terms ("more or less", "boys and girls") is neutral: the brief's stricter
    reading (refuse unless the first side has both) refused Quora duplicates like "Is ice more
    or less dense than water?" / "Why is ice less dense than water?". Limits: word lists, not
    meaning: "not better" vs "worse" is refused, and opposites in other words pass.
    """
    a, b = _terms(normalize(cached)), _terms(normalize(new))
    for key, word in a.items():
        lang = "k" if key.startswith("k") else ""  # "kl3": Korean pair 3, left side
        side = key[len(lang)]
        opposite = lang + ("r" if side == "l" else "l") + key[len(lang) + 1 :]
        if opposite in b and opposite not in a and key not in b:
            return GuardVerdict(
                False, "comparatives", f"comparatives differ: '{word}' vs '{b[opposite]}'"
            )
    return _ok("comparatives")


# ------------------------------------------------------------------------------ swapped roles

_EN_TOKEN: Final = re.compile(r"[a-z0-9][a-z0-9+#'.-]*[a-z0-9+#]|[a-z0-9]|[^\sa-z0-9]")
_CONNECTORS: Final = frozenset({"to", "into", "than", "from"})
# "X to Y" is a direction only after "from X" or a verb of conversion/motion; elsewhere "to" is
# mostly an infinitive ("safe to travel").
_DIRECTION_VERBS: Final = re.compile(
    r"(?:convert|translat|migrat|mov|switch|transfer|port|chang|cast|map|export|import|send|sent"
    r"|copy|copie|sync|upgrad|downgrad|rewrit|compil|transpil|renam|redirect|forward|travel|fly"
    r"|flew|flight|driv|drove|ship|exchang|transform|turn)\w*"
)
_DETERMINERS: Final = frozenset("a an the my your our their his her its this that".split())
_COORDINATION: Final = frozenset({"and", "or", ",", "&", "vs", "versus", "/", "with", "nor"})
_PASSIVE_EN: Final = re.compile(r"\bby\b", re.IGNORECASE)
# Korean particles (longest first) and the role they mark; 와/과/하고/랑 are symmetric, so absent.
_KO_PARTICLES: Final = (
    ("에서부터", "source"),
    ("으로부터", "source"),
    ("에게서", "source"),
    ("한테서", "source"),
    ("에서", "source"),
    ("부터", "source"),
    ("으로", "goal"),
    ("까지", "goal"),
    ("로", "goal"),
    ("에게", "recipient"),
    ("한테", "recipient"),
    ("보다", "compared"),
    ("을", "object"),
    ("를", "object"),
    ("께서", "subject"),
    ("은", "subject"),
    ("는", "subject"),
    ("이", "subject"),
    ("가", "subject"),
    ("의", "owner"),
)
_KO_WORD: Final = re.compile(r"[가-힣A-Za-z0-9]+")
_KO_PASSIVE: Final = re.compile(r"에\s?의해|당하|되었|된다|됩니다|받았|받는")


@dataclass(frozen=True, slots=True)
class _Frame:
    left: frozenset[str]
    right: frozenset[str]


def _content(tokens: Iterable[str]) -> frozenset[str]:
    return frozenset(t for t in tokens if t[0].isalnum() and t not in _STOPWORDS)


def _english_frames(text: str) -> list[_Frame]:
    """Ordered (left, right) word groups around "X to Y", "X than Y", "to Y from X"."""
    tokens = _EN_TOKEN.findall(text.casefold())
    frames: list[_Frame] = []

    def window(start: int, step: int, size: int) -> list[str]:
        out: list[str] = []
        i = start
        while 0 <= i < len(tokens) and len(out) < size:
            token = tokens[i]
            if not token[0].isalnum() or token in _CONNECTORS:
                break
            if not (step > 0 and not out and token in _DETERMINERS):
                out.append(token)
            i += step
        return out

    for i, token in enumerate(tokens):
        if token not in _CONNECTORS:
            continue
        before = window(i - 1, -1, 4)
        left, right = _content(before), _content(window(i + 1, 1, 3))
        j = i - len(before) - 1  # the token just before the left group
        if token == "from":
            # Only "to Y from X", read as X -> Y like "from X to Y".
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


def _english_triples(text: str) -> set[tuple[str, str, str]]:
    """(x, r, y) for three consecutive content words, each used once in the text, none joined
    to r by and/or/vs."""
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


def _swaps(a: list[_Frame], b: list[_Frame]) -> set[tuple[str, str]]:
    """(x, y) where x is left of a frame in `a` and right in `b`, and y the other way round."""
    found: set[tuple[str, str]] = set()
    for fa in a:
        for fb in b:
            xs = (fa.left & fb.right) - fa.right - fb.left
            ys = (fa.right & fb.left) - fa.left - fb.right
            found.update((x, y) for x in xs for y in ys)
    return found


def check_swapped_roles(cached: str, new: str) -> GuardVerdict:
    """Refuse when the same two things trade places around a relation.

    English: "X to Y" / "from X to Y" / "to Y from X" / "X than Y" frames whose sides are
    reversed ("convert PDF to Word" vs "convert Word to PDF"), and subject/object swaps ("Alice
    paid Bob" vs "Bob paid Alice": content words x < r < y on one side, y < r < x on the other,
    neither joined to r by and/or/vs). Korean: two nouns whose particles trade roles ("서울에서
    부산으로" vs "부산에서 서울로", "A가 B를" vs "B가 A를", "A보다 B가" vs "B보다 A가"); word order
    alone never counts, since Korean marks roles with particles. Limits: a passive paraphrase
    ("Bob was paid by Alice", "에 의해") is not refused; "X vs Y" and "X and Y" are treated as
    symmetric; roles carried by verbs ("buy from" vs "sell to") are not seen; particles are
    stripped without a dictionary, so a noun ending in 이/가/로 may be misread.
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
                return GuardVerdict(
                    False, "swapped_roles", f"roles swapped: {x} {r} {y} vs {y} {r} {x}"
                )
    if _KO_PASSIVE.search(a) or _KO_PASSIVE.search(b):
        return _ok("swapped_roles")
    a_roles, b_roles = _korean_roles(a), _korean_roles(b)
    shared = sorted(set(a_roles) & set(b_roles))
    for i, x in enumerate(shared):
        for y in shared[i + 1 :]:
            if a_roles[x] == b_roles[y] and a_roles[y] == b_roles[x] and a_roles[x] != a_roles[y]:
                return GuardVerdict(
                    False,
                    "swapped_roles",
                    f"roles swapped: {x}/{y} as "
                    f"{a_roles[x]}/{a_roles[y]} vs {b_roles[x]}/{b_roles[y]}",
                )
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
    """Run the enabled guards in `GUARDS` order; the first refusal, or a pass naming them all.

    An unknown name raises `KeyError`: a typo in the settings must not silently disable a guard
    (settings validation should check names against `GUARDS` at start).
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
