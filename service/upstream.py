"""The Anthropic API behind a narrow seam; the only module that imports the `anthropic` SDK.

`Upstream` is what the cache orchestrator and the API layer call on a miss: create a message,
stream one, count tokens, run Message Batches, list models. `AnthropicUpstream` implements it with
`anthropic.AsyncAnthropic`, but through the SDK's generic `post`/`get` rather than its typed
methods: the SDK still supplies auth, the version header, timeouts, retries and status
errors, while the request goes out as the caller's JSON and the answer comes back as the JSON
the API sent — never re-serialised SDK models. So fields this SDK version does not know pass
through both ways, and the typed layer's per-model warnings (it flags `claude-sonnet-4-5` as
deprecated) never fire for a model our client chose. SDK and transport errors are translated
here into `service.errors`, so no other module knows the SDK's exception classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx2

from service.config import UpstreamSettings
from service.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PromptCacheError,
    RateLimited,
    Unprocessable,
    UnreadableAnswer,
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotConfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    import anthropic

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"
NO_KEY_MESSAGE = (
    "promptcache has no upstream API key of its own: its operator must set ANTHROPIC_API_KEY "
    "(or [upstream] api_key in the config file) to forward cache misses to Anthropic"
)
# Headers a caller may forward upstream; anything else (its own credentials above all) is
# dropped, because the upstream call is made with promptcache's key. Both can change the
# answer, so both are part of the cache key (`service.keys.cache_keys`).
FORWARDED_HEADERS = frozenset({"anthropic-beta", "anthropic-version"})
# Upstream's answers to a failed call that tell a client whether and when to retry.
RETRY_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")
# Generation-only fields the count_tokens endpoint rejects as "extra inputs".
_NOT_FOR_COUNTING = frozenset(
    "max_tokens stream metadata stop_sequences temperature top_p top_k service_tier".split()
)


class StreamBroken(UpstreamError):
    """The upstream stream failed after it began: an `error` event, a dropped connection, or
    an end without `message_stop`.

    Events before the failure were already delivered, so the HTTP status cannot change any
    more; `error_type` is what to put in the SSE `error` event sent on to the client
    (upstream's own type when it sent one, e.g. `overloaded_error`).
    """

    status = 502
    error_type = "api_error"

    def __init__(self, message: str, error_type: str = "api_error") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event as it arrived: the `event:` name and the decoded `data:` JSON."""

    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event as SSE bytes, ready to send on to a client."""
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {payload}\n\n".encode()


@runtime_checkable
class Upstream(Protocol):
    """The Anthropic Messages API as the cache needs it; dicts are wire JSON both ways.

    Every method raises only `service.errors` classes (plus `StreamBroken` from `stream`).
    `extra_headers` may carry request headers to forward; only `FORWARDED_HEADERS` are sent.
    """

    async def create(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The message exactly as the API returned it (`request["stream"]` is ignored).

        `create` and `stream` make one attempt: a client's call is retried by the client's
        own SDK, from the status and retry headers the error carries. The other methods
        (promptcache's own calls) retry as `[upstream] max_retries` says."""
        ...

    def stream(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Events in arrival order, `ping` included, through `message_stop`.

        A failure before the first event raises its own class (`RateLimited`,
        `UpstreamTimeout`, ...); any failure after it raises `StreamBroken`. The iterator is
        an async generator: `aclose()` it (or use `contextlib.aclosing`) when stopping early
        so the upstream connection is released at once.
        """
        ...

    async def count_tokens(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> int:
        """Input tokens of a Messages request (generation-only fields are dropped first)."""
        ...

    async def create_batch(
        self,
        requests: Sequence[dict[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """`requests` are `{"custom_id": ..., "params": {...}}`; returns the batch object.
        `extra_headers` (the batch's `anthropic-beta`) apply to every request in it."""
        ...

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]: ...

    def batch_results(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        """Each line of the results JSONL, decoded; `Conflict` if the batch has not ended."""
        ...

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]: ...

    async def delete_batch(self, batch_id: str) -> None:
        """Delete an ended batch upstream; `InvalidRequest` if it is still processing."""
        ...

    async def list_models(
        self, params: Mapping[str, str], *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """`GET /v1/models` with the caller's query parameters, the page as the API sent it."""
        ...

    async def retrieve_model(
        self, model_id: str, *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def _upstream_error(exc: anthropic.APIStatusError) -> tuple[str, str | None]:
    """Upstream's `error.message` (or the SDK's) and `error.type`, from the error body."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            kind = error.get("type")
            return (
                str(message) if isinstance(message, str) else exc.message,
                str(kind) if isinstance(kind, str) and kind else None,
            )
    return exc.message, None


def _passed_on(error: PromptCacheError, exc: anthropic.APIStatusError) -> PromptCacheError:
    """Give `error` upstream's retry headers: the client's SDK reads them to decide whether
    and when to retry (`retry-after-ms` first), as it would talking to Anthropic."""
    for name in RETRY_HEADERS:
        value = exc.response.headers.get(name)
        if value is not None:
            error.headers[name] = value
    return error


def translate_error(exc: Exception) -> PromptCacheError:
    """Map an SDK or transport exception to our tree (the caller raises it `from exc`).

    Upstream's status classes survive: a 429 stays a 429 and a 5xx keeps its status and
    error type (a 529 is still `overloaded_error`), so the client's SDK raises the exception
    class it would raise without promptcache and retries as it would. A refused upstream key
    is promptcache's misconfiguration, never retryable, and says so."""
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return UpstreamTimeout("the upstream Anthropic API did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError):
        return UpstreamUnavailable(f"cannot reach the upstream Anthropic API: {exc.message}")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        detail, kind = _upstream_error(exc)
        error: PromptCacheError
        if status == 429:
            retry_after = exc.response.headers.get("retry-after")
            hint = f" (retry after {retry_after} s)" if retry_after else ""
            error = RateLimited(f"upstream rate limit: {detail}{hint}")
        elif status in (401, 403):
            return UpstreamAuthError(
                "the upstream Anthropic API refused promptcache's own upstream key (not the "
                "key this request sent): the service's operator must fix ANTHROPIC_API_KEY "
                f"(or [upstream] api_key) — upstream said: {detail}"
            )
        elif status == 404:
            error = NotFound(f"upstream: {detail}")
        elif status == 413:
            error = PayloadTooLarge(f"upstream: {detail}")
        elif status == 422:
            error = Unprocessable(f"upstream: {detail}")
        elif status == 408:
            error = UpstreamTimeout(f"upstream timed out: {detail}")
        elif status >= 500:
            error = UpstreamUnavailable(
                f"upstream Anthropic API unavailable ({status}): {detail}",
                status=status,
                error_type=kind or "api_error",
            )
        elif 400 <= status < 500:
            error = InvalidRequest(detail)
        else:
            error = UpstreamError(f"upstream answered {status}: {detail}")
        return _passed_on(error, exc)
    if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
        logger.warning("malformed response from upstream: %s", exc)
        return UpstreamError("upstream returned a malformed response (see the service log)")
    if isinstance(exc, httpx2.HTTPError):
        return UpstreamUnavailable(f"upstream connection failed: {exc!r}")
    return UpstreamError(f"upstream call failed: {exc!r}")


def _decode_object(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        logger.warning("upstream body is not JSON: %s", exc)
        raise UpstreamError("upstream returned a malformed response: not JSON") from exc
    if not isinstance(value, dict):
        raise UpstreamError("upstream returned a malformed response: not a JSON object")
    return value


class AnthropicUpstream:
    """`Upstream` on `anthropic.AsyncAnthropic`.

    Building it never fails for lack of a key — the cache API keeps working — but calls then
    raise `UpstreamNotConfigured` naming ANTHROPIC_API_KEY. The settings are final: the SDK is
    given explicit values, so it reads nothing from the environment itself.
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._client: anthropic.AsyncAnthropic | None = None
        self._client_lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether an API key is set, i.e. whether misses can be forwarded at all."""
        return bool(self._settings.api_key)

    def warm(self) -> None:
        """Build the SDK client now. Importing the SDK takes 1-2 s, longer than the rest of
        the start, so the app calls this in a worker thread once it serves: cache lookups do
        not wait for it, and a first miss waits only for what is left of it."""
        if self.configured:
            self._build_client()

    def _build_client(self) -> anthropic.AsyncAnthropic:
        with self._client_lock:
            if self._client is None:
                import anthropic

                self._client = anthropic.AsyncAnthropic(
                    api_key=self._settings.api_key,
                    base_url=self._settings.base_url or DEFAULT_BASE_URL,
                    timeout=self._settings.timeout_seconds,
                    max_retries=self._settings.max_retries,
                )
            return self._client

    async def _require_client(self) -> anthropic.AsyncAnthropic:
        if not self.configured:
            raise UpstreamNotConfigured(NO_KEY_MESSAGE)
        if self._client is not None:
            return self._client
        return await asyncio.to_thread(self._build_client)

    @staticmethod
    def _headers(extra_headers: Mapping[str, str] | None) -> dict[str, str]:
        return {k: v for k, v in (extra_headers or {}).items() if k.lower() in FORWARDED_HEADERS}

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        *,
        stream: bool = False,
        query: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> httpx2.Response:
        """One call through the SDK's generic request path: its auth, version header,
        timeout, retries and status errors, but our JSON byte for byte both ways.
        `retries`: None retries as `[upstream] max_retries` says."""
        client = await self._require_client()
        import anthropic

        options: anthropic.RequestOptions = {"headers": self._headers(extra_headers)}
        if query:
            options["params"] = dict(query)
        if retries is not None:
            options["max_retries"] = retries
        try:
            if method == "GET":
                response = await client.get(
                    path, cast_to=httpx2.Response, options=options, stream=stream
                )
            elif method == "DELETE":
                response = await client.delete(path, cast_to=httpx2.Response, options=options)
            else:
                response = await client.post(
                    path, cast_to=httpx2.Response, body=body, options=options, stream=stream
                )
            if not stream:
                await response.aread()
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from exc
        return response

    async def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        *,
        retries: int | None = None,
    ) -> dict[str, Any]:
        response = await self._send(method, path, body, extra_headers, retries=retries)
        return _decode_object(response.content)

    async def create(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in request.items() if k != "stream"}
        # Never retried here: the client's own SDK retries what we pass on (its status and
        # retry headers), so one client call costs upstream what it would cost direct.
        # Sent as a stream so the body is read here, after the status: read by the SDK, a
        # body cut short, reset or stalled after a 200 would be "cannot reach upstream" (a
        # 503, a 504) and cost nothing, though upstream billed the call.
        response = await self._send(
            "POST", "/v1/messages", body, extra_headers, stream=True, retries=0
        )
        try:
            raw = await response.aread()
        except httpx2.HTTPError as exc:  # a 200: upstream billed it
            what = "stalled" if isinstance(exc, httpx2.TimeoutException) else "broke off"
            raise UnreadableAnswer(
                f"upstream answered 200 but its body {what}: {type(exc).__name__}"
            ) from exc
        finally:
            await response.aclose()
        try:
            return _decode_object(raw)
        except UpstreamError as exc:  # a 200: upstream billed it
            raise UnreadableAnswer(exc.message) from exc

    async def stream(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[StreamEvent]:
        body = {**request, "stream": True}
        response = await self._send(
            "POST", "/v1/messages", body, extra_headers, stream=True, retries=0
        )
        import anthropic  # imported by `_send` already; binds the name here

        started = False  # after the first event, every failure is a StreamBroken
        try:
            async for event in _parse_sse(response.aiter_lines()):
                if event.event == "error":
                    error = event.data.get("error")
                    error = error if isinstance(error, dict) else {}
                    raise StreamBroken(
                        f"upstream stream failed: {error.get('message', event.data)}",
                        error_type=str(error.get("type", "api_error")),
                    )
                started = True
                yield event
                if event.event == "message_stop":
                    return
            raise StreamBroken("the upstream stream ended before message_stop")
        except StreamBroken:
            raise
        except (PromptCacheError, anthropic.AnthropicError, httpx2.HTTPError) as exc:
            translated = exc if isinstance(exc, PromptCacheError) else translate_error(exc)
            if started:
                raise StreamBroken(
                    f"the upstream stream broke off: {translated}", translated.error_type
                ) from exc
            if translated is exc:
                raise
            raise translated from exc
        finally:
            await response.aclose()

    async def count_tokens(
        self, request: dict[str, Any], *, extra_headers: Mapping[str, str] | None = None
    ) -> int:
        body = {k: v for k, v in request.items() if k not in _NOT_FOR_COUNTING}
        answer = await self._json("POST", "/v1/messages/count_tokens", body, extra_headers)
        tokens = answer.get("input_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise UpstreamError("upstream returned a malformed response: no input_tokens")
        return tokens

    async def create_batch(
        self,
        requests: Sequence[dict[str, Any]],
        *,
        extra_headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {"requests": list(requests)}
        return await self._json("POST", "/v1/messages/batches", body, extra_headers)

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/messages/batches/{_quote(batch_id)}")

    async def batch_results(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        batch = await self.retrieve_batch(batch_id)
        url = batch.get("results_url")
        if not isinstance(url, str) or not url:
            status = batch.get("processing_status")
            raise Conflict(f"batch {batch_id} has no results yet (processing_status: {status})")
        response = await self._send("GET", url, stream=True)
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield _decode_object(line)
        except httpx2.HTTPError as exc:
            raise translate_error(exc) from exc
        finally:
            await response.aclose()

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/messages/batches/{_quote(batch_id)}/cancel")

    async def delete_batch(self, batch_id: str) -> None:
        await self._send("DELETE", f"/v1/messages/batches/{_quote(batch_id)}")

    async def list_models(
        self, params: Mapping[str, str], *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self._send("GET", "/v1/models", None, extra_headers, query=params)
        return _decode_object(response.content)

    async def retrieve_model(
        self, model_id: str, *, extra_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return await self._json("GET", f"/v1/models/{_quote(model_id)}", None, extra_headers)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[StreamEvent]:
    """Server-sent events from text lines; comments are skipped, bad JSON is malformed."""
    name = ""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                payload = _decode_object("\n".join(data))
                yield StreamEvent(event=name or str(payload.get("type", "message")), data=payload)
            name, data = "", []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
    if data:
        payload = _decode_object("\n".join(data))
        yield StreamEvent(event=name or str(payload.get("type", "message")), data=payload)
