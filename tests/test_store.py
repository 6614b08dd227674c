"""The entry store's scan: one SQLite pass, equal to diskcache's key-by-key API."""

from __future__ import annotations

from pathlib import Path

import diskcache
import numpy as np

from service.store import Entry, EntryStore


def entry(entry_id: int, response: str) -> Entry:
    return Entry(
        id=entry_id,
        exact_key=f"exact-{entry_id}",
        fingerprint="fp",
        namespace="t/",
        tenant="t",
        model="m",
        semantic_text=f"question {entry_id}",
        response=response,
        created=1.0,
        expires=2.0,
        embedding=np.full(8, entry_id, dtype=np.float32) / np.float32(np.sqrt(8) * entry_id),
        embedding_model="model",
    )


def test_scan_reads_inline_and_file_values_and_skips_other_keys(tmp_path: Path) -> None:
    store = EntryStore(tmp_path / "entries")
    try:
        # 40 KB is over diskcache's 32 KB inline limit: that value lives in a file of its own.
        responses = {1: "short", 2: "x" * 40_000, 3: "말" * 100, 4: ""}
        for entry_id, response in responses.items():
            store.set(entry(entry_id, response))
        store._cache.set("other-key", b"not an entry")  # another user of the same cache
        store._cache.set("e:9", b"{not json")  # an unreadable value: skipped, not fatal
        fast = sorted(store.scan(with_embedding=True), key=lambda e: e.id)
        slow = sorted(
            (store.get(e.id, with_embedding=True) for e in fast), key=lambda e: e.id if e else 0
        )
        assert [e.id for e in fast] == [1, 2, 3, 4]
        assert {e.id: e.response for e in fast} == responses
        for a, b in zip(fast, slow, strict=True):
            assert b is not None and a.size == b.size and a.exact_key == b.exact_key
            assert a.embedding is not None and b.embedding is not None
            assert np.array_equal(a.embedding, b.embedding)
        modes = {
            key: mode for key, mode in store._cache._sql("SELECT key, mode FROM Cache").fetchall()
        }
        assert modes["e:2"] != diskcache.core.MODE_RAW  # the file path was taken
        # The same values as diskcache's key-by-key API (the fallback path).
        by_key = sorted(
            bytes(v) if isinstance(v, bytes) else v.encode() for v in store._raw_values_by_key()
        )
        direct = sorted(
            bytes(v) if isinstance(v, bytes) else v.encode() for v in store._raw_values()
        )
        assert direct == by_key and len(direct) == 5
    finally:
        store.close()
