"""The mood guard: the same words asked as a question and said as a statement.

"Delete the branch?" asks whether to; "Delete the branch." says to. A sentence-final mark is
the only difference, and an embedding scores such pairs at 0.96 and above. In Korean casual
speech the ending cannot tell them apart either: "이 파일 삭제해" says "delete this file",
"이 파일 삭제해?" asks "are you deleting it?". So a prompt without a final mark is a question
only when its words make it one (`asks_by_form`): an English prompt opening with an
interrogative or an auxiliary ("What is a mutex", "Can you ..."), a Korean one ending in an
interrogative ending (-까, -니, -냐, -나요, -ㄴ가요, -는지, ...) or using an interrogative word
(뭐, 어떻게, 어때, 왜, 언제, 어디, 누구, 얼마). The policy uses the same test to decide which
prompts are "the same up to trailing punctuation".
"""

from __future__ import annotations

import re
from typing import Final

from service.guards.text import GuardVerdict, accept, normalize

_FINAL_MARKS: Final = ".?!。？！…"
_QUESTION: Final = frozenset("?？")

# An English prompt opening with one of these asks, with or without its "?". "do" and "have"
# also open commands ("Do the dishes", "Have a look"): they count only before a pronoun.
_EN_ASKING: Final = frozenset(
    """what whats what's who whos who's whom whose which when whens when's where wheres where's
    why whys why's how hows how's is isn't isnt are aren't arent am was wasn't wasnt were
    weren't werent does doesn't doesnt did didn't didnt can can't cant could couldn't couldnt
    will won't wont would wouldn't wouldnt shall should shouldn't shouldnt may might must has
    hasn't hasnt had hadn't hadnt""".split()
)
_EN_ASKING_BEFORE_PRONOUN: Final = frozenset("do don't dont have haven't havent".split())
_EN_PRONOUNS: Final = frozenset("i you we they he she it u ya".split())
_EN_WORDS: Final = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _jongseong(final: int) -> str:
    """Every Hangul syllable whose final consonant is number `final` (4 ㄴ, 8 ㄹ, 17 ㅂ)."""
    return "".join(chr(0xAC00 + 28 * i + final) for i in range(19 * 21))


# Korean interrogative endings on the last word (an optional polite 요 after most):
# -ㅂ니까/-습니까/-ㄹ까/-을까 (not the connective -니까 "because"), -냐, -니, -나요 (glued to a
# stem: "소리가 나요" is a statement), -ㄴ가(요)/-는가, -ㄴ지/-는지/-ㄹ지(요).
_KO_ASKING_ENDING: Final = re.compile(
    rf"(?:(?<!니)까|(?<=[{_jongseong(17)}])니까|냐|(?<![머언아])니|(?<=[가-힣])나요"
    rf"|(?<=[{_jongseong(4)}])가|(?<=[{_jongseong(4)}{_jongseong(8)}])지)요?$"
)
# Korean interrogative words at the start of a word, unless made indefinite ("뭐든", "언제든지",
# "어디라도", "무엇보다", "왜냐하면").
_KO_ASKING_WORD: Final = re.compile(
    r"(?<![가-힣])(?:뭐|뭘|뭔|무엇|무슨|어떻|어때|어떤|어떡|어째|왜|언제|어디|누구|누가|얼마)"
    r"(?![가-힣]*(?:든|라도|보다|냐하면))"
)
_HANGUL_WORD: Final = re.compile(r"[가-힣]+")


_SENTENCE_BREAK: Final = re.compile(r"(?<=[.!?。？！…])\s+|\n|(?<=[。？！])")


def asks_by_form(bare: str) -> bool:
    """Whether a prompt without its final marks is a question by its words alone; only its
    last sentence counts ("<notice>. Which floor does it move to" asks)."""
    bare = _SENTENCE_BREAK.split(bare)[-1]
    words = _EN_WORDS.findall(bare.casefold())
    if words and (
        words[0] in _EN_ASKING
        or (words[0] in _EN_ASKING_BEFORE_PRONOUN and words[1:2] and words[1] in _EN_PRONOUNS)
    ):
        return True
    hangul = _HANGUL_WORD.findall(bare)
    if not hangul:
        return False
    return bool(_KO_ASKING_ENDING.search(hangul[-1]) or _KO_ASKING_WORD.search(bare))


def _mood(text: str) -> tuple[str, bool | None]:
    """The text without its final marks, and whether they ask (None: no final mark)."""
    bare = text.rstrip(_FINAL_MARKS).rstrip()
    marks = text[len(bare) :].strip()
    return bare.casefold(), (bool(_QUESTION & set(marks)) if marks else None)


def check_mood(cached: str, new: str) -> GuardVerdict:
    """Refuse the same words as a question on one side and a statement on the other.

    A statement is a prompt ending in a full stop or an exclamation mark, or one with no final
    mark that is not a question by its form (`asks_by_form`): "Delete the branch" against
    "Delete the branch?" refuses, "What is a mutex" against "What is a mutex?" passes.
    Limits: only identical words are compared; a rephrased question against a statement
    ("Should I delete the branch?" vs "Delete the branch.") is left to the cosine. "What is a
    mutex." typed with a full stop is read as a statement and misses its question; so does a
    question without its "?" whose form the rules do not know ("Quick question: is it safe",
    "Tips for learning Go" against "Tips for learning Go?").
    """
    (bare_a, asks_a), (bare_b, asks_b) = _mood(normalize(cached)), _mood(normalize(new))
    if bare_a != bare_b or asks_a == asks_b or not (asks_a or asks_b):
        return accept("mood")  # "." or "!" against no mark is one prompt
    if (asks_a is None or asks_b is None) and asks_by_form(bare_a):
        return accept("mood")  # a question by its words, with or without its "?"
    asked, told = ("cached", "new") if asks_a else ("new", "cached")
    return GuardVerdict(False, "mood", f"mood differs: the {asked} prompt asks, the {told} states")
