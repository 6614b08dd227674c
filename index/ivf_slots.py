"""The IVF kind: an inverted-file index (`IndexIVFFlat`, inner product) for large caches.

A flat scan grows with the row count (345 ms per query at 1M 768-dim rows here); IVF scans
only the `nprobe` lists whose centroids are nearest the query. Its lists are sized for the row
count it was trained on (`nlist_for`): an empty or small index is one list (an exact scan,
with a fixed zero centroid, so no training data is needed), and once the rows outgrow the
lists `FaissIndex` retrains from the live rows in the same way it compacts HNSW.

Ids are FAISS's own ids (IVF stores them per row, so no id map is needed), and a hash-table
direct map makes removal and reconstruction by id cheap; both are saved with the file.
Removal is real, so there are no tombstones.

Searches are approximate: a row is found only if its list is among those probed. A cache hit
needs a near-duplicate, and near-duplicates share lists: with 1M random 768-dim rows, 4096
lists and queries at cosine 0.95 to their row, recall@1 was 0.998 at nprobe 32, 0.982 at 16
and 0.922 at 8 (1,000 queries; at cosine 0.90: 0.966, 0.916, 0.828). `bench perf` measures it
on every run. A missed row costs a miss, never a wrong hit: the policy still checks every
candidate it is given.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import faiss
import numpy as np

from index.base import Ids, Vectors

# Below this many rows one list (an exact scan) is fast enough: 20k 768-dim rows scan in
# about 6 ms, a quarter of an embedding. Here the first 512 lists get 39 training rows each,
# the fewest FAISS's k-means accepts without a warning.
IVF_MIN_ROWS = 20_000
# k-means samples this many rows per list (FAISS warns below 39).
_TRAINING_ROWS_PER_LIST = 40
_MAX_LISTS = 65_536
_TRAINING_SEED = 1234
_HASHTABLE = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # not in faiss's stubs


def nlist_for(rows: int) -> int:
    """Lists for `rows` rows: the power of two nearest 4·√rows, or 1 below `IVF_MIN_ROWS`.

    With a fixed `nprobe` a query then scans about nprobe·√rows/4 rows plus the centroids
    (1M rows: 4096 lists); the lists double each time the rows grow fourfold.
    """
    if rows < IVF_MIN_ROWS:
        return 1
    lists: int = 2 ** round(math.log2(4 * math.sqrt(rows)))
    return min(_MAX_LISTS, lists)


class IvfSlots:
    """One `IndexIVFFlat` and the set of its ids; not thread-safe (`FaissIndex` locks)."""

    kind: Literal["ivf"] = "ivf"
    tombstones = 0
    # A search over every row is as good as a filtered one here, and skips the selector.
    plain_search_when_all_allowed = True

    def __init__(self, ivf: Any, quantizer: Any, nprobe: int) -> None:
        # FAISS objects hold raw pointers into each other: keep every owner referenced here.
        self.ivf = ivf
        self.quantizer = quantizer
        self.nprobe = nprobe
        self.dim = int(ivf.d)
        if ivf.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("the IVF index does not use the inner-product metric")
        if ivf.direct_map.type != _HASHTABLE:
            raise ValueError("the IVF index has no hash-table direct map")
        ids = self._stored_ids()
        self.live: set[int] = set(ids.tolist())
        if len(self.live) != ids.size:
            raise ValueError("the IVF index holds an id twice")

    @classmethod
    def empty(cls, dim: int, nprobe: int) -> IvfSlots:
        """One list with a zero centroid: every row lands in it, and a search scans them all."""
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.zeros((1, dim), dtype=np.float32))
        ivf = faiss.IndexIVFFlat(quantizer, dim, 1, faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        ivf.set_direct_map_type(_HASHTABLE)
        ivf.nprobe = nprobe  # saved with the file
        return cls(ivf, quantizer, nprobe)

    @classmethod
    def trained(cls, vectors: Vectors, nprobe: int) -> IvfSlots:
        """Lists sized for `len(vectors)` rows, centroids from k-means on a sample of them."""
        nlist = nlist_for(vectors.shape[0])
        if nlist == 1:
            return cls.empty(int(vectors.shape[1]), nprobe)
        dim = int(vectors.shape[1])
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = _TRAINING_SEED
        sample_size = min(vectors.shape[0], nlist * _TRAINING_ROWS_PER_LIST)
        rng = np.random.default_rng(_TRAINING_SEED)
        sample = vectors[np.sort(rng.choice(vectors.shape[0], sample_size, replace=False))]
        ivf.train(np.ascontiguousarray(sample))
        ivf.set_direct_map_type(_HASHTABLE)
        ivf.nprobe = nprobe
        return cls(ivf, quantizer, nprobe)

    @classmethod
    def loaded(cls, ivf: Any, nprobe: int | None) -> IvfSlots:
        if nprobe is not None:
            ivf.nprobe = nprobe
        return cls(ivf, faiss.downcast_index(ivf.quantizer), int(ivf.nprobe))

    @property
    def faiss_index(self) -> Any:
        return self.ivf

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    def slot_count(self) -> int:
        return int(self.ivf.ntotal)

    def wants_rebuild(self, compact_fraction: float | None) -> bool:
        """Retrain once the rows have outgrown the lists (automatic unless compaction is off)."""
        return compact_fraction is not None and nlist_for(len(self.live)) > self.nlist

    def rebuild_due(self) -> bool:
        return nlist_for(len(self.live)) != self.nlist

    def rebuilt(self, ids: Ids, vectors: Vectors) -> IvfSlots:
        fresh = IvfSlots.trained(vectors, self.nprobe)
        if ids.size:
            fresh.add(ids, vectors)
        return fresh

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self.drop(ids)
        self.ivf.add_with_ids(vectors, ids)
        self.live.update(ids.tolist())

    def drop(self, ids: Ids) -> int:
        present = [i for i in dict.fromkeys(ids.tolist()) if i in self.live]
        if not present:
            return 0
        # The hash-table direct map removes only through an IDSelectorArray.
        self.ivf.remove_ids(faiss.IDSelectorArray(np.array(present, dtype=np.int64)))
        self.live.difference_update(present)
        return len(present)

    def live_rows(self) -> tuple[Ids, Vectors]:
        ids, rows = [], []
        invlists = self.ivf.invlists
        for list_no in range(self.nlist):
            size = int(invlists.list_size(list_no))
            if size == 0:
                continue
            list_ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * self.dim * 4)
            ids.append(np.array(list_ids, dtype=np.int64))
            rows.append(np.frombuffer(codes.tobytes(), dtype=np.float32).reshape(size, self.dim))
        if not ids:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        return np.concatenate(ids), np.concatenate(rows)

    def search_all(self, queries: Vectors, k: int, ef_search: int) -> tuple[Vectors, Ids]:
        del ef_search  # an HNSW setting
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self.nprobe, self.nlist)
        return self.ivf.search(queries, k, params=params)  # type: ignore[no-any-return]

    def reconstruct(self, ids: Ids) -> Vectors:
        return self.ivf.reconstruct_batch(ids)  # type: ignore[no-any-return]

    def search_filtered(self, queries: Vectors, k: int, wanted: Ids) -> tuple[Vectors, Ids]:
        """Only `wanted` ids, within the probed lists (approximate, as every IVF search is)."""
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self.nprobe, self.nlist)
        params.sel = faiss.IDSelectorBatch(wanted)
        return self.ivf.search(queries, k, params=params)  # type: ignore[no-any-return]

    def _stored_ids(self) -> Ids:
        invlists = self.ivf.invlists
        parts = [
            np.array(faiss.rev_swig_ptr(invlists.get_ids(n), int(invlists.list_size(n))))
            for n in range(int(self.ivf.nlist))
            if invlists.list_size(n)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)
