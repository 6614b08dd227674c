"""The swapped-words guard: the same words, with two of them trading places.

"How far is 5 miles in kilometers?" and "How far is 5 kilometers in miles?", or "learn Rust as a
Python developer" and "learn Python as a Rust developer", hold the same words: an embedding,
an average over them, scores such pairs at 0.97-0.99. The swapped-roles guard reads roles
from relations it knows ("X to Y", particles); this one needs none: two prompts that are word
for word the same but for two words that traded places ask something else, unless the two
were joined by "and", "or", "vs" or a comma ("TCP and UDP" / "UDP and TCP").
"""

from __future__ import annotations

import re
from typing import Final

from service.guards.text import STOPWORDS, GuardVerdict, accept, normalize

_TOKEN: Final = re.compile(r"\w+|[^\w\s]")
# Between two swapped words, these make the pair a list: the order carries no role.
_SYMMETRIC: Final = frozenset({"and", "or", "vs", "versus", ",", "&", "/", "nor", "및", "와", "과"})


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text).casefold())


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
    from Seoul") is a paraphrase and passes; words joined as a list pass.
    """
    a, b = _tokens(cached), _tokens(new)
    found = _swap(a, b)
    if found is None:
        return accept("swapped_words")
    i, j = found
    first, second = a[i], a[j]
    if first in STOPWORDS or second in STOPWORDS or not (first.isalnum() and second.isalnum()):
        return accept("swapped_words")
    if any(token in _SYMMETRIC for token in a[i + 1 : j]):
        return accept("swapped_words")
    return GuardVerdict(
        False, "swapped_words", f"swapped words: {first!r} and {second!r} traded places"
    )
