"""Usage reports: a day's or a month's totals from the ledger, broken down four ways.

A report is the ledger's `Totals` over one local calendar period (a day or a month in an IANA
zone), optionally for one tenant, plus the same sums grouped by the model that answered
(`model_used`), the feature label, the tenant and the kind of answer (hit-exact, hit-semantic,
miss, bypass, error, batch). Everything is summed in SQL by `Ledger.totals_by`, so every
grouping adds up to the totals (bar the latency percentiles, which do not add). The same
`Report` is rendered as JSON (`GET /v1/usage/report`, `promptcache report --format json`), as
an aligned text table and as CSV; money is exact: integer micros, or USD as decimal text.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from service.errors import InvalidRequest
from service.ledger import GroupBy, Ledger, MaxTokensOpportunity, Totals, empty_totals
from service.periods import day_window, month_window, zone
from service.pricing import format_usd

PeriodKind = Literal["day", "month"]

# Breakdown name -> ledger column, in the order reports show them.
BREAKDOWNS: Mapping[str, GroupBy] = {
    "model": "model_used",
    "feature": "feature",
    "tenant": "tenant",
    "kind": "kind",
}

_SOURCE_LABELS = {
    "exact": "exact hits",
    "semantic": "semantic hits",
    "routing": "routing",
    "prompt_cache": "prompt cache",
    "batch": "batch",
}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_MAX_LABEL = 40  # table cells only; JSON and CSV keep full names


@dataclass(frozen=True)
class Period:
    """A local calendar day or month: `[start_ts, end_ts)` from local midnight to midnight."""

    kind: PeriodKind
    label: str  # "2026-03-10" or "2026-03"
    tz: str
    start_ts: float
    end_ts: float


@dataclass(frozen=True)
class Report:
    """Totals of a period (one tenant's when `tenant` is set) and their breakdowns."""

    period: Period
    tenant: str | None
    totals: Totals
    breakdown: Mapping[str, tuple[Totals, ...]]
    opportunities: tuple[MaxTokensOpportunity, ...] = ()


def day_period(day: date, tz: str = "UTC") -> Period:
    start, end = day_window(day, tz)
    return Period("day", day.isoformat(), tz, start, end)


def month_period(year: int, month: int, tz: str = "UTC") -> Period:
    start, end = month_window(year, month, tz)
    return Period("month", f"{year:04d}-{month:02d}", tz, start, end)


def parse_day(text: str) -> date:
    """`YYYY-MM-DD`, or `InvalidRequest` saying so."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(f"day must be a date as YYYY-MM-DD, got {text!r}") from exc


def parse_month(text: str) -> tuple[int, int]:
    """`YYYY-MM` as (year, month), or `InvalidRequest` saying so."""
    found = _MONTH.fullmatch(text)
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise InvalidRequest(f"month must be YYYY-MM, got {text!r}")
    return int(found.group(1)), int(found.group(2))


def resolve_period(day: str | None, month: str | None, tz: str, now: float) -> Period:
    """The period a request names (`day` or `month`, not both); today in `tz` by default."""
    if day is not None and month is not None:
        raise InvalidRequest("give either day or month, not both")
    if month is not None:
        return month_period(*parse_month(month), tz)
    if day is not None:
        return day_period(parse_day(day), tz)
    return day_period(datetime.fromtimestamp(now, zone(tz)).date(), tz)


def build_report(
    ledger: Ledger,
    period: Period,
    tenant: str | None = None,
    task_max_tokens: Mapping[str, int] | None = None,
) -> Report:
    """Totals and breakdowns of `period` from the ledger (blocks on SQLite)."""
    start, end = period.start_ts, period.end_ts
    opportunities = tuple(
        ledger.max_tokens_opportunities(start, end, task_max_tokens or {}, tenant=tenant)
    )
    totals = ledger.totals(start, end, tenant=tenant)
    breakdown = {
        name: tuple(ledger.totals_by(start, end, (column,), tenant=tenant))
        for name, column in BREAKDOWNS.items()
    }
    return Report(period, tenant, totals, breakdown, opportunities)


def empty_report(period: Period, tenant: str | None = None) -> Report:
    """The report of a period without rows (no ledger yet)."""
    return Report(period, tenant, empty_totals(), {name: () for name in BREAKDOWNS})


# --- JSON ------------------------------------------------------------------------------------


def _usd(micros: int) -> float:
    return round(micros / 1_000_000, 6)


def totals_json(totals: Totals) -> dict[str, Any]:
    """One `Totals` as JSON-ready values; money both as exact micros and as USD numbers."""
    return {
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
        "interrupted_requests": totals.interrupted,
        "interrupted_cost_usd": _usd(totals.interrupted_micros),
        "interrupted_cost_micros": totals.interrupted_micros,
        "saved_stated_usd": _usd(totals.stated_micros),
        "saved_stated_micros": totals.stated_micros,
    }


def report_json(report: Report, *, ledger_path: Path | None = None) -> dict[str, Any]:
    """The whole report: period, totals at the top level, and `breakdown` by each grouping."""
    period = report.period
    head: dict[str, Any] = {
        "period": period.kind,
        period.kind: period.label,
        "tz": period.tz,
        "start_ts": period.start_ts,
        "end_ts": period.end_ts,
        "tenant": report.tenant,
    }
    if ledger_path is not None:
        head["ledger"] = str(ledger_path)
    breakdown = {
        name: [{"group": totals.group[0], **totals_json(totals)} for totals in rows]
        for name, rows in report.breakdown.items()
    }
    opportunities = [
        {
            "task": o.task,
            "table_max_tokens": o.table_value,
            "requests": o.requests,
            "largest_max_tokens": o.largest_max_tokens,
        }
        for o in report.opportunities
    ]
    return {
        **head,
        **totals_json(report.totals),
        "breakdown": breakdown,
        "max_tokens_opportunities": opportunities,
    }


# --- table -----------------------------------------------------------------------------------


def _money(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    return f"{sign}${format_usd(abs(micros))}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _summary(totals: Totals) -> list[tuple[str, str]]:
    lines = [("requests", f"{totals.requests:,}")]
    lines += [(f"  {kind}", f"{count:,}") for kind, count in totals.by_kind.items()]
    lines += [
        ("hit rate", _rate(totals.hit_rate)),
        ("cost", _money(totals.cost_micros)),
        ("baseline", _money(totals.baseline_micros)),
        ("saved", _money(totals.saved_micros)),
    ]
    lines += [
        (f"  {_SOURCE_LABELS[source]}", _money(micros))
        for source, micros in totals.saved_by_source.items()
    ]
    # Hits on entries stored through the cache API: priced from the usage their caller gave.
    lines.append(("  of hits: stated, not paid here", _money(totals.stated_micros)))
    lines += [
        ("tokens in / out", f"{totals.input_tokens:,} / {totals.output_tokens:,}"),
        (
            "cache write / read",
            f"{totals.cache_creation_tokens:,} / {totals.cache_read_tokens:,}",
        ),
        ("latency p50 / p95", f"{_ms(totals.latency_p50_ms)} / {_ms(totals.latency_p95_ms)}"),
        ("unpriced requests", f"{totals.unpriced:,}"),
        ("unpriced models", ", ".join(totals.unpriced_models) or "none"),
        (
            "cut off upstream (cost = bound)",
            f"{totals.interrupted:,} / {_money(totals.interrupted_micros)}",
        ),
    ]
    return lines


_TABLE_COLUMNS = ("requests", "hit rate", "cost", "baseline", "saved", "p50", "p95")


def _cells(totals: Totals) -> list[str]:
    return [
        f"{totals.requests:,}",
        _rate(totals.hit_rate),
        _money(totals.cost_micros),
        _money(totals.baseline_micros),
        _money(totals.saved_micros),
        _ms(totals.latency_p50_ms),
        _ms(totals.latency_p95_ms),
    ]


def _group_label(value: str | None) -> str:
    text = "(none)" if value is None else value
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _shown_width(text: str) -> int:
    """Terminal columns: Hangul and other wide characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def report_table(report: Report, ledger_path: Path) -> str:
    """The report as text: a summary, then one table per breakdown, all lines one width.

    Labels are left-aligned and numbers right-aligned to one right edge, so the columns line
    up under each other in a terminal and in a fixed-width font.
    """
    period = report.period
    header = f"promptcache report for {period.label} ({period.tz})"
    if report.tenant is not None:
        header += f", tenant {report.tenant}"
    summary = _summary(report.totals)
    label_width = max(len(label) for label, _ in [("ledger", ""), *summary])
    width = label_width + 2 + max(len(value) for _, value in summary)
    sections = [(name, rows) for name, rows in report.breakdown.items() if rows]
    rows_by_section = [
        (name, [[_group_label(t.group[0]), *_cells(t)] for t in rows]) for name, rows in sections
    ]
    every_row = [[name, *_TABLE_COLUMNS] for name, _ in sections]
    every_row += [row for _, rows in rows_by_section for row in rows]
    columns = range(len(_TABLE_COLUMNS) + 1)
    widths = [max((_shown_width(row[i]) for row in every_row), default=0) for i in columns]
    if every_row:
        table_width = sum(widths) + 2 * len(_TABLE_COLUMNS)
        width = max(width, table_width)
        widths[0] += width - table_width
    lines = [header, f"{'ledger'.ljust(label_width)}  {ledger_path}"]
    lines += [
        f"{label.ljust(label_width)}  {value.rjust(width - label_width - 2)}"
        for label, value in summary
    ]

    def line(cells: list[str]) -> str:
        rest = "".join(f"  {cell.rjust(w)}" for cell, w in zip(cells[1:], widths[1:], strict=True))
        return cells[0] + " " * (widths[0] - _shown_width(cells[0])) + rest

    for name, rows in rows_by_section:
        lines.append(f"-- by {name} ".ljust(width, "-"))
        lines.append(line([name, *_TABLE_COLUMNS]))
        lines += [line(row) for row in rows]
    if report.opportunities:
        lines.append("-- max_tokens opportunities ".ljust(width, "-"))
        lines += [
            f"{o.requests} {o.task} requests asked for up to {o.largest_max_tokens} max_tokens; "
            f"the task table says {o.table_value}"
            for o in report.opportunities
        ]
    return "\n".join(lines) + "\n"


# --- CSV -------------------------------------------------------------------------------------

_CSV_MONEY = (
    "cost",
    "baseline",
    "saved",
    "saved_exact",
    "saved_semantic",
    "saved_routing",
    "saved_prompt_cache",
    "saved_batch",
)
CSV_FIELDS: tuple[str, ...] = (
    "period",
    "tz",
    "tenant",
    "breakdown",
    "group",
    "requests",
    "hits_exact",
    "hits_semantic",
    "misses",
    "bypasses",
    "errors",
    "batches",
    "hit_rate",
    *(f"{name}_usd" for name in _CSV_MONEY),
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "latency_p50_ms",
    "latency_p95_ms",
    "unpriced_requests",
    "interrupted_requests",
    "interrupted_cost_usd",
    "saved_stated_usd",
)


def _csv_row(report: Report, breakdown: str, totals: Totals) -> list[object]:
    money = {
        "cost": totals.cost_micros,
        "baseline": totals.baseline_micros,
        "saved": totals.saved_micros,
        **{f"saved_{k}": v for k, v in totals.saved_by_source.items()},
    }
    return [
        report.period.label,
        report.period.tz,
        report.tenant or "",
        breakdown,
        "" if not totals.group or totals.group[0] is None else totals.group[0],
        totals.requests,
        totals.hits_exact,
        totals.hits_semantic,
        totals.misses,
        totals.bypasses,
        totals.errors,
        totals.batches,
        "" if totals.hit_rate is None else f"{totals.hit_rate:.6f}",
        *(format_usd(money[name]) for name in _CSV_MONEY),
        totals.input_tokens,
        totals.output_tokens,
        totals.cache_creation_tokens,
        totals.cache_read_tokens,
        "" if totals.latency_p50_ms is None else totals.latency_p50_ms,
        "" if totals.latency_p95_ms is None else totals.latency_p95_ms,
        totals.unpriced,
        totals.interrupted,
        format_usd(totals.interrupted_micros),
        format_usd(totals.stated_micros),
    ]


def report_csv(report: Report) -> str:
    """One header line, a `total` row, then one row per group of each breakdown.

    USD columns are exact decimal text; an empty `group` in a breakdown means no value
    (e.g. requests without a feature label).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    writer.writerow(_csv_row(report, "total", report.totals))
    for name, rows in report.breakdown.items():
        for totals in rows:
            writer.writerow(_csv_row(report, name, totals))
    return buffer.getvalue()
