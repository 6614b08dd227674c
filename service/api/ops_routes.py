"""Operator endpoints: Prometheus `/metrics` and the dashboard page with its data.

`/metrics` shows tenant names, models and spend (never keys or prompts). It is open while no
client key is configured (one team, loopback), as scrapers expect; once client keys exist it
needs an admin key, or every tenant could read every other's spend (Prometheus sends one with
`authorization: {credentials: KEY}`). The dashboard is admin only. Scripts send the admin
key as a header like every other admin call. A browser cannot, so
`GET /dashboard?key=ADMIN_KEY` checks the key, sets a cookie and redirects to the bare
`/dashboard`. The cookie holds no key: it is `expiry.HMAC(admin key, expiry)`, valid for
12 hours and only for `/dashboard*` (HttpOnly, SameSite=Strict, Secure over https), and it dies
when that key is removed from the config. The risk left: the key travels once in a URL, so it
lands in the browser history and in access logs that record query strings (uvicorn's does).
Treat such logs as secret, or use the header from a script.

What the routes read from `app.state.promptcache`: `keyring`, `settings` (`timezone`,
`auth.keys`), `proxy.ledger`, `metrics`; and, when present, `clock` (epoch seconds),
`budget_statuses` and `recent_alerts` (callables, see `service.dashboard`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from service.api.auth import Principal, require_admin
from service.api.errors import JSONBytes
from service.dashboard import (
    MAX_DAYS,
    Alerts,
    BudgetStatuses,
    dashboard_data,
    no_alerts,
    no_budgets,
)
from service.errors import AuthenticationFailed, NotFound, PermissionDenied
from service.metrics import CONTENT_TYPE, Metrics

router = APIRouter()

COOKIE = "promptcache_dashboard"
COOKIE_PATH = "/dashboard"
COOKIE_TTL_SECONDS = 12 * 3600
_STATIC = Path(__file__).with_name("static")
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# Everything the page loads comes from this origin; no inline script or style is allowed.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


@dataclass(frozen=True)
class _Sources:
    keyring: Any
    settings: Any
    ledger: Any
    metrics: Metrics
    clock: Callable[[], float]
    budgets: BudgetStatuses
    alerts: Alerts


def _sources(request: Request) -> _Sources:
    state = request.app.state.promptcache
    return _Sources(
        keyring=state.keyring,
        settings=state.settings,
        ledger=state.proxy.ledger,
        metrics=state.metrics,
        clock=getattr(state, "clock", time.time),
        budgets=getattr(state, "budget_statuses", no_budgets),
        alerts=getattr(state, "recent_alerts", no_alerts),
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    keyring = _sources(request).keyring
    if not keyring.anonymous_allowed:
        require_admin(keyring.authenticate(request))
    body = await run_in_threadpool(_sources(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE)


# --- dashboard access -------------------------------------------------------------------


def _token(key: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"promptcache-dashboard:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _cookie_principal(token: str, src: _Sources) -> Principal | None:
    expires, _, _ = token.partition(".")
    if not expires.isdigit() or int(expires) <= src.clock():
        return None
    for api_key in src.settings.auth.keys:
        if api_key.role == "admin" and hmac.compare_digest(
            _token(api_key.key, int(expires)).encode(), token.encode()
        ):
            return Principal(api_key.tenant, "admin", True)
    return None


def _with_key(request: Request, key: str) -> Request:
    """The request as if `key` had come as `x-api-key`, so the key ring judges it."""
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name not in (b"x-api-key", b"authorization")
    ]
    headers.append((b"x-api-key", key.encode()))
    return Request({**request.scope, "headers": headers})


def _admin(request: Request, src: _Sources, *, allow_query_key: bool) -> str | None:
    """Check admin access from `?key=` (page only), the cookie, or a header, in that order.

    Returns the query key when that is what granted access (the caller sets the cookie).
    """
    key = request.query_params.get("key") if allow_query_key else None
    if key:
        require_admin(src.keyring.authenticate(_with_key(request, key)))
        return key
    token = request.cookies.get(COOKIE)
    if token and _cookie_principal(token, src) is not None:
        return None
    require_admin(src.keyring.authenticate(request))
    return None


def _refused(exc: AuthenticationFailed | PermissionDenied) -> HTMLResponse:
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>promptcache dashboard</title><link rel='icon' href='data:,'></head><body>"
        f"<h1>promptcache dashboard</h1><p>{html.escape(exc.message)}</p>"
        "<p>Open <code>/dashboard?key=ADMIN_KEY</code> once with an admin key: it sets a "
        "12-hour cookie and takes the key out of the address.</p></body></html>"
    )
    return HTMLResponse(page, status_code=exc.status, headers=_PAGE_HEADERS)


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    src = _sources(request)
    try:
        key = _admin(request, src, allow_query_key=True)
    except (AuthenticationFailed, PermissionDenied) as exc:
        return _refused(exc)
    if key is None:
        return FileResponse(
            _STATIC / "dashboard.html", media_type="text/html", headers=_PAGE_HEADERS
        )
    rest = [(name, value) for name, value in request.query_params.multi_items() if name != "key"]
    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    redirect = RedirectResponse(target, status_code=303, headers=_PAGE_HEADERS)
    expires = int(src.clock()) + COOKIE_TTL_SECONDS
    redirect.set_cookie(
        COOKIE,
        _token(key, expires),
        max_age=COOKIE_TTL_SECONDS,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return redirect


@router.get("/dashboard/static/{name}")
async def dashboard_asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no dashboard asset {name!r}")
    return FileResponse(
        _STATIC / name,
        media_type=media_type,
        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
    )


@router.get("/dashboard/data")
async def dashboard_json(
    request: Request, days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30
) -> JSONBytes:
    src = _sources(request)
    _admin(request, src, allow_query_key=False)
    data = await run_in_threadpool(
        dashboard_data,
        src.ledger,
        days,
        src.clock(),
        src.settings.timezone,
        budgets=src.budgets,
        alerts=src.alerts,
    )
    return JSONBytes(data, headers={"cache-control": "no-store"})
