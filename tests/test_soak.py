"""Mixed concurrent traffic on loopback, then what must hold of the books and the cache.

Six clients send a fixed, seeded mix: misses, hits and paraphrases in English and Korean,
streams (some left after the first delta), cache-API lookups and writes, admin
invalidations, upstream faults and reads of the operator endpoints, two tenants, one of
them under a tight budget. Bounded by count (6 x 80 operations), not by time.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

from embeddings.routed import RoutedEmbedder
from service.api.app import create_app
from service.ledger import Ledger, LedgerRow
from tests.conftest import make_settings
from tests.servers import running
from tests.standin_server import RunningStandin, running_standin

MODEL = "claude-haiku-4-5"
CLIENTS, OPERATIONS = 6, 80
KEYS = {"acme": "acme-key", "globex": "globex-key"}
ADMIN = "admin-key"
PROMPTS = [
    "How do I reset my password?",
    "How can I reset my password?",
    "What is the capital of France?",
    "Explain the difference between TCP and UDP.",
    "What is 12 times 13?",
    "What is 12 times 14?",
    "비밀번호를 어떻게 재설정하나요?",
    "비밀번호 재설정은 어떻게 하나요?",
    "서울의 인구는 얼마인가요?",
    "부산의 인구는 얼마인가요?",
    "Delete the branch?",
    "Delete the branch.",
]


@dataclass
class Reply:
    op: str
    tenant: str
    status: int
    request_id: str | None = None
    x_cache: str | None = None
    left_early: bool = False
    entry: int | None = None
    error: str | None = None  # the message of an error answered before any event


def client_run(url: str, seed: int, standin: RunningStandin, replies: list[Reply]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(OPERATIONS):
            tenant = rng.choice(list(KEYS))
            key = {"x-api-key": KEYS[tenant]}
            text = rng.choice(PROMPTS)
            body = {
                "model": MODEL,
                "max_tokens": rng.choice([100, 200]),
                "messages": [{"role": "user", "content": text}],
            }
            roll = rng.random()
            if roll < 0.4:
                r = client.post("/v1/messages", json=body, headers=key)
                replies.append(
                    Reply(
                        "ask",
                        tenant,
                        r.status_code,
                        r.headers.get("request-id"),
                        r.headers.get("x-cache"),
                        error=r.json()["error"]["message"] if r.status_code >= 400 else None,
                    )
                )
            elif roll < 0.6:
                leave = rng.random() < 0.3
                with client.stream(
                    "POST", "/v1/messages", json={**body, "stream": True}, headers=key
                ) as r:
                    left = False
                    for line in r.iter_lines():
                        if leave and '"text_delta"' in line:
                            left = True
                            break
                    replies.append(
                        Reply(
                            "stream",
                            tenant,
                            r.status_code,
                            r.headers.get("request-id"),
                            r.headers.get("x-cache"),
                            left_early=left,
                        )
                    )
            elif roll < 0.7:
                r = client.post(
                    "/v1/cache/lookup", json={"prompt": text, "model": MODEL}, headers=key
                )
                replies.append(Reply("lookup", tenant, r.status_code))
            elif roll < 0.8:
                stored = {
                    "prompt": f"{text} (api)",
                    "model": MODEL,
                    "response": tenant,
                    "tags": ["soak"],
                }
                r = client.post("/v1/cache/entries", json=stored, headers=key)
                entry = r.json()["id"] if r.status_code == 201 else None
                replies.append(Reply("store", tenant, r.status_code, entry=entry))
            elif roll < 0.85:
                what = rng.choice([{"tags": ["soak"]}, {"similar_to": text}])
                r = client.post("/v1/cache/invalidate", json=what, headers={"x-api-key": ADMIN})
                replies.append(Reply("invalidate", "ops", r.status_code))
            elif roll < 0.9:
                standin.state.inject(rng.choice(["server_error", "overloaded", "rate_limit"]))
            else:
                path = rng.choice(["/v1/budgets", "/v1/cache/stats", "/metrics", "/healthz"])
                r = client.get(path, headers={"x-api-key": ADMIN})
                replies.append(Reply(path, "ops", r.status_code))


def test_mixed_concurrent_traffic_keeps_the_books_and_the_tenants_apart(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    replies: list[Reply] = []
    with running_standin() as standin:
        standin.state.latency_seconds = 0.02
        standin.state.stream_event_delay = 0.005
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
            auth={
                "keys": [
                    {"key": "acme-key", "tenant": "acme", "role": "client"},
                    {"key": "globex-key", "tenant": "globex", "role": "client"},
                    {"key": ADMIN, "tenant": "ops", "role": "admin"},
                ]
            },
            budgets=[
                {"name": "acme", "scope": "tenant:acme", "period": "daily", "amount_usd": 0.004}
            ],
        )
        with running(create_app(settings, embedder=routed)) as url:
            threads = [
                threading.Thread(target=client_run, args=(url, seed, standin, replies))
                for seed in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
            assert not any(thread.is_alive() for thread in threads), "a client hung"
    with Ledger(settings.ledger_path) as ledger:
        rows = ledger.rows(0, math.inf)
        assert ledger.upstream_pending() == []

    statuses = Counter((r.op, r.status) for r in replies)
    # Every reply is one the caller can act on: no transport error (it would raise), and no
    # 500 but upstream's own, passed on (the faults injected: 500, 529, 429), never ours.
    assert all(status < 500 or status in (500, 502, 503, 504, 529) for _, status in statuses)
    server_errors = [r.error or "" for r in replies if r.op == "ask" and r.status >= 500]
    assert all(e.startswith("upstream Anthropic API unavailable") for e in server_errors)
    # The mix reached every branch it is meant to test.
    upstream_5xx = statuses[("ask", 500)] + statuses[("ask", 529)]
    assert statuses[("ask", 429)] > 0 and upstream_5xx > 0, statuses
    assert any(r.left_early for r in replies), "no stream was left early"

    by_request: defaultdict[str, list[LedgerRow]] = defaultdict(list)
    for row in rows:
        by_request[row.request_id].append(row)
    assert all(len(found) == 1 for found in by_request.values()), "a request billed twice"
    for reply in replies:
        if reply.op in ("ask", "stream") and reply.status == 200:
            assert reply.request_id is not None
            [row] = by_request[reply.request_id]
            assert row.tenant == reply.tenant
            if reply.op == "ask":
                assert row.kind == reply.x_cache
            elif reply.left_early and row.kind in ("miss", "error"):
                assert row.kind == "error" and row.status == 499, row

    # A hit serves only its own tenant's entries: each hit's entry was made by that tenant,
    # through a miss or the cache API (a request coalesced with an identical one in flight
    # names the entry that one's answer was stored as).
    made_by = {row.entry_id: row.tenant for row in rows if row.kind == "miss" and row.entry_id}
    made_by.update({r.entry: r.tenant for r in replies if r.op == "store" and r.entry})
    hits = [row for row in rows if row.kind in ("hit-exact", "hit-semantic")]
    assert len(hits) > 50
    for row in hits:
        assert made_by.get(row.entry_id) == row.tenant, row
