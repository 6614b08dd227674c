"""The cache-native HTTP API (DESIGN §6): lookup, store, read, delete, invalidate, stats.

Handlers validate, authenticate, build `CacheKeys` and call `SemanticCache` in a worker
thread (embedding, FAISS and diskcache all block), except an exact hit, which `lookup` serves
inline (one in-memory check and one small store read). They map policy results to the wire:
`Bypass` with code `model-changed` becomes a 409 that names the fix; other bypasses are
misses with their reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.api.auth import Principal, require_admin
from service.api.errors import JSONBytes
from service.api.schemas import InvalidateBody, LookupBody, PromptFields, StoreBody, parse_duration
from service.api.state import AppState
from service.api.strict_json import StrictJSONRoute
from service.cache import InvalidateFilter
from service.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from service.keys import CacheKeys, prompt_keys
from service.policy import Bypass, Hit
from service.store import SALVAGE_FIX, Entry

router = APIRouter(route_class=StrictJSONRoute)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "response": entry.response,
        "created": iso(entry.created),
        "expires": iso(entry.expires),
        "namespace": entry.namespace.split("/", 1)[1],
        "model": entry.model,
        "prompt": entry.semantic_text,
        "tags": list(entry.tags),
        "usage": entry.usage,
    }


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.promptcache
    return state


def _keys_for(body: PromptFields, model: str, principal: Principal, state: AppState) -> CacheKeys:
    keys = prompt_keys(
        body.as_messages(),
        model=model,
        tenant=principal.tenant,
        system=body.system,
        namespace=body.namespace,
    )
    size = len(keys.semantic_text or "") + len(str(body.system or ""))
    if size > state.settings.cache.max_prompt_chars:
        raise PayloadTooLarge(
            f"prompt has {size:,} characters; the limit is "
            f"{state.settings.cache.max_prompt_chars:,} (cache.max_prompt_chars)"
        )
    return keys


@router.post("/v1/cache/lookup")
async def lookup(body: LookupBody, request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    keys = _keys_for(body, body.model or state.settings.cache.default_model, principal, state)
    options = state.lookup_options(min_similarity=body.min_similarity, max_age=body.max_age)
    # An exact hit is a dict lookup and one store read: served inline, it skips the thread
    # hop that would cost more than the lookup itself. Everything else may embed: a thread.
    result = state.cache.lookup_exact(keys, options)
    if result is None:
        result = await run_in_threadpool(state.cache.lookup_rest, keys, options)
    decision = result.decision
    if isinstance(decision, Bypass) and decision.code == "model-changed":
        raise Conflict(decision.reason)
    if isinstance(decision, Hit) and result.entry is not None:
        return JSONBytes(
            {
                "status": f"hit-{decision.kind}",
                "similarity": decision.similarity,
                "reason": decision.reason,
                "entry": entry_json(result.entry),
            }
        )
    similarity = getattr(decision, "best_similarity", None)
    return JSONBytes(
        {"status": "miss", "similarity": similarity, "reason": decision.reason, "entry": None}
    )


@router.post("/v1/cache/entries", status_code=201)
async def store(body: StoreBody, request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    keys = _keys_for(body, body.model, principal, state)
    ttl = body.ttl
    longest = state.settings.cache.max_ttl_seconds
    if ttl is not None and ttl > longest:  # as x-cache-ttl: refused, never cut silently
        raise Unprocessable(f"ttl: at most {longest} seconds (cache.max_ttl_seconds)")
    response = body.response
    exact_only = isinstance(response, dict) and any(
        isinstance(b, dict) and b.get("type") == "tool_use" for b in response.get("content", [])
    )
    truncated = isinstance(response, dict) and response.get("stop_reason") == "max_tokens"
    usage = dict(
        body.usage or (response.get("usage") if isinstance(response, dict) else None) or {}
    )
    output_tokens = usage.get("output_tokens")
    entry = await run_in_threadpool(
        lambda: state.cache.store(
            keys,
            response,
            ttl=ttl,
            tags=body.tags,
            usage=usage,
            output_tokens=output_tokens if isinstance(output_tokens, int) else None,
            truncated=truncated,
            exact_only=exact_only,
        )
    )
    return JSONBytes(
        {"id": entry.id, "created": iso(entry.created), "expires": iso(entry.expires)},
        status_code=201,
    )


@router.get("/v1/cache/entries/{entry_id}")
async def read_entry(entry_id: int, request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    tenant = None if principal.is_admin else principal.tenant
    entry = await run_in_threadpool(state.cache.get, entry_id, tenant)
    if entry is None:
        raise NotFound(f"no cache entry {entry_id}")
    return JSONBytes(entry_json(entry))


@router.delete("/v1/cache/entries/{entry_id}")
async def delete_entry(entry_id: int, request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    tenant = None if principal.is_admin else principal.tenant
    what = InvalidateFilter(tenant=tenant, ids=(entry_id,))
    removed = await run_in_threadpool(state.cache.invalidate, what)
    if not removed:
        raise NotFound(f"no cache entry {entry_id}")
    return JSONBytes({"id": entry_id, "deleted": True})


@router.post("/v1/cache/invalidate")
async def invalidate(body: InvalidateBody, request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    require_admin(principal)
    tenant: str | None = principal.tenant if body.tenant is None else body.tenant
    if tenant == "*":
        tenant = None
    limit = state.settings.cache.max_prompt_chars
    if body.similar_to is not None and len(body.similar_to) > limit:  # as a prompt's limit
        raise PayloadTooLarge(
            f"similar_to has {len(body.similar_to):,} characters; the limit is {limit:,} "
            "(cache.max_prompt_chars)"
        )
    what = InvalidateFilter(
        tenant=tenant,
        namespace=body.namespace,
        tags=tuple(body.tags),
        model=body.model,
        older_than=None if body.older_than is None else parse_duration(body.older_than),
        similar_to=body.similar_to,
        min_similarity=body.min_similarity,
        ids=tuple(body.ids),
    )
    removed = await run_in_threadpool(state.cache.invalidate, what)
    return JSONBytes({"removed": removed})


@router.get("/v1/cache/stats")
async def stats(request: Request, tenant: str | None = None) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    if tenant is not None and tenant != principal.tenant:
        require_admin(principal)
    if tenant == "*":  # every tenant, as invalidate reads it
        tenant = None
    scope = tenant if tenant is not None else (None if principal.is_admin else principal.tenant)
    numbers = await run_in_threadpool(state.cache.stats, scope)
    return JSONBytes(
        {
            "tenant": scope or "*",
            "entries": numbers.entries,
            "index_entries": numbers.index_entries,
            "bytes": numbers.bytes,
            "hits": {"exact": numbers.hits_exact, "semantic": numbers.hits_semantic},
            "misses": numbers.misses,
            "bypasses": numbers.bypasses,
            "hit_rate": round(numbers.hit_rate, 4),
            "counted_since": iso(numbers.counted_since),
            "semantic_available": numbers.semantic_available,
            "semantic_unavailable_reason": numbers.semantic_unavailable_reason,
            "embedding_model": state.cache.embedder.model_id,
        }
    )


@router.get("/healthz")
async def healthz(request: Request) -> JSONBytes:
    state = _state(request)
    block = state.cache.semantic_block
    damage = state.cache.entry_store.damage
    store = "ok" if damage is None else f"damaged ({damage}); {SALVAGE_FIX}"
    held = state.proxy.books.held_rows
    ledger = "ok" if not held else f"{held} row(s) held in memory: the ledger refuses writes"
    return JSONBytes(
        {
            "status": "ok" if block is None and damage is None and not held else "degraded",
            "semantic": "ok" if block is None else block,
            "store": store,
            "ledger": ledger,
            "embedding_model": state.cache.embedder.model_id,
        }
    )
