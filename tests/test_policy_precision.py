"""Precision beyond the cosine: guards, the verifier and script floors, as pure policy.

The properties hold for any candidates: switching a guard on, raising `min_similarity` or
raising the verifier's `min_score` can only turn hits into misses, never a miss into a hit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ConfigError
from service.guards import GUARDS
from service.policy import Bypass, EntryFacts, Hit, LookupOptions, Miss, Query, decide_semantic
from service.verifier import FEATURES, Verifier, load_verifier, pair_features

NOW = 1_000_000.0
TEXTS = [
    "How do I reset my password?",
    "How can I reset my password?",
    "How do I not reset my password?",
    "What is 15% of 200?",
    "What is 25% of 200?",
    "Best time to visit Paris",
    "Best time to visit London",
    "Convert PDF to Word",
    "Convert Word to PDF",
    "Why did sales increase in 2023?",
    "Why did sales decrease in 2024?",
    "비밀번호 재설정 방법",
    "비밀번호를 재설정하는 방법은?",
    "서울에서 부산으로 가는 기차",
    "부산에서 서울로 가는 기차",
]
VERIFIER = load_verifier("bundled")


def facts(entry_id: int, text: str) -> EntryFacts:
    return EntryFacts(entry_id, "fp", "t/default", NOW - 10, NOW + 100, text)


candidate_lists = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from(TEXTS), st.floats(0.5, 1.0)),
    max_size=5,
    unique_by=lambda c: c[0],
).map(lambda rows: [(facts(i, text), sim) for i, text, sim in rows])
guard_sets = st.sets(st.sampled_from(sorted(GUARDS))).map(lambda s: tuple(sorted(s)))
verifiers = st.sampled_from([None, VERIFIER])
floors = st.sampled_from([(), (("Hangul", 0.97),), (("Latin", 0.9), ("Hangul", 0.99))])


def options(threshold: float, guards: tuple[str, ...], verifier: Verifier | None,
            floor: tuple[tuple[str, float], ...] = ()) -> LookupOptions:  # fmt: skip
    return LookupOptions(
        min_similarity=threshold, guards=guards, verifier=verifier, script_min_similarity=floor
    )


@settings(max_examples=200, deadline=None)
@given(candidate_lists, st.sampled_from(TEXTS), guard_sets, guard_sets, verifiers, floors)
def test_enabling_a_guard_never_adds_hits(
    candidates: list[tuple[EntryFacts, float]],
    text: str,
    fewer: tuple[str, ...],
    extra: tuple[str, ...],
    verifier: Verifier | None,
    floor: tuple[tuple[str, float], ...],
) -> None:
    query = Query("fp", "t/default", text)
    more = tuple(sorted(set(fewer) | set(extra)))
    loose = decide_semantic(query, candidates, options(0.8, fewer, verifier, floor), NOW)
    strict = decide_semantic(query, candidates, options(0.8, more, verifier, floor), NOW)
    if isinstance(strict, Hit):
        assert isinstance(loose, Hit)


@settings(max_examples=200, deadline=None)
@given(candidate_lists, st.sampled_from(TEXTS), st.floats(0.5, 1.0), st.floats(0.5, 1.0),
       guard_sets, verifiers, floors)  # fmt: skip
def test_raising_min_similarity_never_adds_hits(
    candidates: list[tuple[EntryFacts, float]],
    text: str,
    low: float,
    high: float,
    guards: tuple[str, ...],
    verifier: Verifier | None,
    floor: tuple[tuple[str, float], ...],
) -> None:
    low, high = min(low, high), max(low, high)
    query = Query("fp", "t/default", text)
    loose = decide_semantic(query, candidates, options(low, guards, verifier, floor), NOW)
    strict = decide_semantic(query, candidates, options(high, guards, verifier, floor), NOW)
    if isinstance(strict, Hit):
        assert isinstance(loose, Hit) and loose.entry_id == strict.entry_id
        assert strict.similarity >= high


@settings(max_examples=150, deadline=None)
@given(candidate_lists, st.sampled_from(TEXTS), st.floats(0, 1), st.floats(0, 1))
def test_raising_the_verifier_score_never_adds_hits(
    candidates: list[tuple[EntryFacts, float]], text: str, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    query = Query("fp", "t/default", text)
    lenient = replace(VERIFIER, min_score=low)
    strict_v = replace(VERIFIER, min_score=high)
    loose = decide_semantic(query, candidates, options(0.8, (), lenient), NOW)
    strict = decide_semantic(query, candidates, options(0.8, (), strict_v), NOW)
    if isinstance(strict, Hit):
        assert isinstance(loose, Hit)


def test_verifier_refusal_names_the_score() -> None:
    query = Query("fp", "t/default", "How can I reset my password?")
    refuse_all = replace(VERIFIER, min_score=1.0)
    decision = decide_semantic(
        query, [(facts(7, "How do I reset my password?"), 0.97)], options(0.9, (), refuse_all), NOW
    )
    assert isinstance(decision, Miss) and "entry 7 verifier" in decision.reason
    accept_all = replace(VERIFIER, min_score=0.0)
    hit = decide_semantic(
        query, [(facts(7, "How do I reset my password?"), 0.97)], options(0.9, (), accept_all), NOW
    )
    assert isinstance(hit, Hit) and "verifier" in hit.reason


def test_script_floor_applies_only_to_that_script() -> None:
    floor = (("Hangul", 0.97),)
    korean = Query("fp", "t/default", "비밀번호를 재설정하는 방법은?")
    english = Query("fp", "t/default", "How can I reset my password?")
    cand_ko = [(facts(1, "비밀번호 재설정 방법"), 0.95)]
    cand_en = [(facts(2, "How do I reset my password?"), 0.95)]
    decision = decide_semantic(korean, cand_ko, options(0.9, (), None, floor), NOW)
    assert isinstance(decision, Miss) and "the Hangul floor 0.97" in decision.reason
    assert isinstance(decide_semantic(english, cand_en, options(0.9, (), None, floor), NOW), Hit)
    assert isinstance(decide_semantic(korean, cand_ko, options(0.9, (), None), NOW), Hit)
    # A script the model does not cover is never compared, whatever the floor.
    latin_only = replace(options(0.0, (), None, floor), covered_scripts=frozenset({"Latin"}))
    bypass = decide_semantic(korean, cand_ko, latin_only, NOW)
    assert isinstance(bypass, Bypass) and bypass.code == "uncovered-script"
    assert "Hangul" in bypass.reason


def test_pair_features_are_bounded_and_symmetric_in_text() -> None:
    for a in TEXTS:
        for b in TEXTS:
            values = pair_features(a, b, 0.9, 0.8)
            assert set(values) == set(FEATURES)
            assert all(-1.0 <= v <= 1.0 for v in values.values()), values
            flipped = pair_features(b, a, 0.9, 0.8)
            assert values == pytest.approx(flipped)
    same = pair_features("How do I reset my password?", "How do I reset my password?", 1.0, None)
    assert same["lexical"] == same["chargram"] == same["length_ratio"] == 1.0
    assert same["margin"] == 0.2


def test_bundled_verifier_and_bad_files(tmp_path: Path) -> None:
    assert load_verifier("off") is None
    bundled = load_verifier("bundled", min_score=0.3)
    assert bundled is not None and bundled.min_score == 0.3
    assert {name for name, _ in bundled.weights} <= set(FEATURES)
    assert "qqp_dev" in bundled.source
    better = pair_features("How do I reset my password?", "How can I reset my password?", 0.97, 0.5)
    worse = dict(better, cosine=0.86)
    assert bundled.score(better) > bundled.score(worse)  # the cosine still counts most
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"weights": {"nonsense": 1}, "bias": 0, "min_score": 0.5}))
    with pytest.raises(ConfigError, match="unknown feature"):
        load_verifier(str(path))
    with pytest.raises(ConfigError, match="cannot read verifier"):
        load_verifier(str(tmp_path / "missing.json"))
    round_trip = Verifier.from_json(bundled.to_json())
    assert round_trip == bundled
