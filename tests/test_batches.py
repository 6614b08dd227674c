"""Message Batches end to end: the real SDK -> promptcache (uvicorn) -> the stand-in's batches.

The prompts are "How do I <topic>?" with 80 unrelated topics (pairwise cosine similarity
under 0.61 with the bundled model) and their paraphrases "How can I <topic>?" (0.98 or more,
every guard passing), so which requests are duplicates is known in advance.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import service.cli.main as cli_main
from service.api.app import create_app
from service.api.batch_routes import install_batches
from service.batch_store import BatchRecord, BatchStore, RequestRow, parse_requests
from service.config import Settings
from service.errors import InvalidRequest
from service.ledger import Ledger, LedgerRow
from service.proxy_types import Controls
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running
from tests.standin_server import RunningStandin, running_standin

MODEL = "claude-sonnet-4-6"  # 3 / 15 micro-dollars per input / output token; batch: half
KEYS = [
    {"key": "tenant-a-key-1", "tenant": "acme", "role": "client"},
    {"key": "tenant-b-key-1", "tenant": "globex", "role": "client"},
    {"key": "admin-key-123", "tenant": "ops", "role": "admin"},
]
TOPICS = (
    "reset my password", "export a spreadsheet to CSV", "enable two-factor authentication",
    "change my billing address", "cancel my subscription", "invite a teammate to the workspace",
    "connect a custom domain", "restore a deleted file", "update my profile picture",
    "turn off email notifications", "download my invoices", "merge two contacts",
    "set up a recurring meeting", "share a folder with read-only access",
    "change the default language", "clear the browser cache", "install the desktop app",
    "sync my calendar with my phone", "rename a project", "archive an old channel",
    "add a signature to my emails", "print a boarding pass", "track a lost package",
    "return a damaged item", "book a table for dinner", "water a cactus",
    "bake sourdough bread", "tune a guitar", "change a flat tire", "brew cold coffee",
    "fold a fitted sheet", "remove a wine stain", "plant tomato seedlings",
    "train a puppy to sit", "write a cover letter", "negotiate a higher salary",
    "prepare for a job interview", "learn touch typing", "meditate before sleep",
    "stretch after running", "clean a cast iron pan", "sharpen a kitchen knife",
    "descale an espresso machine", "hang a heavy mirror", "fix a squeaky door hinge",
    "unclog a bathroom sink", "paint a bedroom wall", "insulate an attic",
    "choose a winter jacket", "pack for a long flight", "convert a video to GIF",
    "compress a large PDF", "recover a corrupted USB drive", "speed up a slow laptop",
    "set up a home VPN", "create a strong passphrase", "write a haiku about autumn",
    "explain photosynthesis to a child", "summarize the French revolution",
    "solve a sudoku puzzle", "memorize a speech", "start journaling every day",
    "organize a garage", "plan a birthday party", "budget for groceries",
    "care for a bonsai tree", "knit a simple scarf", "identify constellations at night",
    "start a compost bin", "make fresh pasta", "roast a whole chicken",
    "whiten my teeth safely", "fall asleep faster", "stop procrastinating",
    "improve my handwriting", "read music notation", "draw a realistic portrait",
    "photograph the moon", "edit a podcast episode", "build a birdhouse",
)  # fmt: skip
# Hangul is outside the bundled model's scripts: exact matches only.
KOREAN = ("비밀번호를 어떻게 재설정하나요?", "지난달 청구서를 어디서 받을 수 있나요?")


def do(topic: str) -> str:
    return f"How do I {topic}?"


def can(topic: str) -> str:
    return f"How can I {topic}?"


def params(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


@pytest.fixture(scope="module")
def standin() -> Iterator[RunningStandin]:
    with running_standin() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_standin(standin: RunningStandin) -> Iterator[None]:
    standin.state.reset()
    standin.state.batch_ready_after_polls = 1
    yield
    standin.state.batch_ready_after_polls = 1


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

    def ledger_rows(self, batch_id: str) -> list[LedgerRow]:
        with Ledger(self.settings.ledger_path) as ledger:
            rows = ledger.rows(0, math.inf)
        return [row for row in rows if row.request_id.startswith(f"{batch_id}/")]


def batch_settings(data_dir: Path, standin: RunningStandin) -> Settings:
    upstream = {
        "base_url": standin.base_url,
        "api_key": "upstream-key",
        "max_retries": 0,
        "timeout_seconds": 10,
    }
    polling = {"poll_initial_seconds": 0.05, "poll_max_seconds": 0.2}
    return make_settings(data_dir, auth={"keys": KEYS}, upstream=upstream, batches=polling)


def acme_budget_settings(tmp_path: Path, standin: RunningStandin, usd: float) -> Settings:
    """`batch_settings` with one daily hard-limit budget of `usd` on tenant acme."""
    budget = {"name": "cap", "scope": "tenant:acme", "period": "daily", "amount_usd": usd}
    return batch_settings(tmp_path / "data", standin).model_copy(
        update={"budgets": make_settings(tmp_path, budgets=[budget]).budgets}
    )


def start(stack: ExitStack, settings: Settings, embedder: CountingEmbedder) -> Service:
    app = create_app(settings, embedder=embedder)
    install_batches(app)  # a no-op once create_app installs it itself
    service = Service(stack.enter_context(running(app)), settings)
    stack.callback(service.close)
    return service


@pytest.fixture
def service(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> Iterator[Service]:
    with ExitStack() as stack:
        yield start(stack, batch_settings(tmp_path / "data", standin), embedder)


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.processing_status}"
        time.sleep(0.05)


def submit(client: anthropic.Anthropic, requests: list[tuple[str, dict[str, Any]]]) -> Any:
    items: Any = [{"custom_id": cid, "params": p} for cid, p in requests]
    return client.messages.batches.create(requests=items)


def text_of(result: Any) -> str:
    assert result.result.type == "succeeded", result.result
    return str(result.result.message.content[0].text)


def test_hundred_requests_thirty_cached_twenty_duplicates_fifty_go_upstream(
    service: Service, standin: RunningStandin
) -> None:
    client = service.sdk()
    cached = {}
    for topic in TOPICS[:30]:
        message = client.messages.create(**params(do(topic)))
        cached[do(topic)] = message.content[0].text
    assert standin.state.messages_calls == 30

    hits = [do(t) for t in TOPICS[:25]] + [can(t) for t in TOPICS[25:30]]
    distinct = [do(t) for t in TOPICS[30:78]] + list(KOREAN)
    identical = [do(t) for t in TOPICS[30:38]] + list(KOREAN)
    paraphrased = [can(t) for t in TOPICS[38:48]]
    texts = hits + distinct + identical + paraphrased
    random.Random(6).shuffle(texts)
    requests = [(f"q-{i:03d}", params(text)) for i, text in enumerate(texts)]

    created = submit(client, requests)
    assert created.id.startswith("msgbatch_pc_")
    assert created.processing_status == "in_progress"
    assert created.request_counts.succeeded == 30  # the hits are answered at once
    assert created.request_counts.processing == 70
    assert standin.state.batches_created == 1
    assert standin.state.batch_requests == 50  # 100 - 30 cached - 20 duplicates

    ended = wait_ended(client, created.id)
    assert ended.request_counts.succeeded == 100 and ended.request_counts.processing == 0
    assert ended.results_url == f"{service.url}/v1/messages/batches/{created.id}/results"
    results = list(client.messages.batches.results(created.id))
    assert [r.custom_id for r in results] == [cid for cid, _ in requests]
    answers = {text: text_of(r) for text, r in zip(texts, results, strict=True)}
    for text in hits:  # served from the cache: the answer to the "How do I" original
        assert answers[text] == cached[text.replace("How can I", "How do I")]
    for text in identical + paraphrased:  # fanned out from one upstream answer
        assert answers[text] == answers[text.replace("How can I", "How do I")]
    assert len({answers[text] for text in distinct}) == 50
    assert len({r.result.message.id for r in results}) == 100  # shared answers, own ids
    assert standin.state.batch_requests == 50 and standin.state.messages_calls == 30

    rows = service.ledger_rows(created.id)
    kinds = sorted(row.kind for row in rows)
    assert kinds.count("batch") == 50
    assert kinds.count("hit-exact") == 25 + 10
    assert kinds.count("hit-semantic") == 5 + 10
    assert {row.max_tokens for row in rows} == {300}  # for the report's max_tokens advice
    by_id: dict[str, Any] = {r.custom_id: r for r in results}
    for row in rows:
        assert row.tenant == "acme" and row.status == 200
        if row.kind != "batch":
            assert row.cost_micros == 0 and row.saved_micros == row.baseline_micros > 0
            continue
        usage = by_id[row.request_id.split("/", 1)[1]].result.message.usage
        assert usage.service_tier == "batch"
        assert (row.input_tokens, row.output_tokens) == (usage.input_tokens, usage.output_tokens)
        full = usage.input_tokens * 3 + usage.output_tokens * 15
        assert row.baseline_micros == full
        assert row.cost_micros == (full + 1) // 2  # half, rounded half up
        assert row.saved_batch_micros == full - row.cost_micros > 0
        assert row.saved_routing_micros == row.saved_prompt_cache_micros == 0
    semantic = [row for row in rows if row.kind == "hit-semantic"]
    assert all(row.similarity is not None and row.similarity >= 0.95 for row in semantic)

    # The answers that came back are in the cache now.
    again = client.messages.with_raw_response.create(**params(do(TOPICS[60])))
    assert again.headers["x-cache"] == "hit-exact"
    assert again.parse().content[0].text == answers[do(TOPICS[60])]
    assert standin.state.messages_calls == 30

    # A batch belongs to its tenant; admins see every batch.
    with pytest.raises(anthropic.NotFoundError):
        service.sdk("tenant-b-key-1").messages.batches.retrieve(created.id)
    assert service.sdk("tenant-b-key-1").messages.batches.list().data == []
    assert service.sdk("admin-key-123").messages.batches.retrieve(created.id).id == created.id
    assert [b.id for b in client.messages.batches.list().data] == [created.id]


def test_restart_while_the_upstream_batch_runs_still_delivers(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    settings = batch_settings(tmp_path / "data", standin)
    # The first service triages in the background (the path of large batches).
    background = settings.model_copy(
        update={"batches": settings.batches.model_copy(update={"inline_max_requests": 0})}
    )
    standin.state.batch_ready_after_polls = 10**9  # in progress until the test says so
    requests = [
        ("a", params(do(TOPICS[0]))),
        ("b", params(do(TOPICS[1]))),
        ("c", params(do(TOPICS[0]))),  # identical to "a"
        ("d", params(can(TOPICS[1]))),  # a paraphrase of "b"
        ("e", params(KOREAN[0])),
        ("f", params(can(TOPICS[2]))),
        ("g", params(do(TOPICS[2]))),  # a paraphrase of "f"
        ("h", params(do(TOPICS[2]))),  # identical to "g", so it follows "f" too
    ]
    with ExitStack() as stack:
        first = start(stack, background, embedder)
        created = submit(first.sdk(), requests)
        assert created.request_counts.processing == 8
        deadline = time.monotonic() + 20
        while standin.state.batches_created == 0:
            assert time.monotonic() < deadline, "the background triage sent nothing upstream"
            time.sleep(0.05)
        time.sleep(0.3)  # a few polls that see it in progress
        assert first.sdk().messages.batches.retrieve(created.id).processing_status == (
            "in_progress"
        )
    assert standin.state.batch_requests == 4
    standin.state.batch_ready_after_polls = 0
    with ExitStack() as stack:
        second = start(stack, settings, embedder)
        client = second.sdk()
        ended = wait_ended(client, created.id)
        assert ended.request_counts.succeeded == 8
        results = list(client.messages.batches.results(created.id))
        assert [r.custom_id for r in results] == list("abcdefgh")
        texts = [text_of(r) for r in results]
        assert texts[0] == texts[2] and texts[1] == texts[3]
        assert texts[5] == texts[6] == texts[7]
        kinds = sorted(row.kind for row in second.ledger_rows(created.id))
        assert kinds == [*["batch"] * 4, "hit-exact", *["hit-semantic"] * 3]
    assert standin.state.batches_created == 1 and standin.state.batch_requests == 4


def test_requests_sharing_a_long_system_prompt_get_cache_breakpoints(
    service: Service, standin: RunningStandin
) -> None:
    """Batches went upstream without the breakpoints misses get: a shared 2,000-token system
    prompt was billed in full for every request of the batch."""
    standin.state.reset()
    policy = "Refunds are issued within 14 days of purchase to the original payment method. " * 150
    client = service.sdk()
    requests = [
        (f"r{i}", params(f"Question {i}: what is the refund window?", system=policy))
        for i in range(3)
    ]
    created = submit(client, requests)
    wait_ended(client, created.id)
    usages = [r.result.message.usage for r in client.messages.batches.results(created.id)]
    assert usages[0].cache_creation_input_tokens > 1024
    assert all(
        u.cache_read_input_tokens == usages[0].cache_creation_input_tokens for u in usages[1:]
    )
    rows = [r for r in service.ledger_rows(created.id) if r.kind == "batch"]
    assert sum(r.saved_prompt_cache_micros for r in rows) > 0


def test_hits_only_errors_cancel_and_validation(service: Service, standin: RunningStandin) -> None:
    client = service.sdk()
    original = client.messages.create(**params(do(TOPICS[5])))

    only_hits = submit(client, [("x", params(do(TOPICS[5]))), ("y", params(can(TOPICS[5])))])
    assert only_hits.processing_status == "ended"  # at once, nothing went upstream
    assert only_hits.request_counts.succeeded == 2 and standin.state.batches_created == 0
    served = [text_of(r) for r in client.messages.batches.results(only_hits.id)]
    assert served == [original.content[0].text] * 2

    # Upstream refuses a request (tool_choice must be an object): passed through, not stored.
    # Its paraphrase was merged into it; an error is not an answer for another text, so the
    # paraphrase goes upstream on its own in a second upstream batch (and errors too).
    mixed = submit(
        client,
        [
            ("bad", params(do(TOPICS[6]), tool_choice="oops")),
            ("good", params(do(TOPICS[7]))),
            ("bad2", params(can(TOPICS[6]), tool_choice="oops")),
        ],
    )
    wait_ended(client, mixed.id)
    bad, good, bad2 = client.messages.batches.results(mixed.id)
    assert bad.result.type == bad2.result.type == "errored"
    assert bad.result.error.error.type == "invalid_request_error"
    assert good.result.type == "succeeded"
    assert (standin.state.batches_created, standin.state.batch_requests) == (2, 3)
    rows = {row.request_id.split("/")[1]: row for row in service.ledger_rows(mixed.id)}
    assert (rows["bad"].kind, rows["bad"].status, rows["bad"].cost_micros) == ("error", 400, 0)
    assert (rows["bad2"].kind, rows["bad2"].status) == ("error", 400)
    assert rows["good"].kind == "batch"

    # Cancel while upstream works: both requests come back canceled and nothing is stored.
    standin.state.batch_ready_after_polls = 10**9
    slow = submit(client, [("p", params(do(TOPICS[8]))), ("q", params(do(TOPICS[9])))])
    canceling = client.messages.batches.cancel(slow.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    wait_ended(client, slow.id)
    types = [r.result.type for r in client.messages.batches.results(slow.id)]
    assert types == ["canceled", "canceled"]
    assert {(r.kind, r.status) for r in service.ledger_rows(slow.id)} == {("error", 499)}
    fresh = client.messages.with_raw_response.create(**params(do(TOPICS[8])))
    assert fresh.headers["x-cache"] == "miss"

    http = httpx.Client(base_url=service.url, headers={"x-api-key": "tenant-a-key-1"})
    with http:
        twice = {"requests": [{"custom_id": "k", "params": params("hi")}] * 2}
        answer = http.post("/v1/messages/batches", json=twice)
        assert answer.status_code == 400 and "unique" in answer.json()["error"]["message"]
        no_max = {"requests": [{"custom_id": "k", "params": {"model": MODEL, "messages": []}}]}
        answer = http.post("/v1/messages/batches", json=no_max)
        assert answer.status_code == 400
        assert answer.json()["error"]["message"].startswith("requests.0.params: messages")
        standin.state.batch_ready_after_polls = 10**9
        running_batch = submit(client, [("r", params(do(TOPICS[10])))])
        early = http.get(f"/v1/messages/batches/{running_batch.id}/results")
        assert early.status_code == 400 and "in_progress" in early.json()["error"]["message"]
        assert http.get("/v1/messages/batches/msgbatch_pc_nope").status_code == 404


BETA = "context-1m-2025-08-07"


def test_a_batch_beta_is_in_each_requests_key_and_goes_upstream(
    service: Service, standin: RunningStandin
) -> None:
    """`anthropic-beta` on a batch works as on `/v1/messages`: an answer made without the
    beta never serves a request with it (and the reverse), and the upstream batch carries
    it. Before, the batch dropped the header: both were wrong."""
    client = service.sdk()
    client.messages.create(**params(do(TOPICS[11])))  # cached without the beta
    with_beta = client.messages.create(
        **params(do(TOPICS[12])), extra_headers={"anthropic-beta": BETA}
    )
    requests: Any = [
        {"custom_id": "plain-cached", "params": params(do(TOPICS[11]))},
        {"custom_id": "beta-cached", "params": params(do(TOPICS[12]))},
    ]
    batch = client.beta.messages.batches.create(betas=[BETA], requests=requests)
    wait_ended(client, batch.id)
    kinds = {row.request_id.split("/")[1]: row.kind for row in service.ledger_rows(batch.id)}
    assert kinds == {"plain-cached": "batch", "beta-cached": "hit-exact"}
    assert (standin.state.batches_created, standin.state.batch_requests) == (1, 1)
    assert standin.state.other_headers[0]["anthropic-beta"] == BETA
    results = {r.custom_id: r for r in client.messages.batches.results(batch.id)}
    assert text_of(results["beta-cached"]) == with_beta.content[0].text
    # The batch's answer was stored under the beta: a plain request still misses.
    again = client.messages.with_raw_response.create(**params(do(TOPICS[11])))
    assert again.headers["x-cache"] == "hit-exact"  # the plain answer, cached before
    beta_again = client.messages.with_raw_response.create(
        **params(do(TOPICS[11])), extra_headers={"anthropic-beta": BETA}
    )
    assert beta_again.headers["x-cache"] == "hit-exact"
    assert beta_again.parse().content[0].text == text_of(results["plain-cached"])


def test_an_ended_batch_can_be_deleted_and_a_running_one_cannot(
    service: Service, standin: RunningStandin
) -> None:
    client = service.sdk()
    standin.state.batch_ready_after_polls = 10**9
    running_batch = submit(client, [("r", params(do(TOPICS[13])))])
    with pytest.raises(anthropic.BadRequestError, match="cancel it"):
        client.messages.batches.delete(running_batch.id)
    client.messages.batches.cancel(running_batch.id)
    wait_ended(client, running_batch.id)
    with pytest.raises(anthropic.NotFoundError):
        service.sdk("tenant-b-key-1").messages.batches.delete(running_batch.id)
    deleted = client.messages.batches.delete(running_batch.id)
    assert (deleted.id, deleted.type) == (running_batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(running_batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(running_batch.id)
    assert running_batch.id not in [b.id for b in client.messages.batches.list()]
    # Its upstream copy went too: it holds the requests, made with promptcache's key.
    assert standin.state.batches_deleted == 1


def test_a_batch_over_budget_is_refused_upstream_but_still_ends(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    settings = batch_settings(tmp_path / "data", standin).model_copy(
        update={
            "budgets": make_settings(
                tmp_path,
                budgets=[
                    {"name": "tiny", "scope": "tenant:acme", "period": "daily", "amount_usd": 1e-6}
                ],
            ).budgets
        }
    )
    with ExitStack() as stack:
        service = start(stack, settings, embedder)
        client = service.sdk()
        batch = submit(client, [("a", params(do(TOPICS[3]))), ("b", params(can(TOPICS[3])))])
        assert batch.processing_status == "ended" and batch.request_counts.errored == 2
        results = list(client.messages.batches.results(batch.id))
        assert {r.result.error.error.type for r in results} == {"budget_exceeded"}  # type: ignore[union-attr]
        assert {(r.kind, r.status) for r in service.ledger_rows(batch.id)} == {("error", 429)}
    assert standin.state.batches_created == 0


@given(st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), min_size=1, max_size=8))
def test_custom_ids_must_be_unique(custom_ids: list[str]) -> None:
    body = {"requests": [{"custom_id": c, "params": {}} for c in custom_ids]}
    if len(set(custom_ids)) == len(custom_ids):
        assert [c for c, _ in parse_requests(body)] == custom_ids
    else:
        with pytest.raises(InvalidRequest, match="unique"):
            parse_requests(body)


def test_a_custom_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="custom_id"):  # re.match let "a\n" through
        parse_requests({"requests": [{"custom_id": "a\n", "params": {}}]})


def test_request_limit() -> None:
    body = {"requests": [{"custom_id": f"r{i}", "params": {}} for i in range(3)]}
    with pytest.raises(InvalidRequest, match="at most 2 requests"):
        parse_requests(body, limit=2)


def test_cli_submit_status_results(
    service: Service,
    standin: RunningStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "service.cli.batch" not in cli_main._COMMANDS:  # until the lead registers it
        monkeypatch.setattr(cli_main, "_COMMANDS", (*cli_main._COMMANDS, "service.cli.batch"))
    lines = [
        {"custom_id": "one", "params": params(do(TOPICS[11]))},
        {"custom_id": "two", "params": params(do(TOPICS[12]))},
        {"custom_id": "three", "params": params(do(TOPICS[11]))},
    ]
    file = tmp_path / "batch.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    where = ["--url", service.url, "--api-key", "tenant-a-key-1"]

    assert cli_main.main(["batch", "submit", str(file), *where, "--poll", "0.05"]) == 0
    batch = json.loads(capsys.readouterr().out)
    assert batch["processing_status"] == "ended"
    assert batch["request_counts"]["succeeded"] == 3 and standin.state.batch_requests == 2

    assert cli_main.main(["batch", "status", batch["id"], *where]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == batch["id"]

    assert cli_main.main(["batch", "results", batch["id"], *where]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["custom_id"] for r in results] == ["one", "two", "three"]
    one, three = (results[i]["result"]["message"] for i in (0, 2))
    assert {**one, "id": ""} == {**three, "id": ""} and one["id"] != three["id"]

    out = tmp_path / "results.jsonl"
    assert cli_main.main(["batch", "results", batch["id"], *where, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 3

    assert cli_main.main(["batch", "status", "msgbatch_pc_nope", *where]) == 2
    assert "no message batch" in capsys.readouterr().err
    assert cli_main.main(["batch", "status", "x", "--url", service.url]) == 2  # no key
    assert "API key" in capsys.readouterr().err


def test_store_pages_newest_first_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "batches.sqlite3"
    store = BatchStore(path)
    for n, tenant in enumerate(("acme", "acme", "globex", "acme")):
        record = BatchRecord(f"b{n}", tenant, Controls(feature="f"), float(n), n + 10.0)
        store.create(record, [RequestRow(0, "only", {"model": MODEL})])
    store.mark("b1", "ended_at", 5.0)
    store.close()
    store = BatchStore(path)
    try:
        assert [r.id for r in store.page("acme", 2, None, None)] == ["b3", "b1"]
        assert [r.id for r in store.page("acme", 5, None, "b1")] == ["b0"]
        assert [r.id for r in store.page("acme", 5, "b0", None)] == ["b3", "b1"]
        assert [r.id for r in store.page(None, 2, "b0", None)] == ["b2", "b1"]
        # Another tenant's id is no cursor: it paged acme's batches, telling it exists.
        assert store.page("acme", 5, None, "b2") == store.page("acme", 5, None, "nope") == []
        assert store.page("acme", 5, "b2", None) == store.page("acme", 5, "nope", None) == []
        assert sorted(store.unfinished()) == ["b0", "b2", "b3"]
        assert store.get("b0") == BatchRecord("b0", "acme", Controls(feature="f"), 0.0, 10.0)
        assert store.counts("b1").processing == 1
    finally:
        store.close()


def test_results_are_delivered_and_billed_when_the_cache_refuses_them(
    service: Service, standin: RunningStandin
) -> None:
    """Upstream's answers are paid for: a full disk under the entry store loses the cache
    its copies, never the caller its results or the ledger its rows."""
    database = sqlite3.connect(service.settings.entries_dir / "cache.db")
    database.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON Cache "
        "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
    )
    database.commit()
    database.close()
    client = service.sdk()
    batch = submit(client, [("one", params(do(TOPICS[8]))), ("two", params(do(TOPICS[9])))])
    wait_ended(client, batch.id)
    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["one", "two"]
    assert all(text_of(r) for r in results)
    rows = service.ledger_rows(batch.id)
    assert sorted(r.kind for r in rows) == ["batch", "batch"]
    assert all(r.cost_micros > 0 and r.entry_id is None for r in rows)


def test_settling_again_after_a_failed_step_never_bills_twice(
    service: Service, standin: RunningStandin
) -> None:
    """The ledger rows are written, then saving the results fails (the batch store's disk is
    full for a moment): the step is retried, and the rows it wrote the first time are not
    written again."""
    batches = sqlite3.connect(service.settings.data_dir / "batches.sqlite3")
    batches.execute(
        "CREATE TRIGGER refuse_done BEFORE INSERT ON requests WHEN NEW.state = 'done' "
        "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
    )
    batches.commit()
    client = service.sdk()
    batch = submit(client, [("one", params(do(TOPICS[10]))), ("two", params(do(TOPICS[11])))])
    deadline = time.monotonic() + 30
    while not service.ledger_rows(batch.id):  # the first settle got as far as the ledger
        assert time.monotonic() < deadline, "the batch never reached its ledger rows"
        time.sleep(0.02)
    batches.execute("DROP TRIGGER refuse_done")
    batches.commit()
    batches.close()
    wait_ended(client, batch.id)
    assert all(text_of(r) for r in client.messages.batches.results(batch.id))
    rows = service.ledger_rows(batch.id)
    assert sorted(r.request_id for r in rows) == [f"{batch.id}/one", f"{batch.id}/two"]


def test_a_batch_in_flight_holds_its_bound_against_the_budget_even_across_a_restart(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    """A batch's spend lands when its results do, hours later: until then its bound is held,
    so a second batch that would pass the limit together with it is refused, also after a
    restart, and goes once the first has settled."""
    standin.state.batch_ready_after_polls = None
    standin.state.batch_ready_after_seconds = 3600.0  # the first batch stays in progress
    try:
        _hold_across_a_restart(tmp_path, embedder, standin)
    finally:
        standin.state.batch_ready_after_seconds = None


def _hold_across_a_restart(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    # Each request's bound at the batch price is about $0.00227 (300 output tokens).
    settings = acme_budget_settings(tmp_path, standin, 0.006)
    two = [("a", params(do(TOPICS[12]))), ("b", params(do(TOPICS[13])))]
    with ExitStack() as stack:
        service = start(stack, settings, embedder)
        first = submit(service.sdk(), two)
        deadline = time.monotonic() + 10
        while standin.state.batches_created < 1:
            assert time.monotonic() < deadline, "the first batch never went upstream"
            time.sleep(0.02)
    with ExitStack() as stack:  # a restart while the first batch is upstream
        service = start(stack, settings, embedder)
        client = service.sdk()
        second = submit(client, [("c", params(do(TOPICS[14]))), ("d", params(do(TOPICS[15])))])
        ended = wait_ended(client, second.id)
        assert ended.request_counts.errored == 2
        results = list(client.messages.batches.results(second.id))
        assert {r.result.error.error.type for r in results} == {"budget_exceeded"}  # type: ignore[union-attr]
        assert "held by requests in flight" in results[0].result.error.error.message  # type: ignore[union-attr]
        assert standin.state.batches_created == 1
        standin.state.batch_ready_after_seconds = 0.0  # the first batch ends and settles
        wait_ended(client, first.id)
        third = submit(client, [("e", params(do(TOPICS[16])))])
        assert wait_ended(client, third.id).request_counts.succeeded == 1


def test_batches_dispatched_at_once_never_pass_the_hard_limit_together(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    """Each dispatch checked the budget, then held its bound: checks that ran side by side
    all counted on the same headroom (5 of 8 batches went where 3 fitted)."""
    standin.state.batch_ready_after_polls = None
    standin.state.batch_ready_after_seconds = 3600.0  # every batch stays in flight
    # Each one-request batch holds about $0.00227 (300 output tokens at the batch price).
    settings = acme_budget_settings(tmp_path, standin, 0.006)
    try:
        with ExitStack() as stack, ThreadPoolExecutor(16) as pool:
            service = start(stack, settings, embedder)
            clients = [service.sdk() for _ in range(16)]
            created = list(
                pool.map(
                    lambda i: submit(clients[i], [(f"r{i}", params(do(TOPICS[20 + i])))]),
                    range(16),
                )
            )
            deadline = time.monotonic() + 30
            while True:  # each batch is either refused (ended) or upstream (in flight)
                views = [clients[0].messages.batches.retrieve(b.id) for b in created]
                ended = [v for v in views if v.processing_status == "ended"]
                if len(ended) + standin.state.batches_created >= len(created):
                    break
                assert time.monotonic() < deadline, "batches neither refused nor sent"
                time.sleep(0.05)
            assert standin.state.batches_created == 2
            assert len(ended) == 14 and all(v.request_counts.errored == 1 for v in ended)
    finally:
        standin.state.batch_ready_after_seconds = None


def test_a_batch_for_a_model_without_a_price_is_refused_under_a_hard_limit(
    tmp_path: Path, embedder: CountingEmbedder, standin: RunningStandin
) -> None:
    settings = acme_budget_settings(tmp_path, standin, 1.0)
    with ExitStack() as stack:
        client = start(stack, settings, embedder).sdk()
        unknown = {**params(do(TOPICS[40])), "model": "claude-unreleased-9"}
        batch = submit(client, [("u", unknown), ("k", params(do(TOPICS[41])))])
        assert wait_ended(client, batch.id).request_counts.errored == 2
        [first, _] = list(client.messages.batches.results(batch.id))
        assert "'claude-unreleased-9' has no price" in first.result.error.error.message  # type: ignore[union-attr]
        assert standin.state.batches_created == 0
