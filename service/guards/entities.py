"""The entities guard: different names, identifiers, code symbols, files, URLs or versions.

Identifiers (code, paths, URLs, emails, versions) refuse on any difference; names (capitalised
words, acronyms, product names) refuse only on a conflict, where each side names something the
other never mentions, because users often add context ("... in India") to the same question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from service.guards.hangul_names import HANGUL_NAMES
from service.guards.text import (
    HANGUL,
    SPACES,
    STOPWORDS,
    WORD,
    GuardVerdict,
    accept,
    normalize,
    refuse,
    sentence_initial,
)

# Spans that are identifiers as a whole, blanked out before words are looked at.
_STRUCTURED: Final = re.compile(
    r"(?P<url>(?i:https?://|www\.)[^\s<>\"'`]+)"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|`+(?P<code>[^`]+)`+"
    # A call needs empty parentheses or a dotted/underscored name: "lesson(s)" is English.
    r"|(?P<call>[A-Za-z_]\w*\(\)|[A-Za-z_]\w*(?:[._]\w+)+\([^()\s]{0,40}\))"
    r"|(?P<scoped>[A-Za-z_]\w*(?:(?:::|->)[A-Za-z_~]\w*)+)"
    r"|(?P<flag>(?<![\w-])--[A-Za-z][\w-]+)"
    r"|(?P<path>(?<![\w/])(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*)"
)
_DOTTED_ACRONYM: Final = re.compile(r"\b(?:[A-Z]\.){2,}")
_US: Final = re.compile(r"\bUS\b")
# "work.Then what?": a missing space, told from code ("pandas.DataFrame") by the next word.
_GLUED_SENTENCE: Final = re.compile(r"(?<=[a-z])\.(?P<next>[A-Z][a-z']*)")
_CODE_TOKENS: Final = re.compile(r"[\w. ]+")
_CHUNK: Final = re.compile(r"[^\s?!;,()\[\]{}\"<>/]+")
_LATIN_RUN: Final = re.compile(r"(?<![A-Za-zÀ-ɏ0-9])[A-Za-zÀ-ɏ_][A-Za-zÀ-ɏ0-9_.+#-]*")
# Code: snake_case, lower.dotted (os.path, config.yaml, example.com), v1.2, 1.2.3.
_CODE_LIKE: Final = re.compile(
    r"\w*_\w*[A-Za-z]\w*|[a-z_][\w-]*(?:\.[A-Za-z_][\w-]*)+|v\d+(?:\.\d+)*|\d+\.\d+\.\d+.*"
)
# Product-like names: camelCase/PascalCase inside (iPhone, GitHub), letters+digits (mp3, A102),
# C++ / C#, capitalised dotted (Node.js, ASP.NET).
_NAME_LIKE: Final = re.compile(
    r".*[a-z][A-Z].*|[A-Za-z]+\d\w*|[A-Za-z]\+\+|[A-Za-z]#|[A-Z][\w-]*(?:\.[A-Za-z_][\w-]*)+"
)
_ACRONYM: Final = re.compile(r"[A-Z][A-Z0-9&]*[A-Z][A-Z0-9&]*")
_VERSION_AFTER: Final = re.compile(
    r"\s?(?:(?P<dotted>v?\d+(?:\.\d+)+)|(?P<int>v?\d{1,2}))(?![\w.,])"
)
_ASCII_LETTER: Final = re.compile(r"[A-Za-z]")
_ASCII_UPPER: Final = re.compile(r"[A-Z]")
_FOLDED_TOKEN: Final = re.compile(r"[0-9a-zß-ÿā-ɏ]+")
_WORDISH: Final = re.compile(r"[\w' -]+")
# Names written in Hangul (`hangul_names`), matched at a word start, longest first, followed by
# nothing or particles only ("자바로", not "자바섬"; "인도에서", not "인도네시아").
_KNOWN: Final = frozenset(HANGUL_NAMES.values())
_HANGUL_NAME: Final = re.compile(
    r"(?<![가-힣])(?P<name>"
    + "|".join(sorted(HANGUL_NAMES, key=len, reverse=True))
    + r")(?=(?:으로|에서|이랑|하고|[은는이가을를의에로와과랑도만])?(?![가-힣]))"
)


@dataclass(frozen=True, slots=True)
class _Entities:
    strong: frozenset[str]  # identifiers, code, URLs, versions: any difference matters
    names: frozenset[str]  # capitalised words, acronyms, product names: a conflict matters
    hangul: frozenset[str] = frozenset()  # the names among them written in Hangul ("파이썬")


@dataclass(frozen=True, slots=True)
class _Folded:
    """A text prepared for "does it mention X?": casefolded, with a token -> positions index."""

    text: str
    tokens: list[str]
    index: Mapping[str, list[int]]

    @classmethod
    def of(cls, text: str) -> _Folded:
        folded = text.casefold()
        tokens = _FOLDED_TOKEN.findall(folded)
        index: dict[str, list[int]] = {}
        for i, token in enumerate(tokens):
            index.setdefault(token, []).append(i)
        return cls(folded, tokens, index)

    def mentions(self, entity: str) -> bool:
        """Whether the text mentions `entity`: names also as a plural or possessive ("Paris's"),
        identifiers as the same token sequence ("pandas.DataFrame" ~ "pandas DataFrame")."""
        parts = _FOLDED_TOKEN.findall(entity)
        if not parts:
            return entity in self.text
        *head, last = parts
        if _WORDISH.fullmatch(entity):
            endings: tuple[str, ...] = (last, last + "s", last + "es")
        elif _CODE_TOKENS.fullmatch(entity):
            endings = (last,)
        else:
            return entity in self.text  # URLs, emails, calls, paths: verbatim only
        if not head:
            return any(ending in self.index for ending in endings)
        return any(
            self.tokens[i : i + len(head)] == head
            and i + len(head) < len(self.tokens)
            and self.tokens[i + len(head)] in endings
            for i in self.index.get(head[0], ())
        )


def _prepare(text: str) -> str:
    text = _DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), normalize(text))
    text = _US.sub("USA", text)  # "US" and "U.S." name the country "USA" names
    return _GLUED_SENTENCE.sub(
        lambda m: (". " if m["next"].casefold() in STOPWORDS else ".") + m["next"], text
    )


def _is_code(word: str) -> bool:
    return bool(_CODE_LIKE.fullmatch(word)) and any(len(part) > 1 for part in word.split("."))


def _entities(text: str) -> _Entities:
    """Casefolded entities: identifiers and code, URLs, emails, versions, acronyms, names."""
    strong: set[str] = set()
    names: set[str] = set()
    for m in _STRUCTURED.finditer(text):
        span = m[m.lastgroup] if m.lastgroup else m.group(0)
        strong.add(SPACES.sub(" ", span).strip().casefold().rstrip(".,"))
    text = _STRUCTURED.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets
    if HANGUL.search(text):
        hangul = frozenset(HANGUL_NAMES[m["name"]] for m in _HANGUL_NAME.finditer(text))
        names.update(hangul)
        # In Korean text any Latin-script word is a name or an identifier.
        for m in _LATIN_RUN.finditer(text):
            word = m.group(0).rstrip(".-")
            if len(word) > 1 and word.casefold() not in STOPWORDS:
                (strong if _is_code(word) else names).add(word.casefold())
        return _Entities(frozenset(strong), frozenset(names), hangul)
    letters = len(_ASCII_LETTER.findall(text))
    shouting = letters >= 8 and len(_ASCII_UPPER.findall(text)) > 0.7 * letters
    long_words = [w for w in WORD.findall(text) if len(w) >= 4]
    capitalised = sum(w[0].isupper() for w in long_words)
    title_case = len(long_words) >= 3 and capitalised >= 0.7 * len(long_words)
    for m in _CHUNK.finditer(text):
        chunk = m.group(0).strip(".:'*-")
        if not chunk or not any(c.isalpha() for c in chunk):
            continue
        start = m.start() + m.group(0).index(chunk[0])
        chunk = chunk.removesuffix("'s")
        version = _VERSION_AFTER.match(text, m.end())
        if version and version["dotted"] and chunk.casefold() not in STOPWORDS:
            # "Python 3.11", "python v3.10": an exact version belongs to the word before it.
            strong.add(f"{chunk.casefold()} {version['dotted']}")
            continue
        if _is_code(chunk):
            kind = strong
        elif (
            (_NAME_LIKE.fullmatch(chunk) and len(chunk) > 1)
            or (_ACRONYM.fullmatch(chunk) and not shouting and chunk not in ("OK", "II"))
            or (
                chunk[0].isupper()
                and any(c.islower() for c in chunk)
                and not title_case
                and not shouting
                and chunk.casefold() not in STOPWORDS
                and not sentence_initial(text, start)
            )
        ):
            kind = names
        else:
            continue
        if version:  # "Windows 10", "iPhone 12"
            names.add(f"{chunk.casefold()} {version['int']}")
        else:
            kind.add(chunk.casefold())
    return _Entities(frozenset(strong), frozenset(names))


def _conflict(a: set[str], a_hangul: frozenset[str], b: set[str], b_hangul: frozenset[str]) -> bool:
    """Each side names something the other does not, both in Latin script or both known names.

    A name read from Hangul conflicts only with another known name: Korean text spells the
    same place now in Hangul, now in Latin ("엘에이" and "L.A.", "코차밤바" and
    "Cochabamba"), and the lists cannot hold every spelling.
    """
    a_latin, b_latin = a - a_hangul, b - b_hangul
    return bool((a_latin and b_latin) or (a & _KNOWN and b & _KNOWN))


def check_entities(cached: str, new: str) -> GuardVerdict:
    """Refuse when the prompts name different things (case-insensitive).

    Identifiers refuse on any difference: code (`snake_case`, `foo.bar()`, `a::b`, backticked
    spans, `--flags`, paths), file names and domains, URLs, emails and versions ("v1.2",
    "Python 3.11"). Names (ALL-CAPS acronyms, camelCase products, capitalised words not at a
    sentence start; in Korean text every Latin-script word) refuse on a conflict: each side
    names something the other never mentions ("Paris" vs "London"). A name only one side adds
    ("Obama" vs "Barack Obama", "... in India") passes: on Quora duplicates, refusing those cost
    18% of true paraphrases, mostly people adding context. Limits: Title-Case and ALL-CAPS texts
    skip the capital rules; lowercase names in English text are invisible; of the names written
    in Hangul only those in `hangul_names` are known (programming languages and tools, natural
    languages, countries and large cities: "자바" vs "자바스크립트" and "일본어로" vs "중국어로"
    conflict, "파이썬" matches "Python"); others ("광화문" vs "강남역") are not recognised.
    """
    a_text, b_text = _prepare(cached), _prepare(new)
    a_in, b_in = _Folded.of(a_text), _Folded.of(b_text)
    a_ent, b_ent = _entities(a_text), _entities(b_text)
    a_strong = {e for e in a_ent.strong if not b_in.mentions(e)}
    b_strong = {e for e in b_ent.strong if not a_in.mentions(e)}
    a_names = {e for e in a_ent.names if not (b_in.mentions(e) or e in b_ent.hangul)}
    b_names = {e for e in b_ent.names if not (a_in.mentions(e) or e in a_ent.hangul)}
    if a_strong or b_strong or _conflict(a_names, a_ent.hangul, b_names, b_ent.hangul):
        return refuse("entities", "entities", a_strong | a_names, b_strong | b_names)
    return accept("entities")
