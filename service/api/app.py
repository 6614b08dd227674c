"""The FastAPI application factory.

`create_app(settings)` builds an isolated app: its components (embedder, cache, key ring)
live in the app's state, created in the lifespan and closed at shutdown, so tests can run
several apps side by side. A test may pass a ready embedder to share one loaded model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from embeddings.base import Embedder
from service.alerts import AlertCenter, alert_json
from service.anomaly import AnomalyWatch, run_periodic
from service.api.auth import KeyRing
from service.api.batch_routes import install_batches
from service.api.body_limit import BodyLimit, Limit
from service.api.cache_routes import router as cache_router
from service.api.count_tokens_routes import router as count_tokens_router
from service.api.edge import Edge
from service.api.errors import install_error_handlers
from service.api.messages_routes import router as messages_router
from service.api.models_routes import router as models_router
from service.api.ops_routes import router as ops_router
from service.api.state import AppState
from service.api.usage_routes import router as usage_router
from service.budgets import BudgetBook
from service.cache import SemanticCache
from service.config import Settings
from service.embedder_factory import build_embedder
from service.ledger import Ledger
from service.metrics import Metrics
from service.pricing import format_usd, load_prices
from service.proxy import Proxy
from service.router import Router
from service.upstream import AnthropicUpstream

logger = logging.getLogger(__name__)


async def _maintenance_loop(cache: SemanticCache, interval: float) -> None:
    """First at start (entries that expired while the service was down go at once), then
    every `interval` seconds."""
    while True:
        try:
            await run_in_threadpool(cache.maintain)
        except Exception:  # keep serving; the next round tries again
            logger.exception("cache maintenance failed")
        await asyncio.sleep(interval)


def _settle_interrupted(ledger: Ledger) -> None:
    """Write the rows the last process left noted, before budgets sum the ledger: misses it
    was cut off from (priced at their bound) and rows the ledger had refused."""
    rows = ledger.settle_interrupted()
    cut_off = [row for row in rows if row.kind == "error" and row.status == 0]
    if cut_off:
        logger.warning(
            "recorded %d request(s) that were upstream when the service last stopped, at "
            "their upper-bound cost of $%s in all: ledger rows of kind error, status 0",
            len(cut_off),
            format_usd(sum(row.cost_micros for row in cut_off)),
        )
    if len(rows) > len(cut_off):
        logger.warning("recorded %d row(s) the ledger had refused", len(rows) - len(cut_off))


async def _close_in_turn(*steps: tuple[str, Callable[[], Awaitable[None]]]) -> None:
    """Run every close step, whatever the ones before it raised (logged)."""
    for what, close in steps:
        try:
            await close()
        except Exception:
            logger.exception("could not close %s at shutdown", what)


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder
        if model is None:
            model = await run_in_threadpool(build_embedder, settings.embedding)
        cache = await run_in_threadpool(lambda: SemanticCache(settings, model, clock=clock))
        cache.entry_store.keep_connection_on_this_thread()  # the event loop's: exact hits read here
        ledger = Ledger(settings.ledger_path)
        await run_in_threadpool(_settle_interrupted, ledger)
        alerts = AlertCenter(ledger, settings.alerts, clock=clock)
        await run_in_threadpool(alerts.resend_undelivered)
        budgets = await run_in_threadpool(
            lambda: BudgetBook(settings, ledger, clock, alerts=alerts)
        )
        anomaly = AnomalyWatch(settings, ledger, alerts, clock=clock)
        metrics = Metrics(
            cache_size=cache.stats,
            budgets=lambda: [
                (s.name, s.fraction, s.held_micros / 1_000_000) for s in budgets.status()
            ],
        )
        for batcher in cache.batchers:
            batcher.on_batch = metrics.observe_embedding_batch
        upstream = AnthropicUpstream(settings.upstream)
        proxy = Proxy(
            settings,
            cache,
            upstream,
            Router(settings.router),
            load_prices(settings.prices_file),
            ledger,
            clock=clock,
            metrics=metrics,
            budgets=budgets,
        )
        app.state.promptcache = AppState(
            settings,
            cache,
            KeyRing(settings.auth),
            proxy,
            metrics,
            ledger=ledger,
            alerts=alerts,
            budgets=budgets,
            anomaly=anomaly,
            clock=clock,
            budget_statuses=budgets.status,
            recent_alerts=lambda: [alert_json(a) for a in alerts.recent(50)],
        )
        tasks = [
            asyncio.create_task(_maintenance_loop(cache, settings.cache.purge_interval_seconds)),
            asyncio.create_task(run_periodic(anomaly)),
            # The SDK's import is the slowest part of a start: not on the way to serving.
            asyncio.create_task(asyncio.to_thread(upstream.warm)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await _close_in_turn(
                # An answer whose client has left may still be storing and writing its row.
                ("the answers being recorded", proxy.drain),
                ("the upstream client", upstream.aclose),
                # An index that cannot be saved (a full disk) is repaired from the store at
                # the next start; it must not keep the alert worker and ledger from closing.
                ("the cache", lambda: run_in_threadpool(cache.close)),
                ("the alert worker", lambda: run_in_threadpool(alerts.close)),
                ("the held ledger rows", lambda: run_in_threadpool(proxy.books.close)),
            )
            ledger.close()

    app = FastAPI(
        title="promptcache",
        version="0.1.0",
        description="Semantic cache in front of the Anthropic Messages API",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    server = settings.server
    messages_limit = Limit(server.messages_max_body_bytes, "server.messages_max_body_bytes")
    app.add_middleware(
        BodyLimit,
        default=Limit(server.max_body_bytes, "server.max_body_bytes"),
        by_path={
            "/v1/messages": messages_limit,
            "/v1/messages/count_tokens": messages_limit,
            "/v1/messages/batches": Limit(
                server.batches_max_body_bytes, "server.batches_max_body_bytes"
            ),
        },
    )
    app.add_middleware(Edge)  # outermost: an encoded body is refused before it is counted
    app.include_router(cache_router)
    app.include_router(count_tokens_router)
    app.include_router(messages_router)
    app.include_router(models_router)
    app.include_router(ops_router)
    app.include_router(usage_router)
    install_batches(app, clock=clock)
    return app
