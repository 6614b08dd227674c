"""`bench perf`'s load client: a process of its own, every request answered 200."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from service.api.app import create_app
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running


def test_load_client_process_reports_a_rate_and_fails_loudly(
    tmp_path: Path, embedder: CountingEmbedder
) -> None:
    app = create_app(make_settings(tmp_path / "data"), embedder=embedder)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(orjson.dumps({"prompt": "How do I reset my password?", "model": "m"}))
    bad.write_bytes(b"{not json")
    root = Path(__file__).parents[1]
    with running(app) as url:
        for body, ok in ((good, True), (bad, False)):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.load_client", url, str(body), "4", "3"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=root,
            )
            if ok:
                assert done.returncode == 0, done.stderr
                assert float(done.stdout) > 0
            else:  # a 4xx reply is an error, not a fast request
                assert done.returncode != 0 and "400" in done.stderr
