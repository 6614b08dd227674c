"""Tests for `index/`: FAISS search against a NumPy oracle, mutation semantics, persistence,
load errors and concurrency. Vectors are seeded random unit rows; no embedding model needed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import index.faiss_index as faiss_index_module
from index import (
    FaissIndex,
    IndexCorrupt,
    IndexLoadError,
    IndexMissing,
    IndexModelMismatch,
    Manifest,
    Neighbour,
    load_index,
    read_manifest,
    set_faiss_threads,
)

KINDS = ("flat", "hnsw", "ivf")
DIM = 32
MODEL = "test-model-v1"


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def oracle(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product: (similarities, ids), best first."""
    sims = queries @ vectors.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def assert_matches_oracle(
    result: list[list[Neighbour]],
    queries: np.ndarray,
    vectors: np.ndarray,
    ids: np.ndarray,
    k: int,
) -> None:
    """Same ids in the same order and similarities within 1e-5; exact ties may swap ids."""
    want_sims, want_ids = oracle(queries, vectors, ids, k)
    position = {int(i): row for row, i in enumerate(ids)}
    assert len(result) == len(queries)
    for q, row in enumerate(result):
        assert len(row) == min(k, len(ids))
        got_sims = np.array([n.similarity for n in row])
        np.testing.assert_allclose(got_sims, want_sims[q], atol=1e-5)
        for rank, neighbour in enumerate(row):
            if neighbour.id != want_ids[q, rank]:
                # Only acceptable when the oracle itself has a tie here.
                true_sim = float(queries[q] @ vectors[position[neighbour.id]])
                assert abs(true_sim - want_sims[q, rank]) < 1e-5, (q, rank)


# --- search against the oracle ---------------------------------------------------------


@pytest.mark.parametrize("k", [1, 10, 5000])
def test_flat_search_agrees_with_numpy_brute_force(k: int) -> None:
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng, 2000)
    ids = rng.choice(10**9, size=2000, replace=False).astype(np.int64)
    queries = unit_rows(rng, 40)
    index = FaissIndex.rebuild_from(ids, vectors, "flat")
    assert_matches_oracle(index.search(queries, k), queries, vectors, ids, k)
    # One query at a time, as the service sends them.
    single = [index.search(queries[i : i + 1], k)[0] for i in range(len(queries))]
    assert_matches_oracle(single, queries, vectors, ids, k)


@pytest.fixture(scope="module", params=KINDS)
def big_index(request: pytest.FixtureRequest) -> tuple[FaissIndex, np.ndarray, np.ndarray]:
    """6000 rows, shared read-only by the tests that only search it."""
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 6000)
    ids = np.arange(6000, dtype=np.int64) * 7 + 3
    index = FaissIndex.rebuild_from(ids, vectors, request.param, hnsw_ef_construction=64)
    return index, vectors, ids


# 1 and 40: scored directly; 3000: the filtered scan; 6000 (every row): a plain flat search
@pytest.mark.parametrize("allowed_count", [1, 40, 3000, 6000])
def test_allowed_ids_search_is_exact_for_both_kinds(
    big_index: tuple[FaissIndex, np.ndarray, np.ndarray], allowed_count: int
) -> None:
    index, vectors, ids = big_index
    rng = np.random.default_rng(allowed_count)
    chosen = np.sort(rng.choice(len(ids), size=allowed_count, replace=False))
    # Ids not in the index (and numpy ints) are allowed in the filter and simply ignored.
    allowed = {int(i) for i in ids[chosen]} | {1, 2, 10**12}
    allowed_np: list[Any] = [np.int64(i) for i in allowed]
    queries = unit_rows(rng, 15)
    for k in (1, 5):
        result = index.search(queries, k, allowed_ids=allowed)
        assert_matches_oracle(result, queries, vectors[chosen], ids[chosen], k)
        assert index.search(queries, k, allowed_ids=allowed_np) == result


def test_allowed_ids_with_nothing_present_returns_empty_rows() -> None:
    rng = np.random.default_rng(3)
    index = FaissIndex.rebuild_from(np.arange(10, dtype=np.int64), unit_rows(rng, 10))
    assert index.search(unit_rows(rng, 2), 3, allowed_ids={100, 200}) == [[], []]
    assert index.search(unit_rows(rng, 2), 3, allowed_ids=set()) == [[], []]


def test_hnsw_recall_at_1_against_brute_force() -> None:
    rng = np.random.default_rng(4)
    vectors = unit_rows(rng, 5000)
    ids = np.arange(5000, dtype=np.int64)
    queries = unit_rows(rng, 300)
    index = FaissIndex.rebuild_from(ids, vectors, "hnsw")
    _, want = oracle(queries, vectors, ids, 1)
    got = np.array([row[0].id for row in index.search(queries, 1)])
    recall = float(np.mean(got == want[:, 0]))
    assert recall >= 0.95, recall


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_and_small_index_edges(kind: str) -> None:
    rng = np.random.default_rng(5)
    index = FaissIndex.create(DIM, kind)  # type: ignore[arg-type]
    assert len(index) == 0
    assert index.search(unit_rows(rng, 3), 4) == [[], [], []]
    assert index.search(np.empty((0, DIM), dtype=np.float32), 4) == []
    vectors = unit_rows(rng, 3)
    index.add(np.array([7, 8, 9], dtype=np.int64), vectors)
    result = index.search(vectors, 50)  # k far above the size: no -1 padding comes back
    assert [sorted(n.id for n in row) for row in result] == [[7, 8, 9]] * 3
    assert [row[0].id for row in result] == [7, 8, 9]
    assert all(-1.0 <= n.similarity <= 1.0 for row in result for n in row)


# --- add / replace / remove ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_add_replace_remove_semantics(kind: str) -> None:
    rng = np.random.default_rng(6)
    vectors = unit_rows(rng, 200)
    ids = np.arange(100, 300, dtype=np.int64)
    index = FaissIndex.create(DIM, kind, compact_fraction=None)  # type: ignore[arg-type]
    index.add(ids, vectors)
    assert len(index) == 200

    # Replacing id 100 with a new vector: the new vector finds it, the old one no longer does.
    new = unit_rows(rng, 1)
    index.add(np.array([100], dtype=np.int64), new)
    assert len(index) == 200
    best = index.search(new, 1)[0][0]
    assert best.id == 100 and best.similarity == pytest.approx(1.0, abs=1e-5)
    assert all(n.id != 100 for n in index.search(vectors[:1], 5)[0])
    # The replacement is what allowed-id searches score too.
    hit = index.search(new, 1, allowed_ids={100})[0][0]
    assert hit.similarity == pytest.approx(1.0, abs=1e-5)

    # remove counts only ids that were present, once each.
    assert index.remove(np.array([101, 101, 102, 5000], dtype=np.int64)) == 2
    assert index.remove(np.array([101], dtype=np.int64)) == 0
    assert index.remove(np.array([], dtype=np.int64)) == 0
    assert len(index) == 198
    removed = {101, 102}
    for row in index.search(vectors, 200) + index.search(vectors, 10, allowed_ids={101, 102, 103}):
        assert not removed & {n.id for n in row}
    assert np.array_equal(index.ids(), np.setdiff1d(ids, [101, 102]))

    # A removed id can come back.
    index.add(np.array([101], dtype=np.int64), vectors[1:2])
    assert index.search(vectors[1:2], 1)[0][0].id == 101


def test_hnsw_tombstones_compact_past_the_fraction() -> None:
    rng = np.random.default_rng(7)
    vectors = unit_rows(rng, 400)
    ids = np.arange(400, dtype=np.int64)
    index = FaissIndex.rebuild_from(ids, vectors, "hnsw", compact_fraction=0.25)
    index.remove(ids[:90])
    assert index.stats().tombstones == 90  # 22.5%: below the fraction
    index.remove(ids[90:110])
    stats = index.stats()
    assert (stats.tombstones, stats.slots, stats.count) == (0, 290, 290)
    queries = vectors[110:120]
    assert_matches_oracle(index.search(queries, 1), queries, vectors[110:], ids[110:], 1)
    assert FaissIndex.rebuild_from(ids, vectors, "flat").compact() is False


def compact_while_writing(
    index: FaissIndex,
    rng: np.random.Generator,
    live: dict[int, np.ndarray],
    *,
    first_id: int,
    victim_of: Callable[[int], int],
) -> list[object]:
    """Run `index.compact()` in a thread while this one adds a row and removes
    `victim_of(n)` for the n-th new id, at least 20 times and until the compaction ends.
    `live` follows every write; returns what the compaction returned or raised."""
    done = threading.Event()
    outcome: list[object] = []

    def compact() -> None:
        try:
            outcome.append(index.compact())
        except Exception as exc:  # checked by the caller, in the test's own thread
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=compact)
    worker.start()
    n = 0
    deadline = time.monotonic() + 60
    while (not done.is_set() or n < 20) and time.monotonic() < deadline:
        row = unit_rows(rng, 1)
        index.add(np.array([first_id + n], dtype=np.int64), row)
        live[first_id + n] = row[0]
        index.remove(np.array([victim_of(n)], dtype=np.int64))
        live.pop(victim_of(n), None)
        n += 1
    worker.join(timeout=60)
    return outcome


def test_compaction_keeps_writes_made_while_it_builds() -> None:
    rng = np.random.default_rng(8)
    vectors = unit_rows(rng, 3000)
    ids = np.arange(3000, dtype=np.int64)
    index = FaissIndex.rebuild_from(
        ids, vectors, "hnsw", hnsw_ef_construction=80, compact_fraction=None
    )
    index.remove(ids[:1000])
    live = {int(i): vectors[i] for i in ids[1000:]}
    outcome = compact_while_writing(
        index, rng, live, first_id=10_000, victim_of=lambda n: 1000 + n * 3
    )
    assert outcome == [True]
    assert np.array_equal(index.ids(), np.array(sorted(live), dtype=np.int64))
    for entry_id, row in list(live.items())[-50:]:
        found = index.search(row[None, :], 1, allowed_ids={entry_id})[0]
        assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    stats = index.stats()
    assert stats.slots == stats.count + stats.tombstones
    assert stats.tombstones < 1000


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    operations=st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(0, 40), max_size=12, unique=True)),
        max_size=25,
    ),
)
def test_removed_ids_are_never_returned(
    kind: str, operations: list[tuple[bool, list[int]]]
) -> None:
    index = FaissIndex.create(8, kind, hnsw_m=8)  # type: ignore[arg-type]
    live: dict[int, np.ndarray] = {}
    ever: dict[int, np.ndarray] = {}
    for step, (is_add, batch) in enumerate(operations):
        batch_ids = np.array(batch, dtype=np.int64)
        if is_add:
            rows = unit_rows(np.random.default_rng(step), len(batch), 8)
            index.add(batch_ids, rows)
            for entry_id, row in zip(batch, rows, strict=True):
                live[entry_id] = ever[entry_id] = row
        else:
            assert index.remove(batch_ids) == len(set(batch) & set(live))
            for entry_id in batch:
                live.pop(entry_id, None)
        assert len(index) == len(live)
    assert index.ids().tolist() == sorted(live)
    if ever:
        queries = np.stack(list(ever.values()))
        for allowed in (None, set(ever)):
            for row in index.search(queries, 64, allowed_ids=allowed):
                returned = [n.id for n in row]
                assert set(returned) <= set(live)
                assert len(returned) == len(set(returned))
                if kind == "flat" or allowed is not None:
                    assert len(returned) == len(live)  # exact searches return everything


# --- validation ----------------------------------------------------------------------


def test_rejects_bad_vectors_ids_and_k() -> None:
    rng = np.random.default_rng(9)
    index = FaissIndex.create(DIM)
    good = unit_rows(rng, 2)
    two = np.array([1, 2], dtype=np.int64)
    bad_inputs = [
        (two, good.astype(np.float64), "float32"),
        (two, good[0], r"shape \(n, 32\)"),
        (two, unit_rows(rng, 2, DIM + 1), r"shape \(n, 32\)"),
        (two, good * 2, "L2 norm"),
        (two, np.full((2, DIM), np.nan, dtype=np.float32), "L2 norm"),
        (two.tolist(), good, "1-D integer numpy array"),
        (two.astype(np.float64), good, "1-D integer numpy array"),
        (np.array([1], dtype=np.int64), good, "1 ids for 2 vectors"),
        (np.array([-1, 2], dtype=np.int64), good, "non-negative"),
        (np.array([3, 3], dtype=np.int64), good, "unique"),
    ]
    for ids, vectors, message in bad_inputs:
        with pytest.raises(ValueError, match=message):
            index.add(ids, vectors)
    assert len(index) == 0
    # All-zero rows (what a normalizer makes of empty input) are accepted and score 0.
    index.add(np.array([5], dtype=np.int64), np.zeros((1, DIM), dtype=np.float32))
    assert index.search(good[:1], 1)[0][0].similarity == pytest.approx(0.0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(good, 0)
    with pytest.raises(ValueError, match="float32"):
        index.search(good.astype(np.float16), 1)
    with pytest.raises(ValueError, match="kind"):
        FaissIndex.create(DIM, "annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compact_fraction"):
        FaissIndex.create(DIM, "hnsw", compact_fraction=1.5)


# --- persistence ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_keeps_results_and_tombstones(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    vectors = unit_rows(rng, 500)
    ids = np.arange(500, dtype=np.int64) * 2
    index = FaissIndex.rebuild_from(ids, vectors, kind, hnsw_ef_search=64)  # type: ignore[arg-type]
    index.remove(ids[:50])  # HNSW: 10% tombstones, below the compaction fraction
    index.add(ids[60:61], vectors[0:1])  # a replacement: one more tombstone on HNSW
    queries = vectors[:80]
    before = index.search(queries, 10)
    index.save(tmp_path, MODEL)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "manifest.json"]
    manifest = read_manifest(tmp_path)
    assert (manifest.model_id, manifest.dim, manifest.kind, manifest.count) == (
        MODEL,
        DIM,
        kind,
        450,
    )
    assert manifest.metric == "cosine" and manifest.format_version == 1
    digest = hashlib.sha256((tmp_path / "index.faiss").read_bytes()).hexdigest()
    assert manifest.index_sha256 == digest

    loaded = load_index(tmp_path, MODEL, DIM)
    assert loaded.kind == kind and len(loaded) == 450
    assert loaded.stats() == index.stats()
    assert np.array_equal(loaded.ids(), index.ids())
    assert loaded.search(queries, 10) == before
    assert not {int(i) for i in ids[:50]} & {n.id for row in before for n in row}
    # The loaded index is fully usable: it saves again and keeps its state.
    loaded.remove(ids[100:101])
    loaded.save(tmp_path, MODEL)
    assert len(load_index(tmp_path, MODEL, DIM)) == 449


def test_load_keeps_or_overrides_hnsw_ef_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    index = FaissIndex.rebuild_from(np.arange(50, dtype=np.int64), unit_rows(rng, 50), "hnsw")
    index.save(tmp_path, MODEL)
    assert load_index(tmp_path, MODEL, DIM).stats().hnsw_ef_search == 128
    assert load_index(tmp_path, MODEL, DIM, hnsw_ef_search=16).stats().hnsw_ef_search == 16


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    rng = np.random.default_rng(12)
    index = FaissIndex.rebuild_from(np.arange(100, dtype=np.int64), unit_rows(rng, 100))
    index.save(tmp_path, MODEL)
    return tmp_path


def rewrite_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def assert_load_fails(directory: Path, error: type[IndexLoadError], match: str) -> IndexLoadError:
    with pytest.raises(error, match=match) as caught:
        load_index(directory, MODEL, DIM)
    assert "\n" not in str(caught.value)
    return caught.value


def test_missing_index(tmp_path: Path) -> None:
    assert_load_fails(tmp_path / "never-saved", IndexMissing, "no saved index")
    assert_load_fails(tmp_path, IndexMissing, "no saved index")


def test_half_saved_pairs_are_corrupt(saved: Path, tmp_path: Path) -> None:
    (saved / "index.faiss").unlink()
    assert_load_fails(saved, IndexCorrupt, "index.faiss is missing")
    other = tmp_path / "other"
    FaissIndex.create(DIM).save(other, MODEL)
    (other / "manifest.json").unlink()
    assert_load_fails(other, IndexCorrupt, "without manifest.json")


def test_damaged_index_file_fails_the_checksum(saved: Path) -> None:
    path = saved / "index.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_load_fails(saved, IndexCorrupt, "does not match the sha256")


def test_truncated_index_file_fails_the_checksum(saved: Path) -> None:
    path = saved / "index.faiss"
    path.write_bytes(path.read_bytes()[:100])
    assert_load_fails(saved, IndexCorrupt, "does not match the sha256")


def test_manifest_checksum_mismatch(saved: Path) -> None:
    rewrite_manifest(saved, index_sha256="0" * 64)
    assert_load_fails(saved, IndexCorrupt, "does not match the sha256")


def test_unreadable_index_with_matching_checksum(saved: Path) -> None:
    garbage = b"not a faiss index at all" * 10
    (saved / "index.faiss").write_bytes(garbage)
    rewrite_manifest(saved, index_sha256=hashlib.sha256(garbage).hexdigest())
    assert_load_fails(saved, IndexCorrupt, "FAISS cannot read index.faiss")


def test_count_and_kind_mismatches(saved: Path) -> None:
    rewrite_manifest(saved, count=99)
    assert_load_fails(saved, IndexCorrupt, "holds 100 entries, the manifest says 99")
    rewrite_manifest(saved, count=100, kind="hnsw")
    assert_load_fails(saved, IndexCorrupt, "flat of dim 32 but the manifest says hnsw")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"format_version": 2}', "unsupported format_version 2"),
        (b'{"format_version": 1, "model_id": "m"}', "'dim' is missing"),
    ],
)
def test_bad_manifests(saved: Path, content: bytes, match: str) -> None:
    (saved / "manifest.json").write_bytes(content)
    assert_load_fails(saved, IndexCorrupt, match)


def test_bad_manifest_field_values(saved: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"metric": "l2"}, "metric"),
        ({"dim": True}, "'dim' is missing or not of type int"),
        ({"index_sha256": "xyz"}, "sha256 hex digest"),
        ({"saved_at": "yesterday"}, "not an ISO time"),
        ({"model_id": ""}, "model_id is empty"),
    ]
    for changes, match in cases:
        original = (saved / "manifest.json").read_bytes()
        rewrite_manifest(saved, **changes)
        assert_load_fails(saved, IndexCorrupt, match)
        (saved / "manifest.json").write_bytes(original)
    assert len(load_index(saved, MODEL, DIM)) == 100


def test_model_and_dim_mismatch(saved: Path) -> None:
    with pytest.raises(IndexModelMismatch) as caught:
        load_index(saved, "another-model", DIM)
    error = caught.value
    assert (error.found_model_id, error.expected_model_id) == (MODEL, "another-model")
    assert "re-embed" in str(error) and "\n" not in str(error)
    with pytest.raises(IndexModelMismatch) as caught:
        load_index(saved, MODEL, 384)
    assert (caught.value.found_dim, caught.value.expected_dim) == (DIM, 384)


def test_crash_between_the_two_renames_is_detected(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(13)
    bigger = FaissIndex.rebuild_from(np.arange(300, dtype=np.int64), unit_rows(rng, 300))

    def crash(directory: Path, manifest: Manifest) -> None:
        raise OSError("simulated power loss")

    monkeypatch.setattr(faiss_index_module, "write_manifest", crash)
    with pytest.raises(OSError, match="simulated"):
        bigger.save(saved, MODEL)
    # The new index file sits beside the old manifest: detected, not loaded as 100 entries.
    assert_load_fails(saved, IndexCorrupt, "does not match the sha256")
    assert sorted(p.name for p in saved.iterdir()) == ["index.faiss", "manifest.json"]
    monkeypatch.undo()
    bigger.save(saved, MODEL)
    assert len(load_index(saved, MODEL, DIM)) == 300


def test_save_removes_stale_temp_files_only(saved: Path) -> None:
    stale = saved / ".index.faiss.abc.tmp"
    fresh = saved / ".manifest.json.def.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    FaissIndex.create(DIM).save(saved, MODEL)
    assert not stale.exists() and fresh.exists()


# --- threads -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_searches_while_writing(kind: str) -> None:
    rng = np.random.default_rng(14)
    vectors = unit_rows(rng, 3000)
    index = FaissIndex.create(
        DIM,
        kind,  # type: ignore[arg-type]
        hnsw_ef_construction=40,
        compact_fraction=0.1,
    )
    index.add(np.arange(200, dtype=np.int64), vectors[:200])
    queries = unit_rows(rng, 20)
    stop = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def searcher(seed: int) -> None:
        local = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(local.integers(len(queries)))
                q = queries[i : i + 1]
                allowed = None if local.random() < 0.5 else set(range(0, 3000, 3))
                for row in index.search(q, 5, allowed_ids=allowed):
                    assert all(n.id >= 0 for n in row)
                searches[0] += 1
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        for start in range(200, 3000, 50):
            index.add(np.arange(start, start + 50, dtype=np.int64), vectors[start : start + 50])
            index.remove(np.arange(start - 200, start - 180, dtype=np.int64))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert searches[0] > 0
    assert len(index) == 3000 - 56 * 20


def test_set_faiss_threads_applies_to_the_calling_thread() -> None:
    seen: list[int] = []

    def worker() -> None:
        set_faiss_threads(1)
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="positive int"):
            set_faiss_threads(bad)  # type: ignore[arg-type]


def test_importing_the_package_does_not_load_faiss() -> None:
    code = "import sys, index; assert 'faiss' not in sys.modules; index.Manifest"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)
