"""What invalidations covered, so an answer asked for before one of them is not stored after it.

An invalidation removes the entries stored so far; a miss that was already upstream when it
ran would otherwise store its answer a moment later, and serve it for a week to the users who
invalidated because the facts changed. So every request takes a `Began` token before its
lookup (`SemanticCache.began`), and `SemanticCache.store` asks `InvalidationLog.covering`
whether an invalidation ran since then whose filters match the entry it is about to write:
if one did, the answer is not stored (its own client still gets it).

Tokens taken in this process compare by sequence number, which no clock step can reorder.
A token rebuilt from a persisted time (a Message Batch's `created_at`, which outlives
restarts) compares by wall-clock time, so the log is kept in `invalidations.jsonl` beside
the entries for `RETAIN_SECONDS`, longer than a batch can stay upstream. An invalidation by
ids alone is not logged: it names entries that exist, never one stored later.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from service.cache_values import InvalidateFilter
from service.store import Entry

logger = logging.getLogger(__name__)

# A batch is errored after 48 h without results (service.batches._GIVE_UP_SECONDS); a week
# of invalidations is a few lines even for a busy admin.
RETAIN_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class Began:
    """When a request began, as the invalidation log counts time: `seq` is the number of
    invalidations logged in this process by then (None for a token rebuilt from a stored
    time), `at` the cache clock's time."""

    seq: int | None
    at: float


@dataclass(frozen=True, slots=True)
class Invalidation:
    seq: int
    at: float
    what: InvalidateFilter

    def described(self) -> str:
        given = {k: v for k, v in asdict(self.what).items() if v not in (None, ())}
        return f"invalidation {given} at {self.at:.6f}"


@dataclass(frozen=True, slots=True)
class Subject:
    """What the filters read of an entry, stored or about to be."""

    entry_id: int
    tenant: str
    namespace: str  # "tenant/name", as the store keeps it
    tags: tuple[str, ...]
    model: str
    created: float

    @classmethod
    def of(cls, entry: Entry) -> Subject:
        return cls(entry.id, entry.tenant, entry.namespace, entry.tags, entry.model, entry.created)


def matches(subject: Subject, what: InvalidateFilter, now: float) -> bool:
    """Every filter but `similar_to` (which needs the index and the policy: the cache's)."""
    if what.ids and subject.entry_id not in what.ids:
        return False
    if what.tenant is not None and subject.tenant != what.tenant:
        return False
    if what.namespace is not None and subject.namespace.split("/", 1)[1] != what.namespace:
        return False
    if what.tags and not set(what.tags) & set(subject.tags):
        return False
    if what.model is not None and subject.model != what.model:
        return False
    return not (what.older_than is not None and now - subject.created < what.older_than)


class InvalidationLog:
    """The invalidations of the last `RETAIN_SECONDS`, in order; thread-safe."""

    def __init__(self, path: Path, now: float) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._records: list[Invalidation] = []
        self._load(now)

    def began(self, now: float) -> Began:
        with self._lock:
            return Began(self._records[-1].seq if self._records else 0, now)

    def record(self, what: InvalidateFilter, now: float) -> None:
        """Log an invalidation before it removes anything, so a store racing it either sees
        it or writes an entry the removal then finds."""
        if what.ids:
            return
        with self._lock:
            seq = (self._records[-1].seq if self._records else 0) + 1
            self._records.append(Invalidation(seq, now, what))
            # A long-running service forgets what a restart would: every store reads the
            # records since its request began, which stay few only if old ones go.
            self._records = [r for r in self._records if now - r.at <= RETAIN_SECONDS]
        line = json.dumps({"at": now, "what": asdict(what)}, ensure_ascii=False)
        try:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:  # this process still knows it; only a restart would forget
            logger.error("invalidation not written to %s: %s", self._path, exc)

    def covering(self, began: Began, subject: Subject) -> list[Invalidation]:
        """The invalidations since `began` whose filters (but `similar_to`) match `subject`,
        taken as created when its request began."""
        with self._lock:
            if began.seq is not None:  # seqs only grow: the records since are the tail
                first = bisect.bisect_right(self._records, began.seq, key=lambda r: r.seq)
                since = self._records[first:]
            else:  # a clock may step back: read them all
                since = [r for r in self._records if r.at > began.at]
        aged = replace(subject, created=began.at)
        return [r for r in since if matches(aged, r.what, r.at)]

    def _load(self, now: float) -> None:
        try:
            lines = self._path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("invalidation log %s unreadable: %s", self._path, exc)
            return
        kept: list[str] = []
        for line in lines:
            try:
                raw = json.loads(line)
                at = float(raw["at"])
                what = _filter(raw["what"])
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("skipped a damaged line of %s: %r", self._path, exc)
                continue
            if now - at <= RETAIN_SECONDS:
                self._records.append(Invalidation(len(self._records) + 1, at, what))
                kept.append(line)
        if len(kept) < len(lines):
            self._rewrite(kept)

    def _rewrite(self, lines: list[str]) -> None:
        temp = self._path.with_suffix(".tmp")
        try:
            temp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
            os.replace(temp, self._path)
        except OSError as exc:  # an old line only costs a few microseconds per store
            logger.warning("invalidation log %s not pruned: %s", self._path, exc)


def _filter(raw: dict[str, Any]) -> InvalidateFilter:
    return InvalidateFilter(
        tenant=raw.get("tenant"),
        namespace=raw.get("namespace"),
        tags=tuple(raw.get("tags") or ()),
        model=raw.get("model"),
        older_than=raw.get("older_than"),
        similar_to=raw.get("similar_to"),
        min_similarity=raw.get("min_similarity"),
        ids=tuple(raw.get("ids") or ()),
    )
