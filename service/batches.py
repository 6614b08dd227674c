"""Message Batches, cache-first: what is cached is answered at once, the rest goes upstream once.

A submitted batch is triaged request by request: each is looked up in the cache like a
`/v1/messages` call (`Proxy.lookup`, which writes the hit's ledger row). Among the misses,
identical requests and requests the semantic policy would call duplicates (same context
fingerprint, same `max_tokens`, similarity and guards as for a cache hit;
`service.batch_dedup`) are merged: one leader goes upstream and its duplicates get its answer.
The leaders go to Anthropic as one Message Batch; a background task per batch polls it with
exponential backoff, stores each succeeded answer in the cache, and writes one ledger row per
caller request (`batch` at the batch price for leaders, `hit-exact`/`hit-semantic` for
duplicates, `error` for results that errored, expired or were canceled, which are passed
through and never stored). A semantic duplicate whose leader's answer may not serve it (a tool
call, a refusal, an error) is sent upstream on its own in a follow-up batch rather than given
an answer meant for another text.

State lives in `<data-dir>/batches.sqlite3` (`service.batch_store`), one row per caller
request, so a restart resumes every unfinished batch where it stood. Delivery is
at-least-once around one unavoidable gap: a crash between Anthropic accepting a batch and us
recording its id re-sends those requests. Ledger rows are written before the results are
recorded, and a retried step skips the rows already written (`Ledger.record_new`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool

from service.batch_dedup import DedupSettings, plan_follows
from service.batch_ledger import BatchRows, message_usage
from service.batch_store import (
    LEDGER_STATUS,
    BatchRecord,
    BatchStore,
    BatchView,
    Counts,
    DupKind,
    RequestRow,
    errored,
    normal_result,
    parse_requests,
    succeeded,
)
from service.budgets import request_bound_micros
from service.config import Settings
from service.errors import (
    InvalidRequest,
    NotFound,
    PromptCacheError,
    RateLimited,
    StorageError,
    Superseded,
    Unprocessable,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from service.invalidations import Began
from service.ledger import LedgerRow
from service.message_ids import with_fresh_id
from service.policy import cacheability
from service.prompt_caching import add_breakpoints
from service.proxy import Proxy
from service.proxy_types import Answer, Controls, Prepared

logger = logging.getLogger(__name__)

LIFETIME_SECONDS = 24 * 3600.0  # a batch expires a day after creation, as upstream
_TRANSIENT = (RateLimited, UpstreamTimeout, UpstreamUnavailable)
_DISPATCH_ATTEMPTS = 5  # transient failures to create an upstream batch before giving up
_GIVE_UP_SECONDS = 2 * LIFETIME_SECONDS  # an upstream batch unpollable this long: errored
_CONCURRENCY = 16  # lookups / cache writes in flight per batch (the micro-batcher merges them)
_RESULTS_PAGE = 1000
_INLINE_STEPS = 8  # submit's own steps; the background task takes over after

Step = Literal["ended", "again", "sent", "wait"]
_T = TypeVar("_T")


async def _each(items: Sequence[_T], work: Callable[[_T], Awaitable[None]]) -> None:
    """Run `work` over `items` with `_CONCURRENCY` workers (not one task per item)."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # a shared iterator: each worker takes the next item
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(_CONCURRENCY, len(items)))))


# --- the service ----------------------------------------------------------------------------


class BatchService:
    """Submit, follow and answer batches. `start()` resumes unfinished batches; `stop()`
    cancels the pollers (their state is on disk) and closes the store."""

    def __init__(
        self, settings: Settings, proxy: Proxy, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._cfg = settings.batches
        self._proxy = proxy
        self._clock = clock
        self._store: BatchStore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._dispatch_failures: dict[str, int] = {}
        self._ledger_rows = BatchRows(proxy.prices, clock)
        # The cost bound of each request on its way upstream, (batch, position) -> (tenant,
        # feature, micros), held against the budgets until its result is settled: its spend
        # lands hours after the check. Rebuilt from the store at start; read from the
        # budget book's threads, hence the lock.
        self._in_flight: dict[tuple[str, int], tuple[str, str | None, int]] = {}
        self._in_flight_lock = threading.Lock()
        if proxy.budgets is not None:
            proxy.budgets.count_pending(self._pending_spend)

    @property
    def path(self) -> Path:
        return self._settings.data_dir / "batches.sqlite3"

    @property
    def store(self) -> BatchStore:
        if self._store is None:
            raise StorageError("the batch service is not running")
        return self._store

    async def start(self) -> None:
        self._store = await run_in_threadpool(BatchStore, self.path)
        unfinished = await run_in_threadpool(self.store.unfinished)
        if self._proxy.budgets is not None:  # before any poller can settle a row
            for batch_id in unfinished:
                record = await self._owned(batch_id, None)
                sent = await run_in_threadpool(self.store.rows, batch_id, ("sent",))
                self._hold(record, sent)
        for batch_id in unfinished:
            self._follow(batch_id)
        if unfinished:
            logger.info("resumed %d unfinished batches", len(unfinished))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- the API's verbs ----------------------------------------------------------------------

    async def submit(self, body: Any, *, tenant: str, controls: Controls) -> BatchView:
        """Validate and record a batch; small batches are triaged and dispatched before this
        returns (a batch made only of hits has ended by then), large ones in the background."""
        pairs = parse_requests(body)
        now = self._clock()
        record = BatchRecord(
            id=f"msgbatch_pc_{secrets.token_hex(12)}",
            tenant=tenant,
            controls=controls,
            created_at=now,
            expires_at=now + LIFETIME_SECONDS,
        )
        rows = [RequestRow(i, custom_id, params) for i, (custom_id, params) in enumerate(pairs)]
        prepared = await run_in_threadpool(self._prepare_all, record, rows, True)
        if len(rows) <= self._cfg.inline_max_requests:
            rows = await self._triage(record, rows, prepared)
            await run_in_threadpool(self.store.create, record, rows)
            try:
                for _ in range(_INLINE_STEPS):  # each step settles or sends something
                    if await self._step(record.id) != "again":
                        break
            except Exception:  # the batch is recorded: the background task carries on
                logger.exception("batch %s: step failed; continuing in the background", record.id)
        else:
            await run_in_threadpool(self.store.create, record, rows)
        logger.info("batch %s: %d requests from tenant %s", record.id, len(rows), tenant)
        self._follow(record.id)
        return await self.view(record.id, None)

    async def view(self, batch_id: str, tenant: str | None) -> BatchView:
        """The batch, if it exists and belongs to `tenant` (None: any tenant, for admins)."""
        record = await self._owned(batch_id, tenant)
        return BatchView(record, await run_in_threadpool(self.store.counts, batch_id))

    async def page(
        self,
        tenant: str | None,
        *,
        limit: int = 20,
        before_id: str | None = None,
        after_id: str | None = None,
    ) -> tuple[list[BatchView], bool]:
        """One page of batches, newest first, and whether there are more."""
        records = await run_in_threadpool(self.store.page, tenant, limit + 1, before_id, after_id)
        more = len(records) > limit
        records = records[1:] if more and before_id is not None else records[:limit]
        views = [BatchView(r, await run_in_threadpool(self.store.counts, r.id)) for r in records]
        return views, more

    async def cancel(self, batch_id: str, tenant: str | None) -> BatchView:
        record = await self._owned(batch_id, tenant)
        if record.ended_at is None and record.cancel_initiated_at is None:
            await run_in_threadpool(self.store.mark, batch_id, "cancel_initiated_at", self._clock())
            for upstream_id in await run_in_threadpool(self.store.upstream_batches, batch_id):
                try:
                    await self._proxy.upstream.cancel_batch(upstream_id)
                except PromptCacheError as exc:  # the poller still collects what upstream ends
                    logger.warning("cancel of upstream batch %s failed: %s", upstream_id, exc)
            self._poke(batch_id)
        return await self.view(batch_id, tenant)

    async def delete(self, batch_id: str, tenant: str | None) -> None:
        """Forget an ended batch, as Anthropic deletes one: its requests and results here, and
        its upstream batches (made with promptcache's key, they hold the same requests; a
        failure there is logged). A batch still processing is refused, as upstream refuses it.
        What it stored in the cache and its ledger rows stay: they are the cache's and the
        books', not the batch's."""
        record = await self._owned(batch_id, tenant)
        if record.ended_at is None:
            status = BatchView(record, Counts()).processing_status
            raise InvalidRequest(
                f"batch {batch_id} is {status}: a batch can be deleted once it has ended; "
                "cancel it before deleting it"
            )
        upstream_ids = await run_in_threadpool(self.store.every_upstream_batch, batch_id)
        await run_in_threadpool(self.store.delete, batch_id)
        logger.info("batch %s deleted", batch_id)
        for upstream_id in upstream_ids:
            try:
                await self._proxy.upstream.delete_batch(upstream_id)
            except NotFound:
                pass  # gone already (Anthropic deletes batches 29 days after creation)
            except PromptCacheError as exc:
                logger.warning(
                    "batch %s: upstream batch %s not deleted: %s", batch_id, upstream_id, exc
                )

    async def results(self, batch_id: str, tenant: str | None) -> AsyncIterator[bytes]:
        """JSONL lines in the caller's order; only once the batch has ended."""
        view = await self.view(batch_id, tenant)
        if view.record.ended_at is None:
            raise InvalidRequest(
                f"batch {batch_id} is {view.processing_status}: its results are available "
                "once processing_status is ended"
            )
        return self._result_lines(batch_id)

    async def _result_lines(self, batch_id: str) -> AsyncIterator[bytes]:
        after = -1
        while True:
            page = await run_in_threadpool(self.store.results, batch_id, after, _RESULTS_PAGE)
            if not page:
                return
            for _, custom_id, result in page:
                yield b'{"custom_id":' + orjson.dumps(custom_id) + b',"result":' + result + b"}\n"
            after = page[-1][0]

    async def _owned(self, batch_id: str, tenant: str | None) -> BatchRecord:
        record = await run_in_threadpool(self.store.get, batch_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            raise NotFound(f"no message batch {batch_id!r}")
        return record

    # -- preparation --------------------------------------------------------------------------

    def _prepare(self, record: BatchRecord, row: RequestRow) -> Prepared:
        """The request as the proxy sees it; its request id names the batch and custom_id,
        and its latency counts from the batch's creation."""
        controls = record.controls
        options = self._proxy.cache.options(
            min_similarity=controls.min_similarity, max_age=controls.max_age
        )
        prepared = self._proxy.prepare(
            row.params, tenant=record.tenant, controls=controls, options=options
        )
        age = max(0.0, self._clock() - record.created_at)
        return replace(
            prepared,
            request_id=f"{record.id}/{row.custom_id}",
            started=time.perf_counter() - age,
            # The batch's creation, which outlives restarts: invalidations since then cover
            # its answers (service.invalidations compares such a token by time).
            began=Began(None, record.created_at),
        )

    def _prepare_all(
        self, record: BatchRecord, rows: Sequence[RequestRow], naming: bool = False
    ) -> list[Prepared]:
        out: list[Prepared] = []
        for row in rows:
            try:
                out.append(self._prepare(record, row))
            except InvalidRequest as exc:
                if not naming:
                    raise
                raise type(exc)(f"requests.{row.position}.params: {exc.message}") from exc
        return out

    def _queued(self, row: RequestRow, prepared: Prepared) -> RequestRow:
        """A leader ready to go upstream: routed like the proxy routes a miss."""
        route = self._proxy.router.route(prepared.request, prepared.controls.task)
        params = dict(prepared.request)
        params["model"] = route.model
        params.pop("stream", None)
        # The Batches API caches prompt prefixes as the Messages API does; requests of one
        # batch often share a long system prompt, so they get the proxy's breakpoints too.
        caching = self._proxy.settings.prompt_caching
        params, _ = add_breakpoints(
            params,
            enabled=caching.enabled,
            ttl=caching.ttl,
            min_tokens_for_model=caching.min_tokens,
        )
        return replace(
            row,
            state="queued",
            leader=None,
            dup_kind=None,
            similarity=None,
            upstream_params=params,
            route_tier=route.tier if route.routed else None,
            route_reasons="; ".join(route.reasons) if route.routed else None,
        )

    # -- triage: lookups and de-duplication ---------------------------------------------------

    async def _triage(
        self, record: BatchRecord, rows: list[RequestRow], prepared: list[Prepared]
    ) -> list[RequestRow]:
        answers: dict[int, Answer] = {}

        async def look(pair: tuple[RequestRow, Prepared]) -> None:
            answer = await self._proxy.lookup(pair[1])  # writes the hit's ledger row
            if answer is not None:
                answers[pair[0].position] = answer

        await _each(list(zip(rows, prepared, strict=True)), look)
        misses = [(r, p) for r, p in zip(rows, prepared, strict=True) if r.position not in answers]
        return await run_in_threadpool(self._plan, rows, prepared, answers, misses)

    def _plan(
        self,
        rows: list[RequestRow],
        prepared: list[Prepared],
        answers: Mapping[int, Answer],
        misses: list[tuple[RequestRow, Prepared]],
    ) -> list[RequestRow]:
        cache = self._proxy.cache
        dedup = DedupSettings(
            semantic=cache.semantic_block is None,
            group_max=self._cfg.semantic_group_max,
            top_k=self._settings.cache.top_k,
        )
        follows = plan_follows(misses, cache.embedder, dedup, self._clock())
        out: list[RequestRow] = []
        for row, item in zip(rows, prepared, strict=True):
            answer = answers.get(row.position)
            follow = follows.get(row.position)
            if answer is not None:
                kind: DupKind = "exact" if answer.kind == "hit-exact" else "semantic"
                done = succeeded(answer.message)
                out.append(
                    replace(
                        row,
                        state="done",
                        dup_kind=kind,
                        similarity=answer.similarity,
                        result=done,
                    )
                )
            elif follow is not None:
                out.append(
                    replace(
                        row,
                        state="duplicate",
                        leader=follow.leader,
                        dup_kind=follow.kind,
                        similarity=follow.similarity,
                    )
                )
            else:
                out.append(self._queued(row, item))
        return out

    # -- the driver ---------------------------------------------------------------------------

    def _follow(self, batch_id: str) -> None:
        if batch_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(batch_id), name=f"batch {batch_id}")
        self._tasks[batch_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(batch_id) is done:
                del self._tasks[batch_id]
            self._wake.pop(batch_id, None)
            self._dispatch_failures.pop(batch_id, None)

        task.add_done_callback(forget)

    def _poke(self, batch_id: str) -> None:
        event = self._wake.get(batch_id)
        if event is not None:
            event.set()

    async def _nap(self, batch_id: str, seconds: float) -> None:
        event = self._wake.setdefault(batch_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    async def _drive(self, batch_id: str) -> None:
        initial = self._cfg.poll_initial_seconds
        longest = max(self._cfg.poll_max_seconds, initial)
        delay = initial
        while True:
            try:
                step = await self._step(batch_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; state is on disk, the next step retries
                logger.exception("batch %s: step failed; retrying in %.1f s", batch_id, delay)
                step = "wait"
            if step == "ended":
                return
            if step == "again":
                continue
            if step == "sent":
                delay = initial
            await self._nap(batch_id, delay)
            delay = min(delay * 2, longest)

    async def _step(self, batch_id: str) -> Step:
        """One move of a batch towards `ended`."""
        record = await self._owned(batch_id, None)
        if record.ended_at is not None:
            return "ended"
        states = await run_in_threadpool(self.store.states, batch_id)
        unsent = states.get("pending", 0) + states.get("queued", 0)
        now = self._clock()
        if unsent and (record.cancel_initiated_at is not None or now >= record.expires_at):
            kind = "canceled" if record.cancel_initiated_at is not None else "expired"
            rows = await run_in_threadpool(self.store.rows, batch_id, ("pending", "queued"))
            await self._settle(record, [(row, {"type": kind}) for row in rows])
            return "again"
        if states.get("pending"):
            rows = await run_in_threadpool(self.store.rows, batch_id, ("pending",))
            prepared = await run_in_threadpool(self._prepare_all, record, rows)
            decided = await self._triage(record, rows, prepared)
            await run_in_threadpool(self.store.update, batch_id, decided)
            return "again"
        if states.get("queued"):
            return await self._dispatch(record)
        if states.get("sent"):
            return await self._poll(record)
        if states.get("duplicate"):  # their leaders are settled: never leave them unanswered
            orphans = await run_in_threadpool(self.store.rows, batch_id, ("duplicate",))
            logger.warning("batch %s: %d orphaned duplicates sent on", batch_id, len(orphans))
            prepared = await run_in_threadpool(self._prepare_all, record, orphans)
            queued = [self._queued(r, p) for r, p in zip(orphans, prepared, strict=True)]
            await run_in_threadpool(self.store.update, batch_id, queued)
            return "again"
        await run_in_threadpool(self.store.mark, batch_id, "ended_at", now)
        logger.info("batch %s ended", batch_id)
        return "ended"

    async def _dispatch(self, record: BatchRecord) -> Step:
        queued = await run_in_threadpool(self.store.rows, record.id, ("queued",))
        requests = [{"custom_id": f"pc-{r.position}", "params": r.upstream_params} for r in queued]
        budgets = self._proxy.budgets
        try:
            if budgets is not None:  # the batch as a whole, at the batch price
                self._unhold(record.id, queued)  # an earlier try of this step held them
                bounds = [self._bound(r.upstream_params or {}) for r in queued]
                await run_in_threadpool(
                    functools.partial(
                        budgets.check_before_miss,
                        record.tenant,
                        record.controls.feature,
                        sum(bounds),
                        unpriced=self._unpriced_model(queued),
                        # Held inside the check: two batches dispatched at once each saw the
                        # other's headroom and both went (5 of 8 admitted where 3 fitted).
                        then=lambda: self._hold(record, queued, bounds),
                    )
                )
        except (RateLimited, Unprocessable) as exc:  # a refusal lasts: no retry
            await self._settle(record, [(r, errored(exc.error_type, exc.message)) for r in queued])
            return "again"
        try:
            created = await self._proxy.upstream.create_batch(
                requests, extra_headers=record.controls.forward_headers
            )
            upstream_id = created.get("id")
            if not isinstance(upstream_id, str) or not upstream_id:
                raise UpstreamUnavailable("upstream created a batch without an id")
        except PromptCacheError as exc:
            failures = self._dispatch_failures.get(record.id, 0) + 1
            self._dispatch_failures[record.id] = failures
            if isinstance(exc, _TRANSIENT) and failures < _DISPATCH_ATTEMPTS:
                logger.warning(
                    "batch %s: upstream batch not created (%s); will retry", record.id, exc
                )
                return "wait"
            await self._settle(record, [(r, errored(exc.error_type, exc.message)) for r in queued])
            return "again"
        self._dispatch_failures.pop(record.id, None)
        sent = [replace(r, state="sent", upstream_batch=upstream_id) for r in queued]
        await run_in_threadpool(self.store.update, record.id, sent)
        logger.info("batch %s: %d requests sent as %s", record.id, len(sent), upstream_id)
        latest = await self._owned(record.id, None)
        if latest.cancel_initiated_at is not None:  # canceled while we were creating it
            with contextlib.suppress(PromptCacheError):
                await self._proxy.upstream.cancel_batch(upstream_id)
        return "sent"

    def _hold(
        self, record: BatchRecord, rows: Sequence[RequestRow], bounds: Sequence[int] | None = None
    ) -> None:
        if bounds is None:
            bounds = [self._bound(r.upstream_params or {}) for r in rows]
        feature = record.controls.feature
        held = {
            (record.id, r.position): (record.tenant, feature, bound)
            for r, bound in zip(rows, bounds, strict=True)
        }
        with self._in_flight_lock:
            self._in_flight.update(held)

    def _unhold(self, batch_id: str, rows: Sequence[RequestRow]) -> None:
        with self._in_flight_lock:
            for row in rows:
                self._in_flight.pop((batch_id, row.position), None)

    def _pending_spend(self) -> list[tuple[str, str | None, int]]:
        with self._in_flight_lock:
            return list(self._in_flight.values())

    def _unpriced_model(self, rows: Sequence[RequestRow]) -> str | None:
        """A model of these requests the price table does not know: no bound is possible."""
        for row in rows:
            model = str((row.upstream_params or {}).get("model"))
            if self._proxy.prices.get(model) is None:
                return model
        return None

    def _bound(self, params: Mapping[str, Any]) -> int:
        """What one request can cost at most, at the batch price of its model."""
        prices = self._proxy.prices
        model = str(params.get("model"))
        price = prices.get(model)
        bound = request_bound_micros(prices, model, params)
        return bound if price is None else math.ceil(bound * price.multipliers.batch)

    async def _poll(self, record: BatchRecord) -> Step:
        upstream = self._proxy.upstream
        for upstream_id in await run_in_threadpool(self.store.upstream_batches, record.id):
            try:
                batch = await upstream.retrieve_batch(upstream_id)
                if batch.get("processing_status") != "ended":
                    continue
                lines = [line async for line in upstream.batch_results(upstream_id)]
            except NotFound as exc:
                lines = []
                logger.warning(
                    "batch %s: upstream batch %s is gone: %s", record.id, upstream_id, exc
                )
            except PromptCacheError as exc:
                logger.warning("batch %s: polling %s failed: %s", record.id, upstream_id, exc)
                if self._clock() < record.created_at + _GIVE_UP_SECONDS:
                    continue
                lines = []
            await self._apply(record, upstream_id, lines)
            return "again"
        return "wait"

    # -- results, cache and ledger ------------------------------------------------------------

    async def _apply(self, record: BatchRecord, upstream_id: str, lines: list[Any]) -> None:
        sent = await run_in_threadpool(self.store.rows, record.id, ("sent",))
        mine = {f"pc-{r.position}": r for r in sent if r.upstream_batch == upstream_id}
        outcomes: list[tuple[RequestRow, dict[str, Any]]] = []
        for line in lines:
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            row = mine.pop(str(custom_id), None)
            if row is not None:
                outcomes.append((row, normal_result(line.get("result"))))
        missing = errored("api_error", f"no result in upstream batch {upstream_id}")
        outcomes.extend((row, missing) for row in mine.values())
        await self._settle(record, outcomes)

    async def _settle(
        self, record: BatchRecord, outcomes: list[tuple[RequestRow, dict[str, Any]]]
    ) -> None:
        """Give leaders their results and their duplicates theirs: store, record, persist."""
        leaders = {row.position for row, _ in outcomes}
        waiting = await run_in_threadpool(self.store.rows, record.id, ("duplicate",))
        followers: dict[int, list[RequestRow]] = {}
        for row in waiting:
            if row.leader in leaders:
                followers.setdefault(row.leader, []).append(row)
        writes: list[RequestRow] = []
        ledger: list[LedgerRow] = []

        async def settle_one(outcome: tuple[RequestRow, dict[str, Any]]) -> None:
            row, result = outcome
            prepared = await run_in_threadpool(self._prepare, record, row)
            if result["type"] == "succeeded":
                message = result["message"]
                entry_id = await self._store_answer(record, prepared, message)
                ledger.append(self._ledger_rows.answered(record, prepared, row, message, entry_id))
                storable = cacheability(message)
                servable = storable.storable and not storable.exact_only
            else:
                entry_id, servable = None, False
                ledger.append(self._ledger_rows.failed(record, prepared, row, result))
            writes.append(replace(row, state="done", result=result))
            for follower in followers.get(row.position, ()):
                mine = await run_in_threadpool(self._prepare, record, follower)
                if follower.dup_kind == "exact" or servable or result["type"] in LEDGER_STATUS:
                    if result["type"] == "succeeded":  # the same answer, its own message id
                        theirs = {**result, "message": with_fresh_id(result["message"])}
                        writes.append(replace(follower, state="done", result=theirs))
                        hit = self._ledger_rows.hit(
                            record, mine, follower, theirs["message"], entry_id
                        )
                        ledger.append(hit)
                    else:
                        writes.append(replace(follower, state="done", result=result))
                        ledger.append(self._ledger_rows.failed(record, mine, follower, result))
                else:  # its leader's answer may not serve it: it goes upstream itself
                    writes.append(await run_in_threadpool(self._queued, follower, mine))

        await _each(outcomes, settle_one)
        written = await run_in_threadpool(self._write_rows, ledger)
        if self._proxy.metrics is not None:
            for ledger_row in written:
                self._proxy.metrics.observe_row(ledger_row)
        await run_in_threadpool(self.store.update, record.id, writes)
        self._unhold(record.id, [row for row, _ in outcomes])  # their rows are in the ledger

    def _write_rows(self, rows: Sequence[LedgerRow]) -> list[LedgerRow]:
        """Record rows as the proxy does, so budgets count what batches spend. Rows a failed
        earlier try of this step already wrote are skipped, here and in the budgets."""
        budgets = self._proxy.budgets
        written = self._proxy.ledger.record_new(rows)
        if budgets is not None:
            for row, row_id in written:
                budgets.on_row(row, row_id)
        return [row for row, _ in written]

    async def _store_answer(
        self, record: BatchRecord, prepared: Prepared, message: dict[str, Any]
    ) -> int | None:
        storable = cacheability(message)
        if not storable.storable or record.controls.no_store:
            return None
        usage = message_usage(message)
        cost = self._ledger_rows.charge(prepared, message, batch=True).cost_micros
        try:
            entry = await run_in_threadpool(
                lambda: self._proxy.cache.store(
                    prepared.keys,
                    message,
                    ttl=record.controls.ttl,
                    usage=dict(message.get("usage") or {}),
                    cost_micros=cost,
                    output_tokens=usage.output_tokens if usage is not None else None,
                    truncated=storable.truncated,
                    exact_only=storable.exact_only,
                    began=prepared.began,
                )
            )
        except Superseded:  # an invalidation since the batch was created (logged)
            return None
        except StorageError as exc:  # the result is still delivered and billed
            logger.error("batch result delivered but not stored: %s", exc.message)
            return None
        except Exception:  # a bug must not cost the caller a paid result either
            logger.exception("batch result delivered but not stored")
            return None
        # A cut-off answer is not stored over a complete one: that entry does not hold this.
        return entry.id if entry.truncated == storable.truncated else None
