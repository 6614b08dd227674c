"""The exact-hit fast path and the body limit: served inline, counted, refused alike.

`lookup_exact` answers exact hits on the event loop; everything else still goes through
`lookup` in a worker thread. These tests fail if the fast path drops a count, skips the
409 for a changed model, serves an entry removed behind the cache's back, or if the pure
ASGI body limit answers differently from the API's own 413.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.cache import SemanticCache
from service.config import Settings
from service.keys import CacheKeys, prompt_keys
from service.policy import Hit, LookupOptions, Miss
from service.store import EntryStore
from tests.conftest import CountingEmbedder, FakeClock, make_settings
from tests.servers import running

OPTIONS = LookupOptions(min_similarity=0.95, covered_scripts=frozenset({"Latin"}))
Q = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"
MODEL = "claude-sonnet-4-5"


def _keys(text: str) -> CacheKeys:
    return prompt_keys([{"role": "user", "content": text}], model=MODEL, tenant="acme")


def _stats(cache: SemanticCache) -> tuple[int, int, int, int]:
    s = cache.stats("acme")
    return s.hits_exact, s.hits_semantic, s.misses, s.bypasses


# -- SemanticCache.lookup_exact ------------------------------------------------------------


def test_lookup_exact_serves_and_counts_only_exact_hits(cache: SemanticCache) -> None:
    stored = cache.store(_keys(Q), "Use the reset link.")
    hit = cache.lookup_exact(_keys(Q), OPTIONS)
    assert hit is not None and isinstance(hit.decision, Hit) and hit.decision.kind == "exact"
    assert hit.entry is not None and hit.entry.id == stored.id
    assert cache.lookup_exact(_keys(PARAPHRASE), OPTIONS) is None
    assert cache.lookup_exact(_keys("What is the best pizza topping?"), OPTIONS) is None
    assert _stats(cache) == (1, 0, 0, 0)  # a None is not a lookup: `lookup` counts it
    assert isinstance(cache.lookup(_keys(Q), OPTIONS).decision, Hit)
    assert isinstance(cache.lookup(_keys(PARAPHRASE), OPTIONS).decision, Hit)
    assert _stats(cache) == (2, 1, 0, 0)


def test_expired_exact_entry_goes_to_lookup_with_its_reason(
    cache: SemanticCache, clock: FakeClock
) -> None:
    cache.store(_keys(Q), "Use the reset link.", ttl=60)
    clock.advance(61)
    assert cache.lookup_exact(_keys(Q), OPTIONS) is None
    result = cache.lookup(_keys(Q), OPTIONS)
    assert isinstance(result.decision, Miss)
    assert result.decision.reason.startswith("exact match not served")
    assert _stats(cache) == (0, 0, 1, 0)


def test_entry_removed_behind_the_cache_is_not_served(
    cache: SemanticCache, settings: Settings
) -> None:
    stored = cache.store(_keys(Q), "Use the reset link.")
    other = EntryStore(settings.entries_dir)  # another process's view of the same store
    try:
        assert other.drop([stored.id]) == 1
    finally:
        other.close()
    assert cache.lookup_exact(_keys(Q), OPTIONS) is None
    assert not isinstance(cache.lookup(_keys(Q), OPTIONS).decision, Hit)
    assert cache.stats().entries == 0  # `lookup` forgot it


# -- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, embedder: CountingEmbedder) -> Iterator[tuple[httpx.Client, FastAPI]]:
    app = create_app(make_settings(tmp_path / "data"), embedder=embedder)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, app


def _post_lookup(client: httpx.Client, prompt: str) -> httpx.Response:
    return client.post("/v1/cache/lookup", json={"prompt": prompt, "model": MODEL})


def test_exact_hit_is_served_without_the_threaded_lookup_and_counted(
    served: tuple[httpx.Client, FastAPI],
) -> None:
    client, app = served
    body = {"prompt": Q, "model": MODEL, "response": "Use the reset link."}
    assert client.post("/v1/cache/entries", json=body).status_code == 201
    cache: SemanticCache = app.state.promptcache.cache

    def broken(*_: Any) -> Any:
        raise RuntimeError("injected: the threaded lookup is down")

    cache.lookup_rest = broken  # type: ignore[method-assign]
    for _ in range(3):
        reply = _post_lookup(client, Q)
        assert reply.status_code == 200 and reply.json()["status"] == "hit-exact"
    # A paraphrase does need it; the 500 closes the connection, so use a fresh one.
    body = {"prompt": PARAPHRASE, "model": MODEL}
    refused = httpx.post(client.base_url.join("/v1/cache/lookup"), json=body, timeout=30)
    assert refused.status_code == 500
    del cache.lookup_rest
    assert _post_lookup(client, PARAPHRASE).json()["status"] == "hit-semantic"
    stats = client.get("/v1/cache/stats").json()
    assert stats["hits"] == {"exact": 3, "semantic": 1} and stats["misses"] == 0


class _RenamedEmbedder(CountingEmbedder):
    """The same weights under another id: to the cache, a swapped model."""

    @property
    def model_id(self) -> str:
        return "another-embedding-model"


def test_changed_model_serves_exact_hits_and_409s_the_rest(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    body = {"prompt": Q, "model": MODEL, "response": "Use the reset link."}
    with running(create_app(settings, embedder=embedder)) as url:
        assert httpx.post(f"{url}/v1/cache/entries", json=body, timeout=30).status_code == 201
    renamed = _RenamedEmbedder(embedder.inner)
    with (
        running(create_app(settings, embedder=renamed)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        exact = _post_lookup(client, Q)
        assert exact.status_code == 200 and exact.json()["status"] == "hit-exact"
        refused = _post_lookup(client, PARAPHRASE)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["type"] == "conflict_error" and "--reembed" in error["message"]
        stats = client.get("/v1/cache/stats").json()
    assert stats["hits"]["exact"] == 1 and stats["bypasses"] == 1
    assert stats["semantic_available"] is False


# -- the body limit ------------------------------------------------------------------------


@pytest.fixture
def small_limit(tmp_path: Path, embedder: CountingEmbedder) -> Iterator[str]:
    settings = make_settings(tmp_path / "d", server={"max_body_bytes": 2048})
    with running(create_app(settings, embedder=embedder)) as url:
        yield url


def _too_large(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "request_too_large", "message": message}}


def test_declared_length_over_the_limit_is_413(small_limit: str) -> None:
    body = b'{"prompt": "' + b"y" * 5000 + b'"}'
    reply = httpx.post(
        f"{small_limit}/v1/cache/lookup",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 413
    assert reply.json() == _too_large(
        "request body of 5,014 bytes exceeds the limit of 2,048 (server.max_body_bytes)"
    )


def test_the_default_limits_are_the_apis_own() -> None:
    """An undocumented 8 MiB limit on every path refused Messages requests (32 MB upstream)
    and batches (256 MB) that Anthropic takes."""
    server = Settings().server
    assert server.messages_max_body_bytes == 32 * 1024**2
    assert server.batches_max_body_bytes == 256 * 1024**2
    assert server.max_body_bytes == 8 * 1024**2  # the cache API and the rest


def test_each_endpoint_has_its_own_limit(tmp_path: Path, embedder: CountingEmbedder) -> None:
    settings = make_settings(
        tmp_path / "d",
        server={
            "max_body_bytes": 2048,
            "messages_max_body_bytes": 4096,
            "batches_max_body_bytes": 8192,
        },
    )
    prompt = "y" * 3000  # over the default limit, under the other two
    message = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]}
    batch = {"requests": [{"custom_id": "a", "params": message}]}
    with (
        running(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        assert client.post("/v1/cache/lookup", json={"prompt": prompt}).status_code == 413
        # Not refused for size: no upstream key here, so a miss is a 503 saying so.
        assert client.post("/v1/messages", json=message).status_code == 503
        assert client.post("/v1/messages/count_tokens", json=message).status_code == 200
        assert client.post("/v1/messages/batches", json=batch).status_code == 200
        bigger = {**message, "messages": [{"role": "user", "content": "y" * 6000}]}
        three = {"requests": [{"custom_id": c, "params": message} for c in "abc"]}  # 9 KB
        cases: list[tuple[str, Any, str, str]] = [
            ("/v1/messages", bigger, "server.messages_max_body_bytes", "4,096"),
            ("/v1/messages/count_tokens", bigger, "server.messages_max_body_bytes", "4,096"),
            ("/v1/messages/batches", three, "server.batches_max_body_bytes", "8,192"),
        ]
        for path, body, setting, limit in cases:
            reply = client.post(path, json=body)
            assert reply.status_code == 413, path
            error = reply.json()["error"]
            assert error["type"] == "request_too_large"
            assert error["message"].endswith(f"exceeds the limit of {limit} ({setting})")


def _chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_chunked_body_over_the_limit_is_413(small_limit: str) -> None:
    body = b'{"prompt": "' + b"y" * 5000 + b'"}'
    with httpx.Client(base_url=small_limit, timeout=30) as client:
        reply = client.post(
            "/v1/cache/lookup",
            content=_chunks(body),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in reply.request.headers
        assert reply.request.headers["transfer-encoding"] == "chunked"
        assert reply.status_code == 413
        error = reply.json()
        assert error == _too_large(error["error"]["message"])
        # Counted as it arrives: the size is what had come when the limit was passed.
        found = re.fullmatch(
            r"request body of at least ([\d,]+) bytes exceeds the limit of 2,048 "
            r"\(server\.max_body_bytes\)",
            error["error"]["message"],
        )
        assert found is not None and 2048 < int(found.group(1).replace(",", "")) <= len(body)
        # The server is still fine afterwards, and a chunked body under the limit passes.
        small = b'{"prompt": "' + b"y" * 1500 + b'"}'
        ok = client.post(
            "/v1/cache/lookup",
            content=_chunks(small),
            headers={"content-type": "application/json"},
        )
        assert ok.status_code == 200 and ok.json()["status"] == "miss"


def test_a_hit_reads_its_entry_without_the_stored_vector(
    cache: SemanticCache, settings: Settings
) -> None:
    """The vector stays on disk for rebuilds; a hit does not pay to decode it."""
    stored = cache.store(_keys(Q), "Use the reset link.")
    hit = cache.lookup_exact(_keys(Q), OPTIONS)
    assert hit is not None and hit.entry is not None and hit.entry.embedding is None
    store = EntryStore(settings.entries_dir)
    try:
        full = store.get(stored.id, with_embedding=True)
    finally:
        store.close()
    assert full is not None and full.embedding is not None
    assert full.embedding.shape == (cache.embedder.dim,)
