"""Usage reports: hand-computed breakdowns, parts that add up, table/CSV/JSON, CLI and HTTP."""

from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.alerts import AlertCenter
from service.cli import report as report_cmd
from service.errors import InvalidRequest
from service.ledger import KINDS, Ledger, LedgerRow, Totals
from service.reports import (
    BREAKDOWNS,
    CSV_FIELDS,
    build_report,
    day_period,
    month_period,
    report_csv,
    report_json,
    report_table,
    resolve_period,
)
from tests.conftest import make_settings
from tests.servers import running
from tests.test_alerts import ADMIN, CLIENT, usage_app

DAY = date(2026, 3, 10)
TZ = "Asia/Seoul"
MIDNIGHT = datetime.fromisoformat("2026-03-10T00:00:00+09:00").timestamp()


def row(
    ts: float,
    kind: str,
    *,
    cost: int = 0,
    baseline: int = 0,
    tenant: str = "acme",
    feature: str | None = "search",
    model: str = "claude-haiku-4-5",
    latency: float = 10.0,
    tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
    **saved: int,
) -> LedgerRow:
    """A row; `saved` names the sources (exact=..., routing=...); they must balance."""
    sources = ("exact", "semantic", "routing", "prompt_cache", "batch")
    return LedgerRow(
        ts=ts,
        request_id="req",
        tenant=tenant,
        namespace="default",
        feature=feature,
        kind=kind,  # type: ignore[arg-type]
        model_requested="auto",
        model_used=model,
        route_tier=None,
        route_reasons=None,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_creation_tokens=tokens[2],
        cache_read_tokens=tokens[3],
        cost_micros=cost,
        baseline_micros=baseline,
        **{f"saved_{s}_micros": saved.get(s, 0) for s in sources},  # type: ignore[arg-type]
        priced=True,
        similarity=None,
        latency_ms=latency,
        entry_id=None,
        status=502 if kind == "error" else 200,
    )


HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-6"


def seed(ledger: Ledger, start: float = MIDNIGHT) -> None:
    """Six answers of one Seoul day and two just outside it (see the hand sums below)."""
    ledger.record_many(
        [
            row(start + 1, "hit-exact", baseline=3_000, exact=3_000, latency=2.0),
            row(
                start + 2,
                "hit-semantic",
                baseline=6_000,
                semantic=6_000,
                model=SONNET,
                latency=30.0,
            ),
            row(
                start + 3,
                "miss",
                cost=1_000,
                baseline=3_000,
                routing=2_000,
                feature="chat",
                latency=400.0,
                tokens=(500, 100, 0, 0),
            ),
            row(
                start + 4,
                "miss",
                cost=4_500,
                baseline=4_000,
                prompt_cache=-500,
                tenant="globex",
                feature=None,
                model=SONNET,
                latency=900.0,
                tokens=(1_000, 200, 800, 0),
            ),
            row(
                start + 5,
                "batch",
                cost=500,
                baseline=3_000,
                routing=2_000,
                batch=500,
                tenant="globex",
                feature="chat",
                latency=50.0,
                tokens=(500, 100, 0, 300),
            ),
            row(start + 86_399, "error", model=SONNET, latency=5.0),
            row(start - 1, "miss", cost=7, baseline=7, latency=1.0),  # the day before
            row(start + 86_400, "miss", cost=9, baseline=9, latency=1.0),  # the day after
        ]
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


def by_group(data: dict[str, Any], breakdown: str) -> dict[Any, dict[str, Any]]:
    return {item["group"]: item for item in data["breakdown"][breakdown]}


def test_a_day_report_against_hand_computed_sums(ledger: Ledger) -> None:
    seed(ledger)
    data = report_json(build_report(ledger, day_period(DAY, TZ)))
    assert (data["period"], data["day"], data["tz"], data["tenant"]) == (
        "day",
        "2026-03-10",
        TZ,
        None,
    )
    assert data["requests"] == 6
    assert (data["cost_micros"], data["baseline_micros"], data["saved_micros"]) == (
        6_000,
        19_000,
        13_000,
    )
    assert data["saved_by_source_micros"] == {
        "exact": 3_000,
        "semantic": 6_000,
        "routing": 4_000,
        "prompt_cache": -500,
        "batch": 500,
    }
    assert data["hit_rate"] == pytest.approx(2 / 5)  # 2 hits; 2 misses and 1 batch
    assert data["latency_ms"] == {"p50": 30.0, "p95": 900.0}
    assert data["tokens"] == {
        "input": 2_000,
        "output": 400,
        "cache_creation": 800,
        "cache_read": 300,
    }

    models = by_group(data, "model")
    assert list(models) == [HAIKU, SONNET]
    haiku, sonnet = models[HAIKU], models[SONNET]
    assert (haiku["requests"], haiku["cost_micros"], haiku["baseline_micros"]) == (3, 1_500, 9_000)
    assert haiku["saved_by_source_micros"] == {
        "exact": 3_000,
        "semantic": 0,
        "routing": 4_000,
        "prompt_cache": 0,
        "batch": 500,
    }
    assert haiku["hit_rate"] == pytest.approx(1 / 3)
    assert haiku["latency_ms"] == {"p50": 50.0, "p95": 400.0}
    assert (sonnet["requests"], sonnet["cost_micros"], sonnet["saved_micros"]) == (3, 4_500, 5_500)
    assert sonnet["hit_rate"] == pytest.approx(1 / 2)  # the error is not a lookup
    assert sonnet["latency_ms"] == {"p50": 30.0, "p95": 900.0}

    features = by_group(data, "feature")
    assert list(features) == [None, "chat", "search"]  # no label first
    assert [features[f]["requests"] for f in features] == [1, 2, 3]
    assert features["chat"]["cost_micros"] == 1_500
    tenants = by_group(data, "tenant")
    assert {t: (v["cost_micros"], v["baseline_micros"]) for t, v in tenants.items()} == {
        "acme": (1_000, 12_000),
        "globex": (5_000, 7_000),
    }
    kinds = by_group(data, "kind")
    assert {k: v["requests"] for k, v in kinds.items()} == {
        "batch": 1,
        "error": 1,
        "hit-exact": 1,
        "hit-semantic": 1,
        "miss": 2,
    }
    assert kinds["miss"]["saved_by_source_micros"]["prompt_cache"] == -500


def test_savings_no_ledger_row_paid_for_are_reported_as_stated(ledger: Ledger) -> None:
    """A client can store an entry through the cache API with any `usage`; its hits are priced
    from that. The report names that part of the saving apart from what the ledger proves:
    hits on an entry a miss, bypass or batch row paid for (on any day)."""
    paid, stated = 11, 22
    ledger.record_many(
        [
            replace(row(MIDNIGHT - 86_400, "miss", cost=900, baseline=900), entry_id=paid),
            replace(row(MIDNIGHT + 1, "hit-exact", baseline=900, exact=900), entry_id=paid),
            replace(row(MIDNIGHT + 2, "hit-semantic", baseline=50, semantic=50), entry_id=stated),
            replace(row(MIDNIGHT + 3, "hit-exact", baseline=70, exact=70), entry_id=stated),
        ]
    )
    report = build_report(ledger, day_period(DAY, TZ))
    assert report.totals.saved_micros == 1_020 and report.totals.stated_micros == 120
    assert report_json(report)["saved_stated_micros"] == 120
    features = {t.group[0]: t.stated_micros for t in report.breakdown["feature"]}
    assert features == {"search": 120}
    assert "stated, not paid here" in report_table(report, Path("ledger.sqlite3"))
    total = next(csv.DictReader(io.StringIO(report_csv(report))))
    assert total["saved_stated_usd"] == "0.000120"


def test_one_tenant_and_a_month(ledger: Ledger) -> None:
    seed(ledger)
    seed(ledger, datetime.fromisoformat("2026-03-31T00:00:00+09:00").timestamp())
    # 1 March 00:00 Seoul is still February in UTC; the rows just outside March stay out.
    seed(ledger, datetime.fromisoformat("2026-03-01T00:00:00+09:00").timestamp())
    month = report_json(build_report(ledger, month_period(2026, 3, TZ)))
    assert (month["period"], month["month"]) == ("month", "2026-03")
    assert "day" not in month
    # Three seeded days; each brings its 6 rows plus the neighbours that fall inside March.
    inside = 3 * 6 + 2 + 1 + 1  # 10 Mar's neighbours, 31 Mar's day before, 1 Mar's day after
    assert month["requests"] == inside
    globex = report_json(build_report(ledger, day_period(DAY, TZ), "globex"))
    assert (globex["tenant"], globex["requests"], globex["cost_micros"]) == ("globex", 2, 5_000)
    assert list(by_group(globex, "tenant")) == ["globex"]


def test_periods_from_request_parameters() -> None:
    noon_utc = datetime.fromisoformat("2026-03-10T20:00:00+00:00").timestamp()
    assert resolve_period(None, None, TZ, noon_utc).label == "2026-03-11"  # already tomorrow
    assert resolve_period("2026-03-10", None, TZ, 0).kind == "day"
    december = resolve_period(None, "2026-12", TZ, 0)
    assert december.end_ts - december.start_ts == 31 * 86_400
    assert december.end_ts == datetime.fromisoformat("2027-01-01T00:00:00+09:00").timestamp()
    for day, month in (
        ("2026-03-10", "2026-03"),
        ("10/03/2026", None),
        (None, "2026-13"),
        ("9999-12-31", None),  # was a 500: no next midnight to end the day
        (None, "9999-12"),
        (None, "0000-01"),
    ):
        with pytest.raises(InvalidRequest):
            resolve_period(day, month, TZ, 0)


# --- the parts add up --------------------------------------------------------------------------

SUMMED = (
    "requests",
    "hits_exact",
    "hits_semantic",
    "misses",
    "bypasses",
    "errors",
    "batches",
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
    "unpriced",
)


@st.composite
def ledger_rows(draw: st.DrawFn) -> LedgerRow:
    kind = draw(st.sampled_from(KINDS))
    cost = 0 if kind.startswith("hit-") else draw(st.integers(0, 10**7))
    routing = draw(st.integers(-(10**6), 10**6))
    prompt_cache = draw(st.integers(-(10**5), 10**5))
    batch = draw(st.integers(0, 10**5)) if kind == "batch" else 0
    hit = draw(st.integers(0, 10**6)) if kind.startswith("hit-") else 0
    baseline = cost + routing + prompt_cache + batch + hit
    if baseline < 0:
        routing -= baseline
        baseline = 0
    return row(
        MIDNIGHT + draw(st.integers(0, 2 * 86_400 - 1)),
        kind,
        cost=cost,
        baseline=baseline,
        tenant=draw(st.sampled_from(["acme", "globex", "회사"])),
        feature=draw(st.sampled_from([None, "search", "chat"])),
        model=draw(st.sampled_from([HAIKU, SONNET, "claude-opus-4-6"])),
        latency=draw(st.floats(0, 5_000, allow_nan=False)),
        tokens=draw(st.tuples(*[st.integers(0, 10**5)] * 4)),
        routing=routing,
        prompt_cache=prompt_cache,
        batch=batch,
        exact=hit if kind == "hit-exact" else 0,
        semantic=hit if kind == "hit-semantic" else 0,
    )


def assert_adds_up(total: Totals, parts: tuple[Totals, ...]) -> None:
    for name in SUMMED:
        assert sum(getattr(part, name) for part in parts) == getattr(total, name), name
    for item in (total, *parts):
        assert sum(item.saved_by_source.values()) == item.saved_micros
        assert item.saved_micros == item.baseline_micros - item.cost_micros


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(ledger_rows(), max_size=30), tenant=st.sampled_from([None, "acme"]))
def test_every_breakdown_adds_up_to_the_totals(rows: list[LedgerRow], tenant: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder, Ledger(Path(folder) / "l.sqlite3") as ledger:
        ledger.record_many(rows)
        for period in (day_period(DAY, TZ), month_period(2026, 3, TZ)):
            report = build_report(ledger, period, tenant)
            expected = [
                r
                for r in rows
                if period.start_ts <= r.ts < period.end_ts and tenant in (None, r.tenant)
            ]
            assert report.totals.requests == len(expected)
            assert report.totals.cost_micros == sum(r.cost_micros for r in expected)
            assert set(report.breakdown) == set(BREAKDOWNS)
            for parts in report.breakdown.values():
                assert_adds_up(report.totals, parts)
            reread = list(csv.DictReader(io.StringIO(report_csv(report))))
            for name in BREAKDOWNS:
                cost = sum(
                    int(r["cost_usd"].replace(".", "")) for r in reread if r["breakdown"] == name
                )
                assert cost == report.totals.cost_micros


# --- renderings ---------------------------------------------------------------------------------


def test_the_table_has_a_section_per_breakdown_and_one_right_edge(ledger: Ledger) -> None:
    seed(ledger)
    ledger.record_many([row(MIDNIGHT + 9, "miss", cost=10, baseline=10, feature="상담봇")])
    text = report_table(build_report(ledger, day_period(DAY, TZ)), ledger.path)
    lines = text.splitlines()
    assert lines[0] == "promptcache report for 2026-03-10 (Asia/Seoul)"

    def shown(line: str) -> int:  # Hangul takes two columns in a terminal
        return sum(2 if unicodedata.east_asian_width(ch) == "W" else 1 for ch in line)

    assert any("상담봇" in line for line in lines)
    assert len({shown(line) for line in lines[2:]}) == 1
    assert [line.split()[2] for line in lines if line.startswith("-- by ")] == [
        "model",
        "feature",
        "tenant",
        "kind",
    ]
    sonnet = next(line for line in lines if line.startswith(SONNET))
    cells = [SONNET, "3", "50.0%", "$0.004500", "$0.010000", "$0.005500", "30.0", "ms", "900.0"]
    assert sonnet.split() == [*cells, "ms"]
    assert any(line.startswith("(none) ") for line in lines)  # a row without a feature


def test_csv_has_a_total_row_and_exact_money(ledger: Ledger) -> None:
    seed(ledger)
    rows = list(csv.DictReader(io.StringIO(report_csv(build_report(ledger, day_period(DAY, TZ))))))
    assert tuple(rows[0]) == CSV_FIELDS
    total = rows[0]
    assert (total["breakdown"], total["group"], total["requests"]) == ("total", "", "6")
    assert (total["cost_usd"], total["saved_prompt_cache_usd"]) == ("0.006000", "-0.000500")
    assert total["hit_rate"] == "0.400000"
    assert {r["group"] for r in rows if r["breakdown"] == "tenant"} == {"acme", "globex"}


# --- CLI ---------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptcache")
    report_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTCACHE_CONFIG", "PROMPTCACHE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_cli_month_report_as_json_and_csv(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        seed(ledger)
    common = ("--data-dir", str(tmp_path), "--tz", TZ, "--no-check")
    args = parse("report", "--month", "2026-03", "--format", "json", *common)
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["month"], data["requests"], data["alerts"]) == ("2026-03", 8, [])
    assert by_group(data, "tenant")["globex"]["cost_micros"] == 5_000
    args = parse("report", "--day", "2026-03-10", "--format", "csv", *common)
    assert args.func(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["requests"] == "6"


def test_cli_takes_the_zone_from_the_config_and_refuses_two_periods(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        seed(ledger)
    config = tmp_path / "promptcache.toml"
    config.write_text(f'timezone = "{TZ}"\n', encoding="utf-8")
    args = parse(
        "report", "--day", "2026-03-10", "--config", str(config), "--data-dir", str(tmp_path)
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "promptcache report for 2026-03-10 (Asia/Seoul)"
    assert next(line for line in out.splitlines() if line.startswith("requests")).split() == [
        "requests",
        "6",
    ]
    with pytest.raises(SystemExit) as info:
        parse("report", "--day", "2026-03-10", "--month", "2026-03")
    assert info.value.code == 2


# --- HTTP --------------------------------------------------------------------------------------


def test_usage_report_over_http_keeps_clients_to_their_tenant(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", timezone=TZ)
    with Ledger(settings.ledger_path) as ledger:
        seed(ledger)
        app = usage_app(settings, ledger, AlertCenter(ledger, settings.alerts))
        with running(app) as url:

            def get(query: str, key: str | None) -> httpx.Response:
                headers = {"x-api-key": key} if key else {}
                return httpx.get(f"{url}/v1/usage/report?{query}", headers=headers, timeout=10)

            client = get("day=2026-03-10", CLIENT)
            client_month = get("month=2026-03", CLIENT)
            client_other = get("day=2026-03-10&tenant=globex", CLIENT)
            admin_all = get("day=2026-03-10", ADMIN)
            admin_one = get("day=2026-03-10&tenant=globex", ADMIN)
            both = get("day=2026-03-10&month=2026-03", ADMIN)
            bad = get("month=March", ADMIN)
            bad_zone = get("day=2026-03-10&tz=Mars/Olympus", ADMIN)
            today = get("", ADMIN)
    assert client.status_code == 200
    mine = client.json()
    assert (mine["tenant"], mine["requests"], mine["cost_micros"]) == ("acme", 4, 1_000)
    assert "ledger" not in mine
    assert client_month.json()["month"] == "2026-03"
    assert client_other.status_code == 403
    assert client_other.json()["error"]["type"] == "permission_error"
    assert (admin_all.json()["tenant"], admin_all.json()["requests"]) == (None, 6)
    assert (admin_one.json()["tenant"], admin_one.json()["requests"]) == ("globex", 2)
    for refused in (both, bad, bad_zone):
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "invalid_request_error"
    assert today.status_code == 200 and today.json()["tz"] == TZ
