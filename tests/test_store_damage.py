"""A damaged entry store (SQLite pages of garbage, a file cut short) and read-only data dirs.

The damage is real: bytes of the store's file are overwritten, as a disk error or a bad copy
would leave them. Lookups that meet it are misses, `index check` names it in one line, and
`index rebuild --salvage` keeps every entry SQLite can still read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embeddings.routed import RoutedEmbedder
from service.api.app import create_app
from service.cli.main import main
from service.config import Settings
from service.store import SALVAGE_DONE
from tests.conftest import make_settings
from tests.servers import running

PROMPTS = [f"How do I configure feature number {i} of the billing console?" for i in range(6)]


def _answer(i: int) -> str:
    # ~20 KB: the value spans several overflow pages, and the marker sits on one in the
    # middle of its chain (so SQLite follows a damaged page's pointer, not just its bytes).
    return "filler " * 2000 + f"MARK-{i}-" + "tail " * 1500


def _seed(url: str) -> None:
    for i, prompt in enumerate(PROMPTS):
        body = {"prompt": prompt, "model": "m", "response": _answer(i)}
        assert httpx.post(f"{url}/v1/cache/entries", json=body, timeout=60).status_code == 201


def _damage_page_of(settings: Settings, marker: bytes, seed: int = 7) -> None:
    """Overwrite the page of cache.db holding `marker` with random bytes."""
    database = settings.entries_dir / "cache.db"
    with sqlite3.connect(database) as connection:  # everything into the file itself
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    data = bytearray(database.read_bytes())
    at = data.find(marker)
    assert at > 0, "the marker is not in the database file"
    start = at // page_size * page_size
    data[start : start + page_size] = random.Random(seed).randbytes(page_size)
    database.write_bytes(bytes(data))


def _lookup(url: str, prompt: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/cache/lookup", json={"prompt": prompt, "model": "m"}, timeout=60)


def test_a_damaged_store_page_is_a_miss_a_check_problem_and_salvaged_by_rebuild(
    tmp_path: Path,
    routed: RoutedEmbedder,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path / "data")
    with running(create_app(settings, embedder=routed)) as url:
        _seed(url)
    _damage_page_of(settings, b"MARK-2-")

    with caplog.at_level(logging.INFO), running(create_app(settings, embedder=routed)) as url:
        # Was a 500 (sqlite3.DatabaseError from the exact read) on every request.
        for _ in range(3):
            damaged = _lookup(url, PROMPTS[2])
            assert damaged.status_code == 200, damaged.text
            assert damaged.json()["status"] == "miss"
        for i in (0, 1, 3, 4, 5):
            assert _lookup(url, PROMPTS[i]).json()["status"] == "hit-exact"
        health = httpx.get(f"{url}/healthz").json()
        assert health["status"] == "degraded" and "--salvage" in health["store"], health
    damage_logs = [
        r for r in caplog.records if "entry store" in r.getMessage() and "damaged" in r.getMessage()
    ]
    assert len(damage_logs) == 1, [r.getMessage() for r in damage_logs]  # once per kind
    assert "index rebuild --salvage" in damage_logs[0].getMessage()

    data = str(settings.data_dir)
    capsys.readouterr()
    assert main(["index", "check", "--data-dir", data]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    assert out[0].startswith("problem: the entry store") and "is damaged (SQLite:" in out[0]
    assert out[1] == "fix: promptcache index rebuild --salvage"
    # A plain rebuild meets the damage too: one line that names the salvage.
    assert main(["index", "rebuild", "--data-dir", data]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index rebuild --salvage" in err, err

    assert main(["index", "rebuild", "--salvage", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert "store salvaged: 5 entries copied, 1 unreadable and lost" in out
    assert "index rebuilt: 5 entries indexed" in out
    aside = list(settings.data_dir.glob("entries.damaged-*"))
    assert len(aside) == 1 and (aside[0] / "cache.db").is_file()
    assert main(["index", "check", "--data-dir", data]) == 0
    assert "ok: 5 entries, 5 in the index" in capsys.readouterr().out
    with running(create_app(settings, embedder=routed)) as url:
        assert [_lookup(url, p).json()["status"] for p in PROMPTS] == [
            "hit-exact",
            "hit-exact",
            "miss",
            "hit-exact",
            "hit-exact",
            "hit-exact",
        ]


def test_a_store_file_cut_short_is_named_by_check_and_salvaged(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path / "data")
    with running(create_app(settings, embedder=routed)) as url:
        _seed(url)
    database = settings.entries_dir / "cache.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with database.open("r+b") as file:
        file.truncate(database.stat().st_size // 2)
    data = str(settings.data_dir)
    assert main(["index", "check", "--data-dir", data]) == 1
    assert "fix: promptcache index rebuild --salvage" in capsys.readouterr().out
    assert main(["index", "rebuild", "--salvage", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert "store salvaged:" in out and "unreadable and lost" in out
    assert main(["index", "check", "--data-dir", data]) == 0


@contextlib.contextmanager
def _read_only(tree: Path) -> Iterator[None]:
    """Every file and folder of `tree` read-only while the block runs. Root ignores file
    modes, so under root the block runs as `nobody` (the effective uid only: it comes back)."""
    paths = [tree, *tree.rglob("*")]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(65534)
        yield
    finally:
        if as_root:
            os.seteuid(0)
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_check_and_report_work_on_a_read_only_data_dir(
    routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup copy or a read-only mount: both commands change nothing, yet they failed with
    "attempt to write a readonly database" / "unable to open database file"."""
    # Not tmp_path: pytest's temp root is private to its user, and `nobody` must reach it.
    top = Path(tempfile.mkdtemp(prefix="promptcache-ro-"))
    try:
        top.chmod(0o755)
        settings = make_settings(top / "data")
        with running(create_app(settings, embedder=routed)) as url:
            _seed(url)
        data = str(settings.data_dir)
        assert (settings.data_dir / "ledger.sqlite3").exists()
        capsys.readouterr()
        with _read_only(settings.data_dir):
            assert main(["index", "check", "--data-dir", data]) == 0, capsys.readouterr().err
            assert "ok: 6 entries, 6 in the index" in capsys.readouterr().out
            assert main(["report", "--no-check", "--data-dir", data]) == 0
            captured = capsys.readouterr()
            assert captured.err == "" and "requests" in captured.out
            assert main(["report", "--data-dir", data]) == 0
            captured = capsys.readouterr()
            assert "without the anomaly check" in captured.err and "requests" in captured.out
            assert captured.err.count("\n") == 1
    finally:
        shutil.rmtree(top)


def test_a_start_finishes_a_salvage_stopped_between_its_two_moves(
    tmp_path: Path, routed: RoutedEmbedder
) -> None:
    settings = make_settings(tmp_path / "data")
    with running(create_app(settings, embedder=routed)) as url:
        _seed(url)
    entries = settings.entries_dir
    # The state a salvage killed between its renames leaves: the damaged store moved aside,
    # the complete salvaged one (marked) not yet in its place.
    shutil.copytree(entries, entries.with_name("entries.salvage-2"))
    (entries.with_name("entries.salvage-2") / SALVAGE_DONE).touch()
    entries.rename(entries.with_name("entries.damaged-2"))
    # An unfinished salvage (no mark) is never put in place.
    (entries.with_name("entries.salvage-3")).mkdir()
    with running(create_app(settings, embedder=routed)) as url:
        found = _lookup(url, PROMPTS[0])
        assert found.json()["status"] == "hit-exact" and "MARK-0-" in found.text
    assert not (entries / SALVAGE_DONE).exists()
    assert entries.with_name("entries.salvage-3").exists()
