"""The Anthropic-compatible proxy: one `/v1/messages` call from request to ledger row.

Order of answers: exact hit, semantic hit, then a miss sent upstream to the model the
router picks (or the model the client named). Concurrent identical misses share one
upstream call (single flight). What may be stored follows `service.policy.cacheability`;
upstream errors and broken streams are never stored. Every answer, error included, writes
one ledger row priced by `service.pricing`.

This module knows requests and money but not HTTP: `service.api.messages_routes` parses
headers into `Controls` and turns `Answer`s and event streams into responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.budgets import BudgetBook, Hold, request_bound_micros
from service.cache import SemanticCache
from service.config import Settings
from service.context_budget import fit_context, normalize_whitespace
from service.errors import InvalidRequest, PayloadTooLarge, PromptCacheError, StorageError
from service.keys import CacheKeys, cache_keys
from service.ledger import Kind, Ledger, LedgerRow
from service.metrics import Metrics
from service.policy import Bypass, Hit, LookupOptions, cacheability
from service.pricing import Charge, PriceTable, Usage, usage_counts, usage_from_message
from service.prompt_caching import add_breakpoints
from service.router import RouteDecision, Router
from service.sse import MessageAssembler, message_to_events
from service.tokens import estimate_output_tokens
from service.upstream import StreamBroken, StreamEvent, Upstream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Controls:
    """Per-request cache controls, from headers (DESIGN §6)."""

    no_cache: bool = False  # skip lookup, store the answer
    no_store: bool = False  # do not store the answer
    max_age: float | None = None
    ttl: float | None = None
    namespace: str | None = None
    min_similarity: float | None = None
    feature: str | None = None
    task: str | None = None
    semantic_opt_in: bool = False  # allow semantic hits above the temperature ceiling
    context_budget: int | None = None  # x-promptcache-context-budget: keep the newest turns
    forward_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    request: dict[str, Any]
    keys: CacheKeys
    options: LookupOptions
    model_requested: str
    baseline_model: str
    stream: bool
    controls: Controls
    tenant: str
    request_id: str
    started: float


@dataclass(frozen=True)
class Levers:
    """What the cost levers did to one upstream request (estimated tokens)."""

    context_tokens_removed: int = 0
    context_trimmed: bool = False
    whitespace_tokens_saved: int = 0
    cache_breakpoints: int = 0


def interrupted(what: str) -> str:
    """Why a row noted before a miss went upstream was written instead of the miss's own."""
    return (
        f"{what} while this request was upstream, so no answer was given; upstream may have "
        "billed it: the cost is the request's upper bound (the whole prompt and max_tokens "
        "of output), the token counts unknown"
    )


@dataclass(frozen=True)
class Sent:
    """What a miss holds while it is upstream: its budget hold (None without budgets) and
    the row the ledger keeps for it until its own row is written."""

    hold: Hold | None
    interrupted: LedgerRow


class LeaderGone(Exception):
    """What identical requests waiting on a call hear when that call's own request was
    cancelled (its client hung up): not an answer, and no fault of theirs."""


@dataclass(frozen=True)
class Answer:
    kind: Kind
    message: dict[str, Any]
    model_used: str
    charge: Charge
    reason: str
    similarity: float | None = None
    entry_id: int | None = None


def _text_message(text: str, model: str, entry_id: int) -> dict[str, Any]:
    """A stored plain-text answer (cache API) in Messages form."""
    return {
        "id": f"msg_pc_{entry_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }


def validate_request(
    body: Any, task_max_tokens: Mapping[str, int], task: str | None
) -> dict[str, Any]:
    """The checks the Messages API makes before anything else, as 400s with its wording."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "model: field required (a model id, or `auto` to let promptcache route)"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{position}: needs role `user` or `assistant`")
        if not isinstance(message.get("content"), (str, list)):
            raise InvalidRequest(
                f"messages.{position}.content: must be a string or a list of blocks"
            )
    request = dict(body)
    max_tokens = request.get("max_tokens")
    if max_tokens is None:
        if task is None or task not in task_max_tokens:
            raise InvalidRequest(
                "max_tokens: field required (or send x-promptcache-task with one of "
                f"{', '.join(sorted(task_max_tokens))} to use its default)"
            )
        request["max_tokens"] = task_max_tokens[task]
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: must be a positive integer")
    if "stream" in request and not isinstance(request["stream"], bool):
        raise InvalidRequest("stream: must be true or false")
    temperature = request.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float))
    ):
        raise InvalidRequest("temperature: must be a number")
    return request


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
        keys = cache_keys(request, tenant=tenant, namespace=controls.namespace)
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
        model = str(request["model"])
        routed = model in self.settings.router.aliases
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
        )

    # -- answers --------------------------------------------------------------------------

    async def lookup(self, prepared: Prepared) -> Answer | None:
        if prepared.controls.no_cache:
            return None
        started = time.perf_counter()
        result = await run_in_threadpool(self.cache.lookup, prepared.keys, prepared.options)
        decision = result.decision
        if self.metrics is not None:
            kind = f"hit-{decision.kind}" if isinstance(decision, Hit) else "miss"
            self.metrics.observe_lookup(kind, time.perf_counter() - started)
        if not isinstance(decision, Hit) or result.entry is None:
            if isinstance(decision, Bypass) and decision.code == "model-changed":
                logger.warning("semantic lookup off: %s", decision.reason)
            return None
        entry = result.entry
        message = (
            entry.response
            if isinstance(entry.response, dict)
            else _text_message(str(entry.response), entry.model, entry.id)
        )
        usage = usage_from_message(message)
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
        await self.record(prepared, answer, status=200)
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
        led = await asyncio.shield(future)
        message = led.message
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
        await self.record(prepared, answer, status=200)
        return answer

    def _lead(self, prepared: Prepared) -> asyncio.Future[Answer]:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        # Nobody may be following: mark the exception as seen so asyncio does not log it.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
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
            sent = await self._send_off(prepared, route, upstream_request, levers)
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
        except PromptCacheError as exc:
            future.set_exception(exc)
            await self.record_error(prepared, exc, route)
            raise
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            self._abandon(sent, exc)
            raise
        finally:
            self._release(sent)
            self._land(prepared, future)

    async def _finish(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        message: dict[str, Any],
        levers: Levers,
    ) -> Answer:
        """Price, store (when allowed) and record an answer that came from upstream."""
        usage = usage_from_message(message)
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
                    )
                )
                entry_id = entry.id
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
        await self.record(prepared, answer, status=200, route=route, levers=levers)
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
            sent = await self._send_off(prepared, route, upstream_request, levers)
            self.upstream_calls += 1
            events = self.upstream.stream(
                upstream_request, extra_headers=prepared.controls.forward_headers
            )
            first = await anext(events)
        except PromptCacheError as exc:
            future.set_exception(exc)
            self._land(prepared, future)
            await self.record_error(prepared, exc, route)
            self._release(sent)
            raise
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            self._land(prepared, future)
            self._abandon(sent, exc)
            self._release(sent)
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
            assembler.feed(first)
            yield first.encode()
            async for event in events:
                assembler.feed(event)
                yield event.encode()
            message = assembler.message
            if message is None:
                raise StreamBroken("upstream stream ended without message_stop")
            future.set_result(await self._finish(prepared, route, message, levers))
        except StreamBroken as exc:
            future.set_exception(exc)
            cut = self._cut_short(prepared, route, assembler, exc.message)
            await self.record(prepared, cut, status=exc.status, route=route, levers=levers)
            error = {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}
            yield StreamEvent("error", error).encode()
        except BaseException as exc:  # client went away, or cancelled: store nothing
            future.set_exception(exc if isinstance(exc, Exception) else LeaderGone())
            status, why = 499, "the client closed the stream before it ended"
            if isinstance(exc, Exception):  # a bug, not a hang-up: say so in the ledger
                logger.exception("a streamed miss failed")
                status, why = 500, f"the stream failed on an internal error ({exc!r})"
            cut = self._cut_short(prepared, route, assembler, why)
            # A cancelled task cannot await: one SQLite insert on the loop, once per hang-up.
            self._record_now(
                self._ledger_row(prepared, cut, status=status, route=route, levers=levers)
            )
            raise
        finally:
            self._observe_upstream(upstream_started)
            self._release(sent)
            self._land(prepared, future)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _write_row(self, row: LedgerRow) -> None:
        row_id = self.ledger.record(row)
        if self.budgets is not None:
            self.budgets.on_row(row, row_id)

    async def _send_off(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        upstream_request: dict[str, Any],
        levers: Levers,
    ) -> Sent:
        """Refuse a miss that could push a budget past its limit (hits never get here), or
        hold its cost bound until `_release` (after its row is recorded); and note in the
        ledger, at that bound, that it is upstream, in case the process dies first."""
        model = str(upstream_request["model"])
        bound = request_bound_micros(self.prices, model, upstream_request)
        charge = self.prices.charge(None, baseline_model=model, model_used=model)
        # Baseline = cost: a request that gave no answer claims no saving. An unknown model
        # has no bound, and is listed as unpriced rather than free.
        charge = replace(charge, cost_micros=bound, baseline_micros=bound, priced=bound > 0)
        answer = Answer("error", {}, model, charge, interrupted("the service stopped"))
        row = self._ledger_row(prepared, answer, status=0, route=route, levers=levers)

        def admit() -> Hold | None:
            hold = None
            if self.budgets is not None:
                hold = self.budgets.hold_before_miss(
                    prepared.tenant, prepared.controls.feature, bound
                )
            try:
                self.ledger.note_upstream(row)
            except StorageError as exc:  # the answer matters more than the note
                logger.error("a miss goes upstream without its ledger note: %s", exc.message)
            return hold

        return Sent(await run_in_threadpool(admit), row)

    def _release(self, sent: Sent | None) -> None:
        if sent is not None and sent.hold is not None and self.budgets is not None:
            self.budgets.release(sent.hold)

    def _abandon(self, sent: Sent | None, exc: BaseException) -> None:
        """Record a miss that left upstream with no answer and no error from there (its task
        was cancelled, or a bug), as the process dying would have: at its bound. A row the
        request already has wins. On the calling thread: a cancelled task cannot await."""
        if sent is None:
            return
        what = "it was cancelled"
        if isinstance(exc, Exception):
            what = f"it failed on an internal error ({exc!r})"
        row = replace(sent.interrupted, error=interrupted(what))
        try:
            for written, row_id in self.ledger.record_new([row]):
                if self.budgets is not None:
                    self.budgets.on_row(written, row_id)
                if self.metrics is not None:
                    self.metrics.observe_row(written)
        except StorageError as exc_:
            self._row_lost(row, exc_)
        except Exception:
            logger.exception("could not record an abandoned miss in the ledger")

    def _observe_upstream(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_upstream(time.perf_counter() - started)

    # -- ledger ---------------------------------------------------------------------------

    def _cut_short(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        assembler: MessageAssembler,
        why: str,
    ) -> Answer:
        """What a stream that ended early consumed, for the ledger: upstream bills the tokens
        it processed whether or not the stream ended. The prompt's counts are exact (upstream
        reports them in `message_start`); the output is estimated from the text relayed."""
        model = route.model if route is not None else prepared.model_requested
        partial = assembler.partial
        usage = consumed_usage(partial, model) if partial is not None else None
        charge = self.prices.charge(
            usage,
            baseline_model=prepared.baseline_model,
            model_used=model,
            cache_ttl=self.settings.prompt_caching.ttl,
        )
        counts = {} if usage is None else usage_counts(usage)
        if usage is not None:
            why += f"; {usage.output_tokens} output tokens estimated from the text relayed"
        return Answer("error", {"usage": counts}, model, charge, why)

    async def record(
        self,
        prepared: Prepared,
        answer: Answer,
        *,
        status: int,
        route: RouteDecision | None = None,
        levers: Levers | None = None,
    ) -> None:
        row = self._ledger_row(prepared, answer, status=status, route=route, levers=levers)
        try:
            await run_in_threadpool(self._write_row, row)
        except StorageError as exc:
            self._row_lost(row, exc)
        if self.metrics is not None:
            self.metrics.observe_row(row)

    def _record_now(self, row: LedgerRow) -> None:
        """`record` on the calling thread, for code that can no longer await."""
        try:
            self._write_row(row)
        except StorageError as exc:
            self._row_lost(row, exc)
        except Exception:
            logger.exception("could not record a stream cut short in the ledger")
            return
        if self.metrics is not None:
            self.metrics.observe_row(row)

    @staticmethod
    def _row_lost(row: LedgerRow, exc: StorageError) -> None:
        # The answer is on its way (and a miss is paid for): losing the ledger must not lose
        # it too. The whole row goes to the log, to be added back by hand.
        logger.error("ledger row not written (%s): %s", exc.message, json.dumps(asdict(row)))

    def _ledger_row(
        self,
        prepared: Prepared,
        answer: Answer,
        *,
        status: int,
        route: RouteDecision | None = None,
        levers: Levers | None = None,
    ) -> LedgerRow:
        usage = answer.message.get("usage") or {}
        hit = answer.kind.startswith("hit-")
        return LedgerRow(
            ts=self._clock(),
            request_id=prepared.request_id,
            tenant=prepared.tenant,
            namespace=prepared.keys.namespace.split("/", 1)[1],
            feature=prepared.controls.feature,
            kind=answer.kind,
            model_requested=prepared.model_requested,
            model_used=answer.model_used,
            route_tier=route.tier if route is not None and route.routed else None,
            route_reasons="; ".join(route.reasons) if route is not None and route.routed else None,
            input_tokens=0 if hit else int(usage.get("input_tokens") or 0),
            output_tokens=0 if hit else int(usage.get("output_tokens") or 0),
            cache_creation_tokens=0 if hit else int(usage.get("cache_creation_input_tokens") or 0),
            cache_read_tokens=0 if hit else int(usage.get("cache_read_input_tokens") or 0),
            similarity=answer.similarity,
            latency_ms=(time.perf_counter() - prepared.started) * 1000,
            entry_id=answer.entry_id,
            status=status,
            context_tokens_removed=levers.context_tokens_removed if levers else 0,
            whitespace_tokens_saved=levers.whitespace_tokens_saved if levers else 0,
            cache_breakpoints=levers.cache_breakpoints if levers else 0,
            task=prepared.controls.task,
            max_tokens=prepared.keys.max_tokens,
            error=answer.reason if answer.kind == "error" else None,
            **asdict(answer.charge),
        )

    async def record_error(
        self, prepared: Prepared, exc: PromptCacheError, route: RouteDecision | None
    ) -> None:
        charge = self.prices.charge(
            None, baseline_model=prepared.baseline_model, model_used=prepared.model_requested
        )
        model = route.model if route is not None else prepared.model_requested
        answer = Answer("error", {}, model, charge, exc.message)
        try:
            await self.record(prepared, answer, status=exc.status, route=route)
        except Exception:  # the ledger must not turn an upstream error into a 500
            logger.exception("could not record an error in the ledger")


def consumed_usage(partial: Mapping[str, Any], model: str) -> Usage:
    """The counts `message_start` reported (the prompt's, exact), with the output raised to
    the estimate of the content relayed so far."""
    try:
        reported = usage_from_message(partial)
    except InvalidRequest:
        reported = Usage()
    relayed = estimate_output_tokens(partial.get("content") or [], model)
    return replace(reported, output_tokens=max(reported.output_tokens, relayed))


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
