"""The pure policy: decisions over plain values, checked exhaustively and by property."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.policy import (
    Bypass,
    EntryFacts,
    Hit,
    LookupOptions,
    Miss,
    Query,
    decide_exact,
    decide_semantic,
)

NOW = 1_000_000.0


def facts(entry_id: int = 1, fp: str = "fp", ns: str = "t/default", **kw: object) -> EntryFacts:
    values: dict[str, object] = {
        "entry_id": entry_id,
        "fingerprint": fp,
        "namespace": ns,
        "created": NOW - 10,
        "expires": NOW + 100,
        "text": "how do I reset my password",
    }
    values.update(kw)
    return EntryFacts(**values)  # type: ignore[arg-type]


QUERY = Query("fp", "t/default", "how can I reset my password")


def opts(threshold: float = 0.9, **kw: object) -> LookupOptions:
    return LookupOptions(min_similarity=threshold, guards=(), **kw)  # type: ignore[arg-type]


def test_semantic_hit_needs_threshold_freshness_and_context() -> None:
    assert isinstance(decide_semantic(QUERY, [(facts(), 0.95)], opts(), NOW), Hit)
    assert isinstance(decide_semantic(QUERY, [(facts(), 0.85)], opts(), NOW), Miss)
    assert isinstance(decide_semantic(QUERY, [(facts(expires=NOW), 0.99)], opts(), NOW), Miss)
    assert isinstance(decide_semantic(QUERY, [(facts(fp="other"), 0.99)], opts(), NOW), Miss)
    assert isinstance(decide_semantic(QUERY, [(facts(ns="u/default"), 0.99)], opts(), NOW), Miss)
    aged = opts(max_age=5)
    assert isinstance(decide_semantic(QUERY, [(facts(), 0.99)], aged, NOW), Miss)
    assert isinstance(decide_semantic(QUERY, [], opts(), NOW), Miss)


def test_zero_is_a_real_threshold() -> None:
    decision = decide_semantic(QUERY, [(facts(), 0.01)], opts(0.0), NOW)
    assert isinstance(decision, Hit)
    assert isinstance(decide_semantic(QUERY, [(facts(), -0.01)], opts(0.0), NOW), Miss)


def test_next_candidate_is_tried_when_the_best_is_refused() -> None:
    candidates = [(facts(1, exact_only=True), 0.99), (facts(2), 0.96)]
    decision = decide_semantic(QUERY, candidates, opts(), NOW)
    assert isinstance(decision, Hit) and decision.entry_id == 2


def test_the_same_prompt_up_to_final_marks_and_spacing_counts_as_similarity_1() -> None:
    cached = facts(text="Summarize  this article.")
    for new in ("Summarize this article", "Summarize this article!", " Summarize this article "):
        decision = decide_semantic(Query("fp", "t/default", new), [(cached, 0.92)], opts(0.95), NOW)
        assert isinstance(decision, Hit) and decision.similarity == 1.0, new
        assert decision.reason == (
            "same prompt up to trailing punctuation and spacing (cosine 0.9200)"
        )
    # Every other rule still applies, and only final marks and spacing are ignored.
    plain = Query("fp", "t/default", "Summarize this article")
    stale = facts(text="Summarize this article.", expires=NOW)
    assert isinstance(decide_semantic(plain, [(stale, 0.92)], opts(0.95), NOW), Miss)
    elsewhere = facts(text="Summarize this article.", fp="other")
    assert isinstance(decide_semantic(plain, [(elsewhere, 0.92)], opts(0.95), NOW), Miss)
    for different in (
        "Summarize this article twice",
        "Summarize, this article",
        "summarize this article",
    ):
        decision = decide_semantic(
            Query("fp", "t/default", different), [(cached, 0.92)], opts(0.95), NOW
        )
        assert isinstance(decision, Miss), different
    # A question and a statement are not the same prompt: the model decides between them.
    for asked in ("Summarize this article?", "Summarize this article?!"):
        decision = decide_semantic(
            Query("fp", "t/default", asked), [(cached, 0.92)], opts(0.95), NOW
        )
        assert isinstance(decision, Miss), asked
    # No final mark against "?" is the same prompt only when the words ask by themselves:
    # "Delete the release branch" says to, and so does the Korean "이 브랜치 지워" (its ending
    # is the same in a command and a question).
    question = facts(text="Delete the release branch?")
    for new, lifted in (
        ("Delete the release branch？", True),
        ("Delete the release branch", False),
        ("Delete the release branch.", False),
    ):
        decision = decide_semantic(
            Query("fp", "t/default", new), [(question, 0.9)], opts(0.95), NOW
        )
        assert isinstance(decision, Hit) is lifted, new
    for cached_text, new, lifted in (
        ("Should I delete the release branch?", "Should I delete the release branch", True),
        ("How do I rebase onto main?", "How do I rebase onto main", True),
        ("이 브랜치 지워?", "이 브랜치 지워", False),
        ("이 브랜치 지워", "이 브랜치 지워?", False),
        ("이 브랜치를 지워도 되나요?", "이 브랜치를 지워도 되나요", True),
        ("이 브랜치는 왜 지워?", "이 브랜치는 왜 지워", True),
    ):
        decision = decide_semantic(
            Query("fp", "t/default", new), [(facts(text=cached_text), 0.9)], opts(0.95), NOW
        )
        assert isinstance(decision, Hit) is lifted, new
    marks_only = facts(text="?")
    assert isinstance(
        decide_semantic(Query("fp", "t/default", "!"), [(marks_only, 0.5)], opts(0.95), NOW), Miss
    )


def test_uncovered_script_bypasses_before_any_comparison() -> None:
    korean = Query("fp", "t/default", "비밀번호 재설정")
    decision = decide_semantic(
        korean, [(facts(), 0.99)], opts(covered_scripts=frozenset({"Latin"})), NOW
    )
    assert isinstance(decision, Bypass) and decision.code == "uncovered-script"
    assert isinstance(decide_semantic(korean, [(facts(), 0.99)], opts(), NOW), Hit)


def test_exact_rules() -> None:
    assert isinstance(decide_exact(facts(), QUERY, opts(), NOW), Hit)
    assert isinstance(decide_exact(facts(expires=NOW - 1), QUERY, opts(), NOW), Miss)
    long_answer = facts(output_tokens=300)
    assert isinstance(
        decide_exact(long_answer, Query("fp", "t/default", "x", 100), opts(), NOW), Miss
    )
    cut = facts(output_tokens=100, max_tokens=100, truncated=True)
    assert isinstance(decide_exact(cut, Query("fp", "t/default", "x", 100), opts(), NOW), Hit)
    assert isinstance(decide_exact(cut, Query("fp", "t/default", "x", 200), opts(), NOW), Miss)


candidate_lists = st.lists(
    st.tuples(
        st.integers(1, 50),
        st.sampled_from(["fp", "fp2"]),
        st.sampled_from(["t/default", "u/default", "t/other"]),
        st.floats(-1, 1, allow_nan=False),
        st.floats(NOW - 50, NOW + 50, allow_nan=False),
    ),
    max_size=8,
    unique_by=lambda row: row[0],
)


@settings(max_examples=300, deadline=None)
@given(candidate_lists, st.floats(-1, 1), st.floats(-1, 1))
def test_raising_min_similarity_never_adds_hits_and_never_crosses_context(
    raw: list[tuple[int, str, str, float, float]], low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    candidates = [(facts(i, fp, ns, expires=exp), sim) for i, fp, ns, sim, exp in raw]
    loose = decide_semantic(QUERY, candidates, opts(low), NOW)
    strict = decide_semantic(QUERY, candidates, opts(high), NOW)
    for decision in (loose, strict):
        if isinstance(decision, Hit):
            chosen = next(
                f
                for f, _ in candidates
                if f.entry_id == decision.entry_id
                and f.fingerprint == "fp"
                and f.namespace == "t/default"
            )
            assert chosen.expires > NOW
    if isinstance(strict, Hit):
        assert isinstance(loose, Hit) and loose.entry_id == strict.entry_id


def test_equal_similarities_go_to_the_same_entry_whatever_the_order() -> None:
    """An index may return ties in any order; the decision must not follow that order."""
    tied = [(facts(9), 0.97), (facts(4), 0.97), (facts(2), 0.96)]
    for order in (tied, tied[::-1], [tied[1], tied[2], tied[0]]):
        decision = decide_semantic(QUERY, order, opts(), NOW)
        assert isinstance(decision, Hit) and decision.entry_id == 4
