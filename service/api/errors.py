"""One place that turns exceptions into Anthropic-style error responses.

Every error body has the shape `{"type": "error", "error": {"type": ..., "message": ...}}`
with the status from the `service.errors` class. Validation errors name the field; malformed
JSON is a 400, a body that parses but breaks the schema is a 422, and anything unexpected is
logged with its traceback and answered with a plain 500 that leaks no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from service.errors import PromptCacheError
from service.jsoncodec import dumps

logger = logging.getLogger(__name__)


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> JSONBytes:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONBytes(body, status_code=status, headers=headers)


def _describe(errors: list[dict[str, Any]]) -> tuple[int, str]:
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        return 400, f"request body is not valid JSON: {reason}"
    location = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    kind = first.get("type", "")
    if location == "body" and kind == "missing":  # malformed, not a bad field
        return 400, "request body is empty: send a JSON object"
    if location == "body" and kind in ("model_attributes_type", "model_type", "dict_type"):
        return 400, "request body must be a JSON object (content-type: application/json)"
    if kind == "extra_forbidden":
        return 422, f"{location}: unknown field"
    if kind == "missing":
        return 422, f"{location}: field required"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return 422, f"{location}: {message}"


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def _allowed(request: Request) -> str:
    """Every method some route takes at this path, asked of the router one method at a time
    (FastAPI nests included routers, whose routes cannot be listed). Starlette's 405 names
    only the first route that matched the path (GET /v1/messages/batches hid its POST);
    HEAD goes with GET (`service.api.edge`)."""
    routes = request.app.router.routes
    methods = {
        method
        for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    async def on_ours(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PromptCacheError)
        if exc.status >= 500:
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc)
        # A spent budget or a misconfigured upstream key does not come back on a retry:
        # tell the SDK not to try again. Upstream's own retry headers pass as they came.
        headers = dict(exc.headers)
        request_id = getattr(request.state, "request_id", None)
        if request_id is not None:  # the request reached the proxy: its ledger row's id
            headers["request-id"] = request_id
        if exc.error_type == "budget_exceeded" or exc.should_retry is False:
            headers["x-should-retry"] = "false"
        return error_response(exc.status, exc.error_type, exc.message, headers or None)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        status, message = _describe(list(exc.errors()))
        return error_response(status, "invalid_request_error", message)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error_type = _STATUS_TYPES.get(exc.status_code, "api_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return error_response(exc.status_code, error_type, str(exc.detail), headers or None)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # Not a fault of ours, and nothing went upstream: one line, no traceback, no row.
        path = request.url.path
        logger.info("%s %s: the client left before its body arrived", request.method, path)
        return Response(status_code=499)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "api_error", "internal error; see the service log")

    app.add_exception_handler(PromptCacheError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_unexpected)
