"""The spelling guard: prompts that differ only in what an embedding model may not see.

The bundled English model lowercases, strips accents and reads emoji and most symbols as one
unknown token, so "pêcheur" and "pécheur", "US" and "us", "👍" and "👎" get the very same vector
(similarity 1.0). This guard compares what such a model folds away, where the two prompts
conflict rather than one merely leaving a detail out:
- symbols outside ASCII (emoji, math, currency signs): each side has one the other lacks;
- chat slang in bare Hangul jamo ("ㅇㅋ" okay against "ㄴㄴ" no), compared the same way;
- accents: a word accented differently on each side ("pêcheur" vs "pécheur");
- capitals: a common word that is also an acronym, in capitals on one side only ("US" vs
  "us", "IT" vs "it"). A prompt written mostly in capitals is shouting, and is not compared.
On qqp_dev, refusing one-sided differences too (a "°" or "₹" on one side, "pokemon" against
"pokémon", "JAVA" against "Java") refused more duplicates than non-duplicates; these rules
refuse none of its duplicates (docs/benchmarks.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Final

from service.guards.text import GuardVerdict, accept, normalize, refuse

_SYMBOL_CATEGORIES: Final = frozenset({"So", "Sm", "Sc"})
# Chat slang in bare jamo ("ㅇㅋ" okay, "ㄴㄴ" no no, "ㅠㅠ"): compatibility jamo, which NFKC
# turns into conjoining jamo, so both blocks.
_JAMO_WORD: Final = re.compile(r"[\u1100-\u11ff\u3131-\u318e]+")
_COMPATIBILITY_JAMO: Final = {
    ord(folded): chr(code)
    for code in range(0x3131, 0x318F)
    if len(folded := unicodedata.normalize("NFKC", chr(code))) == 1
}


def _jamo_words(text: str) -> set[str]:
    """Jamo-only words, written back in compatibility jamo so that reasons read "ㅇㅋ"."""
    return {word.translate(_COMPATIBILITY_JAMO) for word in _JAMO_WORD.findall(text)}


_WORD: Final = re.compile(r"\w+")
_ASCII_WORD: Final = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,}(?![A-Za-z])")
# Common words that are also acronyms: written in capitals they are another word.
_ACRONYM_HOMOGRAPHS: Final = frozenset("us it who am pm or in me id as at".split())
# At least this share of a prompt's words in capitals, and it is shouting.
_SHOUTING_SHARE: Final = 0.5


def _symbols(text: str) -> set[str]:
    return {ch for ch in text if ord(ch) > 127 and unicodedata.category(ch) in _SYMBOL_CATEGORIES}


def _strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", bare)


def _accented_spellings(text: str) -> dict[str, set[str]]:
    """Each word outside ASCII by its form without accents -> the spellings used."""
    spellings: dict[str, set[str]] = {}
    for match in _WORD.finditer(text.casefold()):
        word = match.group(0)
        spellings.setdefault(_strip_accents(word) if not word.isascii() else word, set()).add(word)
    return spellings


def _accent_conflicts(a: str, b: str) -> tuple[set[str], set[str]]:
    if a.isascii() and b.isascii():
        return set(), set()
    left, right = _accented_spellings(a), _accented_spellings(b)
    only_a: set[str] = set()
    only_b: set[str] = set()
    for bare in left.keys() & right.keys():
        spelled_a, spelled_b = left[bare] - right[bare], right[bare] - left[bare]
        # A word unaccented on one side is a lazy spelling ("pokemon"), not a conflict.
        if not left[bare] & right[bare] and not (bare in left[bare] or bare in right[bare]):
            only_a |= spelled_a
            only_b |= spelled_b
    return only_a, only_b


def _case_forms(text: str) -> Mapping[str, set[str]] | None:
    """Each ASCII word, lowercased -> the shapes it is written in ("upper", "title", "lower");
    None when the prompt is shouting."""
    forms: dict[str, set[str]] = {}
    upper = 0
    for match in _ASCII_WORD.finditer(text):
        word = match.group(0)
        shape = "upper" if word.isupper() else "lower" if word.islower() else "title"
        upper += shape == "upper"
        forms.setdefault(word.lower(), set()).add(shape)
    words = sum(len(shapes) for shapes in forms.values())
    if upper >= 2 and upper >= _SHOUTING_SHARE * words:
        return None
    return forms


def _acronym_conflicts(a: str, b: str) -> tuple[set[str], set[str]]:
    left, right = _case_forms(a), _case_forms(b)
    only_a: set[str] = set()
    only_b: set[str] = set()
    if left is None or right is None:
        return only_a, only_b
    for word in left.keys() & right.keys() & _ACRONYM_HOMOGRAPHS:
        for caps, other, out in ((left, right, only_a), (right, left, only_b)):
            if "upper" in caps[word] and "upper" not in other[word]:
                out.add(word.upper())
    return only_a, only_b


def check_spelling(cached: str, new: str) -> GuardVerdict:
    """Refuse when symbols, jamo-only words, accents or an acronym's capitals differ.

    Limits: a symbol on one side only passes ("Draw 🍎" vs "Draw an apple" is the cosine's
    to judge); so does a word accented on one side only ("años" vs "anos"); capitals are
    compared only for the common words in `_ACRONYM_HOMOGRAPHS` ("CO" vs "Co" passes); two
    spellings of one slang word conflict ("ㅋㅋ" / "ㅎㅎ", both laughter).
    """
    a, b = normalize(cached), normalize(new)
    if a == b:
        return accept("spelling")
    symbols_a, symbols_b = _symbols(a), _symbols(b)
    if symbols_a - symbols_b and symbols_b - symbols_a:
        return refuse("spelling", "symbols", symbols_a - symbols_b, symbols_b - symbols_a)
    jamo_a, jamo_b = _jamo_words(a), _jamo_words(b)
    if jamo_a - jamo_b and jamo_b - jamo_a:
        return refuse("spelling", "jamo words", jamo_a - jamo_b, jamo_b - jamo_a)
    accents_a, accents_b = _accent_conflicts(a, b)
    if accents_a or accents_b:
        return refuse("spelling", "accents", accents_a, accents_b)
    caps_a, caps_b = _acronym_conflicts(a, b)
    if caps_a or caps_b:
        return refuse("spelling", "capitals", caps_a, caps_b)
    return accept("spelling")
