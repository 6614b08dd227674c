"""The values `service.cache` hands out and takes in, and the policy's view of an entry.

Kept apart from the orchestrator so that callers (the API, the CLI, the benchmarks) can name
these without reading `SemanticCache`; `service.cache` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from embeddings.base import Embedder
from service.keys import CacheKeys
from service.policy import Decision, EntryFacts, Query
from service.store import Entry, EntryRecord


@dataclass(frozen=True)
class LookupResult:
    decision: Decision
    entry: Entry | None = None


@dataclass(frozen=True)
class InvalidateFilter:
    """Entries matching every given field are removed; `tenant=None` means all tenants."""

    tenant: str | None = None
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    model: str | None = None
    older_than: float | None = None  # seconds
    similar_to: str | None = None
    min_similarity: float | None = None
    ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class CacheStats:
    """Sizes now, and lookups counted since `counted_since` (this process's start, epoch
    seconds): the ledger holds every answer across restarts."""

    entries: int
    index_entries: int
    bytes: int
    hits_exact: int
    hits_semantic: int
    misses: int
    bypasses: int
    semantic_available: bool
    semantic_unavailable_reason: str | None
    counted_since: float

    @property
    def hit_rate(self) -> float:
        lookups = self.hits_exact + self.hits_semantic + self.misses + self.bypasses
        return (self.hits_exact + self.hits_semantic) / lookups if lookups else 0.0


def query_of(keys: CacheKeys, embedder: Embedder | None = None) -> Query:
    """The policy's view of a request; with `embedder`, whether that model reads its last
    turn whole (without: taken as read whole, for callers past that check)."""
    whole = embedder is None or reads_whole(embedder, keys.semantic_text)
    return Query(
        keys.fingerprint, keys.namespace, keys.semantic_text, keys.max_tokens, read_whole=whole
    )


def reads_whole(embedder: Embedder, text: str | None) -> bool:
    return text is None or embedder.reads_whole(text)


def facts_of(entry: Entry | EntryRecord) -> EntryFacts:
    """The policy's view of a stored entry (the benchmarks use the same view)."""
    return EntryFacts(
        entry_id=entry.id,
        fingerprint=entry.fingerprint,
        namespace=entry.namespace,
        created=entry.created,
        expires=entry.expires,
        text=entry.semantic_text,
        output_tokens=entry.output_tokens,
        max_tokens=entry.max_tokens,
        truncated=entry.truncated,
        exact_only=entry.exact_only,
    )
