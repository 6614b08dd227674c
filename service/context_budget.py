"""Context budgets and whitespace normalization: two pure ways to send fewer input tokens.

`fit_context` drops whole turns from the middle of a long conversation until the request fits
a token budget: the system prompt and tools always stay, the first user turn stays (it
usually states the task) unless it alone breaks the budget, and the newest turns stay. Cuts
fall only where the result is still a valid Messages request — it starts with a user turn,
roles alternate as they did, no `tool_result` loses the `tool_use` it answers — and nothing
is ever invented or rewritten. `normalize_whitespace` (opt-in) collapses runs of blank lines
and of spaces in prose, never inside fenced or inline code, and never touches indentation.
Both return a new request and leave their input alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from service.errors import InvalidRequest
from service.tokens import estimate_request_tokens

Estimate = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class ContextReport:
    """What `fit_context` did. `fits` is False when even the shortest valid request is over
    the budget; the request then keeps what it must and goes out over budget."""

    budget_tokens: int
    tokens_before: int
    tokens_after: int
    messages_before: int
    messages_removed: int
    kept_first_turn: bool
    fits: bool
    reason: str

    @property
    def tokens_removed(self) -> int:
        return self.tokens_before - self.tokens_after


def _role(message: Any) -> str | None:
    role = message.get("role") if isinstance(message, Mapping) else None
    return role if isinstance(role, str) else None


def _has_tool_result(message: Any) -> bool:
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str) or not isinstance(content, Sequence):
        return False
    return any(isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content)


def _cuts(messages: Sequence[Any], *, keep_first: bool) -> list[int]:
    """Indices `i` where `messages[i:]` may follow the kept head, fewest messages dropped first.

    After a kept first user turn the next kept turn must be an assistant turn; without it the
    request must open with a user turn, and one that carries no tool results (their tool_use
    would be gone).
    """
    if keep_first:
        return [i for i in range(2, len(messages)) if _role(messages[i]) == "assistant"]
    return [
        i
        for i in range(1, len(messages))
        if _role(messages[i]) == "user" and not _has_tool_result(messages[i])
    ]


def fit_context(
    request: Mapping[str, Any],
    budget_tokens: int,
    estimate: Estimate = estimate_request_tokens,
) -> tuple[dict[str, Any], ContextReport]:
    """Keep the newest turns that fit `budget_tokens` estimated input tokens (whole request).

    The first user turn is always kept, unless the request holding only it (with the system
    prompt and tools) is already over the budget. When no valid cut fits, the shortest valid
    request is returned with `fits=False`; when nothing can be cut, the request is unchanged.
    """
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 1:
        raise InvalidRequest(
            f"a context budget must be a positive token count, not {budget_tokens!r}"
        )
    before = estimate(request)
    raw = request.get("messages")
    messages: list[Any] = (
        list(raw) if isinstance(raw, Sequence) and not isinstance(raw, str) else []
    )
    unchanged = request if isinstance(request, dict) else dict(request)

    def report(
        after: int, removed: int, kept_first: bool, fits: bool, reason: str
    ) -> ContextReport:
        return ContextReport(
            budget_tokens, before, after, len(messages), removed, kept_first, fits, reason
        )

    first_is_task = bool(messages) and _role(messages[0]) == "user"
    if before <= budget_tokens:
        return unchanged, report(before, 0, first_is_task, True, "within budget")
    keep_first = first_is_task and estimate({**request, "messages": messages[:1]}) <= budget_tokens
    cuts = _cuts(messages, keep_first=keep_first)
    if not cuts:
        why = "over budget, but no turn can be dropped"
        return unchanged, report(before, 0, first_is_task, False, why)
    head = messages[:1] if keep_first else []

    def trimmed(cut: int) -> dict[str, Any]:
        return {**request, "messages": [*head, *messages[cut:]]}

    # Dropping more never adds tokens, so the first cut that fits is found by bisection.
    low, high = 0, len(cuts) - 1
    if estimate(trimmed(cuts[high])) > budget_tokens:
        result = trimmed(cuts[high])
        after = estimate(result)
        dropped = cuts[high] - len(head)
        why = "over budget even with only the turns that must stay"
        return result, report(after, dropped, keep_first, False, why)
    while low < high:
        middle = (low + high) // 2
        if estimate(trimmed(cuts[middle])) <= budget_tokens:
            high = middle
        else:
            low = middle + 1
    result = trimmed(cuts[low])
    dropped = cuts[low] - len(head)
    kept = "kept the first user turn" if keep_first else "the first user turn alone is over budget"
    return result, report(
        estimate(result), dropped, keep_first, True, f"dropped {dropped} turns; {kept}"
    )


# --- whitespace ---------------------------------------------------------------------------------

_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE: Final = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INNER_SPACES: Final = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")


def _collapse_line(line: str) -> str:
    """Trailing blanks go; runs of blanks between words become one space; the indentation and
    inline code spans stay as written."""
    line = line.rstrip(" \t\r")
    pieces: list[str] = []
    position = 0
    for span in _INLINE_CODE.finditer(line):
        pieces.append(_INNER_SPACES.sub(" ", line[position : span.start()]))
        pieces.append(span.group())
        position = span.end()
    pieces.append(_INNER_SPACES.sub(" ", line[position:]))
    return "".join(pieces)


def normalize_text(text: str) -> str:
    """`text` with runs of blank lines cut to one blank line and runs of spaces between words
    cut to one space, outside fenced code blocks (``` or ~~~); line endings are kept."""
    out: list[str] = []
    fence: str | None = None
    blanks = 0
    for line in text.split("\n"):
        if fence is not None:
            out.append(line)
            closer = _FENCE.match(line)
            if closer and closer.group(1)[0] == fence[0] and len(closer.group(1)) >= len(fence):
                fence = None if not line.strip().strip(fence[0]) else fence
            continue
        opener = _FENCE.match(line)
        if opener:
            fence = opener.group(1)
            blanks = 0
            out.append(line)
            continue
        ending = "\r" if line.endswith("\r") else ""
        line = _collapse_line(line.removesuffix("\r"))
        if line.strip():
            blanks = 0
        else:
            blanks += 1
            if blanks > 1:
                continue
        out.append(line + ending)
    return "\n".join(out)


def _normalize_content(content: Any) -> Any:
    if isinstance(content, str):
        return normalize_text(content)
    if not isinstance(content, Sequence):
        return content
    blocks: list[Any] = []
    for block in content:
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                block = {**block, "text": normalize_text(text)}
        blocks.append(block)
    return blocks


def normalize_whitespace(
    request: Mapping[str, Any], estimate: Estimate = estimate_request_tokens
) -> tuple[dict[str, Any], int]:
    """Collapse whitespace in the text of the system prompt and of message text blocks;
    returns the new request (the same one when nothing changed) and the estimated tokens saved.

    Tool inputs, tool results, documents and code fences are left alone: whitespace can be
    data there.
    """
    result = dict(request)
    if "system" in request:
        result["system"] = _normalize_content(request["system"])
    raw = request.get("messages")
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        messages: list[Any] = []
        for message in raw:
            if isinstance(message, Mapping) and "content" in message:
                message = {**message, "content": _normalize_content(message["content"])}
            messages.append(message)
        result["messages"] = messages
    if result == request:
        return (request if isinstance(request, dict) else dict(request)), 0
    return result, max(0, estimate(request) - estimate(result))
