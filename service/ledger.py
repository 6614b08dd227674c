"""The cost ledger: one SQLite row per answer, and the sums every report is built from.

Every answer promptcache gives writes exactly one row: an exact or semantic hit, a miss sent
upstream, a bypass, an error, or an answer that arrived later through a batch. Budgets, the
daily report, anomaly detection, metrics and the dashboard all read these rows; nothing keeps a
second set of books.

Money is in integer micro-dollars, priced by `service.pricing` (which see for rounding).
- `cost_micros`: what promptcache paid upstream for this answer (0 for a hit).
- `baseline_micros`: what the request would have cost sent as asked, without promptcache: the
  asked model's current price for the answer's tokens (for a router alias such as `auto`, the
  configured baseline model), with no prompt caching and no batch discount. For a hit that is
  the cost of producing the served answer again today.
- `saved_*_micros`: where `baseline - cost` came from: exact hits, semantic hits, routing to
  another model, prompt-cache reads net of write premiums, the batch discount. Routing and
  prompt caching can be negative (a stronger model than the baseline, writes never read).
  Invariant, checked when a row is built: `baseline - cost == sum of the five sources`.
- The cache's own work (embedding, index search) is local and unpriced. Should promptcache
  ever pay upstream on its own account (a router call), that is a new column, by migration.
- `priced=False`: a model had no price. Such rows claim no saving (baseline == cost, all
  sources 0) and reports list their `model_used`, so an unknown model is visible, not free.

Storage: SQLite in WAL mode, so readers (reports) never block the writer (the proxy) and several
processes may open one file. Schema changes are numbered migrations recorded in
`schema_version` and applied at open under a write lock, so concurrent openers apply each once.
Each connection belongs to one thread (created on first use), and every write is one short
transaction. `synchronous=NORMAL`: a crash of the process loses nothing, a power cut may lose
the last rows.

Time: `ts` is UTC epoch seconds; windows are half-open `[start_ts, end_ts)`. Day boundaries
are local midnights in an IANA zone, so a day may be 23 or 25 hours long.

Requests upstream: before a miss goes upstream its row-to-be is noted in `upstream_pending`,
priced at the request's upper bound; the row the answer writes removes it (a trigger, same
transaction). What is left there when the service starts was upstream when the process died,
and upstream may have billed it: `settle_interrupted` writes those rows, so spend the ledger
cannot see is counted at its bound rather than not at all.

Alerts (budget thresholds, anomalies; raised by `service.alerts`) live in the same file, in
the `alerts` table: one row per (kind, scope, period, subject), enforced by a UNIQUE
constraint, so an alert is raised once even across restarts and processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, astuple, fields
from datetime import date
from pathlib import Path
from typing import Any

from service.errors import InvalidRequest, StorageError
from service.ledger_schema import MIGRATIONS, SCHEMA_VERSION
from service.ledger_values import (
    GROUP_COLUMNS,
    KINDS,
    Activity,
    AlertRecord,
    DayTotals,
    GroupBy,
    Kind,
    LedgerRow,
    MaxTokensOpportunity,
    Spend,
    Totals,
)
from service.periods import day_window
from service.sqlite_threads import ThreadConnections

logger = logging.getLogger(__name__)

__all__ = [
    "GROUP_COLUMNS",
    "KINDS",
    "SCHEMA_VERSION",
    "Activity",
    "AlertRecord",
    "DayTotals",
    "GroupBy",
    "Kind",
    "Ledger",
    "LedgerRow",
    "MaxTokensOpportunity",
    "Spend",
    "Totals",
    "day_window",
    "empty_totals",
]

_COLUMNS: tuple[str, ...] = tuple(item.name for item in fields(LedgerRow))
_INSERT = f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


_ALERT_COLUMNS: tuple[str, ...] = tuple(item.name for item in fields(AlertRecord))


_KIND_SUMS = ", ".join(f"COALESCE(SUM(kind = '{kind}'), 0)" for kind in KINDS)
_MONEY_AND_TOKENS = (
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
)
_VALUE_SUMS = ", ".join(f"COALESCE(SUM({column}), 0)" for column in _MONEY_AND_TOKENS)
# The integer fields of `Totals`, in the order the totals query selects them.
_COUNTED: tuple[str, ...] = (
    "requests",
    "hits_exact",
    "hits_semantic",
    "misses",
    "bypasses",
    "errors",
    "batches",
    *_MONEY_AND_TOKENS,
    "unpriced",
    "interrupted",
    "interrupted_micros",
    "stated_micros",
)
# An interrupted row (`Totals.interrupted`): what `settle_interrupted` and the proxy write.
_INTERRUPTED = "kind = 'error' AND status = 0"
# A hit whose entry no row of the ledger paid for: stored through the cache API, priced from
# the usage its caller stated (`Totals.stated_micros`).
_STATED = """
    CASE WHEN kind IN ('hit-exact', 'hit-semantic') AND NOT EXISTS (
        SELECT 1 FROM ledger AS paid
        WHERE paid.entry_id = ledger.entry_id AND paid.kind IN ('miss', 'bypass', 'batch')
    ) THEN saved_exact_micros + saved_semantic_micros ELSE 0 END"""


class Ledger:
    """The ledger file. Open with `Ledger(path)`; safe to share between threads.

    Every method blocks on SQLite: async code calls it from a worker thread.
    """

    def __init__(
        self, path: Path, *, busy_timeout_s: float = 10.0, read_only: bool = False
    ) -> None:
        """`read_only`: for reports of a backup copy or a read-only mount. Nothing is
        migrated or written; a ledger older than this release is refused with the way out."""
        self._path = Path(path)
        self._db = ThreadConnections(
            self._path,
            busy_timeout_ms=int(busy_timeout_s * 1000),
            what=f"ledger {self._path}",
            read_only=read_only,
        )
        try:
            if not read_only:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._db.using() as conn:
                if read_only:
                    self._check_version(conn)
                else:
                    self._migrate(conn)
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"cannot open ledger {self._path}: {exc}") from exc
        except StorageError:
            self.close()
            raise

    @property
    def path(self) -> Path:
        return self._path

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection (after statements in flight); final."""
        self._db.close()

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        )
        if version != SCHEMA_VERSION:
            raise StorageError(
                f"ledger {self._path} has schema version {version} and this promptcache reads "
                f"{SCHEMA_VERSION}; read-only, it cannot be migrated: run this on a writable "
                "copy of the data dir"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(current.fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"ledger {self._path} has schema version {version}, newer than this "
                    f"promptcache understands ({SCHEMA_VERSION}): upgrade promptcache"
                )
            for number, statements in MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (number, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        row = self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version", ())
        return int(row[0][0])

    # --- writing ------------------------------------------------------------------------

    def record(self, row: LedgerRow) -> int:
        """Append one row in its own transaction; returns its id."""
        try:
            with self._db.using() as conn:
                cursor = conn.execute(_INSERT, astuple(row))
        except (sqlite3.Error, OverflowError) as exc:  # OverflowError: an int past 64 bits
            raise StorageError(f"cannot write ledger {self._path}: {exc}") from exc
        return cursor.lastrowid or 0

    def record_many(self, rows: Iterable[LedgerRow]) -> int:
        """Append rows in one transaction (all or none); returns how many."""
        values = [astuple(row) for row in rows]
        with self._write_transaction() as conn:
            conn.executemany(_INSERT, values)
        return len(values)

    def record_new(self, rows: Iterable[LedgerRow]) -> list[tuple[LedgerRow, int]]:
        """Append, in one transaction, the rows whose request id the ledger does not hold
        yet; returns those with their ids. A step that wrote its rows and then failed
        before it could say so is retried, and must not bill its requests twice."""
        written: list[tuple[LedgerRow, int]] = []
        with self._write_transaction() as conn:
            for row in rows:
                known = conn.execute(
                    "SELECT 1 FROM ledger WHERE request_id = ? LIMIT 1", (row.request_id,)
                ).fetchone()
                if known is None:
                    cursor = conn.execute(_INSERT, astuple(row))
                    written.append((row, cursor.lastrowid or 0))
        return written

    def note_upstream(self, row: LedgerRow) -> None:
        """Keep `row` as what to record for its request if the process dies before the
        request's own row is written (which removes it). Also where a row the `ledger`
        table refused is kept, to be written at the next start."""
        text = json.dumps(asdict(row))
        with self._write_transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO upstream_pending (request_id, ts, row) VALUES (?, ?, ?)",
                (row.request_id, row.ts, text),
            )

    def upstream_pending(self) -> list[LedgerRow]:
        """The rows noted by `note_upstream` and not settled, oldest first."""
        found = self._query("SELECT row FROM upstream_pending ORDER BY ts", ())
        return [LedgerRow(**json.loads(text)) for (text,) in found]

    def settle_interrupted(self) -> list[LedgerRow]:
        """Write every row still noted as upstream, unless its request has a row already;
        returns those written. Call at start, before any request is sent: a row noted by a
        live process is not interrupted."""
        with self._write_transaction() as conn:
            noted = conn.execute("SELECT row FROM upstream_pending ORDER BY ts").fetchall()
            written = []
            for (text,) in noted:
                try:
                    row = LedgerRow(**json.loads(text))
                    known = conn.execute(
                        "SELECT 1 FROM ledger WHERE request_id = ? LIMIT 1", (row.request_id,)
                    ).fetchone()
                    if known is None:
                        conn.execute(_INSERT, astuple(row))
                        written.append(row)
                except (ValueError, TypeError, OverflowError, sqlite3.IntegrityError) as exc:
                    # One row the ledger cannot hold must not stop every later start.
                    logger.error(
                        "cannot write a noted ledger row (%s), to be added by hand: %s", exc, text
                    )
            conn.execute("DELETE FROM upstream_pending")
        return written

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed whole, or rolled back on any error."""
        try:
            with self._db.using() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OverflowError) as exc:  # OverflowError: an int past 64 bits
            raise StorageError(f"cannot write ledger {self._path}: {exc}") from exc

    # --- reading ------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            with self._db.using() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read ledger {self._path}: {exc}") from exc

    @staticmethod
    def _where(start_ts: float, end_ts: float, tenant: str | None) -> tuple[str, list[Any]]:
        clause = "ts >= ? AND ts < ?"
        params: list[Any] = [start_ts, end_ts]
        if tenant is not None:
            clause += " AND tenant = ?"
            params.append(tenant)
        return clause, params

    def rows(self, start_ts: float, end_ts: float, tenant: str | None = None) -> list[LedgerRow]:
        """Rows with `start_ts <= ts < end_ts`, oldest first."""
        where, params = self._where(start_ts, end_ts, tenant)
        found = self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE {where} ORDER BY ts, id", params
        )
        return [_row(values) for values in found]

    def totals(self, start_ts: float, end_ts: float, *, tenant: str | None = None) -> Totals:
        """Sums over `[start_ts, end_ts)`, all tenants unless `tenant` is given."""
        grouped = self.totals_by(start_ts, end_ts, (), tenant=tenant)
        return grouped[0] if grouped else empty_totals(())

    def totals_by(
        self,
        start_ts: float,
        end_ts: float,
        group_by: Sequence[GroupBy],
        *,
        tenant: str | None = None,
    ) -> list[Totals]:
        """Sums per distinct value of the `group_by` columns, ordered by group; in SQL.

        With no columns this is one `Totals` for the window (none if it holds no row).
        """
        for column in group_by:
            if column not in GROUP_COLUMNS:
                raise InvalidRequest(f"cannot group the ledger by {column!r}")
        cols = list(group_by)
        where, params = self._where(start_ts, end_ts, tenant)
        select_groups = "".join(f"{c}, " for c in cols)
        partition = f"PARTITION BY {', '.join(cols)} " if cols else ""
        group_clause = f"GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""
        # Nearest-rank percentile: the smallest value whose rank r satisfies r >= p * n.
        sql = f"""
            SELECT {select_groups}COUNT(*), {_KIND_SUMS}, {_VALUE_SUMS},
                   COALESCE(SUM(priced = 0), 0),
                   COALESCE(SUM({_INTERRUPTED}), 0),
                   COALESCE(SUM(CASE WHEN {_INTERRUPTED} THEN cost_micros END), 0),
                   COALESCE(SUM(stated), 0),
                   MIN(CASE WHEN rn * 100 >= n * 50 THEN latency_ms END),
                   MIN(CASE WHEN rn * 100 >= n * 95 THEN latency_ms END)
            FROM (
                SELECT *,
                       ROW_NUMBER() OVER ({partition}ORDER BY latency_ms) AS rn,
                       COUNT(*) OVER ({partition.strip()}) AS n,
                       {_STATED} AS stated
                FROM ledger WHERE {where}
            ) {group_clause}
        """
        found = self._query(sql, params)
        unpriced = self._unpriced_models(where, params, cols)
        results: list[Totals] = []
        width = len(cols)
        for values in found:
            if values[width] == 0:
                continue  # the ungrouped aggregate of an empty window
            group = tuple(values[:width])
            numbers = dict(zip(_COUNTED, (int(v) for v in values[width:-2]), strict=True))
            p50, p95 = values[-2:]
            results.append(
                Totals(
                    group=group,
                    **numbers,
                    latency_p50_ms=None if p50 is None else float(p50),
                    latency_p95_ms=None if p95 is None else float(p95),
                    unpriced_models=unpriced.get(group, ()),
                )
            )
        return results

    def _unpriced_models(
        self, where: str, params: list[Any], cols: Sequence[str]
    ) -> dict[tuple[str | None, ...], tuple[str, ...]]:
        select_groups = "".join(f"{c}, " for c in cols)
        found = self._query(
            f"SELECT DISTINCT {select_groups}model_used FROM ledger "
            f"WHERE {where} AND priced = 0 ORDER BY model_used",
            params,
        )
        models: dict[tuple[str | None, ...], tuple[str, ...]] = {}
        for values in found:
            group = tuple(values[: len(cols)])
            models[group] = (*models.get(group, ()), values[len(cols)])
        return models

    def max_tokens_opportunities(
        self,
        start_ts: float,
        end_ts: float,
        table: Mapping[str, int],
        *,
        factor: float = 4.0,
        tenant: str | None = None,
    ) -> list[MaxTokensOpportunity]:
        """Requests whose task hint has a table value and whose max_tokens was far above it.

        Such a client is never cut short (its answer might need the room); the report only
        points at the setting to look at."""
        found: list[MaxTokensOpportunity] = []
        where, params = self._where(start_ts, end_ts, tenant)
        for task, value in sorted(table.items()):
            count, largest = self._query(
                f"SELECT COUNT(*), MAX(max_tokens) FROM ledger WHERE {where} "
                "AND task = ? AND max_tokens > ?",
                [*params, task, value * factor],
            )[0]
            if count:
                found.append(MaxTokensOpportunity(task, value, int(count), int(largest)))
        return found

    def day_totals(self, day: date, tz: str = "UTC", *, tenant: str | None = None) -> DayTotals:
        """Totals of one local day in the IANA zone `tz` (an empty day gives zero totals)."""
        start_ts, end_ts = day_window(day, tz)
        return DayTotals(day, tz, start_ts, end_ts, self.totals(start_ts, end_ts, tenant=tenant))

    def spent(
        self,
        start_ts: float,
        end_ts: float,
        *,
        tenant: str | None = None,
        feature: str | None = None,
    ) -> Spend:
        """Sum of `cost_micros` in the window (one tenant and/or feature when given).

        One statement, so the sum and `through_id` (the newest id in the whole ledger) come
        from one snapshot: every row with an id up to it is counted if it is in the window.
        """
        where, params = self._where(start_ts, end_ts, tenant)
        if feature is not None:
            where += " AND feature = ?"
            params.append(feature)
        found = self._query(
            f"SELECT (SELECT COALESCE(SUM(cost_micros), 0) FROM ledger WHERE {where}), "
            "(SELECT COALESCE(MAX(id), 0) FROM ledger)",
            params,
        )
        return Spend(int(found[0][0]), int(found[0][1]))

    def activity(self, start_ts: float, end_ts: float, *, tenant: str | None = None) -> Activity:
        """Requests, looked-up requests, hits and cost in the window."""
        where, params = self._where(start_ts, end_ts, tenant)
        found = self._query(
            "SELECT COUNT(*), COALESCE(SUM(kind IN ('hit-exact', 'hit-semantic', 'miss', "
            "'batch')), 0), COALESCE(SUM(kind IN ('hit-exact', 'hit-semantic')), 0), "
            f"COALESCE(SUM(cost_micros), 0) FROM ledger WHERE {where}",
            params,
        )
        requests, looked_up, hits, cost = (int(v) for v in found[0])
        return Activity(requests, looked_up, hits, cost)

    # --- alerts -------------------------------------------------------------------------

    def add_alert(
        self,
        *,
        kind: str,
        scope: str,
        period: str,
        subject: str,
        message: str,
        value: float,
        threshold: float,
        created_at: float,
    ) -> AlertRecord | None:
        """Store a new alert; None when one with the same (kind, scope, period, subject) exists."""
        try:
            with self._db.using() as conn:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO alerts (kind, scope, period, subject, message, value, "
                    "threshold, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, scope, period, subject, message, value, threshold, created_at),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write alert to ledger {self._path}: {exc}") from exc
        if cursor.rowcount == 0:
            return None
        return AlertRecord(
            int(cursor.lastrowid or 0),
            kind,
            scope,
            period,
            subject,
            message,
            value,
            threshold,
            created_at,
            None,
            0,
            None,
        )

    def alerts(self, limit: int = 50, *, kind: str | None = None) -> list[AlertRecord]:
        """Stored alerts, newest first."""
        where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
        found = self._query(
            f"SELECT {', '.join(_ALERT_COLUMNS)} FROM alerts {where} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [AlertRecord(*values) for values in found]

    def undelivered_alerts(self, since: float) -> list[AlertRecord]:
        """Alerts created at or after `since` that no delivery has finished with (never
        tried: queued when the process stopped, or dropped), oldest first."""
        found = self._query(
            f"SELECT {', '.join(_ALERT_COLUMNS)} FROM alerts "
            "WHERE delivered_at IS NULL AND delivery_attempts = 0 AND created_at >= ? "
            "ORDER BY created_at, id",
            [since],
        )
        return [AlertRecord(*values) for values in found]

    def mark_alert_delivery(
        self, alert_id: int, *, delivered_at: float | None, attempts: int, error: str | None
    ) -> None:
        """Record how delivering an alert to the webhooks went."""
        try:
            with self._db.using() as conn:
                conn.execute(
                    "UPDATE alerts SET delivered_at = ?, delivery_attempts = ?, delivery_error = ? "
                    "WHERE id = ?",
                    (delivered_at, attempts, error, alert_id),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write alert to ledger {self._path}: {exc}") from exc


def empty_totals(group: tuple[str | None, ...] = ()) -> Totals:
    """Totals of a window without rows."""
    zeros = dict.fromkeys(_COUNTED, 0)
    return Totals(group, **zeros, latency_p50_ms=None, latency_p95_ms=None, unpriced_models=())


def _row(values: Sequence[Any]) -> LedgerRow:
    named = dict(zip(_COLUMNS, values, strict=True))
    named["priced"] = bool(named["priced"])
    return LedgerRow(**named)
