"""A local, script-aware estimate of the input tokens of an Anthropic Messages request.

The cost levers (prompt-cache breakpoints, context budgets, whitespace normalization) and the
`count_tokens` fallback need token counts without a network call, and Claude 3+ has no public
tokenizer. So text is split into pieces a BPE tokenizer treats alike — Latin words (camelCase
and snake_case identifiers split into parts), digit runs, Hangul syllables, Han and kana
characters, other alphabets, punctuation runs, whitespace runs, symbols — and each piece class
has a rate. The rates were fitted per tokenizer generation against reference counts from an
offline reconstruction of Anthropic's `count_tokens` — not against Anthropic itself, which
this project cannot reach; docs/cost-levers.md says where the numbers come from. On the
project's own examples the estimate is within 10% of the reference on every text (3% in the
median) for Claude 3 .. Opus 4.6, and within 15% for Opus 4.7 and later. Structural costs that
no text reveals (message framing, the tool-use system prompt, images, PDFs) are fixed numbers,
some published by Anthropic and some guessed; each says which.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from service.scripts import ARABIC, CYRILLIC, GREEK, HEBREW, LATIN, script_of_char

# --- fixed costs ------------------------------------------------------------------------------
# Anthropic's vision docs: an image costs about width*height/750 tokens and images over
# ~1.15 megapixels are scaled down first, so ~1,600 is what a full-size image costs. We do not
# decode images, so every image is charged that ceiling (an over-estimate for small images).
IMAGE_TOKENS: Final = 1_600
# A PDF costs 1,500-3,000 text tokens per page plus each page as an image (Anthropic's PDF
# docs); without parsing it we charge one dense page. A guess: long PDFs are under-counted.
DOCUMENT_TOKENS: Final = 3_000
# The tool-use system prompt Anthropic adds when `tools` is present (tool-use pricing docs,
# Claude 4-class models): 346 tokens for tool_choice auto/none, 313 for any/tool.
TOOL_PROMPT_AUTO: Final = 346
TOOL_PROMPT_FORCED: Final = 313
# Unmeasured guesses: a role marker per message after the first, and a block's wrapper.
MESSAGE_TOKENS: Final = 3
SYSTEM_TOKENS: Final = 3
TOOL_USE_TOKENS: Final = 8
TOOL_RESULT_TOKENS: Final = 5


@dataclass(frozen=True)
class TokenizerProfile:
    """Piece rates of one Claude tokenizer generation (tokens per piece).

    A Latin word that is not in the common-word list costs 1 up to `word_free_len` letters and
    `1/word_letters_per_token` more per letter beyond; an identifier part after the first
    (`getUser|By|Id`, `min_|similarity`) costs `part_extra` more; a capitalized part
    `capital` more. `message_frame` is what a single user message costs beyond its text.
    """

    name: str
    word_free_len: int
    word_letters_per_token: float
    part_extra: float
    capital: float
    punct_char: float
    punct_run: float
    hangul: float = 1.057  # common syllables are one token, rarer ones two or three
    kana: float = 0.938
    han: float = 1.057
    lone_space: float = 1.156  # a space not between two words (before a digit, in Korean)
    digit_group: float = 1.0  # digits are grouped in threes, right-aligned: 12345 -> 12|345
    newline_run: float = 1.0
    indent_run: float = 1.0
    space_run: float = 1.0
    alphabet_letter: float = 0.5  # Cyrillic, Greek, Arabic, Hebrew, accented Latin
    other_letter: float = 1.0  # Thai, Devanagari and other scripts
    unicode_punct: float = 1.0  # 。、！（）— … “ ” € and the like
    symbol_byte: float = 0.75  # emoji and math symbols fall back to UTF-8 bytes
    message_frame: int = 7


# Claude 3 through Claude Opus 4.6, Sonnet 4.x and Haiku 4.5: the router's default models.
CLAUDE_3: Final = TokenizerProfile(
    name="claude-3",
    word_free_len=7,
    word_letters_per_token=4.0,
    part_extra=0.25,
    capital=0.0,
    punct_char=0.118,
    punct_run=0.851,
    message_frame=7,
)
# Claude Opus 4.8 and the 5-series: a smaller vocabulary, so English and code split more.
CLAUDE_48: Final = TokenizerProfile(
    name="claude-4.8",
    word_free_len=3,
    word_letters_per_token=3.5,
    part_extra=0.5,
    capital=0.832,
    punct_char=0.308,
    punct_run=0.645,
    message_frame=6,
)
# Claude Opus 4.7: the 4.8 vocabulary under a larger single-message frame.
CLAUDE_47: Final = replace(CLAUDE_48, name="claude-4.7", message_frame=11)

_MODEL_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku|fable|mythos)-(\d+)(?:-(\d{1,2})(?!\d))?")


def profile_for_model(model: object) -> TokenizerProfile:
    """The tokenizer generation of a model id; unknown names and aliases (`auto`) get
    `CLAUDE_3`, the generation of the models the router picks by default."""
    if not isinstance(model, str):
        return CLAUDE_3
    match = _MODEL_VERSION.search(model.strip().lower())
    if match is None:
        return CLAUDE_3
    major = int(match.group(1))
    minor = int(match.group(2) or 0)
    if major >= 5 or (major == 4 and minor >= 8):
        return CLAUDE_48
    if major == 4 and minor == 7:
        return CLAUDE_47
    return CLAUDE_3


# --- text -------------------------------------------------------------------------------------
# One regex pass (C speed) splits the text into pieces; Python then prices each distinct piece
# once, so repeated words, spaces and punctuation cost nothing extra.

_LATIN_LETTERS: Final = r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_HANGUL: Final = r"\uac00-\ud7a3\u1100-\u11ff\u3131-\u318e"
_KANA: Final = r"\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HAN: Final = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ASCII_PUNCT: Final = r"!-/:-@\[-`{-~"
# What a single space merges into on both sides: ASCII letters and punctuation, and letters
# of alphabetic scripts (Latin, Greek, Cyrillic, Hebrew, Arabic).
_JOINS: Final = rf"[{_LATIN_LETTERS}{_ASCII_PUNCT}\u0370-\u052f\u0590-\u06ff]"

# One pass splits the text into pieces; equal pieces are then priced once (most repeat).
_PIECE: Final = re.compile(
    rf"[{_LATIN_LETTERS}]+|[0-9]+|\s+|[{_ASCII_PUNCT}]+|[{_HANGUL}]+|[{_KANA}]+|[{_HAN}]+|.",
    re.DOTALL,
)
_CONTINUED: Final = re.compile(rf"[_.][{_LATIN_LETTERS}]")
_JOINED_SPACE: Final = re.compile(rf"{_JOINS}[ \t\f\v\r](?={_JOINS})")
_KINDS: Final = (
    (re.compile(r"[0-9]"), "digits"),
    (re.compile(r"\s"), "space"),
    (re.compile(rf"[{_ASCII_PUNCT}]"), "punct"),
    (re.compile(rf"[{_HANGUL}]"), "hangul"),
    (re.compile(rf"[{_KANA}]"), "kana"),
    (re.compile(rf"[{_HAN}]"), "han"),
    (re.compile(rf"[{_LATIN_LETTERS}]"), "word"),
)
_CAMEL: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_ALPHABETS: Final = frozenset({LATIN, CYRILLIC, GREEK, ARABIC, HEBREW})
# Words every English-trained vocabulary holds whole, prose and code keywords alike.
_COMMON: Final = frozenset(
    """the of and to in is it that for on with as was be by this are or at from an not but
    have has had were which their they you your we our can will would should could been if
    then than there these those what when where who how all any each more most other some
    such no only into over also after before between through about up out so do does did its
    his her them he she i me my one two new use used using may must get set return def class
    import true false null none self const let var function async await else elif while try
    except finally raise yield lambda pass break continue public private static void int str
    float bool string number type interface export default""".split()
)


@dataclass(frozen=True)
class TextPieces:
    """Counts of each piece class in a text.

    `words` maps a word part's letter count to how many there are (0 for common words);
    `parts` counts parts after the first of an identifier; `counts` holds the other classes
    under the name of the `TokenizerProfile` rate that prices them.
    """

    words: Mapping[int, int]
    parts: int
    capitals: int
    counts: Mapping[str, int]


def _split_word(word: str) -> list[str]:
    return _CAMEL.findall(word) if word.isascii() else [word]


def _other_class(char: str) -> str:
    script = script_of_char(char)
    if script in _ALPHABETS:
        return "alphabet_letter"
    if script is not None:
        return "other_letter"
    category = unicodedata.category(char)
    if category[0] == "P" or category == "Sc" or 0x3000 <= ord(char) <= 0x303F:
        return "unicode_punct"
    if category[0] in "ZC":
        return "space_run"
    return "symbol_byte"


def _kind(piece: str) -> str:
    for pattern, kind in _KINDS:
        if pattern.match(piece):
            return kind
    return "other"


def text_pieces(text: str) -> TextPieces:
    """Count the piece classes of `text` that the profile rates apply to."""
    words: Counter[int] = Counter()
    counts: Counter[str] = Counter()
    parts = len(_CONTINUED.findall(text))
    capitals = singles = 0
    for piece, count in Counter(_PIECE.findall(text)).items():
        kind = _kind(piece)
        if kind == "word":
            split = _split_word(piece)
            parts += (len(split) - 1) * count
            for part in split:
                words[0 if part.lower() in _COMMON else len(part)] += count
                capitals += count * part[0].isupper()
        elif kind == "digits":
            counts["digit_group"] += count * -(-len(piece) // 3)
        elif kind == "space":
            if "\n" in piece:
                tail = piece[piece.rfind("\n") + 1 :]
                counts["newline_run"] += count
                counts["indent_run"] += count * (len(tail) >= 2 or "\t" in tail)
            elif len(piece) >= 2:
                counts["space_run"] += count
            else:
                singles += count
        elif kind == "punct":
            counts["punct_run"] += count
            counts["punct_char"] += count * len(piece)
        elif kind in ("hangul", "kana", "han"):
            counts[kind] += count * len(piece)
        else:
            name = _other_class(piece)
            counts[name] += count * (len(piece.encode()) if name == "symbol_byte" else 1)
    # A single space between two words rides on the next word's token; elsewhere it is one.
    counts["lone_space"] = singles - len(_JOINED_SPACE.findall(text))
    return TextPieces(words=words, parts=parts, capitals=capitals, counts=counts)


def pieces_tokens(pieces: TextPieces, profile: TokenizerProfile) -> float:
    """The unrounded token estimate of counted pieces under one profile."""
    total = pieces.parts * profile.part_extra + pieces.capitals * profile.capital
    for letters, count in pieces.words.items():
        extra = max(0, letters - profile.word_free_len) / profile.word_letters_per_token
        total += (1.0 + extra) * count
    for name, count in pieces.counts.items():
        total += float(getattr(profile, name)) * count
    return total


def estimate_text_tokens(text: str, profile: TokenizerProfile = CLAUDE_3) -> int:
    """Estimated tokens of `text` alone (no message framing); 0 only for empty text."""
    if not text:
        return 0
    return max(1, round(pieces_tokens(text_pieces(text), profile)))


def estimate_output_tokens(content: Any, model: object) -> int:
    """Estimated tokens of an answer's content blocks as `model` wrote them (thinking
    included: it is billed as output). For a stream cut short, which never got its count."""
    return math.ceil(_content_tokens(content, profile_for_model(model), thinking_counts=True))


# --- requests ---------------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def _block_tokens(block: Any, profile: TokenizerProfile, *, thinking_counts: bool) -> float:
    if isinstance(block, str):
        return pieces_tokens(text_pieces(block), profile)
    if not isinstance(block, Mapping):
        return pieces_tokens(text_pieces(_json_text(block)), profile)
    kind = block.get("type")
    if kind == "text":
        return pieces_tokens(text_pieces(str(block.get("text", ""))), profile)
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") == "text":
            return pieces_tokens(text_pieces(str(source.get("data", ""))), profile)
        if isinstance(source, Mapping) and source.get("type") == "content":
            return _content_tokens(source.get("content"), profile, thinking_counts=True)
        return DOCUMENT_TOKENS
    if kind == "tool_use":
        text = str(block.get("name", "")) + _json_text(block.get("input", {}))
        return TOOL_USE_TOKENS + pieces_tokens(text_pieces(text), profile)
    if kind == "tool_result":
        inner = _content_tokens(block.get("content", ""), profile, thinking_counts=True)
        return TOOL_RESULT_TOKENS + inner
    if kind in ("thinking", "redacted_thinking"):
        # The API drops thinking blocks of earlier turns from the context.
        if not thinking_counts:
            return 0.0
        text = str(block.get("thinking", "")) or str(block.get("data", ""))
        return pieces_tokens(text_pieces(text), profile)
    visible = {k: v for k, v in block.items() if k != "cache_control"}
    return pieces_tokens(text_pieces(_json_text(visible)), profile)


def _content_tokens(content: Any, profile: TokenizerProfile, *, thinking_counts: bool) -> float:
    if isinstance(content, str):
        return pieces_tokens(text_pieces(content), profile)
    if isinstance(content, Sequence):
        return sum(_block_tokens(b, profile, thinking_counts=thinking_counts) for b in content)
    return 0.0


def _tool_tokens(tool: Any, profile: TokenizerProfile) -> float:
    if not isinstance(tool, Mapping):
        return 0.0
    visible = {k: v for k, v in tool.items() if k != "cache_control"}
    return pieces_tokens(text_pieces(_json_text(visible)), profile)


def _tool_prompt(request: Mapping[str, Any]) -> int:
    choice = request.get("tool_choice")
    forced = isinstance(choice, Mapping) and choice.get("type") in ("any", "tool")
    return TOOL_PROMPT_FORCED if forced else TOOL_PROMPT_AUTO


def estimate_request_tokens(
    request: Mapping[str, Any], profile: TokenizerProfile | None = None
) -> int:
    """Estimated input tokens of a Messages request: tools (plus the tool-use system prompt),
    system, every message and its framing. The profile defaults to the request's model's.

    Never raises on odd shapes: what it cannot read it counts as JSON text or not at all.
    """
    profile = profile if profile is not None else profile_for_model(request.get("model"))
    total = 0.0
    tools = request.get("tools")
    if isinstance(tools, Sequence) and not isinstance(tools, str) and tools:
        total += _tool_prompt(request) + sum(_tool_tokens(t, profile) for t in tools)
    system = request.get("system")
    if system:
        total += SYSTEM_TOKENS + _content_tokens(system, profile, thinking_counts=True)
    messages = request.get("messages")
    if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
        total += profile.message_frame + MESSAGE_TOKENS * (len(messages) - 1)
        last = len(messages) - 1
        for index, message in enumerate(messages):
            if isinstance(message, Mapping):
                total += _content_tokens(
                    message.get("content"), profile, thinking_counts=index == last
                )
    return math.ceil(total) if total > 0 else 0
