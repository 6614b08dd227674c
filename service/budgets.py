"""Spending budgets: refuse a miss that would pass a budget, alert when a threshold is crossed.

A budget (`[[budgets]]` in the settings) caps what promptcache pays upstream in a calendar day
or month, local to `Settings.timezone`, for everything (`global`), one tenant (`tenant:NAME`)
or one feature label (`feature:NAME`, the `x-promptcache-feature` header). The spend is the
ledger's `cost_micros` over the period, so it survives restarts and counts every process that
writes the same ledger; the book keeps each budget's sum in memory, re-derived from the ledger
at start and whenever a period begins, and advanced by `on_row` as rows are recorded.

Before a miss goes upstream the proxy asks `check_before_miss` with an upper bound of what the
request can cost (`estimate_miss_micros`: its prompt tokens plus `max_tokens` of output), so
one request cannot carry a budget past its hard limit by more than that bound. Hits cost
nothing and are never refused. Concurrent misses are checked one by one against the recorded
spend, so together they can pass the limit by the sum of their bounds. Rows recorded by other
processes on the same ledger are counted at the next period or `refresh()`.

Alerts: the highest threshold crossed in a period raises one `budget_threshold` alert, the
first refusal (or a spend past the hard limit) one `budget_exceeded`; `service.alerts` dedupes
them in SQLite. Methods block on SQLite now and then (a new period, an alert): call them from a
worker thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from service.alerts import AlertSink
from service.config import BudgetSettings, Settings
from service.errors import ConfigError, InvalidRequest, RateLimited, StorageError, Unprocessable
from service.ledger import Ledger, LedgerRow
from service.periods import day_window, month_window, zone
from service.pricing import CacheTtl, PriceTable, Usage, format_usd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetStatus:
    """One budget now: spend in the current period against its amount (`limit_micros`).

    `fraction` = spent / limit; `hard_limit_micros` is where misses are refused (None: never);
    `held_micros` is what requests in flight (misses, batches upstream) may still add, which
    the next miss is checked against too; `resets_at` is the end of the period as ISO 8601 in
    the configured zone.
    """

    name: str
    scope: str
    period: str
    period_key: str
    spent_micros: int
    limit_micros: int
    hard_limit_micros: int | None
    fraction: float
    resets_at: str
    held_micros: int = 0


@dataclass(frozen=True)
class _Window:
    key: str  # "2026-03-10" or "2026-03": the alert period and the cache key
    start_ts: float
    end_ts: float


@dataclass
class _Sum:
    window: _Window
    micros: int
    through_id: int


# A hold that is never released (a stream whose response never started) stops counting
# after this long; a real miss ends well before (the upstream timeout is minutes).
HOLD_SECONDS = 900.0


@dataclass(frozen=True)
class Hold:
    """A miss's cost bound, held against the budgets it may spend until its row is in the
    ledger (`BudgetBook.release`)."""

    periods: tuple[tuple[str, str], ...]  # (budget name, period key)
    micros: int
    expires: float


def _micros(usd: float) -> int:
    # Through the decimal text, so 0.1 dollars is 100_000 micros and not 99_999.
    return int((Decimal(repr(usd)) * 1_000_000).to_integral_value())


def _usd(micros: int) -> str:
    return f"${format_usd(micros)}"


def estimate_miss_micros(
    prices: PriceTable,
    model: str,
    input_tokens: int,
    max_tokens: int,
    *,
    prompt_cache_ttl: CacheTtl | None = None,
) -> int:
    """An upper bound of what a miss can cost: `input_tokens` in, `max_tokens` out.

    With `prompt_cache_ttl` (the request carries `cache_control` markers) every prompt token
    is priced as a cache write at that TTL, the dearest way it can be billed. An unknown
    model gives 0: it cannot be priced, and the ledger records it as unpriced.
    """
    if input_tokens < 0 or max_tokens < 0:
        raise InvalidRequest("token counts for a cost estimate must not be negative")
    if prompt_cache_ttl is None:
        usage = Usage(input_tokens=input_tokens, output_tokens=max_tokens)
    else:
        usage = Usage(
            output_tokens=max_tokens,
            cache_creation_input_tokens=input_tokens,
            cache_creation_5m_input_tokens=input_tokens if prompt_cache_ttl == "5m" else 0,
            cache_creation_1h_input_tokens=input_tokens if prompt_cache_ttl == "1h" else 0,
        )
    plain = prices.cost(model, Usage(input_tokens=input_tokens, output_tokens=max_tokens))
    return max(plain.micros, prices.cost(model, usage).micros)


def prompt_token_bound(request: Mapping[str, Any]) -> int:
    """At least the prompt tokens of a Messages request: the UTF-8 bytes of its prompt parts.

    Every token spans at least one byte of text, so this over-counts (about 4x for English)
    but never under-counts, which is what a budget check needs.
    """
    parts = {k: request[k] for k in ("system", "messages", "tools") if k in request}
    return len(json.dumps(parts, ensure_ascii=False, default=str).encode("utf-8"))


def _cache_ttls(value: Any) -> set[str]:
    """The TTLs of every `cache_control` marker in a request part ("5m" when none is given)."""
    found: set[str] = set()
    if isinstance(value, dict):
        marker = value.get("cache_control")
        if isinstance(marker, dict):
            found.add("1h" if marker.get("ttl") == "1h" else "5m")
        for item in value.values():
            found |= _cache_ttls(item)
    elif isinstance(value, list):
        for item in value:
            found |= _cache_ttls(item)
    return found


def request_bound_micros(prices: PriceTable, model: str, request: Mapping[str, Any]) -> int:
    """`estimate_miss_micros` for a Messages request as it goes upstream to `model`.

    Prompt tokens from `prompt_token_bound`, output from `max_tokens`, and cache writes at the
    longest TTL the request's `cache_control` markers ask for.
    """
    parts = ("system", "messages", "tools", "cache_control")  # a top-level marker counts too
    ttls = _cache_ttls({k: request[k] for k in parts if k in request})
    ttl: CacheTtl | None = "1h" if "1h" in ttls else "5m" if ttls else None
    max_tokens = request.get("max_tokens")
    output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
    return estimate_miss_micros(
        prices, model, prompt_token_bound(request), output, prompt_cache_ttl=ttl
    )


def _matches(budget: BudgetSettings, tenant: str, feature: str | None) -> bool:
    kind, _, name = budget.scope.partition(":")
    if kind == "tenant":
        return name == tenant
    if kind == "feature":
        return name == feature
    return True


def can_refuse(budget: BudgetSettings, tenant: str) -> bool:
    """Whether `budget` counts some of `tenant`'s requests (every feature budget may)."""
    kind, _, name = budget.scope.partition(":")
    return kind != "tenant" or name == tenant


def status_json(status: BudgetStatus) -> dict[str, Any]:
    """A status as JSON-ready values; money both as exact micros and as USD numbers."""
    hard = status.hard_limit_micros
    return {
        "name": status.name,
        "scope": status.scope,
        "period": status.period,
        "period_key": status.period_key,
        "spent_usd": status.spent_micros / 1_000_000,
        "held_usd": status.held_micros / 1_000_000,
        "limit_usd": status.limit_micros / 1_000_000,
        "hard_limit_usd": None if hard is None else hard / 1_000_000,
        "fraction": status.fraction,
        "resets_at": status.resets_at,
        "spent_micros": status.spent_micros,
        "held_micros": status.held_micros,
        "limit_micros": status.limit_micros,
        "hard_limit_micros": hard,
    }


class BudgetBook:
    """The configured budgets, their spend from the ledger, and the checks on them.

    Safe to share between threads. `clock` gives UTC epoch seconds (tests freeze it).
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        clock: Callable[[], float] = time.time,
        *,
        alerts: AlertSink | None = None,
    ) -> None:
        self._budgets: tuple[BudgetSettings, ...] = settings.budgets
        self._tz = settings.timezone
        try:
            self._zone = zone(self._tz)
        except InvalidRequest as exc:
            raise ConfigError(f"invalid setting timezone: {exc.message}") from exc
        self._ledger = ledger
        self._clock = clock
        self._alerts = alerts
        self._lock = threading.Lock()
        self._sums: dict[str, _Sum] = {}
        # Bounds of misses still in flight: without them, concurrent misses that each fit
        # would all pass the check before any of them is recorded.
        self._holds: dict[int, Hold] = {}
        # Spend sent upstream and not yet recorded, from elsewhere (batches in flight): each
        # item is (tenant, feature, micros).
        self._pending: Callable[[], Iterable[tuple[str, str | None, int]]] | None = None
        self._raised: set[tuple[str, str, str]] = set()  # (budget, period key, subject)
        with self._lock:
            for budget in self._budgets:
                self._check(budget, self._current(budget))

    @property
    def budgets(self) -> tuple[BudgetSettings, ...]:
        return self._budgets

    # -- periods and sums --------------------------------------------------------------------

    def _window(self, budget: BudgetSettings, now: float) -> _Window:
        local = datetime.fromtimestamp(now, self._zone)
        if budget.period == "daily":
            start, end = day_window(local.date(), self._tz)
            return _Window(local.date().isoformat(), start, end)
        start, end = month_window(local.year, local.month, self._tz)
        return _Window(f"{local.year:04d}-{local.month:02d}", start, end)

    def _current(self, budget: BudgetSettings) -> _Sum:
        """This period's sum, from the cache or (new period, first use) from the ledger."""
        window = self._window(budget, self._clock())
        cached = self._sums.get(budget.name)
        if cached is not None and cached.window == window:
            return cached
        kind, _, name = budget.scope.partition(":")
        spend = self._ledger.spent(
            window.start_ts,
            window.end_ts,
            tenant=name if kind == "tenant" else None,
            feature=name if kind == "feature" else None,
        )
        fresh = _Sum(window, spend.micros, spend.through_id)
        self._sums[budget.name] = fresh
        self._raised = {m for m in self._raised if m[0] != budget.name or m[1] == window.key}
        return fresh

    def _status(self, budget: BudgetSettings, current: _Sum, held: int = 0) -> BudgetStatus:
        limit = _micros(budget.amount_usd)
        hard = None if budget.alert_only else _micros(budget.amount_usd * budget.hard_limit)
        resets = datetime.fromtimestamp(current.window.end_ts, self._zone).isoformat()
        return BudgetStatus(
            name=budget.name,
            scope=budget.scope,
            period=budget.period,
            period_key=current.window.key,
            spent_micros=current.micros,
            limit_micros=limit,
            hard_limit_micros=hard,
            fraction=current.micros / limit,
            resets_at=resets,
            held_micros=held,
        )

    # -- the seams the proxy calls ---------------------------------------------------------

    def check_before_miss(
        self,
        tenant: str,
        feature: str | None,
        estimate_micros: int,
        *,
        then: Callable[[], None] | None = None,
        unpriced: str | None = None,
    ) -> None:
        """Raise `RateLimited` (`budget_exceeded`, 429) if this miss could pass a hard limit.

        Refused when the period's spend, plus the bounds other misses hold, plus
        `estimate_micros` would pass `amount * hard_limit` of any budget whose scope matches,
        or when the spend already reached it. `then` runs once admitted, before any other
        check: where it registers the spend with `count_pending`'s source, two concurrent
        checks cannot both count on the same headroom. `unpriced`: as `hold_before_miss`'s
        `model`.
        """
        self._admit(tenant, feature, estimate_micros, hold=False, then=then, unpriced=unpriced)

    def hold_before_miss(
        self, tenant: str, feature: str | None, estimate_micros: int, *, model: str | None = None
    ) -> Hold:
        """`check_before_miss`, then hold `estimate_micros` against the matching budgets
        until `release`: call that once the miss's row is recorded (or it failed).

        `model`: the model the miss goes to, when the price table does not know it. Its cost
        cannot be bounded, so a budget with a hard limit refuses it (`Unprocessable`, naming
        the model and the fix) rather than let it pass at an estimate of zero."""
        return self._admit(tenant, feature, estimate_micros, hold=True, unpriced=model)

    def count_pending(self, source: Callable[[], Iterable[tuple[str, str | None, int]]]) -> None:
        """Count `source`'s spend in flight like a hold (the batch service's requests sent
        upstream, whose rows land when their results do)."""
        self._pending = source

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._holds.pop(id(hold), None)

    def _held(self, budget: BudgetSettings, period: tuple[str, str], now: float) -> int:
        """What misses in flight hold against one budget's period (lock held)."""
        for key in [k for k, h in self._holds.items() if h.expires <= now]:
            del self._holds[key]
        held = sum(h.micros for h in self._holds.values() if period in h.periods)
        if self._pending is not None:
            held += sum(m for t, f, m in self._pending() if _matches(budget, t, f))
        return held

    def _admit(
        self,
        tenant: str,
        feature: str | None,
        estimate_micros: int,
        *,
        hold: bool,
        then: Callable[[], None] | None = None,
        unpriced: str | None = None,
    ) -> Hold:
        periods: list[tuple[str, str]] = []
        with self._lock:
            for budget in self._budgets:
                if not _matches(budget, tenant, feature):
                    continue
                current = self._current(budget)
                if budget.alert_only:  # never refuses; the hold only shows in its status
                    periods.append((budget.name, current.window.key))
                    continue
                if unpriced is not None:
                    raise Unprocessable(
                        f"model {unpriced!r} has no price, so budget {budget.name!r} "
                        f"({budget.scope}) cannot bound what this request costs: add the model "
                        "to the price file (prices_file) or make the budget alert_only"
                    )
                status = self._status(budget, current)
                hard = status.hard_limit_micros
                assert hard is not None
                held = self._held(budget, (budget.name, current.window.key), self._clock())
                if current.micros < hard and current.micros + held + estimate_micros <= hard:
                    periods.append((budget.name, current.window.key))
                    continue
                unit = "day" if budget.period == "daily" else "month"
                limit = _usd(hard)
                if budget.hard_limit != 1:
                    limit += f" ({budget.hard_limit:g} x {_usd(status.limit_micros)})"
                in_flight = f" (and {_usd(held)} held by requests in flight)" if held else ""
                message = (
                    f"budget {budget.name!r} ({budget.scope}, {budget.period}) would be "
                    f"exceeded: spent {_usd(current.micros)}{in_flight} of its {limit} limit "
                    f"this {unit}, and this request may cost up to {_usd(estimate_micros)}; "
                    f"it resets at {status.resets_at}"
                )
                self._raise(
                    budget,
                    current.window.key,
                    "budget_exceeded",
                    message,
                    value=(current.micros + held + estimate_micros) / status.limit_micros,
                    threshold=float(budget.hard_limit),
                    subject=budget.name,
                )
                raise RateLimited(message, error_type="budget_exceeded")
            held_now = Hold(tuple(periods), estimate_micros, self._clock() + HOLD_SECONDS)
            if hold:
                self._holds[id(held_now)] = held_now
            if then is not None:
                then()
        return held_now

    def on_row(self, row: LedgerRow, row_id: int | None = None) -> None:
        """Count a row just recorded in the ledger (`row_id`: what `Ledger.record` returned).

        A row the cached sum already saw (id at most its `through_id`) is not counted twice.
        Never raises: the answer is already given; a ledger that cannot be read is logged and
        the sum is re-derived on the next call.
        """
        if row.cost_micros == 0:
            return
        try:
            self._count(row, row_id)
        except StorageError:
            logger.exception("budget sums could not be updated; re-deriving on next use")
            with self._lock:
                self._sums.clear()

    def _count(self, row: LedgerRow, row_id: int | None) -> None:
        with self._lock:
            for budget in self._budgets:
                if not _matches(budget, row.tenant, row.feature):
                    continue
                current = self._current(budget)
                seen = row_id is not None and row_id <= current.through_id
                in_window = current.window.start_ts <= row.ts < current.window.end_ts
                if seen or not in_window:
                    continue
                # through_id stays: rows from other threads may still come, with lower ids.
                current.micros += row.cost_micros
                self._check(budget, current)

    def refresh(self) -> None:
        """Re-derive every sum from the ledger, to count rows other processes recorded."""
        with self._lock:
            self._sums.clear()
            for budget in self._budgets:
                self._check(budget, self._current(budget))

    def status(self) -> list[BudgetStatus]:
        """Every budget's spend in its current period, and what requests in flight hold
        against it, in configuration order."""
        with self._lock:
            now = self._clock()
            found = []
            for budget in self._budgets:
                current = self._current(budget)
                held = self._held(budget, (budget.name, current.window.key), now)
                found.append(self._status(budget, current, held))
            return found

    # -- alerts ----------------------------------------------------------------------------

    def _check(self, budget: BudgetSettings, current: _Sum) -> None:
        """Raise the highest threshold crossed (once per period), and a passed hard limit."""
        status = self._status(budget, current)
        crossed = [t for t in budget.thresholds if status.fraction >= t]
        if crossed:
            top = max(crossed)
            self._raise(
                budget,
                current.window.key,
                "budget_threshold",
                f"budget {budget.name!r} ({budget.scope}, {budget.period}) has reached "
                f"{status.fraction:.0%} of {_usd(status.limit_micros)} "
                f"(threshold {top:.0%}): spent {_usd(current.micros)} this "
                f"{'day' if budget.period == 'daily' else 'month'}; "
                f"resets at {status.resets_at}",
                value=status.fraction,
                threshold=top,
                subject=f"{budget.name}@{top:g}",
            )
        hard = status.hard_limit_micros
        if hard is not None and current.micros > hard:
            self._raise(
                budget,
                current.window.key,
                "budget_exceeded",
                f"budget {budget.name!r} ({budget.scope}, {budget.period}) is past its hard "
                f"limit: spent {_usd(current.micros)} of {_usd(hard)}; misses are refused "
                f"until {status.resets_at}",
                value=status.fraction,
                threshold=float(budget.hard_limit),
                subject=budget.name,
            )

    def _raise(
        self,
        budget: BudgetSettings,
        period_key: str,
        kind: str,
        message: str,
        *,
        value: float,
        threshold: float,
        subject: str,
    ) -> None:
        marker = (budget.name, period_key, f"{kind}:{subject}")
        if self._alerts is None or marker in self._raised:
            return
        # Remember before raising: a failing alert store must not be retried on every request.
        self._raised.add(marker)
        try:
            self._alerts.raise_alert(
                kind, budget.scope, period_key, message, value, threshold, subject=subject
            )
        except Exception:  # an alert that cannot be stored must not fail the request
            logger.exception("could not raise %s alert for budget %r", kind, budget.name)
