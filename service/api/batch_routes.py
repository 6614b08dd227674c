"""`/v1/messages/batches`: Anthropic's Message Batches API, wire-compatible, cache-first.

Create, list, retrieve, results, cancel and delete take the shapes and status codes of Anthropic's
endpoints, so the stock SDK's `client.messages.batches` works against promptcache; the work
is done by `service.batches.BatchService`. Cache controls are read from the create request's
headers as on `/v1/messages` and apply to every request in the batch. A batch belongs to the
tenant of the key that created it: other tenants get a 404, admins see every batch.

`install_batches(app)` adds the routes and runs a `BatchService` inside the app's lifespan
(after the app's own components exist, stopped before they close), kept in
`app.state.promptcache_batches`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from service.api.errors import JSONBytes
from service.api.messages_routes import parse_controls
from service.api.state import AppState
from service.batches import BatchService
from service.errors import InvalidRequest, StorageError

router = APIRouter()

_MAX_PAGE = 1000


def _service(request: Request) -> BatchService:
    service = getattr(request.app.state, "promptcache_batches", None)
    if not isinstance(service, BatchService):
        raise StorageError("the batch service is not running")
    return service


def _scope(request: Request) -> tuple[AppState, str | None, str]:
    """The app state, the tenant whose batches the caller may see (None: all), its tenant."""
    state: AppState = request.app.state.promptcache
    principal = state.keyring.authenticate(request)
    return state, (None if principal.is_admin else principal.tenant), principal.tenant


def _base_url(request: Request) -> str:
    return str(request.base_url)


@router.post("/v1/messages/batches")
async def create_batch(request: Request) -> Response:
    state, _, tenant = _scope(request)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    controls = parse_controls(
        request.headers, state.settings.cache.max_ttl_seconds, state.known_tasks
    )
    view = await _service(request).submit(body, tenant=tenant, controls=controls)
    return JSONBytes(view.to_json(_base_url(request)))


@router.get("/v1/messages/batches")
async def list_batches(
    request: Request,
    limit: int = 20,
    before_id: str | None = None,
    after_id: str | None = None,
) -> Response:
    _, scope, _ = _scope(request)
    if not 1 <= limit <= _MAX_PAGE:
        raise InvalidRequest(f"limit: must be between 1 and {_MAX_PAGE}")
    if before_id is not None and after_id is not None:
        raise InvalidRequest("use before_id or after_id, not both")
    views, more = await _service(request).page(
        scope, limit=limit, before_id=before_id, after_id=after_id
    )
    data = [view.to_json(_base_url(request)) for view in views]
    return JSONBytes(
        {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


@router.get("/v1/messages/batches/{batch_id}")
async def retrieve_batch(request: Request, batch_id: str) -> Response:
    _, scope, _ = _scope(request)
    view = await _service(request).view(batch_id, scope)
    return JSONBytes(view.to_json(_base_url(request)))


@router.get("/v1/messages/batches/{batch_id}/results")
async def batch_results(request: Request, batch_id: str) -> Response:
    _, scope, _ = _scope(request)
    lines = await _service(request).results(batch_id, scope)
    return StreamingResponse(lines, media_type="application/x-jsonl")


@router.post("/v1/messages/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    _, scope, _ = _scope(request)
    view = await _service(request).cancel(batch_id, scope)
    return JSONBytes(view.to_json(_base_url(request)))


@router.delete("/v1/messages/batches/{batch_id}")
async def delete_batch(request: Request, batch_id: str) -> Response:
    _, scope, _ = _scope(request)
    await _service(request).delete(batch_id, scope)
    return JSONBytes({"id": batch_id, "type": "message_batch_deleted"})


def install_batches(app: FastAPI, *, clock: Callable[[], float] = time.time) -> None:
    """Add the batch routes to an app made by `create_app` and run a `BatchService` in its
    lifespan. Calling it twice on one app changes nothing."""
    if getattr(app.state, "promptcache_batches_installed", False):
        return
    app.state.promptcache_batches_installed = True
    app.include_router(router)
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        async with inner(served) as value:
            state: AppState = served.state.promptcache
            service = BatchService(state.settings, state.proxy, clock=clock)
            await service.start()
            served.state.promptcache_batches = service
            try:
                yield value
            finally:
                await service.stop()  # before the cache, ledger and upstream close

    app.router.lifespan_context = lifespan
