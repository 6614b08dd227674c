"""One writer per data dir: an advisory lock held by the server and by mutating commands.

The server keeps in-memory maps derived from the store, so a second process changing the
store behind its back would make it serve stale decisions. `promptcache serve` holds the
lock for its lifetime; `index rebuild` and `invalidate` take it briefly and, if the server
holds it, say to use the HTTP admin API instead. The kernel drops the lock when a process
dies, even by SIGKILL, so a crash never leaves the data dir locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from service.errors import Conflict

ADMIN_API_ADVICE = "or use the HTTP admin API (POST /v1/cache/invalidate) while it runs"


def lock_holder(data_dir: Path) -> str | None:
    """Who holds `data_dir`'s lock ("promptcache serve on ... (pid N)"), or None; takes no
    lock that lasts, and creates nothing."""
    path = data_dir / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataDirLock:
    def __init__(self, data_dir: Path, purpose: str, *, advice: str = ADMIN_API_ADVICE) -> None:
        """`advice`: what to do instead while another process holds the lock."""
        self._path = data_dir / "lock"
        self._purpose = purpose
        self._advice = advice
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise Conflict(
                f"{self._path.parent} is in use by {holder}; stop it first, {self._advice}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self._purpose} (pid {os.getpid()})".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
