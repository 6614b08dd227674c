"""The stand-in's canned answers: deterministic text (or a forced tool call) derived from the
request, so the same request always gets the same answer and different requests different
ones; `max_tokens` and stop sequences cut it as the API would. Input usage comes from the
state's simulated prompt cache (`StandinState.input_usage`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from service.standin_wire import canonical_json, estimate_tokens, last_user_text

if TYPE_CHECKING:
    from service.standin import StandinState

# Canned filler so answers are long enough to stream in several deltas and to truncate.
_VOCABULARY = (
    "cache", "prefix", "answer", "token", "model", "vector", "stream", "batch", "ledger",
    "router", "policy", "index", "entry", "budget", "latency", "signal", "context", "prompt",
    "window", "summary", "detail", "result", "record", "harbor", "measure", "sample",
    "request", "reply", "minute", "second", "offset", "channel",
)  # fmt: skip
_VOLATILE_FIELDS = frozenset(
    {"stream", "max_tokens", "stop_sequences", "metadata", "cache_control"}
)


def _tool_input(schema: Any, user_text: str) -> dict[str, Any]:
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    values: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and spec.get("enum"):
            values[name] = spec["enum"][0]
        elif kind == "string":
            values[name] = user_text[:60] or name
        elif kind == "integer":
            values[name] = len(user_text.split())
        elif kind == "number":
            values[name] = len(user_text) / 10
        elif kind == "boolean":
            values[name] = True
        elif kind == "array":
            values[name] = []
        elif kind == "object":
            values[name] = {}
        else:
            values[name] = None
    return values


def chosen_tool(request: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the stand-in "calls": only when tool_choice forces a tool."""
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict)]
    choice = request.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "any":
        return tools[0]
    if choice.get("type") == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return tool
    return None


def build_message(
    state: StandinState, request: dict[str, Any], *, batch: bool = False
) -> dict[str, Any]:
    """The complete (non-streaming) message the stand-in answers `request` with."""
    basis = {k: v for k, v in request.items() if k not in _VOLATILE_FIELDS}
    digest = hashlib.sha256(canonical_json(basis).encode()).hexdigest()
    user_text = last_user_text(request)
    usage = state.input_usage(request, "batch" if batch else "standard")
    stop_reason = "end_turn"
    stop_sequence: str | None = None
    tool = chosen_tool(request)
    content: list[dict[str, Any]]
    if tool is not None:
        tool_input = _tool_input(tool.get("input_schema"), user_text)
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_{digest[:24]}",
                "name": tool.get("name", ""),
                "input": tool_input,
            }
        ]
        stop_reason = "tool_use"
        usage["output_tokens"] = estimate_tokens(json.dumps(tool_input)) + 10
    else:
        words = user_text.split()
        snippet = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
        picks = (int(digest[i : i + 2], 16) % len(_VOCABULARY) for i in range(8, 40, 2))
        filler = " ".join(_VOCABULARY[p] for p in picks)
        text = f'Stand-in answer #{digest[:8]}: you asked "{snippet}". Canned reply: {filler}.'
        limit = int(request["max_tokens"]) * 4
        cut: int | None = None
        for stop in request.get("stop_sequences") or []:
            at = text.find(stop) if stop else -1
            if at >= 0 and at + len(stop) <= limit and (cut is None or at < cut):
                cut, stop_sequence = at, stop
        if cut is not None:
            text, stop_reason = text[:cut], "stop_sequence"
        elif len(text) > limit:
            text, stop_reason = text[:limit], "max_tokens"
        content = [{"type": "text", "text": text}]
        usage["output_tokens"] = max(1, estimate_tokens(text))
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }
