"""The comparatives guard: opposite terms on the two sides ("better" vs "worse", "증가" vs "감소"),
and comparison operators that differ ("age > 30" vs "age < 30").

Opposites are listed as pairs of word forms, English as whole words and Korean as patterns
matched inside words, since Korean glues endings on. The Korean list also holds phrases an
opposite is said with (압축 / 압축을 풀다, 포함 / 빼고, 받은 / 보낸, 운동 전 / 운동 후, 초과 /
미만) and tense: a past ending against a future -ㄹ 거 ("만들었나요" / "만들 건가요").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from service.guards.text import HANGUL, GuardVerdict, accept, normalize

# One opposite pair per line: "left forms | right forms". English forms are whole words (or a
# two-word phrase joined by "_"); Korean ones are regexes matched inside words, since Korean
# glues endings on.
_EN_OPPOSITE_PAIRS: Final = """
better | worse
good | bad
best | worst
more greater | less fewer
over | under
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
hot hotter hottest warm warmer warmest | cold colder coldest cooler coolest
rise rises rising rose risen | fall falls falling fell fallen
horizontal horizontally | vertical vertically
strong stronger strongest | weak weaker weakest
men man male males boy boys | women woman female females girl girls
love loves loved | hate hates hated
install installs installed installing | uninstall uninstalls uninstalled uninstalling
turn_on turned_on turning_on switch_on | turn_off turned_off turning_off switch_off
north | south
left | right
east | west
"""
_KO_OPPOSITE_PAIRS: Final = r"""
증가|늘리|늘어|늘려|늘린|늘었|늘이 | 감소|줄이|줄어|줄여|줄인|줄었
생성 | 삭제
많 | 적은|적게|적다|적습|적어지|적을수록|적으면
높 | 낮[은게다아추춰출을]
빠르|빠른|빨리|빨라|빠름 | 느리|느린|느려|느림
더(?<![가-힣]더)(?![가-힣]) | 덜(?<![가-힣]덜)(?![가-힣])
오르|오른(?!쪽|손|발)|올라|올랐|올리(?!브)|올린|올려 | 내리|내린|내려|내렸|떨어[지진져졌]
일찍 | 늦게|늦은|늦다|늦어
큰|크게|크다|크고|클수록|커지|커져 | 작은|작게|작다|작고|작을수록|작아
이전|전에|식전|{before} | 이후|후에(?<!오후에)|식후|{after}
최대 | 최소
최고 | 최저|최악
이상(?!하|한|해|형|적|이(?!면|라|어야))|초과 | 이하|미만
좋 | 나쁘|나쁜|나빠|나빴
비싸|비싼|비쌌 | 싼(?<!비싼)|싸게(?<!비싸게)|싸다(?<!비싸다)|싸요(?<!비싸요)|저렴
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
켜기|켜는|켜다|켜져|켜지|켜요|켜고|켜줘|켰 | 끄기|끄는|끄다|꺼져|꺼지|꺼요|끄고|꺼줘|껐
활성화(?<!비활성화) | 비활성화
추가 | 삭제|제거
설치 | 삭제|제거
압축(?!\s?[을를]?\s?(?:해제|풀|푸|푼)) | 압축\s?[을를]?\s?(?:해제|풀|푸|푼)
잠금(?!\s?[을를]?\s?(?:해제|풀|푸|푼)) | 잠금\s?[을를]?\s?(?:해제|풀|푸|푼)
포함 | 제외|빼고|뺀|빼서|빼줘|빼면
수신|받은|받는|받았|받기 | 발신|송신|보낸|보내는|보냈|보내기
로그인 | 로그아웃
가입 | 탈퇴
출근 | 퇴근
입사 | 퇴사
입원 | 퇴원
시작 | 종료|중지|정지|멈추|멈춰
성공 | 실패
허용 | 차단
확대 | 축소
열기|여는|열어|열고 | 닫기|닫는|닫아|닫고
밝게|밝은|밝아 | 어둡|어두운|어두워
더운|덥 | 추운|춥
뜨거운|뜨겁 | 차가운|차갑
무거운|무겁 | 가벼운|가볍
두꺼운|두껍 | 얇은|얇게
넓은|넓게|넓어 | 좁은|좁게|좁아
깊은|깊게|깊이 | 얕은|얕게
쉬운|쉽 | 어려운|어렵
긍정 | 부정
왼쪽|좌측 | 오른쪽|우측
동쪽 | 서쪽
남쪽 | 북쪽
여름 | 겨울
아침 | 저녁
덧셈|더하기 | 뺄셈|빼기
곱셈|곱하기 | 나눗셈|나누기
"""


def _syllables(final: int) -> str:
    """Every Hangul syllable whose final consonant is number `final` (8 ㄹ, 20 ㅆ)."""
    return "".join(chr(0xAC00 + 28 * i + final) for i in range(19 * 21))


# Korean tense, past against future: a syllable ending in ㅆ (했, 었, 았, 됐; not 있 "there is"
# nor 겠) against -ㄹ 거 / 건 / 겁 ("만들었나요" vs "만들 건가요", "읽었어" vs "읽을 거야").
# The 거 must end the word or take a sentence ending: "할 거리" (things to do) and "을 거두다"
# (to reap) are not futures. -ㄹ까 asks about what is to come ("읽을까", "인상할까요"), unless a
# past syllable comes before it ("읽었을까" asks about the past).
# Standalone 전 / 후 after a word ("운동 전 스트레칭"), not "전 세계" (the whole world). Every
# Korean form starts with a syllable, lookbehinds after it, so that the regex engine can skip
# positions by their first character: the pattern has some 150 alternatives.
_PAST: Final = f"[{_syllables(20).replace('있', '').replace('겠', '')}]"
_KO_BUILT: Final = {
    "past": _PAST,
    "future": f"[{_syllables(8)}]"
    r"(?:\s?(?:거(?:야|예|에|니|냐|지|다|든|라|요|(?![가-힣]))|건[가지데니]|겁니)"
    f"|까요?(?![가-힣])(?<!{_PAST}.까)(?<!{_PAST}.까요))",
    "before": r"전(?<=[가-힣] 전)(?:의|부터|까지)?(?![가-힣])",
    "after": r"후(?<=[가-힣] 후)(?:의|로|부터|까지)?(?![가-힣])",
}


def _english_opposites() -> Mapping[str, str]:
    """word (or "turn_on") -> "l<i>" / "r<i>": the side of opposite pair i it belongs to."""
    table: dict[str, str] = {}
    for i, line in enumerate(_EN_OPPOSITE_PAIRS.strip().splitlines()):
        left, right = line.split(" | ")
        table.update({word: f"l{i}" for word in left.split()})
        table.update({word: f"r{i}" for word in right.split()})
    return MappingProxyType(table)


def _korean_sides() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """("l<i>" / "r<i>", pattern) for each side of each Korean pair, in the listed order."""
    sides = []
    for i, line in enumerate(_KO_OPPOSITE_PAIRS.strip().format_map(_KO_BUILT).splitlines()):
        left, right = line.split(" | ")
        sides += [(f"l{i}", re.compile(left)), (f"r{i}", re.compile(right))]
    return tuple(sides)


_EN_OPPOSITES: Final = _english_opposites()
_KO_SIDES: Final = _korean_sides()
# All sides in one pattern without groups, to find where a term starts (with a named group
# per side, Python's regex engine runs fifty times slower); the side is then the first whose
# own pattern matches there, the one the alternation chose.
_KO_OPPOSITES: Final = re.compile("|".join(f"(?:{side.pattern})" for _, side in _KO_SIDES))
# Tense is read on its own pass: its endings sit inside words another pair also matches
# ("받았을까" is 받았 of 받은/보낸 and a past ending; "떨어졌" a fall and a past).
_KO_TENSE_SIDES: Final = (
    ("lt", re.compile(_KO_BUILT["past"])),
    ("rt", re.compile(_KO_BUILT["future"])),
)
_KO_TENSE: Final = re.compile("|".join(f"(?:{side.pattern})" for _, side in _KO_TENSE_SIDES))
_EN_LOWER_WORD: Final = re.compile(r"[a-z]+|\d+")
# Comparison operators between operands ("age > 30", "i <= n", "status != 'x'"); arrows
# ("->", "=>", "<-") and shifts ("<<") are not comparisons.
_OPERATOR: Final = re.compile(
    r"(?<=[\w\s)\]'\"`])(===|!==|==|!=|<=|>=|<>|<|>|=)(?=[\s\w('\"`.,;:?!)\]-]|$)"
)


def _terms(text: str) -> dict[str, tuple[str, int]]:
    """Which sides of which opposite pairs a text uses, how often: {"l3": ("better", 2), ...}."""
    found: dict[str, tuple[str, int]] = {}

    def add(key: str, word: str) -> None:
        first, count = found.get(key, (word, 0))
        found[key] = (first, count + 1)

    words = _EN_LOWER_WORD.findall(text.lower())
    for i, word in enumerate(words):
        phrase = f"{word}_{words[i + 1]}" if i + 1 < len(words) else ""
        if phrase in _EN_OPPOSITES:
            add(_EN_OPPOSITES[phrase], phrase.replace("_", " "))
        elif word in _EN_OPPOSITES and not (word == "min" and i and words[i - 1].isdigit()):
            add(_EN_OPPOSITES[word], word)  # (but "5 min" is minutes)
    if HANGUL.search(text):
        for pattern, sides in ((_KO_OPPOSITES, _KO_SIDES), (_KO_TENSE, _KO_TENSE_SIDES)):
            for m in pattern.finditer(text):
                key = next(key for key, side in sides if side.match(text, m.start()))
                add("k" + key, m.group(0))
    return found


def _opposite(key: str) -> str:
    """ "l3" -> "r3", "kr0" -> "kl0" (k: a Korean pair), "klt" -> "krt" (Korean tense)."""
    lang = "k" if key.startswith("k") else ""
    side, index = key[len(lang)], key[len(lang) + 1 :]
    return lang + ("r" if side == "l" else "l") + index


def _operators(text: str) -> Counter[str]:
    """How often each comparison operator is used; their order is not kept, since a
    paraphrase may name them in another order ("== and ===" / "=== or ==")."""
    return Counter(_OPERATOR.findall(text))


def check_comparatives(cached: str, new: str) -> GuardVerdict:
    """Refuse when one side uses a term more often and the other its opposite ("better" vs
    "worse", "before" vs "after", "증가" vs "감소", "upload" vs "download"), or when both
    compare with operators and the operators differ ("age > 30" vs "age < 30", "<" vs "<=").

    A side with both terms as often as the other side has them is neutral: "Is ice more or
    less dense than water?" / "Why is ice less dense than water?" are one question (refusing
    any side with both cost Quora duplicates), while "before or after? I stretch before" /
    "... I stretch after" differ by the term each side repeats. Operators count only where
    both sides have some: "x > 0" against "x is positive" is left to the other rules.
    Limits: word lists, not meaning: "not better" vs "worse" is refused, and opposites said
    in other words pass.
    """
    a_text, b_text = normalize(cached), normalize(new)
    a_ops, b_ops = _operators(a_text), _operators(b_text)
    if a_ops and b_ops and a_ops != b_ops:
        mine, theirs = (
            sorted(a_ops - b_ops) or sorted(a_ops),
            sorted(b_ops - a_ops) or sorted(b_ops),
        )
        reason = f"operators differ: {' '.join(mine)!r} vs {' '.join(theirs)!r}"
        return GuardVerdict(False, "comparatives", reason)
    a, b = _terms(a_text), _terms(b_text)
    for key, (word, count) in sorted(a.items()):
        opposite = _opposite(key)
        extra_here = count - b.get(key, ("", 0))[1]
        extra_there = b.get(opposite, ("", 0))[1] - a.get(opposite, ("", 0))[1]
        if extra_here > 0 and extra_there > 0:
            reason = f"comparatives differ: '{word}' vs '{b[opposite][0]}'"
            return GuardVerdict(False, "comparatives", reason)
    return accept("comparatives")
