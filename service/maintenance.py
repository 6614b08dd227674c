"""Keeping the index in step with the store: open, check, repair, rebuild, re-embed.

The store is the truth and every entry carries its embedding and the id of the model that
made it, so the index can always be rebuilt. These functions are shared by the service at
start (`SemanticCache` opens its index through `open_index`) and by the `promptcache index`
commands, so the CLI and the server agree on what "consistent" means.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from embeddings.base import Embedder, RoutingEmbedder
from index.base import Ids, Vectors
from index.blocks import Block, BlockIndex, load_blocks, read_saved_blocks
from index.faiss_index import FaissIndex, IndexLoadError, IndexMissing
from service.config import Settings
from service.store import Entry, EntryStore, StoreAudit, StoreDamaged
from service.text_form import reading_form

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Opening a large cache builds millions of objects in one go, none of them in a reference
    cycle, and CPython's cycle collector would walk them again and again: at 1M entries the
    open took 20 s with it and 14 s without."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reembed_hint(stored_models: Iterable[str], configured: str) -> str:
    models = ", ".join(sorted(set(stored_models))) or "another model"
    return (
        f"the cached embeddings were made by {models} but the configured model is {configured}: "
        "semantic hits are off until you run `promptcache index rebuild --reembed` "
        "(exact hits keep working)"
    )


def index_blocks(embedder: Embedder) -> tuple[Block, ...]:
    """The index layout `embedder`'s vectors need: one block per model it routes texts to."""
    if isinstance(embedder, RoutingEmbedder):
        return tuple(Block(model_id, dim) for model_id, dim in embedder.blocks)
    return (Block(embedder.model_id, embedder.dim),)


def new_index(settings: Settings, blocks: Sequence[Block]) -> BlockIndex:
    return build_index(settings, blocks, ())


def build_index(
    settings: Settings, blocks: Sequence[Block], entries: Sequence[Entry]
) -> BlockIndex:
    """An index of the configured kind holding these entries' vectors, each block built in
    one call (so an IVF index is trained once, for all its rows), ready to serve a cache:
    compactions and IVF retraining run off the writer's thread, since the cache writes under
    its lock."""
    cfg = settings.index

    def build_part(ids: Ids, vectors: Vectors) -> FaissIndex:
        part = FaissIndex.rebuild_from(
            ids,
            vectors,
            cfg.kind,
            hnsw_m=cfg.hnsw_m,
            hnsw_ef_construction=cfg.hnsw_ef_construction,
            hnsw_ef_search=cfg.hnsw_ef_search,
            ivf_nprobe=cfg.ivf_nprobe,
        )
        part.set_background_compaction(True)
        return part

    embedded = [e for e in entries if e.embedding is not None]
    width = sum(block.dim for block in blocks)
    vectors = np.empty((len(embedded), width), dtype=np.float32)
    for row, entry in enumerate(embedded):
        vectors[row] = entry.embedding
    ids = np.array([e.id for e in embedded], dtype=np.int64)
    return BlockIndex.built(blocks, ids, vectors, build_part)


@dataclass(frozen=True)
class OpenedIndex:
    index: BlockIndex
    how: Literal["loaded", "repaired", "rebuilt", "new", "refused"]
    detail: str = ""


def move_aside_if_not_a_folder(index_dir: Path) -> None:
    """The index is rebuilt from the store when it is missing or unreadable; a file where its
    folder belongs (a bad copy, a mistaken command) is moved aside for the same rebuild,
    never deleted."""
    if index_dir.exists() and not index_dir.is_dir():
        aside = index_dir.with_name(f"{index_dir.name}.not-a-folder-{time.time_ns()}")
        index_dir.rename(aside)
        logger.warning("%s was a file, not the index folder: moved to %s", index_dir, aside)


def open_index(
    settings: Settings,
    blocks: Sequence[Block],
    indexed_entries: Callable[[], Sequence[Entry]],
    expected_ids: set[int],
    *,
    model_changed: bool,
) -> OpenedIndex:
    """Load the saved index, or repair/rebuild it from the store; never trust it blindly.

    `indexed_entries` is only called when vectors are needed (it reads every embedding).
    """
    if model_changed:
        return OpenedIndex(new_index(settings, blocks), "refused", "embedding model changed")
    move_aside_if_not_a_folder(settings.index_dir)
    try:
        index = load_blocks(
            settings.index_dir,
            blocks,
            hnsw_ef_search=settings.index.hnsw_ef_search,
            ivf_nprobe=settings.index.ivf_nprobe,
        )
        index.set_background_compaction(True)  # as `build_index` says
    except IndexLoadError as exc:  # missing, corrupt, or made by another model
        if isinstance(exc, IndexMissing) and not expected_ids:
            return OpenedIndex(new_index(settings, blocks), "new")
        return OpenedIndex(build_index(settings, blocks, indexed_entries()), "rebuilt", str(exc))
    if index.kind != settings.index.kind:
        logger.warning(
            "the saved index is %s but [index] kind is %s: it stays %s until "
            "`promptcache index rebuild`",
            index.kind,
            settings.index.kind,
            index.kind,
        )
    present = {int(i) for i in index.ids()}
    missing, extra = expected_ids - present, present - expected_ids
    if not missing and not extra:
        return OpenedIndex(index, "loaded")
    if extra:
        index.remove(np.array(sorted(extra), dtype=np.int64))
    if missing:
        rows = [e for e in indexed_entries() if e.id in missing and e.embedding is not None]
        if rows:
            index.add(
                np.array([e.id for e in rows], dtype=np.int64),
                np.stack([e.embedding for e in rows if e.embedding is not None]),
            )
    detail = f"index was stale: {len(missing)} missing, {len(extra)} extra"
    return OpenedIndex(index, "repaired", detail)


@dataclass(frozen=True)
class CheckReport:
    entries: int
    with_embedding: int
    index_entries: int | None
    manifest_models: tuple[str, ...]  # one per block (model) of the saved index
    configured_model: str
    stored_models: tuple[str, ...]
    missing_from_index: int
    extra_in_index: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    manifest_kind: str | None = None  # the saved index's kind; `[index] kind` applies at rebuild
    unreadable_entries: int = 0
    notes: tuple[str, ...] = ()  # worth knowing, repaired by the next start without a command
    store_damaged: bool = False  # SQLite says the store's file is damaged: only a salvage helps

    @property
    def consistent(self) -> bool:
        return not self.problems

    @property
    def fix(self) -> str | None:
        """The command that mends every problem, or None when there is none."""
        if self.store_damaged:
            return "promptcache index rebuild --salvage"
        if not self.problems:
            return None
        reembed = any("--reembed" in problem for problem in self.problems)
        return "promptcache index rebuild" + (" --reembed" if reembed else "")


_STARTS_REPAIR = (
    "the next start repairs it from the store (`promptcache index rebuild` does it now)"
)


def check_data_dir(
    settings: Settings, configured_model: str, block_models: Sequence[str] | None = None
) -> CheckReport:
    """Compare the saved index with the store without changing either.

    `block_models`: the model of each block the configured embedder fills (`index_blocks`);
    None: one block, `configured_model`.
    """
    expected_blocks = tuple(block_models or (configured_model,))
    # Read-only: a check must work on a backup copy or a read-only mount, and change nothing.
    store = EntryStore(settings.entries_dir, read_only=True)
    try:
        audit = store.audit()
    except StoreDamaged as exc:
        return _damaged_report(settings, configured_model, exc)
    finally:
        store.close()
    entries = audit.entries
    embedded = {e.id for e in entries if e.embedding_model is not None}
    unreadable = set(audit.unreadable_entries)
    stored_models = tuple(sorted({e.embedding_model for e in entries if e.embedding_model}))
    problems: list[str] = []
    if unreadable:
        one = len(unreadable) == 1
        problems.append(
            f"{_count(len(unreadable), 'entry', 'entries')} {'is' if one else 'are'} unreadable "
            f"(damaged on disk: {_some(audit.unreadable_entries)}); {'it' if one else 'they'} "
            f"can never be served, and a rebuild deletes {'it' if one else 'them'}"
        )
    if audit.stale_records:
        problems.append(
            f"{_count(len(audit.stale_records), 'start-up record', 'start-up records')} "
            "disagree with their entries "
            f"({_some(audit.stale_records)}); a rebuild rewrites them from the entries"
        )
    if any(m != configured_model for m in stored_models):
        problems.append(reembed_hint(stored_models, configured_model))
    # A start repairs or rebuilds whatever is wrong with the saved index (`open_index`), so
    # that is a note: after a SIGKILL the index always lags, and nothing needs the user.
    index_notes: list[str] = []
    manifest_models: tuple[str, ...] = ()
    manifest_kind: str | None = None
    index_count: int | None = None
    missing = extra = 0
    try:
        manifests = read_saved_blocks(settings.index_dir)
        manifest_models = tuple(m.model_id for m in manifests)
        manifest_kind = manifests[0].kind
        index = load_blocks(settings.index_dir, [Block(m.model_id, m.dim) for m in manifests])
        present = {int(i) for i in index.ids()}
        index_count = len(present)
        missing, extra = len(embedded - present), len(present - embedded - unreadable)
        if missing or extra:
            index_notes.append(
                f"index is stale: {missing} entries missing, {extra} extra; {_STARTS_REPAIR}"
            )
        if manifest_models != expected_blocks:
            needed = (
                f"the configured model is {configured_model}"
                if len(expected_blocks) == 1
                else f"the configured embedding needs one index for each of "
                f"{' and '.join(expected_blocks)}"
            )
            index_notes.append(
                f"the saved index holds vectors of {' and '.join(manifest_models)}; {needed}; "
                f"{_STARTS_REPAIR}"
            )
    except IndexMissing as exc:
        if embedded:
            index_notes.append(f"index missing ({exc}); {_STARTS_REPAIR}")
    except IndexLoadError as exc:
        index_notes.append(f"index unreadable: {exc}; {_STARTS_REPAIR}")
    return CheckReport(
        entries=len(entries) + len(unreadable),
        with_embedding=len(embedded),
        index_entries=index_count,
        manifest_models=manifest_models,
        configured_model=configured_model,
        stored_models=stored_models,
        missing_from_index=missing,
        extra_in_index=extra,
        problems=tuple(problems),
        manifest_kind=manifest_kind,
        unreadable_entries=len(unreadable),
        notes=(*index_notes, *_record_notes(audit)),
    )


def _damaged_report(settings: Settings, configured_model: str, exc: StoreDamaged) -> CheckReport:
    """The store's SQLite file is damaged: nothing past that can be compared."""
    cause = exc.__cause__ or exc
    problem = (
        f"the entry store {settings.entries_dir} is damaged (SQLite: {cause}); lookups that "
        "meet the damaged pages are misses. A salvage copies every entry still readable into "
        "a fresh store, moves the damaged one aside and rebuilds the index; entries on the "
        "damaged pages are lost (cached answers only: the next identical request asks upstream)"
    )
    return CheckReport(
        entries=0,
        with_embedding=0,
        index_entries=None,
        manifest_models=(),
        configured_model=configured_model,
        stored_models=(),
        missing_from_index=0,
        extra_in_index=0,
        problems=(problem,),
        store_damaged=True,
    )


def _repair_stage(audit: StoreAudit) -> str:
    parts = []
    if audit.unreadable_entries:
        unreadable = len(audit.unreadable_entries)
        parts.append(f"deleting {_count(unreadable, 'unreadable entry', 'unreadable entries')}")
    if not audit.records_in_line:
        parts.append("bringing the start-up records in line with the entries")
    return " and ".join(parts)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _some(ids: Sequence[int], shown: int = 5) -> str:
    return ", ".join(str(i) for i in ids[:shown]) + (", ..." if len(ids) > shown else "")


def _record_notes(audit: StoreAudit) -> tuple[str, ...]:
    """Records a start repairs by itself are worth knowing about, not a problem to fix."""
    counts = {
        "missing": audit.missing_records,
        "left over": audit.orphaned_records,
        "damaged": len(audit.damaged_records),
    }
    if not any(counts.values()):
        return ()
    described = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    return (
        f"start-up records out of line with the entries ({described}); the next start "
        "rewrites them from the entries",
    )


def rebuild(
    settings: Settings,
    embedder: Embedder,
    *,
    reembed: bool,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
    batch_size: int = 64,
    salvage: Callable[[], object] | None = None,
) -> tuple[int, int]:
    """Rebuild the index from the store; with `reembed`, embed every entry again first.

    Re-embedding writes each entry back one batch at a time, so an interrupted run loses
    nothing and a second run finishes the job. Returns (entries indexed, entries re-embedded).
    `stage` hears what runs next, since building an index reports no progress of its own
    (training IVF lists for 1M entries takes about a minute). `salvage` runs first, before
    the store is opened: a damaged store (`StoreDamaged`) is replaced by what it still holds.
    """
    if salvage is not None:
        if stage:
            stage("salvaging the readable entries into a fresh store")
        salvage()
    store = EntryStore(settings.entries_dir)
    try:
        if stage:
            stage("checking the entries and their start-up records")
        audit = store.audit()
        if not audit.records_in_line or audit.unreadable_entries:
            if stage:
                stage(_repair_stage(audit))
            store.repair(audit)
        move_aside_if_not_a_folder(settings.index_dir)
        entries = list(store.scan(with_embedding=True))
        embeddable = [e for e in entries if e.semantic_text and not e.exact_only]
        other_model = {
            e.embedding_model
            for e in embeddable
            if e.embedding_model and e.embedding_model != embedder.model_id
        }
        if other_model and not reembed:
            raise ValueError(reembed_hint(other_model, embedder.model_id))
        # Without --reembed only entries that never got a vector are embedded.
        stale = [e for e in embeddable if reembed or e.embedding is None]
        if stage and stale:
            stage(f"embedding {len(stale)} entries")
        total = len(stale) + len(entries)
        done = 0
        fresh: dict[int, Entry] = {}
        for start in range(0, len(stale), batch_size):
            chunk = stale[start : start + batch_size]
            # Entries stored before `text_form` existed are read in its form too.
            vectors = embedder.embed([reading_form(e.semantic_text or "") for e in chunk])
            updated = [
                e.with_embedding(v, embedder.model_id) for e, v in zip(chunk, vectors, strict=True)
            ]
            store.set_many(updated)
            fresh.update((e.id, e) for e in updated)
            done += len(chunk)
            if progress:
                progress(done, total)
        final = [fresh.get(e.id, e) for e in entries]
        indexed = [
            e for e in final if e.embedding is not None and e.embedding_model == embedder.model_id
        ]
        if stage:
            stage(f"building the {settings.index.kind} index of {len(indexed)} entries")
        index = build_index(settings, index_blocks(embedder), indexed)
        index.save(settings.index_dir, embedder.model_id)
        if progress:
            progress(total, total)
        return len(indexed), len(stale)
    finally:
        store.close()
