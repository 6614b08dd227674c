"""The mood guard: the same words asked as a question and said as a statement.

"Delete the branch?" asks whether to; "Delete the branch." says to. A sentence-final mark is
the only difference, and an embedding scores such pairs at 0.96 and above. The policy already
treats a missing mark as noise ("What is a mutex" and "What is a mutex?" are one prompt);
this guard refuses only when one prompt ends in a question mark and the other in a full stop
or an exclamation mark.
"""

from __future__ import annotations

from typing import Final

from service.guards.text import GuardVerdict, accept, normalize

_FINAL_MARKS: Final = ".?!。？！…"
_QUESTION: Final = frozenset("?？")


def _mood(text: str) -> tuple[str, bool | None]:
    """The text without its final marks, and whether they ask (None: no final mark)."""
    bare = text.rstrip(_FINAL_MARKS).rstrip()
    marks = text[len(bare) :].strip()
    return bare.casefold(), (bool(_QUESTION & set(marks)) if marks else None)


def check_mood(cached: str, new: str) -> GuardVerdict:
    """Refuse the same words as a question on one side and a statement on the other.

    Limits: only identical words are compared; a rephrased question against a statement
    ("Should I delete the branch?" vs "Delete the branch.") is left to the cosine. "What is a
    mutex." typed with a full stop is read as a statement and misses its question.
    """
    (bare_a, asks_a), (bare_b, asks_b) = _mood(normalize(cached)), _mood(normalize(new))
    if bare_a != bare_b or asks_a is None or asks_b is None or asks_a == asks_b:
        return accept("mood")
    asked, told = ("cached", "new") if asks_a else ("new", "cached")
    return GuardVerdict(False, "mood", f"mood differs: the {asked} prompt asks, the {told} states")
