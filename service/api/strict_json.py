"""JSON request bodies decoded as strictly as `/v1/messages` decodes them.

FastAPI reads a pydantic body with the standard library, which accepts an unpaired UTF-16
surrogate such as `"\\ud800"`; such a string cannot be encoded, so it would fail later, deep
in the cache, as a 500. orjson refuses it at the edge, and the error handler answers 400
naming the reason, as it does for any other malformed JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An `APIRoute` whose handler decodes the body with orjson."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict
