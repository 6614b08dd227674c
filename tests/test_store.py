"""The entry store's scan: one SQLite pass, equal to diskcache's key-by-key API."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import diskcache
import numpy as np
import orjson
import pytest

from service.store import Entry, EntryStore, UnreadableEntry, encode_record


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


def test_a_vector_is_stored_as_its_non_zero_span_and_read_back_whole(tmp_path: Path) -> None:
    store = EntryStore(tmp_path / "entries")
    rows = {
        1: np.concatenate([np.zeros(5), np.full(3, 1 / np.sqrt(3))]),  # a routed row, block 2
        2: np.concatenate([np.full(4, 0.5), np.zeros(4)]),  # block 1
        3: np.zeros(8),  # all zero: valid, scores 0
        4: np.array([0.5, 0, 0, 0, 0, 0, 0, np.sqrt(0.75)]),  # zeros inside the span stay
    }
    try:
        for entry_id, row in rows.items():
            written = replace(entry(entry_id, "a"), embedding=row.astype(np.float32))
            store.set(written)
        raw = orjson.loads(store._cache.get("e:1"))
        assert (raw["format"], raw["embedding_dim"], raw["embedding_start"]) == (2, 8, 5)
        assert len(base64.b64decode(raw["embedding"])) == 3 * 4  # the span, not 8 floats
        for entry_id, row in rows.items():
            read = store.get(entry_id, with_embedding=True)
            assert read is not None and read.embedding is not None
            assert read.embedding.dtype == np.float32
            np.testing.assert_array_equal(read.embedding, row.astype(np.float32))
        unread = store.get(1)  # serving a hit skips the vector
        assert unread is not None and unread.embedding is None
    finally:
        store.close()


def test_entries_written_whole_by_format_1_still_read(tmp_path: Path) -> None:
    store = EntryStore(tmp_path / "entries")
    try:
        store.set(entry(7, "old"))
        raw = orjson.loads(store._cache.get("e:7"))
        row = np.full(8, 1 / np.sqrt(8), dtype="<f4")
        for key in ("embedding_dim", "embedding_start"):
            del raw[key]
        raw |= {"format": 1, "embedding": base64.b64encode(row.tobytes()).decode()}
        store._cache.set("e:7", orjson.dumps(raw))
        read = store.get(7, with_embedding=True)
        assert read is not None and read.embedding is not None
        np.testing.assert_array_equal(read.embedding, row)
        raw |= {"format": 2, "embedding_dim": 4, "embedding_start": 0}  # a span past its width
        store._cache.set("e:7", orjson.dumps(raw))
        assert list(store.scan(with_embedding=True)) == []  # skipped, reported by `check`
    finally:
        store.close()


def test_each_entry_has_a_start_up_record_written_and_dropped_with_it(tmp_path: Path) -> None:
    store = EntryStore(tmp_path / "entries")
    try:
        stored = store.set(replace(entry(1, "x" * 3000), tags=("faq",), max_tokens=64))
        store.set_many([entry(2, "b"), entry(3, "c")])
        records = {r.id: r for r in store.records()}
        assert sorted(records) == [1, 2, 3]
        assert records[1] == stored.record()  # every field, and the whole entry's size
        assert records[1].size == len(store._cache.get("e:1")) > 3000
        assert store.drop([2]) == 1
        assert sorted(r.id for r in store.records()) == [1, 3]
        assert store.sync_records() == (0, 0)  # nothing to repair
    finally:
        store.close()


def test_sync_records_repairs_a_store_written_without_them(tmp_path: Path) -> None:
    """An older release wrote entries alone; a record may also outlive its entry or be
    damaged. The entries stay the truth: records are written, deleted or rewritten to match."""
    store = EntryStore(tmp_path / "entries")
    try:
        for entry_id in (1, 2, 3, 4, 5):
            store.set(entry(entry_id, f"answer {entry_id}"))
        for entry_id in (1, 2):  # as a release without records left them
            store._cache.delete(f"h:{entry_id}")
        store._cache.delete("e:3")  # an entry gone behind the record's back
        store._cache.set("h:4", b"[damaged")
        store._cache.set("h:5", orjson.dumps(["5"] * 16))  # JSON, but not a record
        assert store.sync_records() == (2, 1)
        records = {r.id: r for r in store.records()}  # h:4 and h:5 rewritten from entries
        assert sorted(records) == [1, 2, 4, 5]
        for entry_id, record in records.items():
            whole = store.get(entry_id)
            assert whole is not None and record == whole.record()
        assert store._cache.get("h:3") is None
        assert orjson.loads(store._cache.get("h:4"))[0] == 4
        assert store.sync_records() == (0, 0)
    finally:
        store.close()


def test_sync_records_sees_a_swap_that_keeps_the_counts_equal(tmp_path: Path) -> None:
    """One entry without its record and one record without its entry: as many records as
    entries, and still out of line."""
    store = EntryStore(tmp_path / "entries")
    try:
        for entry_id in (1, 2):
            store.set(entry(entry_id, "a"))
        store._cache.delete("h:1")
        store._cache.set("h:9", encode_record(replace(entry(9, "gone"), size=1).record()))
        assert store.sync_records() == (1, 1)
        assert sorted(r.id for r in store.records()) == [1, 2]
        assert store.sync_records() == (0, 0)
    finally:
        store.close()


def test_audit_finds_what_is_out_of_line_and_repair_mends_it(tmp_path: Path) -> None:
    """Read-only: an unreadable entry, and records missing, left over, damaged or stale."""
    store = EntryStore(tmp_path / "entries")
    try:
        for entry_id in range(1, 8):
            store.set(entry(entry_id, f"answer {entry_id}"))
        clean = store.audit()
        assert clean.records_in_line and clean.unreadable_entries == ()
        store._cache.set("e:1", b'{"format": 2, "id": 1, "exa')  # cut short on disk
        store._cache.delete("h:2")
        store._cache.delete("e:3")
        store._cache.set("h:4", b"[damaged")
        stale = replace(store.get(5).record(), tags=("changed",))  # type: ignore[union-attr]
        store._cache.set("h:5", encode_record(stale))
        before = {key: store._cache.get(key) for key in store._cache.iterkeys()}
        audit = store.audit()
        assert audit.unreadable_entries == (1,)
        assert (audit.missing_records, audit.orphaned_records) == (1, 1)
        assert (audit.damaged_records, audit.stale_records) == ((4,), (5,))
        assert not audit.records_in_line
        assert {key: store._cache.get(key) for key in store._cache.iterkeys()} == before

        store.repair(audit)
        after = store.audit()
        assert after.records_in_line and after.unreadable_entries == ()
        assert store._cache.get("e:1") is None and store._cache.get("h:1") is None
        assert sorted(e.id for e in store.scan()) == [2, 4, 5, 6, 7]
        assert {r.id: r for r in store.records()}[5].tags == ()
    finally:
        store.close()


def test_reading_an_unreadable_entry_names_it(tmp_path: Path) -> None:
    store = EntryStore(tmp_path / "entries")
    try:
        store.set(entry(1, "a"))
        store._cache.set("e:1", b"not json")
        with pytest.raises(UnreadableEntry, match="cache entry 1 is unreadable") as caught:
            store.get(1)
        assert caught.value.entry_id == 1
        assert list(store.scan()) == []
    finally:
        store.close()
