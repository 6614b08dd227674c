"""Refuse request bodies over their endpoint's limit with the API's 413 error body.

Each path may have a limit of its own (`/v1/messages` takes the Messages API's 32 MiB,
`/v1/messages/batches` the Message Batches API's 256 MiB); any other path takes the default
(`server.max_body_bytes`). The 413 names the setting that refused it.

A pure ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`) runs
every request through an extra task and stream pair, which cost more than an exact cache
hit itself. A declared `content-length` over the limit is answered before the app runs; a
body without one (chunked) is counted as it arrives and answered the same way once it
passes the limit. A body with a declared length is not counted: the server stops reading at
the declared length, so it cannot grow past it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    setting: str  # named in the 413, so the operator knows what to raise


class _TooLarge(Exception):
    """Raised from `receive` into the app when a chunked body passes the limit."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    def __init__(
        self, app: ASGIApp, default: Limit, by_path: Mapping[str, Limit] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.by_path = dict(by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope["path"].rstrip("/") or "/", self.default)
        length = _declared_length(scope)
        if length is not None:
            if length > limit.max_bytes:
                await self._refuse(limit, f"{length:,}", scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self._counted(limit, scope, receive, send)

    async def _counted(self, limit: Limit, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # The app answers the failed read in its own way (FastAPI: a 400); drop that answer
            # and send the 413 below instead.
            if over and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if started:
                raise
        if over and not started:
            await self._refuse(limit, f"at least {received:,}", scope, receive, send)

    async def _refuse(
        self, limit: Limit, size: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = error_response(
            413,
            "request_too_large",
            f"request body of {size} bytes exceeds the limit of "
            f"{limit.max_bytes:,} ({limit.setting})",
        )
        await response(scope, receive, send)
