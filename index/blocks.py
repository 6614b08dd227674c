"""One FAISS index per model block of vectors that several models share.

A routed embedder (embeddings/routed.py) writes each text's vector into the coordinates of
the model that embedded it and leaves the other models' coordinates zero. One index over the
full width would store and scan those zeros too: half of every row, half of the memory a
search reads. Here each block is a `FaissIndex` of its own model's width, saved in a folder of
its own with that model's id in its manifest. A row is stored, and a query searched, in the
one block where it is non-zero; similarities across blocks are 0 by construction, so nothing a
full-width search would rank above 0 is lost.

With one block (one embedding model) the index is saved straight in the index folder, the
layout a plain `FaissIndex` has always used.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.base import Ids, Neighbour, Vectors
from index.faiss_index import DEFAULT_COMPACT_FRACTION, FaissIndex, load_index
from index.manifest import INDEX_FILE, MANIFEST_FILE, IndexKind, Manifest, read_manifest

BLOCK_FOLDER_PREFIX = "block-"


@dataclass(frozen=True)
class Block:
    """One model's share of the vector: its id (pinned in that block's manifest) and width."""

    model_id: str
    dim: int


def block_folders(directory: Path, count: int) -> list[Path]:
    """Where each block is saved: the folder itself for one block, `block-<n>` for several."""
    if count == 1:
        return [directory]
    return [directory / f"{BLOCK_FOLDER_PREFIX}{n}" for n in range(count)]


class BlockIndex:
    """A `VectorIndex` over `blocks`, one `FaissIndex` (`parts[n]`) per block."""

    def __init__(self, blocks: Sequence[Block], parts: Sequence[FaissIndex]) -> None:
        if not blocks or len(blocks) != len(parts):
            raise ValueError(f"need one index per block, got {len(parts)} for {len(blocks)}")
        for block, part in zip(blocks, parts, strict=True):
            if part.dim != block.dim:
                raise ValueError(f"block {block.model_id} is {block.dim}-dim, its index {part.dim}")
        self.blocks = tuple(blocks)
        self.parts = tuple(parts)
        self._spans = _spans(self.blocks)

    @classmethod
    def built(
        cls,
        blocks: Sequence[Block],
        ids: Ids,
        vectors: Vectors,
        build_part: Callable[[Ids, Vectors], FaissIndex],
    ) -> BlockIndex:
        """Each block built by one `build_part` call on all its rows (so an IVF block is
        trained once, on every row it will hold)."""
        spans = _spans(blocks)
        owners = _owners(vectors, spans, "vectors")
        ids = np.asarray(ids, dtype=np.int64)
        parts = [
            build_part(ids[owners == n], np.ascontiguousarray(vectors[owners == n, lo:hi]))
            for n, (lo, hi) in enumerate(spans)
        ]
        return cls(blocks, parts)

    @property
    def dim(self) -> int:
        return self._spans[-1][1]

    @property
    def kind(self) -> IndexKind:
        return self.parts[0].kind

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def ids(self) -> Ids:
        out = np.concatenate([part.ids() for part in self.parts])
        out.sort()
        return out

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add rows, each to the block where it is non-zero; an id already present anywhere
        is replaced."""
        if len(self.parts) == 1:
            self.parts[0].add(ids, vectors)
            return
        owners = _owners(vectors, self._spans, "vectors")
        ids = np.asarray(ids)
        if ids.shape != (owners.size,):
            raise ValueError(f"got {ids.size} ids for {owners.size} vectors")
        for n, (part, (lo, hi)) in enumerate(zip(self.parts, self._spans, strict=True)):
            mine = owners == n
            if mine.any():
                for other in self.parts:
                    if other is not part:
                        other.remove(ids[mine])
                part.add(ids[mine], np.ascontiguousarray(vectors[mine, lo:hi]))

    def remove(self, ids: Ids) -> int:
        return sum(part.remove(ids) for part in self.parts)

    def search(
        self, queries: Vectors, k: int, allowed_ids: Collection[int] | None = None
    ) -> list[list[Neighbour]]:
        """Each query searches the block where it is non-zero (`FaissIndex.search` there)."""
        if len(self.parts) == 1:
            return self.parts[0].search(queries, k, allowed_ids)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        owners = _owners(queries, self._spans, "queries")
        found: list[list[Neighbour]] = [[] for _ in range(owners.size)]
        for n, (part, (lo, hi)) in enumerate(zip(self.parts, self._spans, strict=True)):
            rows = np.flatnonzero(owners == n)
            if rows.size:
                mine = np.ascontiguousarray(queries[rows, lo:hi])
                for row, neighbours in zip(rows, part.search(mine, k, allowed_ids), strict=True):
                    found[row] = neighbours
        return found

    def save(self, directory: Path, model_id: str) -> None:
        """Save each block in its folder under its own model's id (`model_id`, the id of the
        whole vector, is what a one-block index is saved under), then delete what another
        block count left there, so a rebuild after a model change frees its disk space."""
        directory = Path(directory)
        count = len(self.parts)
        names = [model_id] if count == 1 else [block.model_id for block in self.blocks]
        for part, folder, name in zip(
            self.parts, block_folders(directory, count), names, strict=True
        ):
            part.save(folder, name)
        _remove_other_layouts(directory, keep=count)

    def set_background_compaction(self, enabled: bool) -> None:
        for part in self.parts:
            part.set_background_compaction(enabled)

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        return all(part.wait_for_compaction(timeout) for part in self.parts)


def load_blocks(
    directory: Path,
    blocks: Sequence[Block],
    *,
    hnsw_ef_search: int | None = None,
    ivf_nprobe: int | None = None,
    compact_fraction: float | None = DEFAULT_COMPACT_FRACTION,
) -> BlockIndex:
    """Load every block saved under `directory`, each checked against its model (`load_index`:
    raises `IndexMissing`, `IndexCorrupt` or `IndexModelMismatch`, naming the block's folder)."""
    folders = block_folders(Path(directory), len(blocks))
    parts = [
        load_index(
            folder,
            block.model_id,
            block.dim,
            hnsw_ef_search=hnsw_ef_search,
            ivf_nprobe=ivf_nprobe,
            compact_fraction=compact_fraction,
        )
        for block, folder in zip(blocks, folders, strict=True)
    ]
    return BlockIndex(blocks, parts)


def read_saved_blocks(directory: Path) -> list[Manifest]:
    """The manifest of each block saved under `directory`, in order, without loading FAISS.

    Raises `IndexMissing` when nothing was saved, `IndexCorrupt` as `read_manifest` does.
    """
    directory = Path(directory)
    count = len(list(directory.glob(f"{BLOCK_FOLDER_PREFIX}*")))
    return [read_manifest(folder) for folder in block_folders(directory, max(count, 1))]


def _spans(blocks: Sequence[Block]) -> list[tuple[int, int]]:
    edges = itertools.accumulate((block.dim for block in blocks), initial=0)
    return list(itertools.pairwise(edges))


def _owners(vectors: Vectors, spans: Sequence[tuple[int, int]], what: str) -> npt.NDArray[np.intp]:
    """The block each row is non-zero in (an all-zero row: the first, where it scores 0 as
    anywhere); a row with values in two blocks was not made by one model."""
    width = spans[-1][1]
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[1] != width:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise ValueError(f"{what} must have shape (n, {width}), got {shape}")
    filled = np.stack([np.any(vectors[:, lo:hi] != 0, axis=1) for lo, hi in spans])
    spanning = np.flatnonzero(filled.sum(axis=0) > 1)
    if spanning.size:
        raise ValueError(f"{what} row {int(spanning[0])} has values in more than one model block")
    owners: npt.NDArray[np.intp] = np.argmax(filled, axis=0)
    return owners


def _remove_other_layouts(directory: Path, *, keep: int) -> None:
    wanted = set(block_folders(directory, keep)) if keep > 1 else set()
    for folder in directory.glob(f"{BLOCK_FOLDER_PREFIX}*"):
        if folder not in wanted:
            shutil.rmtree(folder, ignore_errors=True)
    if keep > 1:  # the one-block layout's files
        for name in (INDEX_FILE, MANIFEST_FILE):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
