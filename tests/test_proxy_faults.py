"""`/v1/messages` when a client or upstream stops at an awkward moment: right after the last
event, mid-body after a 200, while identical requests wait on it. The stand-in serves what it
can; `tests.faulty_upstream` writes the raw HTTP the stand-in cannot."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from service.standin import StandinState
from tests.conftest import CountingEmbedder
from tests.faulty_upstream import FaultyUpstream
from tests.standin_server import RunningStandin, running_standin
from tests.test_proxy import MODEL, Service, start

HEADERS = {"x-api-key": "tenant-a-key-1"}


@pytest.fixture(scope="module")
def standin() -> Iterator[RunningStandin]:
    with running_standin(StandinState(timeout_delay=3.0)) as server:
        yield server


@pytest.fixture
def service(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> Iterator[Service]:
    standin.state.reset()
    with ExitStack() as stack:
        yield start(stack, tmp_path, embedder, standin)


@pytest.fixture
def faulty(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: CountingEmbedder
) -> Iterator[tuple[Service, FaultyUpstream]]:
    upstream = FaultyUpstream()
    # A short read timeout only where a stall is the fault: a held stream must outlast it.
    params = getattr(request.node, "callspec", None)
    stalls = params is not None and params.params.get("mode") == "stall_body"
    with ExitStack() as stack:
        stack.enter_context(upstream.running())
        running = RunningStandin(upstream.base_url, StandinState())
        timeout = 3 if stalls else 60
        yield start(stack, tmp_path, embedder, running, timeout_seconds=timeout), upstream


def body(text: str, *, stream: bool, max_tokens: int = 300) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }


def raw_post(url: str, payload: dict[str, Any]) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(payload).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"x-api-key: tenant-a-key-1\r\n" + f"content-length: {len(data)}\r\n\r\n".encode() + data
    )
    return sock


def rows_settled(service: Service, count: int) -> list[Any]:
    """The ledger once it holds `count` rows (rows of streams are written as they end)."""
    deadline = time.monotonic() + 20
    while len(rows := service.ledger_rows()) < count:
        assert time.monotonic() < deadline, [(r.kind, r.status) for r in rows]
        time.sleep(0.05)
    return rows


def test_a_stream_left_right_after_message_stop_is_a_whole_miss(
    service: Service, standin: RunningStandin
) -> None:
    """Upstream's `message_stop` makes the answer whole: a client that hangs up once it has
    it must not turn the miss into a 499 with estimated usage, unstored, while the request
    waiting on it goes upstream again. Before, the store and the row came after the last
    event was sent, and the hang-up cancelled them."""
    text = "Explain what a mutex is."
    standin.state.stream_event_delay = 0.02
    try:
        with ThreadPoolExecutor(1) as pool:
            leader = raw_post(service.url, body(text, stream=True))
            seen = b""
            while b"message_start" not in seen:
                seen += leader.recv(65536)
            waiting = pool.submit(
                httpx.post,
                f"{service.url}/v1/messages",
                json=body(text, stream=False),
                headers=HEADERS,
                timeout=60,
            )
            time.sleep(0.3)  # the second request is now waiting on the first
            while b"message_stop" not in seen:
                chunk = leader.recv(65536)
                assert chunk, "the stream ended before message_stop"
                seen += chunk
            leader.close()
            follower = waiting.result()
    finally:
        standin.state.stream_event_delay = 0.0
    assert follower.status_code == 200 and follower.headers["x-cache"] == "hit-exact"
    assert standin.state.messages_calls == 1
    rows = rows_settled(service, 2)
    kinds = sorted((r.kind, r.status) for r in rows)
    assert kinds == [("hit-exact", 200), ("miss", 200)], [r.error for r in rows]
    miss = next(r for r in rows if r.kind == "miss")
    assert miss.entry_id is not None and miss.error is None
    assert str(miss.entry_id) == follower.headers["x-cache-entry"]
    again = httpx.post(
        f"{service.url}/v1/messages", json=body(text, stream=False), headers=HEADERS, timeout=30
    )
    assert again.headers["x-cache"] == "hit-exact"


@pytest.mark.parametrize("mode", ["cut_body", "reset_body", "stall_body"])
def test_a_200_whose_body_breaks_off_is_billed_at_the_bound(
    faulty: tuple[Service, FaultyUpstream], mode: str
) -> None:
    """Once upstream has sent 200 it has billed the call, whatever happens to the body: a
    body cut short under its content-length, a reset or a stall is an unreadable answer at
    the request's upper bound, as a cut chunked body is. Before, it was a 503 "cannot reach
    the upstream Anthropic API" (504 for the stall) and a $0 row, for the followers too."""
    service, upstream = faulty
    text = f"Describe the water cycle. MODE:{mode}"
    reply = httpx.post(
        f"{service.url}/v1/messages", json=body(text, stream=False), headers=HEADERS, timeout=30
    )
    assert reply.status_code == 502, reply.text
    assert "reach" not in reply.json()["error"]["message"]
    [row] = service.ledger_rows()
    assert (row.kind, row.status) == ("error", 502)
    assert row.cost_micros > 300 * 15 and "upper bound" in (row.error or "")
    assert upstream.calls == 1


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    sock.settimeout(15)  # a bound on a hang, not a timed expectation
    seen = b""
    while marker not in seen:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended before {marker!r}: {seen[-300:]!r}"
        seen += chunk
    return seen


def test_a_streaming_request_waiting_on_another_is_kept_alive_and_served(
    faulty: tuple[Service, FaultyUpstream],
) -> None:
    """A stream that joins an identical miss in flight gets its 200 and `ping` events while
    it waits, then the answer: before, it got no byte until the leader's answer was whole,
    so an SDK whose read timeout is shorter than the answer failed (and each attempt it
    gave up on still wrote a hit row claiming a saving)."""
    service, upstream = faulty
    text = "Describe the water cycle. MODE:held"
    leader = raw_post(service.url, body(text, stream=True))
    read_until(leader, b"message_start")
    sdk = anthropic.Anthropic(base_url=service.url, api_key="tenant-a-key-1", max_retries=0)
    with ThreadPoolExecutor(1) as pool:

        def follow_with_sdk() -> Any:
            with sdk.messages.stream(
                model=MODEL, max_tokens=300, messages=[{"role": "user", "content": text}]
            ) as stream:
                return stream.response.headers["x-cache"], stream.get_final_message()

        sdk_follower = pool.submit(follow_with_sdk)
        raw_follower = raw_post(service.url, body(text, stream=True))
        head = read_until(raw_follower, b"event: ping")  # the leader is still held
        assert head.startswith(b"HTTP/1.1 200") and b"x-cache: hit-exact" in head
        upstream.release()
        rest = read_until(raw_follower, b"event: message_stop")
        raw_follower.close()
        read_until(leader, b"event: message_stop")
        leader.close()
        x_cache, message = sdk_follower.result()
    sdk.close()
    assert x_cache == "hit-exact" and message.content[0].text.startswith("[held]")
    assert b"[held]" in rest and upstream.calls == 1
    kinds = sorted((r.kind, r.status) for r in rows_settled(service, 3))
    assert kinds == [("hit-exact", 200), ("hit-exact", 200), ("miss", 200)]


def test_a_waiting_request_whose_client_left_is_not_served_nor_sent_upstream(
    faulty: tuple[Service, FaultyUpstream],
) -> None:
    """A request whose client hung up while it waited on an identical one gets no hit row
    claiming a saving, and when the one it waited on is abandoned it does not lead a fresh
    upstream call that nobody would read: a 499 row at no cost, each."""
    service, upstream = faulty
    text = "Explain what a semaphore is. MODE:held"
    leader = raw_post(service.url, body(text, stream=True))
    read_until(leader, b"message_start")
    streaming = raw_post(service.url, body(text, stream=True))
    read_until(streaming, b"event: ping")
    streaming.close()  # a streaming follower leaves once its response started
    plain = raw_post(service.url, body(text, stream=False))
    time.sleep(0.3)  # the plain request is now waiting on the leader
    plain.close()
    rows_settled(service, 1)  # the streaming follower's row
    leader.close()  # the leader's client leaves too: its followers would lead
    rows = rows_settled(service, 3)
    assert sorted((r.kind, r.status) for r in rows) == [("error", 499)] * 3, rows
    assert sorted(r.cost_micros == 0 for r in rows) == [False, True, True]  # the leader's
    assert all(r.saved_micros == 0 for r in rows)
    assert upstream.calls == 1


def test_a_stream_cut_by_max_tokens_inside_tool_input_is_relayed_not_stored(
    faulty: tuple[Service, FaultyUpstream],
) -> None:
    """The API ends a tool_use block on JSON cut mid-way when `max_tokens` falls inside its
    input; the SDK reads what parses of it. Before, promptcache took it for a malformed
    `content_block_stop`: an `error` event and a 502 row with estimated usage."""
    service, upstream = faulty
    text = "Write the notes to a file. MODE:tool_cut"
    sdk = anthropic.Anthropic(base_url=service.url, api_key="tenant-a-key-1", max_retries=0)
    with sdk.messages.stream(
        model=MODEL, max_tokens=30, messages=[{"role": "user", "content": text}]
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    assert message.content[-1].type == "tool_use" and message.content[-1].input == {"path": "a.txt"}
    [row] = rows_settled(service, 1)
    assert (row.kind, row.status, row.error) == ("miss", 200, None)
    assert (row.input_tokens, row.output_tokens) == (100, 50)  # upstream's own usage
    assert row.entry_id is None
    again = httpx.post(
        f"{service.url}/v1/messages",
        json=body(text, stream=False, max_tokens=30),
        headers=HEADERS,
        timeout=30,
    )
    assert again.headers["x-cache"] == "miss" and upstream.calls == 2  # it was not stored
    sdk.close()


def test_a_request_waiting_on_an_overloaded_stream_hears_529(
    service: Service, standin: RunningStandin
) -> None:
    """The stream it waited on ended with upstream's `overloaded_error`; a request that has
    sent nothing yet can still say so with its status. Before, it was a 502, and the SDK
    raised `InternalServerError` instead of `OverloadedError`."""
    text = "Describe the water cycle briefly."
    standin.state.inject("stream_error")
    standin.state.stream_event_delay = 0.3  # the second request joins before the error
    try:
        with ThreadPoolExecutor(1) as pool:
            leader = raw_post(service.url, body(text, stream=True))
            read_until(leader, b"message_start")
            client = service.sdk()
            waiting = pool.submit(
                client.messages.create,
                model=MODEL,
                max_tokens=300,
                messages=[{"role": "user", "content": text}],
            )
            read_until(leader, b"event: error")
            leader.close()
            with pytest.raises(anthropic.OverloadedError):
                waiting.result()
    finally:
        standin.state.stream_event_delay = 0.0
    assert standin.state.messages_calls == 1
    statuses = sorted(r.status for r in rows_settled(service, 2))
    assert statuses == [502, 529]
