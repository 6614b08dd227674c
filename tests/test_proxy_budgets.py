"""Budgets through the whole service: a miss that could overshoot is refused, hits still served."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from service.api.app import create_app
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running
from tests.standin_server import running_standin

MODEL = "claude-sonnet-4-6"


def test_budget_refuses_misses_but_serves_hits(tmp_path: Path, embedder: CountingEmbedder) -> None:
    with running_standin() as standin:
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
            budgets=[{"name": "daily-cap", "period": "daily", "amount_usd": 0.01}],
        )
        with (
            running(create_app(settings, embedder=embedder)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):

            def ask(text: str, max_tokens: int) -> httpx.Response:
                body = {
                    "model": MODEL,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": text}],
                }
                return client.post("/v1/messages", json=body)

            assert ask("How do I reset my password?", 200).headers["x-cache"] == "miss"
            assert ask("How do I reset my password?", 200).headers["x-cache"] == "hit-exact"
            refused = ask("Write a long essay about the history of tea.", 1000)
            assert refused.status_code == 429
            assert refused.headers["x-should-retry"] == "false"
            error = refused.json()["error"]
            assert error["type"] == "budget_exceeded" and "daily-cap" in error["message"]
            assert standin.state.messages_calls == 1
            assert ask("How can I reset my password?", 200).headers["x-cache"] == "hit-semantic"
            report = client.get("/v1/usage/report", params={"day": "2026-11-28"})
            assert report.status_code == 200


def test_concurrent_misses_cannot_overshoot_together(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    """Each miss holds its cost bound until its row is in the ledger: five slow misses that
    each fit the budget alone, and together do not, are not all let through."""
    with running_standin() as standin:
        standin.state.latency_seconds = 1.0
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
            # Each bound is about $0.0045 (300 output tokens at $15/M plus the prompt).
            budgets=[{"name": "tight", "period": "daily", "amount_usd": 0.01}],
        )
        with running(create_app(settings, embedder=embedder)) as url:

            async def burst() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    calls = [
                        client.post(
                            "/v1/messages",
                            json={
                                "model": MODEL,
                                "max_tokens": 300,
                                "messages": [{"role": "user", "content": f"Question {i}?"}],
                            },
                        )
                        for i in range(5)
                    ]
                    return await asyncio.gather(*calls)

            replies = asyncio.run(burst())
            statuses = sorted(r.status_code for r in replies)
            assert statuses == [200, 200, 429, 429, 429], statuses
            held = next(r for r in replies if r.status_code == 429).json()["error"]["message"]
            assert "held by requests in flight" in held
            assert standin.state.messages_calls == 2
            # The holds are released once the answers are recorded: the budget's own
            # spend decides again.
            after = httpx.post(
                f"{url}/v1/messages",
                json={
                    "model": MODEL,
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": "Hi?"}],
                },
                timeout=30,
            )
            assert after.status_code == 200


def test_budgets_endpoint_shows_spend_and_what_a_miss_in_flight_holds(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    admin, acme = {"x-api-key": "admin-key"}, {"x-api-key": "acme-key"}
    with running_standin() as standin:
        standin.state.latency_seconds = 1.0
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
            auth={
                "keys": [
                    {"key": "admin-key", "tenant": "ops", "role": "admin"},
                    {"key": "acme-key", "tenant": "acme", "role": "client"},
                ]
            },
            budgets=[
                {"name": "all", "period": "monthly", "amount_usd": 10},
                {"name": "acme", "scope": "tenant:acme", "period": "daily", "amount_usd": 1},
                {"name": "globex", "scope": "tenant:globex", "period": "daily", "amount_usd": 1},
            ],
        )
        with running(create_app(settings, embedder=embedder)) as url:

            def budgets(headers: dict[str, str]) -> dict[str, dict[str, object]]:
                reply = httpx.get(f"{url}/v1/budgets", headers=headers, timeout=10)
                assert reply.status_code == 200, reply.text
                return {b["name"]: b for b in reply.json()["budgets"]}

            body = {
                "model": MODEL,
                "max_tokens": 300,
                "messages": [{"role": "user", "content": "What is a budget hold?"}],
            }
            with ThreadPoolExecutor(1) as pool:
                miss = pool.submit(
                    httpx.post, f"{url}/v1/messages", json=body, headers=acme, timeout=30
                )
                deadline = time.monotonic() + 5
                while (held := budgets(admin))["acme"]["held_micros"] == 0:
                    assert time.monotonic() < deadline and not miss.done()
                    time.sleep(0.05)
                assert held["all"]["held_micros"] == held["acme"]["held_micros"] > 0
                assert held["globex"]["held_micros"] == 0
                assert held["acme"]["spent_micros"] == 0
                scraped = httpx.get(f"{url}/metrics", headers=admin, timeout=10).text
                assert 'promptcache_budget_held_usd{budget="globex"} 0.0' in scraped
                gauge = re.search(r'promptcache_budget_held_usd\{budget="acme"\} (\S+)', scraped)
                assert gauge is not None and float(gauge.group(1)) > 0
                assert miss.result().status_code == 200
            after = budgets(admin)
            mine = budgets(acme)
            nobody = httpx.get(f"{url}/v1/budgets", timeout=10)
    spent = after["acme"]["spent_micros"]
    assert isinstance(spent, int) and 0 < spent < held["acme"]["held_micros"]  # type: ignore[operator]
    assert (after["acme"]["held_micros"], after["all"]["spent_micros"]) == (0, spent)
    assert after["acme"]["spent_usd"] == spent / 1_000_000
    assert after["acme"]["hard_limit_micros"] == 1_000_000
    # A client sees the budgets that can refuse its requests, not another tenant's.
    assert sorted(mine) == ["acme", "all"]
    assert nobody.status_code == 401


def test_a_model_without_a_price_cannot_pass_a_hard_limit_at_an_estimate_of_zero(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    """Its bound was 0, so it always fitted: a spent budget still let unknown models through."""
    with running_standin() as standin:
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
            budgets=[
                {"name": "cap", "scope": "feature:search", "period": "daily", "amount_usd": 1},
                {
                    "name": "watch",
                    "scope": "feature:chat",
                    "period": "daily",
                    "amount_usd": 1,
                    "alert_only": True,
                },
            ],
        )
        with running(create_app(settings, embedder=embedder)) as url:

            def ask(feature: str) -> httpx.Response:
                body = {
                    "model": "claude-unreleased-9",
                    "max_tokens": 50,
                    "messages": [{"role": "user", "content": f"Hello from {feature}?"}],
                }
                headers = {"x-promptcache-feature": feature}
                return httpx.post(f"{url}/v1/messages", json=body, headers=headers, timeout=30)

            refused = ask("search")
            assert refused.status_code == 422, refused.text
            message = refused.json()["error"]["message"]
            assert "'claude-unreleased-9' has no price" in message and "'cap'" in message
            assert standin.state.messages_calls == 0
            for feature in ("chat", "other"):  # alert-only, or no budget: served, and marked
                served = ask(feature)
                assert served.status_code == 200 and served.headers["x-cache"] == "miss"
                assert served.headers["x-promptcache-unpriced"] == "true"
            priced = httpx.post(
                f"{url}/v1/messages",
                json={
                    "model": MODEL,
                    "max_tokens": 50,
                    "messages": [{"role": "user", "content": "Hi?"}],
                },
                headers={"x-promptcache-feature": "search"},
                timeout=30,
            )
            assert priced.status_code == 200 and "x-promptcache-unpriced" not in priced.headers
