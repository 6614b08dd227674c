"""The Anthropic-compatible proxy: one `/v1/messages` call from request to ledger row.

Order of answers: exact hit, semantic hit, then a miss sent upstream to the model the
router picks (or the model the client named). Concurrent identical misses share one
upstream call (single flight). What may be stored follows `service.policy.cacheability`;
upstream errors and broken streams are never stored. Every answer, error included, writes
one ledger row priced by `service.pricing`, through the proxy's books
(`service.proxy_books`: rows, budget holds, and the note that a miss is upstream).

This module knows requests and money but not HTTP: `service.api.messages_routes` parses
headers into `Controls` and turns `Answer`s and event streams into responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
)
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.budgets import BudgetBook
from service.cache import SemanticCache
from service.config import Settings
from service.context_budget import fit_context, normalize_whitespace
from service.errors import (
    ClientGone,
    InvalidRequest,
    PayloadTooLarge,
    PromptCacheError,
    StorageError,
    Superseded,
    UnreadableAnswer,
    UpstreamUnavailable,
)
from service.invalidations import Began
from service.keys import cache_keys
from service.ledger import Kind, Ledger
from service.message_ids import hit_message, with_fresh_id
from service.metrics import Metrics
from service.policy import Bypass, Hit, LookupOptions, cacheability
from service.pricing import PriceTable, Usage, usage_counts, usage_from_message
from service.prompt_caching import add_breakpoints
from service.proxy_books import ProxyBooks, Sent
from service.proxy_streams import (
    FOLLOW_COMMIT_SECONDS,
    PING,
    PING_SECONDS,
    Following,
    Relay,
    error_event,
    feed,
    replay,
)
from service.proxy_types import Answer, Controls, Levers, Prepared
from service.request_checks import validate_request
from service.router import RouteDecision, Router
from service.sse import MessageAssembler
from service.upstream import StreamBroken, StreamEvent, Upstream

logger = logging.getLogger(__name__)


class LeaderGone(Exception):
    """What identical requests waiting on a call hear when that call's own request was
    cancelled (its client hung up): not an answer, and no fault of theirs."""


# Whether the request's client has hung up (`starlette.requests.Request.is_disconnected`).
ClientCheck = Callable[[], Awaitable[bool]]


_FlightKey = tuple[str, int | None]  # exact key, max_tokens


def _as_shared(exc: PromptCacheError) -> PromptCacheError:
    """The error an identical request hears when the stream it waited on broke. It has sent
    nothing yet, so its status can still say what happened: an `overloaded_error` is a 529,
    as upstream's own would be (the SDK raises `OverloadedError` on it, not the
    `InternalServerError` of a 502)."""
    if isinstance(exc, StreamBroken) and exc.error_type == "overloaded_error":
        return UpstreamUnavailable(exc.message, status=529, error_type=exc.error_type)
    return exc


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


class Proxy:
    def __init__(
        self,
        settings: Settings,
        cache: SemanticCache,
        upstream: Upstream,
        router: Router,
        prices: PriceTable,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        budgets: BudgetBook | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.budgets = budgets
        self.cache = cache
        self.upstream = upstream
        self.router = router
        self.prices = prices
        self.ledger = ledger
        self._clock = clock
        self.books = ProxyBooks(
            settings, prices, ledger, clock=clock, metrics=metrics, budgets=budgets
        )
        self._in_flight: dict[_FlightKey, tuple[asyncio.Future[Answer], Began | None]] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self.upstream_calls = 0

    # -- preparation ----------------------------------------------------------------------

    def prepare(
        self,
        body: Any,
        *,
        tenant: str,
        controls: Controls,
        options: LookupOptions,
    ) -> Prepared:
        started = time.perf_counter()
        request = validate_request(body, self.settings.proxy.task_max_tokens, controls.task)
        model = str(request["model"])
        routed = model in self.settings.router.aliases
        keys = cache_keys(
            request,
            tenant=tenant,
            namespace=controls.namespace,
            route_hint=controls.task if routed else None,
            betas=_header(controls.forward_headers, "anthropic-beta"),
            api_version=_header(controls.forward_headers, "anthropic-version"),
        )
        size = len(keys.semantic_text or "")
        if size > self.settings.cache.max_prompt_chars:
            raise PayloadTooLarge(
                f"the last user turn has {size:,} characters; the limit is "
                f"{self.settings.cache.max_prompt_chars:,} (cache.max_prompt_chars)"
            )
        temperature = request.get("temperature")
        ceiling = self.settings.proxy.semantic_max_temperature
        if temperature is not None and temperature > ceiling and not controls.semantic_opt_in:
            options = LookupOptions(
                min_similarity=options.min_similarity,
                max_age=options.max_age,
                guards=options.guards,
                covered_scripts=options.covered_scripts,
                semantic=False,
                semantic_off_reason=(
                    f"temperature {temperature:g} above {ceiling:g}: exact hits only "
                    "(send x-cache-semantic: on to allow semantic hits)"
                ),
            )
        return Prepared(
            request=request,
            keys=keys,
            options=options,
            model_requested=model,
            baseline_model=self.settings.router.baseline_model if routed else model,
            stream=bool(request.get("stream")),
            controls=controls,
            tenant=tenant,
            request_id=f"req_pc_{secrets.token_hex(12)}",
            started=started,
            began=self.cache.began(),
        )

    # -- answers --------------------------------------------------------------------------

    async def lookup(self, prepared: Prepared) -> Answer | None:
        if prepared.controls.no_cache:
            return None
        started = time.perf_counter()
        # An exact hit is memory and one store read: on the event loop, as the cache API's.
        result = self.cache.lookup_exact(prepared.keys, prepared.options)
        if result is None:
            result = await run_in_threadpool(
                self.cache.lookup_rest, prepared.keys, prepared.options
            )
        decision = result.decision
        if self.metrics is not None:
            kind = f"hit-{decision.kind}" if isinstance(decision, Hit) else "miss"
            self.metrics.observe_lookup(kind, time.perf_counter() - started)
        if not isinstance(decision, Hit) or result.entry is None:
            if isinstance(decision, Bypass) and decision.code == "model-changed":
                logger.warning("semantic lookup off: %s", decision.reason)
            return None
        entry = result.entry
        message = hit_message(entry)
        try:
            usage = usage_from_message(message)
        except InvalidRequest:  # counts the caller stored: a hit must not fail on them
            logger.warning("entry %d has no usable token counts: its hit claims none", entry.id)
            usage = Usage()
            message = {**message, "usage": usage_counts(usage)}
        charge = self.prices.charge(
            usage,
            baseline_model=prepared.baseline_model,
            model_used=str(message.get("model", entry.model)),
            hit=decision.kind,
        )
        answer = Answer(
            kind="hit-exact" if decision.kind == "exact" else "hit-semantic",
            message=message,
            model_used=str(message.get("model", entry.model)),
            charge=charge,
            reason=decision.reason,
            similarity=decision.similarity,
            entry_id=entry.id,
        )
        await self.books.record(prepared, answer, status=200)
        return answer

    def _route(self, prepared: Prepared) -> tuple[RouteDecision, dict[str, Any], Levers]:
        """The upstream request: routed model, then context budget, whitespace, breakpoints.

        Only the upstream copy changes; the keys stay those of the request as sent."""
        decision = self.router.route(prepared.request, prepared.controls.task)
        upstream_request = dict(prepared.request)
        upstream_request["model"] = decision.model
        upstream_request.pop("stream", None)
        context = self.settings.context
        budget = prepared.controls.context_budget or context.budgets_by_feature.get(
            prepared.controls.feature or ""
        )
        removed = trimmed_messages = saved = 0
        if budget is not None:
            upstream_request, fitted = fit_context(upstream_request, budget)
            removed, trimmed_messages = fitted.tokens_removed, fitted.messages_removed
        if context.normalize_whitespace:
            upstream_request, saved = normalize_whitespace(upstream_request)
        caching = self.settings.prompt_caching
        upstream_request, breakpoints = add_breakpoints(
            upstream_request,
            enabled=caching.enabled,
            ttl=caching.ttl,
            min_tokens_for_model=caching.min_tokens,
        )
        levers = Levers(removed, trimmed_messages > 0, saved, len(breakpoints.added))
        return decision, upstream_request, levers

    def _flight_key(self, prepared: Prepared) -> _FlightKey:
        return prepared.keys.exact_key, prepared.keys.max_tokens

    async def _follow(
        self,
        prepared: Prepared,
        future: asyncio.Future[Answer],
        client_gone: ClientCheck | None = None,
    ) -> Answer:
        try:
            led = await asyncio.shield(future)
        except PromptCacheError as exc:  # its error is ours too: one row per request, at no cost
            shared = _as_shared(exc)
            await self.books.record_error(prepared, shared, None)
            if shared is exc:
                raise
            raise shared from exc
        except LeaderGone:
            if client_gone is not None and await client_gone():
                raise await self._gone(prepared) from None  # nobody to lead for
            raise
        if client_gone is not None and await client_gone():
            raise await self._gone(prepared)  # not served: no hit row claims a saving
        message = with_fresh_id(led.message)
        usage = usage_from_message(message)
        charge = self.prices.charge(
            usage,
            baseline_model=prepared.baseline_model,
            model_used=str(message.get("model")),
            hit="exact",
        )
        answer = Answer(
            "hit-exact",
            message,
            str(message.get("model")),
            charge,
            "coalesced with an identical request in flight",
            1.0,
            led.entry_id,  # the entry the answer was stored as, if it was
        )
        await self.books.record(prepared, answer, status=200)
        return answer

    async def _gone(self, prepared: Prepared) -> ClientGone:
        gone = ClientGone(
            "the client closed the connection while it waited on an identical request"
        )
        await self.books.record_error(prepared, gone, None)
        return gone

    def _lead(self, prepared: Prepared) -> asyncio.Future[Answer]:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        # Nobody may be following: mark the exception as seen so asyncio does not log it.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        # A `no-store` answer is kept for its own client only: shared, it would be a hit that
        # names no entry, with nothing in the books to trace its saving to.
        if not prepared.controls.no_store:
            self._in_flight[self._flight_key(prepared)] = (future, prepared.began)
        return future

    def _land(self, prepared: Prepared, future: asyncio.Future[Answer]) -> None:
        flight = self._in_flight.get(self._flight_key(prepared))
        if flight is not None and flight[0] is future:
            del self._in_flight[self._flight_key(prepared)]

    def _waiting_on(self, prepared: Prepared) -> asyncio.Future[Answer] | None:
        """The identical request in flight to follow, unless an invalidation ran since it
        began: its answer is not stored then (`SemanticCache.store`), and must not be served
        to a request that began after the invalidation either."""
        flight = self._in_flight.get(self._flight_key(prepared))
        if flight is None:
            return None
        future, began = flight
        if began is not None and prepared.began is not None and began.seq != prepared.began.seq:
            return None
        return future

    async def complete(self, prepared: Prepared, client_gone: ClientCheck | None = None) -> Answer:
        """A non-streaming answer: hit, coalesced, or one upstream call. `client_gone` tells
        whether the client has hung up (a request waiting on another is not cancelled when
        it does): such a request is neither served nor sent upstream."""
        hit = await self.lookup(prepared)
        if hit is not None:
            return hit
        while (waiting := self._waiting_on(prepared)) is not None:
            try:
                return await self._follow(prepared, waiting, client_gone)
            except LeaderGone:
                continue  # the request it waited on was abandoned: lead, or follow another
        future = self._lead(prepared)
        route: RouteDecision | None = None
        sent: Sent | None = None
        try:
            route, upstream_request, levers = await run_in_threadpool(self._route, prepared)
            sent = await self.books.send_off(prepared, route, upstream_request, levers)
            self.upstream_calls += 1
            upstream_started = time.perf_counter()
            try:
                message = await self.upstream.create(
                    upstream_request, extra_headers=prepared.controls.forward_headers
                )
            finally:
                self._observe_upstream(upstream_started)
            answer = await self._finish(prepared, route, message, levers)
            future.set_result(answer)
            return answer
        except UnreadableAnswer as exc:  # upstream billed what no one can read: its bound
            future.set_exception(exc)
            await run_in_threadpool(self.books.abandon, sent, exc)
            raise
        except PromptCacheError as exc:
            future.set_exception(exc)
            await self.books.record_error(prepared, exc, route)
            raise
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            self.books.abandon(sent, exc)
            raise
        finally:
            self.books.release(sent)
            self._land(prepared, future)

    async def _finish(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        message: dict[str, Any],
        levers: Levers,
        *,
        unstorable: str | None = None,
    ) -> Answer:
        """Price, store (when allowed) and record an answer that came from upstream.
        `unstorable`: why an answer the policy would store must not be."""
        try:
            usage = usage_from_message(message)
        except InvalidRequest as exc:  # upstream's fault, not the caller's: not a 400
            raise UnreadableAnswer(f"upstream's answer has no usable usage: {exc.message}") from exc
        model_used = str(
            message.get("model") or (route.model if route else prepared.model_requested)
        )
        charge = self.prices.charge(
            usage,
            baseline_model=prepared.baseline_model,
            model_used=model_used,
            cache_ttl=self.settings.prompt_caching.ttl,
        )
        store = cacheability(message)
        entry_id: int | None = None
        reason = store.reason
        if unstorable is not None:
            reason = f"not stored: {unstorable}"
        elif levers.context_trimmed:
            # An answer to a shortened conversation must not serve the full one later.
            reason = "not stored: context trimmed to the budget"
        elif store.storable and not prepared.controls.no_store:
            try:
                entry = await run_in_threadpool(
                    lambda: self.cache.store(
                        prepared.keys,
                        message,
                        ttl=prepared.controls.ttl,
                        usage=dict(message.get("usage") or {}),
                        cost_micros=charge.cost_micros,
                        output_tokens=usage.output_tokens,
                        truncated=store.truncated,
                        exact_only=store.exact_only,
                        began=prepared.began,
                    )
                )
                if entry.truncated == store.truncated:
                    entry_id = entry.id
                else:  # the complete answer cached for this request stays; this one is not it
                    reason = "not stored: a complete answer to this request is cached"
            except Superseded as exc:  # an invalidation ran while it was upstream (logged)
                reason = exc.message
            except StorageError as exc:
                # The answer is paid for: deliver it and bill it; only the cache loses it.
                logger.error("answer delivered but not stored: %s", exc.message)
                reason = f"not stored: {exc.message}"
            except Exception:  # a bug must not cost the caller a paid answer either
                logger.exception("answer delivered but not stored")
                reason = "not stored: internal error (see the service log)"
        elif prepared.controls.no_store:
            reason = "not stored: cache-control no-store"
        kind: Kind = "bypass" if prepared.controls.no_cache else "miss"
        answer = Answer(kind, message, model_used, charge, reason, None, entry_id)
        await self.books.record(prepared, answer, status=200, route=route, levers=levers)
        return answer

    async def stream(
        self, prepared: Prepared, client_gone: ClientCheck | None = None
    ) -> tuple[Answer | None, AsyncIterator[bytes]]:
        """Events for a streaming request. Errors before the first event raise here, so the
        HTTP status can still say what went wrong; later failures end the stream with an
        `error` event and store nothing. The Answer is known up front only for hits.

        A request that waits on an identical one in flight waits here `FOLLOW_COMMIT_SECONDS`
        at most, so a quick outcome keeps its own status; then its events are `Following`:
        `ping`s while it waits (an SDK's read timeout must not end a stream because the
        answer it shares is long), then the answer, or an `error` event."""
        hit = await self.lookup(prepared)
        if hit is not None:
            return hit, replay(hit.message)
        while (waiting := self._waiting_on(prepared)) is not None:
            await asyncio.wait({waiting}, timeout=FOLLOW_COMMIT_SECONDS)
            if not waiting.done():
                return None, Following(self._follow_stream(prepared, waiting))
            try:
                answer = await self._follow(prepared, waiting, client_gone)
            except LeaderGone:
                continue  # the request it waited on was abandoned: lead, or follow another
            return answer, replay(answer.message)
        return None, await self._lead_stream(prepared)

    async def _follow_stream(
        self, prepared: Prepared, waiting: asyncio.Future[Answer]
    ) -> AsyncGenerator[bytes, None]:
        """A streaming follower once its 200 is sent: pings until the answer it waits on
        is done, then that answer's events (or an `error` event, as the API sends one
        mid-stream). If the client leaves first, it is not served: a 499 row at no cost,
        and it never leads (this generator is closed, so it never gets that far)."""
        answered = False
        try:
            yield PING  # at once: the response starts, and a client that left is noticed
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=PING_SECONDS)
                if not waiting.done():
                    yield PING
            try:
                answer = await self._follow(prepared, waiting)
            except LeaderGone:  # its client left: follow another, or lead
                answered = True  # from here on the rows are those of what it does next
                async for chunk in self._follow_or_lead(prepared):
                    yield chunk
                return
            except PromptCacheError as exc:  # its row is written: tell the client
                answered = True
                yield error_event(exc.error_type, exc.message)
                return
            answered = True
            async for chunk in replay(answer.message):
                yield chunk
        except BaseException:
            if not answered:  # a cancelled task cannot await: one insert on the loop
                gone = ClientGone(
                    "the client closed the stream while it waited on an identical request"
                )
                charge = self.prices.charge(
                    None,
                    baseline_model=prepared.baseline_model,
                    model_used=prepared.model_requested,
                )
                row = Answer("error", {}, prepared.model_requested, charge, gone.message)
                self.books.record_now(self.books.row(prepared, row, status=gone.status))
            raise

    async def _follow_or_lead(self, prepared: Prepared) -> AsyncGenerator[bytes, None]:
        """The events of a streaming follower whose leader's client left, after its 200."""
        waiting = self._waiting_on(prepared)
        if waiting is not None:
            relay: AsyncIterator[bytes] = self._follow_stream(prepared, waiting)
        else:
            try:
                relay = await self._lead_stream(prepared)
            except PromptCacheError as exc:  # its row is written: tell the client
                yield error_event(exc.error_type, exc.message)
                return
        try:
            async for chunk in relay:
                yield chunk
        finally:
            aclose = getattr(relay, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _lead_stream(self, prepared: Prepared) -> Relay:
        """Send a streaming miss upstream: its events once the first one arrived."""
        future = self._lead(prepared)
        route: RouteDecision | None = None
        sent: Sent | None = None
        try:
            route, upstream_request, levers = await run_in_threadpool(self._route, prepared)
            sent = await self.books.send_off(prepared, route, upstream_request, levers)
            self.upstream_calls += 1
            events = self.upstream.stream(
                upstream_request, extra_headers=prepared.controls.forward_headers
            )
            first = await anext(events)
        except PromptCacheError as exc:
            future.set_exception(exc)
            self._land(prepared, future)
            await self.books.record_error(prepared, exc, route)
            self.books.release(sent)
            raise
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            self._land(prepared, future)
            self.books.abandon(sent, exc)
            self.books.release(sent)
            raise
        return Relay(self._relay(prepared, route, levers, first, events, future, sent))

    async def _relay(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        levers: Levers,
        first: StreamEvent,
        events: AsyncIterator[StreamEvent],
        future: asyncio.Future[Answer],
        sent: Sent,
    ) -> AsyncGenerator[bytes, None]:
        assembler = MessageAssembler()
        upstream_started = time.perf_counter()
        settling: asyncio.Task[None] | None = None
        try:
            feed(assembler, first)
            yield first.encode()
            async for event in events:
                feed(assembler, event)
                if assembler.message is not None and settling is None:
                    # Upstream's `message_stop`: the answer is whole and paid for, whatever
                    # the client does next. Its bookkeeping runs as a task of its own,
                    # started before the last event is sent: a client that hangs up once it
                    # has that event cancels this generator, and must not cancel the store,
                    # the miss row or the answer the identical requests wait on.
                    settling = self._settle_soon(
                        self._settle(prepared, route, assembler, levers, future, sent)
                    )
                yield event.encode()
            if settling is None:
                raise StreamBroken("upstream stream ended without message_stop")
            await asyncio.shield(settling)
        except StreamBroken as exc:
            future.set_exception(exc)
            cut = self.books.cut_short(prepared, route, assembler, exc.message)
            await self.books.record(prepared, cut, status=exc.status, route=route, levers=levers)
            yield error_event(exc.error_type, exc.message)
        except BaseException as exc:  # client went away, or cancelled: store nothing
            if settling is not None:  # the answer was whole: its task settles it
                raise
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            status, why = 499, "the client closed the stream before it ended"
            if isinstance(exc, Exception):  # a bug, not a hang-up: say so in the ledger
                logger.exception("a streamed miss failed")
                status, why = 500, f"the stream failed on an internal error ({exc!r})"
            cut = self.books.cut_short(prepared, route, assembler, why)
            # A cancelled task cannot await: one SQLite insert on the loop, once per hang-up.
            self.books.record_now(
                self.books.row(prepared, cut, status=status, route=route, levers=levers)
            )
            raise
        finally:
            self._observe_upstream(upstream_started)
            if settling is None:
                self._settled(prepared, future, sent)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _settle_soon(self, settle: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`settle` in a task of its own, which the client's hang-up cannot cancel; the proxy
        holds it until it ends (the loop keeps only weak references to tasks)."""
        task = asyncio.get_running_loop().create_task(settle)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def drain(self) -> None:
        """Wait for the answers whose bookkeeping is still running (a shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _settle(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        assembler: MessageAssembler,
        levers: Levers,
        future: asyncio.Future[Answer],
        sent: Sent,
    ) -> None:
        """Store, bill and share a streamed answer that upstream finished (`message_stop`)."""
        message = assembler.message
        assert message is not None
        # A hit would replay the input as whole JSON, which it never was.
        cut_input = "a tool_use input cut off mid-JSON" if assembler.cut_inputs else None
        try:
            answer = await self._finish(prepared, route, message, levers, unstorable=cut_input)
            future.set_result(answer)
        except UnreadableAnswer as exc:  # no usable usage: billed at the request's bound
            future.set_exception(exc)
            self.books.abandon(sent, exc)
        except Exception as exc:  # a bug: the answer was relayed, the books say what failed
            logger.exception("a streamed answer could not be settled")
            future.set_exception(exc)
            why = f"the stream failed on an internal error ({exc!r})"
            cut = self.books.cut_short(prepared, route, assembler, why)
            self.books.record_now(
                self.books.row(prepared, cut, status=500, route=route, levers=levers)
            )
        except BaseException:  # cancelled itself (the loop is closing): as the process dying
            future.set_exception(LeaderGone())
            self.books.abandon(sent, LeaderGone())
            raise
        finally:
            self._settled(prepared, future, sent)

    def _settled(self, prepared: Prepared, future: asyncio.Future[Answer], sent: Sent) -> None:
        """A miss is no longer upstream: release its budget hold, and let identical requests
        that come later look it up (or lead) rather than wait on it."""
        self.books.release(sent)
        self._land(prepared, future)

    def _observe_upstream(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_upstream(time.perf_counter() - started)
