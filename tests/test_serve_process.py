"""The real `promptcache serve` process, killed and stopped: what a restart keeps.

Everything else starts the app in the test's own process; this starts the console script,
as an operator does, with the bundled models, and ends it the two ways a process ends:
SIGKILL (a crash, the OOM killer) while misses are upstream, and SIGTERM (a deploy).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from service.ledger import Ledger
from tests.servers import free_port
from tests.standin_server import running_standin

MODEL = "claude-haiku-4-5"
ANSWERED = [
    "How do I reset my password?",
    "What is the capital of Australia?",
    "Explain the difference between TCP and UDP.",
    "Write a haiku about autumn rain.",
    "List three uses of baking soda.",
]
CUT_OFF = [
    "Why is the sky blue?",
    "Summarize the plot of Hamlet in two sentences.",
]
LAST = "Name a prime number between 20 and 30."
STREAMED = "Describe the water cycle briefly."
PROMPTCACHE = Path(sys.executable).with_name("promptcache")


class Service:
    """One `promptcache serve` process on a free loopback port, its log in a file."""

    def __init__(self, data_dir: Path, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("ANTHROPIC_API_KEY", None)
        self._log = log.open("a")
        # A data dir relative to the working directory, as the default ./.promptcache is
        # (an absolute path hid that serve could not open a relative one).
        self.proc = subprocess.Popen(
            [
                *(PROMPTCACHE, "serve", "--port", str(self.port)),
                *("--data-dir", data_dir.name, "--config", str(config)),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir.parent,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "promptcache serve did not start in 120 s"
            time.sleep(0.2)

    def ask(self, text: str) -> httpx.Response:
        body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
        return httpx.post(f"{self.url}/v1/messages", json=body, timeout=30)

    def stream(self, text: str) -> str:
        body = {
            "model": MODEL,
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": text}],
        }
        with httpx.stream("POST", f"{self.url}/v1/messages", json=body, timeout=30) as r:
            return "\n".join(r.iter_lines())

    def end(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()


def test_a_killed_service_keeps_every_answer_it_gave_and_a_stopped_one_saves_its_index(
    tmp_path: Path,
) -> None:
    data_dir, config, log = tmp_path / "data", tmp_path / "promptcache.toml", tmp_path / "log"
    with running_standin() as standin:
        config.write_text(
            f'[upstream]\nbase_url = "{standin.base_url}"\napi_key = "k"\nmax_retries = 0\n'
        )
        first = Service(data_dir, config, log)
        try:
            for text in ANSWERED:
                assert first.ask(text).headers["x-cache"] == "miss"
            standin.state.latency_seconds = 30.0  # these stay upstream until the kill
            with ThreadPoolExecutor(len(CUT_OFF)) as pool:
                cut_off = [pool.submit(first.ask, text) for text in CUT_OFF]
                deadline = time.monotonic() + 20
                while standin.state.in_flight < len(CUT_OFF):
                    assert time.monotonic() < deadline, "the misses did not reach upstream"
                    time.sleep(0.05)
                assert first.end(signal.SIGKILL) == -signal.SIGKILL
                for future in cut_off:
                    assert isinstance(future.exception(timeout=30), httpx.TransportError)
        finally:
            if first.proc.poll() is None:
                first.end(signal.SIGKILL)
        standin.state.latency_seconds = 0.0

        second = Service(data_dir, config, log)
        try:
            # The index was never saved (1000 changes per save): it is rebuilt from the store.
            assert "index rebuilt from the store" in log.read_text()
            assert "recorded 2 request(s) that were upstream when the service last stopped" in (
                log.read_text()
            )
            for text in ANSWERED:
                assert second.ask(text).headers["x-cache"] == "hit-exact", text
            assert second.ask("How can I reset my password?").headers["x-cache"] == ("hit-semantic")
            for text in CUT_OFF:  # never answered, so never cached
                assert second.ask(text).headers["x-cache"] == "miss", text
            # A miss upstream and a stream half relayed when SIGTERM comes are finished,
            # answered and recorded first.
            standin.state.latency_seconds = 2.0
            standin.state.stream_event_delay = 0.2
            with ThreadPoolExecutor(2) as pool:
                last = pool.submit(second.ask, LAST)
                streamed = pool.submit(second.stream, STREAMED)
                deadline = time.monotonic() + 20
                while standin.state.in_flight < 2:
                    assert time.monotonic() < deadline, "the misses did not reach upstream"
                    time.sleep(0.05)
                code = second.end(signal.SIGTERM)
                assert last.result(timeout=30).status_code == 200
                assert "event: message_stop" in streamed.result(timeout=30)
            calls = standin.state.messages_calls
        finally:
            if second.proc.poll() is None:
                second.end(signal.SIGKILL)
    # uvicorn finishes the shutdown (the app's lifespan saves the index and closes the
    # stores), then ends the process by the signal it got, as supervisors expect.
    assert code == -signal.SIGTERM, log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()
    assert calls == len(ANSWERED) + 2 * len(CUT_OFF) + 2

    # The ledger holds one row per answer given, and one per miss the kill cut off: upstream
    # may have billed those, so they are counted at their bound, marked as such.
    with Ledger(data_dir / "ledger.sqlite3") as ledger:
        rows = ledger.rows(0, time.time() + 60)
        assert ledger.upstream_pending() == []
    assert Counter(row.kind for row in rows) == {
        "miss": len(ANSWERED) + len(CUT_OFF) + 2,
        "hit-exact": len(ANSWERED),
        "hit-semantic": 1,
        "error": len(CUT_OFF),
    }
    answered = {row.request_id: row for row in rows if row.kind == "miss"}
    for row in rows:
        if row.kind == "error":
            assert row.status == 0 and row.request_id not in answered
            assert row.error is not None and row.error.startswith("the service stopped")
            # The bound: the whole prompt and all 50 tokens of output, above any real answer.
            assert (
                row.cost_micros
                == row.baseline_micros
                > max(r.cost_micros for r in answered.values())
            )

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        where = ("--data-dir", str(data_dir), "--config", str(config))
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [PROMPTCACHE, *args, *where], capture_output=True, text=True, timeout=120, env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    totals = json.loads(command("report", "--format", "json", "--no-check").stdout)
    assert totals["interrupted_requests"] == len(CUT_OFF)
    assert totals["interrupted_cost_micros"] == sum(
        row.cost_micros for row in rows if row.kind == "error"
    )

    # SIGTERM saved the index with the store: the check finds them in step, no rebuild.
    check = command("index", "check")
    stored = len(ANSWERED) + len(CUT_OFF) + 2  # the index saved at start held five
    assert check.stdout.strip() == f"ok: {stored} entries, {stored} in the index"
