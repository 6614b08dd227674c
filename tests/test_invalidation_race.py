"""An answer whose request began before an invalidation that covers it is never stored.

The black-box finding: a miss already upstream when `invalidate namespace=r2-0` ran stored its
answer 22 ms after the invalidation returned, and served it afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from service.api.app import create_app
from service.cache import InvalidateFilter, SemanticCache
from service.config import Settings
from service.errors import Superseded
from service.invalidations import Began
from service.policy import LookupOptions, Miss
from service.standin import StandinState, create_standin_app
from tests.conftest import CountingEmbedder, FakeClock, make_settings
from tests.servers import running
from tests.test_cache import keys

OPTIONS = LookupOptions(min_similarity=0.95, covered_scripts=frozenset({"Latin"}))
Q = "How do I reset my password?"


def test_an_invalidation_since_the_token_keeps_a_covered_answer_out(
    cache: SemanticCache,
) -> None:
    began = cache.began()
    cache.invalidate(InvalidateFilter(namespace="r2-0"))
    with pytest.raises(Superseded, match="namespace"):
        cache.store(keys(Q, namespace="r2-0"), "stale", began=began)
    assert isinstance(cache.lookup(keys(Q, namespace="r2-0"), OPTIONS).decision, Miss)
    # Not covered: another namespace, or a request that began after the invalidation.
    cache.store(keys(Q, namespace="other"), "fine", began=began)
    cache.store(keys(Q, namespace="r2-0"), "fresh", began=cache.began())
    result = cache.lookup(keys(Q, namespace="r2-0"), OPTIONS)
    assert result.entry is not None and result.entry.response == "fresh"


def test_each_filter_of_an_invalidation_covers_answers_in_flight(
    cache: SemanticCache, clock: FakeClock
) -> None:
    def covered(what: InvalidateFilter, **store: Any) -> bool:
        text = store.pop("text", Q)
        began = cache.began()
        clock.advance(10)
        cache.invalidate(what)
        try:
            cache.store(keys(text, **store.pop("keys", {})), "answer", began=began, **store)
        except Superseded:
            return True
        return False

    assert covered(InvalidateFilter(tags=("auth",)), tags=["auth"])
    assert not covered(InvalidateFilter(tags=("auth",)), tags=["billing"])
    assert covered(InvalidateFilter())  # "all": true
    assert covered(InvalidateFilter(tenant="acme"))
    assert not covered(InvalidateFilter(tenant="globex"))
    assert covered(InvalidateFilter(model="claude-sonnet-4-5"))
    assert not covered(InvalidateFilter(model="claude-haiku-4-5"))
    # Taken as created when its request began: 10 s before this invalidation.
    assert covered(InvalidateFilter(older_than=5))
    assert not covered(InvalidateFilter(older_than=60))
    assert covered(InvalidateFilter(similar_to="How can I reset my password?"))
    assert covered(InvalidateFilter(similar_to=Q), keys={"namespace": "x"}, ttl=5)
    assert not covered(InvalidateFilter(similar_to="What time does the store open?"))
    # An invalidation by id names entries that exist, never one stored later.
    assert not covered(InvalidateFilter(ids=(1,)))


def test_a_token_from_a_stored_time_is_covered_across_a_restart(
    settings: Settings, embedder: CountingEmbedder, clock: FakeClock
) -> None:
    """A Message Batch's answers arrive hours later, maybe in another process: its token is
    its creation time, and the invalidations are kept on disk."""
    created = clock()
    clock.advance(60)
    first = SemanticCache(settings, embedder, clock=clock)
    first.invalidate(InvalidateFilter(namespace="docs"))
    first.close()
    clock.advance(60)
    second = SemanticCache(settings, embedder, clock=clock)
    try:
        with pytest.raises(Superseded):
            second.store(keys(Q, namespace="docs"), "stale", began=Began(None, created))
        second.store(keys(Q, namespace="docs"), "fresh", began=Began(None, clock()))
        assert second.began().seq is not None  # tokens taken now compare by sequence
    finally:
        second.close()


class Gate:
    """The stand-in behind a gate: each call to POST /v1/messages waits until the test opens
    it, so a miss is held upstream while the test invalidates (no sleeps, no timing)."""

    def __init__(self, state: StandinState) -> None:
        self.app = create_standin_app(state)
        self.arrived = threading.Event()
        self.arrived_again = threading.Event()  # a second call is held too
        self.opened = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/messages":
            (self.arrived_again if self.arrived.is_set() else self.arrived).set()
            await asyncio.to_thread(self.opened.wait, 30)
        await self.app(scope, receive, send)


ADMIN = {"key": "admin-key-123", "tenant": "acme", "role": "admin"}
CLIENT = {"key": "tenant-a-key-1", "tenant": "acme", "role": "client"}


@pytest.fixture
def gated(tmp_path: Path, embedder: CountingEmbedder) -> Iterator[tuple[str, Gate, StandinState]]:
    state = StandinState()
    gate = Gate(state)
    with ExitStack() as stack:
        upstream = stack.enter_context(running(gate))
        settings = make_settings(
            tmp_path / "data",
            auth={"keys": [ADMIN, CLIENT]},
            upstream={"base_url": upstream, "api_key": "upstream-key", "max_retries": 0},
        )
        url = stack.enter_context(running(create_app(settings, embedder=embedder)))
        yield url, gate, state
        gate.opened.set()


@pytest.mark.parametrize("stream", [False, True])
def test_a_miss_upstream_during_an_invalidation_is_answered_but_not_stored(
    gated: tuple[str, Gate, StandinState], stream: bool
) -> None:
    url, gate, state = gated
    client = anthropic.Anthropic(base_url=url, api_key=CLIENT["key"], max_retries=0)
    namespace = {"x-cache-namespace": "r2-0"}

    def ask() -> str:
        request: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": Q}],
            "extra_headers": namespace,
        }
        if stream:
            with client.messages.stream(**request) as events:
                return events.get_final_message().content[0].text  # type: ignore[union-attr]
        reply = client.messages.with_raw_response.create(**request)
        assert reply.headers["x-cache"] == "miss"
        return reply.parse().content[0].text  # type: ignore[union-attr]

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(ask)
        assert gate.arrived.wait(30)
        removed = httpx.post(
            f"{url}/v1/cache/invalidate",
            headers={"x-api-key": ADMIN["key"]},
            json={"namespace": "r2-0"},
        )
        assert removed.status_code == 200
        gate.opened.set()
        assert first.result(timeout=30)  # its own client still gets the answer
    calls = state.messages_calls
    again = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": Q}],
        extra_headers=namespace,
    )
    assert again.headers["x-cache"] == "miss"
    assert state.messages_calls == calls + 1
    stats = httpx.get(f"{url}/v1/cache/stats", headers={"x-api-key": ADMIN["key"]}).json()
    assert stats["entries"] == 1  # the second answer, asked after the invalidation
    client.close()


def test_a_batch_upstream_during_an_invalidation_delivers_but_does_not_store(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    from tests.standin_server import running_standin
    from tests.test_batches import batch_settings, params, start, submit, text_of, wait_ended

    with running_standin() as standin, ExitStack() as stack:
        standin.state.batch_ready_after_polls = 10**9  # held upstream until the test says
        service = start(stack, batch_settings(tmp_path / "data", standin), embedder)
        client = service.sdk()
        created = submit(client, [("q-0", params(Q))])
        assert standin.state.batch_requests == 1
        removed = httpx.post(
            f"{service.url}/v1/cache/invalidate",
            headers={"x-api-key": "admin-key-123"},
            json={"tenant": "acme", "all": True},
        )
        assert removed.status_code == 200
        standin.state.batch_ready_after_polls = 0
        wait_ended(client, created.id)
        [result] = client.messages.batches.results(created.id)
        assert text_of(result)  # delivered
        [row] = service.ledger_rows(created.id)
        assert (row.kind, row.entry_id) == ("batch", None)  # billed, names no entry
        lookup = httpx.post(
            f"{service.url}/v1/cache/lookup",
            headers={"x-api-key": "tenant-a-key-1"},
            json={"prompt": Q, "model": "claude-sonnet-4-6"},
        )
        assert lookup.json()["status"] == "miss"


def test_a_request_after_an_invalidation_does_not_join_a_miss_that_began_before(
    gated: tuple[str, Gate, StandinState],
) -> None:
    """The answer of the miss in flight is not stored (above); served to an identical request
    that came after the invalidation, it would be the stale answer all the same."""
    url, gate, state = gated
    client = anthropic.Anthropic(base_url=url, api_key=CLIENT["key"], max_retries=0)
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": Q}],
        "extra_headers": {"x-cache-namespace": "r2-1"},
    }
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.messages.with_raw_response.create, **request)
        assert gate.arrived.wait(30)
        removed = httpx.post(
            f"{url}/v1/cache/invalidate",
            headers={"x-api-key": ADMIN["key"]},
            json={"namespace": "r2-1"},
        )
        assert removed.status_code == 200
        second = pool.submit(client.messages.with_raw_response.create, **request)
        # It goes upstream itself; had it joined the first, it would never arrive (a bound
        # for the failure, not a timing the test relies on).
        assert gate.arrived_again.wait(30)
        gate.opened.set()
        assert first.result(timeout=30).headers["x-cache"] == "miss"
        assert second.result(timeout=30).headers["x-cache"] == "miss"
    assert state.messages_calls == 2
    client.close()
