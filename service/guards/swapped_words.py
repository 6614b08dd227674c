"""The swapped-words guard: the same words, with two of them trading places.

"How far is 5 miles in kilometers?" and "How far is 5 kilometers in miles?", or "learn Rust as a
Python developer" and "learn Python as a Rust developer", hold the same words: an embedding,
an average over them, scores such pairs at 0.97-0.99. The swapped-roles guard reads roles
from relations it knows ("X to Y", particles); this one needs none: two prompts that are word
for word the same but for two words that traded places ask something else, unless the two
were joined by "and", "or", "vs" or a comma ("TCP and UDP" / "UDP and TCP"). Korean words
are compared without their particles and copulas, so "5킬로미터는 몇 마일이야" and "5마일은 몇
킬로미터야" are the same words with two of them swapped.
"""

from __future__ import annotations

import re
from typing import Final

from service.guards.text import STOPWORDS, GuardVerdict, accept, normalize

# Hangul runs apart from digits and Latin letters: "5킬로미터는" is "5" and "킬로미터는".
# A unit written with a slash ("km/h", "m/s") is one word, so that it can trade places.
_UNIT: Final = re.compile(r"[a-z]{1,3}/[a-z]{1,3}(?![a-z/])")
_TOKEN: Final = re.compile(_UNIT.pattern + r"|[가-힣]+|[^\W가-힣]+|[^\w\s]")
# Between two swapped words, these make the pair a list: the order carries no role.
_SYMMETRIC: Final = frozenset({"and", "or", "vs", "versus", ",", "&", "/", "nor", "및", "와", "과"})
# Korean endings taken off a word so that "킬로미터는" and "킬로미터야" are one word: copulas
# first, then particles, longest first. 와/과/랑/하고 join a list and stay as a token "와".
_KO_ENDING: Final = re.compile(
    r"(?<=[가-힣])(?:(?P<list>이랑|하고|와|과|랑)|이에요|이예요|예요|에요|입니다|인가요|인가|이야"
    r"|야|이다|에서|으로|에게|한테|보다|부터|까지|처럼|[은는이가을를의에로도만])$"
)


def _stem(word: str) -> list[str]:
    ending = _KO_ENDING.search(word)
    if ending is None:
        return [word]
    return [word[: ending.start()], "와"] if ending["list"] else [word[: ending.start()]]


def _tokens(text: str) -> list[str]:
    tokens = _TOKEN.findall(normalize(text).casefold())
    return [
        stem for token in tokens for stem in (_stem(token) if "가" <= token[0] <= "힣" else [token])
    ]


def _is_word(token: str) -> bool:
    return token.isalnum() or bool(_UNIT.fullmatch(token))


def _swap(a: list[str], b: list[str]) -> tuple[int, int] | None:
    """Positions i < j where a and b differ by exactly a[i] <-> a[j]; None otherwise."""
    if len(a) != len(b):
        return None
    differ = [k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(differ) != 2:
        return None
    i, j = differ
    return (i, j) if a[i] == b[j] and a[j] == b[i] else None


def check_swapped_words(cached: str, new: str) -> GuardVerdict:
    """Refuse two content words that traded places, the rest word for word the same.

    Limits: only an exact swap of two single words; a reordered phrase ("flights to Tokyo
    from Seoul") is a paraphrase and passes; words joined as a list pass ("사과와 배" / "배와
    사과"). Korean particles are stripped by a short list, not a parser.
    """
    a, b = _tokens(cached), _tokens(new)
    found = _swap(a, b)
    if found is None:
        return accept("swapped_words")
    i, j = found
    first, second = a[i], a[j]
    if first in STOPWORDS or second in STOPWORDS or not (_is_word(first) and _is_word(second)):
        return accept("swapped_words")
    if any(token in _SYMMETRIC for token in a[i + 1 : j]):
        return accept("swapped_words")
    return GuardVerdict(
        False, "swapped_words", f"swapped words: {first!r} and {second!r} traded places"
    )
