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


_HANGUL_WORD: Final = re.compile(r"[가-힣]+")
# Words that hold 안 without negating: 안 ending a word or before a particle ("집안", "상자안에";
# a negating 안 comes before a verb), and words
# beginning with 안 (안전, 안내, 안녕, 안경, ...). 못 as a nail or pond ("연못", "못을 박다").
_NOT_GLUED_NEGATION: Final = re.compile(
    r"안(?![가-힣])|안(?:[에의은을이도]|으로|에서|쪽|팎|전|내|녕|경|정|심|주|방|과|드로|마|건|개|부|색|약|목|착"
    r"|테나|티|치|달|타|간|락|보|면|무|감|배|장|채|동|산|양|성|기|아|고|겨|다)"
    r"|(?<=연)못|못(?:을|이|은|의)(?![가-힣])"
)


def _glued_negation(a: str, b: str) -> str | None:
    """A word of `b` that is a word of `a` with 안 or 못 inserted ("줘도" / "안줘도",
    "실행돼요" / "실행안돼요"); None when there is none."""
    words_a: set[str] = set(_HANGUL_WORD.findall(a))
    words_b: set[str] = set(_HANGUL_WORD.findall(b))
    for word in words_b - words_a:
        for i, char in enumerate(word):
            if (
                char in "안못"
                and char not in words_a  # "안 되는" / "안되는": spacing, counted above
                and word[:i] + word[i + 1 :] in words_a - words_b
                and not _NOT_GLUED_NEGATION.match(word, i)
            ):
                return word
    return None


def check_negation(cached: str, new: str) -> GuardVerdict:
    """Refuse when the parity of negation markers differs (one side negated, the other not).

    English: not, n't, never, no, none, nothing, nobody, without, cannot, unable, ...; Korean:
    안, 않, 못, 없, 아니, 말고, 지 마, 금지. Double negation counts as positive. Limits: lexical
    antonyms ("fail" vs "pass", "모르다" vs "알다") and negative prefixes ("un-", "non-", "비-")
    are not markers; "안" glued to a verb is counted only for common verbs, but a word that
    is the other prompt's word with 안 or 못 inserted ("줘도" / "안줘도", "실행돼요" /
    "실행안돼요") refuses, unless the 안 starts a word such as 안전, 안내, 안녕, 안경 or means
    "inside" ("상자안에").
    """
    cached, new = normalize(cached), normalize(new)
    a, b = _negations(cached), _negations(new)
    if len(a) % 2 == len(b) % 2:
        if HANGUL.search(cached) and HANGUL.search(new):
            glued = _glued_negation(cached, new) or _glued_negation(new, cached)
            if glued:
                return GuardVerdict(False, "negation", f"negation differs: 안/못 in {glued!r}")
        return accept("negation")
    return GuardVerdict(
        False,
        "negation",
        f"negation differs: {len(a)} vs {len(b)} markers {fmt(set(a))} vs {fmt(set(b))}",
    )
