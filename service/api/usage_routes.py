"""Usage HTTP API: the usage report (`GET /v1/usage/report`), the budgets now
(`GET /v1/budgets`) and alerts (`GET /v1/alerts`).

A client key sees its own tenant's report only; an admin key sees every tenant, or one with
`?tenant=`. A client key sees the budgets that can refuse its requests (global, its tenant's,
every feature's: a refusal's message names the same figures). Alerts are admin-only. All
three read the ledger in a worker thread. The router reads `request.app.state.promptcache`,
which must have the attributes of `UsageState`.
"""

from __future__ import annotations

import time
from typing import Protocol

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service.alerts import ALERT_KINDS, AlertCenter, alert_json
from service.api.auth import KeyRing, require_admin
from service.api.errors import JSONBytes
from service.budgets import BudgetBook, can_refuse, status_json
from service.config import Settings
from service.errors import InvalidRequest, PermissionDenied
from service.ledger import Ledger
from service.reports import build_report, report_json, resolve_period

router = APIRouter()


class UsageState(Protocol):
    """What these routes need from the app state (`service.api.state.AppState`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def alerts(self) -> AlertCenter: ...
    @property
    def budgets(self) -> BudgetBook: ...


def _state(request: Request) -> UsageState:
    state: UsageState = request.app.state.promptcache
    return state


@router.get("/v1/usage/report")
async def usage_report(
    request: Request,
    day: str | None = Query(default=None, description="YYYY-MM-DD (default: today)"),
    month: str | None = Query(default=None, description="YYYY-MM"),
    tenant: str | None = Query(default=None, description="admin only: one tenant"),
    tz: str | None = Query(default=None, description="IANA zone (default: configured)"),
) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    if not principal.is_admin:
        if tenant is not None and tenant != principal.tenant:
            raise PermissionDenied("a client key can only read its own tenant's report")
        tenant = principal.tenant
    period = resolve_period(day, month, tz or state.settings.timezone, time.time())
    report = await run_in_threadpool(
        build_report, state.ledger, period, tenant, state.settings.proxy.task_max_tokens
    )
    return JSONBytes(report_json(report))


@router.get("/v1/budgets")
async def list_budgets(request: Request) -> JSONBytes:
    state = _state(request)
    principal = state.keyring.authenticate(request)
    shown = {
        budget.name
        for budget in state.budgets.budgets
        if principal.is_admin or can_refuse(budget, principal.tenant)
    }
    statuses = await run_in_threadpool(state.budgets.status)
    return JSONBytes({"budgets": [status_json(s) for s in statuses if s.name in shown]})


@router.get("/v1/alerts")
async def list_alerts(
    request: Request,
    limit: int = Query(default=50, ge=1, le=1000),
    kind: str | None = Query(default=None, description="only alerts of this kind"),
) -> JSONBytes:
    state = _state(request)
    require_admin(state.keyring.authenticate(request))
    if kind is not None and kind not in ALERT_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}")
    found = await run_in_threadpool(state.alerts.recent, limit, kind=kind)
    return JSONBytes({"alerts": [alert_json(alert) for alert in found]})
