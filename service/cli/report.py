"""`promptcache report`: one day's totals from the ledger, as an aligned table or as JSON.

The day is a local calendar day in `--tz` (default UTC; today when `--day` is not given).
A data directory with no ledger yet is not an error: the command says so in one line (on
stderr when the output is JSON, so stdout stays parseable) and prints zero totals, exit 0.
Problems print one line on stderr, worded and coded as `service.cli.main` does: exit 2 for a bad
argument (an unknown time zone), 1 for settings or storage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from service.cli.common import add_common, settings_from
from service.errors import PromptCacheError
from service.ledger import DayTotals, Ledger, Totals, day_window, empty_totals, zone
from service.pricing import format_usd

_SOURCE_LABELS = {
    "exact": "exact hits",
    "semantic": "semantic hits",
    "routing": "routing",
    "prompt_cache": "prompt cache",
    "batch": "batch",
}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `report` on the CLI's subcommand parser."""
    parser = subparsers.add_parser(
        "report",
        help="the day's cost and savings from the ledger",
        description="Print one day's requests, cost, baseline and savings from the ledger.",
    )
    parser.add_argument("--day", type=_day, help="YYYY-MM-DD (default: today in --tz)")
    parser.add_argument("--tz", default="UTC", help="IANA time zone of the day (default UTC)")
    parser.add_argument("--tenant", help="only this tenant's rows")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_common(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the report; 0 on success (also when no ledger exists yet), 1 or 2 on error."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        settings = settings_from(args)
        day = args.day if args.day is not None else datetime.now(zone(args.tz)).date()
        path = settings.ledger_path
        if path.exists():
            with Ledger(path) as ledger:
                report = ledger.day_totals(day, args.tz, tenant=args.tenant)
        else:
            start_ts, end_ts = day_window(day, args.tz)
            report = DayTotals(day, args.tz, start_ts, end_ts, empty_totals())
            notice = f"no ledger yet at {path}: serve some requests first"
            print(notice, file=err if args.format == "json" else out)
    except PromptCacheError as exc:
        print(f"promptcache: {exc.message}", file=err)
        return 2 if exc.status < 500 else 1
    except OSError as exc:
        print(f"promptcache: {exc}", file=err)
        return 1
    if args.format == "json":
        out.write(json.dumps(report_json(report, path, args.tenant), indent=2) + "\n")
    else:
        out.write(report_table(report, path, args.tenant))
    return 0


def _usd(micros: int) -> float:
    return round(micros / 1_000_000, 6)


def report_json(report: DayTotals, ledger_path: Path, tenant: str | None) -> dict[str, Any]:
    """The report as JSON-ready values; money both as exact micros and as USD numbers."""
    totals = report.totals
    return {
        "day": report.day.isoformat(),
        "tz": report.tz,
        "start_ts": report.start_ts,
        "end_ts": report.end_ts,
        "tenant": tenant,
        "ledger": str(ledger_path),
        "requests": totals.requests,
        "by_kind": totals.by_kind,
        "hit_rate": totals.hit_rate,
        "cost_usd": _usd(totals.cost_micros),
        "baseline_usd": _usd(totals.baseline_micros),
        "saved_usd": _usd(totals.saved_micros),
        "saved_by_source_usd": {k: _usd(v) for k, v in totals.saved_by_source.items()},
        "cost_micros": totals.cost_micros,
        "baseline_micros": totals.baseline_micros,
        "saved_micros": totals.saved_micros,
        "saved_by_source_micros": totals.saved_by_source,
        "tokens": {
            "input": totals.input_tokens,
            "output": totals.output_tokens,
            "cache_creation": totals.cache_creation_tokens,
            "cache_read": totals.cache_read_tokens,
        },
        "latency_ms": {"p50": totals.latency_p50_ms, "p95": totals.latency_p95_ms},
        "unpriced_requests": totals.unpriced,
        "unpriced_models": list(totals.unpriced_models),
    }


def _money(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    return f"{sign}${format_usd(abs(micros))}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _lines(totals: Totals) -> list[tuple[str, str]]:
    hit_rate = "-" if totals.hit_rate is None else f"{totals.hit_rate * 100:.1f}%"
    lines = [("requests", f"{totals.requests:,}")]
    lines += [(f"  {kind}", f"{count:,}") for kind, count in totals.by_kind.items()]
    lines += [
        ("hit rate", hit_rate),
        ("cost", _money(totals.cost_micros)),
        ("baseline", _money(totals.baseline_micros)),
        ("saved", _money(totals.saved_micros)),
    ]
    lines += [
        (f"  {_SOURCE_LABELS[source]}", _money(micros))
        for source, micros in totals.saved_by_source.items()
    ]
    lines += [
        ("tokens in / out", f"{totals.input_tokens:,} / {totals.output_tokens:,}"),
        (
            "cache write / read",
            f"{totals.cache_creation_tokens:,} / {totals.cache_read_tokens:,}",
        ),
        ("latency p50 / p95", f"{_ms(totals.latency_p50_ms)} / {_ms(totals.latency_p95_ms)}"),
        ("unpriced requests", f"{totals.unpriced:,}"),
        ("unpriced models", ", ".join(totals.unpriced_models) or "none"),
    ]
    return lines


def report_table(report: DayTotals, ledger_path: Path, tenant: str | None) -> str:
    """The report as aligned `label  value` lines, money right-aligned."""
    header = f"promptcache report for {report.day.isoformat()} ({report.tz})"
    if tenant is not None:
        header += f", tenant {tenant}"
    lines = [("ledger", str(ledger_path)), *_lines(report.totals)]
    label_width = max(len(label) for label, _ in lines)
    value_width = max(len(value) for label, value in lines if label != "ledger")
    body = [
        f"{label.ljust(label_width)}  {value if label == 'ledger' else value.rjust(value_width)}"
        for label, value in lines
    ]
    return "\n".join([header, *body]) + "\n"
