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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.budgets import BudgetBook
from service.cache import SemanticCache
from service.config import Settings
from service.context_budget import fit_context, normalize_whitespace
from service.errors import (
    InvalidRequest,
    PayloadTooLarge,
    PromptCacheError,
    StorageError,
    Superseded,
    UnreadableAnswer,
)
from service.keys import cache_keys
from service.ledger import Kind, Ledger
from service.message_ids import with_fresh_id
from service.metrics import Metrics
from service.policy import Bypass, Hit, LookupOptions, cacheability
from service.pricing import PriceTable, Usage, usage_counts, usage_from_message
from service.prompt_caching import add_breakpoints
from service.proxy_books import ProxyBooks, Sent
from service.proxy_types import Answer, Controls, Levers, Prepared
from service.request_checks import validate_request
from service.router import RouteDecision, Router
from service.sse import MessageAssembler, message_to_events
from service.store import Entry
from service.upstream import StreamBroken, StreamEvent, Upstream

logger = logging.getLogger(__name__)


class LeaderGone(Exception):
    """What identical requests waiting on a call hear when that call's own request was
    cancelled (its client hung up): not an answer, and no fault of theirs."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _hit_message(entry: Entry) -> dict[str, Any]:
    """A stored answer as a whole Messages object, which the SDK needs to parse a hit.

    Upstream's answers are stored whole. One stored through the cache API is plain text, or
    a message that may lack what upstream always sends (`id`, `role`, `usage`, ...): those
    are filled in, the usage from the entry's own `usage` (the token counts the caller
    gave, which price the hit's saving) or else zeros (no saving claimed)."""
    usage = entry.usage or {"input_tokens": 0, "output_tokens": 0}
    filled = {
        "type": "message",
        "role": "assistant",
        "model": entry.model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if isinstance(entry.response, dict):
        return with_fresh_id({**filled, **entry.response})
    return with_fresh_id({**filled, "content": [{"type": "text", "text": str(entry.response)}]})


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
        self._in_flight: dict[tuple[str, int | None], asyncio.Future[Answer]] = {}
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
        message = _hit_message(entry)
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

    def _flight_key(self, prepared: Prepared) -> tuple[str, int | None]:
        return prepared.keys.exact_key, prepared.keys.max_tokens

    async def _follow(self, prepared: Prepared, future: asyncio.Future[Answer]) -> Answer:
        try:
            led = await asyncio.shield(future)
        except PromptCacheError as exc:  # its error is ours too: one row per request, at no cost
            await self.books.record_error(prepared, exc, None)
            raise
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

    def _lead(self, prepared: Prepared) -> asyncio.Future[Answer]:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        # Nobody may be following: mark the exception as seen so asyncio does not log it.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        # A `no-store` answer is kept for its own client only: shared, it would be a hit that
        # names no entry, with nothing in the books to trace its saving to.
        if not prepared.controls.no_store:
            self._in_flight[self._flight_key(prepared)] = future
        return future

    def _land(self, prepared: Prepared, future: asyncio.Future[Answer]) -> None:
        if self._in_flight.get(self._flight_key(prepared)) is future:
            del self._in_flight[self._flight_key(prepared)]

    async def complete(self, prepared: Prepared) -> Answer:
        """A non-streaming answer: hit, coalesced, or one upstream call."""
        hit = await self.lookup(prepared)
        if hit is not None:
            return hit
        while (waiting := self._in_flight.get(self._flight_key(prepared))) is not None:
            try:
                return await self._follow(prepared, waiting)
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
    ) -> Answer:
        """Price, store (when allowed) and record an answer that came from upstream."""
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
        if levers.context_trimmed:
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

    async def stream(self, prepared: Prepared) -> tuple[Answer | None, AsyncIterator[bytes]]:
        """Events for a streaming request. Errors before the first event raise here, so the
        HTTP status can still say what went wrong; later failures end the stream with an
        `error` event and store nothing. The Answer is known up front only for hits."""
        hit = await self.lookup(prepared)
        if hit is not None:
            return hit, _replay(hit.message)
        while (waiting := self._in_flight.get(self._flight_key(prepared))) is not None:
            try:
                answer = await self._follow(prepared, waiting)
            except LeaderGone:
                continue  # the request it waited on was abandoned: lead, or follow another
            return answer, _replay(answer.message)
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
        return None, Relay(self._relay(prepared, route, levers, first, events, future, sent))

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
        try:
            _feed(assembler, first)
            yield first.encode()
            async for event in events:
                _feed(assembler, event)
                yield event.encode()
            message = assembler.message
            if message is None:
                raise StreamBroken("upstream stream ended without message_stop")
            future.set_result(await self._finish(prepared, route, message, levers))
        except StreamBroken as exc:
            future.set_exception(exc)
            cut = self.books.cut_short(prepared, route, assembler, exc.message)
            await self.books.record(prepared, cut, status=exc.status, route=route, levers=levers)
            error = {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}
            yield StreamEvent("error", error).encode()
        except BaseException as exc:  # client went away, or cancelled: store nothing
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
            self.books.release(sent)
            self._land(prepared, future)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _observe_upstream(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_upstream(time.perf_counter() - started)


def _feed(assembler: MessageAssembler, event: StreamEvent) -> None:
    """An event of the wrong shape (a delta for a block never started) is upstream's fault:
    the stream ends with an `error` event and a 502 row, as a broken stream does."""
    try:
        assembler.feed(event)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # The parser's words are for the log; the client hears what happened.
        logger.warning("malformed %s event from upstream: %r", event.event, exc)
        raise StreamBroken(f"upstream sent a malformed {event.event} event") from exc


class Relay:
    """A streamed miss's events, with an `aclose` that always runs the relay's cleanup.

    The cleanup (settle the identical requests waiting on this one, release the budget hold,
    bill what was consumed) lives in the relay generator's `finally`. A generator that never
    started has no `finally` to run: if the client leaves before the response starts, closing
    it would do nothing, and the requests waiting on it would wait forever. So a relay that
    never started is advanced to its first event (already in memory) before it is closed.
    """

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self._events = events
        self._started = False

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        self._started = True
        return await anext(self._events)

    async def aclose(self) -> None:
        if not self._started:
            self._started = True
            with contextlib.suppress(StopAsyncIteration):
                await anext(self._events)
        await self._events.aclose()


async def _replay(message: Mapping[str, Any]) -> AsyncIterator[bytes]:
    for event in message_to_events(message):
        yield event.encode()
