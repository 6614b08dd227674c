"""Which writing systems a prompt uses, so the policy can tell whether the embedder covers it.

An English-only embedder maps Korean or Japanese text to vectors that sit close together
whatever the text says, so a semantic hit on such text is a guess. The policy asks
`scripts_of` / `dominant_script` on every lookup; both are a single pass over the characters
with a bisect into a sorted table of code-point ranges, so they cost microseconds. Only
letters count (`str.isalpha`): digits, punctuation, spaces, symbols and emoji are ignored, and
combining marks (Thai and Devanagari vowel signs) ride along with the consonants they follow.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Final

LATIN: Final = "Latin"
HANGUL: Final = "Hangul"
HAN: Final = "Han"
HIRAGANA: Final = "Hiragana"
KATAKANA: Final = "Katakana"
CYRILLIC: Final = "Cyrillic"
ARABIC: Final = "Arabic"
GREEK: Final = "Greek"
THAI: Final = "Thai"
DEVANAGARI: Final = "Devanagari"
HEBREW: Final = "Hebrew"
OTHER: Final = "Other"

# Every name `scripts_of` can return; also the tie-break order of `dominant_script`.
SCRIPTS: Final[tuple[str, ...]] = (
    LATIN,
    HANGUL,
    HAN,
    HIRAGANA,
    KATAKANA,
    CYRILLIC,
    ARABIC,
    GREEK,
    THAI,
    DEVANAGARI,
    HEBREW,
    OTHER,
)

# (first, last, script), inclusive, sorted by first code point, non-overlapping.
_RANGES: Final[tuple[tuple[int, int, str], ...]] = (
    (0x0041, 0x024F, LATIN),  # Basic Latin letters .. Latin Extended-B (isalpha filters symbols)
    (0x0250, 0x02AF, LATIN),  # IPA extensions
    (0x0370, 0x03FF, GREEK),
    (0x0400, 0x052F, CYRILLIC),
    (0x0590, 0x05FF, HEBREW),
    (0x0600, 0x06FF, ARABIC),
    (0x0750, 0x077F, ARABIC),
    (0x0870, 0x08FF, ARABIC),
    (0x0900, 0x097F, DEVANAGARI),
    (0x0E00, 0x0E7F, THAI),
    (0x1100, 0x11FF, HANGUL),  # conjoining jamo
    (0x1C80, 0x1C8F, CYRILLIC),
    (0x1D00, 0x1DBF, LATIN),  # phonetic extensions (a few Greek/Cyrillic small capitals too)
    (0x1E00, 0x1EFF, LATIN),  # Latin Extended Additional (Vietnamese)
    (0x1F00, 0x1FFF, GREEK),
    (0x2090, 0x209C, LATIN),  # subscript letters
    (0x2184, 0x2184, LATIN),
    (0x2C60, 0x2C7F, LATIN),
    (0x2DE0, 0x2DFF, CYRILLIC),
    (0x2E80, 0x2FDF, HAN),  # CJK and Kangxi radicals
    (0x3005, 0x3007, HAN),  # iteration mark, closing mark, ideographic zero
    (0x3021, 0x3029, HAN),  # Hangzhou numerals
    (0x3038, 0x303B, HAN),
    (0x3041, 0x309F, HIRAGANA),
    (0x30A0, 0x30FF, KATAKANA),
    (0x3131, 0x318F, HANGUL),  # compatibility jamo
    (0x31F0, 0x31FF, KATAKANA),
    (0x3400, 0x4DBF, HAN),
    (0x4E00, 0x9FFF, HAN),
    (0xA640, 0xA69F, CYRILLIC),
    (0xA720, 0xA7FF, LATIN),
    (0xA8E0, 0xA8FF, DEVANAGARI),
    (0xA960, 0xA97F, HANGUL),
    (0xAB30, 0xAB6F, LATIN),
    (0xAC00, 0xD7FF, HANGUL),  # syllables and jamo extended-B
    (0xF900, 0xFAFF, HAN),  # compatibility ideographs
    (0xFB00, 0xFB06, LATIN),  # ligatures
    (0xFB1D, 0xFB4F, HEBREW),
    (0xFB50, 0xFDFF, ARABIC),
    (0xFE70, 0xFEFF, ARABIC),
    (0xFF21, 0xFF3A, LATIN),  # full-width A-Z
    (0xFF41, 0xFF5A, LATIN),  # full-width a-z
    (0xFF66, 0xFF9F, KATAKANA),  # half-width katakana
    (0xFFA0, 0xFFDC, HANGUL),  # half-width jamo
    (0x1AFF0, 0x1AFFF, KATAKANA),  # kana extended-B
    (0x1B000, 0x1B000, KATAKANA),
    (0x1B001, 0x1B11F, HIRAGANA),  # kana supplement and extended-A
    (0x1B120, 0x1B122, KATAKANA),
    (0x1B132, 0x1B132, HIRAGANA),
    (0x1B150, 0x1B152, HIRAGANA),  # small kana extension
    (0x1B155, 0x1B167, KATAKANA),
    (0x1DF00, 0x1DFFF, LATIN),  # Latin extended-G
    (0x1EE00, 0x1EEFF, ARABIC),  # Arabic mathematical alphabetic symbols
    (0x20000, 0x3FFFF, HAN),  # supplementary ideograph planes
)
_STARTS: Final[tuple[int, ...]] = tuple(first for first, _, _ in _RANGES)


def script_of_char(char: str) -> str | None:
    """The script of one character, or None when it is not a letter."""
    if not char.isalpha():
        return None
    point = ord(char)
    if point < 0x80:
        return LATIN
    slot = bisect.bisect_right(_STARTS, point) - 1
    if slot >= 0:
        first, last, script = _RANGES[slot]
        if first <= point <= last:
            return script
    return OTHER


def script_counts(text: str) -> Counter[str]:
    """Letters per script in `text`."""
    if text.isascii():
        # Fast path for the common English prompt: no table look-ups at all.
        letters = sum(1 for char in text if char.isalpha())
        return Counter({LATIN: letters}) if letters else Counter()
    counts: Counter[str] = Counter()
    for char in text:
        script = script_of_char(char)
        if script is not None:
            counts[script] += 1
    return counts


def scripts_of(text: str) -> frozenset[str]:
    """The set of scripts whose letters occur in `text` (empty for digits/emoji only)."""
    return frozenset(script_counts(text))


def dominant_script(text: str) -> str | None:
    """The script with the most letters; ties go to the earlier name in `SCRIPTS`."""
    counts = script_counts(text)
    if not counts:
        return None
    return max(SCRIPTS, key=lambda script: (counts[script], -SCRIPTS.index(script)))


def uncovered_scripts(text: str, covered: frozenset[str] | None) -> frozenset[str]:
    """Scripts in `text` that a model covering `covered` (None: all) has not seen.

    `Other` (letters outside the table) never counts: it is too rare and too mixed to route on.
    The policy's bypass rule and the embedder routing both use this, so they cannot disagree.
    """
    if covered is None:
        return frozenset()
    return scripts_of(text) - covered - {OTHER}
