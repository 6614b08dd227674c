"""`AnthropicUpstream` against the stand-in server: wire fidelity and error translation."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
import pytest

from service.config import UpstreamSettings
from service.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PromptCacheError,
    RateLimited,
    UnreadableAnswer,
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotConfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from service.keys import UPSTREAM_API_VERSION
from service.standin import MODELS
from service.upstream import (
    NO_KEY_MESSAGE,
    AnthropicUpstream,
    StreamBroken,
    StreamEvent,
    Upstream,
)
from tests.standin_server import RunningStandin, running_standin

MODEL = "claude-sonnet-4-5"  # flagged deprecated by this SDK's typed layer: must not warn


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningStandin]:
    with running_standin() as running:
        yield running


@pytest.fixture
def standin(server: RunningStandin) -> RunningStandin:
    server.state.reset()
    server.state.rejected_keys = {"bad-key"}
    server.state.timeout_delay = 3.0
    server.state.batch_ready_after_polls = 1
    return server


@asynccontextmanager
async def upstream_for(
    standin: RunningStandin, **overrides: Any
) -> AsyncIterator[AnthropicUpstream]:
    values: dict[str, Any] = {
        "api_key": "test-key",
        "base_url": standin.base_url,
        "timeout_seconds": 5.0,
        "max_retries": 0,
    }
    upstream = AnthropicUpstream(UpstreamSettings(**(values | overrides)))
    try:
        yield upstream
    finally:
        await upstream.aclose()


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 300, "messages": [{"role": "user", "content": text}]} | (
        extra
    )


async def collect(upstream: Upstream, request: dict[str, Any]) -> list[StreamEvent]:
    return [event async for event in upstream.stream(request)]


def test_is_an_upstream() -> None:
    assert isinstance(AnthropicUpstream(UpstreamSettings()), Upstream)


@pytest.mark.anyio
async def test_create_returns_the_wire_json(standin: RunningStandin) -> None:
    request = ask("Hello there", temperature=0.3, top_k=5, metadata={"user_id": "u"})
    async with upstream_for(standin) as upstream:
        message = await upstream.create(request)
    async with httpx.AsyncClient() as plain:
        answer = await plain.post(
            f"{standin.base_url}/v1/messages", json=request, headers={"x-api-key": "k"}
        )
    direct = answer.json()
    # Every field the API sent, including ones this SDK's models lack, exactly as sent.
    assert {k: v for k, v in message.items() if k != "id"} == {
        k: v for k, v in direct.items() if k != "id"
    }
    assert message["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    # ... and the request went out byte-for-byte as given (fields the SDK has no kwarg for too).
    assert standin.state.last_requests[0] == request


@pytest.mark.anyio
async def test_unknown_request_fields_pass_through(standin: RunningStandin) -> None:
    request = ask("x", some_future_field={"nested": [1, 2]}, stream=True)
    async with upstream_for(standin) as upstream:
        await upstream.create(request)
    sent = standin.state.last_requests[0]
    assert sent["some_future_field"] == {"nested": [1, 2]}
    assert "stream" not in sent  # create() is the non-streaming call


@pytest.mark.anyio
async def test_only_the_beta_header_is_forwarded(standin: RunningStandin) -> None:
    standin.state.rejected_keys.add("client-key-must-not-leak")
    async with upstream_for(standin) as upstream:
        await upstream.create(
            ask("x"),
            extra_headers={
                "anthropic-beta": "prompt-caching-2024-07-31",
                "x-api-key": "client-key-must-not-leak",
                "x-cache-namespace": "team-a",
            },
        )
    headers = standin.state.last_headers[0]
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "x-cache-namespace" not in headers
    # Had the client's key been forwarded, the stand-in would have refused the call.
    assert standin.state.messages_calls == 1


@pytest.mark.anyio
async def test_stream_yields_the_full_event_sequence(standin: RunningStandin) -> None:
    async with upstream_for(standin) as upstream:
        events = await collect(upstream, ask("Stream this, please"))
        message = await upstream.create(ask("Stream this, please"))
    names = [e.event for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") >= 3
    assert all(e.data["type"] == e.event for e in events)
    text = "".join(e.data["delta"]["text"] for e in events if e.event == "content_block_delta")
    assert text == message["content"][0]["text"]
    assert events[-2].data["usage"]["output_tokens"] == message["usage"]["output_tokens"]
    assert standin.state.last_requests[0]["stream"] is True


@pytest.mark.anyio
async def test_stream_of_tool_use_carries_input_json_deltas(standin: RunningStandin) -> None:
    tool = {
        "name": "lookup",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    request = ask("find cats", tools=[tool], tool_choice={"type": "any"})
    async with upstream_for(standin) as upstream:
        events = await collect(upstream, request)
    start = next(e for e in events if e.event == "content_block_start")
    assert start.data["content_block"]["type"] == "tool_use"
    partial = "".join(
        e.data["delta"]["partial_json"] for e in events if e.event == "content_block_delta"
    )
    assert json.loads(partial) == {"query": "find cats"}
    assert events[-2].data["delta"]["stop_reason"] == "tool_use"


def test_stream_event_encodes_as_sse() -> None:
    event = StreamEvent("content_block_delta", {"type": "content_block_delta", "text": "안녕"})
    raw = event.encode().decode()
    assert raw.startswith("event: content_block_delta\ndata: ") and raw.endswith("\n\n")
    assert json.loads(raw.split("data: ", 1)[1]) == event.data


@pytest.mark.anyio
async def test_closing_a_stream_early_releases_it(standin: RunningStandin) -> None:
    async with upstream_for(standin) as upstream:
        async with aclosing(upstream.stream(ask("long answer"))) as events:
            async for event in events:
                assert event.event == "message_start"
                break
        assert (await upstream.create(ask("next")))["type"] == "message"


FAULTS = [
    ("rate_limit", RateLimited),
    ("server_error", UpstreamUnavailable),
    ("overloaded", UpstreamUnavailable),
    ("auth", UpstreamAuthError),
    ("malformed", UpstreamError),
]


# A 200 with a body that is not a message: upstream billed it (the proxy bills its bound).
CREATE_FAULTS = [(k, UnreadableAnswer if k == "malformed" else e) for k, e in FAULTS]


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "error"), CREATE_FAULTS, ids=[k for k, _ in FAULTS])
async def test_create_faults_map_to_our_errors(
    standin: RunningStandin, kind: str, error: type[PromptCacheError]
) -> None:
    standin.state.inject(kind)
    async with upstream_for(standin) as upstream:
        with pytest.raises(error) as caught:
            await upstream.create(ask("x"))
        assert type(caught.value) is error
        assert caught.value.__cause__ is not None  # raised `from` the SDK/transport error
        assert (await upstream.create(ask("x")))["type"] == "message"


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "error"), FAULTS, ids=[k for k, _ in FAULTS])
async def test_stream_faults_map_to_our_errors(
    standin: RunningStandin, kind: str, error: type[PromptCacheError]
) -> None:
    standin.state.inject(kind)
    async with upstream_for(standin) as upstream:
        with pytest.raises(error) as caught:
            await collect(upstream, ask("x"))
        assert type(caught.value) is error


@pytest.mark.anyio
async def test_error_messages_name_the_cause(standin: RunningStandin) -> None:
    async with upstream_for(standin) as upstream:
        standin.state.inject("rate_limit")
        with pytest.raises(RateLimited) as limited:
            await upstream.create(ask("x"))
        assert "exceeded your rate limit" in limited.value.message
        assert "retry after 1" in limited.value.message
        standin.state.inject("auth")
        with pytest.raises(UpstreamAuthError) as denied:
            await upstream.create(ask("x"))
        assert "ANTHROPIC_API_KEY" in denied.value.message
        standin.state.inject("malformed")
        with pytest.raises(UpstreamError, match="malformed response") as malformed:
            await upstream.create(ask("x"))
        assert malformed.value.status == 502


@pytest.mark.anyio
async def test_a_rejected_key_is_an_upstream_auth_error(standin: RunningStandin) -> None:
    async with upstream_for(standin, api_key="bad-key") as upstream:
        with pytest.raises(UpstreamAuthError, match="ANTHROPIC_API_KEY"):
            await upstream.create(ask("x"))


@pytest.mark.anyio
async def test_bad_requests_are_invalid_requests(standin: RunningStandin) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    async with upstream_for(standin) as upstream:
        with pytest.raises(InvalidRequest, match="max_tokens: Field required") as caught:
            await upstream.create(request)
        assert type(caught.value) is InvalidRequest
        with pytest.raises(NotFound):
            await upstream.retrieve_batch("msgbatch_missing")


@pytest.mark.anyio
@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
async def test_timeout_is_an_upstream_timeout(standin: RunningStandin, streaming: bool) -> None:
    standin.state.timeout_delay = 2.0
    standin.state.inject("timeout")
    async with upstream_for(standin, timeout_seconds=0.3) as upstream:
        with pytest.raises(UpstreamTimeout):
            if streaming:
                await collect(upstream, ask("x"))
            else:
                await upstream.create(ask("x"))


@pytest.mark.anyio
async def test_broken_stream_raises_after_the_events_it_got(standin: RunningStandin) -> None:
    standin.state.inject("broken_stream")
    got: list[str] = []
    async with upstream_for(standin) as upstream:
        with pytest.raises(StreamBroken, match="before message_stop") as caught:
            async for event in upstream.stream(ask("x")):
                got.append(event.event)
    assert got.count("content_block_delta") == 2 and "message_stop" not in got
    assert isinstance(caught.value, UpstreamError) and caught.value.status == 502


@pytest.mark.anyio
async def test_error_event_mid_stream_keeps_its_type(standin: RunningStandin) -> None:
    standin.state.inject("stream_error")
    async with upstream_for(standin) as upstream:
        with pytest.raises(StreamBroken, match="Overloaded") as caught:
            await collect(upstream, ask("x"))
    assert caught.value.error_type == "overloaded_error"


@pytest.mark.anyio
@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
async def test_a_client_call_is_never_retried_here(
    standin: RunningStandin, streaming: bool
) -> None:
    """The client's SDK retries what we pass on; retrying here too multiplied the calls
    (3 x 3 upstream calls for one SDK call). `max_retries` is for promptcache's own calls."""
    standin.state.inject("server_error")
    async with upstream_for(standin, max_retries=2) as upstream:
        with pytest.raises(UpstreamUnavailable) as caught:
            if streaming:
                await collect(upstream, ask("x"))
            else:
                await upstream.create(ask("x"))
    assert standin.state.messages_calls == 1
    assert (caught.value.status, caught.value.error_type) == (500, "api_error")


@pytest.mark.anyio
async def test_upstream_status_type_and_retry_headers_are_kept(standin: RunningStandin) -> None:
    async with upstream_for(standin) as upstream:
        standin.state.inject("overloaded")
        with pytest.raises(UpstreamUnavailable) as overloaded:
            await upstream.create(ask("x"))
        standin.state.inject("rate_limit")
        with pytest.raises(RateLimited) as limited:
            await upstream.create(ask("x"))
    assert (overloaded.value.status, overloaded.value.error_type) == (529, "overloaded_error")
    assert limited.value.headers == {"retry-after": "1", "retry-after-ms": "1000"}
    assert UpstreamAuthError("x").should_retry is False
    assert UpstreamNotConfigured("x").should_retry is False
    assert overloaded.value.should_retry is None  # the client's SDK decides, by the status


@pytest.mark.anyio
async def test_without_a_key_calls_fail_clearly_and_nothing_is_sent(
    standin: RunningStandin,
) -> None:
    upstream = AnthropicUpstream(UpstreamSettings(api_key=None, base_url=standin.base_url))
    assert not upstream.configured
    with pytest.raises(UpstreamNotConfigured) as caught:
        await upstream.create(ask("x"))
    assert caught.value.message == NO_KEY_MESSAGE
    with pytest.raises(UpstreamNotConfigured, match="ANTHROPIC_API_KEY"):
        await collect(upstream, ask("x"))
    with pytest.raises(UpstreamNotConfigured, match="ANTHROPIC_API_KEY"):
        await upstream.count_tokens(ask("x"))
    with pytest.raises(UpstreamNotConfigured, match="ANTHROPIC_API_KEY"):
        await upstream.create_batch([{"custom_id": "a", "params": ask("x")}])
    await upstream.aclose()
    assert standin.state.messages_calls == 0 and standin.state.batches_created == 0


@pytest.mark.anyio
async def test_unreachable_upstream_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = UpstreamSettings(
        api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout_seconds=2
    )
    upstream = AnthropicUpstream(settings)
    try:
        with pytest.raises(UpstreamUnavailable, match="cannot reach"):
            await upstream.create(ask("x"))
        with pytest.raises(UpstreamUnavailable):
            await collect(upstream, ask("x"))
    finally:
        await upstream.aclose()


@pytest.mark.anyio
async def test_count_tokens_drops_generation_fields(standin: RunningStandin) -> None:
    request = ask("Count these words", system="Be brief.", temperature=0.5, stream=True)
    async with upstream_for(standin) as upstream:
        counted = await upstream.count_tokens(request)
        usage = (await upstream.create(request))["usage"]
    assert counted == usage["input_tokens"] > 0
    assert standin.state.count_tokens_calls == 1


@pytest.mark.anyio
async def test_batches_round_trip(standin: RunningStandin) -> None:
    standin.state.batch_ready_after_polls = 2  # batch_results() polls once itself
    requests = [{"custom_id": f"q{i}", "params": ask(f"question {i}")} for i in range(3)]
    async with upstream_for(standin) as upstream:
        batch = await upstream.create_batch(requests)
        assert batch["id"].startswith("msgbatch_")
        assert batch["processing_status"] == "in_progress"
        assert standin.state.batch_requests == 3 and standin.state.batches_created == 1
        polled = await upstream.retrieve_batch(batch["id"])
        assert polled["processing_status"] == "in_progress"
        with pytest.raises(Conflict, match="no results yet"):
            async for _ in upstream.batch_results(batch["id"]):
                pass
        ended = await upstream.retrieve_batch(batch["id"])
        assert ended["processing_status"] == "ended"
        results = [line async for line in upstream.batch_results(batch["id"])]
        direct = await upstream.create(ask("question 1"))
        canceled = await upstream.cancel_batch(batch["id"])
    by_id = {r["custom_id"]: r["result"] for r in results}
    assert set(by_id) == {"q0", "q1", "q2"}
    assert all(r["type"] == "succeeded" for r in by_id.values())
    assert by_id["q1"]["message"]["content"] == direct["content"]
    assert canceled["processing_status"] == "ended"  # cancelling an ended batch changes nothing


@pytest.mark.anyio
async def test_batches_are_deleted_once_ended(standin: RunningStandin) -> None:
    standin.state.batch_ready_after_polls = 10**9
    async with upstream_for(standin) as upstream:
        batch = await upstream.create_batch(
            [{"custom_id": "a", "params": ask("x")}],
            extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        )
        assert standin.state.other_headers[-1]["anthropic-beta"] == "context-1m-2025-08-07"
        with pytest.raises(InvalidRequest, match="cancel it"):
            await upstream.delete_batch(batch["id"])
        await upstream.cancel_batch(batch["id"])
        assert (await upstream.retrieve_batch(batch["id"]))["processing_status"] == "ended"
        await upstream.delete_batch(batch["id"])
        with pytest.raises(NotFound):
            await upstream.retrieve_batch(batch["id"])
    assert standin.state.batches_deleted == 1


@pytest.mark.anyio
async def test_models_are_listed_and_retrieved_as_upstream_sends_them(
    standin: RunningStandin,
) -> None:
    async with upstream_for(standin) as upstream:
        page = await upstream.list_models({"limit": "2"}, extra_headers={"anthropic-beta": "b1"})
        rest = await upstream.list_models({"after_id": page["last_id"]})
        one = await upstream.retrieve_model("claude-haiku-4-5")
        with pytest.raises(NotFound):
            await upstream.retrieve_model("claude-nonesuch")
    assert len(page["data"]) == 2 and page["has_more"] is True
    assert [m["id"] for m in page["data"] + rest["data"]] == [m[0] for m in MODELS]
    assert rest["has_more"] is False
    assert one == {
        "type": "model",
        "id": "claude-haiku-4-5",
        "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-15T00:00:00Z",
    }
    assert standin.state.other_headers[0]["anthropic-beta"] == "b1"


def test_the_sdk_sends_the_version_keys_treat_as_its_own() -> None:
    """`service.keys.UPSTREAM_API_VERSION` must be what this SDK sends when the client sends
    none: the answers stored so far were made under it. An SDK upgrade that changes it
    fails here; see the constant's comment before changing it."""
    import anthropic

    client = anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9")
    try:
        assert client.default_headers["anthropic-version"] == UPSTREAM_API_VERSION
    finally:
        client.close()


def test_the_sdk_is_imported_off_the_start_path() -> None:
    """Importing the app must not import the SDK (1-2 s); `warm` builds the client."""
    import subprocess
    import sys

    script = (
        "import sys, service.api.app\n"
        "print('anthropic' in sys.modules)\n"
        "from service.config import UpstreamSettings\n"
        "from service.upstream import AnthropicUpstream\n"
        "u = AnthropicUpstream(UpstreamSettings(api_key='k', base_url='http://127.0.0.1:9'))\n"
        "u.warm()\n"
        "print(u._client is not None and u.configured)\n"
        "print(AnthropicUpstream(UpstreamSettings(api_key=None)).configured)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "True", "False"]
