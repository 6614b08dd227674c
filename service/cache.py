"""The orchestrator: keys -> store -> embed -> search -> policy, and the writes that follow.

`SemanticCache` owns the entry store, the vector index and the in-memory maps derived from
the store (exact key -> id, context fingerprint -> ids, last use). It asks `service.policy`
for every decision and dispatches on the answer; it decides nothing itself.

Reads never write: a hit updates last-use times in memory only (the LRU order), and expired
entries are removed by `purge_expired`, run on a schedule. Writes take one lock, write the
store first (the truth) and the index second, so a crash between the two leaves an index
that is repaired from the store at the next start. The index file is saved on a schedule and
at close, not on every write.

All methods are blocking and thread-safe; the HTTP layer calls them from worker threads,
except `lookup_exact`, which is cheap enough for the event loop (memory and one store read).
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embeddings.base import Embedder, RoutingEmbedder
from embeddings.batcher import Coalescer
from index.base import Neighbour, Vectors
from service.cache_values import (
    CacheStats,
    InvalidateFilter,
    LookupResult,
    facts_of,
    query_of,
    reads_whole,
)
from service.config import Settings
from service.embed_queues import EmbedQueues
from service.errors import Conflict, Superseded
from service.invalidations import Began, Invalidation, InvalidationLog, Subject, matches
from service.keys import CacheKeys
from service.maintenance import collector_paused, index_blocks, open_index, reembed_hint
from service.policy import (
    Bypass,
    Decision,
    EntryFacts,
    FallbackRoute,
    Hit,
    LookupOptions,
    Miss,
    Query,
    decide_exact,
    decide_semantic,
    precheck_semantic,
    similarity_to,
)
from service.relative_time import relative_expiry, relative_start
from service.store import Entry, EntryRecord, EntryStore, UnreadableEntry
from service.text_form import reading_form
from service.verifier import load_verifier

logger = logging.getLogger(__name__)

__all__ = ["CacheStats", "InvalidateFilter", "LookupResult", "SemanticCache", "facts_of"]


@dataclass(frozen=True)
class _EmbedJob:
    text: str
    # > 0: a lookup in a context holding every indexed row wants this many neighbours from
    # the whole index, searched together with the other such lookups of its batch.
    search_k: int = 0


# The text's (1, dim) vector, and its neighbours when they were searched in the batch.
_Embedded = tuple[Vectors, list[Neighbour] | None]

_MAX_ID = 2**53 - 1  # ids stay exact as JSON numbers in every client


def _random_id() -> int:
    return secrets.randbelow(_MAX_ID) + 1


@dataclass(frozen=True, slots=True)
class _Row:
    """The in-memory image of one stored entry (no response, no vector)."""

    facts: EntryFacts
    exact_key: str
    tenant: str
    model: str
    tags: tuple[str, ...]
    size: int
    indexed: bool

    def subject(self) -> Subject:
        f = self.facts
        return Subject(f.entry_id, self.tenant, f.namespace, self.tags, self.model, f.created)


class SemanticCache:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        *,
        clock: Callable[[], float] = time.time,
        id_source: Callable[[], int] | None = None,
    ) -> None:
        """`id_source` gives new entry ids (random by default); the benchmarks count up, so
        that ties between equally similar prompts, which go to the lower id, fall the same
        way in every run."""
        self.settings = settings
        self.embedder = embedder
        self._id_source = id_source or _random_id
        self._clock = clock
        self._cfg = settings.cache
        self._queues: EmbedQueues[_EmbedJob, _Embedded] = EmbedQueues(
            embedder, self._embed_batch, settings.embedding
        )
        self._store = EntryStore(settings.entries_dir)
        self._invalidations = InvalidationLog(settings.data_dir / "invalidations.jsonl", clock())
        self._lock = threading.RLock()
        self._rows: dict[int, _Row] = {}
        self._by_exact: dict[str, int] = {}
        self._by_fingerprint: dict[str, set[int]] = {}
        self._last_used: dict[int, float] = {}
        self._read_whole_by_id: dict[int, bool] = {}  # `_read_whole`'s answers, by entry
        self._bytes = 0
        self._counters: dict[str, Counter[str]] = {}
        self._counters_lock = threading.Lock()
        self._counted_since = clock()
        self._changes_since_save = 0
        self.degraded_lookups = 0
        self.batch_searched_lookups = 0  # lookups whose search was shared with their batch
        self.semantic_block: str | None = None
        self._verifier = load_verifier(
            settings.policy.verifier, min_score=settings.policy.verifier_min_score
        )
        self._script_floors = tuple(sorted(settings.policy.script_min_similarity.items()))
        self._fallback = (
            FallbackRoute(embedder.uses_fallback, settings.cache.fallback_min_similarity)
            if isinstance(embedder, RoutingEmbedder)
            else None
        )
        self._load()

    # -- start-up -------------------------------------------------------------------------

    def _load(self) -> None:
        def announce(missing: int, orphaned: int) -> None:
            logger.warning(
                "bringing the start-up records in line with the entries: %d to write "
                "(a data dir from a release without them gets all of them, once), %d to delete",
                missing,
                orphaned,
            )

        # About 2 s per 100k entries: say what the wait is before it starts.
        logger.info("opening the cache in %s", self.settings.entries_dir)
        self._store.sync_records(announce)
        with collector_paused():
            entries = list(self._store.records())
            model_id = self.embedder.model_id
            stored_models = {e.embedding_model for e in entries if e.embedding_model}
            if stored_models - {model_id}:
                self.semantic_block = reembed_hint(stored_models - {model_id}, model_id)
                logger.warning(self.semantic_block)
            for entry in entries:
                indexed = entry.embedding_model == model_id and self.semantic_block is None
                self._remember(entry, indexed=indexed)
            del entries  # the records are not needed while the index opens (or is rebuilt)
        expected = {i for i, row in self._rows.items() if row.indexed}

        def indexed_entries() -> list[Entry]:
            return [e for e in self._store.scan(with_embedding=True) if e.id in expected]

        opened = open_index(
            self.settings,
            index_blocks(self.embedder),
            indexed_entries,
            expected,
            model_changed=self.semantic_block is not None,
        )
        self._index = opened.index
        if opened.how in ("rebuilt", "repaired"):
            logger.warning("index %s from the store: %s", opened.how, opened.detail)
            self._changes_since_save = max(1, len(expected))
            self.save_index()
        logger.info(
            "cache open: %d entries, %d indexed (%s), model %s",
            len(self._rows),
            len(self._index),
            opened.how,
            model_id,
        )

    def _remember(self, entry: EntryRecord, *, indexed: bool) -> None:
        facts = facts_of(entry)
        indexed = indexed and entry.semantic_text is not None and not entry.exact_only
        self._rows[entry.id] = _Row(
            facts, entry.exact_key, entry.tenant, entry.model, entry.tags, entry.size, indexed
        )
        self._by_exact[entry.exact_key] = entry.id
        if indexed:
            self._by_fingerprint.setdefault(entry.fingerprint, set()).add(entry.id)
        self._last_used[entry.id] = entry.created
        self._bytes += entry.size

    def _forget(self, entry_ids: Sequence[int]) -> None:
        for entry_id in entry_ids:
            row = self._rows.pop(entry_id, None)
            if row is None:
                continue
            if self._by_exact.get(row.exact_key) == entry_id:
                del self._by_exact[row.exact_key]
            ids = self._by_fingerprint.get(row.facts.fingerprint)
            if ids is not None:
                ids.discard(entry_id)
                if not ids:
                    del self._by_fingerprint[row.facts.fingerprint]
            self._last_used.pop(entry_id, None)
            self._read_whole_by_id.pop(entry_id, None)
            self._bytes -= row.size

    # -- reads ----------------------------------------------------------------------------

    def options(
        self,
        *,
        min_similarity: float | None = None,
        max_age: float | None = None,
        semantic: bool = True,
        semantic_off_reason: str = "",
    ) -> LookupOptions:
        """Lookup options from the settings, overridden per request where given."""
        policy = self.settings.policy
        return LookupOptions(
            min_similarity=self._cfg.min_similarity if min_similarity is None else min_similarity,
            max_age=max_age,
            guards=policy.guards,
            covered_scripts=self.embedder.covered_scripts,
            semantic=semantic,
            semantic_off_reason=semantic_off_reason,
            verifier=self._verifier,
            script_min_similarity=self._script_floors,
            fallback=self._fallback,
        )

    def _counted(self, tenant: str, result: LookupResult) -> LookupResult:
        decision = result.decision
        kind = "miss"
        if isinstance(decision, Hit):
            kind = f"hit-{decision.kind}"
        elif isinstance(decision, Bypass):
            kind = "bypass"
        # Its own lock, not the writers': the event loop counts exact hits (`lookup_exact`)
        # and must not wait behind an index save or an eviction.
        with self._counters_lock:
            self._counters.setdefault(tenant, Counter())[kind] += 1
        # Debug, not info: the exact-hit path runs on the event loop and writes nothing.
        logger.debug("lookup %s for %s: %s", kind, tenant, getattr(decision, "reason", ""))
        return result

    def lookup(self, keys: CacheKeys, options: LookupOptions) -> LookupResult:
        """Exact first (no embedding), then by meaning within the same context."""
        result = self.lookup_exact(keys, options)
        return result if result is not None else self.lookup_rest(keys, options)

    def lookup_rest(self, keys: CacheKeys, options: LookupOptions) -> LookupResult:
        """`lookup` after `lookup_exact` answered None: the caller has made the exact check."""
        return self._counted(keys.tenant, self._lookup(keys, options))

    def lookup_exact(self, keys: CacheKeys, options: LookupOptions) -> LookupResult | None:
        """The exact hit alone, counted as `lookup` counts it; None: ask `lookup_rest`.

        Memory and one store read, no embedding and no writers' lock, so the HTTP layer
        calls it on the event loop and saves a thread hop on the cheapest hit. An entry
        missing from the store is left to `lookup_rest`, which forgets it under the lock.
        """
        now = self._clock()
        decision = self._exact_decision(keys, options, now)
        if not isinstance(decision, Hit):
            return None
        try:
            entry = self._store.get(decision.entry_id)
        except UnreadableEntry:
            return None  # `lookup_rest` drops it under the lock
        if entry is None:
            return None
        self._last_used[decision.entry_id] = now
        return self._counted(keys.tenant, LookupResult(decision, entry))

    def _complete_entry(self, exact_key: str, now: float) -> Entry | None:
        with self._lock:
            entry_id = self._by_exact.get(exact_key)
            row = self._rows.get(entry_id) if entry_id is not None else None
            if row is None or row.facts.truncated or row.facts.expires <= now:
                return None
        return self._read(row.facts.entry_id, served=False)

    def _read_whole(self, facts: EntryFacts) -> EntryFacts:
        """Serves exact hits only when the model read only part of its prompt. Entries
        stored since that rule are not indexed at all; older ones are caught here, each
        counted once (a candidate's tokens are not counted again on every lookup)."""
        if facts.exact_only:
            return facts
        whole = self._read_whole_by_id.get(facts.entry_id)
        if whole is None:
            whole = reads_whole(self.embedder, facts.text)
            self._read_whole_by_id[facts.entry_id] = whole
        return facts if whole else replace(facts, exact_only=True)

    def _exact_decision(
        self, keys: CacheKeys, options: LookupOptions, now: float
    ) -> Decision | None:
        """The policy's word on the entry under this exact key; None: there is none."""
        entry_id = self._by_exact.get(keys.exact_key)
        row = self._rows.get(entry_id) if entry_id is not None else None
        if row is None:
            return None
        return decide_exact(row.facts, query_of(keys), options, now)

    def _lookup(self, keys: CacheKeys, options: LookupOptions) -> LookupResult:
        """Everything after `lookup_exact` found no servable exact hit."""
        now = self._clock()
        query = query_of(keys, self.embedder)
        exact_reason = ""
        decision = self._exact_decision(keys, options, now)
        if isinstance(decision, Hit):
            # `lookup_exact` found the entry gone from the store (or it was replaced since).
            entry = self._read(decision.entry_id)
            if entry is not None:
                return LookupResult(decision, entry)
        elif isinstance(decision, Miss):
            exact_reason = f"{decision.reason}; "
        bypass = precheck_semantic(query, options)
        if bypass is not None:
            return LookupResult(bypass)
        if self.semantic_block is not None:
            return LookupResult(Bypass(self.semantic_block, "model-changed"))
        with self._lock:
            context = self._by_fingerprint.get(keys.fingerprint)
            # One context holding every indexed row (the usual deployment) needs no id filter;
            # copying a million ids per lookup would cost more than the search.
            allowed = None if context and len(self._by_fingerprint) == 1 else tuple(context or ())
        if allowed is not None and not allowed:
            return LookupResult(Miss(f"{exact_reason}no cached prompt in this context"))
        try:
            job = _EmbedJob(keys.semantic_text or "", self._cfg.top_k if allowed is None else 0)
            vector, neighbours = self._queues.submit(job)
            self._queues.remember(job.text, vector)
            if neighbours is None:
                neighbours = self._index.search(vector, self._cfg.top_k, allowed_ids=allowed)[0]
        except Exception as exc:  # degrade to a miss, never a 500 (STYLE: errors)
            self.degraded_lookups += 1
            logger.exception("semantic lookup degraded to a miss")
            return LookupResult(Miss(f"semantic lookup failed: {exc}"))
        rows = [(self._rows.get(n.id), n.similarity) for n in neighbours]
        # An unfiltered search may meet a row of a context created since the check above.
        candidates = [
            (self._read_whole(row.facts), similarity)
            for row, similarity in rows
            if row is not None and row.facts.fingerprint == keys.fingerprint
        ]
        decision = decide_semantic(query, candidates, self._dated(options, query, now), now)
        if isinstance(decision, Hit):
            entry = self._read(decision.entry_id)
            if entry is None:
                return LookupResult(Miss("matched entry vanished from the store"))
            return LookupResult(decision, entry)
        if isinstance(decision, Miss) and exact_reason:
            decision = Miss(exact_reason + decision.reason, decision.best_similarity)
        return LookupResult(decision)

    def _dated(self, options: LookupOptions, query: Query, now: float) -> LookupOptions:
        """A prompt that names a relative date is served only answers from that period."""
        if not (self._cfg.expire_relative_dates and query.text):
            return options
        since = relative_start(query.text, now, self.settings.timezone)
        return options if since is None else replace(options, not_before=since)

    def _read(self, entry_id: int, *, served: bool = True) -> Entry | None:
        """The stored entry; `served` counts the read as a use for LRU eviction."""
        entry = self._fetch(entry_id)
        if entry is None:
            # Removed behind our back (another process) or unreadable: forget it, serve nothing.
            with self._lock:
                self._forget([entry_id])
                self._index.remove(np.array([entry_id], dtype=np.int64))
                self._changes_since_save += 1
            return None
        if served:
            self._last_used[entry_id] = self._clock()
        return entry

    def _fetch(self, entry_id: int) -> Entry | None:
        """The stored entry. One damaged on disk reads as gone and is deleted: it can never be
        served, and a lookup must not fail on it."""
        try:
            return self._store.get(entry_id)
        except UnreadableEntry as exc:
            logger.warning("%s; deleted it, and lookups go on without it", exc)
            self._store.drop([entry_id])
            return None

    def get(self, entry_id: int, tenant: str | None) -> Entry | None:
        """One entry, if it exists, is fresh, and belongs to `tenant` (None: any tenant)."""
        row = self._rows.get(entry_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        if row.facts.expires <= self._clock():
            return None
        return self._read(entry_id, served=False)

    # -- writes ---------------------------------------------------------------------------

    def store(
        self,
        keys: CacheKeys,
        response: Any,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        usage: dict[str, Any] | None = None,
        cost_micros: int | None = None,
        output_tokens: int | None = None,
        truncated: bool = False,
        exact_only: bool = False,
        began: Began | None = None,
    ) -> Entry:
        """Store an answer for `keys`; replaces an entry with the same exact key, except that
        an answer cut off by `max_tokens` never replaces a fresh complete one (which serves
        every request with room for it; that one is returned instead).

        Without a `ttl` from the caller, an answer to a prompt that names a relative date
        expires at the end of that period (`service.relative_time`). With `began` (the
        request's token from `began()`), an invalidation since then that covers the entry
        raises `Superseded` instead of storing it."""
        now = self._clock()
        if truncated:
            kept = self._complete_entry(keys.exact_key, now)
            if kept is not None:
                return kept
        expires = now + (self._cfg.default_ttl_seconds if ttl is None else ttl)
        if ttl is None and self._cfg.expire_relative_dates and keys.semantic_text:
            period_end = relative_expiry(keys.semantic_text, now, self.settings.timezone)
            if period_end is not None:
                expires = min(expires, period_end)
        embedding = None
        # A prompt longer than the model reads would match prompts that differ past its window.
        exact_only = exact_only or not reads_whole(self.embedder, keys.semantic_text)
        if keys.semantic_text and not exact_only:
            embedding = self._embed_one(keys.semantic_text, reuse=True)[0]
        with self._lock:
            entry_id = self._new_id()
            entry = Entry(
                id=entry_id,
                exact_key=keys.exact_key,
                fingerprint=keys.fingerprint,
                namespace=keys.namespace,
                tenant=keys.tenant,
                model=keys.model,
                semantic_text=keys.semantic_text,
                response=response,
                created=now,
                expires=expires,
                tags=tuple(dict.fromkeys(tags)),
                usage=usage or {},
                cost_micros=cost_micros,
                max_tokens=keys.max_tokens,
                output_tokens=output_tokens,
                truncated=truncated,
                exact_only=exact_only,
                embedding=embedding,
                embedding_model=self.embedder.model_id if embedding is not None else None,
            )
            if began is not None:  # under the lock: `invalidate` logs before it scans
                self._refuse_if_covered(began, entry)
            previous = self._by_exact.get(keys.exact_key)
            entry = self._store.set(entry)
            if previous is not None:
                self._drop_locked([previous])
            indexed = embedding is not None and self.semantic_block is None
            self._remember(entry.record(), indexed=indexed)
            if indexed and embedding is not None:
                self._index.add(np.array([entry_id], dtype=np.int64), embedding.reshape(1, -1))
            self._changes_since_save += 1
            self._evict_if_needed()
        return replace(entry, embedding=None)

    def _new_id(self) -> int:
        while True:
            candidate = self._id_source()
            if not 0 < candidate <= _MAX_ID:
                raise ValueError(f"entry id {candidate} outside 1..{_MAX_ID}")
            if candidate not in self._rows:
                return candidate

    def _drop_locked(self, entry_ids: Sequence[int]) -> int:
        ids = [i for i in entry_ids if i in self._rows]
        if not ids:
            return 0
        # Store first: if we crash now, the index holds ids the store lacks, which the next
        # start removes; the reverse order could serve an entry the caller asked to drop.
        self._store.drop(ids)
        self._index.remove(np.array(ids, dtype=np.int64))
        self._forget(ids)
        self._changes_since_save += len(ids)
        return len(ids)

    def drop(self, entry_ids: Sequence[int]) -> int:
        with self._lock:
            return self._drop_locked(entry_ids)

    def _evict_if_needed(self) -> None:
        over_entries = len(self._rows) - self._cfg.max_entries
        over_bytes = self._bytes - self._cfg.max_bytes
        if over_entries <= 0 and over_bytes <= 0:
            return
        # Evict a little below the limit so that a full cache does not evict on every write.
        target_entries = int(self._cfg.max_entries * 0.98)
        target_bytes = int(self._cfg.max_bytes * 0.98)
        count = max(len(self._rows) - target_entries, 0)
        if over_bytes > 0 and self._rows:
            mean = self._bytes / len(self._rows)
            count = max(count, int((self._bytes - target_bytes) / max(mean, 1)) + 1)
        count = max(count, 1)
        victims = heapq.nsmallest(count, self._last_used.items(), key=lambda item: item[1])
        removed = self._drop_locked([entry_id for entry_id, _ in victims])
        logger.info("evicted %d least recently used entries", removed)

    def purge_expired(self) -> int:
        now = self._clock()
        with self._lock:
            expired = [i for i, row in self._rows.items() if row.facts.expires <= now]
            return self._drop_locked(expired)

    def began(self) -> Began:
        """A request's token, taken before its lookup, for `store(began=...)`."""
        return self._invalidations.began(self._clock())

    def _refuse_if_covered(self, began: Began, entry: Entry) -> None:
        for record in self._invalidations.covering(began, Subject.of(entry)):
            if record.what.similar_to is None or self._similar_entry(record, entry):
                logger.info("answer not stored: its request began before %s", record.described())
                raise Superseded(f"not stored: its request began before {record.described()}")

    def _similar_entry(self, record: Invalidation, entry: Entry) -> bool:
        """`_similar`'s decision for one entry not in the index yet."""
        text = reading_form(record.what.similar_to or "").strip()
        if entry.semantic_text == text:
            return True
        if entry.embedding is None or self.semantic_block is not None:
            return False
        options = self.options(min_similarity=record.what.min_similarity)
        probe = Query("", "", text, None, read_whole=reads_whole(self.embedder, text))
        if precheck_semantic(probe, options) is not None:
            return False
        similarity = float(self._embed_one(text, reuse=True)[0] @ entry.embedding)
        query = Query(entry.fingerprint, entry.namespace, text, None)
        candidate = [(facts_of(entry), similarity)]
        return isinstance(decide_semantic(query, candidate, options, entry.created), Hit)

    def invalidate(self, what: InvalidateFilter) -> int:
        now = self._clock()
        with self._lock:
            self._invalidations.record(what, now)
            ids = [i for i, row in self._rows.items() if matches(row.subject(), what, now)]
        if what.similar_to is not None:
            ids = self._similar(ids, what)
        with self._lock:
            removed = self._drop_locked(ids)
        logger.info("invalidated %d entries (%s)", removed, what)
        return removed

    def _similar(self, ids: Sequence[int], what: InvalidateFilter) -> list[int]:
        """Entries a lookup of `similar_to` would be served, in whatever context each lives:
        the lookup's own decision (threshold for the text's script, final marks, guards),
        plus every entry whose prompt is that very text (an exact hit in its context)."""
        if self.semantic_block is not None:
            raise Conflict(self.semantic_block)
        text = reading_form(what.similar_to or "").strip()
        options = self.options(min_similarity=what.min_similarity)
        matched = [i for i in ids if self._rows[i].facts.text == text]
        identical = set(matched)
        allowed = [i for i in ids if self._rows[i].indexed and i not in identical]
        probe = Query("", "", text, None, read_whole=reads_whole(self.embedder, text))
        if not allowed or precheck_semantic(probe, options) is not None:
            return matched
        vector = self._embed_one(text)
        neighbours = self._index.search(vector, len(allowed), allowed_ids=allowed)[0]
        threshold = options.threshold_with_source(text)[0]
        now = self._clock()
        for n in neighbours:
            row = self._rows.get(n.id)
            if row is None or similarity_to(row.facts.text, text, n.similarity) < threshold:
                continue  # the decision's first rule, cheap enough to ask of every entry
            query = Query(row.facts.fingerprint, row.facts.namespace, text, None)
            candidate = [(self._read_whole(row.facts), n.similarity)]
            if isinstance(decide_semantic(query, candidate, options, now), Hit):
                matched.append(n.id)
        return matched

    # -- upkeep ---------------------------------------------------------------------------

    def save_index(self, *, force: bool = False) -> bool:
        with self._lock:
            if not force and self._changes_since_save == 0:
                return False
            if self.semantic_block is not None:
                return False  # keep the old file: the store is re-embedded by the CLI
            self._index.save(self.settings.index_dir, self.embedder.model_id)
            self._changes_since_save = 0
            return True

    def maintain(self) -> None:
        """Run on a schedule: purge expired entries, save the index when it changed enough."""
        self.purge_expired()
        if self._changes_since_save >= self.settings.index.save_every_changes:
            self.save_index()

    def stats(self, tenant: str | None = None) -> CacheStats:
        with self._lock:
            with self._counters_lock:
                if tenant is None:
                    counts: Counter[str] = sum(self._counters.values(), Counter())
                else:
                    counts = Counter(self._counters.get(tenant, Counter()))
            if tenant is None:
                entries = len(self._rows)
                size = self._bytes
                indexed = len(self._index)
            else:
                # The tenant's own rows: the whole index's size would let it watch others grow.
                rows = [r for r in self._rows.values() if r.tenant == tenant]
                entries, size = len(rows), sum(r.size for r in rows)
                indexed = sum(r.indexed for r in rows)
            return CacheStats(
                entries=entries,
                index_entries=indexed,
                bytes=size,
                hits_exact=counts["hit-exact"],
                hits_semantic=counts["hit-semantic"],
                misses=counts["miss"],
                bypasses=counts["bypass"],
                semantic_available=self.semantic_block is None,
                semantic_unavailable_reason=self.semantic_block,
                counted_since=self._counted_since,
            )

    @property
    def batcher(self) -> Coalescer[_EmbedJob, _Embedded]:
        """The primary model's micro-batcher."""
        return self._queues.primary

    @property
    def batchers(self) -> tuple[Coalescer[_EmbedJob, _Embedded], ...]:
        return self._queues.all

    def _embed_one(self, text: str, *, reuse: bool = False) -> Vectors:
        recent = self._queues.recent(text) if reuse else None
        return recent if recent is not None else self._queues.submit(_EmbedJob(text))[0]

    def _embed_batch(self, jobs: list[_EmbedJob]) -> list[_Embedded]:
        """The micro-batcher's work: one embedding call for every text of the batch, then one
        search for every lookup in it that searches the whole index. A single lookup searches
        in its own thread instead, beside the next embedding."""
        vectors = self.embedder.embed([job.text for job in jobs])
        rows = [row for row, job in enumerate(jobs) if job.search_k]
        found: dict[int, list[Neighbour]] = {}
        if len(rows) > 1:
            try:
                k = max(jobs[row].search_k for row in rows)
                found = dict(zip(rows, self._index.search(vectors[rows], k), strict=True))
                self.batch_searched_lookups += len(rows)  # only the batcher thread writes it
            except Exception:  # each lookup searches alone and meets the error there
                logger.exception("batched search failed; the lookups search one by one")
        return [
            (np.ascontiguousarray(vectors[row : row + 1]), found.get(row))
            for row in range(len(jobs))
        ]

    @property
    def entry_store(self) -> EntryStore:
        return self._store

    def close(self) -> None:
        try:
            self.save_index()
        finally:
            self._queues.close()
            self._store.close()
