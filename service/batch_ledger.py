"""The ledger rows a Message Batch writes, shaped as `Proxy.record` shapes its own.

Leaders are billed at the batch price (`batch`), duplicates that took a leader's answer as
hits, and results that errored, expired or were canceled as `error` rows that cost nothing.
Upstream's token counts are kept for upstream answers only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from service.batch_store import BatchRecord, DupKind, RequestRow, failure_status
from service.errors import InvalidRequest
from service.ledger import Kind, LedgerRow
from service.pricing import Charge, PriceTable, Usage, usage_from_message
from service.proxy_types import Prepared


class BatchRows:
    def __init__(self, prices: PriceTable, clock: Callable[[], float]) -> None:
        self._prices = prices
        self._clock = clock

    def charge(
        self,
        prepared: Prepared,
        message: Mapping[str, Any] | None,
        *,
        batch: bool = False,
        hit: DupKind | None = None,
    ) -> Charge:
        usage = message_usage(message) if message is not None else None
        model = str((message or {}).get("model") or prepared.model_requested)
        return self._prices.charge(
            usage, baseline_model=prepared.baseline_model, model_used=model, hit=hit, batch=batch
        )

    def answered(
        self,
        record: BatchRecord,
        prepared: Prepared,
        row: RequestRow,
        message: dict[str, Any],
        entry_id: int | None,
    ) -> LedgerRow:
        charge = self.charge(prepared, message, batch=True)
        model = str(message.get("model") or (row.upstream_params or {}).get("model"))
        usage = message.get("usage")
        return self._row(
            record, prepared, "batch", model, charge, usage=usage, entry_id=entry_id, route=row
        )

    def hit(
        self,
        record: BatchRecord,
        prepared: Prepared,
        row: RequestRow,
        message: dict[str, Any],
        entry_id: int | None,
    ) -> LedgerRow:
        kind = row.dup_kind or "exact"
        charge = self.charge(prepared, message, hit=kind)
        model = str(message.get("model") or prepared.model_requested)
        ledger_kind: Kind = "hit-exact" if kind == "exact" else "hit-semantic"
        return self._row(
            record,
            prepared,
            ledger_kind,
            model,
            charge,
            similarity=row.similarity,
            entry_id=entry_id,
        )

    def failed(
        self, record: BatchRecord, prepared: Prepared, row: RequestRow, result: dict[str, Any]
    ) -> LedgerRow:
        status, text = failure_status(result)
        model = str((row.upstream_params or {}).get("model") or prepared.model_requested)
        charge = self.charge(prepared, None)
        return self._row(
            record, prepared, "error", model, charge, status=status, route=row, error=text
        )

    def _row(
        self,
        record: BatchRecord,
        prepared: Prepared,
        kind: Kind,
        model_used: str,
        charge: Charge,
        *,
        usage: Any = None,
        status: int = 200,
        similarity: float | None = None,
        entry_id: int | None = None,
        route: RequestRow | None = None,
        error: str | None = None,
    ) -> LedgerRow:
        """One ledger row, shaped as `Proxy.record` shapes them (tokens only for upstream)."""
        tokens: Mapping[str, Any] = usage if isinstance(usage, Mapping) else {}
        now = self._clock()
        return LedgerRow(
            ts=now,
            request_id=prepared.request_id,
            tenant=record.tenant,
            namespace=prepared.keys.namespace.split("/", 1)[1],
            feature=record.controls.feature,
            kind=kind,
            model_requested=prepared.model_requested,
            model_used=model_used,
            route_tier=route.route_tier if route is not None else None,
            route_reasons=route.route_reasons if route is not None else None,
            input_tokens=int(tokens.get("input_tokens") or 0),
            output_tokens=int(tokens.get("output_tokens") or 0),
            cache_creation_tokens=int(tokens.get("cache_creation_input_tokens") or 0),
            cache_read_tokens=int(tokens.get("cache_read_input_tokens") or 0),
            similarity=similarity,
            latency_ms=max(0.0, (now - record.created_at) * 1000),
            entry_id=entry_id,
            status=status,
            error=error,
            # As the proxy's rows: the report's max_tokens opportunities read these two.
            task=record.controls.task,
            max_tokens=prepared.keys.max_tokens,
            **asdict(charge),
        )


def message_usage(message: Mapping[str, Any]) -> Usage | None:
    try:
        return usage_from_message(message)
    except InvalidRequest:  # a message without usage prices as nothing rather than failing
        return None
