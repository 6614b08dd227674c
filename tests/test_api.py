"""The cache-native HTTP API over real loopback HTTP (uvicorn + httpx)."""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.cache import SemanticCache
from service.config import Settings
from service.keys import CacheKeys, cache_keys
from tests.conftest import CountingEmbedder, FakeClock, make_settings
from tests.servers import running

ADMIN = {"x-api-key": "admin-secret-1"}
CLIENT_A = {"x-api-key": "client-a-secret"}
CLIENT_B = {"x-api-key": "client-b-secret"}


def keyed_settings(data_dir: Path, **extra: Any) -> Settings:
    keys = [
        {"key": "admin-secret-1", "tenant": "ops", "role": "admin"},
        {"key": "client-a-secret", "tenant": "acme", "role": "client"},
        {"key": "client-b-secret", "tenant": "globex", "role": "client"},
    ]
    return make_settings(data_dir, auth={"keys": keys}, **extra)


@pytest.fixture
def server(tmp_path: Path, embedder: CountingEmbedder) -> Iterator[httpx.Client]:
    settings = keyed_settings(tmp_path / "data", cache={"max_prompt_chars": 2000})
    with (
        running(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def store(
    client: httpx.Client, prompt: str, headers: dict[str, str] = CLIENT_A, **extra: Any
) -> int:
    body = {
        "prompt": prompt,
        "model": "claude-sonnet-4-5",
        "response": f"answer: {prompt}",
        **extra,
    }
    reply = client.post("/v1/cache/entries", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    entry_id: int = reply.json()["id"]
    return entry_id


def lookup(
    client: httpx.Client, prompt: str, headers: dict[str, str] = CLIENT_A, **extra: Any
) -> dict[str, Any]:
    reply = client.post(
        "/v1/cache/lookup",
        json={"prompt": prompt, "model": "claude-sonnet-4-5", **extra},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_store_lookup_read_delete(server: httpx.Client) -> None:
    entry_id = store(server, "How do I reset my password?", tags=["auth"])
    exact = lookup(server, "How do I reset my password?")
    assert exact["status"] == "hit-exact" and exact["entry"]["id"] == entry_id
    assert exact["entry"]["response"] == "answer: How do I reset my password?"
    assert exact["entry"]["created"].endswith("Z") and exact["entry"]["expires"].endswith("Z")
    semantic = lookup(server, "How can I reset my password?")
    assert semantic["status"] == "hit-semantic" and semantic["similarity"] >= 0.95
    miss = lookup(server, "What is the best pizza topping?")
    assert miss["status"] == "miss" and miss["entry"] is None
    strict = lookup(server, "How can I reset my password?", min_similarity=1.0)
    assert strict["status"] == "miss"
    assert server.get(f"/v1/cache/entries/{entry_id}", headers=CLIENT_A).json()["tags"] == ["auth"]
    assert server.delete(f"/v1/cache/entries/{entry_id}", headers=CLIENT_A).status_code == 200
    assert server.get(f"/v1/cache/entries/{entry_id}", headers=CLIENT_A).status_code == 404
    stats = server.get("/v1/cache/stats", headers=CLIENT_A).json()
    assert stats["hits"] == {"exact": 1, "semantic": 1} and stats["misses"] == 2
    assert stats["entries"] == 0
    # The counts are this process's: the response says since when (the ledger has the rest).
    since = datetime.fromisoformat(stats["counted_since"])
    assert since.tzinfo is not None and 0 <= (datetime.now(UTC) - since).total_seconds() < 600


def test_tenants_never_see_each_other(server: httpx.Client) -> None:
    entry_id = store(server, "How do I reset my password?")
    assert lookup(server, "How do I reset my password?", CLIENT_B)["status"] == "miss"
    assert lookup(server, "How can I reset my password?", CLIENT_B)["status"] == "miss"
    assert server.get(f"/v1/cache/entries/{entry_id}", headers=CLIENT_B).status_code == 404
    assert server.delete(f"/v1/cache/entries/{entry_id}", headers=CLIENT_B).status_code == 404
    assert server.get("/v1/cache/stats?tenant=acme", headers=CLIENT_B).status_code == 403
    assert server.get("/v1/cache/stats?tenant=acme", headers=ADMIN).json()["entries"] == 1
    every = server.get("/v1/cache/stats?tenant=*", headers=ADMIN).json()
    assert (every["tenant"], every["entries"]) == ("*", 1)  # `*` was a tenant named "*"
    assert server.get("/v1/cache/stats?tenant=*", headers=CLIENT_B).status_code == 403
    own = server.get("/v1/cache/stats", headers=CLIENT_B).json()
    assert (own["entries"], own["index_entries"]) == (0, 0)  # not the whole index's size


def test_auth_and_admin_roles(server: httpx.Client) -> None:
    store(server, "How do I reset my password?", tags=["auth"])
    assert server.post("/v1/cache/lookup", json={"prompt": "x"}).status_code == 401
    bad = server.post("/v1/cache/lookup", json={"prompt": "x"}, headers={"x-api-key": "wrong-key!"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    forbidden = server.post("/v1/cache/invalidate", json={"tags": ["auth"]}, headers=CLIENT_A)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["type"] == "permission_error"
    bearer = {"authorization": "Bearer admin-secret-1"}
    done = server.post(
        "/v1/cache/invalidate", json={"tags": ["auth"], "tenant": "*"}, headers=bearer
    )
    assert done.status_code == 200 and done.json() == {"removed": 1}


def test_invalidate_by_meaning_over_http(server: httpx.Client) -> None:
    store(server, "How can I reset my password?")
    store(server, "What time does the store open?")
    body = {"similar_to": "How do I reset my password?", "tenant": "acme"}
    assert server.post("/v1/cache/invalidate", json=body, headers=ADMIN).json() == {"removed": 1}
    assert lookup(server, "What time does the store open?")["status"] == "hit-exact"


BAD_INPUTS: list[tuple[str, str, Any, int, str]] = [
    ("post", "/v1/cache/lookup", b"{not json", 400, "not valid JSON"),
    # An unpaired surrogate cannot be encoded: refused at the edge, not a 500 in the cache.
    ("post", "/v1/cache/lookup", b'{"prompt": "bad \\ud800 text"}', 400, "surrogate"),
    (
        "post",
        "/v1/cache/entries",
        b'{"prompt": "bad \\udfff", "model": "m", "response": "x"}',
        400,
        "surrogate",
    ),
    ("post", "/v1/cache/lookup", {"prompt": 42}, 422, "prompt"),
    ("post", "/v1/cache/lookup", {"prompt": "   "}, 422, "empty"),
    ("post", "/v1/cache/lookup", {"prompt": "hi", "min_similarty": 0.9}, 422, "unknown field"),
    ("post", "/v1/cache/lookup", {"prompt": "hi", "min_similarity": 1.5}, 422, "min_similarity"),
    ("post", "/v1/cache/lookup", {"prompt": "hi", "min_similarity": -2}, 422, "min_similarity"),
    ("post", "/v1/cache/lookup", {"prompt": "x" * 3000}, 413, "max_prompt_chars"),
    ("post", "/v1/cache/lookup", {}, 422, "exactly one"),
    (
        "post",
        "/v1/cache/lookup",
        {"messages": [{"role": "assistant", "content": "x"}]},
        422,
        "last message",
    ),
    (
        "post",
        "/v1/cache/entries",
        {"prompt": "hi", "model": "m", "response": "r", "ttl": 0},
        422,
        "ttl",
    ),
    (
        "post",
        "/v1/cache/entries",
        {"prompt": "hi", "model": "m", "response": "r", "ttl": -5},
        422,
        "ttl",
    ),
    ("post", "/v1/cache/entries", {"prompt": "hi", "response": "r"}, 422, "model"),
    ("post", "/v1/cache/entries", {"prompt": "hi", "model": "m", "response": ""}, 422, "empty"),
    (
        "post",
        "/v1/cache/entries",
        {"prompt": "hi", "model": "m", "response": "r", "tags": ["a b"]},
        422,
        "tag",
    ),
    (
        "post",
        "/v1/cache/entries",
        {"prompt": "hi", "model": "m", "response": "r", "tags": ["ok\n"]},
        422,
        "tag",
    ),
    *(
        ("post", "/v1/cache/entries", {"prompt": "hi", "model": "m", "response": r}, 422, w)
        for r, w in [
            ({"content": "text"}, "`content` list"),
            ({"content": [{"text": "untyped"}]}, "needs a `type`"),
            ({"content": [{"type": "text", "text": 5}]}, "`text` as a string"),
            ({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}, "`input`"),
            ({"content": [], "model": 7}, "response.model"),
            ({"content": [], "stop_reason": 1}, "stop_reason"),
            ({"content": [], "usage": {"input_tokens": -5}}, "response.usage"),
        ]
    ),
    ("get", "/v1/cache/entries/12345", None, 404, "no cache entry"),
    ("get", "/v1/cache/entries/not-a-number", None, 422, "entry_id"),
    ("delete", "/v1/cache/entries/777", None, 404, "no cache entry"),
    ("post", "/v1/cache/invalidate", {}, 422, "at least one filter"),
    # A name no entry can have is a typo, not "removed 0"; the message says what a name is.
    ("post", "/v1/cache/invalidate", {"tags": ["a b"]}, 422, "letters (any script)"),
    (
        "post",
        "/v1/cache/entries",
        {"prompt": "hi", "model": "m", "response": "r", "namespace": "a/b"},
        422,
        "letters (any script)",
    ),
    ("post", "/v1/cache/invalidate", {"older_than": "soon"}, 422, "duration"),
    ("get", "/v1/nothing-here", None, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD_INPUTS)
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    server: httpx.Client, method: str, path: str, body: Any, status: int, words: str
) -> None:
    store(server, "How do I reset my password?")
    before = server.get("/v1/cache/stats", headers=ADMIN).json()
    headers = dict(ADMIN if "invalidate" in path else CLIENT_A)
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(body, bytes):
        kwargs["content"] = body
        headers["content-type"] = "application/json"
    elif body is not None:
        kwargs["json"] = body
    reply = server.request(method.upper(), path, **kwargs)
    assert reply.status_code == status, reply.text
    error = reply.json()
    assert error["type"] == "error" and words.lower() in error["error"]["message"].lower()
    after = server.get("/v1/cache/stats", headers=ADMIN).json()
    assert after["entries"] == before["entries"] == 1


def test_names_in_any_script_in_bodies_and_percent_encoded_in_headers(
    server: httpx.Client,
) -> None:
    """Korean users name namespaces, tags and features in Korean. A header cannot carry UTF-8
    through the SDK, so there it is percent-encoded; one name typed in NFC or NFD is one."""
    stored = server.post(
        "/v1/cache/entries",
        json={
            "prompt": "환불 규정",
            "model": "m",
            "response": "7일",
            "namespace": "고객지원",
            "tags": ["결제"],
        },
        headers=CLIENT_A,
    )
    assert stored.status_code == 201, stored.text
    decomposed = unicodedata.normalize("NFD", "고객지원")
    found = server.post(
        "/v1/cache/lookup",
        json={"prompt": "환불 규정", "model": "m", "namespace": decomposed},
        headers=CLIENT_A,
    ).json()
    assert found["status"] == "hit-exact"
    removed = server.post(
        "/v1/cache/invalidate", json={"tags": ["결제"], "tenant": "*"}, headers=ADMIN
    )
    assert removed.json() == {"removed": 1}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for value, ok in [("%EA%B3%A0%EA%B0%9D", True), ("%FF", False), ("a b", False)]:
        reply = server.post(
            "/v1/messages", json=body, headers={**CLIENT_A, "x-cache-namespace": value}
        )
        assert (reply.status_code != 400) == ok, reply.text


def test_body_over_the_server_limit_is_413(tmp_path: Path, embedder: CountingEmbedder) -> None:
    settings = make_settings(tmp_path / "d", server={"max_body_bytes": 2048})
    with running(create_app(settings, embedder=embedder)) as url:
        reply = httpx.post(f"{url}/v1/cache/lookup", json={"prompt": "y" * 5000}, timeout=30)
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"


def test_open_service_allows_anonymous_clients_but_not_admin(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    settings = make_settings(tmp_path / "d")
    with (
        running(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert (
            client.post(
                "/v1/cache/entries", json={"prompt": "p", "model": "m", "response": "r"}
            ).status_code
            == 201
        )
        reply = client.post("/v1/cache/invalidate", json={"all": True})
        assert reply.status_code == 401 and "admin" in reply.json()["error"]["message"]
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_store_that_refuses_writes_is_503_and_reads_go_on(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    settings = keyed_settings(tmp_path / "data")
    with (
        running(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        kept = store(client, "How do I reset my password?")
        database = sqlite3.connect(settings.entries_dir / "cache.db")
        database.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON Cache "
            "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
        )
        database.commit()
        database.close()
        body = {"prompt": "What is a mutex?", "model": "claude-sonnet-4-5", "response": "a lock"}
        refused = client.post("/v1/cache/entries", json=body, headers=CLIENT_A)
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["type"] == "storage_error"
        assert "cannot write the entry store" in error["message"]
        assert "disk is full" in error["message"]
        assert lookup(client, "How do I reset my password?")["entry"]["id"] == kept
        assert lookup(client, "What is a mutex?")["status"] == "miss"
        stats = client.get("/v1/cache/stats", headers=CLIENT_A).json()
        assert (stats["entries"], stats["index_entries"]) == (1, 1)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"ttl": True}, "ttl"),  # strict: `true` was a TTL of one second
        ({"ttl": 400 * 86400}, "at most 31536000 seconds"),  # was cut to a year silently
        ({"usage": {"input_tokens": -1, "output_tokens": 5}}, "usage"),
        ({"usage": {"input_tokens": 1, "tokens": 5}}, "unknown count(s) tokens"),
    ],
)
def test_store_takes_values_as_typed_and_refuses_what_it_would_change(
    server: httpx.Client, extra: dict[str, Any], words: str
) -> None:
    body = {"prompt": "What is a mutex?", "model": "m", "response": "A lock.", **extra}
    reply = server.post("/v1/cache/entries", json=body, headers=CLIENT_A)
    assert reply.status_code == 422, reply.text
    assert words in reply.json()["error"]["message"]
    untyped = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "model": "m"}
    reply = server.post("/v1/cache/entries", json={**untyped, "response": "r"}, headers=CLIENT_A)
    assert reply.status_code == 422 and '"type"' in reply.json()["error"]["message"]
    everything = server.post("/v1/cache/invalidate", json={"all": "yes"}, headers=ADMIN)
    assert everything.status_code == 422


def test_a_missing_or_non_json_body_is_a_400_and_a_wrong_scheme_is_named(
    server: httpx.Client,
) -> None:
    empty = server.post("/v1/cache/lookup", headers=CLIENT_A)
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    text = server.post(
        "/v1/cache/lookup",
        content=b"prompt=hi",
        headers={**CLIENT_A, "content-type": "text/plain"},
    )
    assert text.status_code == 400 and "JSON object" in text.json()["error"]["message"]
    basic = server.get("/v1/cache/stats", headers={"authorization": "Basic YWJjOmRlZg=="})
    assert basic.status_code == 401 and "Bearer scheme (got Basic)" in basic.text


def test_similar_to_is_held_to_the_prompt_limit(tmp_path: Path, embedder: CountingEmbedder) -> None:
    """A 240k-character Korean similar_to held every semantic lookup for minutes."""
    settings = keyed_settings(tmp_path / "data", cache={"max_prompt_chars": 1000})
    with running(create_app(settings, embedder=embedder)) as url:
        body = {"similar_to": "가" * 1001}
        reply = httpx.post(f"{url}/v1/cache/invalidate", json=body, headers=ADMIN, timeout=30)
    assert reply.status_code == 413 and "cache.max_prompt_chars" in reply.text


def test_entries_that_expired_while_the_service_was_down_go_at_start(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    """The purge ran only after its first interval: a restart kept expired entries in the
    stats (and in a rebuilt index) for a minute, or for good under a long interval."""
    settings = make_settings(tmp_path / "d", cache={"purge_interval_seconds": 3600})
    stale = FakeClock(time.time() - 7200)
    earlier = SemanticCache(settings, embedder, clock=stale)
    try:
        earlier.store(prompt_keys_of("How do I reset my password?"), "old", ttl=60)
        earlier.store(prompt_keys_of("What is a mutex?"), "kept", ttl=86_400)
    finally:
        earlier.close()
    with running(create_app(settings, embedder=embedder)) as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/cache/stats").json()["entries"] != 1:
            assert time.monotonic() < deadline, "the expired entry was not purged at start"
            time.sleep(0.1)


def prompt_keys_of(text: str) -> CacheKeys:
    request = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return cache_keys(request, tenant="default")
