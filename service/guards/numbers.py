"""The numbers guard: "15%" vs "25%", "2nd" vs "3rd", "세 개" vs "네 개" in digits and words.

It reads every number mention (digits with scales and percent signs, English number words,
Korean native and Sino-Korean numerals before counters) into a normalized key, so that "1,000",
"1000" and "one thousand" compare equal; the amounts guard reuses these mentions.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from service.guards.text import HANGUL, WORD, GuardVerdict, accept, normalize, numbers_table, refuse

_EN_SCALE: Final = numbers_table(
    "hundred=100 thousand=1000 million=1000000 billion=1000000000 trillion=1000000000000"
)
_KO_SCALE: Final = numbers_table("십=10 백=100 천=1000 만=10000 억=100000000 조=1000000000000")
_DIGIT_NUMBER: Final = re.compile(
    r"(?P<sign>(?<![\w.,])(?<!\d )-)?"  # not a minus: COVID-19, 2024-03, "1946 -1947"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
    r"(?:\s?(?P<scale>hundred|thousand|million|billion|trillion)\b|(?P<k>k)\b"
    r"|(?P<ko>[십백천만억조]+)(?!각|큼))?"
    r"(?:(?P<ord>st|nd|rd|th)\b|\s?(?P<ord_ko>번째|째))?"
    r"(?:\s?(?P<pct>%|percent\b|per cent\b|퍼센트|프로(?!그)))?",
    re.IGNORECASE,
)
_EN_TENS: Final = numbers_table(
    "twenty=20 thirty=30 forty=40 fifty=50 sixty=60 seventy=70 eighty=80 ninety=90"
)
_EN_UNITS: Final = numbers_table(
    "zero=0 one=1 two=2 three=3 four=4 five=5 six=6 seven=7 eight=8 nine=9 ten=10 eleven=11 "
    "twelve=12 thirteen=13 fourteen=14 fifteen=15 sixteen=16 seventeen=17 eighteen=18 "
    "nineteen=19 dozen=12"
)
_EN_ORDINALS: Final = numbers_table(
    "first=1 second=2 third=3 fourth=4 fifth=5 sixth=6 seventh=7 eighth=8 ninth=9 tenth=10 "
    "eleventh=11 twelfth=12 twentieth=20 hundredth=100"
)
_PERCENT_AFTER: Final = re.compile(r"[\s-]?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_TIME_BEFORE_SECOND: Final = re.compile(r"(?:\b(?:a|per|one|few|split)|\d)\s+$", re.IGNORECASE)
# Native Korean numerals count only before a counter ("두 개", "세 번째"): bare "세", "네", "한"
# are also "world", "yes" and "did". Glued forms ("세대" = generation) need a safe counter.
_KO_TENS: Final = numbers_table(
    "열=10 스물=20 스무=20 서른=30 마흔=40 쉰=50 예순=60 일흔=70 여든=80 아흔=90"
)
_KO_UNITS: Final = numbers_table(
    "하나=1 한=1 두=2 둘=2 세=3 셋=3 네=4 넷=4 다섯=5 여섯=6 일곱=7 여덟=8 아홉=9"
)
_KO_SINO_DIGITS: Final = numbers_table("일=1 이=2 삼=3 사=4 오=5 육=6 칠=7 팔=8 구=9")
_KO_GLUED_COUNTERS: Final = frozenset("번째 째 개 번 명 가지 시간 시 살 마리 달 사람".split())
# What may follow a counter: a particle, or the end of the word.
_KO_AFTER_COUNTER: Final = r"(?=[을를이가은는의에도만씩로으과와까부보뿐밖당마쯤정짜]|[^가-힣]|$)"
_KO_NATIVE: Final = re.compile(
    r"(?<![가-힣])(?:(?P<tens>" + "|".join(_KO_TENS) + r")\s?)?"
    r"(?P<unit>" + "|".join(_KO_UNITS) + r")?(?P<gap>\s?)"
    r"(?P<counter>번째|째|개월|개|명|번|살|시간|시|달|마리|잔|병|권|장|대|가지|사람|분|그릇|줄"
    r"|쪽|주|곳|군데|배|켤레|벌|송이|통|칸|끼|판|차례|바퀴|해|문장|문단|단어|글자|페이지|단계)"
    + _KO_AFTER_COUNTER
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

# "반" (half) after a number and its counter: "2시 반", "한 시간 반", "1년반" add 0.5. A bare
# "2반" is a class, "반값" half price, "반으로" into halves: not read.
_KO_HALF: Final = re.compile(
    r"\s?(?:시간|시|분|초|년|개월|달|주일|주|일|살|세|개|잔|병|컵|그릇|인분|킬로미터|킬로그램"
    r"|킬로|미터|센티미터|센티|리터|마일|인치|평|배|바퀴|스푼|큰술|작은술|근)?\s?반"
    r"(?=[에이은을의쯤정동만도까부짜씩]|[^가-힣]|$)"
)
_EN_HALF: Final = re.compile(r"\sand\sa\shalf\b", re.IGNORECASE)  # "two and a half"


@dataclass(frozen=True, slots=True)
class NumberMention:
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

    for m in WORD.finditer(text):
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


def number_mentions(text: str) -> list[NumberMention]:
    """Every number mention with its span, sorted: digits, English words, Korean numerals."""
    found: list[NumberMention] = []
    starts: list[int] = []

    def add(start: int, end: int, key: str, soft: bool = False) -> None:
        i = bisect.bisect_left(starts, start)
        if (i > 0 and found[i - 1].end > start) or (i < len(found) and found[i].start < end):
            return  # an earlier, more specific reading already covers this span
        starts.insert(i, start)
        found.insert(i, NumberMention(start, end, key, soft))

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
    for m in WORD.finditer(text):
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
    if not HANGUL.search(text):
        return _with_halves(text, found)
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
    return _with_halves(text, found)


def _with_halves(text: str, found: list[NumberMention]) -> list[NumberMention]:
    """Add a half to each count followed by "반" or "and a half" ("2시 반", "two and a half":
    2.5); the spans stay sorted, since a half ends before the next mention starts."""
    out = []
    for n in found:
        plain = not n.key.startswith("#") and not n.key.endswith("%")
        half = (_KO_HALF.match(text, n.end) or _EN_HALF.match(text, n.end)) if plain else None
        if half is None or (
            half.group(0).strip() == "반" and not HANGUL.match(text, n.end - 1)
        ):  # a counter must come between a digit and 반: "2반" is class 2
            out.append(n)
            continue
        value = Decimal(n.key) + Decimal("0.5")
        out.append(NumberMention(n.start, half.end(), _key(value), False))
    return out


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
    compounds with spaces ("1억 2천만") are not read as one number, except a half after a count
    ("2시 반", "한 시간 반", "1년반", "two and a half": 2.5; "2반" is a class).
    """
    a_nums, b_nums = number_mentions(normalize(cached)), number_mentions(normalize(new))
    a = Counter(n.key.lstrip("#") for n in a_nums)
    b = Counter(n.key.lstrip("#") for n in b_nums)
    if a == b:
        return accept("numbers")
    a_only, b_only = a - b, b - a

    def soft(nums: list[NumberMention]) -> set[str]:
        """Values only ever mentioned softly."""
        return {n.key.lstrip("#") for n in nums if n.soft} - {
            n.key.lstrip("#") for n in nums if not n.soft
        }

    if (not b_only and set(a_only) <= soft(a_nums)) or (not a_only and set(b_only) <= soft(b_nums)):
        return accept("numbers")
    labels = {n.key.lstrip("#"): _number_label(n.key) for n in (*a_nums, *b_nums)}
    return refuse(
        "numbers",
        "numbers",
        (labels[k] for k in a_only.elements()),
        (labels[k] for k in b_only.elements()),
    )
