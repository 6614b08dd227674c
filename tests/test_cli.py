"""The `promptcache` command line, in-process: exit codes, one-line errors, the data-dir lock."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import diskcache
import pytest

from embeddings.base import Embedder
from embeddings.routed import RoutedEmbedder
from service.cache import SemanticCache
from service.cli.main import main
from service.datadir import DataDirLock
from service.keys import prompt_keys
from service.maintenance import rebuild
from tests.conftest import make_settings


def seed(data_dir: Path, embedder: Embedder) -> None:
    """Entries written as the CLI's default settings would (the routed embedder)."""
    cache = SemanticCache(make_settings(data_dir), embedder)
    for text, tag in (("How do I reset my password?", "auth"), ("Where is my invoice?", "billing")):
        keys = prompt_keys([{"role": "user", "content": text}], model="m", tenant="default")
        cache.store(keys, f"answer to {text}", tags=[tag])
    cache.close()


def test_index_check_stats_rebuild_and_invalidate(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    seed(data, routed)
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    assert "ok: 2 entries" in capsys.readouterr().out
    assert main(["index", "stats", "--json", "--data-dir", str(data)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == stats["index_entries"] == 2 and stats["consistent"]
    # One FAISS index per model of the routed default, each in its own folder.
    assert stats["index_models"] == [model for model, _ in routed.blocks]
    assert not (data / "index" / "index.faiss").exists()
    (data / "index" / "block-0" / "index.faiss").unlink()
    # The next start rebuilds it by itself: a note, not a problem.
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "index.faiss is missing; the next start repairs it from the store" in out
    assert main(["index", "rebuild", "--data-dir", str(data)]) == 0
    assert "2 entries indexed" in capsys.readouterr().out
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["invalidate", "--tag", "auth", "--data-dir", str(data)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert main(["index", "check", "--data-dir", str(data)]) == 0


def test_errors_are_one_line_and_non_zero(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    seed(data, routed)
    assert main(["invalidate", "--data-dir", str(data)]) == 1
    assert capsys.readouterr().err.strip() == (
        "promptcache: give at least one filter, or --all to remove every entry"
    )
    with DataDirLock(data, "promptcache serve on 127.0.0.1:8080"):
        assert main(["invalidate", "--all", "--data-dir", str(data)]) == 2
        err = capsys.readouterr().err
        assert "in use by promptcache serve" in err and "POST /v1/cache/invalidate" in err
        # A second serve is told to pick another data dir, not to use the admin API.
        assert main(["serve", "--data-dir", str(data)]) == 2
        err = capsys.readouterr().err
        assert "another --data-dir" in err and "invalidate" not in err
        # check reads beside a running service: it says whose index it compares with.
        raw = diskcache.Cache(str(data / "entries"))
        raw.set(min(str(k) for k in raw.iterkeys() if str(k).startswith("e:")), b"{cut short")
        raw.close()
        assert main(["index", "check", "--data-dir", str(data)]) == 1
        out = capsys.readouterr().out
        assert "note: promptcache serve on 127.0.0.1:8080 (pid" in out
        assert "fix: stop the service, then promptcache index rebuild" in out
    assert main(["index", "rebuild", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("[cache]\nmin_similarity = 3\n")
    assert main(["index", "check", "--config", str(bad), "--data-dir", str(data)]) == 1
    assert "invalid setting cache.min_similarity" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(data)]) == 1
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    # What the settings name and cannot load stops `serve` with one line, before it listens
    # (these were tracebacks from inside the app's start-up, exit status 3).
    for setting, words in [
        ('timezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
        (f'prices_file = "{tmp_path / "none.json"}"', "cannot read price file"),
        ('[router]\ncheap_model = ""', "router.cheap_model"),
        # The last of two entries for one key silently won, role and tenant included.
        (
            '[[auth.keys]]\nkey = "same-key-1"\ntenant = "a"\n'
            '[[auth.keys]]\nkey = "same-key-1"\ntenant = "b"\nrole = "admin"',
            "key 1 is listed twice",
        ),
        ('[[auth.keys]]\nkey = "slash-key-1"\ntenant = "acme/prod"', "auth.keys.0.tenant"),
        # The header is lowercased, so "Legal-Review" could never be asked for; a value
        # past the bound went around the checks on max_tokens.
        ("[proxy.task_max_tokens]\nLegal-Review = 100", "task 'Legal-Review'"),
        ("[proxy.task_max_tokens]\nlegal = 9223372036854775807", "task 'legal'"),
    ]:
        bad.write_text(setting + "\n")
        assert main(["serve", "--config", str(bad), "--data-dir", str(data)]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_switching_to_ivf_takes_a_rebuild(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    seed(data, routed)  # a flat index, the default
    config = tmp_path / "ivf.toml"
    config.write_text('[index]\nkind = "ivf"\n')
    flags = ["--data-dir", str(data), "--config", str(config)]
    assert main(["index", "stats", "--json", *flags]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["index_kind"], stats["configured_index_kind"]) == ("flat", "ivf")
    assert main(["index", "check", *flags]) == 0
    assert "note: the saved index is flat but [index] kind is ivf" in capsys.readouterr().out
    assert main(["index", "rebuild", *flags]) == 0
    capsys.readouterr()
    assert main(["index", "stats", "--json", *flags]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["index_kind"] == "ivf" and stats["index_entries"] == 2 and stats["consistent"]
    assert main(["index", "check", *flags]) == 0
    assert "note:" not in capsys.readouterr().out


def test_rebuild_names_each_stage(tmp_path: Path, routed: RoutedEmbedder) -> None:
    """What the progress bar shows while a stage reports no progress of its own."""
    data = tmp_path / "data"
    seed(data, routed)
    stages: list[str] = []
    settings = make_settings(data, index={"kind": "ivf"})
    assert rebuild(settings, routed, reembed=True, stage=stages.append) == (2, 2)
    assert stages == [
        "checking the entries and their start-up records",
        "embedding 2 entries",
        "building the ivf index of 2 entries",
    ]


def test_check_names_unreadable_entries_and_record_drift_and_rebuild_mends_both(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    seed(data, routed)
    raw = diskcache.Cache(str(data / "entries"))
    first, second = sorted(str(k) for k in raw.iterkeys() if str(k).startswith("e:"))
    raw.set(first, b"{cut short")
    del raw["h:" + second[2:]]  # as a release without start-up records left it
    raw.close()
    assert main(["index", "check", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"problem: 1 entry is unreadable (damaged on disk: {first[2:]}); it can never be "
        "served, and a rebuild deletes it",
        "note: start-up records out of line with the entries (1 missing); the next start "
        "rewrites them from the entries",
        "fix: promptcache index rebuild",
    ]
    stages: list[str] = []
    assert rebuild(make_settings(data), routed, reembed=False, stage=stages.append) == (1, 0)
    assert stages[1] == (
        "deleting 1 unreadable entry and bringing the start-up records in line with the entries"
    )
    assert main(["index", "check", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == {"consistent": True, "problems": [], "notes": []}


def test_a_relative_data_dir_works_and_check_never_creates_one(
    tmp_path: Path,
    routed: RoutedEmbedder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default `./.promptcache` is relative: its read-only SQLite URI once failed."""
    seed(tmp_path / ".promptcache", routed)
    monkeypatch.chdir(tmp_path)
    assert main(["index", "check"]) == 0
    assert "ok: 2 entries" in capsys.readouterr().out
    assert main(["index", "stats", "--data-dir", "typo"]) == 2
    assert "data dir typo does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
    (tmp_path / "a-file").write_text("x")
    assert main(["index", "check", "--data-dir", "a-file"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_invalidate_reads_tenant_as_the_http_api_does(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    seed(data, routed)
    # A tenant alone is no filter: it removed all of that tenant's entries.
    assert main(["invalidate", "--tenant", "default", "--data-dir", str(data)]) == 1
    assert "give at least one filter" in capsys.readouterr().err
    # `*` is every tenant, as over HTTP; it was read as a tenant named "*" (0 removed).
    assert main(["invalidate", "--tag", "auth", "--tenant", "*", "--data-dir", str(data)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out


def test_config_problems_name_the_file_or_the_variable(tmp_path: Path) -> None:
    from service.config import load_settings
    from service.errors import ConfigError

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, words in ((tmp_path, "cannot read config file"), (binary, "not UTF-8 text")):
        with pytest.raises(ConfigError, match=words) as raised:
            load_settings(path, env={})
        assert str(path) in raised.value.message
    with pytest.raises(ConfigError, match="invalid setting PROMPTCACHE_ADMIN_KEY"):
        load_settings(None, env={"PROMPTCACHE_ADMIN_KEY": "abc"})  # was auth.keys.0.key
    listed = tmp_path / "keys.toml"
    listed.write_text('[[auth.keys]]\nkey = "the-same-key"\n')
    with pytest.raises(ConfigError, match="PROMPTCACHE_ADMIN_KEY: the config file lists"):
        load_settings(listed, env={"PROMPTCACHE_ADMIN_KEY": "the-same-key"})


def test_serve_on_a_taken_port_stops_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err, err


def test_what_the_next_start_repairs_is_a_note_and_check_exits_0(
    tmp_path: Path, routed: RoutedEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a SIGKILL the saved index lags the store, and the next start repairs it: `check`
    said `problem:` and exited 1 with a fix the user did not need."""
    data = tmp_path / "data"
    seed(data, routed)
    killed = SemanticCache(make_settings(data), routed)  # never closed: its index unsaved
    keys = prompt_keys(
        [{"role": "user", "content": "Can I change my email?"}], model="m", tenant="default"
    )
    killed.store(keys, "Yes, in settings.")
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ok: 3 entries, 2 in the index",
        "note: index is stale: 1 entries missing, 0 extra; the next start repairs it from the "
        "store (`promptcache index rebuild` does it now)",
    ]
    shutil.rmtree(data / "index")
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "problem" not in out and "note: index missing" in out
    SemanticCache(make_settings(data), routed).close()  # a start, then a clean stop
    assert main(["index", "check", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.splitlines() == ["ok: 3 entries, 3 in the index"]


def test_serve_on_a_damaged_ledger_batch_store_or_entry_store_stops_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """These were ~70 lines of ASGI traceback from the app's start-up, the clear line last."""
    for name, words in (
        ("ledger.sqlite3", "cannot open ledger"),
        ("batches.sqlite3", "cannot open batch store"),
        ("entries/cache.db", "the entry store at"),
    ):
        data = tmp_path / name.replace("/", "-")
        (data / "entries").mkdir(parents=True)
        (data / name).write_bytes(random.Random(name).randbytes(8192))
        assert main(["serve", "--port", "0", "--data-dir", str(data)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
        assert "not a database" in err or "malformed" in err, err
