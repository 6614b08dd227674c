"""The vocabulary every guard shares: the verdict type, text normalization, stop words.

Guards compare two prompts after the same normalization (NFKC, plain quotes and dashes, single
spaces) and explain a refusal in one short line built by `refuse`, so that logs and the
benchmark show which detail differed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """One guard's decision on a pair; `reason` is a short line for logs and the benchmark."""

    passed: bool
    guard: str
    reason: str


Guard = Callable[[str, str], GuardVerdict]


def table(spec: str) -> Mapping[str, str]:
    """A constant lexicon written compactly as "key=value key=value ..."."""
    return MappingProxyType(dict(item.split("=", 1) for item in spec.split()))


def numbers_table(spec: str) -> Mapping[str, int]:
    return MappingProxyType({key: int(value) for key, value in table(spec).items()})


_CHAR_MAP: Final = str.maketrans(
    {"‘": "'", "’": "'", "ʼ": "'", "“": '"', "”": '"', "−": "-", "–": "-", "—": " - "}
)
SPACES: Final = re.compile(r"\s+")
HANGUL: Final = re.compile(r"[가-힣]")
WORD: Final = re.compile(r"[a-z]+", re.IGNORECASE)
SENTENCE_END: Final = frozenset('.!?:;"(\n')
STOPWORDS: Final = frozenset(
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
    return SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)).strip()


def sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in SENTENCE_END


def fmt(items: Iterable[str], limit: int = 8) -> str:
    shown = sorted(items)
    more = f", ... +{len(shown) - limit}" if len(shown) > limit else ""
    return "{" + ", ".join(shown[:limit]) + more + "}"


def accept(guard: str) -> GuardVerdict:
    return GuardVerdict(True, guard, "ok")


def refuse(guard: str, what: str, a: Iterable[str], b: Iterable[str]) -> GuardVerdict:
    return GuardVerdict(False, guard, f"{what} differ: {fmt(a)} vs {fmt(b)}")
