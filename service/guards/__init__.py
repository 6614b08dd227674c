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
time linear in the text (long prompts included) and keeps no state between calls. Each guard
lives in its own module of this package; this module holds the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from service.guards.amounts import check_amounts
from service.guards.comparatives import check_comparatives
from service.guards.dates import check_dates
from service.guards.entities import check_entities
from service.guards.mood import check_mood
from service.guards.negation import check_negation
from service.guards.numbers import check_numbers
from service.guards.opposites import check_opposites
from service.guards.roles import check_swapped_roles
from service.guards.shared_context import check_shared_context
from service.guards.spelling import check_spelling
from service.guards.swapped_words import check_swapped_words
from service.guards.text import Guard, GuardVerdict, normalize
from service.guards.word_order import check_word_order

__all__ = [
    "GUARDS",
    "Guard",
    "GuardVerdict",
    "check_all",
    "check_amounts",
    "check_comparatives",
    "check_dates",
    "check_entities",
    "check_mood",
    "check_negation",
    "check_numbers",
    "check_opposites",
    "check_shared_context",
    "check_spelling",
    "check_swapped_roles",
    "check_swapped_words",
    "check_word_order",
    "normalize",
]

GUARDS: Final[Mapping[str, Guard]] = MappingProxyType(
    {
        "numbers": check_numbers,
        "dates": check_dates,
        "amounts": check_amounts,
        "negation": check_negation,
        "entities": check_entities,
        "comparatives": check_comparatives,
        "swapped_roles": check_swapped_roles,
        "word_order": check_word_order,
        "spelling": check_spelling,
        "mood": check_mood,
        "shared_context": check_shared_context,
        "opposites": check_opposites,
        "swapped_words": check_swapped_words,
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
