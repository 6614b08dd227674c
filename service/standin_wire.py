"""The stand-in's wire format: reading requests (text, token counts, validation) and
writing the SSE events of an answer.

Pure functions, no FastAPI: `service.standin` builds its answers and usage from them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _without_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_control(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_without_cache_control(value), sort_keys=True, ensure_ascii=False)


def _block_text(block: Any) -> str:
    """The text a block contributes to the token estimate."""
    if isinstance(block, dict) and block.get("type") == "text":
        return str(block.get("text", ""))
    if isinstance(block, dict) and block.get("type") == "tool_result":
        return "".join(_block_text(b) for b in _blocks(block.get("content", "")))
    return canonical_json(block)


def estimate_tokens(text: str) -> int:
    """About four characters per token, like a rough English tokenizer; 0 for empty text."""
    return math.ceil(len(text) / 4)


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(_block_text(b) for b in _blocks(message.get("content"))).strip()
    return ""


def validation_error(request: Any, *, needs_max_tokens: bool = True) -> str | None:
    if not isinstance(request, dict):
        return "request body must be a JSON object"
    required = ("model", "messages", "max_tokens") if needs_max_tokens else ("model", "messages")
    for name in required:
        if name not in request:
            return f"{name}: Field required"
    if not isinstance(request["model"], str) or not request["model"]:
        return "model: must be a non-empty string"
    messages = request["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{i}.content: must be a string or a list of content blocks"
    if needs_max_tokens:
        max_tokens = request["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: must be an integer >= 1"
    # Rules of its own, not promptcache's (service.request_checks): an upstream that shared
    # promptcache's checks could never disagree with them in a test.
    stops = request.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        return "stop_sequences: must be a list of strings"
    tool_choice = request.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, dict):
        return "tool_choice: must be an object"
    return None


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class _Segment:
    canonical: str
    tokens: int
    ttl: str | None  # the cache_control TTL if this segment carries a marker


def prompt_segments(request: dict[str, Any]) -> list[_Segment]:
    """The request in prompt-cache order (tools, system, messages), one segment per block."""

    def marker(block: Any) -> str | None:
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            return str(control.get("ttl", "5m"))
        return None

    out: list[_Segment] = []
    for tool in request.get("tools") or []:
        canonical = canonical_json(tool)
        out.append(_Segment(canonical, estimate_tokens(canonical), marker(tool)))
    for block in _blocks(request.get("system", [])):
        text = _block_text(block)
        out.append(_Segment(canonical_json(block), estimate_tokens(text), marker(block)))
    for message in request.get("messages") or []:
        for block in _blocks(message.get("content")):
            canonical = message.get("role", "") + ":" + canonical_json(block)
            out.append(_Segment(canonical, estimate_tokens(_block_text(block)), marker(block)))
    # Automatic caching: a top-level marker applies to the last block of the request.
    top = request.get("cache_control")
    if out and isinstance(top, dict) and out[-1].ttl is None:
        last = out[-1]
        out[-1] = _Segment(last.canonical, last.tokens, str(top.get("ttl", "5m")))
    return out


def count_input_tokens(request: dict[str, Any]) -> int:
    return sum(segment.tokens for segment in prompt_segments(request))


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _chunks(text: str, size: int) -> list[str]:
    pieces = re.findall(r"\S+\s*|\s+", text)
    out = ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]
    return out or [text]


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events that stream `message`, in Anthropic's order."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    yield _event("message_start", message=start | {"usage": usage | {"output_tokens": 1}})
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            raw = json.dumps(block["input"], ensure_ascii=False)
            pieces = [raw[i : i + 12] for i in range(0, len(raw), 12)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"], 3)]
        yield _event("content_block_start", index=index, content_block=opening)
        if index == 0:
            yield _event("ping")
        for delta in deltas:
            yield _event("content_block_delta", index=index, delta=delta)
        yield _event("content_block_stop", index=index)
    counted = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    final_usage = {k: usage[k] for k in counted} | {"output_tokens": usage["output_tokens"]}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield _event("message_delta", delta=delta, usage=final_usage)
    yield _event("message_stop")
