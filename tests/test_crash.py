"""SIGKILL in the middle of writes: the store opens, nothing is half-written, the index heals."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from embeddings.routed import RoutedEmbedder
from service.api.app import create_app
from service.maintenance import check_data_dir, rebuild
from service.store import EntryStore
from tests.conftest import make_settings
from tests.servers import running

WRITER = textwrap.dedent(
    """
    import sys
    from service.cache import SemanticCache
    from service.config import load_settings
    from service.embedder_factory import build_embedder
    from service.keys import cache_keys

    settings = load_settings(None, overrides={
        "data_dir": sys.argv[1], "index": {"save_every_changes": 7}}, env={})
    cache = SemanticCache(settings, build_embedder(settings.embedding))
    for i in range(1000):
        text = f"question {i} about item {i * 7}"
        request = {"model": "m", "messages": [{"role": "user", "content": text}]}
        answer = {"content": [{"type": "text", "text": "x" * (i % 50)}]}
        cache.store(cache_keys(request, tenant="t"), answer)
        if i % 5 == 0:
            cache.maintain()  # saves the index often, so the kill can land inside a save
        print(i, flush=True)
    """
)


def test_sigkill_while_writing_leaves_a_consistent_or_rebuildable_data_dir(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    written = -1
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    try:
        while written < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert written >= 150, "the writer did not get going"

    store = EntryStore(data_dir / "entries")
    try:
        entries = list(store.scan(with_embedding=True))
        raw_count = len(store)
        records = {r.id: r for r in store.records()}
        # Each record is written in its entry's transaction: the kill left none without the
        # other, so nothing needs repair.
        assert store.sync_records() == (0, 0)
    finally:
        store.close()
    assert raw_count == len(entries) >= written  # every stored value decodes: none half-written
    assert records == {e.id: e.record() for e in entries}
    for entry in entries:
        assert entry.embedding is not None and entry.embedding.shape == (routed.dim,)
        assert isinstance(entry.response, dict) and entry.semantic_text

    settings = make_settings(data_dir)
    report = check_data_dir(settings, routed.model_id, [m for m, _ in routed.blocks])
    if not report.consistent:
        rebuild(settings, routed, reembed=False)
        report = check_data_dir(settings, routed.model_id, [m for m, _ in routed.blocks])
    assert report.consistent, report.problems
    assert report.index_entries == len(entries)


def test_an_index_that_cannot_be_saved_at_shutdown_is_repaired_at_the_next_start(
    tmp_path: Path, routed: RoutedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk at shutdown loses the index file, not the entries, and not the rest of the
    shutdown: the alert worker and the ledger still close, and the next start rebuilds."""
    settings = make_settings(tmp_path / "data")
    body = {"prompt": "How do I reset my password?", "model": "m", "response": "Use the link."}
    with caplog.at_level(logging.INFO), running(create_app(settings, embedder=routed)) as url:
        assert httpx.post(f"{url}/v1/cache/entries", json=body, timeout=30).status_code == 201
        block = settings.index_dir / "block-0"
        shutil.rmtree(block, ignore_errors=True)
        block.parent.mkdir(parents=True, exist_ok=True)
        block.write_text("not a folder: saving the index here fails as a full disk would")
    assert "could not close the cache at shutdown" in caplog.text
    assert "could not close the alert worker" not in caplog.text

    block.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO), running(create_app(settings, embedder=routed)) as url:
        found = httpx.post(
            f"{url}/v1/cache/lookup",
            json={"prompt": "How can I reset my password?", "model": "m"},
            timeout=30,
        ).json()
    assert "index rebuilt from the store" in caplog.text
    assert found["status"] == "hit-semantic"
