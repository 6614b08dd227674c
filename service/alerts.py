"""Alerts: stored once in the ledger, logged, and POSTed to webhooks off the request path.

Kinds: `budget_threshold` and `budget_exceeded` (raised by `service.budgets`), `cost_anomaly`
and `hit_rate_collapse` (raised by `service.anomaly`). An alert is identified by (kind, scope,
period, subject) — e.g. (`budget_threshold`, `tenant:acme`, `2026-03-10`, `acme-daily@0.8`) —
and the ledger's UNIQUE constraint on those columns makes raising idempotent across restarts
and processes: only the first raise stores, logs and delivers.

Delivery: each stored alert is queued for one worker thread that POSTs the JSON payload
(`payload()`) to every configured webhook, retrying connection errors, timeouts, 408, 429 and
5xx with exponential backoff (`webhook_backoff_seconds` doubling, at most
`webhook_max_attempts` tries). Raising never waits for delivery; a full queue drops the
delivery with a log line, and the outcome is written back to the alert row
(`delivered_at`, `delivery_attempts`, `delivery_error`) so `GET /v1/alerts` shows it.

Restarts: a delivery the process stopped before finishing (still queued, waiting to retry,
or dropped from a full queue) leaves its row untried, and `resend_undelivered` queues such
rows of the last `RESEND_WINDOW_SECONDS` again when the service starts. So delivery is at
least once: a webhook that took an alert just before a stop may get it again (the payload's
`id` tells them apart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

import httpx
import orjson

from service.config import AlertSettings
from service.ledger import AlertRecord, Ledger

logger = logging.getLogger(__name__)

AlertKind = Literal["budget_threshold", "budget_exceeded", "cost_anomaly", "hit_rate_collapse"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
_RETRY_STATUSES = frozenset({408, 429})
# Alerts older than this are not sent again at start: news a day late is no longer news.
RESEND_WINDOW_SECONDS = 86_400.0


def iso_utc(ts: float) -> str:
    """`1773144000.0` -> `"2026-03-10T12:00:00Z"`."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def payload(alert: AlertRecord) -> dict[str, Any]:
    """The webhook body; `value` crossed `threshold` (units depend on the kind, see docs)."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "scope": alert.scope,
        "period": alert.period,
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "created_at": iso_utc(alert.created_at),
    }


def alert_json(alert: AlertRecord) -> dict[str, Any]:
    """The payload plus the subject and how delivery went, for `GET /v1/alerts`."""
    return {
        **payload(alert),
        "subject": alert.subject,
        "delivered_at": None if alert.delivered_at is None else iso_utc(alert.delivered_at),
        "delivery_attempts": alert.delivery_attempts,
        "delivery_error": alert.delivery_error,
    }


class AlertSink(Protocol):
    """What raises alerts needs (`AlertCenter`); returns None when already raised."""

    def raise_alert(
        self,
        kind: str,
        scope: str,
        period: str,
        message: str,
        value: float,
        threshold: float,
        *,
        subject: str = "",
    ) -> AlertRecord | None: ...


class AlertCenter:
    """Raises, lists and delivers alerts. Thread-safe; `close()` stops the delivery worker.

    `raise_alert` writes one SQLite row (call it from a worker thread, not the event loop)
    and returns at once; webhooks are called by a daemon thread started on first need.
    """

    def __init__(
        self,
        ledger: Ledger,
        settings: AlertSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._clock = clock
        self._condition = threading.Condition()
        self._queue: deque[AlertRecord] = deque()
        self._busy = False  # the worker holds an alert it took from the queue
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def webhooks(self) -> tuple[str, ...]:
        return self._settings.webhooks

    def raise_alert(
        self,
        kind: str,
        scope: str,
        period: str,
        message: str,
        value: float,
        threshold: float,
        *,
        subject: str = "",
    ) -> AlertRecord | None:
        """Store, log and queue for delivery; None if this alert was raised before."""
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; expected one of {ALERT_KINDS}")
        record = self._ledger.add_alert(
            kind=kind,
            scope=scope,
            period=period,
            subject=subject,
            message=message,
            value=value,
            threshold=threshold,
            created_at=self._clock(),
        )
        if record is None:
            return None
        logger.warning("alert %s [%s %s]: %s", kind, scope, period, message)
        self._enqueue(record)
        return record

    def resend_undelivered(self) -> int:
        """Queue again the alerts of the last day that no delivery finished with; call once
        at start, before new alerts are raised. Returns how many."""
        if not self._settings.webhooks:
            return 0
        owed = self._ledger.undelivered_alerts(self._clock() - RESEND_WINDOW_SECONDS)
        if owed:
            logger.warning("sending %d alert(s) not delivered before the last stop", len(owed))
        for record in owed:
            self._enqueue(record)
        return len(owed)

    def recent(self, limit: int = 50, *, kind: str | None = None) -> list[AlertRecord]:
        """Stored alerts, newest first."""
        return self._ledger.alerts(limit, kind=kind)

    # -- delivery --------------------------------------------------------------------------

    def _enqueue(self, record: AlertRecord) -> None:
        if not self._settings.webhooks:
            return
        with self._condition:
            if self._stopping.is_set():
                logger.warning("alert %d not delivered: the alert center is closed", record.id)
                return
            if len(self._queue) >= self._settings.webhook_queue_size:
                logger.error("alert %d not delivered: the webhook queue is full", record.id)
                return
            self._queue.append(record)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="promptcache-alerts", daemon=True
                )
                self._thread.start()
            self._condition.notify_all()

    def _work(self) -> None:
        with httpx.Client(timeout=self._settings.webhook_timeout_seconds) as client:
            while True:
                with self._condition:
                    while not self._queue and not self._stopping.is_set():
                        self._condition.wait()
                    if self._stopping.is_set():
                        return
                    record = self._queue.popleft()
                    self._busy = True
                try:
                    self._deliver(client, record)
                except Exception:  # the worker must survive anything one alert does
                    logger.exception("delivering alert %d failed", record.id)
                finally:
                    with self._condition:
                        self._busy = False
                        self._condition.notify_all()

    def _deliver(self, client: httpx.Client, record: AlertRecord) -> None:
        body = orjson.dumps(payload(record))
        attempts = 0
        errors: list[str] = []
        for url in self._settings.webhooks:
            tries, error = self._post(client, url, body)
            if error is not None and self._stopping.is_set():
                # Unfinished, not failed: the row stays untried, to be sent again at start.
                logger.warning("alert %d not delivered before the stop: %s", record.id, error)
                return
            attempts += tries
            if error is not None:
                errors.append(f"{url}: {error}")
                logger.error("alert %d not delivered to %s: %s", record.id, url, error)
        self._ledger.mark_alert_delivery(
            record.id,
            delivered_at=None if errors else self._clock(),
            attempts=attempts,
            error="; ".join(errors) or None,
        )

    def _post(self, client: httpx.Client, url: str, body: bytes) -> tuple[int, str | None]:
        """POST with retries; (tries made, last error or None)."""
        error: str | None = None
        limit = self._settings.webhook_max_attempts
        for attempt in range(1, limit + 1):
            try:
                response = client.post(
                    url,
                    content=body,
                    headers={"content-type": "application/json", "user-agent": "promptcache"},
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 300:
                    return attempt, None
                error = f"HTTP {status}"
                if status < 500 and status not in _RETRY_STATUSES:
                    return attempt, error  # the receiver refuses this body: retrying won't help
            if attempt < limit:
                delay = self._settings.webhook_backoff_seconds * (1 << (attempt - 1))
                if self._stopping.wait(delay):
                    return attempt, f"{error} (stopped before retrying)"
        return limit, error

    def delivery_bound_seconds(self) -> float:
        """About the longest one alert's delivery to every webhook can take (all retries)."""
        cfg = self._settings
        waits = cfg.webhook_backoff_seconds * ((1 << (cfg.webhook_max_attempts - 1)) - 1)
        per_hook = cfg.webhook_max_attempts * cfg.webhook_timeout_seconds + waits
        return per_hook * len(cfg.webhooks)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued alert was tried; False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return False
                self._condition.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; alerts still queued stay untried, for `resend_undelivered`."""
        with self._condition:
            self._stopping.set()
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
