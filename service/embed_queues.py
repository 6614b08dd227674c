"""The cache's embedding front: one micro-batcher per model, and the vectors of recent lookups.

An English lookup (MiniLM, ~5 ms) must not queue behind Korean ones (e5, ~27 ms each): two
Korean clients took English semantic hits from 26 to 260 ms median when both models shared
one queue. And a miss's answer is stored under the text its lookup has just embedded:
embedding it again doubled the embedding work of every miss.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from embeddings.base import Embedder, RoutingEmbedder, Vectors
from embeddings.batcher import Coalescer
from service.config import EmbeddingSettings

RECENT_VECTORS = 1024  # lookups whose vector a store may reuse (1.5 MB with two models)


class HasText(Protocol):
    @property
    def text(self) -> str: ...


Job = TypeVar("Job", bound=HasText)
Out = TypeVar("Out")


class EmbedQueues(Generic[Job, Out]):
    """`work` runs each model's batches on that model's own worker thread."""

    def __init__(
        self,
        embedder: Embedder,
        work: Callable[[list[Job]], Sequence[Out]],
        settings: EmbeddingSettings,
    ) -> None:
        routed = isinstance(embedder, RoutingEmbedder)
        self._to_fallback: Callable[[str], bool] | None = (
            embedder.uses_fallback if isinstance(embedder, RoutingEmbedder) else None
        )
        self._queues: dict[bool, Coalescer[Job, Out]] = {
            fallback: Coalescer(
                work,
                max_batch=settings.batch_max_size,
                max_wait=settings.batch_max_wait_ms / 1000,
                name="embed-batcher-fallback" if fallback else "embed-batcher",
            )
            for fallback in ((False, True) if routed else (False,))
        }
        self._recent: OrderedDict[str, Vectors] = OrderedDict()
        self._recent_lock = threading.Lock()

    @property
    def primary(self) -> Coalescer[Job, Out]:
        return self._queues[False]

    @property
    def all(self) -> tuple[Coalescer[Job, Out], ...]:
        return tuple(self._queues.values())

    def submit(self, job: Job) -> Out:
        """`job` on its model's queue; blocks until its batch is done."""
        fallback = self._to_fallback is not None and self._to_fallback(job.text)
        return self._queues[fallback].submit(job)

    def recent(self, text: str) -> Vectors | None:
        with self._recent_lock:
            return self._recent.get(text)

    def remember(self, text: str, vector: Vectors) -> None:
        with self._recent_lock:
            self._recent[text] = vector
            self._recent.move_to_end(text)
            while len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)

    def close(self) -> None:
        for queue in self._queues.values():
            queue.close()
