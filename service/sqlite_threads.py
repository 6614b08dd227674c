"""One SQLite connection per thread, closed without pulling one out from under a statement.

The ledger is written from request threads, the alert worker and the CLI. sqlite3 objects must
not be shared across threads, so each thread gets its own connection (WAL, explicit
transactions, a busy timeout). Closing is the delicate part: closing a connection while
another thread runs a statement on it crashed the process, so `close` waits for statements in
flight, and later use raises `StorageError`. Threads come and go (the server's worker threads
end after 10 s idle): a thread's connection is closed once the thread has ended, when the
next connection is opened, or each burst of traffic would leave two file descriptors per
worker thread open until the process ran out of them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.errors import StorageError


class ThreadConnections:
    def __init__(
        self, path: Path, *, busy_timeout_ms: int, what: str, read_only: bool = False
    ) -> None:
        """`read_only`: connections that write nothing, for readers of a copy or a read-only
        mount (`connect_read_only`)."""
        self._path = path
        self._read_only = read_only
        self._busy_timeout_ms = busy_timeout_ms
        self._what = what  # names the file in errors: "ledger /x/ledger.sqlite3"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_use = 0
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False

    def close(self) -> None:
        """Close every thread's connection once running statements finish (bounded by the
        busy timeout); the connections cannot be used afterwards."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._in_use == 0, self._busy_timeout_ms / 1000 + 1)
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()

    @contextmanager
    def using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, counted as in use so that `close` waits for it."""
        with self._idle:
            if self._closed:
                raise StorageError(f"{self._what} is closed")
            self._in_use += 1
        try:
            yield self._connection()
        finally:
            with self._idle:
                self._in_use -= 1
                self._idle.notify_all()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise StorageError(f"{self._what} is closed")
            # isolation_level=None: we issue BEGIN ourselves, so every transaction is explicit.
            # check_same_thread=False only so close() may close it from another thread.
            options: dict[str, Any] = {
                "timeout": self._busy_timeout_ms / 1000,
                "isolation_level": None,
                "check_same_thread": False,
            }
            if self._read_only:
                conn = connect_read_only(self._path, **options)
            else:
                conn = sqlite3.connect(self._path, **options)
            ended = [c for thread, c in self._connections if not thread.is_alive()]
            self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
            self._connections.append((threading.current_thread(), conn))
        for stale in ended:  # only its own thread used it, and that thread is gone
            stale.close()
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if not self._read_only:  # both would write: WAL is set on the file itself
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        return conn


def connect_read_only(database: Path, **options: Any) -> sqlite3.Connection:
    """A connection that can write nothing, and works where nothing can be written.

    `mode=ro` reads a WAL database whose -wal and -shm files exist even when they and their
    folder are read-only (a backup copy, a read-only mount); without them SQLite would have to
    create the -shm file, and says "unable to open database file". Then no -wal file means
    every committed row is in the database file itself, so `immutable=1` (no locks, no -shm)
    reads all of it. `options` go to `sqlite3.connect`.
    """
    # absolute(): a relative data dir (the default `.promptcache`) has no file URI.
    uri = database.absolute().as_uri()
    connection: sqlite3.Connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
    try:
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return connection
    except sqlite3.OperationalError:
        connection.close()
        wal = database.with_name(database.name + "-wal")
        if not database.exists() or (wal.exists() and wal.stat().st_size > 0):
            raise
    except BaseException:
        connection.close()
        raise
    immutable: sqlite3.Connection = sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, **options
    )
    return immutable
