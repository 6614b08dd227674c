"""Entries on disk: diskcache with JSON values, one key per entry.

The store is the truth; the FAISS index and every in-memory map are derived from it and can
be rebuilt. Each entry is written as one diskcache key in one SQLite transaction, so a crash
leaves either the whole entry or none of it. Values are JSON (never pickle: unpickling a
file from disk is a code-execution risk) and embeddings travel as base64 float32 bytes.

Beside each entry the store keeps its start-up record (`h:<id>`): the entry without its
response, usage and vector, written in the same transaction. Opening a cache reads only these.
A realistic entry (an Anthropic message of ~1.5 KB, a 500-character prompt, a 384-dim vector)
is ~4.7 KB of JSON, and parsing it was the largest part of a start; the records also keep the
responses of every entry from being in memory at once while the cache opens. A data dir
written before the records existed gets them at its first open (`sync_records`).

The store does not decide anything: TTLs, eviction order and what may be served live in the
policy and the orchestrator. diskcache's own eviction is off because its LRU mode turns every
read into a write; the orchestrator evicts instead and keeps the read path read-only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

import diskcache
import diskcache.core
import numpy as np
import numpy.typing as npt
import orjson

from service.errors import StorageError
from service.jsoncodec import dumps
from service.sqlite_threads import connect_read_only

logger = logging.getLogger(__name__)

_PREFIX = "e:"
_PREFIX_END = "e;"  # the next string after every "e:..." key
_RECORD = "h:"  # an entry's start-up record
_RECORD_END = "h;"
_FORMAT = 2  # 2: a vector is stored as its non-zero span (1: the whole row)


@dataclass(frozen=True)
class Entry:
    id: int
    exact_key: str
    fingerprint: str
    namespace: str  # "<tenant>/<namespace>"
    tenant: str
    model: str
    semantic_text: str | None
    response: Any  # the answer text, or an Anthropic message object
    created: float
    expires: float
    tags: tuple[str, ...] = ()
    usage: dict[str, Any] = field(default_factory=dict)
    cost_micros: int | None = None
    max_tokens: int | None = None
    output_tokens: int | None = None
    truncated: bool = False
    exact_only: bool = False
    embedding: npt.NDArray[np.float32] | None = None
    embedding_model: str | None = None
    size: int = 0  # bytes of the stored JSON, filled in by the store

    def with_embedding(self, vector: npt.NDArray[np.float32], model_id: str) -> Entry:
        return replace(
            self, embedding=np.asarray(vector, dtype=np.float32), embedding_model=model_id
        )

    def record(self) -> EntryRecord:
        return EntryRecord(**{name: getattr(self, name) for name in RECORD_FIELDS})


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """What opening a cache needs of an entry: all but its response, usage and vector.
    `size` is the stored size of the whole entry, which the byte budget counts."""

    id: int
    exact_key: str
    fingerprint: str
    namespace: str
    tenant: str
    model: str
    semantic_text: str | None
    created: float
    expires: float
    tags: tuple[str, ...]
    max_tokens: int | None
    output_tokens: int | None
    truncated: bool
    exact_only: bool
    embedding_model: str | None
    size: int


RECORD_FIELDS: Final = tuple(f.name for f in fields(EntryRecord))


def encode_record(record: EntryRecord) -> bytes:
    return dumps([getattr(record, name) for name in RECORD_FIELDS])


_TAGS_AT: Final = RECORD_FIELDS.index("tags")


def decode_record(raw: bytes | str) -> EntryRecord:
    """A JSON array in `RECORD_FIELDS` order: a million of them are read per start, and
    positional fields parse and construct faster than a keyed object."""
    values = orjson.loads(raw)
    if not isinstance(values, list) or len(values) != len(RECORD_FIELDS):
        raise ValueError("not a start-up record")
    values[_TAGS_AT] = tuple(values[_TAGS_AT])
    record = EntryRecord(*values)
    if not (isinstance(record.id, int) and isinstance(record.size, int)):
        raise ValueError("start-up record with a non-integer id or size")
    if not all(isinstance(t, (int, float)) for t in (record.created, record.expires)):
        raise ValueError("start-up record with non-numeric times")
    return record


def encode_entry(entry: Entry) -> bytes:
    data: dict[str, Any] = {
        "format": _FORMAT,
        "id": entry.id,
        "exact_key": entry.exact_key,
        "fingerprint": entry.fingerprint,
        "namespace": entry.namespace,
        "tenant": entry.tenant,
        "model": entry.model,
        "semantic_text": entry.semantic_text,
        "response": entry.response,
        "created": entry.created,
        "expires": entry.expires,
        "tags": list(entry.tags),
        "usage": entry.usage,
        "cost_micros": entry.cost_micros,
        "max_tokens": entry.max_tokens,
        "output_tokens": entry.output_tokens,
        "truncated": entry.truncated,
        "exact_only": entry.exact_only,
        "embedding_model": entry.embedding_model,
        "embedding": None,
    }
    if entry.embedding is not None:
        data.update(_encode_vector(entry.embedding))
    return dumps(data)


def _encode_vector(vector: npt.NDArray[np.float32]) -> dict[str, Any]:
    """The row's non-zero span, its offset and the row's width. A routed embedder's rows are
    zero outside the block of the model that made them (embeddings/routed.py): storing the
    span halves what every entry carries, reads and parses."""
    row = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
    filled = np.flatnonzero(row)
    start, stop = (int(filled[0]), int(filled[-1]) + 1) if filled.size else (0, 0)
    return {
        "embedding_dim": int(row.size),
        "embedding_start": start,
        "embedding": base64.b64encode(row[start:stop].tobytes()).decode(),
    }


def _decode_vector(data: dict[str, Any]) -> npt.NDArray[np.float32]:
    span = np.frombuffer(base64.b64decode(data["embedding"]), dtype="<f4")
    if "embedding_dim" not in data:  # format 1: the whole row
        return span.astype(np.float32)
    dim, start = int(data["embedding_dim"]), int(data["embedding_start"])
    if start < 0 or start + span.size > dim:
        raise ValueError(f"stored vector span {start}+{span.size} exceeds its width {dim}")
    row = np.zeros(dim, dtype=np.float32)
    row[start : start + span.size] = span
    return row


def decode_entry(raw: bytes | str, *, with_embedding: bool = True) -> Entry:
    data = orjson.loads(raw)
    embedding = None
    if with_embedding and data.get("embedding") is not None:
        embedding = _decode_vector(data)
    return Entry(
        id=int(data["id"]),
        exact_key=data["exact_key"],
        fingerprint=data["fingerprint"],
        namespace=data["namespace"],
        tenant=data["tenant"],
        model=data["model"],
        semantic_text=data.get("semantic_text"),
        response=data["response"],
        created=float(data["created"]),
        expires=float(data["expires"]),
        tags=tuple(data.get("tags") or ()),
        usage=data.get("usage") or {},
        cost_micros=data.get("cost_micros"),
        max_tokens=data.get("max_tokens"),
        output_tokens=data.get("output_tokens"),
        truncated=bool(data.get("truncated")),
        exact_only=bool(data.get("exact_only")),
        embedding=embedding,
        embedding_model=data.get("embedding_model"),
        size=len(raw),
    )


class UnreadableEntry(StorageError):
    """An entry whose stored value no longer decodes (damaged on disk). It can never be served
    or re-indexed, so the cache drops it when it meets it and `index rebuild` deletes it."""

    def __init__(self, entry_id: int, cause: Exception) -> None:
        super().__init__(f"cache entry {entry_id} is unreadable: {cause}")
        self.entry_id = entry_id


SALVAGE_FIX: Final = (
    "stop the service, then run `promptcache index rebuild --salvage`: it copies every "
    "entry SQLite can still read into a fresh store, moves the damaged one aside and "
    "rebuilds the index (entries on damaged pages are lost; they are only cached answers)"
)


def is_damage(exc: BaseException) -> bool:
    """SQLite found the file itself damaged (a page of garbage, a file cut short), as opposed
    to busy or refusing a write: no retry helps, only salvaging what is still readable."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            sqlite3.SQLITE_CORRUPT,
            sqlite3.SQLITE_NOTADB,
        )
    )


class StoreDamaged(StorageError):
    """The entry store's SQLite file is damaged, not just one value in it. Whole-store reads
    (a scan, `index check`, a start) cannot go on; `index rebuild --salvage` keeps what is
    still readable."""

    def __init__(self, directory: Path, cause: Exception) -> None:
        super().__init__(f"the entry store at {directory} is damaged ({cause}): {SALVAGE_FIX}")


@dataclass(frozen=True)
class StoreAudit:
    """What `index check` reports about the store itself, read-only."""

    entries: tuple[EntryRecord, ...]  # what the record of each readable entry should be
    unreadable_entries: tuple[int, ...]
    damaged_records: tuple[int, ...]  # records that do not decode (an open rewrites them)
    stale_records: tuple[int, ...]  # records that disagree with their entry
    missing_records: int  # entries without a record (an open writes them)
    orphaned_records: int  # records whose entry is gone (an open deletes them)

    @property
    def records_in_line(self) -> bool:
        drift = (self.damaged_records, self.stale_records, self.missing_records)
        return not any(drift) and not self.orphaned_records


_DECODE_ERRORS: Final = (orjson.JSONDecodeError, KeyError, ValueError, TypeError)


# Written into a salvaged store once every readable entry is in it (service.store_salvage).
SALVAGE_DONE: Final = "salvage-complete"


def finish_salvage(directory: Path) -> None:
    """Put a complete salvaged store in place when a salvage stopped between moving the damaged
    store aside and moving the salvaged one in: without this, the next start would open an
    empty store where the salvaged entries should be."""
    if directory.exists():
        return
    done = [
        d
        for d in sorted(directory.parent.glob(f"{directory.name}.salvage-*"))
        if (d / SALVAGE_DONE).exists()
    ]
    if done:
        done[-1].rename(directory)
        (directory / SALVAGE_DONE).unlink(missing_ok=True)
        logger.warning("finished an interrupted salvage: %s is now %s", done[-1].name, directory)


class EntryStore:
    """id -> Entry on diskcache. Thread- and process-safe (SQLite underneath).

    `read_only`: for what changes nothing (`index check`), which must work on a backup copy
    or a read-only mount: diskcache writes its settings at every open, so the store is then
    read through read-only SQLite connections alone, and the writing methods are not used.
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self._directory = directory
        self._damage_logged: set[str] = set()
        self._damage_seen: str | None = None
        self._kept_on: set[threading.Thread] = {threading.main_thread()}
        self._read_only = read_only
        finish_salvage(directory)
        if read_only:
            return
        directory.mkdir(parents=True, exist_ok=True)
        try:
            self._cache = diskcache.Cache(
                str(directory),
                eviction_policy="none",
                size_limit=2**62,
                statistics=False,
                tag_index=False,
            )
        except Exception as exc:  # sqlite3.DatabaseError and friends: name the file
            if is_damage(exc):
                raise StoreDamaged(directory, exc) from exc
            raise StorageError(f"cannot open the entry store at {directory}: {exc}") from exc

    def keep_connection_on_this_thread(self) -> None:
        """This thread lives as long as the store (the event loop's): its connection stays
        open between calls, and its reads cost no connect."""
        self._kept_on.add(threading.current_thread())

    def _let_go(self) -> None:
        """Close this thread's connection unless the thread is kept.

        diskcache keeps one SQLite connection per thread, and the connection of a thread
        that has ended was never closed in the service: the server's worker threads end
        after 10 s idle, and each burst of traffic left about 20 more on cache.db (21 to 166
        over ten bursts). A worker thread reconnects per call instead."""
        if threading.current_thread() not in self._kept_on:
            self._cache.close()

    def get(self, entry_id: int, *, with_embedding: bool = False) -> Entry | None:
        """Serving a hit never needs the stored vector, and decoding it is most of the cost of
        reading an entry (about 30 of 40 us for a 768-dim vector), so it is opt-in."""
        try:
            raw = self._cache.get(f"{_PREFIX}{entry_id}")
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            # A damaged page is not one bad value: dropping the entry would write to the
            # damaged file. It reads as gone, so the lookup is a miss, never a 500.
            self._log_damage("reading an entry", exc)
            return None
        finally:
            self._let_go()
        if raw is None:
            return None
        try:
            return decode_entry(raw, with_embedding=with_embedding)
        except _DECODE_ERRORS as exc:
            raise UnreadableEntry(entry_id, exc) from exc

    @property
    def damage(self) -> str | None:
        """What SQLite said of the damage this store met since it opened, or None."""
        return self._damage_seen

    def _log_damage(self, doing: str, exc: Exception) -> None:
        """Once per kind of access: every lookup meeting the same damage would flood the log."""
        if self._damage_seen is None:
            self._damage_seen = f"{doing}: {exc}"
        if doing in self._damage_logged:
            return
        self._damage_logged.add(doing)
        logger.error(
            "%s: SQLite says the entry store at %s is damaged (%s); entries on damaged pages "
            "read as misses until it is salvaged: %s",
            doing,
            self._directory,
            exc,
            SALVAGE_FIX,
        )

    def set(self, entry: Entry) -> Entry:
        """Write one entry and its start-up record atomically; return it with its size."""
        with self._transaction():
            size = self._write(entry)
        return replace(entry, size=size)

    def set_many(self, entries: Sequence[Entry]) -> None:
        with self._transaction():
            for entry in entries:
                self._write(entry)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One diskcache transaction; a write SQLite refuses (a full disk, a lock held past
        diskcache's timeout) rolls back whole and raises `StorageError` naming the store."""
        try:
            with self._cache.transact():
                yield
        except (sqlite3.Error, diskcache.Timeout, OSError) as exc:
            raise StorageError(
                f"cannot write the entry store at {self._cache.directory}: {exc}"
            ) from exc
        finally:
            self._let_go()

    def _write(self, entry: Entry) -> int:
        """The entry and its record, inside the caller's transaction; returns the entry's size."""
        raw = encode_entry(entry)
        self._cache.set(f"{_PREFIX}{entry.id}", raw)
        record = replace(entry.record(), size=len(raw))
        self._cache.set(f"{_RECORD}{entry.id}", encode_record(record))
        return len(raw)

    def drop(self, entry_ids: Sequence[int]) -> int:
        removed = 0
        with self._transaction():
            for entry_id in entry_ids:
                removed += bool(self._cache.delete(f"{_PREFIX}{entry_id}"))
                self._cache.delete(f"{_RECORD}{entry_id}")
        return removed

    def scan(self, *, with_embedding: bool = False) -> Iterator[Entry]:
        """Every entry; an unreadable value is skipped here and reported by `audit`."""
        for raw in self._raw_values():
            try:
                yield decode_entry(raw, with_embedding=with_embedding)
            except _DECODE_ERRORS:
                continue

    def audit(self) -> StoreAudit:
        """Unreadable entries and start-up records out of line with their entries, changing
        nothing. `repair` mends all of it; every open mends all but stale records, which only
        a write outside the store's transactions can leave."""
        expected: dict[str, EntryRecord] = {}
        unreadable: set[str] = set()
        for key, raw in self._raw_items(_PREFIX, _PREFIX_END):
            suffix = key[len(_PREFIX) :]
            try:
                expected[suffix] = decode_entry(raw, with_embedding=False).record()
            except _DECODE_ERRORS:
                unreadable.add(suffix)
        seen: set[str] = set()
        orphaned = 0
        damaged: list[int] = []
        stale: list[int] = []
        for key, raw in self._raw_items(_RECORD, _RECORD_END):
            suffix = key[len(_RECORD) :]
            seen.add(suffix)
            entry_record = expected.get(suffix)
            if entry_record is None:
                orphaned += suffix not in unreadable
                continue
            try:
                if decode_record(raw) != entry_record:
                    stale.append(entry_record.id)
            except _DECODE_ERRORS:
                damaged.append(entry_record.id)
        return StoreAudit(
            entries=tuple(expected.values()),
            unreadable_entries=tuple(sorted(int(i) for i in unreadable if i.isdigit())),
            damaged_records=tuple(damaged),
            stale_records=tuple(stale),
            missing_records=len(expected.keys() - seen),
            orphaned_records=orphaned,
        )

    def repair(self, audit: StoreAudit) -> None:
        """Delete the unreadable entries and bring every record in line with its entry."""
        self.drop(audit.unreadable_entries)
        for _ in self._rewrite_records([*audit.damaged_records, *audit.stale_records]):
            pass
        self.sync_records()

    def records(self) -> Iterator[EntryRecord]:
        """Every entry's start-up record; call `sync_records` first on a store that an older
        release (or anything else that skips the records) may have written. A damaged record
        is rewritten from its entry, which stays the truth."""
        damaged: list[int] = []
        for key, raw in self._raw_items(_RECORD, _RECORD_END):
            try:
                yield decode_record(raw)
            except _DECODE_ERRORS:
                if key[len(_RECORD) :].isdigit():
                    damaged.append(int(key[len(_RECORD) :]))
        yield from self._rewrite_records(damaged)

    def sync_records(self, announce: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """Make the start-up records match the entries: write the missing ones from their
        entries and delete those whose entry is gone. Returns (written, deleted).

        Only keys are compared, inside SQLite while they match (0.6 s for 1M entries), so
        this runs at every open and repairs a data dir written by a release without records.
        `announce` hears (missing, orphaned) before any work: writing a million records
        takes about 40 s.
        """
        if self._records_in_line():
            return 0, 0
        entry_ids = self._ids(_PREFIX, _PREFIX_END)
        record_ids = self._ids(_RECORD, _RECORD_END)
        if entry_ids == record_ids:
            return 0, 0
        missing = sorted(int(i) for i in entry_ids - record_ids if i.isdigit())
        orphans = record_ids - entry_ids
        if announce is not None:
            announce(len(missing), len(orphans))
        written = sum(1 for _ in self._rewrite_records(missing))
        with self._cache.transact():
            for suffix in orphans:
                self._cache.delete(f"{_RECORD}{suffix}")
        return written, len(orphans)

    def _records_in_line(self) -> bool:
        """Every entry has a record and there are as many records as entries, so none is
        left over. False also when SQLite cannot tell (then the key sets are compared)."""
        try:
            connection = self._connect_read_only()
        except sqlite3.Error:
            return False
        try:
            counts = connection.execute(
                "SELECT (SELECT count(*) FROM Cache WHERE key >= ? AND key < ?),"
                " (SELECT count(*) FROM Cache WHERE key >= ? AND key < ?)",
                (_PREFIX, _PREFIX_END, _RECORD, _RECORD_END),
            ).fetchone()
            if counts[0] != counts[1]:
                return False
            unrecorded = connection.execute(
                "SELECT EXISTS (SELECT 1 FROM Cache AS e WHERE e.key >= ? AND e.key < ? AND"
                " NOT EXISTS (SELECT 1 FROM Cache AS h WHERE h.key = ? || substr(e.key, ?)))",
                (_PREFIX, _PREFIX_END, _RECORD, len(_PREFIX) + 1),
            ).fetchone()[0]
            return not unrecorded
        except sqlite3.Error:
            return False
        finally:
            connection.close()

    def _rewrite_records(self, entry_ids: Sequence[int]) -> Iterator[EntryRecord]:
        """Write the records of these entries from the entries, in batches of one transaction
        each; yield what was written. An unreadable entry gets none (`check` reports it)."""
        for start in range(0, len(entry_ids), 1000):
            written: list[EntryRecord] = []
            with self._cache.transact():
                for entry_id in entry_ids[start : start + 1000]:
                    raw = self._cache.get(f"{_PREFIX}{entry_id}")
                    if raw is None:
                        continue
                    try:
                        record = decode_entry(raw, with_embedding=False).record()
                    except _DECODE_ERRORS:
                        continue
                    self._cache.set(f"{_RECORD}{entry_id}", encode_record(record))
                    written.append(record)
            yield from written

    def _raw_values(self) -> Iterator[bytes | str]:
        return (raw for _, raw in self._raw_items(_PREFIX, _PREFIX_END))

    def _raw_items(self, prefix: str, prefix_end: str) -> Iterator[tuple[str, bytes | str]]:
        """Every stored (key, value) under `prefix`, in one pass over diskcache's SQLite table.

        Through diskcache's API a scan is one query per key (100k entries: 3.9 s of a 6.8 s
        start); one read-only SELECT streams the same values in 0.2 s. It relies on the
        `Cache` table of diskcache 5 (key, mode, value, filename), so any other SQLite error
        falls back to the API; values diskcache keeps in files (over its 32 KB inline limit)
        are read from their files. A damaged file raises `StoreDamaged`: the API would meet
        the same pages, and a scan that skipped them would pass a damaged store as whole.
        """
        try:
            connection, rows = self._select("key, mode, value, filename", prefix, prefix_end)
        except sqlite3.Error as exc:  # not the schema this reads: nothing was yielded yet
            if is_damage(exc):
                raise StoreDamaged(self._directory, exc) from exc
            if self._read_only:
                if not (self._directory / "cache.db").exists():
                    return  # no store yet: no entries
                raise StorageError(
                    f"cannot read the entry store at {self._directory}: {exc}"
                ) from exc
            yield from self._raw_items_by_key(prefix)
            return
        try:
            for key, mode, value, filename in rows:
                stored = self._stored_value(key, mode, value, filename)
                if stored is not None:
                    yield key, stored
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            raise StoreDamaged(self._directory, exc) from exc
        finally:
            connection.close()

    def _stored_value(
        self, key: str, mode: int, value: Any, filename: str | None
    ) -> bytes | str | None:
        if mode == diskcache.core.MODE_RAW and value is not None:
            return value  # type: ignore[no-any-return]
        if filename and mode in (diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT):
            try:
                data = (self._directory / filename).read_bytes()
            except OSError:
                return None  # its file is gone: the entry is as good as deleted
            return data if mode == diskcache.core.MODE_BINARY else data.decode("utf-8")
        if self._read_only:
            return None  # never written by this store (a pickled value): not an entry
        stored = self._cache.get(key)
        return stored if isinstance(stored, (bytes, str)) else None

    def _select(
        self, columns: str, prefix: str, prefix_end: str
    ) -> tuple[sqlite3.Connection, sqlite3.Cursor]:
        connection = self._connect_read_only()
        try:
            rows = connection.execute(
                f"SELECT {columns} FROM Cache WHERE key >= ? AND key < ?", (prefix, prefix_end)
            )
        except sqlite3.Error:
            connection.close()
            raise
        return connection, rows

    def _connect_read_only(self) -> sqlite3.Connection:
        return connect_read_only(self._directory / "cache.db")

    def _ids(self, prefix: str, prefix_end: str) -> frozenset[str]:
        """The ids under `prefix` as the digits of their keys, from the keys alone."""
        try:
            connection, rows = self._select(f"substr(key, {len(prefix) + 1})", prefix, prefix_end)
            try:
                return frozenset(suffix for (suffix,) in rows)
            finally:
                connection.close()
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise StoreDamaged(self._directory, exc) from exc
            return frozenset(
                key[len(prefix) :]
                for key in self._cache.iterkeys()
                if isinstance(key, str) and key.startswith(prefix)
            )

    def _raw_values_by_key(self) -> Iterator[bytes | str]:
        return (raw for _, raw in self._raw_items_by_key(_PREFIX))

    def _raw_items_by_key(self, prefix: str) -> Iterator[tuple[str, bytes | str]]:
        for key in self._cache.iterkeys():
            if isinstance(key, str) and key.startswith(prefix):
                raw = self._cache.get(key)
                if raw is not None:
                    yield key, raw

    def __len__(self) -> int:
        return sum(1 for key in self._cache.iterkeys() if str(key).startswith(_PREFIX))

    def volume(self) -> int:
        return int(self._cache.volume())

    def close(self) -> None:
        if not self._read_only:  # a read-only store holds no diskcache connection
            self._cache.close()
