"""Salvage: copy every entry SQLite can still read out of a damaged entry store.

A damaged page in `entries/cache.db` (a disk error, a bad copy, a file cut short) makes every
read that meets it fail with "database disk image is malformed", and whole-store reads (a
start, `index check`, `index rebuild`) meet it every time. SQLite cannot mend the file in
place, and the entries are only cached answers, so the repair keeps what is readable: each
entry is read alone (one damaged page then costs only the rows on it), decoded as the store
would, and written to a fresh store beside the old one; the damaged store is then moved aside
(`entries.damaged-<ns>`, never deleted) and the fresh one takes its name. Its start-up records
are written with each entry. The index is rebuilt afterwards by the caller.

Chosen over telling the user to move `entries/` aside: that loses every entry, while a page of
damage in a 500 MB store loses a few dozen.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diskcache.core

from service.sqlite_threads import connect_read_only
from service.store import SALVAGE_DONE, Entry, EntryStore, decode_entry, is_damage

_PREFIX, _PREFIX_END = "e:", "e;"  # the store's entry keys (service.store)
_BATCH = 1000


@dataclass(frozen=True)
class Salvaged:
    copied: int  # entries now in the fresh store
    lost: int  # rows SQLite could not read, and entries whose value no longer decodes
    aside: Path  # where the damaged store now is


def salvage_store(
    entries_dir: Path, progress: Callable[[int, int], None] | None = None
) -> Salvaged:
    """Copy every readable entry of the store in `entries_dir` into a fresh store that takes
    its place; the old one is moved aside. The caller holds the data-dir lock."""
    stamp = time.time_ns()
    fresh_dir = entries_dir.with_name(f"{entries_dir.name}.salvage-{stamp}")
    aside = entries_dir.with_name(f"{entries_dir.name}.damaged-{stamp}")
    copied = lost = 0
    fresh = EntryStore(fresh_dir)
    try:
        source = _open(entries_dir / "cache.db")
        if source is not None:
            try:
                rowids = _entry_rowids(source)
                batch: list[Entry] = []
                for done, rowid in enumerate(rowids, 1):
                    is_entry, entry = _read(source, entries_dir, rowid)
                    if entry is not None:
                        batch.append(entry)
                    elif is_entry:
                        lost += 1
                    if len(batch) >= _BATCH:
                        fresh.set_many(batch)
                        copied += len(batch)
                        batch = []
                    if progress is not None:
                        progress(done, len(rowids))
                fresh.set_many(batch)
                copied += len(batch)
            finally:
                source.close()
    finally:
        fresh.close()
    (fresh_dir / SALVAGE_DONE).touch()  # from here on a start finishes the move (finish_salvage)
    entries_dir.rename(aside)
    fresh_dir.rename(entries_dir)
    (entries_dir / SALVAGE_DONE).unlink()
    return Salvaged(copied, lost, aside)


def _open(database: Path) -> sqlite3.Connection | None:
    """None: nothing of the file is readable (not a database at all, or no file)."""
    if not database.exists():
        return None
    try:
        connection = connect_read_only(database)
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return None
        raise
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        if is_damage(exc):
            return None
        raise
    return connection


def _entry_rowids(source: sqlite3.Connection) -> list[int]:
    """The rows of the entries, from diskcache's key index (its pages alone); if those are
    damaged too, every rowid up to the largest, each read alone and kept if it is an entry."""
    try:
        rows = source.execute(
            "SELECT rowid FROM Cache WHERE key >= ? AND key < ?", (_PREFIX, _PREFIX_END)
        )
        return [rowid for (rowid,) in rows]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
    try:
        top = source.execute("SELECT max(rowid) FROM Cache").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return []
    return list(range(1, int(top) + 1))


def _read(source: sqlite3.Connection, entries_dir: Path, rowid: int) -> tuple[bool, Entry | None]:
    """(whether row `rowid` may hold an entry, the entry or None if it cannot be read or
    decoded). A row of something else (a start-up record, a setting) or no row: (False, None).
    """
    try:
        row = source.execute(
            "SELECT key, mode, value, filename FROM Cache WHERE rowid = ?", (rowid,)
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return True, None
    if row is None or not isinstance(row[0], str) or not row[0].startswith(_PREFIX):
        return False, None
    raw = _value(entries_dir, *row[1:])
    if raw is None:
        return True, None
    try:
        return True, decode_entry(raw, with_embedding=True)
    except (ValueError, KeyError, TypeError):  # orjson's decode error is a ValueError
        return True, None


def _value(entries_dir: Path, mode: int, value: object, filename: str | None) -> bytes | None:
    if mode == diskcache.core.MODE_RAW and isinstance(value, (bytes, str)):
        return value.encode() if isinstance(value, str) else value
    if filename and mode in (diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT):
        try:
            return (entries_dir / filename).read_bytes()
        except OSError:
            return None
    return None
