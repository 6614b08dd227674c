"""A local stand-in for the Anthropic Messages API, for tests and demos — NOT the real API.

It speaks the wire format (messages, SSE streaming, count_tokens, Message Batches, models,
errors) closely enough that the official `anthropic` SDK works against it unchanged via
`base_url`, and its answers are canned: deterministic text derived from the request, so the
same request always gets the same answer and different requests get different ones. Prompt
caching is simulated (creation then read of the prefix up to the last `cache_control`
marker, with TTL and a minimum length), and faults can be injected through `StandinState`
or `POST /_standin/faults` so the upstream boundary can be tested against real HTTP.
Every response carries `x-standin: true`. The answers themselves are built in
`service.standin_answers`, the wire format in `service.standin_wire`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.standin_answers import build_message, chosen_tool
from service.standin_wire import (
    count_input_tokens,
    prompt_segments,
    sse,
    stream_events,
    validation_error,
)

# What the next call to POST /v1/messages does under each fault:
#   rate_limit     429 rate_limit_error with retry-after (state.retry_after_seconds)
#   server_error   500 api_error;  overloaded: 529 overloaded_error;  auth: 401
#   timeout        waits state.timeout_delay seconds (until the client hangs up), then answers
#   malformed      200 whose body is not JSON (a stream: an event whose data is cut off)
#   broken_stream  a stream stops after two deltas, no message_stop (not streaming: half a body)
#   stream_error   a stream sends an `error` event (overloaded_error) after two deltas;
#                  a non-streaming call gets the 529
#   bad_event      well-formed JSON of the wrong shape: a stream sends, after two deltas, a
#                  delta for a content block that was never started; a non-streaming call
#                  gets a message whose `content` is a string, not a list of blocks
FaultKind = Literal[
    "rate_limit",
    "server_error",
    "overloaded",
    "timeout",
    "malformed",
    "broken_stream",
    "stream_error",
    "auth",
    "bad_event",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

_TTL_SECONDS = MappingProxyType({"5m": 300.0, "1h": 3600.0})
_BATCH_LIFETIME_SECONDS = 24 * 3600.0
# Never kept in `last_headers`: tests read those, and keys do not belong in test output.
_SECRET_HEADERS = frozenset({"x-api-key", "authorization"})
# The count_tokens endpoint rejects generation-only fields, as the real one does.
_NOT_COUNTABLE = frozenset(
    {"max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata"}
)
# What GET /v1/models lists, newest first, as the API lists them.
MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
)


@dataclass
class StandinState:
    """Configuration and observations of one stand-in server, shared with the test thread.

    Tests may change the configuration fields at any time; counters and faults are guarded
    by a lock because the server runs on another thread.
    """

    rejected_keys: set[str] = field(default_factory=lambda: {"bad-key"})
    min_cacheable_tokens: int = 1024
    latency_seconds: float = 0.0
    stream_event_delay: float = 0.0  # seconds between streamed events (a slow generation)
    timeout_delay: float = 3.0
    retry_after_seconds: int = 1
    # The first N polls of a batch see "in_progress"; None disables that condition.
    batch_ready_after_polls: int | None = 1
    batch_ready_after_seconds: float | None = None
    keep_last_requests: int = 20
    clock: Callable[[], float] = time.time

    messages_calls: int = 0
    count_tokens_calls: int = 0
    batches_created: int = 0
    batch_requests: int = 0
    batches_deleted: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    last_requests: deque[dict[str, Any]] = field(default_factory=deque)
    last_headers: deque[dict[str, str]] = field(default_factory=deque)
    # Headers of each call to the batch and model endpoints (create, retrieve, delete, ...).
    other_headers: deque[dict[str, str]] = field(default_factory=deque)
    _faults: deque[list[Any]] = field(default_factory=deque, repr=False)
    _prompt_cache: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _batches: dict[str, _Batch] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def inject(self, kind: str, count: int = 1) -> None:
        """Make the next `count` calls to `POST /v1/messages` fail as `kind`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append([kind, count])

    def pending_faults(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(kind, remaining) for kind, remaining in self._faults]

    def reset(self) -> None:
        """Forget calls, faults, cached prefixes and batches; keep the configuration."""
        with self._lock:
            self.messages_calls = self.count_tokens_calls = 0
            self.batches_created = self.batch_requests = self.batches_deleted = 0
            self.max_in_flight = self.in_flight  # calls still running keep counting
            self.last_requests.clear()
            self.last_headers.clear()
            self.other_headers.clear()
            self._faults.clear()
            self._prompt_cache.clear()
            self._batches.clear()

    def calls(self) -> dict[str, Any]:
        """What `GET /_standin/calls` returns."""
        with self._lock:
            return {
                "messages_calls": self.messages_calls,
                "count_tokens_calls": self.count_tokens_calls,
                "batches_created": self.batches_created,
                "batch_requests": self.batch_requests,
                "batches_deleted": self.batches_deleted,
                "max_in_flight": self.max_in_flight,
                "last_requests": list(self.last_requests),
                "last_headers": list(self.last_headers),
                "other_headers": list(self.other_headers),
                "pending_faults": [[k, n] for k, n in self._faults],
            }

    def _record_call(self, body: dict[str, Any] | None, headers: dict[str, str]) -> str | None:
        """Count one messages call and consume the next pending fault, if any."""
        with self._lock:
            self.messages_calls += 1
            if body is not None:
                self.last_requests.append(body)
            self.last_headers.append(headers)
            for kept in (self.last_requests, self.last_headers):
                while len(kept) > max(self.keep_last_requests, 0):
                    kept.popleft()
            if not self._faults:
                return None
            head = self._faults[0]
            head[1] -= 1
            if head[1] <= 0:
                self._faults.popleft()
            return str(head[0])

    def input_usage(self, request: dict[str, Any], service_tier: str) -> dict[str, Any]:
        """Input-side usage, simulating prompt caching (and updating the simulated cache)."""
        segments = prompt_segments(request)
        total = sum(s.tokens for s in segments)
        digest = hashlib.sha256(str(request.get("model", "")).encode())
        cumulative = 0
        breakpoints: list[tuple[str, int, str]] = []  # (prefix hash, prefix tokens, ttl)
        for segment in segments:
            digest.update(segment.canonical.encode())
            cumulative += segment.tokens
            if segment.ttl is not None and cumulative >= self.min_cacheable_tokens:
                breakpoints.append((digest.copy().hexdigest(), cumulative, segment.ttl))
        now = self.clock()
        read_tokens = 0
        written = {"5m": 0, "1h": 0}
        with self._lock:
            read_at = -1
            for i, (key, _, _) in enumerate(breakpoints):
                entry = self._prompt_cache.get(key)
                if entry is not None and entry[0] > now:
                    read_at = i
            if read_at >= 0:
                key, read_tokens, _ = breakpoints[read_at]
                ttl_seconds = self._prompt_cache[key][1]
                self._prompt_cache[key] = (now + ttl_seconds, ttl_seconds)  # a hit refreshes
            previous = read_tokens
            for key, tokens, ttl in breakpoints[read_at + 1 :]:
                bucket = ttl if ttl in _TTL_SECONDS else "5m"
                written[bucket] += tokens - previous
                previous = tokens
                self._prompt_cache[key] = (now + _TTL_SECONDS[bucket], _TTL_SECONDS[bucket])
        creation = written["5m"] + written["1h"]
        return {
            "input_tokens": total - read_tokens - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written["5m"],
                "ephemeral_1h_input_tokens": written["1h"],
            },
            "output_tokens": 0,
            "service_tier": service_tier,
        }

    def _note_headers(self, request: Request) -> None:
        headers = {k: v for k, v in request.headers.items() if k not in _SECRET_HEADERS}
        with self._lock:
            self.other_headers.append(headers)
            while len(self.other_headers) > max(self.keep_last_requests, 0):
                self.other_headers.popleft()

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


@dataclass
class _Batch:
    id: str
    created_at: float
    results: list[dict[str, Any]]
    polls: int = 0
    cancel_initiated_at: float | None = None
    ended_at: float | None = None


# ---------------------------------------------------------------- request reading


def _error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


# ---------------------------------------------------------------- streaming


async def _stream_body(
    message: dict[str, Any], fault: str | None, delay: float = 0.0
) -> AsyncIterator[bytes]:
    deltas_sent = 0
    for event, data in stream_events(message):
        if fault == "malformed":
            yield f'event: {event}\ndata: {{"type": "{event}", "message": \n\n'.encode()
            return
        if event == "content_block_delta":
            if deltas_sent == 2 and fault in ("broken_stream", "stream_error"):
                if fault == "stream_error":
                    error = {"type": "overloaded_error", "message": "Overloaded (stand-in fault)"}
                    yield sse("error", {"type": "error", "error": error})
                return
            if deltas_sent == 2 and fault == "bad_event":
                stray = {"type": "text_delta", "text": "?"}
                yield sse(event, {"type": event, "index": 7, "delta": stray})
            deltas_sent += 1
        yield sse(event, data)
        await asyncio.sleep(delay)


# ---------------------------------------------------------------- batches


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _batch_ended(state: StandinState, batch: _Batch, now: float) -> bool:
    if batch.ended_at is not None:
        return True
    if batch.cancel_initiated_at is not None:
        return batch.polls > 0
    by_polls = state.batch_ready_after_polls
    by_seconds = state.batch_ready_after_seconds
    if by_polls is None and by_seconds is None:
        return True
    return (by_polls is not None and batch.polls > by_polls) or (
        by_seconds is not None and now - batch.created_at >= by_seconds
    )


def _batch_view(state: StandinState, batch: _Batch, base_url: str) -> dict[str, Any]:
    """The batch object; ends the batch if its time has come."""
    now = state.clock()
    if batch.ended_at is None and _batch_ended(state, batch, now):
        batch.ended_at = now
        if batch.cancel_initiated_at is not None:
            batch.results = [
                {"custom_id": r["custom_id"], "result": {"type": "canceled"}} for r in batch.results
            ]
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.ended_at is None:
        counts["processing"] = len(batch.results)
        status = "in_progress" if batch.cancel_initiated_at is None else "canceling"
    else:
        for result in batch.results:
            counts[result["result"]["type"]] += 1
        status = "ended"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": _iso(batch.created_at),
        "expires_at": _iso(batch.created_at + _BATCH_LIFETIME_SECONDS),
        "ended_at": _iso(batch.ended_at),
        "cancel_initiated_at": _iso(batch.cancel_initiated_at),
        "archived_at": None,
        "results_url": (
            f"{base_url}v1/messages/batches/{batch.id}/results" if batch.ended_at else None
        ),
    }


def _batch_result(state: StandinState, item: dict[str, Any]) -> dict[str, Any]:
    params = item.get("params")
    problem = validation_error(params)
    if problem is not None:
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": problem}}
        return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
    assert isinstance(params, dict)
    message = build_message(state, params, batch=True)
    return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}}


# ---------------------------------------------------------------- the app


class _LabelMiddleware:
    """Stamps `x-standin: true` and a request id on every response, streaming ones included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-standin", b"true"))
                headers.append((b"request-id", f"req_standin_{uuid.uuid4().hex[:20]}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_labelled)


def _auth_error(state: StandinState, request: Request) -> JSONResponse | None:
    # The SDK (2.x) sends its api_key as `Authorization: Bearer`; older clients send x-api-key.
    key = request.headers.get("x-api-key", "")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not key and scheme.lower() == "bearer":
        key = token.strip()
    if not key:
        return _error_response(
            401,
            "authentication_error",
            "an x-api-key (or Authorization: Bearer) header is required",
        )
    if key in state.rejected_keys:
        return _error_response(401, "authentication_error", "invalid x-api-key")
    return None


async def _json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    try:
        return json.loads(await request.body()), None
    except (ValueError, UnicodeDecodeError):
        return None, _error_response(400, "invalid_request_error", "request body is not valid JSON")


async def _pause(request: Request, seconds: float) -> None:
    """Sleep, but stop early once the client has gone (it timed out), so no handler lingers."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.05))
        if await request.is_disconnected():
            return


def _fault_response(state: StandinState, kind: str) -> JSONResponse | None:
    label = "(stand-in fault)"
    if kind == "rate_limit":
        seconds = state.retry_after_seconds
        return _error_response(
            429,
            "rate_limit_error",
            f"Number of requests has exceeded your rate limit {label}",
            headers={"retry-after": str(seconds), "retry-after-ms": str(seconds * 1000)},
        )
    if kind == "server_error":
        return _error_response(500, "api_error", f"Internal server error {label}")
    if kind in ("overloaded", "stream_error"):
        return _error_response(529, "overloaded_error", f"Overloaded {label}")
    if kind == "auth":
        return _error_response(401, "authentication_error", f"invalid x-api-key {label}")
    return None


def create_standin_app(state: StandinState | None = None) -> FastAPI:
    """Build the stand-in app; pass a `StandinState` to configure and observe it in-process."""
    state = state if state is not None else StandinState()
    app = FastAPI(
        title="Anthropic API STAND-IN (local fake for tests and demos, not the real API)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.standin = state
    app.add_middleware(_LabelMiddleware)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(exc.status_code, kind, str(exc.detail))

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        body, bad_json = await _json_body(request)
        headers = {k: v for k, v in request.headers.items() if k not in _SECRET_HEADERS}
        fault = state._record_call(body if isinstance(body, dict) else None, headers)
        denied = _auth_error(state, request)
        if denied is not None:
            return denied
        if bad_json is not None:
            return bad_json
        problem = validation_error(body)
        if problem is not None:
            return _error_response(400, "invalid_request_error", problem)
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool" and not chosen_tool(body):
            return _error_response(400, "invalid_request_error", "tool_choice: no such tool")
        streaming = body.get("stream") is True
        state._enter()
        try:
            if state.latency_seconds > 0:
                await _pause(request, state.latency_seconds)
            if fault == "timeout":
                await _pause(request, state.timeout_delay)
                fault = None
            if fault is not None and not (streaming and fault == "stream_error"):
                failure = _fault_response(state, fault)
                if failure is not None:
                    return failure
            message = build_message(state, body)
        finally:
            state._leave()
        if streaming:
            return StreamingResponse(
                _stream_body(message, fault, state.stream_event_delay),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        raw = json.dumps(message, ensure_ascii=False)
        if fault == "malformed":
            raw = "<html>502 Bad Gateway (stand-in fault)</html>"
        elif fault == "broken_stream":
            raw = raw[: len(raw) // 2]
        elif fault == "bad_event":
            raw = json.dumps({**message, "content": "not a list of blocks"})
        return Response(raw, media_type="application/json")

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> Response:
        body, bad_json = await _json_body(request)
        with state._lock:
            state.count_tokens_calls += 1
        denied = _auth_error(state, request) or bad_json
        if denied is not None:
            return denied
        problem = validation_error(body, needs_max_tokens=False)
        extra = sorted(_NOT_COUNTABLE & set(body)) if isinstance(body, dict) else []
        if problem is None and extra:
            problem = f"{extra[0]}: Extra inputs are not permitted"
        if problem is not None:
            return _error_response(400, "invalid_request_error", problem)
        return JSONResponse({"input_tokens": count_input_tokens(body)})

    @app.post("/v1/messages/batches")
    async def create_batch(request: Request) -> Response:
        state._note_headers(request)
        body, bad_json = await _json_body(request)
        denied = _auth_error(state, request) or bad_json
        if denied is not None:
            return denied
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error_response(400, "invalid_request_error", "requests: at least one required")
        ids = [item.get("custom_id") if isinstance(item, dict) else None for item in items]
        if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
            return _error_response(
                400, "invalid_request_error", "requests: each needs a unique, non-empty custom_id"
            )
        batch = _Batch(
            id=f"msgbatch_{uuid.uuid4().hex[:24]}",
            created_at=state.clock(),
            results=[_batch_result(state, item) for item in items],
        )
        with state._lock:
            state.batches_created += 1
            state.batch_requests += len(items)
            state._batches[batch.id] = batch
        return JSONResponse(_batch_view(state, batch, str(request.base_url)))

    @app.get("/v1/messages/batches")
    async def list_batches(request: Request) -> Response:
        denied = _auth_error(state, request)
        if denied is not None:
            return denied
        with state._lock:
            batches = list(state._batches.values())[::-1]
        data = [_batch_view(state, b, str(request.base_url)) for b in batches]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def find_batch(request: Request, batch_id: str) -> _Batch | JSONResponse:
        state._note_headers(request)
        denied = _auth_error(state, request)
        if denied is not None:
            return denied
        with state._lock:
            batch = state._batches.get(batch_id)
        return batch or _error_response(404, "not_found_error", f"no batch {batch_id!r}")

    @app.get("/v1/messages/batches/{batch_id}")
    async def retrieve_batch(request: Request, batch_id: str) -> Response:
        batch = find_batch(request, batch_id)
        if isinstance(batch, Response):
            return batch
        with state._lock:
            batch.polls += 1
        return JSONResponse(_batch_view(state, batch, str(request.base_url)))

    @app.get("/v1/messages/batches/{batch_id}/results")
    async def batch_results(request: Request, batch_id: str) -> Response:
        batch = find_batch(request, batch_id)
        if isinstance(batch, Response):
            return batch
        if batch.ended_at is None:
            return _error_response(400, "invalid_request_error", f"batch {batch_id} not ended")
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch.results)
        return Response(lines, media_type="application/x-jsonl")

    @app.post("/v1/messages/batches/{batch_id}/cancel")
    async def cancel_batch(request: Request, batch_id: str) -> Response:
        batch = find_batch(request, batch_id)
        if isinstance(batch, Response):
            return batch
        with state._lock:
            if batch.ended_at is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = state.clock()
                batch.polls = 0  # the next poll sees it ended
        return JSONResponse(_batch_view(state, batch, str(request.base_url)))

    @app.delete("/v1/messages/batches/{batch_id}")
    async def delete_batch(request: Request, batch_id: str) -> Response:
        batch = find_batch(request, batch_id)
        if isinstance(batch, Response):
            return batch
        _batch_view(state, batch, str(request.base_url))  # ends it if its time has come
        if batch.ended_at is None:
            return _error_response(
                400,
                "invalid_request_error",
                f"batch {batch_id} is still processing: cancel it before deleting it",
            )
        with state._lock:
            state._batches.pop(batch_id, None)
            state.batches_deleted += 1
        return JSONResponse({"id": batch_id, "type": "message_batch_deleted"})

    def model_object(model_id: str, name: str, created: str) -> dict[str, Any]:
        return {"type": "model", "id": model_id, "display_name": name, "created_at": created}

    @app.get("/v1/models")
    async def list_models(
        request: Request,
        limit: int = 20,
        before_id: str | None = None,
        after_id: str | None = None,
    ) -> Response:
        state._note_headers(request)
        denied = _auth_error(state, request)
        if denied is not None:
            return denied
        ids = [m[0] for m in MODELS]
        start, stop = 0, len(MODELS)
        if after_id in ids:
            start = ids.index(after_id) + 1
        if before_id in ids:
            stop = ids.index(before_id)
            start = max(start, stop - limit)
        chosen = MODELS[start:stop][:limit]
        data = [model_object(*m) for m in chosen]
        return JSONResponse(
            {
                "data": data,
                # "more in the direction of the page": older ones, or newer ones before_id
                "has_more": start > 0 if before_id in ids else start + len(chosen) < stop,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    @app.get("/v1/models/{model_id}")
    async def retrieve_model(request: Request, model_id: str) -> Response:
        state._note_headers(request)
        denied = _auth_error(state, request)
        if denied is not None:
            return denied
        for known in MODELS:
            if known[0] == model_id:
                return JSONResponse(model_object(*known))
        return _error_response(404, "not_found_error", f"model: {model_id}")

    @app.post("/_standin/faults")
    async def add_fault(request: Request) -> Response:
        body, bad_json = await _json_body(request)
        if bad_json is not None:
            return bad_json
        kind = body.get("kind") if isinstance(body, dict) else None
        count = body.get("count", 1) if isinstance(body, dict) else None
        try:
            state.inject(str(kind), count if isinstance(count, int) else 0)
        except ValueError as exc:
            return _error_response(400, "invalid_request_error", str(exc))
        return JSONResponse({"pending": state.pending_faults()})

    @app.get("/_standin/calls")
    async def calls() -> Response:
        return JSONResponse(state.calls())

    @app.post("/_standin/reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    return app
