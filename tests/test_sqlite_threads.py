"""Per-thread SQLite connections: closed when their thread has ended, not kept for good."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from service.errors import StorageError
from service.sqlite_threads import ThreadConnections
from service.store import EntryStore


def open_files(path: Path) -> int:
    """This process's descriptors on the database and its WAL."""
    names = {str(path.resolve()), f"{path.resolve()}-wal"}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in names
        except OSError:  # closed since the listing
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_thread_that_ended_leaves_no_connection_open(tmp_path: Path) -> None:
    """Worker threads end after 10 s idle; every burst of traffic left two descriptors per
    thread open (87 to 487 after eight bursts) until the process ran out of them."""
    path = tmp_path / "ledger.sqlite3"
    connections = ThreadConnections(path, busy_timeout_ms=1000, what=f"ledger {path}")

    def query() -> None:
        with connections.using() as conn:
            conn.execute("SELECT 1").fetchall()

    try:
        query()
        for _ in range(40):
            worker = threading.Thread(target=query)
            worker.start()
            worker.join()
        assert open_files(path) <= 2 * 2  # this thread's, and the last worker's
    finally:
        connections.close()
    assert open_files(path) == 0
    with pytest.raises(StorageError, match="closed"), connections.using():
        pass


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_entry_store_leaves_no_connection_on_threads_that_come_and_go(
    tmp_path: Path,
) -> None:
    """diskcache keeps a connection per thread, and in the service those of ended worker
    threads stayed open: ten bursts of traffic took cache.db from 21 to 166 descriptors."""
    store = EntryStore(tmp_path / "entries")
    database = (tmp_path / "entries" / "cache.db").resolve()

    def read() -> None:
        store.get(123)

    try:
        store.keep_connection_on_this_thread()
        read()
        kept = open_files(database)
        for _ in range(60):
            worker = threading.Thread(target=read)
            worker.start()
            worker.join()
        assert open_files(database) <= kept + 1
    finally:
        store.close()
