"""Alerts: stored once, listed over HTTP, delivered to webhooks with retries, never blocking."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.alerts import RESEND_WINDOW_SECONDS, AlertCenter, payload
from service.api.app import create_app
from service.api.auth import KeyRing
from service.api.errors import install_error_handlers
from service.api.usage_routes import router as usage_router
from service.budgets import BudgetBook
from service.config import AlertSettings, AuthSettings, Settings
from service.errors import RateLimited
from service.ledger import Ledger
from tests.conftest import CountingEmbedder, FakeClock, make_settings
from tests.servers import free_port, running

START = datetime.fromisoformat("2026-03-10T12:00:00+00:00").timestamp()
PAYLOAD_KEYS = {"id", "kind", "scope", "period", "message", "value", "threshold", "created_at"}


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 answering with `statuses` in turn (then 200); records bodies."""

    statuses: list[int] = field(default_factory=list)
    hold: threading.Event | None = None  # when set up, each request waits for it
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Serve a `Receiver` on 127.0.0.1 for the duration of the block."""
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with lock:
                state.bodies.append(body)
                state.headers.append(dict(self.headers))
                status = state.statuses.pop(0) if state.statuses else 200
            state.entered.set()
            if state.hold is not None:
                state.hold.wait(30)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as state:
        yield state


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


def quick(*urls: str, **changes: Any) -> AlertSettings:
    values: dict[str, Any] = {"webhooks": urls, "webhook_backoff_seconds": 0.01}
    values.update(changes)
    return AlertSettings(**values)


def raise_one(center: AlertCenter, period: str = "2026-03-10", **changes: Any) -> Any:
    args: dict[str, Any] = {
        "kind": "cost_anomaly",
        "scope": "global",
        "period": period,
        "message": "today's cost $9.000000 is above 2x the average",
        "value": 9.0,
        "threshold": 2.0,
    }
    args.update(changes)
    return center.raise_alert(**args)


def test_a_webhook_gets_the_documented_payload(ledger: Ledger, receiver: Receiver) -> None:
    center = AlertCenter(ledger, quick(receiver.url), clock=FakeClock(START))
    try:
        record = raise_one(center)
        assert record is not None
        assert center.flush(10)
    finally:
        center.close()
    [body] = receiver.bodies
    assert set(body) == PAYLOAD_KEYS
    assert body == {
        "id": record.id,
        "kind": "cost_anomaly",
        "scope": "global",
        "period": "2026-03-10",
        "message": "today's cost $9.000000 is above 2x the average",
        "value": 9.0,
        "threshold": 2.0,
        "created_at": "2026-03-10T12:00:00Z",
    }
    assert body == payload(record)
    assert receiver.headers[0]["content-type"] == "application/json"
    [stored] = ledger.alerts()
    assert (stored.delivered_at, stored.delivery_attempts, stored.delivery_error) == (
        START,
        1,
        None,
    )


def test_the_same_alert_twice_is_stored_and_delivered_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "ledger.sqlite3"
    clock = FakeClock(START)
    with Ledger(path) as ledger:
        center = AlertCenter(ledger, quick(receiver.url), clock=clock)
        assert raise_one(center) is not None
        clock.advance(600)
        assert raise_one(center, message="worded differently", value=12.0) is None
        assert center.flush(10)
        center.close()
    # A restart (new ledger handle, new center) an hour later still knows it.
    clock.advance(3_600)
    with Ledger(path) as ledger:
        center = AlertCenter(ledger, quick(receiver.url), clock=clock)
        assert raise_one(center) is None
        # Another period, kind or subject is another alert.
        assert raise_one(center, period="2026-03-11") is not None
        assert raise_one(center, kind="hit_rate_collapse") is not None
        assert raise_one(center, subject="other") is not None
        assert center.flush(10)
        center.close()
        assert len(ledger.alerts()) == 4
    assert [b["period"] for b in receiver.bodies].count("2026-03-10") == 3
    assert len(receiver.bodies) == 4


def test_a_failing_webhook_is_retried_with_backoff(ledger: Ledger, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    center = AlertCenter(ledger, quick(receiver.url), clock=FakeClock(START))
    try:
        record = raise_one(center)
        assert center.flush(10)
    finally:
        center.close()
    assert len(receiver.bodies) == 3
    assert all(body == payload(record) for body in receiver.bodies)
    [stored] = ledger.alerts()
    assert (stored.delivered_at, stored.delivery_attempts) == (START, 3)


def test_a_refusing_webhook_is_not_retried_and_the_failure_is_recorded(
    ledger: Ledger, receiver: Receiver
) -> None:
    receiver.statuses = [400]
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    center = AlertCenter(
        ledger, quick(receiver.url, dead, webhook_max_attempts=3), clock=FakeClock(START)
    )
    try:
        raise_one(center)
        assert center.flush(10)
    finally:
        center.close()
    assert len(receiver.bodies) == 1
    [stored] = ledger.alerts()
    assert stored.delivered_at is None
    assert stored.delivery_attempts == 1 + 3
    assert stored.delivery_error is not None
    assert f"{receiver.url}: HTTP 400" in stored.delivery_error
    assert f"{dead}: ConnectError" in stored.delivery_error


def test_a_hanging_webhook_never_holds_up_raising(tmp_path: Path, receiver: Receiver) -> None:
    """While the webhook holds a delivery open, alerts and budget refusals return at once."""
    receiver.hold = threading.Event()
    settings = make_settings(
        tmp_path / "data",
        budgets=[{"name": "tiny", "period": "daily", "amount_usd": 0.01}],
        alerts={"webhooks": [receiver.url], "webhook_queue_size": 1},
    )
    clock = FakeClock(START)
    with Ledger(settings.ledger_path) as ledger:
        center = AlertCenter(ledger, settings.alerts, clock=clock)
        book = BudgetBook(settings, ledger, clock, alerts=center)
        raise_one(center)
        assert receiver.entered.wait(10)  # the worker is stuck inside the first delivery
        outcome: list[object] = []

        def during_the_hang() -> None:
            outcome.append(raise_one(center, period="2026-03-11"))  # queued
            outcome.append(raise_one(center, period="2026-03-12"))  # queue full: dropped
            try:
                book.check_before_miss("acme", None, 20_000)
            except RateLimited as exc:
                outcome.append(exc.error_type)

        worker = threading.Thread(target=during_the_hang)
        worker.start()
        worker.join(10)
        hung = worker.is_alive()
        receiver.hold.set()
        assert not hung, "raising an alert waited for the webhook"
        assert outcome[-1] == "budget_exceeded"
        assert all(record is not None for record in outcome[:2])
        assert center.flush(10)
        center.close()
        stored = {(a.kind, a.period): a for a in ledger.alerts()}
    # Four alerts stored (three anomalies and the refusal); the dropped ones never left.
    assert len(stored) == 4
    assert stored["cost_anomaly", "2026-03-10"].delivered_at is not None
    assert stored["cost_anomaly", "2026-03-11"].delivered_at is not None
    assert stored["cost_anomaly", "2026-03-12"].delivery_attempts == 0
    assert stored["budget_exceeded", "2026-03-10"].delivery_attempts == 0
    assert len(receiver.bodies) == 2


def test_closing_does_not_wait_for_a_hanging_webhook(ledger: Ledger, receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    center = AlertCenter(ledger, quick(receiver.url), clock=FakeClock(START))
    raise_one(center)
    assert receiver.entered.wait(10)
    closer = threading.Thread(target=center.close, kwargs={"timeout": 0.2})
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    assert ledger.alerts()[0].delivered_at is None
    assert raise_one(center, period="2026-03-11") is not None  # still stored when closed


def test_an_unknown_kind_is_refused(ledger: Ledger) -> None:
    center = AlertCenter(ledger, AlertSettings())
    with pytest.raises(ValueError, match="unknown alert kind"):
        raise_one(center, kind="budget_sad")


# --- GET /v1/alerts ---------------------------------------------------------------------------

ADMIN = "admin-key-123"
CLIENT = "client-key-123"


@dataclass
class UsageApp:
    settings: Settings
    keyring: KeyRing
    ledger: Ledger
    alerts: AlertCenter


def usage_app(settings: Settings, ledger: Ledger, alerts: AlertCenter) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(usage_router)
    auth = AuthSettings.model_validate(
        {
            "keys": [
                {"key": ADMIN, "tenant": "ops", "role": "admin"},
                {"key": CLIENT, "tenant": "acme", "role": "client"},
            ]
        }
    )
    app.state.promptcache = UsageApp(settings, KeyRing(auth), ledger, alerts)
    return app


def test_alerts_are_listed_newest_first_for_admins_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    clock = FakeClock(START)
    with Ledger(settings.ledger_path) as ledger:
        center = AlertCenter(ledger, settings.alerts, clock=clock)
        for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
            raise_one(center, period=day)
            clock.advance(60)
        raise_one(center, kind="hit_rate_collapse", value=0.1, threshold=0.3)
        with running(usage_app(settings, ledger, center)) as url:
            admin = {"x-api-key": ADMIN}
            listed = httpx.get(f"{url}/v1/alerts", headers=admin, timeout=10)
            limited = httpx.get(f"{url}/v1/alerts?limit=2", headers=admin, timeout=10)
            by_kind = httpx.get(
                f"{url}/v1/alerts?kind=hit_rate_collapse", headers=admin, timeout=10
            )
            bad_kind = httpx.get(f"{url}/v1/alerts?kind=nope", headers=admin, timeout=10)
            client = httpx.get(f"{url}/v1/alerts", headers={"x-api-key": CLIENT}, timeout=10)
            nobody = httpx.get(f"{url}/v1/alerts", timeout=10)
    assert listed.status_code == 200
    alerts = listed.json()["alerts"]
    assert [a["kind"] for a in alerts] == ["hit_rate_collapse"] + ["cost_anomaly"] * 3
    assert [a["period"] for a in alerts[1:]] == ["2026-03-12", "2026-03-11", "2026-03-10"]
    assert set(alerts[0]) >= PAYLOAD_KEYS
    assert alerts[0]["delivered_at"] is None and alerts[0]["delivery_attempts"] == 0
    assert len(limited.json()["alerts"]) == 2
    assert [a["kind"] for a in by_kind.json()["alerts"]] == ["hit_rate_collapse"]
    assert bad_kind.status_code == 400
    assert client.status_code == 403
    assert client.json()["error"]["type"] == "permission_error"
    assert nobody.status_code == 401


def test_alerts_a_stop_left_undelivered_are_sent_at_the_next_start(
    ledger: Ledger, receiver: Receiver
) -> None:
    """At least once across restarts: queued or waiting to retry when the process stopped."""
    clock = FakeClock(START)
    dead = f"http://127.0.0.1:{free_port()}/hook"  # refuses; the retry waits 30 s
    first = AlertCenter(
        ledger, quick(dead, webhook_backoff_seconds=30, webhook_max_attempts=3), clock=clock
    )
    raise_one(first, period="2026-03-10")  # its delivery waits to retry ...
    raise_one(first, period="2026-03-11")  # ... and this one waits in the queue
    first.close(timeout=10)  # a deploy
    # Untried, not failed: a stop is not the webhook's answer.
    assert [a.delivery_attempts for a in ledger.alerts()] == [0, 0]

    refused = AlertCenter(ledger, quick(receiver.url), clock=clock)
    receiver.statuses = [400]
    raise_one(refused, period="2026-03-12")  # a final failure, recorded: never sent again
    assert refused.flush(10)
    refused.close()
    clock.advance(RESEND_WINDOW_SECONDS - 1)

    second = AlertCenter(ledger, quick(receiver.url), clock=clock)
    try:
        assert second.resend_undelivered() == 2
        assert second.flush(10)
    finally:
        second.close()
    sent = [body["period"] for body in receiver.bodies]
    assert sent == ["2026-03-12", "2026-03-10", "2026-03-11"]
    delivered = {a.period: a.delivered_at for a in ledger.alerts()}
    assert delivered == {"2026-03-10": clock(), "2026-03-11": clock(), "2026-03-12": None}

    clock.advance(RESEND_WINDOW_SECONDS)  # nothing owed, and a day later nothing is resent
    third = AlertCenter(ledger, quick(receiver.url), clock=clock)
    assert third.resend_undelivered() == 0
    third.close()


def test_the_service_sends_owed_alerts_when_it_starts(
    tmp_path: Path, receiver: Receiver, embedder: CountingEmbedder
) -> None:
    settings = make_settings(tmp_path / "data", alerts={"webhooks": [receiver.url]})
    with Ledger(settings.ledger_path) as ledger:
        raise_one(AlertCenter(ledger, quick()), period=datetime.now(UTC).date().isoformat())
    assert receiver.bodies == []  # raised with no webhook to send it to
    with running(create_app(settings, embedder=embedder)):
        assert receiver.entered.wait(10), "the owed alert was not sent at start"
    assert [body["kind"] for body in receiver.bodies] == ["cost_anomaly"]
