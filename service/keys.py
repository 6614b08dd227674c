"""Canonical requests and the keys derived from them (DESIGN §3).

Two requests that can get different answers must never share a key; two requests that
differ only in transport details (streaming, metadata, prompt-caching markers, whitespace at
the ends of text, string vs one-text-block content) must share one. A field this module does
not know counts as content. The exact key covers the
whole canonical request; the context fingerprint covers everything except the last user
turn, so a semantic hit is only ever possible between requests that agree on system prompt,
earlier turns, tools, sampling parameters, model and namespace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.jsoncodec import dumps
from service.text_form import reading_form

# Fields of a Messages request that cannot change the answer. Every other field is part of
# the key, including fields this release does not know: a new API option (a JSON schema for
# the output, an effort level) may change the answer, and an unknown field must cost a hit
# rather than serve a wrong one. `max_tokens` is left to the policy (`LookupOptions`).
TRANSPORT_FIELDS = frozenset({"stream", "metadata", "max_tokens", "service_tier"})
# Where a routed request's task hint goes in its canonical form: not a Messages API field name
# (those never contain "-"), so no request field can collide with it.
ROUTE_HINT_FIELD = "x-promptcache-task"
BETAS_FIELD = "anthropic-beta"
VERSION_FIELD = "anthropic-version"
# The `anthropic-version` promptcache's own SDK sends, and so the version every answer was
# produced under before client versions were forwarded (and still is for a client that sends
# none). A request at this version keeps the key it always had; any other version is part of
# the key, since the version selects the response format. tests/test_upstream.py checks that
# the SDK still sends this one.
UPSTREAM_API_VERSION = "2026-10-21"
# Keys removed wherever they appear inside system/messages/tools.
_VOLATILE_BLOCK_KEYS = frozenset({"cache_control"})


@dataclass(frozen=True)
class CacheKeys:
    """Everything the cache needs to know about one request, computed once."""

    tenant: str
    namespace: str  # "<tenant>/<namespace>": tenants are namespaces that never cross
    exact_key: str
    fingerprint: str
    semantic_text: str | None  # None: the last turn is not plain text, exact hits only
    model: str
    max_tokens: int | None


def scoped_namespace(tenant: str, namespace: str | None) -> str:
    return f"{tenant}/{namespace or 'default'}"


def _normalize_content(content: Any) -> Any:
    """String content == one text block; text stripped at the ends; volatile keys removed."""
    if isinstance(content, str):
        return [{"type": "text", "text": content.strip()}]
    if isinstance(content, list):
        return [_normalize_block(block) for block in content]
    return content


def _normalize_block(block: Any) -> Any:
    if not isinstance(block, Mapping):
        return block
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key in _VOLATILE_BLOCK_KEYS:
            continue
        if key == "citations" and isinstance(value, list):
            continue  # an earlier answer's citations, echoed back; `{"enabled": ...}` stays
        if key == "text" and isinstance(value, str):
            out[key] = value.strip()
        elif key == "content" and block.get("type") == "tool_result":
            out[key] = _normalize_content(value)
        else:
            out[key] = value
    return out


def _normalize_message(message: Any) -> Any:
    """Fields beside `role` and `content` stay: unknown to this module, they may matter."""
    if not isinstance(message, Mapping):
        return message
    return {**message, "content": _normalize_content(message.get("content"))}


def canonical_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The answer-relevant part of a Messages request in one normal form."""
    canonical: dict[str, Any] = {}
    for field, value in request.items():
        if field in TRANSPORT_FIELDS or value is None:
            continue
        if field == "system":
            value = _normalize_content(value)
            if value == [{"type": "text", "text": ""}]:
                continue
        elif field == "messages":
            value = [_normalize_message(m) for m in value]
        elif field == "tools" and isinstance(value, list):
            value = [_normalize_block(tool) for tool in value]
        canonical[field] = value
    return canonical


def _digest(*parts: Any) -> str:
    return hashlib.sha256(dumps(parts, sort_keys=True)).hexdigest()


def semantic_text_of(message: Mapping[str, Any]) -> str | None:
    """The text of a user turn made only of text blocks, in the form the embedding model and
    the policy read (`text_form`); None for tool results, images, ..."""
    if message.get("role") != "user":
        return None
    content = message.get("content")
    blocks = _normalize_content(content)
    if not isinstance(blocks, list) or not blocks:
        return None
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping) or block.get("type") != "text":
            return None
        texts.append(str(block.get("text", "")))
    text = reading_form("\n".join(t for t in texts if t))
    return text or None


def cache_keys(
    request: Mapping[str, Any],
    *,
    tenant: str,
    namespace: str | None = None,
    route_hint: str | None = None,
    betas: str | None = None,
    api_version: str | None = None,
) -> CacheKeys:
    """Derive the exact key, the context fingerprint and the semantic text of a request.

    `route_hint`: the `x-promptcache-task` of a request to a router alias. The router may
    send it to another model than the same request without it, so it is part of the key.
    `betas`: the `anthropic-beta` header forwarded upstream; a beta feature (interleaved
    thinking, a longer context) can change the answer, so it is part of the key too.
    `api_version`: the `anthropic-version` header forwarded upstream; part of the key unless
    it is absent or `UPSTREAM_API_VERSION` (what an absent header is answered under)."""
    scope = scoped_namespace(tenant, namespace)
    canonical = canonical_request(request)
    if route_hint is not None:
        canonical[ROUTE_HINT_FIELD] = route_hint
    flags = sorted({b.strip() for b in (betas or "").split(",") if b.strip()})
    if flags:
        canonical[BETAS_FIELD] = flags
    version = (api_version or "").strip()
    if version and version != UPSTREAM_API_VERSION:
        canonical[VERSION_FIELD] = version
    messages = canonical.get("messages") or []
    context = dict(canonical)
    context["messages"] = messages[:-1]
    last = messages[-1] if messages else {}
    if isinstance(last, Mapping):
        # Only the last turn's text may differ between a semantic hit and its entry: any
        # other field of that turn (one this module does not know) is context.
        beside = {k: v for k, v in last.items() if k not in ("role", "content")}
        if beside:
            context["x-last-turn-fields"] = beside  # no API field has a "-"
    semantic_text = semantic_text_of(last) if isinstance(last, Mapping) else None
    max_tokens = request.get("max_tokens")
    return CacheKeys(
        tenant=tenant,
        namespace=scope,
        exact_key=_digest("exact", scope, canonical),
        fingerprint=_digest("context", scope, context),
        semantic_text=semantic_text,
        model=str(canonical.get("model", "")),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
    )


def prompt_keys(
    messages: list[dict[str, Any]],
    *,
    model: str,
    tenant: str,
    system: Any = None,
    namespace: str | None = None,
) -> CacheKeys:
    """Keys for the cache-native API (and the benchmarks, which must decide identically)."""
    request: dict[str, Any] = {"model": model, "messages": messages}
    if system is not None:
        request["system"] = system
    return cache_keys(request, tenant=tenant, namespace=namespace)
