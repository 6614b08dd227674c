"""FAISS behind the `VectorIndex` seam: exact (flat), HNSW or IVF search over unit vectors.

`FaissIndex` holds one FAISS structure behind a read-write lock, validates every input, and
owns persistence (atomic save with a manifest, checked load) and rebuilds (HNSW compaction,
IVF retraining: built aside while searches and writes go on, writes journalled and replayed).
The structures themselves live in `index/idmap_slots.py` (flat and HNSW in an id map, with
tombstones for HNSW) and `index/ivf_slots.py`.

Searches restricted to `allowed_ids`: a small allowed set is scored directly from
reconstructed rows; an allowed set holding every row (one context) is a plain search where
that is as good (flat, IVF); otherwise the kind's own filtered search runs, an exact scan of
the stored rows for flat and HNSW (filtered HNSW traversal found the true best allowed id only
30% of the time when 1% of the ids were allowed: 100k random rows, efSearch 128).

The IVF kind (`index/ivf_slots.py`) is for caches of hundreds of thousands of rows and more:
its searches, restricted ones included, probe only the lists nearest the query, so they are
approximate (a small allowed set is still scored exactly); it retrains its lists as the rows
grow, through the same build-aside-and-swap path as HNSW compaction.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import re
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

import faiss
import numpy as np

from index.base import Ids, Neighbour, Vectors
from index.idmap_slots import IdMapSlots, top_k
from index.ivf_slots import IvfSlots
from index.manifest import (
    FORMAT_VERSION,
    INDEX_FILE,
    INDEX_KINDS,
    METRIC,
    IndexCorrupt,
    IndexKind,
    IndexLoadError,
    IndexMissing,
    IndexModelMismatch,
    Manifest,
    commit_file,
    read_manifest,
    remove_stale_temps,
    temp_path,
    write_manifest,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COMPACT_FRACTION",
    "DEFAULT_IVF_NPROBE",
    "FaissIndex",
    "IndexCorrupt",
    "IndexLoadError",
    "IndexMissing",
    "IndexModelMismatch",
    "IndexStats",
    "load_index",
    "set_faiss_threads",
]

DEFAULT_COMPACT_FRACTION = 0.25
_READ_CHUNK = 1 << 24  # bytes per read while FAISS loads a saved index
# Lists an IVF search probes: recall@1 0.998 on 1,000 queries at cosine 0.95 to a row among 1M
# random rows in 4096 lists, 2.6 ms (16: 0.982, 1.6 ms). See index/ivf_slots.py.
DEFAULT_IVF_NPROBE = 32
# Up to this many allowed ids, and when they are at most an eighth of the rows, scoring
# reconstructed rows beats a filtered scan (768-dim: 0.6 against 0.9 ms for 1 000 of 100k
# rows, 0.07 against 0.09 for 200 of 2 000; 0.47 against 0.34 for 1 000 of 2 000).
_DIRECT_SCORING_MAX = 2048
# Unit rows have squared norm 1 up to float32 rounding; anything further off is a caller bug.
_NORM_SQ_TOLERANCE = 2e-3
# "Error in <C++ signature> at <file>:<line>: " before the reason in FAISS's messages.
_FAISS_LOCATION = re.compile(r"^Error in .*? at \S+:\d+: ")


def set_faiss_threads(n: int) -> None:
    """Let FAISS use `n` OpenMP threads for the work started from the calling thread.

    With libgomp (the faiss-cpu wheels) the setting belongs to the calling thread, so call it
    in every thread that runs FAISS work, e.g. as a thread pool's `initializer`. A single
    query gains nothing from more threads (measured slower with 2 than 1 on 2 cores); a large
    `rebuild_from` or `compact` does.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"FAISS thread count must be a positive int, got {n!r}")
    faiss.omp_set_num_threads(n)


@dataclass(frozen=True)
class IndexStats:
    kind: IndexKind
    dim: int
    count: int  # live entries
    slots: int  # rows FAISS holds, tombstones included
    tombstones: int
    hnsw_ef_search: int | None  # None unless HNSW
    ivf_nlist: int | None = None  # None unless IVF
    ivf_nprobe: int | None = None


class _SlotStore(Protocol):
    """What `FaissIndex` needs of one FAISS structure: `IdMapSlots` (flat, HNSW) or `IvfSlots`."""

    @property
    def kind(self) -> IndexKind: ...
    @property
    def dim(self) -> int: ...
    @property
    def live(self) -> set[int]: ...
    @property
    def tombstones(self) -> int: ...
    @property
    def plain_search_when_all_allowed(self) -> bool: ...
    @property
    def faiss_index(self) -> Any: ...
    def slot_count(self) -> int: ...
    def add(self, ids: Ids, vectors: Vectors) -> None: ...
    def drop(self, ids: Ids) -> int: ...
    def live_rows(self) -> tuple[Ids, Vectors]: ...
    def reconstruct(self, ids: Ids) -> Vectors: ...
    def search_all(self, queries: Vectors, k: int, ef_search: int) -> tuple[Vectors, Ids]: ...
    def search_filtered(self, queries: Vectors, k: int, wanted: Ids) -> tuple[Vectors, Ids]: ...
    def wants_rebuild(self, compact_fraction: float | None) -> bool: ...
    def rebuild_due(self) -> bool: ...
    def rebuilt(self, ids: Ids, vectors: Vectors) -> _SlotStore: ...


class _ReadWriteLock:
    """Any number of readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class FaissIndex:
    """A `VectorIndex` on FAISS; build with `create`, `rebuild_from` or `load_index`.

    Thread-safe: searches run concurrently (FAISS releases the GIL), a write waits for the
    searches in flight and holds back new ones. Vectors must be float32 unit rows (all-zero
    rows are accepted and score 0); they are validated, never renormalized. Ids are
    non-negative int64 (FAISS reserves -1).
    """

    def __init__(
        self, slots: _SlotStore, *, ef_search: int, compact_fraction: float | None
    ) -> None:
        _check_positive("hnsw_ef_search", ef_search)
        if compact_fraction is not None and not 0.0 < compact_fraction < 1.0:
            raise ValueError(f"compact_fraction must be in (0, 1) or None, got {compact_fraction}")
        self._slots: _SlotStore = slots
        self._ef_search = ef_search
        self._compact_fraction = compact_fraction
        self._lock = _ReadWriteLock()
        self._save_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        # While a compaction builds its new graph, every write is also recorded here.
        self._journal: list[tuple[Ids, Vectors | None]] | None = None
        self._background = False
        self._compaction: threading.Thread | None = None
        self.background_compactions = 0  # started so far

    def set_background_compaction(self, enabled: bool) -> None:
        """Run automatic compactions and IVF retraining in a thread of their own.

        A server wants this: otherwise the write that crosses the threshold waits for the
        rebuild (about 50 s for IVF at 1M rows), and so does every caller holding a lock
        around that write. Explicit `compact()` calls always run in the caller's thread.
        """
        self._background = enabled

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        """Wait for a background compaction; return whether none is running any more."""
        thread = self._compaction
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @classmethod
    def create(
        cls,
        dim: int,
        kind: IndexKind = "flat",
        *,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        ivf_nprobe: int = DEFAULT_IVF_NPROBE,
        compact_fraction: float | None = DEFAULT_COMPACT_FRACTION,
    ) -> FaissIndex:
        """An empty index. `compact_fraction=None` leaves compaction (and IVF retraining) to
        explicit `compact()` calls."""
        _check_positive("dim", dim)
        _check_positive("hnsw_m", hnsw_m)
        _check_positive("hnsw_ef_construction", hnsw_ef_construction)
        _check_positive("ivf_nprobe", ivf_nprobe)
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
        slots: _SlotStore
        if kind == "ivf":
            slots = IvfSlots.empty(dim, ivf_nprobe)
        else:
            slots = IdMapSlots.empty(dim, kind, hnsw_m, hnsw_ef_construction)
            if kind == "hnsw":
                slots.inner.hnsw.efSearch = hnsw_ef_search  # saved with the file
        return cls(slots, ef_search=hnsw_ef_search, compact_fraction=compact_fraction)

    @classmethod
    def rebuild_from(
        cls,
        ids: Ids,
        vectors: Vectors,
        kind: IndexKind = "flat",
        *,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        ivf_nprobe: int = DEFAULT_IVF_NPROBE,
        compact_fraction: float | None = DEFAULT_COMPACT_FRACTION,
    ) -> FaissIndex:
        """A new index holding exactly these rows, added in one FAISS call.

        HNSW builds and IVF training use the OpenMP threads set for the calling thread
        (`set_faiss_threads`). An IVF index gets lists sized for these rows at once.
        """
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array, got {_describe(vectors)}")
        index = cls.create(
            int(vectors.shape[1]),
            kind,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
            hnsw_ef_search=hnsw_ef_search,
            ivf_nprobe=ivf_nprobe,
            compact_fraction=compact_fraction,
        )
        if kind == "ivf":  # lists trained for these rows, not grown and retrained to them
            index._slots = IvfSlots.trained(_check_rows(vectors, index.dim, "vectors"), ivf_nprobe)
        index.add(ids, vectors)
        return index

    @property
    def dim(self) -> int:
        return self._slots.dim

    @property
    def kind(self) -> IndexKind:
        return self._slots.kind

    def __len__(self) -> int:
        return len(self._slots.live)

    def stats(self) -> IndexStats:
        with self._lock.read():
            slots = self._slots
            ivf = slots if isinstance(slots, IvfSlots) else None
            return IndexStats(
                kind=slots.kind,
                dim=slots.dim,
                count=len(slots.live),
                slots=slots.slot_count(),
                tombstones=slots.tombstones,
                hnsw_ef_search=self._ef_search if slots.kind == "hnsw" else None,
                ivf_nlist=ivf.nlist if ivf else None,
                ivf_nprobe=ivf.nprobe if ivf else None,
            )

    def ids(self) -> Ids:
        """Every live id, ascending."""
        with self._lock.read():
            live = self._slots.live
            out = np.fromiter(live, dtype=np.int64, count=len(live))
        out.sort()
        return out

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add rows; an id already present is replaced (HNSW: its old slot is tombstoned).

        On IVF this may retrain the lists once the rows outgrow them: in the calling thread, or
        in a thread of its own after `set_background_compaction(True)`.
        """
        vectors = _check_rows(vectors, self.dim, "vectors")
        ids = _check_new_ids(ids, vectors.shape[0])
        if ids.size == 0:
            return
        with self._lock.write():
            self._slots.add(ids, vectors)
            if self._journal is not None:
                self._journal.append((ids.copy(), vectors.copy()))
        self._maybe_compact()

    def remove(self, ids: Ids) -> int:
        """Remove ids; return how many were present.

        On HNSW this may start a compaction once tombstones pass `compact_fraction`: in the
        calling thread, or in a thread of its own after `set_background_compaction(True)`;
        other threads keep searching and writing meanwhile.
        """
        ids = _check_ids(ids)
        with self._lock.write():
            removed = self._slots.drop(ids)
            if removed and self._journal is not None:
                self._journal.append((ids.copy(), None))
        self._maybe_compact()
        return removed

    def search(
        self, queries: Vectors, k: int, allowed_ids: Collection[int] | None = None
    ) -> list[list[Neighbour]]:
        """Top-k neighbours per query row, best first; only `allowed_ids` when given.

        Rows get fewer than `k` neighbours when the index (or the allowed set) is smaller.
        With `allowed_ids` the search is exact for flat and HNSW; IVF searches are approximate
        except over an allowed set small enough to score directly.
        """
        queries = _check_rows(queries, self.dim, "queries")
        k = operator.index(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        empty: list[list[Neighbour]] = [[] for _ in range(queries.shape[0])]
        if queries.shape[0] == 0:
            return empty
        with self._lock.read():
            slots = self._slots
            if allowed_ids is None:
                if not slots.live:
                    return empty
                found = slots.search_all(queries, min(k, len(slots.live)), self._ef_search)
            else:
                found_among = _search_among(slots, queries, k, allowed_ids)
                if found_among is None:
                    return empty
                found = found_among
        return _neighbours(*found)

    def compact(self) -> bool:
        """Rebuild from the live rows: the HNSW graph without tombstones, the IVF lists sized
        for the row count (`nlist_for`); return whether a rebuild ran.

        The build (minutes for 100k rows at efConstruction 200 on 2 cores; about a minute to
        train and fill IVF at 1M rows) runs outside the lock: searches keep using the old
        structure, and writes made meanwhile go to it and to a journal that is replayed on the
        new one before it takes over.
        """
        if not self._compact_lock.acquire(blocking=False):
            return False  # another thread is compacting already
        try:
            with self._lock.write():
                old = self._slots
                if not old.rebuild_due():
                    return False
                ids, vectors = old.live_rows()
                self._journal = []
            try:
                fresh = old.rebuilt(ids, vectors)
            except BaseException:
                with self._lock.write():
                    self._journal = None
                raise
            with self._lock.write():
                for change_ids, change_vectors in self._journal:
                    if change_vectors is None:
                        fresh.drop(change_ids)
                    else:
                        fresh.add(change_ids, change_vectors)
                self._slots = fresh
                self._journal = None
            return True
        finally:
            self._compact_lock.release()

    def save(self, directory: Path, model_id: str) -> None:
        """Write `index.faiss`, then `manifest.json`, each atomically (temp, fsync, rename).

        Searches continue while the file is written; writes wait. Raises `OSError` when the
        disk refuses.
        """
        if not model_id:
            raise ValueError("model_id must not be empty")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._save_lock:
            remove_stale_temps(directory)
            temp = temp_path(directory, INDEX_FILE)
            try:
                with self._lock.read():
                    slots = self._slots
                    try:
                        faiss.write_index(slots.faiss_index, str(temp))
                    except RuntimeError as exc:
                        reason = _faiss_reason(exc)
                        raise OSError(f"FAISS could not write {temp}: {reason}") from exc
                    kind, dim, count = slots.kind, slots.dim, len(slots.live)
                with temp.open("rb") as file:
                    digest = hashlib.file_digest(file, "sha256").hexdigest()
                commit_file(temp, directory / INDEX_FILE)
            finally:
                temp.unlink(missing_ok=True)
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                model_id=model_id,
                dim=dim,
                metric=METRIC,
                kind=kind,
                count=count,
                index_sha256=digest,
                saved_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
            write_manifest(directory, manifest)

    def _maybe_compact(self) -> None:
        if not self._slots.wants_rebuild(self._compact_fraction):
            return
        if not self._background:
            self.compact()
            return
        if self._compact_lock.locked():
            return  # one is running; its journal takes this write too
        self._compaction = threading.Thread(
            target=self._compact_logged, name="index-compaction", daemon=True
        )
        self._compaction.start()
        self.background_compactions += 1

    def _compact_logged(self) -> None:
        try:
            self.compact()
        except Exception:  # the old structure keeps serving; the next write tries again
            logger.exception("background index compaction failed")


def load_index(
    directory: Path,
    expected_model_id: str,
    expected_dim: int,
    *,
    hnsw_ef_search: int | None = None,
    ivf_nprobe: int | None = None,
    compact_fraction: float | None = DEFAULT_COMPACT_FRACTION,
) -> FaissIndex:
    """Load the index saved in `directory` and check it against the configured model.

    Raises `IndexMissing`, `IndexCorrupt` or `IndexModelMismatch` (all `IndexLoadError`).
    `hnsw_ef_search=None` and `ivf_nprobe=None` keep the values saved with the file. The
    kind is whatever was saved; compare `.kind` with the settings to decide on a rebuild.
    """
    directory = Path(directory)
    with _verified_index_file(directory) as (manifest, file):
        if manifest.model_id != expected_model_id or manifest.dim != expected_dim:
            raise IndexModelMismatch(
                directory,
                found_model_id=manifest.model_id,
                expected_model_id=expected_model_id,
                found_dim=manifest.dim,
                expected_dim=expected_dim,
            )
        try:
            # Straight from the file FAISS reads into its own buffers; a bytes copy first
            # took 22 of the 50 s a 1M-row cache needed to open.
            reader = faiss.PyCallbackIOReader(file.read, _READ_CHUNK)  # type: ignore[attr-defined]
            idmap = faiss.read_index(reader)
        except RuntimeError as exc:
            reason = f"FAISS cannot read {INDEX_FILE}: {_faiss_reason(exc)}"
            raise IndexCorrupt(directory, reason) from exc
    slots = _slots_of(directory, idmap, manifest, ivf_nprobe)
    if isinstance(slots, IdMapSlots) and slots.kind == "hnsw":
        if hnsw_ef_search is None:
            hnsw_ef_search = int(slots.inner.hnsw.efSearch)
        slots.inner.hnsw.efSearch = hnsw_ef_search
    return FaissIndex(slots, ef_search=hnsw_ef_search or 128, compact_fraction=compact_fraction)


@contextmanager
def _verified_index_file(directory: Path) -> Iterator[tuple[Manifest, BinaryIO]]:
    """The manifest and the open index file it vouches for, positioned at its start.

    The file is hashed and then parsed through one open descriptor, so a save that renames a
    new file into place meanwhile cannot slip another file's content past the check. Reads
    twice at most: a save in another process may replace both files between reading the
    manifest and opening the index, which shows as a changed manifest rather than as damage.
    """
    for attempt in range(2):
        manifest = read_manifest(directory)
        try:
            file = (directory / INDEX_FILE).open("rb")
        except FileNotFoundError as exc:
            raise IndexCorrupt(directory, f"{INDEX_FILE} is missing") from exc
        except OSError as exc:
            raise IndexCorrupt(directory, f"cannot read {INDEX_FILE}: {exc.strerror}") from exc
        with file:
            try:
                digest = hashlib.file_digest(file, "sha256").hexdigest()
            except OSError as exc:
                raise IndexCorrupt(directory, f"cannot read {INDEX_FILE}: {exc.strerror}") from exc
            if digest == manifest.index_sha256:
                file.seek(0)
                yield manifest, file
                return
        if attempt == 0 and read_manifest(directory) != manifest:
            continue
        break
    raise IndexCorrupt(
        directory,
        f"{INDEX_FILE} does not match the sha256 in the manifest "
        "(a damaged file or an interrupted save)",
    )


def _slots_of(
    directory: Path, loaded: Any, manifest: Manifest, ivf_nprobe: int | None
) -> _SlotStore:
    """The slot store around a freshly read FAISS index, checked against its manifest."""
    kind: IndexKind
    make: Callable[[], _SlotStore]
    if isinstance(loaded, faiss.IndexIVFFlat):
        kind, dim = "ivf", int(loaded.d)
        make = lambda: IvfSlots.loaded(loaded, ivf_nprobe)  # noqa: E731
    elif isinstance(loaded, faiss.IndexIDMap2):
        inner = faiss.downcast_index(loaded.index)
        if isinstance(inner, faiss.IndexHNSWFlat):
            idmap_kind: Literal["flat", "hnsw"] = "hnsw"
        elif isinstance(inner, faiss.IndexFlat):
            idmap_kind = "flat"
        else:
            reason = f"{INDEX_FILE} wraps an unsupported {type(inner).__name__}"
            raise IndexCorrupt(directory, reason)
        if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexCorrupt(directory, f"{INDEX_FILE} does not use the inner-product metric")
        kind, dim = idmap_kind, int(inner.d)
        make = lambda: IdMapSlots(loaded, inner, idmap_kind)  # noqa: E731
    else:
        raise IndexCorrupt(
            directory, f"{INDEX_FILE} holds a {type(loaded).__name__}, not an id map"
        )
    if kind != manifest.kind or dim != manifest.dim:
        raise IndexCorrupt(
            directory,
            f"{INDEX_FILE} is {kind} of dim {dim} but the manifest says "
            f"{manifest.kind} of dim {manifest.dim}",
        )
    try:
        slots = make()
    except ValueError as exc:
        raise IndexCorrupt(directory, f"{INDEX_FILE}: {exc}") from exc
    if len(slots.live) != manifest.count:
        raise IndexCorrupt(
            directory,
            f"{INDEX_FILE} holds {len(slots.live)} entries, the manifest says {manifest.count}",
        )
    return slots


def _search_among(
    slots: _SlotStore, queries: Vectors, k: int, allowed: Collection[int]
) -> tuple[Vectors, Ids] | None:
    """A search over the allowed ids: direct scoring when they are few, else the kind's own."""
    wanted_set = slots.live.intersection(allowed)
    if not wanted_set:
        return None
    k = min(k, len(wanted_set))
    if slots.plain_search_when_all_allowed and len(wanted_set) == len(slots.live):
        # The usual case of one context: skips the selector (flat 10k 768-dim rows: 2.8
        # against 5.1 ms).
        return slots.search_all(queries, k, 0)
    wanted = np.fromiter(wanted_set, dtype=np.int64, count=len(wanted_set))
    if wanted.size <= _DIRECT_SCORING_MAX and wanted.size * 8 <= len(slots.live):
        return top_k(queries @ slots.reconstruct(wanted).T, wanted, k)
    return slots.search_filtered(queries, k, wanted)


def _neighbours(similarities: Vectors, ids: Ids) -> list[list[Neighbour]]:
    # Rounding can put a self-match a hair above 1; keep the documented [-1, 1] range.
    clipped = np.minimum(np.maximum(similarities, -1.0), 1.0)
    return [
        [Neighbour(i, s) for i, s in zip(row_ids, row_sims, strict=True) if i >= 0]
        for row_ids, row_sims in zip(ids.tolist(), clipped.tolist(), strict=True)
    ]


def _check_rows(array: object, dim: int, what: str) -> Vectors:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {array.shape}")
    if array.dtype != np.float32:
        raise ValueError(f"{what} must be float32, got {array.dtype}")
    squared = np.einsum("ij,ij->i", array, array)
    # NaN fails every comparison, so it lands in the error path too.
    if not (np.abs(squared - 1.0) <= _NORM_SQ_TOLERANCE).all():
        bad = ~((np.abs(squared - 1.0) <= _NORM_SQ_TOLERANCE) | (squared == 0.0))
        if bad.any():
            row = int(np.argmax(bad))
            norm = float(np.sqrt(squared[row]))
            raise ValueError(f"{what} row {row} has L2 norm {norm:.6g}; expected unit rows")
    return np.ascontiguousarray(array)


def _check_ids(ids: object) -> Ids:
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer numpy array, got {_describe(ids)}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _check_new_ids(ids: object, rows: int) -> Ids:
    checked = _check_ids(ids)
    if checked.size != rows:
        raise ValueError(f"got {checked.size} ids for {rows} vectors")
    if rows and int(checked.min()) < 0:
        raise ValueError("ids must be non-negative (FAISS uses -1 for 'no result')")
    if np.unique(checked).size != rows:
        raise ValueError("ids must be unique within one add")
    return checked


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__


def _faiss_reason(exc: BaseException) -> str:
    """The cause from a FAISS error, without its C++ function and source location."""
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return _FAISS_LOCATION.sub("", first).strip()
