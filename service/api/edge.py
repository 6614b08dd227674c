"""What the HTTP edge settles before a route runs: encoded bodies, and HEAD requests.

A body sent with `Content-Encoding: gzip` (or any coding but `identity`) is refused with a
415 that says to send it uncompressed. promptcache does not decompress: the body limits
(`service.api.body_limit`) count the bytes as sent, and a small compressed body can expand
a thousandfold past them. Before this check, such a body reached the JSON decoder and was
refused as "str is not valid UTF-8", which sent people hunting for an encoding bug.

HEAD is answered as GET without the body, as Starlette's own routes do and as health
checkers expect (FastAPI's routes list only the methods they were declared with). The
server (uvicorn) drops the body of a HEAD response, so the app runs the GET handler on a
copy of the scope that says GET; the original scope, which the server reads, still says HEAD.

A pure ASGI middleware, for the reason `service.api.body_limit` gives.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response


def _coding(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-encoding":
            coding = value.decode("latin-1").strip().lower()
            return None if coding in ("", "identity") else coding
    return None


class Edge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = _coding(scope)
        if coding is not None:
            response = error_response(
                415,
                "invalid_request_error",
                f"Content-Encoding {coding!r} is not supported: send the request body "
                "uncompressed (promptcache does not decompress request bodies)",
            )
            await response(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)
