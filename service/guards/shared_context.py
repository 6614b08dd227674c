"""The shared-context guard: one long text, followed (or preceded) by different requests.

"<a four-sentence notice> Summarize this." and "<the same notice> Translate this into
English." share almost every word, and a sentence embedding is an average over them: such
pairs score 0.99 and more (the Korean model's too), far above any threshold, whatever the
request says. When most of both prompts is the same run of words, at the start and at the
end, the cosine cannot judge the part that differs; this guard then asks that part to be
the same words too (case and punctuation aside).
"""

from __future__ import annotations

import re
from typing import Final

from service.guards.text import GuardVerdict, accept, normalize

# At least this many words shared at the start and end of both prompts ...
MIN_SHARED_WORDS: Final = 20
# ... making up at least this share of the longer prompt.
MIN_SHARED_SHARE: Final = 0.5
_WORD: Final = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(normalize(text).casefold())


def _shared_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """Words shared at the start, then at the end of what is left."""
    limit = min(len(a), len(b))
    head = 0
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def _quote(words: list[str], limit: int = 8) -> str:
    shown = " ".join(words[:limit]) + (" ..." if len(words) > limit else "")
    return f'"{shown}"'


def check_shared_context(cached: str, new: str) -> GuardVerdict:
    """Refuse when a long shared run of words surrounds parts that differ.

    Limits: a paraphrased request after a long shared text is refused too ("Summarize this"
    vs "Give me a summary"): the embedding cannot tell it from a different request there.
    A long shared text in the middle, with different words on both ends, is left to the
    cosine and the other guards.
    """
    a, b = _words(cached), _words(new)
    if a == b:
        return accept("shared_context")
    head, tail = _shared_ends(a, b)
    shared = head + tail
    if shared < MIN_SHARED_WORDS or shared < MIN_SHARED_SHARE * max(len(a), len(b)):
        return accept("shared_context")
    rest_a, rest_b = a[head : len(a) - tail], b[head : len(b) - tail]
    return GuardVerdict(
        False,
        "shared_context",
        f"{shared} words shared, the rest differs: {_quote(rest_a)} vs {_quote(rest_b)}",
    )
