"""Which misses of one Message Batch can share an upstream answer.

Identical requests (same exact key and `max_tokens`) follow the first of them. Among the
distinct ones, a request follows an earlier one when the cache policy would have served the
earlier one's answer to it as a semantic hit: same context fingerprint and `max_tokens`, and
`decide_semantic` on the similarity, guards and floors, exactly as for a cached entry. The
comparison is greedy in caller order against the leaders so far (top_k best), so a text never
follows a request that itself follows another. The result says who follows whom; the batch
service turns that into row states.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.base import Embedder, Vectors
from service.batch_store import DupKind, RequestRow
from service.cache_values import query_of
from service.policy import EntryFacts, Hit, decide_semantic, precheck_semantic
from service.proxy_types import Prepared

logger = logging.getLogger(__name__)

_BLOCK = 256  # rows per similarity block: bounds the (block x leaders) matrices

Miss = tuple[RequestRow, Prepared]


@dataclass(frozen=True)
class Follow:
    """A request answered with its leader's (a caller position) answer."""

    leader: int
    kind: DupKind
    similarity: float


@dataclass(frozen=True)
class DedupSettings:
    """`semantic` is off when the cache serves no semantic hits (e.g. the index is being
    rebuilt): then only identical requests merge."""

    semantic: bool
    group_max: int  # a context with more distinct misses merges identical ones only
    top_k: int


def plan_follows(
    misses: Sequence[Miss],
    embedder: Embedder,
    settings: DedupSettings,
    now: float,
) -> dict[int, Follow]:
    """Caller position -> the leader it follows, for every miss that need not go upstream."""
    follows: dict[int, Follow] = {}
    first: dict[tuple[str, int | None], int] = {}
    leaders: list[Miss] = []
    for row, item in misses:
        key = (item.keys.exact_key, item.keys.max_tokens)
        if key in first:
            follows[row.position] = Follow(first[key], "exact", 1.0)
        else:
            first[key] = row.position
            leaders.append((row, item))
    semantic = _semantic_follows(leaders, embedder, settings, now) if settings.semantic else {}
    for position, exact in list(follows.items()):
        twin = semantic.get(exact.leader)
        if twin is not None:  # its identical twin follows another text: so does it
            follows[position] = twin
    follows.update(semantic)
    return follows


def _semantic_follows(
    leaders: list[Miss],
    embedder: Embedder,
    settings: DedupSettings,
    now: float,
) -> dict[int, Follow]:
    groups: dict[tuple[str, int | None], list[Miss]] = {}
    for row, item in leaders:
        query = query_of(item.keys, embedder)
        if item.controls.no_cache or item.request.get("tools"):
            continue  # no-cache wants fresh answers; tool answers serve exact hits only
        if precheck_semantic(query, item.options) is None:
            groups.setdefault((query.fingerprint, query.max_tokens), []).append((row, item))
    chosen = [g for g in groups.values() if 1 < len(g) <= settings.group_max]
    if any(len(g) > settings.group_max for g in groups.values()):
        logger.warning(
            "a batch context has over %d requests: identical ones merged only",
            settings.group_max,
        )
    if not chosen:
        return {}
    vectors = embedder.embed(
        [item.keys.semantic_text or "" for group in chosen for _, item in group]
    )
    follows: dict[int, Follow] = {}
    offset = 0
    for group in chosen:
        block = vectors[offset : offset + len(group)]
        offset += len(group)
        follows.update(_greedy(group, block, settings.top_k, now))
    return follows


def _greedy(group: list[Miss], vectors: Vectors, top_k: int, now: float) -> dict[int, Follow]:
    lead_rows: list[int] = []  # indexes into `group` of the leaders so far
    lead_vectors = np.empty_like(vectors)
    follows: dict[int, Follow] = {}
    for start in range(0, len(group), _BLOCK):
        rows = vectors[start : start + _BLOCK]
        known = len(lead_rows)
        earlier = rows @ lead_vectors[:known].T  # (block, leaders before this block)
        inside = rows @ rows.T
        added: list[int] = []  # leaders found inside this block, as group indexes
        for r in range(len(rows)):
            i = start + r
            sims = np.concatenate([earlier[r], inside[r, [a - start for a in added]]])
            ids = lead_rows + added
            row, item = group[i]
            decision = None
            if ids:
                best = np.argsort(-sims)[:top_k]
                candidates = [(_facts(group[ids[b]], now), float(sims[b])) for b in best]
                # Only texts read whole were grouped: no need to ask the embedder again.
                decision = decide_semantic(query_of(item.keys), candidates, item.options, now)
            if isinstance(decision, Hit):
                follows[row.position] = Follow(decision.entry_id, "semantic", decision.similarity)
            else:
                added.append(i)
        for a in added:
            lead_vectors[len(lead_rows)] = vectors[a]
            lead_rows.append(a)
    return follows


def _facts(leader: Miss, now: float) -> EntryFacts:
    """A leader seen as a cache entry: fresh, answer not known yet (same max_tokens)."""
    row, item = leader
    keys = item.keys
    return EntryFacts(
        entry_id=row.position,
        fingerprint=keys.fingerprint,
        namespace=keys.namespace,
        created=now,
        expires=math.inf,
        text=keys.semantic_text,
        max_tokens=keys.max_tokens,
    )
