"""The IVF kind past one list: list sizing, retraining as rows grow, recall on near-duplicates,
restricted searches that never leave the allowed ids, and persistence of trained lists.

32-dim random rows keep it fast; `test_index.py` runs IVF through every kind-generic test
below `IVF_MIN_ROWS` (one list, an exact scan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.scale import near_duplicates
from index import FaissIndex, IndexCorrupt, load_index, read_manifest
from index.ivf_slots import IVF_MIN_ROWS, nlist_for
from tests.test_index import (
    DIM,
    MODEL,
    assert_load_fails,
    compact_while_writing,
    oracle,
    rewrite_manifest,
    unit_rows,
)

ROWS = 25_000


@pytest.fixture(scope="module")
def trained() -> tuple[FaissIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(40)
    vectors = unit_rows(rng, ROWS)
    ids = rng.choice(2**53, size=ROWS, replace=False).astype(np.int64)
    return FaissIndex.rebuild_from(ids, vectors, "ivf", ivf_nprobe=32), vectors, ids


def test_lists_grow_with_the_square_root_of_the_rows() -> None:
    assert nlist_for(0) == nlist_for(IVF_MIN_ROWS - 1) == 1
    assert nlist_for(IVF_MIN_ROWS) == 512  # 4 * 141 = 566, nearest power of two
    assert nlist_for(100_000) == 1024
    assert nlist_for(1_000_000) == 4096
    sizes = [nlist_for(n) for n in range(IVF_MIN_ROWS, 5_000_000, 7919)]
    assert sizes == sorted(sizes)


def test_rebuild_from_trains_lists_for_its_rows(
    trained: tuple[FaissIndex, np.ndarray, np.ndarray],
) -> None:
    index, _, _ = trained
    stats = index.stats()
    assert (stats.kind, stats.count, stats.slots, stats.tombstones) == ("ivf", ROWS, ROWS, 0)
    assert (stats.ivf_nlist, stats.ivf_nprobe, stats.hnsw_ef_search) == (nlist_for(ROWS), 32, None)


def test_near_duplicates_are_found(trained: tuple[FaissIndex, np.ndarray, np.ndarray]) -> None:
    index, vectors, ids = trained
    rng = np.random.default_rng(41)
    picks = rng.choice(ROWS, 300, replace=False)
    queries = near_duplicates(rng, vectors[picks], 0.95)
    _, want = oracle(queries, vectors, ids, 1)
    got = np.array([row[0].id for row in index.search(queries, 1)])
    assert float(np.mean(got == want[:, 0])) >= 0.98
    # A stored row always finds itself: its own list is the first one probed.
    own = index.search(vectors[picks[:50]], 1)
    assert [row[0].id for row in own] == ids[picks[:50]].tolist()


@pytest.mark.parametrize("allowed_count", [30, 1500, 10_000, ROWS])
def test_restricted_searches_return_only_allowed_ids(
    trained: tuple[FaissIndex, np.ndarray, np.ndarray], allowed_count: int
) -> None:
    """The tenant boundary: whatever the path (direct scoring, filtered lists, all rows)."""
    index, vectors, ids = trained
    rng = np.random.default_rng(allowed_count)
    chosen = rng.choice(ROWS, allowed_count, replace=False)
    allowed = {int(i) for i in ids[chosen]}
    queries = near_duplicates(rng, vectors[chosen[:100]], 0.95)
    result = index.search(queries, 4, allowed_ids=allowed)
    assert all(n.id in allowed for row in result for n in row)
    _, want = oracle(queries, vectors[chosen], ids[chosen], 1)
    found = np.array([row[0].id if row else -1 for row in result])
    assert float(np.mean(found == want[:, 0])) >= 0.97
    if allowed_count == 30:  # few enough to be scored directly: exact, k results each
        assert (found == want[:, 0]).all() and all(len(row) == 4 for row in result)


def test_adding_past_the_lists_retrains_them_and_keeps_every_row() -> None:
    rng = np.random.default_rng(42)
    vectors = unit_rows(rng, 22_000)
    index = FaissIndex.create(DIM, "ivf")
    for start in range(0, 22_000, 2000):
        chunk = slice(start, start + 2000)
        index.add(np.arange(start, start + 2000, dtype=np.int64), vectors[chunk])
        expected = 1 if start + 2000 < IVF_MIN_ROWS else nlist_for(start + 2000)
        assert index.stats().ivf_nlist == expected
    index.remove(np.arange(0, 22_000, 2, dtype=np.int64))
    assert len(index) == 11_000 and index.stats().ivf_nlist == 512  # shrinking keeps the lists
    live = np.arange(1, 22_000, 2)
    found = index.search(vectors[live[:200]], 1)
    assert [row[0].id for row in found] == live[:200].tolist()
    assert index.compact() is True and index.stats().ivf_nlist == 1  # explicit: resized


def test_retraining_keeps_writes_made_while_it_trains() -> None:
    rng = np.random.default_rng(43)
    vectors = unit_rows(rng, 25_000)
    index = FaissIndex.create(DIM, "ivf", compact_fraction=None)  # no automatic retraining
    index.add(np.arange(25_000, dtype=np.int64), vectors)
    assert index.stats().ivf_nlist == 1
    live = {int(i): vectors[i] for i in range(25_000)}
    outcome = compact_while_writing(index, rng, live, first_id=100_000, victim_of=lambda n: n * 7)
    assert outcome == [True]
    assert index.stats().ivf_nlist == nlist_for(25_000)
    assert np.array_equal(index.ids(), np.array(sorted(live), dtype=np.int64))
    for entry_id, row in list(live.items())[-50:]:
        assert index.search(row[None, :], 1)[0][0].id == entry_id


def test_trained_lists_survive_save_and_load(
    trained: tuple[FaissIndex, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    index, vectors, _ = trained
    queries = near_duplicates(np.random.default_rng(44), vectors[:100], 0.95)
    before = index.search(queries, 5)
    index.save(tmp_path, MODEL)
    assert read_manifest(tmp_path).kind == "ivf"
    loaded = load_index(tmp_path, MODEL, DIM)
    assert loaded.stats() == index.stats()
    assert loaded.search(queries, 5) == before
    assert np.array_equal(loaded.ids(), index.ids())
    assert load_index(tmp_path, MODEL, DIM, ivf_nprobe=4).stats().ivf_nprobe == 4
    # Removal and reconstruction by id still work after a load (the direct map was saved).
    first = int(loaded.ids()[0])
    assert loaded.remove(np.array([first], dtype=np.int64)) == 1
    assert loaded.search(queries[:1], 3, allowed_ids={first}) == [[]]
    rewrite_manifest(tmp_path, kind="flat")
    assert_load_fails(tmp_path, IndexCorrupt, "ivf of dim 32 but the manifest says flat")


def test_background_retraining_leaves_the_writer_free() -> None:
    """As the cache runs it: the add that outgrows the lists returns before the training."""
    rng = np.random.default_rng(45)
    vectors = unit_rows(rng, IVF_MIN_ROWS + 1000)
    index = FaissIndex.create(DIM, "ivf")
    index.set_background_compaction(True)
    index.add(np.arange(IVF_MIN_ROWS - 1, dtype=np.int64), vectors[: IVF_MIN_ROWS - 1])
    assert index.stats().ivf_nlist == 1
    index.add(np.arange(IVF_MIN_ROWS - 1, IVF_MIN_ROWS + 1000), vectors[IVF_MIN_ROWS - 1 :])
    assert index.background_compactions == 1
    # Searches and writes go on while it trains; the writes are replayed on the new lists.
    index.remove(np.array([0, 1, 2], dtype=np.int64))
    assert index.search(vectors[5:6], 1)[0][0].id == 5
    assert index.wait_for_compaction(timeout=60)
    stats = index.stats()
    assert (stats.ivf_nlist, stats.count) == (nlist_for(IVF_MIN_ROWS + 1000), IVF_MIN_ROWS + 997)
    assert index.search(vectors[:3], 1, allowed_ids={0, 1, 2}) == [[], [], []]
    assert [row[0].id for row in index.search(vectors[3:50], 1)] == list(range(3, 50))
