"""API keys -> (tenant, role). Tenants are namespaces: no hit ever crosses them.

Keys come from the settings (`[[auth.keys]]`, or `PROMPTCACHE_ADMIN_KEY`). They are held as
sha256 digests and compared by digest, so neither a timing difference nor a memory dump
gives a key away. While no client key is configured, a caller without a key is the
`default` tenant with the `client` role (an admin key alone, e.g. `PROMPTCACHE_ADMIN_KEY`,
does not lock clients out), and the service refuses to listen beyond loopback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from service.config import AuthSettings
from service.errors import AuthenticationFailed, PermissionDenied

Role = Literal["client", "admin"]


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: Role
    authenticated: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    def __init__(self, settings: AuthSettings) -> None:
        self._keys = {_digest(k.key): Principal(k.tenant, k.role, True) for k in settings.keys}
        self.anonymous_allowed = not any(k.role == "client" for k in settings.keys)

    def authenticate(self, request: Request) -> Principal:
        key = request.headers.get("x-api-key")
        if not key:
            authorization = request.headers.get("authorization", "")
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                key = token.strip()
        principal = self._keys.get(_digest(key)) if key else None
        if principal is not None:
            return principal
        if self.anonymous_allowed:
            # An unknown key gets no more than no key: the SDK always sends one.
            return Principal("default", "client", False)
        if not key:
            scheme = request.headers.get("authorization", "").partition(" ")[0]
            if scheme and scheme.lower() != "bearer":
                raise AuthenticationFailed(
                    f"Authorization: use the Bearer scheme (got {scheme[:20]}), or x-api-key"
                )
            raise AuthenticationFailed(
                "missing API key: send it as x-api-key or Authorization: Bearer"
            )
        raise AuthenticationFailed("invalid API key")


def require_admin(principal: Principal) -> None:
    if principal.is_admin:
        return
    if not principal.authenticated:
        raise AuthenticationFailed(
            "this is an admin operation: send an admin key as x-api-key "
            '(configure one with PROMPTCACHE_ADMIN_KEY or [[auth.keys]] role = "admin")'
        )
    raise PermissionDenied("this is an admin operation; your key has the client role")
