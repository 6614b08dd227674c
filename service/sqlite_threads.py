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

from service.errors import StorageError


class ThreadConnections:
    def __init__(self, path: Path, *, busy_timeout_ms: int, what: str) -> None:
        self._path = path
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
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            ended = [c for thread, c in self._connections if not thread.is_alive()]
            self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
            self._connections.append((threading.current_thread(), conn))
        for stale in ended:  # only its own thread used it, and that thread is gone
            stale.close()
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        return conn
