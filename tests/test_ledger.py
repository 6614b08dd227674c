"""The SQLite ledger and `promptcache report`: migrations, round trips, sums, zones, threads."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cli import report
from service.errors import InvalidRequest, StorageError
from service.ledger import GROUP_COLUMNS, KINDS, SCHEMA_VERSION, Ledger, LedgerRow
from service.periods import day_window

REPO = Path(__file__).resolve().parents[1]


def ts(text: str) -> float:
    """Epoch seconds of an ISO time written with its offset."""
    return datetime.fromisoformat(text).timestamp()


def make_row(**changes: Any) -> LedgerRow:
    """A balanced miss; `changes` override fields (keep money balanced yourself)."""
    base = LedgerRow(
        ts=ts("2026-03-10T12:00:00+00:00"),
        request_id="req-1",
        tenant="acme",
        namespace="default",
        feature="search",
        kind="miss",
        model_requested="auto",
        model_used="claude-haiku-4-5",
        route_tier="cheap",
        route_reasons="short prompt; no code",
        input_tokens=100,
        output_tokens=50,
        cache_creation_tokens=0,
        cache_read_tokens=0,
        cost_micros=350,
        baseline_micros=1_050,
        saved_exact_micros=0,
        saved_semantic_micros=0,
        saved_routing_micros=700,
        saved_prompt_cache_micros=0,
        saved_batch_micros=0,
        priced=True,
        similarity=None,
        latency_ms=10.0,
        entry_id=None,
        status=200,
    )
    return replace(base, **changes)


def hit_row(kind: str, baseline: int, **changes: Any) -> LedgerRow:
    source = "saved_exact_micros" if kind == "hit-exact" else "saved_semantic_micros"
    return make_row(
        kind=kind,
        cost_micros=0,
        baseline_micros=baseline,
        saved_routing_micros=0,
        **{source: baseline},
        **changes,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


# --- schema and migrations ------------------------------------------------------------------


def test_new_file_gets_every_migration_once_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.sqlite3"
    with Ledger(path) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        ledger.record(make_row())
    raw = sqlite3.connect(path)
    try:
        versions = [v for (v,) in raw.execute("SELECT version FROM schema_version ORDER BY 1")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_reopening_is_idempotent_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        ledger.record(make_row())
    for _ in range(3):
        with Ledger(path) as ledger:
            assert ledger.schema_version() == SCHEMA_VERSION
            assert len(ledger.rows(0, 2e9)) == 1
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_a_newer_schema_is_refused_with_the_fix_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="upgrade promptcache"):
        Ledger(path)


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not sqlite at all, just some bytes" * 100)
    with pytest.raises(StorageError, match="cannot open ledger"):
        Ledger(path)


def test_a_closed_ledger_refuses_work(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.close()
    with pytest.raises(StorageError, match="closed"):
        ledger.record(make_row())


# --- rows ------------------------------------------------------------------------------------


def test_rows_round_trip_with_and_without_optional_fields(ledger: Ledger) -> None:
    full = make_row(
        kind="hit-semantic",
        feature="요약",  # Korean feature names are ordinary text
        similarity=0.9731,
        entry_id=2**62,
        error=None,
        price_version="2026-11-28.1",
        cost_micros=0,
        baseline_micros=1_050,
        saved_routing_micros=0,
        saved_semantic_micros=1_050,
    )
    sparse = make_row(
        ts=full.ts + 1,
        request_id="req-2",
        kind="error",
        feature=None,
        route_tier=None,
        route_reasons=None,
        input_tokens=0,
        output_tokens=0,
        cost_micros=0,
        baseline_micros=0,
        saved_routing_micros=0,
        status=503,
        error="upstream overloaded",
        latency_ms=0.0,
    )
    unpriced = make_row(
        ts=full.ts + 2,
        request_id="req-3",
        model_used="claude-mystery",
        priced=False,
        cost_micros=0,
        baseline_micros=0,
        saved_routing_micros=0,
    )
    ids = [ledger.record(row) for row in (unpriced, full, sparse)]
    assert len(set(ids)) == 3
    got = ledger.rows(0, 2e9)
    assert got == [full, sparse, unpriced]  # ordered by ts
    assert isinstance(got[2].priced, bool) and got[2].priced is False


def test_rows_window_is_half_open_and_filters_by_tenant(ledger: Ledger) -> None:
    start = ts("2026-03-10T00:00:00+00:00")
    ledger.record_many(
        [
            make_row(ts=start - 0.001, request_id="before"),
            make_row(ts=start, request_id="first"),
            make_row(ts=start + 10, request_id="other", tenant="globex"),
            make_row(ts=start + 100, request_id="end"),
        ]
    )
    assert [r.request_id for r in ledger.rows(start, start + 100)] == ["first", "other"]
    assert [r.request_id for r in ledger.rows(start, start + 101, "acme")] == ["first", "end"]


def test_record_many_is_all_or_nothing(ledger: Ledger) -> None:
    good = make_row()

    class Boom(Exception):
        pass

    def rows() -> Any:
        yield good
        raise Boom

    with pytest.raises(Boom):
        ledger.record_many(rows())
    assert ledger.rows(0, 2e9) == []
    assert ledger.record_many([good, replace(good, request_id="req-2")]) == 2
    assert len(ledger.rows(0, 2e9)) == 2


def test_record_new_skips_request_ids_already_written_and_is_all_or_nothing(
    ledger: Ledger,
) -> None:
    first, second = make_row(request_id="b/one"), make_row(request_id="b/two")
    assert [row for row, _ in ledger.record_new([first])] == [first]
    again = ledger.record_new([first, second])  # a retried step: only the new row
    assert [row for row, _ in again] == [second] and again[0][1] > 0
    assert ledger.record_new([first, second]) == []
    assert sorted(r.request_id for r in ledger.rows(0, 2e9)) == ["b/one", "b/two"]

    def failing() -> Any:
        yield make_row(request_id="b/three")
        raise RuntimeError("the step broke mid-way")

    with pytest.raises(RuntimeError):
        ledger.record_new(failing())
    assert len(ledger.rows(0, 2e9)) == 2


def test_a_noted_request_is_settled_by_its_own_row_or_written_at_the_next_start(
    tmp_path: Path,
) -> None:
    def noted(request_id: str) -> LedgerRow:
        return make_row(request_id=request_id, kind="error", status=0, error="interrupted")

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        for request_id in ("answered", "failed", "cut-off", "late-note"):
            ledger.note_upstream(noted(request_id))
        ledger.record(make_row(request_id="answered"))  # its own row: the note goes with it
        ledger.record_many([make_row(request_id="failed", kind="error", status=503)])
        ledger.record_new([make_row(request_id="late-note")])
        ledger.note_upstream(noted("late-note"))  # noted after its row: must not bill twice
        assert [r.request_id for r in ledger.upstream_pending()] == ["cut-off", "late-note"]
    with Ledger(path) as ledger:  # the next start
        assert ledger.settle_interrupted() == [noted("cut-off")]
        assert ledger.upstream_pending() == []
        assert ledger.settle_interrupted() == []
        ids = sorted(r.request_id for r in ledger.rows(0, 2e9))
        totals = ledger.totals(0, 2e9)
    assert ids == ["answered", "cut-off", "failed", "late-note"]
    # Reports tell the estimate from what was billed: one interrupted row, at its bound.
    assert (totals.errors, totals.interrupted) == (2, 1)
    assert totals.interrupted_micros == noted("cut-off").cost_micros > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cost_micros": 351}, "does not balance"),
        ({"saved_prompt_cache_micros": 5}, "does not balance"),
        ({"kind": "hit"}, "unknown ledger kind"),
        ({"input_tokens": -1}, "must not be negative"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"ts": math.inf}, "ts must be finite"),
    ],
)
def test_rows_that_break_the_rules_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_row(**changes)


def test_negative_routing_and_prompt_cache_savings_are_allowed() -> None:
    # Routed up to a dearer model and wrote a cache nobody read: both sources negative.
    row = make_row(
        cost_micros=1_500,
        baseline_micros=1_050,
        saved_routing_micros=-300,
        saved_prompt_cache_micros=-150,
    )
    assert row.saved_micros == -450


# --- totals and day boundaries ----------------------------------------------------------------


def seed_day(ledger: Ledger, day_start: float) -> None:
    """Six answers of one day, one of each kind, plus rows just outside the day."""
    ledger.record_many(
        [
            hit_row("hit-exact", 1_000, ts=day_start + 1, latency_ms=5.0, input_tokens=400),
            hit_row("hit-semantic", 2_000, ts=day_start + 2, latency_ms=40.0, similarity=0.97),
            make_row(ts=day_start + 3, latency_ms=100.0),  # miss: cost 350, routing 700
            make_row(
                ts=day_start + 4,
                kind="batch",
                latency_ms=30.0,
                cost_micros=175,
                saved_batch_micros=175,
                cache_read_tokens=1_000,
                cache_creation_tokens=20,
            ),
            make_row(
                ts=day_start + 5,
                kind="bypass",
                latency_ms=20.0,
                cost_micros=1_200,
                baseline_micros=1_000,
                saved_routing_micros=0,
                saved_prompt_cache_micros=-200,
            ),
            make_row(
                ts=day_start + 86_399,
                kind="error",
                latency_ms=10.0,
                model_used="claude-mystery",
                priced=False,
                cost_micros=0,
                baseline_micros=0,
                saved_routing_micros=0,
                status=502,
                error="bad gateway",
            ),
            make_row(ts=day_start - 1, latency_ms=9_999.0),  # the day before
            make_row(ts=day_start + 86_400, latency_ms=9_999.0),  # the day after
        ]
    )


def check_seeded_totals(totals: Any) -> None:
    assert totals.requests == 6
    assert totals.by_kind == {
        "hit-exact": 1,
        "hit-semantic": 1,
        "miss": 1,
        "bypass": 1,
        "error": 1,
        "batch": 1,
    }
    assert totals.cost_micros == 0 + 0 + 350 + 175 + 1_200 + 0
    assert totals.baseline_micros == 1_000 + 2_000 + 1_050 + 1_050 + 1_000 + 0
    assert totals.saved_by_source == {
        "exact": 1_000,
        "semantic": 2_000,
        "routing": 700 + 700,
        "prompt_cache": -200,
        "batch": 175,
    }
    assert totals.saved_micros == totals.baseline_micros - totals.cost_micros
    # Hits 2; misses: the miss and the batch answer; bypass and error do not count.
    assert totals.hit_rate == pytest.approx(2 / 4)
    # Latencies 5, 10, 20, 30, 40, 100: nearest rank 3 of 6 and rank 6 of 6.
    assert (totals.latency_p50_ms, totals.latency_p95_ms) == (20.0, 100.0)
    assert totals.input_tokens == 400 + 100 * 5
    assert totals.output_tokens == 50 * 6
    assert (totals.cache_creation_tokens, totals.cache_read_tokens) == (20, 1_000)
    assert (totals.unpriced, totals.unpriced_models) == (1, ("claude-mystery",))


def test_day_totals_against_a_hand_computed_day_in_utc(ledger: Ledger) -> None:
    seed_day(ledger, ts("2026-03-10T00:00:00+00:00"))
    day = ledger.day_totals(date(2026, 3, 10))
    assert (day.start_ts, day.end_ts) == (
        ts("2026-03-10T00:00:00+00:00"),
        ts("2026-03-11T00:00:00+00:00"),
    )
    check_seeded_totals(day.totals)


def test_day_totals_use_local_midnight_of_the_zone(ledger: Ledger) -> None:
    # Seoul is UTC+9: its 10 March runs from 9 March 15:00 UTC to 10 March 15:00 UTC.
    seoul_midnight = ts("2026-03-10T00:00:00+09:00")
    assert seoul_midnight == ts("2026-03-09T15:00:00+00:00")
    seed_day(ledger, seoul_midnight)
    check_seeded_totals(ledger.day_totals(date(2026, 3, 10), "Asia/Seoul").totals)
    # The same rows split across two UTC days: 9 March holds the first five and the row
    # before; 10 March holds the error row and the row after.
    utc_9 = ledger.day_totals(date(2026, 3, 9)).totals
    utc_10 = ledger.day_totals(date(2026, 3, 10)).totals
    assert (utc_9.requests, utc_10.requests) == (6, 2)
    assert utc_9.requests + utc_10.requests == 8


def test_a_dst_day_is_23_hours_long() -> None:
    # New York moved its clocks forward on 8 March 2026.
    start, end = day_window(date(2026, 3, 8), "America/New_York")
    assert end - start == 23 * 3600
    assert start == ts("2026-03-08T00:00:00-05:00")
    start, end = day_window(date(2026, 11, 1), "America/New_York")
    assert end - start == 25 * 3600


def test_an_unknown_zone_is_an_invalid_request(ledger: Ledger) -> None:
    with pytest.raises(InvalidRequest, match="Mars/Olympus"):
        ledger.day_totals(date(2026, 3, 10), "Mars/Olympus")


def test_an_empty_window_has_zero_totals(ledger: Ledger) -> None:
    totals = ledger.day_totals(date(2026, 3, 10)).totals
    assert totals.requests == 0 and totals.cost_micros == 0
    assert (totals.hit_rate, totals.latency_p50_ms, totals.unpriced_models) == (None, None, ())
    assert ledger.totals_by(0, 2e9, ["kind"]) == []


def test_grouped_totals(ledger: Ledger) -> None:
    start = ts("2026-03-10T00:00:00+00:00")
    seed_day(ledger, start)
    by_model = ledger.totals_by(start, start + 86_400, ["model_used"])
    assert [t.group for t in by_model] == [("claude-haiku-4-5",), ("claude-mystery",)]
    assert [t.requests for t in by_model] == [5, 1]
    assert by_model[1].unpriced_models == ("claude-mystery",)
    assert by_model[0].unpriced_models == ()
    # Per-group percentiles: the haiku rows' latencies are 5, 20, 30, 40, 100.
    assert (by_model[0].latency_p50_ms, by_model[0].latency_p95_ms) == (30.0, 100.0)
    by_kind_feature = ledger.totals_by(start, start + 86_400, ["kind", "feature"])
    assert sorted(str(t.group[0]) for t in by_kind_feature) == sorted(KINDS)
    with pytest.raises(InvalidRequest, match="cannot group"):
        ledger.totals_by(start, start + 1, ["cost_micros; DROP TABLE ledger"])  # type: ignore[list-item]


# --- property: totals are the sums of the rows ----------------------------------------------


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Ledger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3") as opened:
        yield opened


MICROS = st.integers(min_value=0, max_value=10**9)
SIGNED = st.integers(min_value=-(10**8), max_value=10**8)
TOKENS = st.integers(min_value=0, max_value=10**6)


@st.composite
def ledger_rows(draw: st.DrawFn) -> LedgerRow:
    kind = draw(st.sampled_from(KINDS))
    exact = draw(MICROS) if kind == "hit-exact" else 0
    semantic = draw(MICROS) if kind == "hit-semantic" else 0
    routing = draw(SIGNED) if kind not in ("hit-exact", "hit-semantic") else 0
    prompt_cache = draw(SIGNED) if kind not in ("hit-exact", "hit-semantic") else 0
    batch = draw(MICROS) if kind == "batch" else 0
    cost = 0 if kind.startswith("hit") else draw(MICROS)
    saved = exact + semantic + routing + prompt_cache + batch
    # Baseline must not be negative: raise cost until it is not.
    cost = max(cost, -saved)
    return make_row(
        ts=draw(st.floats(min_value=0, max_value=999.999, allow_nan=False)),
        kind=kind,
        model_used=draw(st.sampled_from(["claude-haiku-4-5", "claude-opus-4-5", "unknown-x"])),
        feature=draw(st.none() | st.sampled_from(["search", "요약"])),
        input_tokens=draw(TOKENS),
        output_tokens=draw(TOKENS),
        cache_creation_tokens=draw(TOKENS),
        cache_read_tokens=draw(TOKENS),
        cost_micros=cost,
        baseline_micros=cost + saved,
        saved_exact_micros=exact,
        saved_semantic_micros=semantic,
        saved_routing_micros=routing,
        saved_prompt_cache_micros=prompt_cache,
        saved_batch_micros=batch,
        priced=draw(st.booleans()),
        latency_ms=draw(st.floats(min_value=0, max_value=60_000, allow_nan=False)),
    )


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * percent / 100) - 1]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(ledger_rows(), min_size=1, max_size=30))
def test_totals_equal_the_sum_of_the_rows(shared_ledger: Ledger, rows: list[LedgerRow]) -> None:
    tenant = uuid.uuid4().hex  # each example sees only its own rows
    rows = [replace(row, tenant=tenant) for row in rows]
    shared_ledger.record_many(rows)
    totals = shared_ledger.totals(0, 1_000, tenant=tenant)

    assert totals.requests == len(rows)
    for kind in KINDS:
        assert totals.by_kind[kind] == sum(r.kind == kind for r in rows)
    for name in (
        "cost_micros",
        "baseline_micros",
        "saved_exact_micros",
        "saved_semantic_micros",
        "saved_routing_micros",
        "saved_prompt_cache_micros",
        "saved_batch_micros",
        "input_tokens",
        "output_tokens",
        "cache_creation_tokens",
        "cache_read_tokens",
    ):
        assert getattr(totals, name) == sum(getattr(r, name) for r in rows), name
    assert sum(totals.saved_by_source.values()) == totals.saved_micros
    assert totals.saved_micros == totals.baseline_micros - totals.cost_micros
    assert totals.unpriced == sum(not r.priced for r in rows)
    assert totals.unpriced_models == tuple(sorted({r.model_used for r in rows if not r.priced}))
    latencies = [r.latency_ms for r in rows]
    assert totals.latency_p50_ms == nearest_rank(latencies, 50)
    assert totals.latency_p95_ms == nearest_rank(latencies, 95)
    hits = sum(r.kind.startswith("hit") for r in rows)
    looked_up = hits + sum(r.kind in ("miss", "batch") for r in rows)
    assert totals.hit_rate == (hits / looked_up if looked_up else None)

    # Every grouping partitions the same rows.
    for column in GROUP_COLUMNS:
        groups = shared_ledger.totals_by(0, 1_000, [column], tenant=tenant)
        assert sum(g.requests for g in groups) == totals.requests
        assert sum(g.saved_micros for g in groups) == totals.saved_micros
        assert sum(g.cost_micros for g in groups) == totals.cost_micros


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_writes_and_reads_from_threads(ledger: Ledger) -> None:
    writers, per_writer = 8, 40
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                ledger.record(make_row(ts=1_000.0 + i, request_id=f"w{n}-{i}"))
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                totals = ledger.totals(0, 2e9)
                assert totals.saved_micros == totals.baseline_micros - totals.cost_micros
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    reader.join(timeout=60)
    assert errors == []
    totals = ledger.totals(0, 2e9)
    assert totals.requests == writers * per_writer
    assert totals.cost_micros == writers * per_writer * 350
    assert len({r.request_id for r in ledger.rows(0, 2e9)}) == writers * per_writer


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from tests.test_ledger import make_row
    from service.ledger import Ledger
    with Ledger(Path(sys.argv[1])) as ledger:
        for i in range(20):
            ledger.record(make_row(request_id=f"{sys.argv[2]}-{i}"))
    """
)


def test_several_processes_open_and_write_one_new_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), f"p{n}", str(REPO)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.decode()
    with Ledger(path) as ledger:
        assert ledger.totals(0, 2e9).requests == 60
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


# --- promptcache report ------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptcache")
    report.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTCACHE_CONFIG", "PROMPTCACHE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_report_prints_an_aligned_table(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        seed_day(ledger, ts("2026-03-10T00:00:00+09:00"))
    args = parse("report", "--day", "2026-03-10", "--tz", "Asia/Seoul", "--data-dir", str(tmp_path))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "promptcache report for 2026-03-10 (Asia/Seoul)"
    requests = next(line for line in lines if line.startswith("requests"))
    assert requests.split() == ["requests", "6"]
    assert "$0.001725" in out  # cost: 350 + 175 + 1200 micros
    assert "$0.006100" in out  # baseline
    assert "$0.004375" in out  # saved
    assert "-$0.000200" in out  # prompt cache, negative
    assert "50.0%" in out
    assert "20.0 ms / 100.0 ms" in out
    assert "claude-mystery" in out
    # Values end in one column.
    assert len({len(line) for line in lines[2:]}) == 1


def test_report_json_matches_the_ledger(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        seed_day(ledger, ts("2026-03-10T00:00:00+00:00"))
    args = parse("report", "--day", "2026-03-10", "--format", "json", "--data-dir", str(tmp_path))
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"] == 6
    assert data["by_kind"]["batch"] == 1
    assert data["cost_micros"] == 1_725
    assert data["saved_micros"] == data["baseline_micros"] - data["cost_micros"] == 4_375
    assert data["saved_by_source_micros"]["prompt_cache"] == -200
    assert data["saved_usd"] == pytest.approx(0.004375)
    assert data["hit_rate"] == 0.5
    assert data["latency_ms"] == {"p50": 20.0, "p95": 100.0}
    assert data["unpriced_models"] == ["claude-mystery"]
    assert data["tenant"] is None


def test_report_defaults_to_today_and_filters_by_tenant(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC).timestamp()
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.record(make_row(ts=now))
        ledger.record(make_row(ts=now, tenant="globex"))
    args = parse("report", "--format", "json", "--data-dir", str(tmp_path), "--tenant", "globex")
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["day"] == datetime.now(UTC).date().isoformat()
    assert (data["requests"], data["tenant"]) == (1, "globex")


def test_report_without_a_ledger_says_so_and_prints_zeros(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("report", "--data-dir", str(tmp_path / "fresh"))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        f"no ledger yet at {tmp_path / 'fresh' / 'ledger.sqlite3'}: serve some requests first"
    )
    assert "$0.000000" in out
    assert not (tmp_path / "fresh").exists()  # a report creates nothing
    args = parse("report", "--format", "json", "--data-dir", str(tmp_path / "fresh"))
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["requests"] == 0
    assert "no ledger yet" in captured.err


def test_report_errors_are_one_line_on_stderr(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("report", "--data-dir", str(tmp_path), "--tz", "Mars/Olympus")
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Mars/Olympus" in captured.err

    args = parse("report", "--config", str(tmp_path / "missing.toml"))
    assert args.func(args) == 1
    assert "config file not found" in capsys.readouterr().err

    (tmp_path / "ledger.sqlite3").write_bytes(b"garbage" * 200)
    args = parse("report", "--data-dir", str(tmp_path))
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("promptcache: cannot open ledger") and err.count("\n") == 1


def test_report_rejects_a_malformed_day(clean_env: None) -> None:
    with pytest.raises(SystemExit) as info:
        parse("report", "--day", "10/03/2026")
    assert info.value.code == 2


def test_close_while_other_threads_write_neither_crashes_nor_loses_rows(tmp_path: Path) -> None:
    """Closing under a running statement used to kill the process (segfault in sqlite3)."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    written = [0] * 4
    outcome: list[str] = []
    started = threading.Barrier(len(written) + 1)

    def writer(slot: int) -> None:
        started.wait()
        try:
            while True:
                ledger.record(make_row())
                written[slot] += 1
                ledger.totals(0, 2e9)
        except StorageError as exc:
            outcome.append(str(exc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(written))]
    for thread in threads:
        thread.start()
    started.wait()
    while sum(written) < 40:
        threading.Event().wait(0.005)
    ledger.close()
    for thread in threads:
        thread.join(10)
    assert all("is closed" in message for message in outcome) and len(outcome) == 4
    with Ledger(tmp_path / "ledger.sqlite3") as reopened:
        assert reopened.totals(0, 2e9).requests == sum(written)


def test_a_row_past_sqlite_integers_is_refused_as_storage_and_never_blocks_a_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cost past 2**63 micro-dollars once stayed noted and made every start fail."""
    huge = 2**70

    def noted(request_id: str, cost: int) -> LedgerRow:
        return make_row(
            request_id=request_id,
            kind="error",
            status=0,
            error="interrupted",
            cost_micros=cost,
            baseline_micros=cost,
            saved_routing_micros=0,
        )

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        with pytest.raises(StorageError, match="cannot write ledger"):
            ledger.record(noted("direct", huge))
        ledger.note_upstream(noted("absurd", huge))
        ledger.note_upstream(noted("plain", 120))
    with Ledger(path) as ledger, caplog.at_level(logging.ERROR):
        assert [r.request_id for r in ledger.settle_interrupted()] == ["plain"]
        assert ledger.upstream_pending() == []
    assert "to be added by hand" in caplog.text and '"absurd"' in caplog.text


def test_periods_past_the_calendar_are_a_bad_request_not_a_crash() -> None:
    """9999-12-31 has no next midnight: it was an OverflowError (a 500, a traceback)."""
    for day in (date(9999, 12, 31), date(1, 1, 1)):
        with pytest.raises(InvalidRequest, match="year must be"):
            day_window(day)
    assert day_window(date(9998, 12, 31))[1] > day_window(date(9998, 12, 30))[1]
