"""The proxy's books: what each request costs and where that is written.

Every answer writes one ledger row (`record`), an upstream error too (`record_error`), and a
stream that ended early is billed for what it consumed (`cut_short`). Before a miss goes
upstream, `send_off` checks the budgets and holds its cost bound, and notes in the ledger, at
that bound, that it is upstream: if the process dies before the answer's row is written, the
next start bills the note (`Ledger.settle_interrupted`). A row the ledger refuses takes its
request's note's place, to be written at the next start. The proxy decides what happens to a
request; this decides what it costs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.budgets import BudgetBook, Hold, request_bound_micros
from service.config import Settings
from service.errors import InvalidRequest, PromptCacheError, StorageError, UnreadableAnswer
from service.ledger import Ledger, LedgerRow
from service.metrics import Metrics
from service.pricing import PriceTable, Usage, usage_counts, usage_from_message
from service.proxy_types import Answer, Levers, Prepared
from service.router import RouteDecision
from service.sse import MessageAssembler
from service.tokens import estimate_output_tokens

logger = logging.getLogger(__name__)


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


class ProxyBooks:
    """Ledger rows, budget holds and upstream notes for the proxy's requests."""

    def __init__(
        self,
        settings: Settings,
        prices: PriceTable,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        metrics: Metrics | None,
        budgets: BudgetBook | None,
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.ledger = ledger
        self.metrics = metrics
        self.budgets = budgets
        self._clock = clock
        # Rows neither the ledger nor its note table took (a full disk): retried with each
        # row written later, and logged whole if the service stops before they are written.
        self._unwritten: list[LedgerRow] = []
        self._unwritten_lock = threading.Lock()

    def _write_row(self, row: LedgerRow) -> None:
        """Write `row`, or, if the ledger refuses it, keep it in place of its request's note
        (written at the next start, `Ledger.settle_interrupted`), or else log it whole. The
        answer is on its way (and a miss is paid for): losing the ledger must not lose it."""
        try:
            row_id: int | None = self.ledger.record(row)
        except StorageError as exc:
            row_id = None  # counted now; the sums re-read the ledger at the next start
            try:
                self.ledger.note_upstream(row)
                logger.error(
                    "ledger row of request %s not written (%s): kept, and written when the "
                    "service next starts",
                    row.request_id,
                    exc.message,
                )
            except StorageError:
                with self._unwritten_lock:
                    self._unwritten.append(row)
                logger.error(
                    "ledger row of request %s not written (%s): held, and written with the "
                    "next row the ledger takes",
                    row.request_id,
                    exc.message,
                )
        else:
            self._write_held()
        if self.budgets is not None:  # a held row counts against the budgets all the same
            self.budgets.on_row(row, row_id)

    @property
    def held_rows(self) -> int:
        """Rows the ledger refused that wait, in memory, for it to take rows again."""
        with self._unwritten_lock:
            return len(self._unwritten)

    def _write_held(self) -> None:
        """Write the held rows now that the ledger takes rows again (a request id it holds
        already is skipped, so a row is never billed twice)."""
        with self._unwritten_lock:
            held, self._unwritten = self._unwritten, []
        if not held:
            return
        try:
            self.ledger.record_new(held)
        except StorageError:
            with self._unwritten_lock:
                self._unwritten[:0] = held
            return
        logger.warning("wrote %d held ledger row(s)", len(held))

    def close(self) -> None:
        """At shutdown: one last try for the held rows, then each one the ledger still
        refuses goes to the log whole, so that the books can be mended by hand."""
        self._write_held()
        with self._unwritten_lock:
            held, self._unwritten = self._unwritten, []
        for row in held:
            logger.error("ledger row not written, to be added by hand: %s", json.dumps(asdict(row)))

    async def send_off(
        self,
        prepared: Prepared,
        route: RouteDecision | None,
        upstream_request: dict[str, Any],
        levers: Levers,
    ) -> Sent:
        """Refuse a miss that could push a budget past its limit (hits never get here), or
        hold its cost bound until `release` (after its row is recorded); and note in the
        ledger, at that bound, that it is upstream, in case the process dies first."""
        model = str(upstream_request["model"])
        bound = request_bound_micros(self.prices, model, upstream_request)
        charge = self.prices.charge(None, baseline_model=model, model_used=model)
        # Baseline = cost: a request that gave no answer claims no saving. An unknown model
        # has no bound, and is listed as unpriced rather than free.
        charge = replace(charge, cost_micros=bound, baseline_micros=bound, priced=bound > 0)
        answer = Answer("error", {}, model, charge, interrupted("the service stopped"))
        row = self.row(prepared, answer, status=0, route=route, levers=levers)

        def admit() -> Hold | None:
            hold = None
            if self.budgets is not None:
                hold = self.budgets.hold_before_miss(
                    prepared.tenant,
                    prepared.controls.feature,
                    bound,
                    model=model if self.prices.get(model) is None else None,
                )
            try:
                self.ledger.note_upstream(row)
            except StorageError as exc:  # the answer matters more than the note
                logger.error("a miss goes upstream without its ledger note: %s", exc.message)
            return hold

        return Sent(await run_in_threadpool(admit), row)

    def release(self, sent: Sent | None) -> None:
        if sent is not None and sent.hold is not None and self.budgets is not None:
            self.budgets.release(sent.hold)

    def abandon(self, sent: Sent | None, exc: BaseException) -> None:
        """Record a miss that left upstream with no answer and no error from there (its task
        was cancelled, or a bug) or with an answer no one can read, as the process dying
        would have: at its bound. A row the
        request already has wins. On the calling thread: a cancelled task cannot await."""
        if sent is None:
            return
        if isinstance(exc, UnreadableAnswer):
            error = (
                f"{exc.message}; upstream answered 200, so it billed this request: the cost "
                "is the request's upper bound (the whole prompt and max_tokens of output), "
                "the token counts unknown"
            )
            row = replace(sent.interrupted, status=exc.status, error=error)
        else:
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
        except StorageError as exc_:  # its note stays: the next start writes that
            logger.error("abandoned miss %s not recorded: %s", row.request_id, exc_.message)
        except Exception:
            logger.exception("could not record an abandoned miss in the ledger")

    def cut_short(
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
        row = self.row(prepared, answer, status=status, route=route, levers=levers)
        await run_in_threadpool(self._write_row, row)
        if self.metrics is not None:
            self.metrics.observe_row(row)

    def record_now(self, row: LedgerRow) -> None:
        """`record` on the calling thread, for code that can no longer await."""
        try:
            self._write_row(row)
        except Exception:
            logger.exception("could not record a stream cut short in the ledger")
            return
        if self.metrics is not None:
            self.metrics.observe_row(row)

    def row(
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
