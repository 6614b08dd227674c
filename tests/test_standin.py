"""The stand-in Anthropic server, checked with the real `anthropic` SDK over loopback.

If the stand-in drifts from the wire format, the SDK's own parsing fails here, before any
promptcache test relies on it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.standin import StandinState, build_message
from service.standin_wire import count_input_tokens, stream_events
from tests.standin_server import RunningStandin, running_standin

MODEL = "claude-haiku-4-5"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
# About 1,500 estimated tokens: over the default 1,024-token caching minimum.
LONG_SYSTEM = "You are a meticulous support agent for a bicycle shop. " * 110


@pytest.fixture(scope="module")
def server() -> Iterator[RunningStandin]:
    with running_standin() as running:
        yield running


@pytest.fixture
def standin(server: RunningStandin) -> RunningStandin:
    server.state.reset()
    server.state.rejected_keys = {"bad-key"}
    server.state.min_cacheable_tokens = 1024
    server.state.latency_seconds = 0.0
    server.state.timeout_delay = 3.0
    server.state.batch_ready_after_polls = 1
    server.state.batch_ready_after_seconds = None
    return server


@pytest.fixture
def client(standin: RunningStandin) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=standin.base_url, api_key="test", max_retries=0) as sdk:
        yield sdk


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": text}]} | (
        extra
    )


def test_create_returns_a_complete_message(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(**ask("What is the capital of France?"))
    message = raw.parse()
    assert raw.headers["x-standin"] == "true"
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert len(message.content) == 1 and message.content[0].type == "text"
    assert message.content[0].text.startswith("Stand-in answer #")
    assert "capital of France" in message.content[0].text
    usage = message.usage
    assert usage.input_tokens == count_input_tokens(ask("What is the capital of France?"))
    assert usage.output_tokens > 0
    assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0


def test_same_request_same_text_and_different_request_different_text(
    client: anthropic.Anthropic,
) -> None:
    first = client.messages.create(**ask("Name three rivers in Korea."))
    again = client.messages.create(**ask("Name three rivers in Korea."))
    other = client.messages.create(**ask("Name three rivers in Japan."))
    other_model = client.messages.create(**(ask("Name three rivers in Korea.") | {"model": "x"}))
    assert first.id != again.id
    assert first.content == again.content
    assert other.content != first.content
    assert other_model.content != first.content
    assert other_model.model == "x"


def test_stream_helper_final_message_equals_create(client: anthropic.Anthropic) -> None:
    request = ask("한국의 수도는 어디인가요? Explain briefly.")
    created = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) >= 3
    assert "".join(texts) == created.content[0].text
    assert final.model_dump(exclude={"id"}) == created.model_dump(exclude={"id"})


def test_raw_stream_event_order(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    events = [e.type for e in client.messages.create(**ask("order please"), stream=True)]
    assert events[:2] == ["message_start", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = events[2:-3]
    assert deltas.count("content_block_delta") == len(deltas) >= 2  # ping is skipped by the SDK
    with httpx.stream(
        "POST",
        f"{standin.base_url}/v1/messages",
        json=ask("order please", stream=True),
        headers={"x-api-key": "test"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-standin"] == "true"
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]


def test_max_tokens_cuts_the_answer(client: anthropic.Anthropic) -> None:
    full = client.messages.create(**ask("Tell me about tides and the moon."))
    short = client.messages.create(**ask("Tell me about tides and the moon.", max_tokens=5))
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens == 5
    full_text = full.content[0].text
    short_text = short.content[0].text
    assert full_text.startswith(short_text) and len(short_text) < len(full_text)
    with client.messages.stream(**ask("Tell me about tides and the moon.", max_tokens=5)) as s:
        streamed = s.get_final_message()
    assert streamed.stop_reason == "max_tokens"
    assert streamed.content[0].text == short_text


def test_stop_sequence_cuts_before_it(client: anthropic.Anthropic) -> None:
    request = ask("Describe the zebra and the giraffe.")
    full_text = client.messages.create(**request).content[0].text
    message = client.messages.create(**request, stop_sequences=["giraffe", "nowhere"])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "giraffe"
    text = message.content[0].text
    assert "giraffe" not in text
    assert full_text.startswith(text + "giraffe")
    unmatched = client.messages.create(**request, stop_sequences=["nowhere"])
    assert unmatched.stop_reason == "end_turn" and unmatched.stop_sequence is None


@pytest.mark.parametrize(
    "choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}], ids=["any", "tool"]
)
def test_forced_tool_choice_answers_with_tool_use(
    client: anthropic.Anthropic, choice: dict[str, Any]
) -> None:
    request = ask("Weather in Seoul?", tools=[WEATHER_TOOL], tool_choice=choice)
    message = client.messages.create(**request)
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.name == "get_weather"
    assert block.input == {"city": "Weather in Seoul?", "days": 3, "unit": "celsius"}
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert final.model_dump(exclude={"id"}) == message.model_dump(exclude={"id"})


def test_tools_without_forcing_answer_with_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**ask("Hello", tools=[WEATHER_TOOL]))
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"


def cached_request(
    text: str, ttl: str | None = None, system_text: str = LONG_SYSTEM
) -> dict[str, Any]:
    control: dict[str, Any] = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    system = [{"type": "text", "text": system_text, "cache_control": control}]
    return ask(text, system=system)


def test_prompt_caching_creates_then_reads(client: anthropic.Anthropic) -> None:
    prefix_tokens = count_input_tokens({"system": LONG_SYSTEM, "messages": []})
    assert prefix_tokens >= 1024
    first = client.messages.create(**cached_request("First question"))
    assert first.usage.cache_creation_input_tokens == prefix_tokens
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == prefix_tokens
    total = count_input_tokens(cached_request("First question"))
    assert first.usage.input_tokens == total - prefix_tokens

    second = client.messages.create(**cached_request("A different second question"))
    assert second.usage.cache_read_input_tokens == prefix_tokens
    assert second.usage.cache_creation_input_tokens == 0
    total = count_input_tokens(cached_request("A different second question"))
    assert second.usage.input_tokens == total - prefix_tokens


def test_prompt_caching_needs_the_minimum_length(
    client: anthropic.Anthropic, standin: RunningStandin
) -> None:
    standin.state.min_cacheable_tokens = 100_000
    for _ in range(2):
        usage = client.messages.create(**cached_request("Q")).usage
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
        assert usage.input_tokens == count_input_tokens(cached_request("Q"))


@pytest.fixture
def frozen_clock(standin: RunningStandin) -> Iterator[list[float]]:
    """The stand-in's clock as a mutable cell: `now[0] += 301` moves time forward."""
    now = [1_000_000.0]
    standin.state.clock = lambda: now[0]
    yield now
    standin.state.clock = StandinState().clock


def test_prompt_cache_ttl_5m_and_1h(client: anthropic.Anthropic, frozen_clock: list[float]) -> None:
    hour = client.messages.create(**cached_request("Q", ttl="1h")).usage
    five = client.messages.create(**cached_request("Q", system_text="Other. " * 700)).usage
    assert hour.cache_creation is not None and five.cache_creation is not None
    assert hour.cache_creation.ephemeral_1h_input_tokens == hour.cache_creation_input_tokens > 0
    assert five.cache_creation.ephemeral_5m_input_tokens == five.cache_creation_input_tokens > 0
    frozen_clock[0] += 301  # past 5 minutes, inside the hour
    hour_again = client.messages.create(**cached_request("Q", ttl="1h")).usage
    assert hour_again.cache_read_input_tokens == hour.cache_creation_input_tokens
    five_again = client.messages.create(**cached_request("Q", system_text="Other. " * 700)).usage
    assert five_again.cache_read_input_tokens == 0
    assert five_again.cache_creation_input_tokens == five.cache_creation_input_tokens


def test_a_cache_read_refreshes_the_ttl(
    client: anthropic.Anthropic, frozen_clock: list[float]
) -> None:
    client.messages.create(**cached_request("Q"))
    frozen_clock[0] += 200
    assert client.messages.create(**cached_request("Q")).usage.cache_read_input_tokens > 0
    frozen_clock[0] += 200  # 400 s after creation, 200 s after the refreshing read
    assert client.messages.create(**cached_request("Q")).usage.cache_read_input_tokens > 0
    frozen_clock[0] += 301
    assert client.messages.create(**cached_request("Q")).usage.cache_read_input_tokens == 0


def test_prompt_cache_reads_the_longest_cached_prefix(
    client: anthropic.Anthropic, standin: RunningStandin
) -> None:
    standin.state.min_cacheable_tokens = 50
    marker = {"type": "ephemeral"}
    tool = WEATHER_TOOL | {
        "description": "Current weather for a city. " * 20,
        "cache_control": marker,
    }
    tools_tokens = count_input_tokens({"tools": [tool], "messages": []})

    def request(system_text: str, model: str = MODEL) -> dict[str, Any]:
        system = [{"type": "text", "text": system_text, "cache_control": marker}]
        return ask("Q", tools=[tool], system=system, model=model)

    def system_tokens(text: str) -> int:
        return count_input_tokens({"system": text, "messages": []})

    first = client.messages.create(**request("Answer in English. " * 30)).usage
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == tools_tokens + system_tokens(
        "Answer in English. " * 30
    )
    second = client.messages.create(**request("Answer in Korean. " * 30)).usage
    assert second.cache_read_input_tokens == tools_tokens
    assert second.cache_creation_input_tokens == system_tokens("Answer in Korean. " * 30)
    other_model = client.messages.create(**request("Answer in Korean. " * 30, model="x")).usage
    assert other_model.cache_read_input_tokens == 0  # caches are per model


def test_top_level_cache_control_caches_the_whole_prompt(client: anthropic.Anthropic) -> None:
    request = ask(LONG_SYSTEM, cache_control={"type": "ephemeral"})
    first = client.messages.create(**request)
    second = client.messages.create(**request)
    assert first.usage.cache_creation_input_tokens == count_input_tokens(request)
    assert second.usage.cache_read_input_tokens == count_input_tokens(request)
    assert second.usage.input_tokens == 0


def test_count_tokens_matches_usage(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    request = ask("Count me, please: 하나 둘 셋", system="Be short.", tools=[WEATHER_TOOL])
    counted = client.messages.count_tokens(
        model=MODEL, messages=request["messages"], system="Be short.", tools=[WEATHER_TOOL]
    )
    usage = client.messages.create(**request).usage
    assert counted.input_tokens == usage.input_tokens > 0
    assert standin.state.count_tokens_calls == 1 and standin.state.messages_calls == 1
    # Generation-only fields are rejected, like the real endpoint does.
    refused = httpx.post(
        f"{standin.base_url}/v1/messages/count_tokens", json=ask("x"), headers={"x-api-key": "k"}
    )
    assert refused.status_code == 400 and "max_tokens" in refused.json()["error"]["message"]


def test_batch_lifecycle(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    params = [ask("Batch question one"), ask("Batch question two", max_tokens=3)]
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": p} for i, p in enumerate(params)]
    )
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 2
    assert standin.state.batches_created == 1 and standin.state.batch_requests == 2
    assert standin.state.messages_calls == 0

    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.succeeded == 2 and ended.request_counts.processing == 0
    assert ended.results_url and ended.results_url.endswith(f"/{batch.id}/results")

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"r0", "r1"}
    assert results["r0"].type == "succeeded" and results["r1"].type == "succeeded"
    direct = client.messages.create(**params[0])
    assert results["r0"].message.content == direct.content
    assert results["r0"].message.usage.service_tier == "batch"
    assert results["r1"].message.stop_reason == "max_tokens"
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


def test_batch_errors_and_cancel(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    standin.state.batch_ready_after_polls = None
    standin.state.batch_ready_after_seconds = 3600
    batch = client.messages.batches.create(
        requests=[{"custom_id": "a", "params": ask("x")}, {"custom_id": "b", "params": ask("y")}]
    )
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"] * 2

    bad = client.messages.batches.create(
        requests=[{"custom_id": "bad", "params": {"model": MODEL, "messages": []}}]
    )
    standin.state.batch_ready_after_seconds = 0
    (result,) = list(client.messages.batches.results(bad.id))
    assert result.result.type == "errored"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")


def test_batch_results_before_the_end_are_refused(standin: RunningStandin) -> None:
    standin.state.batch_ready_after_polls = 100
    headers = {"x-api-key": "test"}
    created = httpx.post(
        f"{standin.base_url}/v1/messages/batches",
        json={"requests": [{"custom_id": "a", "params": ask("x")}]},
        headers=headers,
    ).json()
    early = httpx.get(
        f"{standin.base_url}/v1/messages/batches/{created['id']}/results", headers=headers
    )
    assert early.status_code == 400
    assert early.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("rate_limit", anthropic.RateLimitError, 429),
        ("server_error", anthropic.InternalServerError, 500),
        ("overloaded", anthropic.OverloadedError, 529),
        ("auth", anthropic.AuthenticationError, 401),
    ],
)
def test_status_faults(
    client: anthropic.Anthropic,
    standin: RunningStandin,
    kind: str,
    error: type[anthropic.APIStatusError],
    status: int,
) -> None:
    standin.state.inject(kind, count=2)
    for _ in range(2):
        with pytest.raises(error) as caught:
            client.messages.create(**ask("x"))
        assert caught.value.status_code == status
        assert caught.value.response.headers["x-standin"] == "true"
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert "stand-in fault" in body["error"]["message"]
    if kind == "rate_limit":
        assert caught.value.response.headers["retry-after"] == "1"
    assert client.messages.create(**ask("x")).stop_reason == "end_turn"  # faults used up
    assert standin.state.messages_calls == 3


def test_timeout_fault(standin: RunningStandin) -> None:
    standin.state.timeout_delay = 2.0
    standin.state.inject("timeout")
    with anthropic.Anthropic(
        base_url=standin.base_url, api_key="test", max_retries=0, timeout=0.3
    ) as sdk:
        with pytest.raises(anthropic.APITimeoutError):
            sdk.messages.create(**ask("x"))
        assert sdk.messages.create(**ask("x")).stop_reason == "end_turn"


def test_malformed_fault(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    standin.state.inject("malformed")
    raw = client.messages.with_raw_response.create(**ask("x"))
    assert raw.status_code == 200
    with pytest.raises(ValueError):
        json.loads(raw.text())


def test_broken_stream_fault_ends_without_message_stop(
    client: anthropic.Anthropic, standin: RunningStandin
) -> None:
    standin.state.inject("broken_stream")
    events = [e.type for e in client.messages.create(**ask("x"), stream=True)]
    assert events.count("content_block_delta") == 2
    assert "message_stop" not in events and "message_delta" not in events


def test_stream_error_fault_sends_an_error_event(
    client: anthropic.Anthropic, standin: RunningStandin
) -> None:
    standin.state.inject("stream_error")
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        for _ in client.messages.create(**ask("x"), stream=True):
            pass


def test_auth_required(standin: RunningStandin) -> None:
    url = f"{standin.base_url}/v1/messages"
    missing = httpx.post(url, json=ask("x"))
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": missing.json()["error"]["message"]},
    }
    assert httpx.post(url, json=ask("x"), headers={"x-api-key": "k"}).status_code == 200
    bad = anthropic.Anthropic(base_url=standin.base_url, api_key="bad-key", max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(**ask("x"))


def test_invalid_requests_get_anthropic_errors(standin: RunningStandin) -> None:
    headers = {"x-api-key": "k"}
    url = f"{standin.base_url}/v1/messages"
    no_max = httpx.post(
        url, json={"model": MODEL, "messages": ask("x")["messages"]}, headers=headers
    )
    assert no_max.status_code == 400
    assert no_max.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    not_json = httpx.post(url, content=b"{nope", headers=headers)
    assert not_json.status_code == 400
    unknown_tool = httpx.post(
        url,
        json=ask("x", tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "nope"}),
        headers=headers,
    )
    assert unknown_tool.status_code == 400
    missing = httpx.get(f"{standin.base_url}/v2/nothing", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert missing.headers["x-standin"] == "true"


def test_control_endpoints(client: anthropic.Anthropic, standin: RunningStandin) -> None:
    base = standin.base_url
    assert httpx.post(f"{base}/_standin/faults", json={"kind": "bogus"}).status_code == 400
    queued = httpx.post(f"{base}/_standin/faults", json={"kind": "server_error", "count": 1})
    assert queued.json() == {"pending": [["server_error", 1]]}
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**ask("one"))
    client.messages.create(
        **ask("two", metadata={"user_id": "u1"}), extra_headers={"anthropic-beta": "b1"}
    )
    calls = httpx.get(f"{base}/_standin/calls").json()
    assert calls["messages_calls"] == 2
    assert calls["last_requests"][-1] == ask("two", metadata={"user_id": "u1"})
    assert calls["last_headers"][-1]["anthropic-beta"] == "b1"
    assert "authorization" not in calls["last_headers"][-1]
    assert calls["pending_faults"] == []
    assert httpx.post(f"{base}/_standin/reset").json() == {"reset": True}
    assert httpx.get(f"{base}/_standin/calls").json()["messages_calls"] == 0


def test_latency_lets_calls_overlap(standin: RunningStandin) -> None:
    standin.state.latency_seconds = 0.3
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with anthropic.Anthropic(base_url=standin.base_url, api_key="t", max_retries=0) as c:
                c.messages.create(**ask("overlap"))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert standin.state.max_in_flight >= 2
    assert standin.state.in_flight == 0


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=1, max_size=200),
    max_tokens=st.integers(min_value=1, max_value=80),
)
def test_answers_are_deterministic_and_respect_max_tokens(text: str, max_tokens: int) -> None:
    state = StandinState()
    request = ask(text, max_tokens=max_tokens)
    first, second = build_message(state, request), build_message(state, request)
    assert first["content"] == second["content"]
    assert first["usage"]["output_tokens"] <= max_tokens
    unlimited = build_message(state, ask(text, max_tokens=10_000))
    assert unlimited["content"][0]["text"].startswith(first["content"][0]["text"])
    assert (first["stop_reason"] == "max_tokens") == (
        first["content"][0]["text"] != unlimited["content"][0]["text"]
    )
    # Streaming the message reproduces it exactly.
    text_out = "".join(
        data["delta"]["text"]
        for event, data in stream_events(first)
        if event == "content_block_delta"
    )
    assert text_out == first["content"][0]["text"]


@settings(max_examples=40, deadline=None)
@given(a=st.text(min_size=1, max_size=50), b=st.text(min_size=1, max_size=50))
def test_different_questions_get_different_answers(a: str, b: str) -> None:
    state = StandinState()
    answer_a = build_message(state, ask(a))["content"]
    answer_b = build_message(state, ask(b))["content"]
    assert (answer_a == answer_b) == (a == b)
