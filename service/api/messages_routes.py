"""`POST /v1/messages`: the Anthropic Messages API, drop-in, with cache headers.

Request controls come as headers so the stock SDK can send them with `extra_headers`;
response headers say where the answer came from and what it cost. The body is read raw and
validated by `service.proxy` with the Messages API's own rules, so fields promptcache does
not know are forwarded untouched.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.errors import JSONBytes
from service.api.state import AppState
from service.errors import InvalidRequest
from service.names import header_name
from service.pricing import format_usd
from service.proxy_streams import Following
from service.proxy_types import Answer, Controls
from service.upstream import FORWARDED_HEADERS

router = APIRouter()

_SECONDS = re.compile(r"\d{1,12}")
_DECIMAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _plain(value: float) -> str:
    """31536000, not 3.1536e+07."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _number(headers: Any, name: str, low: float, high: float) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    if not _DECIMAL.fullmatch(raw):  # float() would also take "1_0", "nan", "inf"
        raise InvalidRequest(f"{name}: not a number: {raw!r}")
    value = float(raw)
    if not low <= value <= high:
        raise InvalidRequest(
            f"{name}: must be between {_plain(low)} and {_plain(high)}, got {_plain(value)}"
        )
    return value


def _name(headers: Any, header: str) -> str | None:
    raw = headers.get(header)
    if raw is None:
        return None
    try:
        return header_name(str(raw), header)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _task(headers: Any, known: frozenset[str]) -> str | None:
    raw = headers.get("x-promptcache-task")
    if raw is None:
        return None
    task = raw.strip().lower().replace("-", "_")
    if task not in known:
        raise InvalidRequest(
            f"x-promptcache-task: unknown task {raw[:40]!r} (use one of {', '.join(sorted(known))})"
        )
    return str(task)


def parse_controls(headers: Any, max_ttl: float, tasks: frozenset[str]) -> Controls:
    """`tasks`: the `x-promptcache-task` values this service knows (`AppState.known_tasks`)."""
    no_cache = no_store = False
    max_age: float | None = None
    raw_directives = str(headers.get("cache-control", "")).split(",")
    directives: list[str] = [d.strip().lower() for d in raw_directives if d.strip()]
    for directive in directives:
        if directive == "no-cache":
            no_cache = True
        elif directive == "no-store":
            no_store = True
        elif directive.startswith("max-age="):
            seconds = directive.removeprefix("max-age=")
            # Digits only (int() takes "1_0" and "+5"), and few enough to be a float.
            if not _SECONDS.fullmatch(seconds):
                raise InvalidRequest(
                    f"cache-control: max-age takes whole seconds (0 to 12 digits), got {seconds!r}"
                )
            max_age = float(seconds)
        else:
            raise InvalidRequest(
                f"cache-control: unknown directive {directive!r} "
                "(use no-cache, no-store, max-age=N)"
            )
    ttl = _number(headers, "x-cache-ttl", 1, max_ttl)
    budget = _number(headers, "x-promptcache-context-budget", 1, 10_000_000)
    if budget is not None and budget != int(budget):
        raise InvalidRequest("x-promptcache-context-budget: must be a whole number of tokens")
    semantic = headers.get("x-cache-semantic", "").strip().lower()
    if semantic not in ("", "on", "off"):
        raise InvalidRequest("x-cache-semantic: use on or off")
    return Controls(
        no_cache=no_cache,
        no_store=no_store,
        max_age=max_age,
        ttl=ttl,
        namespace=_name(headers, "x-cache-namespace"),
        min_similarity=_number(headers, "x-cache-min-similarity", -1.0, 1.0),
        feature=_name(headers, "x-promptcache-feature"),
        task=_task(headers, tasks),
        semantic_opt_in=semantic == "on",
        context_budget=None if budget is None else int(budget),
        forward_headers={k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS},
    )


def answer_headers(answer: Answer | None, request_id: str) -> dict[str, str]:
    headers = {"request-id": request_id}
    if answer is None:
        headers["x-cache"] = "miss"
        return headers
    headers["x-cache"] = answer.kind
    headers["x-promptcache-model"] = answer.model_used
    headers["x-promptcache-cost-usd"] = format_usd(answer.charge.cost_micros)
    headers["x-promptcache-saved-usd"] = format_usd(answer.charge.saved_micros)
    if not answer.charge.priced:  # the figures above are not a price: say so
        headers["x-promptcache-unpriced"] = "true"
    if answer.similarity is not None and answer.kind.startswith("hit-"):
        headers["x-cache-similarity"] = f"{answer.similarity:.4f}"
    if answer.entry_id is not None:
        headers["x-cache-entry"] = str(answer.entry_id)
    return headers


class _EventStream(StreamingResponse):
    """Closes its events however the response ends: a client that leaves before the first
    byte must still settle the relay (`service.proxy.Relay`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    state: AppState = request.app.state.promptcache
    principal = state.keyring.authenticate(request)
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    controls = parse_controls(
        request.headers, state.settings.cache.max_ttl_seconds, state.known_tasks
    )
    options = state.lookup_options(min_similarity=controls.min_similarity, max_age=controls.max_age)
    proxy = state.proxy
    prepared = proxy.prepare(body, tenant=principal.tenant, controls=controls, options=options)
    # An error from here on has a ledger row under this id; the error handler sends it. Not
    # on the exception: requests that share one upstream call share its exception too.
    request.state.request_id = prepared.request_id
    if prepared.stream:
        answer, events = await proxy.stream(prepared, request.is_disconnected)
        headers = answer_headers(answer, prepared.request_id)
        if isinstance(events, Following):  # still waiting on an identical request
            headers["x-cache"] = "hit-exact"
        elif answer is None:  # a streamed miss: its cost is known only at the end (ledger)
            headers["x-cache"] = "bypass" if controls.no_cache else "miss"
        headers["cache-control"] = "no-cache"
        return _EventStream(events, media_type="text/event-stream", headers=headers)
    answer = await proxy.complete(prepared, request.is_disconnected)
    return JSONBytes(answer.message, headers=answer_headers(answer, prepared.request_id))
