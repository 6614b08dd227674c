"""`promptcache report`: a day's or a month's totals and breakdowns from the ledger.

The period is a local calendar day (`--day`, default today) or month (`--month`) in `--tz`
(default: the configured `timezone`, UTC unless set). Output is an aligned table, JSON or CSV
(`service.reports` renders all three). The command also runs the anomaly check for today
(`service.anomaly`) and prints any alert it newly raised, delivering it to the configured
webhooks before it exits; `--no-check` skips that.

A data directory with no ledger yet is not an error: the command says so in one line (on
stderr when the output is JSON or CSV, so stdout stays parseable) and prints zero totals,
exit 0. Problems print one line on stderr, worded and coded as `service.cli.main` does: exit 2
for a bad argument (an unknown time zone), 1 for settings or storage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from service.alerts import AlertCenter, payload
from service.anomaly import AnomalyWatch
from service.cli.common import add_common, settings_from
from service.config import Settings
from service.errors import PromptCacheError, StorageError
from service.ledger import AlertRecord, Ledger
from service.periods import zone
from service.reports import (
    build_report,
    day_period,
    empty_report,
    month_period,
    parse_month,
    report_csv,
    report_json,
    report_table,
)

# Longest the command waits for webhooks to take its new alerts.
_MAX_DELIVERY_WAIT_S = 60.0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _month(text: str) -> tuple[int, int]:
    try:
        return parse_month(text)
    except PromptCacheError as exc:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {text!r}") from exc


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `report` on the CLI's subcommand parser."""
    parser = subparsers.add_parser(
        "report",
        help="a day's or month's cost and savings from the ledger",
        description=(
            "Print a day's or a month's requests, cost, baseline and savings from the ledger, "
            "by model, feature, tenant and kind, and raise any new cost or hit-rate alert."
        ),
    )
    period = parser.add_mutually_exclusive_group()
    period.add_argument("--day", type=_day, help="YYYY-MM-DD (default: today in --tz)")
    period.add_argument("--month", type=_month, help="YYYY-MM")
    parser.add_argument(
        "--tz", help="IANA time zone of the period (default: the configured timezone, UTC)"
    )
    parser.add_argument("--tenant", help="only this tenant's rows")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--no-check", action="store_true", help="do not run the anomaly check (read only)"
    )
    add_common(parser)
    parser.set_defaults(func=run)


def _check(
    settings: Settings, ledger: Ledger, clock: Callable[[], float], err: TextIO
) -> list[AlertRecord]:
    """Run today's anomaly check; deliver what it raised (bounded wait) and return it."""
    center = AlertCenter(ledger, settings.alerts, clock=clock)
    try:
        raised = AnomalyWatch(settings, ledger, center, clock=clock).check_now()
        if raised and center.webhooks:
            wait = min(_MAX_DELIVERY_WAIT_S, center.delivery_bound_seconds() * len(raised))
            if not center.flush(wait):
                print("promptcache: alert delivery to webhooks did not finish", file=err)
    finally:
        center.close(timeout=1.0)
    return raised


@contextlib.contextmanager
def _open_ledger(path: Path, *, read_only: bool, err: TextIO) -> Iterator[tuple[Ledger, bool]]:
    """The ledger and whether it is read-only. A report changes nothing but the alerts its
    anomaly check raises, so a ledger SQLite refuses to write (a backup copy, a read-only
    mount) is read as it is, without the check, rather than not at all."""
    if not read_only:
        try:
            ledger = Ledger(path)
        except StorageError as exc:
            if not _refused_write(exc):
                raise
            print(
                f"promptcache: {path} cannot be written ({exc.__cause__}): reporting from it "
                "read-only, without the anomaly check",
                file=err,
            )
            read_only = True
    if read_only:
        ledger = Ledger(path, read_only=True)
    with ledger:
        yield ledger, read_only


def _refused_write(exc: StorageError) -> bool:
    code = getattr(exc.__cause__, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
    )


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Print the report; 0 on success (also when no ledger exists yet), 1 or 2 on error."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    fmt: str = args.format
    alerts: list[AlertRecord] = []
    try:
        settings = settings_from(args)
        tz: str = args.tz or settings.timezone
        month: tuple[int, int] | None = getattr(args, "month", None)
        if month is not None:
            period = month_period(*month, tz)
        else:
            day: date = args.day or datetime.fromtimestamp(clock(), zone(tz)).date()
            period = day_period(day, tz)
        path = settings.ledger_path
        if path.exists():
            no_check: bool = getattr(args, "no_check", False)
            with _open_ledger(path, read_only=no_check, err=err) as (ledger, read_only):
                report = build_report(ledger, period, args.tenant, settings.proxy.task_max_tokens)
                if not (no_check or read_only):
                    try:
                        alerts = _check(settings, ledger, clock, err)
                    except PromptCacheError as exc:
                        print(f"promptcache: anomaly check skipped: {exc.message}", file=err)
        else:
            report = empty_report(period, args.tenant)
            notice = f"no ledger yet at {path}: serve some requests first"
            print(notice, file=out if fmt == "table" else err)
    except PromptCacheError as exc:
        print(f"promptcache: {exc.message}", file=err)
        return 2 if exc.status < 500 else 1
    except OSError as exc:
        print(f"promptcache: {exc}", file=err)
        return 1
    if fmt == "json":
        data = report_json(report, ledger_path=path)
        data["alerts"] = [payload(alert) for alert in alerts]
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    if fmt == "csv":
        out.write(report_csv(report))
    else:
        out.write(report_table(report, path))
    for alert in alerts:
        line = f"new alert: {alert.kind} ({alert.scope}): {alert.message}"
        print(line, file=out if fmt == "table" else err)
    return 0
