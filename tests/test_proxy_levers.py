"""Cost levers on real misses: prompt-caching breakpoints and context budgets, in the ledger."""

from __future__ import annotations

import math
from pathlib import Path

import httpx

from service.api.app import create_app
from service.ledger import Ledger
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running
from tests.standin_server import running_standin

MODEL = "claude-sonnet-4-6"
LONG_SYSTEM = " ".join(
    f"Policy rule {i}: answer politely and cite section {i}." for i in range(300)
)


def test_breakpoints_give_cache_reads_and_context_budget_trims(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    with running_standin() as standin:
        settings = make_settings(
            tmp_path / "data",
            upstream={"base_url": standin.base_url, "api_key": "k", "max_retries": 0},
        )
        with (
            running(create_app(settings, embedder=embedder)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            for question in ("What is rule 7?", "What is rule 12?"):
                body = {
                    "model": MODEL,
                    "max_tokens": 100,
                    "system": LONG_SYSTEM,
                    "messages": [{"role": "user", "content": question}],
                }
                assert client.post("/v1/messages", json=body).status_code == 200
            sent = standin.state.last_requests[-1]
            assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}
            history = [
                {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 200}
                for i in range(9)
            ]
            long_chat = {"model": MODEL, "max_tokens": 50, "messages": history}
            trimmed = client.post(
                "/v1/messages", json=long_chat, headers={"x-promptcache-context-budget": "800"}
            )
            assert trimmed.status_code == 200
            assert len(standin.state.last_requests[-1]["messages"]) < len(history)
            again = client.post(
                "/v1/messages", json=long_chat, headers={"x-promptcache-context-budget": "800"}
            )
            assert again.headers["x-cache"] == "miss"  # a trimmed answer is never stored
            generous = {
                "model": MODEL,
                "max_tokens": 4000,
                "messages": [{"role": "user", "content": "Is this spam: FREE PRIZE"}],
            }
            kept = client.post(
                "/v1/messages", json=generous, headers={"x-promptcache-task": "classification"}
            )
            assert kept.status_code == 200
            assert standin.state.last_requests[-1]["max_tokens"] == 4000  # never cut
            report = client.get("/v1/usage/report").json()  # today
            [opportunity] = report["max_tokens_opportunities"]
            assert opportunity == {
                "task": "classification",
                "table_max_tokens": 50,
                "requests": 1,
                "largest_max_tokens": 4000,
            }
        with Ledger(settings.ledger_path) as ledger:
            first, second, cut, _, _ = ledger.rows(0, math.inf)
    assert first.cache_breakpoints >= 1 and first.cache_creation_tokens > 0
    assert first.saved_prompt_cache_micros < 0  # the write premium, shown as such
    assert second.cache_read_tokens > 0 and second.saved_prompt_cache_micros > 0
    assert cut.context_tokens_removed > 0 and cut.entry_id is None
