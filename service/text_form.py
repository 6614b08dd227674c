"""The one form of a prompt's text that the embedding model and the policy read.

The same words reach us as different code points: Hangul decomposed into jamo (NFD, from
macOS file names and some input methods), full-width Latin letters and digits from East Asian
keyboards, zero-width spaces and soft hyphens pasted from web pages. Embedding models read
these as other tokens: two decomposed Korean prompts of opposite meaning ("brighter" /
"darker") scored 0.9985, where the composed ones score 0.95, and a zero-width space hid a
negation from the guards. The exact key keeps the bytes as sent; the semantic text is read
in this form (an NFC/NFD pair of one prompt is then a semantic hit at 1.0).

NFKC would also fold "x²" into "x2" and "①" into "1": only the full-width ASCII block is
folded here, which only ever differs in width."""

from __future__ import annotations

import unicodedata

# Code points that render as nothing inside a word. U+200D (zero-width joiner) is kept: it
# binds emoji sequences, and is not typed between letters.
_INVISIBLE = {0x00AD, 0x200B, 0x200C, 0x2060, 0xFEFF}
_TABLE: dict[int, int | None] = {code: None for code in _INVISIBLE}
_TABLE.update({code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)})  # ！..～ to !..~
_TABLE[0x3000] = 0x20  # ideographic space


def reading_form(text: str) -> str:
    """`text` composed (NFC), full-width ASCII folded, invisible characters removed."""
    if text.isascii():
        return text  # the common case costs one scan
    return unicodedata.normalize("NFC", text).translate(_TABLE)
