"""`/v1/messages` end to end: the real anthropic SDK -> promptcache (uvicorn) -> the stand-in."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import socket
import sqlite3
import time
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from service.api.app import create_app
from service.cache import SemanticCache
from service.config import Settings
from service.keys import UPSTREAM_API_VERSION
from service.ledger import Ledger, LedgerRow
from service.pricing import load_prices
from service.proxy import Proxy, Relay
from service.proxy_books import ProxyBooks
from service.proxy_types import Controls
from service.router import Router
from service.standin import MODELS, StandinState
from service.upstream import AnthropicUpstream
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running
from tests.standin_server import RunningStandin, running_standin
from tests.test_ledger import make_row

MODEL = "claude-sonnet-4-6"  # $3 / $15 per million tokens = 3 / 15 micro-dollars per token
KEYS = [
    {"key": "tenant-a-key-1", "tenant": "acme", "role": "client"},
    {"key": "tenant-b-key-1", "tenant": "globex", "role": "client"},
    {"key": "admin-key-123", "tenant": "ops", "role": "admin"},
]


@pytest.fixture(scope="module")
def standin() -> Iterator[RunningStandin]:
    with running_standin(StandinState(timeout_delay=3.0)) as server:
        yield server


class Service:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.clients: list[anthropic.Anthropic] = []

    def sdk(self, key: str = "tenant-a-key-1") -> anthropic.Anthropic:
        client = anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=30)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def ledger_rows(self) -> list[LedgerRow]:
        with Ledger(self.settings.ledger_path) as ledger:
            return ledger.rows(0, math.inf)


def start(
    stack: ExitStack,
    tmp_path: Path,
    embedder: CountingEmbedder,
    standin: RunningStandin,
    **upstream: Any,
) -> Service:
    upstream_settings = {
        "base_url": standin.base_url,
        "api_key": "upstream-key",
        "max_retries": 0,
        "timeout_seconds": 10,
    }
    upstream_settings.update(upstream)
    settings = make_settings(tmp_path / "data", auth={"keys": KEYS}, upstream=upstream_settings)
    url = stack.enter_context(running(create_app(settings, embedder=embedder)))
    service = Service(url, settings)
    stack.callback(service.close)
    return service


@pytest.fixture
def service(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> Iterator[Service]:
    standin.state.reset()
    with ExitStack() as stack:
        yield start(stack, tmp_path, embedder, standin)


NO_STORE = {"cache-control": "no-store"}


def ask(client: anthropic.Anthropic, text: str, **extra: Any) -> Any:
    return client.messages.with_raw_response.create(
        model=extra.pop("model", MODEL),
        max_tokens=extra.pop("max_tokens", 300),
        messages=[{"role": "user", "content": text}],
        **extra,
    )


def test_miss_then_exact_then_semantic_hit_with_ledger_to_the_micro_dollar(
    service: Service, standin: RunningStandin
) -> None:
    client = service.sdk()
    first = ask(client, "How do I reset my password?")
    assert first.headers["x-cache"] == "miss"
    original = first.parse()
    usage = original.usage
    cost = usage.input_tokens * 3 + usage.output_tokens * 15
    assert first.headers["x-promptcache-cost-usd"] == f"{cost / 1e6:.6f}"
    assert first.headers["x-promptcache-saved-usd"] == "0.000000"
    exact = ask(client, "How do I reset my password?")
    assert exact.headers["x-cache"] == "hit-exact"
    served = exact.parse()
    assert served.model_dump(exclude={"id"}) == original.model_dump(exclude={"id"})
    assert served.id != original.id  # its own id, as the API gives; x-cache-entry names the entry
    assert exact.headers["x-cache-entry"] == first.headers["x-cache-entry"]
    assert exact.headers["x-promptcache-saved-usd"] == f"{cost / 1e6:.6f}"
    semantic = ask(client, "How can I reset my password?")
    assert semantic.headers["x-cache"] == "hit-semantic"
    assert float(semantic.headers["x-cache-similarity"]) >= 0.95
    assert semantic.parse().content == original.content
    assert semantic.headers["x-promptcache-model"] == MODEL
    assert standin.state.messages_calls == 1

    miss, exact_row, semantic_row = service.ledger_rows()
    assert (miss.kind, exact_row.kind, semantic_row.kind) == ("miss", "hit-exact", "hit-semantic")
    assert miss.cost_micros == miss.baseline_micros == cost
    assert (miss.input_tokens, miss.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert (
        exact_row.cost_micros == 0
        and exact_row.saved_exact_micros == cost == exact_row.baseline_micros
    )
    assert semantic_row.cost_micros == 0 and semantic_row.saved_semantic_micros == cost
    assert semantic_row.similarity is not None and semantic_row.similarity >= 0.95
    assert {r.tenant for r in (miss, exact_row, semantic_row)} == {"acme"}


def test_a_cut_off_answer_not_stored_over_a_complete_one_names_no_entry(
    service: Service, standin: RunningStandin
) -> None:
    """The complete answer stays cached; the cut-off one is not stored, so its row and its
    headers must not name the complete entry (whose usage prices other savings)."""
    client = service.sdk()
    complete = ask(client, "Tell me about tides and the moon.", max_tokens=300)
    cut = ask(client, "Tell me about tides and the moon.", max_tokens=5)
    assert cut.headers["x-cache"] == "miss" and cut.parse().stop_reason == "max_tokens"
    assert "x-cache-entry" in complete.headers and "x-cache-entry" not in cut.headers
    first, second = service.ledger_rows()
    assert first.entry_id == int(complete.headers["x-cache-entry"]) and second.entry_id is None
    again = ask(client, "Tell me about tides and the moon.", max_tokens=300)
    assert again.headers["x-cache-entry"] == complete.headers["x-cache-entry"]


def test_streaming_relay_store_replay_and_broken_stream(
    service: Service, standin: RunningStandin
) -> None:
    client = service.sdk()
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Explain what a mutex is in two sentences."}],
    }
    with client.messages.stream(**params) as stream:
        streamed = stream.get_final_message()
    assert standin.state.messages_calls == 1
    stored = ask(client, params["messages"][0]["content"])
    assert stored.headers["x-cache"] == "hit-exact"
    same = {"exclude": {"id"}}
    assert stored.parse().model_dump(**same) == streamed.model_dump(**same)
    with client.messages.stream(**params) as stream:
        replayed = stream.get_final_message()
    assert replayed.model_dump(**same) == streamed.model_dump(**same)
    assert len({streamed.id, stored.parse().id, replayed.id}) == 3
    assert standin.state.messages_calls == 1
    raw = httpx.post(
        f"{service.url}/v1/messages",
        json={**params, "stream": True},
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert raw.headers["x-cache"] == "hit-exact"
    events = [
        line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")
    ]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(events)

    standin.state.inject("broken_stream")
    broken = {
        **params,
        "messages": [{"role": "user", "content": "Describe the water cycle briefly."}],
    }
    with pytest.raises(anthropic.APIError), client.messages.stream(**broken) as stream:
        stream.get_final_message()
    lookup = httpx.post(
        f"{service.url}/v1/cache/lookup",
        json={"prompt": "Describe the water cycle briefly.", "model": MODEL},
        headers={"x-api-key": "tenant-a-key-1"},
    ).json()
    assert lookup["status"] == "miss"
    assert service.ledger_rows()[-1].kind == "error"


def test_router_picks_a_tier_and_never_changes_an_explicit_model(
    service: Service, standin: RunningStandin
) -> None:
    client = service.sdk()
    routed = ask(client, "Translate 'good morning' into French.", model="auto")
    assert routed.headers["x-promptcache-model"] == service.settings.router.cheap_model
    assert standin.state.last_requests[-1]["model"] == service.settings.router.cheap_model
    hard = (
        "Our Go service deadlocks under load. Here is the code:\n```go\nmu.Lock()\nch <- v\n"
        "mu.Unlock()\n```\nWhy does this race condition happen, and how should we redesign the "
        "locking? Analyse the trade-offs step by step."
    )
    ask(client, hard, model="auto")
    assert standin.state.last_requests[-1]["model"] == service.settings.router.strong_model
    ask(client, "Translate 'good night' into French.", model="claude-opus-4-6")
    assert standin.state.last_requests[-1]["model"] == "claude-opus-4-6"
    rows = service.ledger_rows()
    assert rows[0].route_tier == "cheap" and rows[0].route_reasons
    assert rows[0].model_requested == "auto" and rows[0].baseline_micros > rows[0].cost_micros
    assert rows[0].saved_routing_micros == rows[0].baseline_micros - rows[0].cost_micros
    assert rows[2].route_tier is None and rows[2].model_used == "claude-opus-4-6"
    # A task hint can send the same request to another tier: it is part of a routed key
    # (the cheap answer above was served to a code_generation request before).
    hint = {"x-promptcache-task": "code-generation"}
    hinted = ask(client, "Translate 'good morning' into French.", model="auto", extra_headers=hint)
    assert hinted.headers["x-cache"] == "miss"
    assert hinted.headers["x-promptcache-model"] != service.settings.router.cheap_model
    again = ask(client, "Translate 'good morning' into French.", model="auto", extra_headers=hint)
    assert again.headers["x-cache"] == "hit-exact"
    assert again.headers["x-promptcache-model"] == hinted.headers["x-promptcache-model"]
    # A named model goes where it is named, hint or not: the hint stays out of its key.
    pinned = ask(
        client, "Translate 'good night' into French.", model="claude-opus-4-6", extra_headers=hint
    )
    assert pinned.headers["x-cache"] == "hit-exact"


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("rate_limit", 429),
        ("server_error", 500),
        ("overloaded", 529),
        ("timeout", 504),
        ("malformed", 502),
        ("auth", 502),
    ],
)
def test_upstream_faults_map_to_statuses_and_store_nothing(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin, fault: str, status: int
) -> None:
    standin.state.reset()
    with ExitStack() as stack:
        service = start(stack, tmp_path, embedder, standin, timeout_seconds=1.0)
        standin.state.inject(fault)
        reply = httpx.post(
            f"{service.url}/v1/messages",
            json={
                "model": MODEL,
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "Hello there"}],
            },
            headers={"x-api-key": "tenant-a-key-1"},
            timeout=30,
        )
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert body["type"] == "error" and body["error"]["message"]
        if fault == "auth":
            assert "ANTHROPIC_API_KEY" in body["error"]["message"]
        stats = httpx.get(
            f"{service.url}/v1/cache/stats", headers={"x-api-key": "admin-key-123"}
        ).json()
        assert stats["entries"] == 0
        assert service.ledger_rows()[-1].kind == "error"
        assert service.ledger_rows()[-1].status == status
        # The client can find the error's ledger row, and waits as upstream asked.
        assert reply.headers["request-id"] == service.ledger_rows()[-1].request_id
        if fault == "rate_limit":
            assert reply.headers["retry-after"] == str(standin.state.retry_after_seconds)
        # A 200 whose body cannot be read was billed upstream: the row was $0 and budgets
        # counted nothing. It is billed at the request's bound, as a miss cut off is.
        row = service.ledger_rows()[-1]
        if fault == "malformed":  # 50 output tokens at $15/M are part of the bound
            assert row.cost_micros > 50 * 15 and "upper bound" in (row.error or "")
        else:
            assert row.cost_micros == 0


def test_twenty_concurrent_identical_misses_make_one_upstream_call(
    service: Service, standin: RunningStandin
) -> None:
    standin.state.latency_seconds = 0.5
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What is a monad?"}],
    }

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            calls = [
                client.post("/v1/messages", json=body, headers={"x-api-key": "tenant-a-key-1"})
                for _ in range(20)
            ]
            return await asyncio.gather(*calls)

    try:
        replies = asyncio.run(burst())
    finally:
        standin.state.latency_seconds = 0.0
    assert [r.status_code for r in replies] == [200] * 20
    assert len({r.json()["id"] for r in replies}) == 20  # one answer, twenty message ids
    assert len({json.dumps(r.json()["content"]) for r in replies}) == 1
    assert standin.state.messages_calls == 1
    assert sorted(r.headers["x-cache"] for r in replies).count("miss") == 1
    # Each answer names the one entry it was stored as, and the ledger can tie every saving
    # to it: the followers' rows too.
    assert {r.headers["x-cache-entry"] for r in replies} == {replies[0].headers["x-cache-entry"]}
    rows = service.ledger_rows()
    assert len(rows) == 20 and {row.entry_id for row in rows} == {
        int(replies[0].headers["x-cache-entry"])
    }


def test_an_answer_asked_not_to_be_stored_is_not_shared_with_identical_requests(
    service: Service, standin: RunningStandin
) -> None:
    """Shared, a `no-store` answer was a hit-exact row with a saving and no entry: nothing
    in the ledger it could be traced to. Now only requests that let it be kept lead."""
    standin.state.latency_seconds = 0.5
    body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Why?"}]}
    key = {"x-api-key": "tenant-a-key-1"}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            private = client.post("/v1/messages", json=body, headers={**key, **NO_STORE})
            first = asyncio.create_task(private)
            await asyncio.sleep(0.2)  # the no-store request is upstream
            second = await client.post("/v1/messages", json=body, headers=key)
            return [await first, second]

    try:
        replies = asyncio.run(both())
    finally:
        standin.state.latency_seconds = 0.0
    assert [r.headers["x-cache"] for r in replies] == ["miss", "miss"]
    assert standin.state.messages_calls == 2
    assert all(row.kind == "miss" for row in service.ledger_rows())


def test_tenants_never_share_answers_and_clients_cannot_invalidate(
    service: Service, standin: RunningStandin
) -> None:
    ask(service.sdk("tenant-a-key-1"), "What is our refund policy?")
    other = service.sdk("tenant-b-key-1")
    assert ask(other, "What is our refund policy?").headers["x-cache"] == "miss"
    assert ask(other, "What's our refund policy?").headers["x-cache"] in ("miss", "hit-semantic")
    assert standin.state.messages_calls >= 2
    rows = service.ledger_rows()
    assert [r.tenant for r in rows[:2]] == ["acme", "globex"]
    denied = httpx.post(
        f"{service.url}/v1/cache/invalidate",
        json={"all": True},
        headers={"x-api-key": "tenant-a-key-1"},
    )
    assert denied.status_code == 403
    anonymous = httpx.post(f"{service.url}/v1/messages", json={"model": MODEL})
    assert anonymous.status_code == 401


def test_request_controls_and_bad_requests(service: Service, standin: RunningStandin) -> None:
    headers = {"x-api-key": "tenant-a-key-1"}
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Name three colours."}],
    }
    url = f"{service.url}/v1/messages"
    assert (
        httpx.post(url, json=body, headers={**headers, "cache-control": "no-store"}).headers[
            "x-cache"
        ]
        == "miss"
    )
    assert httpx.post(url, json=body, headers=headers).headers["x-cache"] == "miss"
    assert (
        httpx.post(url, json=body, headers={**headers, "cache-control": "no-cache"}).headers[
            "x-cache"
        ]
        == "bypass"
    )
    assert httpx.post(url, json=body, headers=headers).headers["x-cache"] == "hit-exact"
    beta = httpx.post(url, json=body, headers={**headers, "anthropic-beta": "some-beta-2025"})
    assert beta.headers["x-cache"] == "miss"  # a beta may change the answer: its own key
    other_ns = httpx.post(url, json=body, headers={**headers, "x-cache-namespace": "support"})
    assert other_ns.headers["x-cache"] == "miss"
    hot = {**body, "temperature": 1.0, "messages": [{"role": "user", "content": "Name 3 colours."}]}
    assert httpx.post(url, json=hot, headers=headers).headers["x-cache"] == "miss"
    task = {"model": MODEL, "messages": [{"role": "user", "content": "Is this spam: WIN NOW"}]}
    filled = httpx.post(url, json=task, headers={**headers, "x-promptcache-task": "classification"})
    assert filled.status_code == 200 and standin.state.last_requests[-1]["max_tokens"] == 50
    for bad_body, bad_headers, words in [
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, {}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, {}, "messages"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, {}, "model"),
        (body, {"x-cache-min-similarity": "2"}, "x-cache-min-similarity"),
        (body, {"cache-control": "max-age=soon"}, "max-age"),
        (body, {"cache-control": "max-age=" + "9" * 400}, "max-age"),  # was a 500
        (body, {"cache-control": "max-age=1_0"}, "max-age"),
        (body, {"x-cache-ttl": "0"}, "x-cache-ttl"),
        (body, {"x-cache-min-similarity": "0.9_5"}, "not a number"),
        (body, {"x-promptcache-task": "poetry"}, "unknown task 'poetry'"),
        # Past 2**63 the bound reached SQLite and the row was lost (a 500), with the note
        # left behind at 1.4e20 micro-dollars stopping every later start.
        ({**body, "max_tokens": 2**63}, {}, "max_tokens"),
        ({**body, "temperature": 5}, {}, "temperature"),
        # Went upstream, was stored and billed, then failed as a 500 in the response header.
        ({**body, "model": "클로드"}, {}, "is not a model id"),
        ({**body, "model": "claude\nx-injected: 1"}, {}, "is not a model id"),
        ({**body, "system": 5}, {}, "system"),
        ({**body, "messages": [{"role": "user", "content": [1, 2]}]}, {}, "messages.0.content.0"),
        # metadata is not in the key: the cached answer to `body` answered what the API refuses.
        ({**body, "metadata": {"user": "u1"}}, {}, "metadata.user: Extra inputs"),
        ({**body, "metadata": "u1"}, {}, "metadata: must be a JSON object"),
        ({**body, "metadata": {"user_id": "u" * 257}}, {}, "metadata.user_id"),
    ]:
        calls = standin.state.messages_calls
        reply = httpx.post(url, json=bad_body, headers={**headers, **bad_headers})
        assert reply.status_code == 400, (bad_body, reply.text)
        assert words in reply.json()["error"]["message"]
        assert standin.state.messages_calls == calls  # refused before anything went upstream
    garbage = httpx.post(
        url, content=b"{oops", headers={**headers, "content-type": "application/json"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["type"] == "invalid_request_error"


def test_without_an_upstream_key_misses_say_how_to_set_it(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    settings = make_settings(tmp_path / "d")
    with running(create_app(settings, embedder=embedder)) as url:
        body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/v1/messages", json=body)
        assert reply.status_code == 503 and "ANTHROPIC_API_KEY" in reply.json()["error"]["message"]
        # A misconfiguration no retry can cure: not "overloaded", and the SDK must not retry.
        assert reply.json()["error"]["type"] == "api_error"
        assert reply.headers["x-should-retry"] == "false"
        assert "promptcache" in reply.json()["error"]["message"]
        stored = httpx.post(
            f"{url}/v1/cache/entries", json={"prompt": "hi", "model": MODEL, "response": "hello"}
        )
        assert stored.status_code == 201
        assert httpx.post(f"{url}/v1/messages", json=body).headers["x-cache"] == "hit-exact"


def test_an_answer_paid_for_is_delivered_and_billed_when_storing_it_fails(
    service: Service, standin: RunningStandin
) -> None:
    """The entry store refuses writes (a full disk, as SQLite reports it): the client still
    gets the answer upstream produced, plain and streamed, and the ledger still has its cost."""
    refuse_writes(service.settings.entries_dir / "cache.db", "Cache")
    client = service.sdk()
    plain = ask(client, "How do I reset my password?")
    assert plain.status_code == 200 and plain.headers["x-cache"] == "miss"
    assert plain.parse().content[0].text
    with client.messages.stream(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": "Explain what a mutex is in two sentences."}],
    ) as stream:
        assert stream.get_final_message().content[0].text
    assert standin.state.messages_calls == 2
    rows = service.ledger_rows()
    assert [r.kind for r in rows] == ["miss", "miss"]
    assert all(r.cost_micros > 0 and r.entry_id is None and r.status == 200 for r in rows)
    again = ask(client, "How do I reset my password?")  # nothing was stored, nothing served
    assert again.headers["x-cache"] == "miss" and standin.state.messages_calls == 3


def test_an_answer_is_delivered_when_the_ledger_refuses_its_row(
    service: Service, standin: RunningStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused row is kept beside the ledger and written at the next start; if even that
    fails, it goes to the log whole, so the books can be mended by hand."""
    client = service.sdk()
    ask(client, "How do I reset my password?")  # creates the ledger
    refuse_writes(service.settings.ledger_path, "ledger")
    with caplog.at_level(logging.ERROR, logger="service.proxy_books"):
        miss = ask(client, "What is a mutex?")
        hit = ask(client, "How do I reset my password?")
    assert miss.headers["x-cache"] == "miss" and miss.parse().content[0].text
    assert hit.headers["x-cache"] == "hit-exact"
    kept = [r.getMessage() for r in caplog.records if "written when the service next" in r.msg]
    assert len(kept) == 2 and all("disk is full" in message for message in kept)
    # The miss's own row replaced its note (the bound): its real cost is what gets written.
    noted = {row.kind: row for row in pending(service)}
    assert set(noted) == {"miss", "hit-exact"}
    assert noted["miss"].request_id == miss.headers["request-id"]
    assert noted["miss"].cost_micros == int(Decimal(miss.headers["x-promptcache-cost-usd"]) * 10**6)

    # Neither table takes rows (the disk is full): the row is held, and written with the
    # first row the ledger takes again (it was only logged, and lost from the ledger).
    refuse_writes(service.settings.ledger_path, "upstream_pending")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="service.proxy_books"):
        held = ask(client, "What is a semaphore?")
    assert held.headers["x-cache"] == "miss"
    message = [r.getMessage() for r in caplog.records if "held, and written" in r.msg]
    assert len(message) == 1 and "disk is full" in message[0]
    assert held.headers["request-id"] not in {r.request_id for r in service.ledger_rows()}
    health = httpx.get(f"{service.url}/healthz").json()
    assert health["status"] == "degraded" and health["ledger"].startswith("1 row(s) held")
    allow_writes(service.settings.ledger_path)
    later = ask(client, "What is a deadlock?")
    written = {r.request_id: r for r in service.ledger_rows()}
    assert written[held.headers["request-id"]].kind == "miss"
    assert written[held.headers["request-id"]].cost_micros == int(
        Decimal(held.headers["x-promptcache-cost-usd"]) * 10**6
    )
    assert later.headers["request-id"] in written
    assert httpx.get(f"{service.url}/healthz").json()["ledger"] == "ok"

    with Ledger(service.settings.ledger_path) as ledger:  # the next start
        settled = ledger.settle_interrupted()
    assert sorted(r.kind for r in settled) == ["hit-exact", "miss"]
    assert sorted(r.kind for r in service.ledger_rows()) == ["hit-exact"] + ["miss"] * 4


def test_rows_the_ledger_still_refuses_at_shutdown_are_logged_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The last way out for a held row: the log, whole, so the books can be mended by hand."""
    settings = make_settings(tmp_path / "d")
    with Ledger(settings.ledger_path) as ledger:
        books = ProxyBooks(
            settings, load_prices(None), ledger, clock=time.time, metrics=None, budgets=None
        )
        refuse_writes(settings.ledger_path, "ledger")
        refuse_writes(settings.ledger_path, "upstream_pending")
        row = make_row(request_id="req-full-disk")
        books.record_now(row)
        with caplog.at_level(logging.ERROR, logger="service.proxy_books"):
            books.close()
    logged = [r.getMessage() for r in caplog.records if "to be added by hand" in r.msg]
    assert len(logged) == 1 and '"req-full-disk"' in logged[0]
    assert f'"cost_micros": {row.cost_micros}' in logged[0]


def refuse_writes(database_path: Path, table: str) -> None:
    """SQLite fails every write to `table` as it does on a full disk."""
    database = sqlite3.connect(database_path)
    for event in ("INSERT", "UPDATE"):
        database.execute(
            f"CREATE TRIGGER refuse_{event.lower()}_{table} BEFORE {event} ON {table} "
            "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
        )
    database.commit()
    database.close()


def allow_writes(database_path: Path) -> None:
    """Drop what `refuse_writes` added: the disk has room again."""
    database = sqlite3.connect(database_path)
    names = database.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'refuse_%'"
    ).fetchall()
    for (name,) in names:
        database.execute(f"DROP TRIGGER {name}")
    database.commit()
    database.close()


def test_a_stream_cut_short_is_billed_for_what_it_consumed(
    service: Service, standin: RunningStandin
) -> None:
    """Upstream bills the tokens it processed however the stream ends. The prompt's counts
    come exact from `message_start`; the output is estimated from the text relayed."""
    standin.state.inject("broken_stream")
    body = {
        "model": MODEL,
        "max_tokens": 300,
        "stream": True,
        "messages": [{"role": "user", "content": "Describe the water cycle briefly."}],
    }
    headers = {"x-api-key": "tenant-a-key-1"}
    broken = httpx.post(f"{service.url}/v1/messages", json=body, headers=headers, timeout=30)
    assert "event: error" in broken.text
    relayed = "".join(
        json.loads(line.removeprefix("data: "))["delta"]["text"]
        for line in broken.text.splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    )
    row = service.ledger_rows()[-1]
    assert (row.kind, row.status) == ("error", 502)
    assert row.input_tokens > 0 and row.output_tokens >= 1 and relayed
    assert row.cost_micros == row.baseline_micros == row.input_tokens * 3 + row.output_tokens * 15
    assert row.error is not None and "estimated from the text relayed" in row.error

    # The client hangs up after the first delta of a slow stream.
    standin.state.stream_event_delay = 0.05
    try:
        body["messages"] = [{"role": "user", "content": "Explain what a mutex is."}]
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{service.url}/v1/messages", json=body, headers=headers) as r,
        ):
            for line in r.iter_lines():
                if '"text_delta"' in line:
                    break
        deadline = time.monotonic() + 10
        while len(service.ledger_rows()) < 2:
            assert time.monotonic() < deadline, "no ledger row for the stream the client left"
            time.sleep(0.05)
    finally:
        standin.state.stream_event_delay = 0.0
    left = service.ledger_rows()[-1]
    assert (left.kind, left.status) == ("error", 499)
    assert left.input_tokens > 0 and left.output_tokens >= 1 and left.cost_micros > 0
    assert left.error is not None and left.error.startswith("the client closed the stream")
    lookup = httpx.post(
        f"{service.url}/v1/cache/lookup",
        json={"prompt": "Explain what a mutex is.", "model": MODEL},
        headers=headers,
    ).json()
    assert lookup["status"] == "miss"  # nothing of it was stored


def test_a_follower_is_answered_when_the_client_it_waited_on_hangs_up(
    service: Service, standin: RunningStandin
) -> None:
    """Two identical requests make one upstream call, the second waiting on the first. If
    the first's client leaves mid-stream, the second must not fail with it: it asks again."""
    body = {
        "model": MODEL,
        "max_tokens": 300,
        "stream": True,
        "messages": [{"role": "user", "content": "Explain what a mutex is."}],
    }
    headers = {"x-api-key": "tenant-a-key-1"}
    standin.state.stream_event_delay = 0.05
    try:
        with httpx.Client(timeout=30) as leaving, ThreadPoolExecutor(1) as pool:
            with leaving.stream(
                "POST", f"{service.url}/v1/messages", json=body, headers=headers
            ) as first:
                lines = first.iter_lines()
                next(line for line in lines if line.startswith("event: message_start"))
                waiting = pool.submit(
                    httpx.post,
                    f"{service.url}/v1/messages",
                    json={**body, "stream": False},
                    headers=headers,
                    timeout=60,
                )
                time.sleep(0.3)  # the second request is now waiting on the first
            second = waiting.result()
    finally:
        standin.state.stream_event_delay = 0.0
    assert second.status_code == 200, second.text
    assert second.json()["content"][0]["text"]
    assert standin.state.messages_calls == 2
    kinds = sorted((r.kind, r.status) for r in service.ledger_rows())
    assert kinds == [("error", 499), ("miss", 200)]


def test_closing_a_relay_that_never_started_still_runs_its_cleanup() -> None:
    """A client can leave before the response's first byte; the relay's cleanup (settle the
    requests waiting on it, release the budget hold, bill it) must run all the same."""
    ran: list[str] = []

    async def events() -> AsyncGenerator[bytes, None]:
        try:
            yield b"first"
            yield b"second"
        except BaseException:
            ran.append("abandoned")
            raise
        finally:
            ran.append("cleanup")

    async def close_unstarted() -> None:
        await Relay(events()).aclose()

    asyncio.run(close_unstarted())
    assert ran == ["abandoned", "cleanup"]

    ran.clear()

    async def read_all_then_close() -> list[bytes]:
        relay = Relay(events())
        chunks = [chunk async for chunk in relay]
        await relay.aclose()
        return chunks

    assert asyncio.run(read_all_then_close()) == [b"first", b"second"]
    assert ran == ["cleanup"]


def test_a_client_that_leaves_at_once_leaves_no_request_waiting(
    service: Service, standin: RunningStandin
) -> None:
    """Send a streaming request and hang up without reading: whether or not the response
    had started, an identical request afterwards is answered, and the ledger bills the
    abandoned one."""
    body = json.dumps(
        {
            "model": MODEL,
            "max_tokens": 300,
            "stream": True,
            "messages": [{"role": "user", "content": "Explain what a semaphore is."}],
        }
    ).encode()
    host, port = service.url.removeprefix("http://").split(":")
    standin.state.stream_event_delay = 0.05
    try:
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"x-api-key: tenant-a-key-1\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.2)  # upstream has answered its first event; nothing was read
    finally:
        standin.state.stream_event_delay = 0.0
    again = httpx.post(
        f"{service.url}/v1/messages",
        json={**json.loads(body), "stream": False},
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert again.status_code == 200 and again.headers["x-cache"] in ("miss", "hit-exact")
    deadline = time.monotonic() + 10
    while not any(r.status == 499 for r in service.ledger_rows()):
        assert time.monotonic() < deadline, [(r.kind, r.status) for r in service.ledger_rows()]
        time.sleep(0.05)


def test_a_miss_is_noted_in_the_ledger_while_it_is_upstream(
    service: Service, standin: RunningStandin
) -> None:
    """If the process died now, the next start would bill the noted row (test_serve_process);
    the answer's own row replaces it, and so does an upstream error's."""
    client = service.sdk()
    standin.state.latency_seconds = 1.0
    try:
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(ask, client, "What does a load balancer do?", max_tokens=200)
            deadline = time.monotonic() + 10
            while not (noted := pending(service)):
                assert time.monotonic() < deadline and not reply.done(), "nothing noted"
                time.sleep(0.02)
            miss = reply.result()
    finally:
        standin.state.latency_seconds = 0.0
    [note] = noted
    assert note.request_id == miss.headers["request-id"]
    assert (note.kind, note.status, note.tenant) == ("error", 0, "acme")
    assert note.cost_micros == note.baseline_micros > 0 and note.saved_routing_micros == 0
    assert pending(service) == []
    [row] = service.ledger_rows()
    assert (row.request_id, row.kind) == (note.request_id, "miss")
    assert 0 < row.cost_micros < note.cost_micros  # the bound is above what it cost

    standin.state.inject("server_error")
    with pytest.raises(anthropic.InternalServerError):
        ask(client, "What does a reverse proxy do?")
    assert pending(service) == []
    assert [(r.kind, r.status) for r in service.ledger_rows()] == [("miss", 200), ("error", 500)]


def pending(service: Service) -> list[LedgerRow]:
    with Ledger(service.settings.ledger_path) as ledger:
        return ledger.upstream_pending()


def test_a_miss_cancelled_while_upstream_is_billed_at_its_bound(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    """A task cancelled mid-call (a shutdown's deadline) leaves no answer to bill: the row
    noted before sending is written at once, not at the next start."""
    standin.state.reset()
    standin.state.latency_seconds = 5.0
    settings = make_settings(
        tmp_path / "data",
        upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
    )
    cache = SemanticCache(settings, embedder)
    ledger = Ledger(settings.ledger_path)
    upstream = AnthropicUpstream(settings.upstream)
    prices = load_prices(settings.prices_file)
    proxy = Proxy(settings, cache, upstream, Router(settings.router), prices, ledger)

    async def cancel_midway() -> None:
        body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
        prepared = proxy.prepare(body, tenant="t", controls=Controls(), options=cache.options())
        task = asyncio.create_task(proxy.complete(prepared))
        for _ in range(500):  # the stand-in counts the call from its own thread
            if standin.state.in_flight:
                break
            await asyncio.sleep(0.02)
        assert standin.state.in_flight == 1, "the miss did not reach upstream"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await upstream.aclose()

    try:
        asyncio.run(cancel_midway())
        [row] = ledger.rows(0, math.inf)
        assert ledger.upstream_pending() == []
    finally:
        standin.state.latency_seconds = 0.0
        ledger.close()
        cache.close()
    assert (row.kind, row.status, row.tenant) == ("error", 0, "t")
    assert row.error is not None and row.error.startswith("it was cancelled while")
    assert row.cost_micros > 0


def test_an_upstream_answer_of_the_wrong_shape_is_never_stored(
    service: Service, standin: RunningStandin
) -> None:
    """Well-formed JSON in a shape the API does not send: a stream ends with an `error` event
    and a 502 row (before, the relay broke off mid-body as if on a bug of ours); a message
    whose `content` is not a list of blocks reaches the client as upstream sent it, but is
    not stored, since every later hit would replay it."""
    headers = {"x-api-key": "tenant-a-key-1"}
    body = {
        "model": MODEL,
        "max_tokens": 300,
        "stream": True,
        "messages": [{"role": "user", "content": "Describe the water cycle briefly."}],
    }
    standin.state.inject("bad_event")
    broken = httpx.post(f"{service.url}/v1/messages", json=body, headers=headers, timeout=30)
    assert broken.status_code == 200 and "event: error" in broken.text
    assert "malformed content_block_delta event" in broken.text
    assert "IndexError" not in broken.text  # the parser's words stay in the log
    assert "message_stop" not in broken.text
    [row] = service.ledger_rows()
    assert (row.kind, row.status) == ("error", 502) and row.cost_micros > 0

    standin.state.inject("bad_event")
    odd = httpx.post(
        f"{service.url}/v1/messages", json={**body, "stream": False}, headers=headers, timeout=30
    )
    assert odd.status_code == 200 and odd.json()["content"] == "not a list of blocks"
    assert odd.headers["x-cache"] == "miss" and "x-cache-entry" not in odd.headers
    again = httpx.post(
        f"{service.url}/v1/messages", json={**body, "stream": False}, headers=headers, timeout=30
    )
    assert again.headers["x-cache"] == "miss"  # neither answer was stored (same key)
    assert again.json()["content"][0]["type"] == "text"
    assert standin.state.messages_calls == 3


CITED = {
    "type": "char_location",
    "cited_text": "Water boils at 100 °C at sea level.",
    "document_index": 0,
    "document_title": "Physics notes",
    "start_char_index": 0,
    "end_char_index": 35,
}


def test_an_answer_stored_through_the_cache_api_is_a_whole_message_on_a_hit(
    service: Service,
) -> None:
    """The cache API takes a message with only `content` (and the usage beside it); a hit on
    /v1/messages must still be a message the SDK parses, streamed or not. Before, such a hit
    was a 400 ("message has no usage object") on a request that was valid."""
    client = service.sdk()
    stored = httpx.post(
        f"{service.url}/v1/cache/entries",
        json={
            "prompt": "What is the boiling point of water at sea level?",
            "model": MODEL,
            "response": {"content": [{"type": "text", "text": "100 °C.", "citations": [CITED]}]},
            "usage": {"input_tokens": 12, "output_tokens": 5},
        },
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert stored.status_code == 201, stored.text
    hit = ask(client, "What is the boiling point of water at sea level?")
    assert hit.headers["x-cache"] == "hit-exact"
    message = hit.parse()  # the SDK's own model of a message: every field it needs is there
    assert (message.role, message.content[0].text, message.usage.output_tokens) == (
        "assistant",
        "100 °C.",
        5,
    )
    # The saving is priced from the usage the caller stored: 12 x 3 + 5 x 15 micro-dollars.
    assert hit.headers["x-promptcache-saved-usd"] == "0.000111"
    with client.messages.stream(
        model=MODEL,
        max_tokens=300,
        messages=[{"role": "user", "content": "What is the boiling point of water at sea level?"}],
    ) as stream:
        final = stream.get_final_message().content[0]
    assert final.type == "text" and final.text == "100 °C."
    # Replayed as one citations_delta each (the streamed hit had sent none: citations []).
    assert [c.model_dump(exclude_none=True) for c in final.citations or []] == [CITED]
    untyped = httpx.post(
        f"{service.url}/v1/cache/entries",
        json={"prompt": "x?", "model": MODEL, "response": {"content": [{"text": "no type"}]}},
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert untyped.status_code == 422 and "needs a `type`" in untyped.text


def test_requests_that_shared_a_failed_call_each_get_their_own_error_row_and_id(
    service: Service, standin: RunningStandin
) -> None:
    """The error was one exception for all: the first handler's request-id went to every
    response, and the followers wrote no ledger row."""
    standin.state.latency_seconds = 1.0
    standin.state.inject("server_error")
    body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi?"}]}

    async def three() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            headers = {"x-api-key": "tenant-a-key-1"}
            return await asyncio.gather(
                *(client.post("/v1/messages", json=body, headers=headers) for _ in range(3))
            )

    replies = asyncio.run(three())
    assert [r.status_code for r in replies] == [500, 500, 500]
    assert standin.state.messages_calls == 1
    ids = {r.headers["request-id"] for r in replies}
    rows = service.ledger_rows()
    assert len(ids) == 3 and {row.request_id for row in rows} == ids
    assert {(row.kind, row.status) for row in rows} == {("error", 500)}
    assert sum(row.cost_micros for row in rows) == 0


SDK_ERRORS = [
    ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
    ("server_error", anthropic.InternalServerError, 500, "api_error"),
]


@pytest.mark.parametrize(
    ("fault", "error", "status", "error_type"), SDK_ERRORS, ids=[f[0] for f in SDK_ERRORS]
)
def test_an_sdk_call_costs_upstream_what_it_costs_direct(
    tmp_path: Path,
    embedder: CountingEmbedder,
    standin: RunningStandin,
    fault: str,
    error: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
) -> None:
    """Upstream failing: the SDK raises the class it raises direct and makes as many calls.
    Before, promptcache retried twice itself and answered 429/503, which the SDK retried: one
    SDK call with max_retries=2 made 9 upstream calls, and a 529 became a 503."""
    standin.state.reset()
    standin.state.retry_after_seconds = 0  # the SDK then waits its own short backoff
    try:
        with ExitStack() as stack:
            service = start(stack, tmp_path, embedder, standin, max_retries=2)
            client = anthropic.Anthropic(
                base_url=service.url, api_key="tenant-a-key-1", max_retries=2
            )
            stack.callback(client.close)
            standin.state.inject(fault, count=3)
            with pytest.raises(error) as caught:
                client.messages.create(
                    model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi?"}]
                )
            assert standin.state.messages_calls == 3  # 1 + the client's 2 retries
            assert caught.value.status_code == status
            assert caught.value.body["error"]["type"] == error_type  # type: ignore[index]
            if fault == "rate_limit":
                assert caught.value.response.headers["retry-after-ms"] == "0"
            # The same through a stream: its first event never came, so the status is kept.
            standin.state.inject(fault, count=3)
            yo: Any = [{"role": "user", "content": "Yo?"}]
            with (
                pytest.raises(error),
                client.messages.stream(model=MODEL, max_tokens=50, messages=yo) as stream,
            ):
                stream.get_final_message()
            assert standin.state.messages_calls == 6
    finally:
        standin.state.retry_after_seconds = 1


def test_a_refused_upstream_key_is_not_retried_and_says_whose_key_it_is(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    """Before: a 502 the SDK retried (3 upstream calls) typed `upstream_authentication_error`."""
    standin.state.reset()
    with ExitStack() as stack:
        service = start(stack, tmp_path, embedder, standin, api_key="bad-key", max_retries=2)
        client = anthropic.Anthropic(base_url=service.url, api_key="tenant-a-key-1", max_retries=2)
        stack.callback(client.close)
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi?"}]
            )
    assert standin.state.messages_calls == 1
    assert caught.value.response.headers["x-should-retry"] == "false"
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "api_error"
    assert "promptcache's own upstream key" in error["message"]
    assert "ANTHROPIC_API_KEY" in error["message"]


def test_the_clients_api_version_is_forwarded_and_keys_its_answers(
    service: Service, standin: RunningStandin
) -> None:
    """`anthropic-version` selects the response format. Before, upstream always got
    promptcache's own SDK's version and the client's was ignored, in the key too."""
    client = service.sdk()
    first = ask(client, "Which version answers this?")
    assert first.headers["x-cache"] == "miss"
    assert standin.state.last_headers[-1]["anthropic-version"] == UPSTREAM_API_VERSION
    old = {"anthropic-version": "2023-06-01"}
    other = ask(client, "Which version answers this?", extra_headers=old)
    assert other.headers["x-cache"] == "miss"  # another version: another key
    assert standin.state.last_headers[-1]["anthropic-version"] == "2023-06-01"
    assert ask(client, "Which version answers this?", extra_headers=old).headers["x-cache"] == (
        "hit-exact"
    )
    # A client that sends no version is answered under promptcache's, as before: same key.
    plain = httpx.post(
        f"{service.url}/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": "Which version answers this?"}],
        },
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert plain.headers["x-cache"] == "hit-exact"
    assert plain.headers["x-cache-entry"] == first.headers["x-cache-entry"]
    assert standin.state.messages_calls == 2


def test_a_streamed_hit_builds_the_same_message_as_the_plain_hit(service: Service) -> None:
    """`citations: null` came back from a streamed replay as `[]`."""
    client = service.sdk()
    answer = {
        "content": [{"type": "text", "text": "Plain answer.", "citations": None}],
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    stored = httpx.post(
        f"{service.url}/v1/cache/entries",
        json={"prompt": "Cite nothing, please.", "model": MODEL, "response": answer},
        headers={"x-api-key": "tenant-a-key-1"},
        timeout=30,
    )
    assert stored.status_code == 201, stored.text
    plain = ask(client, "Cite nothing, please.").parse()
    with client.messages.stream(
        model=MODEL, max_tokens=300, messages=[{"role": "user", "content": "Cite nothing, please."}]
    ) as stream:
        streamed = stream.get_final_message()
    assert plain.content[0].citations is None
    assert streamed.model_dump(exclude={"id"}) == plain.model_dump(exclude={"id"})


def test_models_are_relayed_to_upstream(service: Service, standin: RunningStandin) -> None:
    """`client.models.list()` / `retrieve()` were a 404: promptcache neither served nor
    forwarded /v1/models."""
    client = service.sdk()
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == [m[0] for m in MODELS[:2]] and page.has_more
    assert [m.id for m in client.models.list()] == [m[0] for m in MODELS]
    assert client.models.retrieve("claude-haiku-4-5").display_name == "Claude Haiku 4.5"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nonesuch")
    with pytest.raises(anthropic.AuthenticationError):
        service.sdk("not-a-key").models.list()


def test_a_request_over_eight_mib_goes_through_as_it_would_direct(service: Service) -> None:
    """A ~9 MB PDF is under the Messages API's 32 MB; promptcache refused it at 8 MiB."""
    client = service.sdk()
    pdf = base64.b64encode(b"%PDF-1.4 " + b"0" * (7 * 1024**2)).decode()  # 9.3 MB of base64
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
    }
    content: Any = [document, {"type": "text", "text": "Summarize this file."}]
    reply = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert reply.headers["x-cache"] == "miss"
    assert reply.parse().content[0].type == "text"
