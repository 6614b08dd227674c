"""The swapped-roles guard: the same two things trading places ("PDF to Word" vs "Word to PDF").

English roles come from word order around a relation ("X to Y", "X than Y", subject-verb-object
triples); Korean roles come from the particles glued to nouns (에서/으로, 이/가 vs 을/를).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from service.guards.text import HANGUL, STOPWORDS, GuardVerdict, accept, normalize

_EN_TOKEN: Final = re.compile(r"[a-z0-9][a-z0-9+#'.-]*[a-z0-9+#]|[a-z0-9]|[^\sa-z0-9]")
_CONNECTORS: Final = frozenset({"to", "into", "onto", "than", "from"})
# "X to Y" is a direction only after "from X" or a verb of conversion or motion; elsewhere "to"
# is mostly an infinitive ("safe to travel").
_DIRECTION_VERBS: Final = re.compile(
    r"(?:convert|translat|migrat|mov|switch|transfer|port|chang|cast|map|export|import|send|sent"
    r"|copy|copie|sync|upgrad|downgrad|rewrit|compil|transpil|renam|redirect|forward|travel|fly"
    r"|flew|flight|driv|drove|ship|exchang|transform|turn|merg|rebas|append|insert|attach|add"
    r"|push|pull|pip|connect|deploy|upload|download|sav|writ|load|mount|assign)\w*"
)
_DETERMINERS: Final = frozenset("a an the my your our their his her its this that".split())
_COORDINATION: Final = frozenset({"and", "or", ",", "&", "vs", "versus", "/", "with", "nor"})
# "the US", "the U.S.": the country, not the pronoun "us" (a stopword once casefolded).
_COUNTRY_US: Final = re.compile(r"\bU\.?S\.?A?\b\.?|(?<=\bthe )us\b", re.IGNORECASE)
_PASSIVE_EN: Final = re.compile(r"\bby\b", re.IGNORECASE)
# Korean particles, longest first, and the role they mark; 와/과/하고/랑 are symmetric, so absent.
_KO_PARTICLES: Final = tuple(
    tuple(pair.split("="))
    for pair in (
        "에서부터=source 으로부터=source 에게서=source 한테서=source 에서=source 부터=source "
        "으로=goal 까지=goal 로=goal 에게=recipient 한테=recipient 보다=compared 을=object "
        "를=object 께서=subject 은=subject 는=subject 이=subject 가=subject 의=owner"
    ).split()
)
_KO_WORD: Final = re.compile(r"[가-힣A-Za-z0-9]+")
_KO_PASSIVE: Final = re.compile(r"에\s?의해|당하|되었|된다|됩니다|받았|받는")
# Long prompts: only the first relations are compared (the comparison is quadratic in them).
_MAX_FRAMES: Final = 64


@dataclass(frozen=True, slots=True)
class _Frame:
    """Content words left and right of one relation ("convert PDF to Word": {pdf}, {word})."""

    left: frozenset[str]
    right: frozenset[str]


def _is_word(token: str) -> bool:
    return "a" <= token[0] <= "z" or "0" <= token[0] <= "9"


def _content(tokens: Iterable[str]) -> frozenset[str]:
    return frozenset(t for t in tokens if _is_word(t) and t not in STOPWORDS)


def _english_frames(text: str) -> list[_Frame]:
    """Ordered word groups around "X to Y" (after a direction verb or "from"), "X than Y" and
    "to Y from X" (read as X -> Y)."""
    tokens = _EN_TOKEN.findall(text.casefold())
    frames: list[_Frame] = []

    def window(start: int, step: int, size: int) -> list[str]:
        out: list[str] = []
        i = start
        while 0 <= i < len(tokens) and len(out) < size:
            token = tokens[i]
            if not _is_word(token) or token in _CONNECTORS:
                break
            if not (step > 0 and not out and token in _DETERMINERS):
                out.append(token)
            i += step
        return out

    for i, token in enumerate(tokens):
        if token not in _CONNECTORS or len(frames) >= _MAX_FRAMES:
            continue
        before = window(i - 1, -1, 4)
        left, right = _content(before), _content(window(i + 1, 1, 3))
        j = i - len(before) - 1  # the token just before the left group
        if token == "from":
            if j < 0 or tokens[j] != "to":
                continue
            left, right = right, left
        elif token in ("to", "into", "onto"):
            verb = any(_DIRECTION_VERBS.fullmatch(t) for t in tokens[max(0, i - 6) : i])
            if not (verb or (j >= 0 and tokens[j] == "from")):
                continue
            left = frozenset(t for t in left if not _DIRECTION_VERBS.fullmatch(t))
        if left and right:
            frames.append(_Frame(left, right))
    return frames


def _swaps(a: list[_Frame], b: list[_Frame]) -> set[tuple[str, str]]:
    """(x, y) where x is left of a frame in `a` and right in `b`, and y the other way round."""
    found: set[tuple[str, str]] = set()
    for fa in a:
        for fb in b:
            xs = (fa.left & fb.right) - fa.right - fb.left
            ys = (fa.right & fb.left) - fa.left - fb.right
            found.update((x, y) for x in xs for y in ys)
    return found


def _english_triples(text: str) -> set[tuple[str, str, str]]:
    """(x, r, y) for three consecutive content words, each used once in the text, none joined
    to r by and/or/vs ("alice paid bob")."""
    tokens = _EN_TOKEN.findall(text.casefold())
    content = [(i, t) for i, t in enumerate(tokens) if "a" <= t[0] <= "z" and t not in STOPWORDS]
    uses = Counter(t for _, t in content)

    def coordinated(i: int, j: int) -> bool:
        return any(t in _COORDINATION for t in tokens[i + 1 : j])

    return {
        (x, r, y)
        for (px, x), (pr, r), (py, y) in zip(content, content[1:], content[2:], strict=False)
        if uses[x] == uses[r] == uses[y] == 1
        and not coordinated(px, pr)
        and not coordinated(pr, py)
    }


def _korean_roles(text: str) -> dict[str, str]:
    """Noun stem -> role from its particle, for stems that occur once with a role."""
    roles: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for word in _KO_WORD.findall(text):
        for particle, role in _KO_PARTICLES:
            if word.endswith(particle) and len(word) > len(particle):
                stem = word[: -len(particle)]
                seen[stem] += 1
                roles[stem] = role
                break
    return {stem: role for stem, role in roles.items() if seen[stem] == 1}


def check_swapped_roles(cached: str, new: str) -> GuardVerdict:
    """Refuse when the same two things trade places around a relation.

    English: "convert X to Y" / "from X to Y" / "to Y from X" / "X than Y" with the sides
    reversed ("convert PDF to Word" vs "convert Word to PDF"), and subject/object swaps ("Alice
    paid Bob" vs "Bob paid Alice": three consecutive content words x r y on one side, y r x on
    the other, each used once, none joined by and/or/vs). Korean: two nouns whose particles
    trade roles ("서울에서 부산으로" vs "부산에서 서울로", "A가 B를" vs "B가 A를", "A보다 B가" vs
    "B보다 A가"); word order alone never counts, since Korean marks roles with particles.

    Limits: a passive paraphrase ("Bob was paid by Alice", "에 의해") turns the subject/object
    rule off; "X vs Y", "X and Y" and "between X and Y" are symmetric by design (paraphrases
    reorder them freely); roles carried by the verb ("buy from" vs "sell to") and swaps of
    multi-word phrases outside the frames above are not seen; particles are stripped without
    a dictionary, so a noun ending in 이/가/로 may be misread.
    """
    a, b = normalize(cached), normalize(new)
    a_frames, b_frames = (
        _english_frames(_COUNTRY_US.sub("USA", a)),
        _english_frames(_COUNTRY_US.sub("USA", b)),
    )
    # A text that already says both "X to Y" and "Y to X" gives no order to compare.
    swapped = _swaps(a_frames, b_frames) - _swaps(a_frames, a_frames) - _swaps(b_frames, b_frames)
    if swapped:
        x, y = min(swapped)
        return GuardVerdict(False, "swapped_roles", f"roles swapped: {x} -> {y} reversed")
    if not (_PASSIVE_EN.search(a) or _PASSIVE_EN.search(b)):
        b_triples = _english_triples(b)
        for x, r, y in sorted(_english_triples(a)):
            if (y, r, x) in b_triples:
                reason = f"roles swapped: {x} {r} {y} vs {y} {r} {x}"
                return GuardVerdict(False, "swapped_roles", reason)
    if not (HANGUL.search(a) and HANGUL.search(b)) or _KO_PASSIVE.search(a + " " + b):
        return accept("swapped_roles")
    a_roles, b_roles = _korean_roles(a), _korean_roles(b)
    # x with roles (p, q) on the two sides and y with (q, p): the two traded places.
    seen: dict[tuple[str, str], str] = {}
    for x in sorted(set(a_roles) & set(b_roles)):
        roles = (a_roles[x], b_roles[x])
        if roles[0] == roles[1]:
            continue
        other = seen.get((roles[1], roles[0]))
        if other is not None:
            reason = f"roles swapped: {other}/{x} as {roles[1]}/{roles[0]} vs {roles[0]}/{roles[1]}"
            return GuardVerdict(False, "swapped_roles", reason)
        seen.setdefault(roles, x)
    return accept("swapped_roles")
