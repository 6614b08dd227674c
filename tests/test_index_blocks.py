"""BlockIndex: one FAISS index per model block answers as one full-width index would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embeddings.base import normalize_rows
from index import FaissIndex, IndexMissing, IndexModelMismatch, Neighbour
from index.blocks import Block, BlockIndex, load_blocks, read_saved_blocks

BLOCKS = (Block("model-a", 8), Block("model-b", 6))


def block_rows(rng: np.random.Generator, count: int, block: int) -> np.ndarray:
    """Unit rows that are non-zero only in `block`, as a routed embedder writes them."""
    out = np.zeros((count, 14), dtype=np.float32)
    lo, hi = (0, 8) if block == 0 else (8, 14)
    out[:, lo:hi] = normalize_rows(rng.standard_normal((count, hi - lo)).astype(np.float32))
    return out


def mixed(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = np.concatenate([block_rows(rng, 30, 0), block_rows(rng, 20, 1)])
    order = rng.permutation(len(vectors))
    return np.arange(100, 150, dtype=np.int64)[order], vectors[order]


def built(ids: np.ndarray, vectors: np.ndarray) -> BlockIndex:
    return BlockIndex.built(BLOCKS, ids, vectors, lambda i, v: FaissIndex.rebuild_from(i, v))


def as_pairs(found: list[list[Neighbour]]) -> list[list[tuple[int, float]]]:
    return [[(n.id, round(n.similarity, 5)) for n in row] for row in found]


def positive(found: list[list[Neighbour]]) -> list[list[tuple[int, float]]]:
    """What a full-width index ranks above the other block's rows (which all score 0)."""
    return [[pair for pair in row if pair[1] > 0] for row in as_pairs(found)]


def test_blocks_answer_as_one_full_width_index() -> None:
    ids, vectors = mixed()
    blocks, full = built(ids, vectors), FaissIndex.rebuild_from(ids, vectors)
    assert [part.dim for part in blocks.parts] == [8, 6]
    assert [len(part) for part in blocks.parts] == [30, 20]
    assert len(blocks) == 50 and blocks.dim == 14
    assert blocks.ids().tolist() == list(range(100, 150))
    rng = np.random.default_rng(1)
    queries = np.concatenate([block_rows(rng, 5, 0), block_rows(rng, 5, 1)])
    # Every neighbour a full-width search ranks above 0 is found, in the same order.
    assert positive(blocks.search(queries, 5)) == positive(full.search(queries, 5))
    assert all(len(row) == 5 for row in blocks.search(queries, 5))
    allowed = ids[::3].tolist()
    assert positive(blocks.search(queries, 3, allowed)) == positive(
        full.search(queries, 3, allowed)
    )


def test_a_query_never_meets_another_blocks_rows() -> None:
    ids, vectors = mixed()
    index = built(ids, vectors)
    second = {int(i) for i, v in zip(ids, vectors, strict=True) if v[8:].any()}
    query = block_rows(np.random.default_rng(2), 1, 1)
    found = index.search(query, 49)[0]
    assert len(found) == 20 and {n.id for n in found} == second


def test_add_replaces_an_id_across_blocks_and_remove_counts_once() -> None:
    ids, vectors = mixed()
    index = built(ids, vectors)
    moved = int(ids[np.flatnonzero(vectors[:, :8].any(axis=1))[0]])
    row = block_rows(np.random.default_rng(3), 1, 1)
    index.add(np.array([moved], dtype=np.int64), row)
    assert [len(part) for part in index.parts] == [29, 21]
    assert index.search(row, 1)[0][0].id == moved
    assert index.remove(np.array([moved, 999], dtype=np.int64)) == 1
    assert len(index) == 49


def test_rows_must_come_from_one_model() -> None:
    index = built(*mixed())
    both = np.full((1, 14), 1 / np.sqrt(14), dtype=np.float32)
    with pytest.raises(ValueError, match="more than one model block"):
        index.add(np.array([1], dtype=np.int64), both)
    with pytest.raises(ValueError, match="more than one model block"):
        index.search(both, 1)
    with pytest.raises(ValueError, match=r"shape \(n, 14\)"):
        index.search(np.zeros((1, 8), dtype=np.float32), 1)


def test_save_and_load_per_block_with_each_models_manifest(tmp_path: Path) -> None:
    ids, vectors = mixed()
    index = built(ids, vectors)
    index.save(tmp_path, "routed[model-a | model-b]")
    assert [m.model_id for m in read_saved_blocks(tmp_path)] == ["model-a", "model-b"]
    manifest = json.loads((tmp_path / "block-1" / "manifest.json").read_text())
    assert (manifest["dim"], manifest["count"]) == (6, 20)
    loaded = load_blocks(tmp_path, BLOCKS)
    queries = vectors[:7]
    assert as_pairs(loaded.search(queries, 4)) == as_pairs(index.search(queries, 4))

    other = (Block("model-a", 8), Block("model-c", 6))
    with pytest.raises(IndexModelMismatch, match="model-c"):
        load_blocks(tmp_path, other)
    (tmp_path / "block-1" / "index.faiss").unlink()
    (tmp_path / "block-1" / "manifest.json").unlink()
    with pytest.raises(IndexMissing):
        load_blocks(tmp_path, BLOCKS)


def test_saving_another_block_count_clears_the_old_layout(tmp_path: Path) -> None:
    ids, vectors = mixed()
    built(ids, vectors).save(tmp_path, "routed")
    one = (Block("model-a", 8),)
    first = vectors[:, :8].any(axis=1)
    single = BlockIndex.built(
        one, ids[first], np.ascontiguousarray(vectors[first, :8]), FaissIndex.rebuild_from
    )
    single.save(tmp_path, "model-a")
    assert not list(tmp_path.glob("block-*"))
    assert [m.model_id for m in read_saved_blocks(tmp_path)] == ["model-a"]
    assert len(load_blocks(tmp_path, one)) == 30

    built(ids, vectors).save(tmp_path, "routed")
    assert not (tmp_path / "index.faiss").exists() and not (tmp_path / "manifest.json").exists()
    assert len(load_blocks(tmp_path, BLOCKS)) == 50
