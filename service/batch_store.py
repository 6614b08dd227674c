"""Message batch state: the values `service.batches` works with, and their SQLite file.

One row per batch and one per caller request, in `<data-dir>/batches.sqlite3` (WAL,
`synchronous=FULL`, so a recorded result survives a power cut). Every change is one short
transaction, and a request's row carries everything needed to carry on after a restart: the
caller's params, where the request stands (`State`), its leader if it is a duplicate, the
params sent upstream and the upstream batch id, and finally its result in Anthropic's shape.
Results are kept as the JSON bytes that are served, so reading them back costs no re-encoding.
The checks of a create-batch body and the reading of results live here too.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from service.errors import InvalidRequest, StorageError
from service.proxy_types import Controls
from service.request_checks import check_keys

State = Literal["pending", "queued", "sent", "duplicate", "done"]
DupKind = Literal["exact", "semantic"]

MAX_REQUESTS = 100_000  # Anthropic's limit per batch
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Ledger `status` of results that are not HTTP answers: expired (timeout), canceled (the
# caller went away: nginx's 499).
LEDGER_STATUS = {"expired": 408, "canceled": 499}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "budget_exceeded": 429,
    "overloaded_error": 529,
}


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRecord:
    id: str
    tenant: str
    controls: Controls
    created_at: float
    expires_at: float
    ended_at: float | None = None
    cancel_initiated_at: float | None = None


@dataclass(frozen=True)
class RequestRow:
    """One caller request. `pending`: not looked up yet; `queued`: a leader waiting to go
    upstream; `sent`: in upstream batch `upstream_batch`; `duplicate`: waits for `leader`;
    `done`: `result` is final."""

    position: int
    custom_id: str
    params: dict[str, Any]
    state: State = "pending"
    leader: int | None = None
    dup_kind: DupKind | None = None
    similarity: float | None = None
    upstream_params: dict[str, Any] | None = None
    upstream_batch: str | None = None
    route_tier: str | None = None
    route_reasons: str | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class Counts:
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


@dataclass(frozen=True)
class BatchView:
    record: BatchRecord
    counts: Counts

    @property
    def processing_status(self) -> str:
        if self.record.ended_at is not None:
            return "ended"
        return "in_progress" if self.record.cancel_initiated_at is None else "canceling"

    def to_json(self, base_url: str) -> dict[str, Any]:
        """Anthropic's `message_batch` object; `base_url` ends with `/`."""
        record = self.record
        ended = record.ended_at is not None
        return {
            "id": record.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": asdict(self.counts),
            "created_at": _iso(record.created_at),
            "ended_at": _iso(record.ended_at),
            "expires_at": _iso(record.expires_at),
            "cancel_initiated_at": _iso(record.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{base_url}v1/messages/batches/{record.id}/results" if ended else None,
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def succeeded(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "succeeded", "message": message}


def errored(error_type: str, message: str) -> dict[str, Any]:
    error = {"type": error_type, "message": message}
    return {"type": "errored", "error": {"type": "error", "error": error}}


def normal_result(raw: Any) -> dict[str, Any]:
    """An upstream result as one of Anthropic's four shapes; anything else is an error."""
    if isinstance(raw, dict):
        kind = raw.get("type")
        if kind == "succeeded" and isinstance(raw.get("message"), dict):
            return succeeded(raw["message"])
        if kind == "errored" and isinstance(raw.get("error"), dict):
            return {"type": "errored", "error": raw["error"]}
        if kind in ("canceled", "expired"):
            return {"type": kind}
    return errored("api_error", f"upstream returned a malformed batch result: {raw!r:.200}")


# --- persistence ----------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batches (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, controls BLOB NOT NULL,
        created_at REAL NOT NULL, expires_at REAL NOT NULL, ended_at REAL,
        cancel_initiated_at REAL)""",
    """CREATE TABLE IF NOT EXISTS requests (
        batch_id TEXT NOT NULL, position INTEGER NOT NULL, custom_id TEXT NOT NULL,
        params BLOB NOT NULL, state TEXT NOT NULL, leader INTEGER, dup_kind TEXT,
        similarity REAL, upstream_params BLOB, upstream_batch TEXT, route_tier TEXT,
        route_reasons TEXT, result_type TEXT, result BLOB,
        PRIMARY KEY (batch_id, position)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS requests_state ON requests (batch_id, state)",
    "PRAGMA user_version = 1",
)
_ROW_COLUMNS = (
    "position, custom_id, params, state, leader, dup_kind, similarity, upstream_params, "
    "upstream_batch, route_tier, route_reasons, result"
)
_UPSERT = (
    f"INSERT OR REPLACE INTO requests (batch_id, {_ROW_COLUMNS}, result_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _dump(value: dict[str, Any] | None) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _load(value: bytes | None) -> dict[str, Any] | None:
    return None if value is None else dict(orjson.loads(value))


def _row_values(batch_id: str, row: RequestRow) -> tuple[Any, ...]:
    result_type = None if row.result is None else str(row.result.get("type"))
    return (
        batch_id,
        row.position,
        row.custom_id,
        _dump(row.params),
        row.state,
        row.leader,
        row.dup_kind,
        row.similarity,
        _dump(row.upstream_params),
        row.upstream_batch,
        row.route_tier,
        row.route_reasons,
        _dump(row.result),
        result_type,
    )


def _row_from(values: Sequence[Any]) -> RequestRow:
    return RequestRow(
        position=values[0],
        custom_id=values[1],
        params=_load(values[2]) or {},
        state=values[3],
        leader=values[4],
        dup_kind=values[5],
        similarity=values[6],
        upstream_params=_load(values[7]),
        upstream_batch=values[8],
        route_tier=values[9],
        route_reasons=values[10],
        result=_load(values[11]),
    )


def _controls_blob(controls: Controls) -> bytes:
    values = asdict(controls)
    # `anthropic-beta` / `anthropic-version`: part of each request's key and sent with the
    # upstream batch, so a batch resumed after a restart must still have them.
    values["forward_headers"] = dict(controls.forward_headers)
    return orjson.dumps(values)


def _record_from(values: Sequence[Any]) -> BatchRecord:
    return BatchRecord(
        id=values[0],
        tenant=values[1],
        controls=Controls(**orjson.loads(values[2])),
        created_at=values[3],
        expires_at=values[4],
        ended_at=values[5],
        cancel_initiated_at=values[6],
    )


class BatchStore:
    """Batch state in one SQLite file; blocking and thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")  # a stored result survives power loss
            with self._tx() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open batch store {path}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"cannot write batch store {self._path}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read batch store {self._path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(self, record: BatchRecord, rows: Sequence[RequestRow]) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.tenant,
                    _controls_blob(record.controls),
                    record.created_at,
                    record.expires_at,
                    record.ended_at,
                    record.cancel_initiated_at,
                ),
            )
            conn.executemany(_UPSERT, [_row_values(record.id, row) for row in rows])

    def update(self, batch_id: str, rows: Sequence[RequestRow]) -> None:
        with self._tx() as conn:
            conn.executemany(_UPSERT, [_row_values(batch_id, row) for row in rows])

    def mark(
        self, batch_id: str, column: Literal["ended_at", "cancel_initiated_at"], ts: float
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                f"UPDATE batches SET {column} = ? WHERE id = ? AND {column} IS NULL", (ts, batch_id)
            )

    def delete(self, batch_id: str) -> None:
        """Forget a batch and its requests (results included), in one transaction."""
        with self._tx() as conn:
            conn.execute("DELETE FROM requests WHERE batch_id = ?", (batch_id,))
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def get(self, batch_id: str) -> BatchRecord | None:
        found = self._read("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return _record_from(found[0]) if found else None

    def page(
        self, tenant: str | None, limit: int, before_id: str | None, after_id: str | None
    ) -> list[BatchRecord]:
        """Newest first; `after_id` continues to older batches, `before_id` to newer ones."""
        where, params = ["1 = 1"], list[Any]()
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        order = "DESC"
        # A cursor is looked up among the tenant's own batches: another tenant's id must read
        # as unknown (an empty page), not tell that it exists.
        owned = "" if tenant is None else " AND tenant = ?"
        mine = [] if tenant is None else [tenant]
        if after_id is not None:
            where.append(f"rowid < COALESCE((SELECT rowid FROM batches WHERE id = ?{owned}), -1)")
            params += [after_id, *mine]
        if before_id is not None:
            where.append(f"rowid > COALESCE((SELECT rowid FROM batches WHERE id = ?{owned}), 1e18)")
            params += [before_id, *mine]
            order = "ASC"
        sql = f"SELECT * FROM batches WHERE {' AND '.join(where)} ORDER BY rowid {order} LIMIT ?"
        records = [_record_from(r) for r in self._read(sql, [*params, limit])]
        return records[::-1] if order == "ASC" else records

    def unfinished(self) -> list[str]:
        return [r[0] for r in self._read("SELECT id FROM batches WHERE ended_at IS NULL")]

    def states(self, batch_id: str) -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM requests WHERE batch_id = ? GROUP BY state"
        return {state: count for state, count in self._read(sql, (batch_id,))}

    def counts(self, batch_id: str) -> Counts:
        sql = "SELECT result_type, COUNT(*) FROM requests WHERE batch_id = ? GROUP BY result_type"
        found = {kind: count for kind, count in self._read(sql, (batch_id,))}
        return Counts(
            processing=found.get(None, 0),
            succeeded=found.get("succeeded", 0),
            errored=found.get("errored", 0),
            canceled=found.get("canceled", 0),
            expired=found.get("expired", 0),
        )

    def rows(self, batch_id: str, states: Sequence[State]) -> list[RequestRow]:
        marks = ", ".join("?" for _ in states)
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM requests WHERE batch_id = ? AND state IN ({marks}) "
            "ORDER BY position"
        )
        return [_row_from(r) for r in self._read(sql, (batch_id, *states))]

    def upstream_batches(self, batch_id: str) -> list[str]:
        sql = (
            "SELECT DISTINCT upstream_batch FROM requests WHERE batch_id = ? AND state = 'sent' "
            "ORDER BY upstream_batch"
        )
        return [r[0] for r in self._read(sql, (batch_id,))]

    def every_upstream_batch(self, batch_id: str) -> list[str]:
        """The upstream batches this batch ever sent requests in, done ones included."""
        sql = (
            "SELECT DISTINCT upstream_batch FROM requests WHERE batch_id = ? "
            "AND upstream_batch IS NOT NULL ORDER BY upstream_batch"
        )
        return [r[0] for r in self._read(sql, (batch_id,))]

    def results(self, batch_id: str, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        sql = (
            "SELECT position, custom_id, result FROM requests WHERE batch_id = ? AND position > ? "
            "ORDER BY position LIMIT ?"
        )
        found = self._read(sql, (batch_id, after, limit))
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in found]


# --- request bodies and results ----------------------------------------------------------


def failure_status(result: Mapping[str, Any]) -> tuple[int, str]:
    """Ledger status and message of a result that is not `succeeded`."""
    kind = str(result.get("type"))
    if kind in LEDGER_STATUS:
        return LEDGER_STATUS[kind], f"batch request {kind}"
    outer = result.get("error")
    inner = outer.get("error") if isinstance(outer, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    error_type = str(inner.get("type", "api_error"))
    return _ERROR_STATUS.get(error_type, 500), str(inner.get("message", "batch request errored"))


def parse_requests(body: Any, limit: int = MAX_REQUESTS) -> list[tuple[str, dict[str, Any]]]:
    """The `(custom_id, params)` pairs of a create-batch body, checked as the API checks them."""
    check_keys(body, "request body", {"requests"})
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("requests: at least one request is required")
    if len(items) > limit:
        raise InvalidRequest(f"requests: at most {limit:,} requests per batch, got {len(items):,}")
    seen: set[str] = set()
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"custom_id", "params"}:
            raise InvalidRequest(f"requests.{i}: must be an object with custom_id and params only")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise InvalidRequest(f"requests.{i}.custom_id: use 1-64 letters, digits, _ or -")
        if custom_id in seen:
            raise InvalidRequest(
                f"requests.{i}.custom_id: {custom_id!r} is used twice; custom_ids must be unique"
            )
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            raise InvalidRequest(f"requests.{i}.params: must be a Messages request object")
        if params.get("stream") is True:
            raise InvalidRequest(f"requests.{i}.params.stream: batch requests cannot stream")
        out.append((custom_id, params))
    return out
