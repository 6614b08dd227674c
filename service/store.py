"""Entries on disk: diskcache with JSON values, one key per entry.

The store is the truth; the FAISS index and every in-memory map are derived from it and can
be rebuilt. Each entry is written as one diskcache key in one SQLite transaction, so a crash
leaves either the whole entry or none of it. Values are JSON (never pickle: unpickling a
file from disk is a code-execution risk) and embeddings travel as base64 float32 bytes.

The store does not decide anything: TTLs, eviction order and what may be served live in the
policy and the orchestrator. diskcache's own eviction is off because its LRU mode turns every
read into a write; the orchestrator evicts instead and keeps the read path read-only.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core
import numpy as np
import numpy.typing as npt
import orjson

from service.errors import StorageError
from service.jsoncodec import dumps

_PREFIX = "e:"
_PREFIX_END = "e;"  # the next string after every "e:..." key
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


class EntryStore:
    """id -> Entry on diskcache. Thread- and process-safe (SQLite underneath)."""

    def __init__(self, directory: Path) -> None:
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
            raise StorageError(f"cannot open the entry store at {directory}: {exc}") from exc

    def get(self, entry_id: int, *, with_embedding: bool = False) -> Entry | None:
        """Serving a hit never needs the stored vector, and decoding it is most of the cost of
        reading an entry (about 30 of 40 us for a 768-dim vector), so it is opt-in."""
        raw = self._cache.get(f"{_PREFIX}{entry_id}")
        if raw is None:
            return None
        return decode_entry(raw, with_embedding=with_embedding)

    def set(self, entry: Entry) -> Entry:
        """Write one entry atomically and return it with its stored size."""
        raw = encode_entry(entry)
        self._cache.set(f"{_PREFIX}{entry.id}", raw)
        return replace(entry, size=len(raw))

    def set_many(self, entries: Sequence[Entry]) -> None:
        with self._cache.transact():
            for entry in entries:
                self._cache.set(f"{_PREFIX}{entry.id}", encode_entry(entry))

    def drop(self, entry_ids: Sequence[int]) -> int:
        removed = 0
        with self._cache.transact():
            for entry_id in entry_ids:
                removed += bool(self._cache.delete(f"{_PREFIX}{entry_id}"))
        return removed

    def scan(self, *, with_embedding: bool = False) -> Iterator[Entry]:
        """Every entry; an unreadable value is skipped here and reported by `check`."""
        for raw in self._raw_values():
            try:
                yield decode_entry(raw, with_embedding=with_embedding)
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                continue

    def _raw_values(self) -> Iterator[bytes | str]:
        """Every stored entry value, in one pass over diskcache's SQLite table.

        Through diskcache's API a scan is one query per key (100k entries: 3.9 s of a 6.8 s
        start); one read-only SELECT streams the same values in 0.2 s. It relies on the
        `Cache` table of diskcache 5 (key, mode, value), so any SQLite error falls back to
        the API; values diskcache keeps in files (over its 32 KB inline limit) are read
        through the API too.
        """
        database = Path(self._cache.directory) / "cache.db"
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
            rows = connection.execute(
                "SELECT key, mode, value FROM Cache WHERE key >= ? AND key < ?",
                (_PREFIX, _PREFIX_END),
            )
        except sqlite3.Error:  # not the schema this reads: nothing was yielded yet
            if connection is not None:
                connection.close()
            yield from self._raw_values_by_key()
            return
        try:
            for key, mode, value in rows:
                if mode == diskcache.core.MODE_RAW and value is not None:
                    yield value
                else:
                    stored = self._cache.get(key)
                    if stored is not None:
                        yield stored
        finally:
            connection.close()

    def _raw_values_by_key(self) -> Iterator[bytes | str]:
        for key in self._cache.iterkeys():
            if isinstance(key, str) and key.startswith(_PREFIX):
                raw = self._cache.get(key)
                if raw is not None:
                    yield raw

    def __len__(self) -> int:
        return sum(1 for key in self._cache.iterkeys() if str(key).startswith(_PREFIX))

    def volume(self) -> int:
        return int(self._cache.volume())

    def close(self) -> None:
        self._cache.close()
