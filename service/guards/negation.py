"""The negation guard: one prompt negated and the other not ("can" vs "can't", "돼요" vs "안 돼요").

It counts negation markers in English and Korean and compares their parity, after removing
phrases that contain a negation word without negating ("not only", "no matter", "뿐만 아니라").
"""

from __future__ import annotations

import re
from typing import Final

from service.guards.text import HANGUL, GuardVerdict, accept, fmt, normalize

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
    if HANGUL.search(cleaned):
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
        return accept("negation")
    return GuardVerdict(
        False,
        "negation",
        f"negation differs: {len(a)} vs {len(b)} markers {fmt(set(a))} vs {fmt(set(b))}",
    )
