"""The comparatives guard: opposite terms on the two sides ("better" vs "worse", "증가" vs "감소").

Opposites are listed as pairs of word forms, English as whole words and Korean as patterns
matched inside words, since Korean glues endings on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from service.guards.text import HANGUL, GuardVerdict, accept, normalize

# One opposite pair per line: "left forms | right forms". English forms are whole words (or a
# two-word phrase joined by "_"); Korean ones are regexes matched inside words, since Korean
# glues endings on.
_EN_OPPOSITE_PAIRS: Final = """
better | worse
best | worst
more | less fewer
most | least fewest
faster quicker | slower
fastest quickest | slowest
fast quick quickly | slow slowly
increase increases increased increasing | decrease decreases decreased decreasing
high higher highest | low lower lowest
larger largest bigger biggest | smaller smallest
longer longest | shorter shortest
older oldest | younger youngest
cheap cheaper cheapest inexpensive | expensive costlier
before | after
earlier earliest | later latest
above | below
max maximum maximize maximise maximized | min minimum minimize minimise minimized
first | last
top | bottom
ascending | descending
upload uploads uploaded uploading | download downloads downloaded downloading
import imports imported importing | export exports exported exporting
input inputs | output outputs
encrypt encrypts encrypted encrypting encryption | decrypt decrypts decrypted decryption
enable enables enabled enabling | disable disables disabled disabling
buy buying bought purchase | sell selling sold
gain gaining gained | lose losing lost loss
positive | negative
true | false
advantage advantages | disadvantage disadvantages
hot hotter hottest | cold colder coldest
men man male males boy boys | women woman female females girl girls
love loves loved | hate hates hated
install installs installed installing | uninstall uninstalls uninstalled uninstalling
turn_on turned_on turning_on switch_on | turn_off turned_off turning_off switch_off
north | south
east | west
"""
_KO_OPPOSITE_PAIRS: Final = """
증가|늘리|늘어|늘려|늘린|늘었|늘이 | 감소|줄이|줄어|줄여|줄인|줄었
많 | 적은|적게|적다|적습|적어지|적을수록|적으면
높 | 낮[은게다아추춰출을]
빠르|빠른|빨리|빨라|빠름 | 느리|느린|느려|느림
일찍 | 늦게|늦은|늦다|늦어
큰|크게|크다|크고|클수록|커지|커져 | 작은|작게|작다|작고|작을수록|작아
이전|전에 | 이후|(?<!오)후에
최대 | 최소
최고 | 최저|최악
이상(?!하|한|해|형|적|이) | 이하|미만
좋 | 나쁘|나쁜|나빠|나빴
장점 | 단점
찬성 | 반대
입력 | 출력
업로드 | 다운로드
수입 | 수출
암호화 | 복호화
오름차순 | 내림차순
상승 | 하락
인상 | 인하
구매|구입|매수 | 판매|매도
위에|위로 | 아래|밑에|밑으로
남자|남성 | 여자|여성
켜기|켜는|켜다|켜져|켜지|켜요|켜고|켜줘 | 끄기|끄는|끄다|꺼져|꺼지|꺼요|끄고|꺼줘
(?<!비)활성화 | 비활성화
추가 | 삭제|제거
"""


def _english_opposites() -> Mapping[str, str]:
    """word (or "turn_on") -> "l<i>" / "r<i>": the side of opposite pair i it belongs to."""
    table: dict[str, str] = {}
    for i, line in enumerate(_EN_OPPOSITE_PAIRS.strip().splitlines()):
        left, right = line.split(" | ")
        table.update({word: f"l{i}" for word in left.split()})
        table.update({word: f"r{i}" for word in right.split()})
    return MappingProxyType(table)


def _korean_opposites() -> re.Pattern[str]:
    """One pattern whose group `l<i>` / `r<i>` tells which side of pair i matched."""
    sides = []
    for i, line in enumerate(_KO_OPPOSITE_PAIRS.strip().splitlines()):
        left, right = line.split(" | ")
        sides.append(f"(?P<l{i}>{left})|(?P<r{i}>{right})")
    return re.compile("|".join(sides))


_EN_OPPOSITES: Final = _english_opposites()
_KO_OPPOSITES: Final = _korean_opposites()
_EN_LOWER_WORD: Final = re.compile(r"[a-z]+|\d+")


def _terms(text: str) -> dict[str, str]:
    """Which side of which opposite pair a text uses: {"l3": "better", "kr0": "감소", ...}."""
    found: dict[str, str] = {}
    words = _EN_LOWER_WORD.findall(text.lower())
    for i, word in enumerate(words):
        phrase = f"{word}_{words[i + 1]}" if i + 1 < len(words) else ""
        if phrase in _EN_OPPOSITES:
            found.setdefault(_EN_OPPOSITES[phrase], phrase.replace("_", " "))
        elif word in _EN_OPPOSITES and not (word == "min" and i and words[i - 1].isdigit()):
            found.setdefault(_EN_OPPOSITES[word], word)  # (but "5 min" is minutes)
    if HANGUL.search(text):
        for m in _KO_OPPOSITES.finditer(text):
            if m.lastgroup is not None:
                found.setdefault("k" + m.lastgroup, m.group(0))
    return found


def _opposite(key: str) -> str:
    """ "l3" -> "r3", "kr0" -> "kl0" (k: a Korean pair)."""
    lang = "k" if key.startswith("k") else ""
    side, index = key[len(lang)], key[len(lang) + 1 :]
    return lang + ("r" if side == "l" else "l") + index


def check_comparatives(cached: str, new: str) -> GuardVerdict:
    """Refuse when one side uses a term and the other its opposite, neither using both
    ("better" vs "worse", "before" vs "after", "증가" vs "감소", "upload" vs "download").

    A side with both terms ("more or less", "boys and girls") is neutral: the stricter reading
    (refuse unless the first side has both) refused Quora duplicates like "Is ice more or less
    dense than water?" / "Why is ice less dense than water?". Limits: word lists, not meaning:
    "not better" vs "worse" is refused, and opposites said in other words pass.
    """
    a, b = _terms(normalize(cached)), _terms(normalize(new))
    for key, word in sorted(a.items()):
        opposite = _opposite(key)
        if opposite in b and opposite not in a and key not in b:
            reason = f"comparatives differ: '{word}' vs '{b[opposite]}'"
            return GuardVerdict(False, "comparatives", reason)
    return accept("comparatives")
