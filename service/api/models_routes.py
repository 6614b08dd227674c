"""`GET /v1/models` and `GET /v1/models/{id}`: relayed to Anthropic, so `client.models` works.

Nothing here is cached or billed: the model list is upstream's to give, asked with
promptcache's key for any caller whose own key is accepted, with the caller's paging
parameters and its `anthropic-version` / `anthropic-beta` headers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.errors import JSONBytes
from service.api.state import AppState
from service.upstream import FORWARDED_HEADERS

router = APIRouter()

_PAGING = ("limit", "before_id", "after_id")


def _forwarded(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.promptcache
    state.keyring.authenticate(request)
    params = {k: v for k, v in request.query_params.items() if k in _PAGING}
    page = await state.proxy.upstream.list_models(params, extra_headers=_forwarded(request))
    return JSONBytes(page)


@router.get("/v1/models/{model_id}")
async def retrieve_model(request: Request, model_id: str) -> Response:
    state: AppState = request.app.state.promptcache
    state.keyring.authenticate(request)
    model = await state.proxy.upstream.retrieve_model(model_id, extra_headers=_forwarded(request))
    return JSONBytes(model)
