"""Script detection: which writing systems a prompt uses, checked against Unicode names."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.scripts import SCRIPTS, dominant_script, script_of_char, scripts_of


@pytest.mark.parametrize(
    ("text", "expected", "dominant"),
    [
        ("How do I reset my password?", {"Latin"}, "Latin"),
        ("비밀번호를 어떻게 재설정하나요?", {"Hangul"}, "Hangul"),
        # Letters are counted per character: 6 Latin letters outweigh 3 Hangul syllables.
        ("pandas 사용법", {"Hangul", "Latin"}, "Latin"),
        ("파이썬 리스트를 정렬하는 방법 (sort)", {"Hangul", "Latin"}, "Hangul"),
        ("日本語のテキストです", {"Han", "Hiragana", "Katakana"}, "Katakana"),
        ("東京大学のタワー", {"Han", "Hiragana", "Katakana"}, "Han"),
        ("中文问题怎么解决", {"Han"}, "Han"),
        ("Как сбросить пароль?", {"Cyrillic"}, "Cyrillic"),
        ("كيف أعيد تعيين كلمة المرور؟", {"Arabic"}, "Arabic"),
        ("Πώς επαναφέρω τον κωδικό;", {"Greek"}, "Greek"),
        ("ฉันจะรีเซ็ตรหัสผ่านได้อย่างไร", {"Thai"}, "Thai"),
        ("मैं पासवर्ड कैसे रीसेट करूं?", {"Devanagari"}, "Devanagari"),
        ("איך מאפסים סיסמה?", {"Hebrew"}, "Hebrew"),
        ("Ｆｕｌｌ ｗｉｄｔｈ", {"Latin"}, "Latin"),
        ("ｶﾀｶﾅ ﾃｽﾄ", {"Katakana"}, "Katakana"),
        ("Xin chào, bạn khỏe không?", {"Latin"}, "Latin"),
        ("Բարեւ", {"Other"}, "Other"),  # Armenian
        ("ሰላም", {"Other"}, "Other"),  # Ethiopic
    ],
)
def test_scripts_of_examples(text: str, expected: set[str], dominant: str) -> None:
    assert scripts_of(text) == frozenset(expected)
    assert dominant_script(text) == dominant


@pytest.mark.parametrize("text", ["", "   ", "12345 + 6.7 = ?!", "🙂🚀👍🏽", "$€₩ %", "١٢٣ ０１２"])
def test_digits_punctuation_and_emoji_are_not_scripts(text: str) -> None:
    assert scripts_of(text) == frozenset()
    assert dominant_script(text) is None


def test_dominant_ties_follow_the_declared_order() -> None:
    assert dominant_script("ab가나") == "Latin"
    assert dominant_script("가나ab") == "Latin"
    assert dominant_script("가나다ab") == "Hangul"
    assert SCRIPTS[0] == "Latin" and SCRIPTS[-1] == "Other"


PREFIXES = {
    "LATIN": "Latin",
    "FULLWIDTH LATIN": "Latin",
    "HANGUL": "Hangul",
    "HALFWIDTH HANGUL": "Hangul",
    "CJK": "Han",
    "HIRAGANA": "Hiragana",
    "KATAKANA": "Katakana",
    "HALFWIDTH KATAKANA": "Katakana",
    "CYRILLIC": "Cyrillic",
    "ARABIC": "Arabic",
    "GREEK": "Greek",
    "THAI": "Thai",
    "DEVANAGARI": "Devanagari",
    "HEBREW": "Hebrew",
}
# Greek and Cyrillic small capitals and subscripts sit inside the Latin phonetic block.
KNOWN_EXCEPTIONS = {
    0x1D26,
    0x1D27,
    0x1D28,
    0x1D29,
    0x1D2A,
    0x1D2B,
    0x1D66,
    0x1D67,
    0x1D68,
    0x1D69,
    0x1D6A,
    0x1DBF,
    0xAB65,
}


def test_every_named_letter_maps_to_its_script() -> None:
    """Oracle: the Unicode name of each letter below U+30000 says its script."""
    by_length = sorted(PREFIXES.items(), key=lambda item: -len(item[0]))
    wrong = []
    for point in range(0x30000):
        char = chr(point)
        if not char.isalpha() or point in KNOWN_EXCEPTIONS:
            continue
        name = unicodedata.name(char, "")
        expected = next((s for p, s in by_length if name.startswith(p + " ")), None)
        if expected is not None and script_of_char(char) != expected:
            wrong.append(f"U+{point:04X} {name}: {script_of_char(char)}")
    assert not wrong, wrong[:20]


def test_non_letters_have_no_script() -> None:
    for char in ["0", "9", ".", ",", "!", "-", "_", "@", "#", "🙂", "✓", "㉑", "½", " ", "\n"]:
        assert script_of_char(char) is None, char


def test_long_prompts() -> None:
    text = ("파이썬에서 리스트를 정렬하는 방법 sort() Привет 東京 " * 5000)[:200_000]
    assert scripts_of(text) == {"Hangul", "Latin", "Cyrillic", "Han"}
    ascii_text = "How do I reset my password? " * 7000
    assert dominant_script(ascii_text) == "Latin"


@given(st.text(max_size=80))
def test_dominant_is_one_of_the_scripts(text: str) -> None:
    scripts = scripts_of(text)
    assert scripts <= set(SCRIPTS)
    dominant = dominant_script(text)
    assert (dominant is None) == (not scripts)
    assert dominant is None or dominant in scripts


@given(st.text(max_size=40), st.text(max_size=40))
def test_scripts_of_a_concatenation_is_the_union(a: str, b: str) -> None:
    assert scripts_of(a + b) == scripts_of(a) | scripts_of(b)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_text_is_latin_or_nothing(text: str) -> None:
    assert scripts_of(text) <= {"Latin"}
    assert (scripts_of(text) == {"Latin"}) == any(c.isalpha() for c in text)
