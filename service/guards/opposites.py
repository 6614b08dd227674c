"""The opposites guard: one prompt asks for a thing, the other for its opposite.

"a short poem" and "a long poem", "a soft yolk" and "a hard yolk", "explain it briefly" and
"explain it in detail" differ in one word, and an embedding places a word near its opposite
(they appear in the same contexts): such pairs score 0.96-0.97. The comparatives guard covers
"-er/more" forms; this one covers the plain words, from a fixed list of pairs whose meanings
are opposite in any context, in English and Korean. A pair conflicts when each prompt has one
side of it and not the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from service.guards.text import GuardVerdict, accept, normalize, refuse

# English pairs: each word is matched whole, case aside.
_EN_PAIRS: Final = tuple(
    tuple(pair.split("/"))
    for pair in (
        "short/long brief/detailed briefly/detail concise/detailed soft/hard hot/cold "
        "warm/cool cheap/expensive big/small large/small fast/slow quick/slow easy/difficult "
        "high/low early/late heavy/light thick/thin wide/narrow deep/shallow "
        "increase/decrease increasing/decreasing raise/lower before/after first/last "
        "minimum/maximum min/max best/worst advantages/disadvantages pros/cons buy/sell "
        "buying/selling import/export upload/download input/output open/close opening/closing "
        "start/stop enable/disable add/remove encrypt/decrypt encryption/decryption "
        "compress/decompress push/pull sunrise/sunset win/lose winning/losing accept/reject "
        "include/exclude inside/outside above/below upper/lower ascending/descending "
        "male/female north/south east/west summer/winter morning/evening odd/even "
        "positive/negative true/false debit/credit income/expense profit/loss "
        "beginner/advanced formal/informal polite/rude agree/disagree agreeing/objecting "
        "pro/against internal/external public/private sync/async synchronous/asynchronous "
        "client/server frontend/backend front-end/back-end"
    ).split()
)
# Korean pairs: Sino-Korean nouns and fixed adverbs, matched inside a word (particles follow).
_KO_PAIRS: Final = tuple(
    tuple(pair.split("/"))
    for pair in (
        "짧게/길게 간결/길게 간단/자세 간단/상세 간략/자세 간략/상세 요약/자세 쉽게/어렵게 "
        "오름차순/내림차순 상승/하락 "
        "증가/감소 입금/출금 수출/수입 최대/최소 최댓값/최솟값 장점/단점 일출/일몰 "
        "존댓말/반말 찬성/반대 흑자/적자 상한/하한 공개/비공개 동기/비동기"
    ).split()
)
_EN_WORD: Final = re.compile(r"[a-z]+(?:-[a-z]+)?")
_HANGUL_WORD: Final = re.compile(r"[가-힣]+")


def _english(text: str) -> set[str]:
    return set(_EN_WORD.findall(text.casefold()))


def _has(words: Iterable[str], stem: str, unless: str) -> bool:
    """`stem` inside a word, unless that word holds `unless` ("비공개" holds "공개")."""
    return any(stem in word and not (unless and unless in word) for word in words)


def _found(text: str) -> set[str]:
    words = _english(text)
    found = {w for pair in _EN_PAIRS for w in pair if w in words}
    hangul = _HANGUL_WORD.findall(text)
    for a, b in _KO_PAIRS if hangul else ():
        if _has(hangul, a, b if a in b else ""):
            found.add(a)
        if _has(hangul, b, a if b in a else ""):
            found.add(b)
    return found


def check_opposites(cached: str, new: str) -> GuardVerdict:
    """Refuse when one prompt has one side of a listed pair and the other has the other side.

    Limits: only the listed pairs; a prompt with both sides ("pros and cons") conflicts with
    neither; an opposite reached by negation ("not long") is the negation guard's; a word
    used in another sense ("a long time ago" against "in short") refuses a paraphrase.
    """
    a, b = _found(normalize(cached)), _found(normalize(new))
    if a == b:
        return accept("opposites")
    mine: set[str] = set()
    theirs: set[str] = set()
    for x, y in (*_EN_PAIRS, *_KO_PAIRS):
        for left, right in ((x, y), (y, x)):
            if left in a and left not in b and right in b and right not in a:
                mine.add(left)
                theirs.add(right)
    if mine:
        return refuse("opposites", "opposites", mine, theirs)
    return accept("opposites")
