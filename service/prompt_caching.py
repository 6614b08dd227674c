"""Where to put Anthropic prompt-cache breakpoints on a request that has none: a pure decision.

Anthropic caches the prompt prefix (tools, then system, then messages) up to each block marked
`cache_control`; a later request that repeats the prefix byte for byte reads it at a tenth of
the input price instead of paying for it again. Writing costs a premium (1.25x input for the
5-minute TTL, 2x for 1 hour) and a prefix shorter than the model's minimum is silently not
cached. So `add_breakpoints` marks, in this order, the end of the tool definitions, the end of
the system prompt, the end of the conversation before the final user turn (the next turn
repeats all of it) and the leading blocks of the final user turn (a document asked about
again), each only if the estimated prefix up to it reaches the model's minimum, at most four
(the API's limit). A request that carries any marker of its own is left exactly as sent: the
caller has decided. Nothing here does I/O or mutates its input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from service.tokens import estimate_request_tokens

CacheTtl = Literal["5m", "1h"]
Estimate = Callable[[Mapping[str, Any]], int]

# The API accepts at most four cache_control markers per request.
MAX_BREAKPOINTS: Final = 4
# Minimum cacheable prefix per model (Anthropic prompt-caching docs, checked 2026-11; see
# docs/cost-levers.md). Keys are model ids, shorter dash-prefixes of ids, family words, or
# "default"; `min_cacheable_tokens` explains the lookup. Settings may override any key.
DEFAULT_MIN_TOKENS: Final[Mapping[str, int]] = {
    "claude-opus-5": 512,
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
    "haiku": 2048,
    "sonnet": 1024,
    "opus": 1024,
    "default": 1024,
}
_FAMILIES: Final = ("haiku", "sonnet", "opus", "fable", "mythos")
_SNAPSHOT: Final = re.compile(r"[-@]\d{8}$")
# Blocks that may not carry cache_control.
_UNMARKABLE: Final = frozenset({"thinking", "redacted_thinking"})


@dataclass(frozen=True)
class Breakpoint:
    """One marker added: where (`tools[2]`, `system[0]`, `messages[3].content[1]`), which
    part of the prompt it closes, and the estimated prefix tokens up to and including it."""

    location: str
    part: Literal["tools", "system", "history", "leading-blocks"]
    prefix_tokens: int


@dataclass(frozen=True)
class SkippedBreakpoint:
    part: str
    location: str | None
    reason: str


@dataclass(frozen=True)
class BreakpointReport:
    """What `add_breakpoints` did and why; `reason` is one line for logs and the ledger."""

    added: tuple[Breakpoint, ...]
    skipped: tuple[SkippedBreakpoint, ...]
    reason: str
    min_tokens: int
    ttl: CacheTtl

    @property
    def cached_prefix_tokens(self) -> int:
        """Estimated tokens up to the last marker added (0 when none was)."""
        return max((b.prefix_tokens for b in self.added), default=0)


def min_cacheable_tokens(model: object, overrides: Mapping[str, int] | None = None) -> int:
    """The minimum cacheable prefix of `model`, from `DEFAULT_MIN_TOKENS` with `overrides`.

    Lookup, first found wins, case-insensitive, snapshot date (`-20251001`) removed: the id
    itself, then the id cut at each dash from the right (`claude-opus-4-6` -> `claude-opus-4`
    -> `claude-opus` -> `claude`), then the first family word it contains (`haiku`, `sonnet`,
    `opus`, ...), then `default`.
    """
    table = {**DEFAULT_MIN_TOKENS, **{k.lower(): v for k, v in (overrides or {}).items()}}
    name = _SNAPSHOT.sub("", model.strip().lower()) if isinstance(model, str) else ""
    candidate = name
    while candidate:
        if candidate in table:
            return table[candidate]
        candidate = candidate.rpartition("-")[0]
    for family in _FAMILIES:
        if family in name and family in table:
            return table[family]
    return table.get("default", DEFAULT_MIN_TOKENS["default"])


def has_cache_control(request: Mapping[str, Any]) -> bool:
    """Whether the caller set any marker: top level, a tool, a system block, a message block
    or a block nested in a tool result (the places the API reads them)."""
    if "cache_control" in request:
        return True
    for tool in _sequence(request.get("tools")):
        if isinstance(tool, Mapping) and "cache_control" in tool:
            return True
    if _blocks_marked(request.get("system")):
        return True
    for message in _sequence(request.get("messages")):
        if isinstance(message, Mapping) and _blocks_marked(message.get("content")):
            return True
    return False


def _blocks_marked(content: Any) -> bool:
    for block in _sequence(content):
        if not isinstance(block, Mapping):
            continue
        if "cache_control" in block:
            return True
        if block.get("type") == "tool_result" and _blocks_marked(block.get("content")):
            return True
    return False


def _sequence(value: Any) -> Sequence[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value
    return ()


def _markable(block: Any) -> bool:
    if isinstance(block, str):
        return bool(block.strip())
    if not isinstance(block, Mapping) or block.get("type") in _UNMARKABLE:
        return False
    if block.get("type") == "text":
        return bool(str(block.get("text", "")).strip())
    return True


def _last_markable(blocks: Sequence[Any], end: int) -> int | None:
    for index in range(end - 1, -1, -1):
        if _markable(blocks[index]):
            return index
    return None


def _as_blocks(content: Any) -> list[Any]:
    """A message's content (or the system prompt) in block form, as a new list."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(_sequence(content))


def _marked(block: Any, marker: Mapping[str, str]) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "text", "text": block} if isinstance(block, str) else {**block}
    return {**base, "cache_control": dict(marker)}


@dataclass(frozen=True)
class _Candidate:
    part: Literal["tools", "system", "history", "leading-blocks"]
    location: str
    prefix: dict[str, Any]  # the request cut just after the block to mark
    where: tuple[str, int, int]  # ("tools"|"system", index, -1) or ("messages", msg, block)


def _candidates(request: Mapping[str, Any]) -> tuple[list[_Candidate], list[SkippedBreakpoint]]:
    """Candidate positions in prompt order, each with the prefix request it closes."""
    found: list[_Candidate] = []
    skipped: list[SkippedBreakpoint] = []
    head = {k: request[k] for k in ("model", "tool_choice") if k in request}
    tools = _sequence(request.get("tools"))
    if tools:
        last = len(tools) - 1
        head["tools"] = list(tools)
        if isinstance(tools[last], Mapping):
            found.append(_Candidate("tools", f"tools[{last}]", dict(head), ("tools", last, -1)))
        else:
            skipped.append(SkippedBreakpoint("tools", f"tools[{last}]", "not a tool object"))
    system = _as_blocks(request.get("system") or "")
    if request.get("system"):
        index = _last_markable(system, len(system))
        head["system"] = request.get("system")
        if index is None:
            skipped.append(SkippedBreakpoint("system", None, "no block that can carry a marker"))
        else:
            prefix = {**head, "system": system[: index + 1]}
            found.append(_Candidate("system", f"system[{index}]", prefix, ("system", index, -1)))
    messages = list(_sequence(request.get("messages")))
    final_user = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if isinstance(messages[i], Mapping) and messages[i].get("role") == "user"
        ),
        None,
    )
    if final_user is None:
        return found, skipped
    turns: list[tuple[Literal["history", "leading-blocks"], int, int]] = []
    if final_user >= 1:
        blocks = _as_blocks(_content(messages[final_user - 1]))
        turns.append(("history", final_user - 1, len(blocks)))
    final_blocks = _as_blocks(_content(messages[final_user]))
    if len(final_blocks) >= 2:
        turns.append(("leading-blocks", final_user, len(final_blocks) - 1))
    else:
        skipped.append(
            SkippedBreakpoint("leading-blocks", None, "the final user turn is a single block")
        )
    for part, position, end in turns:
        blocks = _as_blocks(_content(messages[position]))
        index = _last_markable(blocks, end)
        if index is None:
            skipped.append(SkippedBreakpoint(part, None, "no block that can carry a marker"))
            continue
        cut = {**dict(messages[position]), "content": blocks[: index + 1]}
        prefix = {**head, "messages": [*messages[:position], cut]}
        location = f"messages[{position}].content[{index}]"
        found.append(_Candidate(part, location, prefix, ("messages", position, index)))
    return found, skipped


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, Mapping) else None


def _apply(
    request: Mapping[str, Any], chosen: Sequence[_Candidate], marker: Mapping[str, str]
) -> dict[str, Any]:
    """A new request with markers at `chosen`; only the containers on the way are copied."""
    result = dict(request)
    for candidate in chosen:
        kind, index, block = candidate.where
        if kind == "tools":
            tools = list(result["tools"])
            tools[index] = _marked(tools[index], marker)
            result["tools"] = tools
        elif kind == "system":
            system = _as_blocks(result["system"])
            system[index] = _marked(system[index], marker)
            result["system"] = system
        else:
            messages = list(result["messages"])
            message = dict(messages[index])
            blocks = _as_blocks(message.get("content"))
            blocks[block] = _marked(blocks[block], marker)
            message["content"] = blocks
            messages[index] = message
            result["messages"] = messages
    return result


def add_breakpoints(
    request: Mapping[str, Any],
    *,
    enabled: bool,
    ttl: CacheTtl,
    min_tokens_for_model: Mapping[str, int] | None = None,
    estimate: Estimate = estimate_request_tokens,
) -> tuple[dict[str, Any], BreakpointReport]:
    """Add up to four `cache_control` breakpoints where the prefix is long enough to cache.

    `min_tokens_for_model` overrides `DEFAULT_MIN_TOKENS` (see `min_cacheable_tokens`);
    `estimate` prices a (partial) request in tokens. Returns the new request — or the very
    request given, as a dict, when nothing is added — and a report of each decision.
    """
    minimum = min_cacheable_tokens(request.get("model"), min_tokens_for_model)

    def report(
        added: Sequence[Breakpoint], skipped: Sequence[SkippedBreakpoint], reason: str
    ) -> BreakpointReport:
        return BreakpointReport(tuple(added), tuple(skipped), reason, minimum, ttl)

    unchanged = request if isinstance(request, dict) else dict(request)
    if not enabled:
        return unchanged, report((), (), "prompt caching is off")
    if has_cache_control(request):
        return unchanged, report((), (), "the request sets its own cache_control; kept")
    candidates, skipped = _candidates(request)
    chosen: list[_Candidate] = []
    added: list[Breakpoint] = []
    for candidate in candidates:
        tokens = estimate(candidate.prefix)
        if tokens < minimum:
            skipped.append(
                SkippedBreakpoint(
                    candidate.part,
                    candidate.location,
                    f"prefix of ~{tokens} tokens is below the model's minimum of {minimum}",
                )
            )
        elif len(chosen) >= MAX_BREAKPOINTS:
            skipped.append(
                SkippedBreakpoint(candidate.part, candidate.location, "four markers already")
            )
        else:
            chosen.append(candidate)
            added.append(Breakpoint(candidate.location, candidate.part, tokens))
    if not chosen:
        reason = "no prefix reaches the minimum" if candidates else "nothing to mark"
        return unchanged, report((), skipped, reason)
    marker = {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}
    where = ", ".join(f"{b.part} (~{b.prefix_tokens} tokens)" for b in added)
    return _apply(request, chosen, marker), report(added, skipped, f"marked {where}")
