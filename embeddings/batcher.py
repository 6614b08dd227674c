"""Micro-batching: concurrent single-text requests share one `embed` call.

A transformer forward pass over 8 short texts costs little more than over one, so when
several lookups arrive together the worker thread takes every text already queued (up to
`max_batch`), embeds them in one call and hands each caller its row. It waits (at most
`max_wait`) only while other callers are known to be on their way, so a lone lookup pays
nothing beyond a thread hand-off, and while the model is busy the next batch forms by itself.

`Coalescer` is that mechanism for any list-at-a-time work. The cache's work per batch is the
embedding, then one index search for the lookups that search the whole index
(`SemanticCache._embed_batch`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class BatchStats:
    batches: int = 0
    texts: int = 0
    sizes: list[int] = field(default_factory=list)  # the last 1,000 batch sizes


@dataclass(frozen=True)
class _Job(Generic[In, Out]):
    item: In
    future: Future[Out]


class Coalescer(Generic[In, Out]):
    """Concurrent single calls of `submit` share one call of `work` on the list of their
    items, made by one worker thread; thread-safe. `work` returns one result per item, in
    order; if it raises, every caller of that batch gets the exception."""

    def __init__(
        self,
        work: Callable[[list[In]], Sequence[Out]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.002,
        name: str = "batcher",
    ) -> None:
        self._work = work
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.SimpleQueue[_Job[In, Out] | None] = queue.SimpleQueue()
        self._stats_lock = threading.Lock()
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._in_flight = 0  # callers inside submit, queued or being worked on
        self.on_batch: Callable[[int], None] | None = None  # e.g. a metrics histogram
        self._thread.start()

    def submit(self, item: In) -> Out:
        """Block until `work` has produced this item's result."""
        if self._closed:
            raise RuntimeError(f"the {self._thread.name} is closed")
        job: _Job[In, Out] = _Job(item, Future())
        with self._stats_lock:
            self._in_flight += 1
        try:
            self._queue.put(job)
            return job.future.result()
        finally:
            with self._stats_lock:
                self._in_flight -= 1

    def _collect(self, first: _Job[In, Out]) -> list[_Job[In, Out]]:
        jobs = [first]
        deadline = time.perf_counter() + self._max_wait
        while len(jobs) < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                with self._stats_lock:
                    others_coming = self._in_flight > len(jobs)
                remaining = deadline - time.perf_counter()
                if not others_coming or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                self._queue.put(None)  # let the loop see the stop signal after this batch
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._collect(first)
            try:
                results = self._work([job.item for job in jobs])
            except Exception as exc:  # hand the failure to every waiting caller
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            with self._stats_lock:
                self.stats.batches += 1
                self.stats.texts += len(jobs)
                self.stats.sizes.append(len(jobs))
                del self.stats.sizes[:-1000]
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)
            if self.on_batch is not None:
                self.on_batch(len(jobs))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=5)
