"""`POST /v1/messages/count_tokens`: Anthropic's token counter, with a local fallback.

The upstream answer is exact, so it is asked first whenever an upstream key is configured;
when the upstream cannot answer (no key, down, timing out, rate-limited) the local estimate
of `service.tokens` answers instead, so clients that size prompts before sending keep
working. The response header `x-promptcache-token-source: upstream | estimate` says which
one answered. A request the upstream rejects as malformed is an error, not a fallback: the
estimate would only hide the mistake. A router alias (`auto`) is counted for the model the
router would pick.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.errors import JSONBytes
from service.api.state import AppState
from service.errors import InvalidRequest, RateLimited, UpstreamError
from service.request_checks import check_fields
from service.tokens import estimate_request_tokens
from service.upstream import FORWARDED_HEADERS

logger = logging.getLogger(__name__)

router = APIRouter()

SOURCE_HEADER = "x-promptcache-token-source"


def _validate(body: Any) -> dict[str, Any]:
    """The Messages API's checks (but `max_tokens`, which count_tokens does not take): the
    local estimate must not answer for a body `/v1/messages` would refuse."""
    check_fields(body)
    assert isinstance(body, dict)
    return body


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    state: AppState = request.app.state.promptcache
    state.keyring.authenticate(request)
    try:
        body = _validate(orjson.loads(await request.body()))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    counted = dict(body)
    if body["model"] in state.settings.router.aliases:
        counted["model"] = state.proxy.router.route(body).model
    forward = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
    if state.settings.upstream.api_key:
        try:
            tokens = await state.proxy.upstream.count_tokens(counted, extra_headers=forward)
        except (UpstreamError, RateLimited) as exc:
            logger.warning("count_tokens falls back to the local estimate: %s", exc)
        else:
            return JSONBytes({"input_tokens": tokens}, headers={SOURCE_HEADER: "upstream"})
    estimate = estimate_request_tokens(counted)
    return JSONBytes({"input_tokens": estimate}, headers={SOURCE_HEADER: "estimate"})
