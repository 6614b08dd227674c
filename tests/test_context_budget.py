"""Context budgets keep valid conversations; whitespace normalization only touches whitespace."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.context_budget import fit_context, normalize_text, normalize_whitespace
from service.errors import InvalidRequest
from service.tokens import estimate_request_tokens

MODEL = "claude-sonnet-4-6"
SYSTEM = "You are the support assistant of a keyboard shop. Answer briefly."
TOOLS = [{"name": "lookup_order", "description": "Look up an order.", "input_schema": {}}]


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_use(call: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call, "name": "lookup_order", "input": {"number": call}}


def tool_result(call: str, text: str = "shipped") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call, "content": text}


def ids_of(message: dict[str, Any], kind: str, key: str) -> set[str]:
    content = message["content"]
    if isinstance(content, str):
        return set()
    return {b[key] for b in content if isinstance(b, dict) and b.get("type") == kind}


def assert_valid(result: dict[str, Any]) -> None:
    """What the Messages API requires of the turns we send."""
    messages = result["messages"]
    assert messages and messages[0]["role"] == "user"
    for before, after in itertools.pairwise(messages):
        assert before["role"] != after["role"], "roles must alternate"
    for index, message in enumerate(messages):
        needed = ids_of(message, "tool_result", "tool_use_id")
        if needed:
            assert index > 0
            assert needed <= ids_of(messages[index - 1], "tool_use", "id")


def chat(turns: int, size: int = 60) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        messages.append(user(f"Question {turn}: " + "where is my order please " * size))
        messages.append(assistant(f"Answer {turn}: " + "it is on its way to you " * size))
    messages.append(user("And the last question?"))
    return {
        "model": MODEL,
        "max_tokens": 100,
        "system": SYSTEM,
        "tools": TOOLS,
        "messages": messages,
    }


# --- fit_context -----------------------------------------------------------------------------


def test_a_request_within_budget_is_untouched() -> None:
    request = chat(2)
    result, report = fit_context(request, 100_000)
    assert result is request
    assert report.fits and report.tokens_removed == 0 and report.messages_removed == 0


def test_middle_turns_go_first_and_the_task_and_newest_turns_stay() -> None:
    request = chat(10)
    original = copy.deepcopy(request)
    total = estimate_request_tokens(request)
    budget = total // 3
    result, report = fit_context(request, budget)
    assert request == original
    assert report.fits and report.kept_first_turn
    assert estimate_request_tokens(result) <= budget
    assert report.tokens_after == estimate_request_tokens(result) <= budget
    assert report.tokens_removed == total - report.tokens_after > 0
    messages = result["messages"]
    assert messages[0] == request["messages"][0]
    assert messages[1:] == request["messages"][-(len(messages) - 1) :]
    assert report.messages_removed == len(request["messages"]) - len(messages)
    assert result["system"] == SYSTEM and result["tools"] == TOOLS
    assert_valid(result)
    # Newest-first: one more turn back would not have fitted.
    cut = len(request["messages"]) - (len(messages) - 1)
    longer = {**request, "messages": [request["messages"][0], *request["messages"][cut - 2 :]]}
    assert estimate_request_tokens(longer) > budget


def test_a_tool_call_and_its_result_stay_together() -> None:
    messages = [user("Check orders A, B and C please. " * 30)]
    for call in ("A", "B", "C", "D"):
        messages.append(assistant([{"type": "text", "text": "Looking."}, tool_use(call)]))
        messages.append(user([tool_result(call, "shipped on time " * 80)]))
    messages.append(assistant("All four have shipped."))
    messages.append(user("Thanks, and order E?"))
    request = {"model": MODEL, "system": SYSTEM, "messages": messages}
    for budget in range(300, estimate_request_tokens(request), 97):
        result, report = fit_context(request, budget)
        assert_valid(result)
        assert result["messages"][-1] == messages[-1]
        if report.fits:
            assert estimate_request_tokens(result) <= budget


def test_a_first_turn_over_budget_is_dropped_without_leaving_orphans() -> None:
    request = {
        "model": MODEL,
        "messages": [
            user("Here is the whole manual. " * 2000),
            assistant([tool_use("m1")]),
            user([tool_result("m1")]),
            assistant("Read it."),
            user("Summarize page one."),
        ],
    }
    result, report = fit_context(request, 500)
    assert not report.kept_first_turn and report.fits
    assert result["messages"] == request["messages"][-1:]
    assert_valid(result)


def test_over_budget_even_at_the_minimum_says_so() -> None:
    request = chat(3)
    request["messages"][-1] = user("A very long final question. " * 3000)
    result, report = fit_context(request, 2000)
    assert not report.fits
    assert result["messages"][0] == request["messages"][0]  # the first turn alone fits
    assert result["messages"][-1] == request["messages"][-1]
    assert len(result["messages"]) == 3
    assert_valid(result)


def test_nothing_to_drop_returns_the_request() -> None:
    request = {"model": MODEL, "messages": [user("word " * 5000)]}
    result, report = fit_context(request, 10)
    assert result is request and not report.fits and report.messages_removed == 0


@pytest.mark.parametrize("budget", [0, -5, True, 2.5])
def test_a_budget_must_be_a_positive_count(budget: Any) -> None:
    with pytest.raises(InvalidRequest):
        fit_context(chat(1), budget)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    text = st.builds(
        lambda w, n: w * n, st.sampled_from(["order ", "주문 ", "x=1\n"]), st.integers(1, 300)
    )
    messages: list[dict[str, Any]] = [user(draw(text))]
    calls = 0
    for _ in range(draw(st.integers(0, 12))):
        last = messages[-1]
        if last["role"] == "user":
            if draw(st.booleans()):
                calls += 1
                messages.append(
                    assistant([{"type": "text", "text": draw(text)}, tool_use(f"c{calls}")])
                )
            else:
                messages.append(assistant(draw(text)))
        else:
            pending = ids_of(last, "tool_use", "id")
            if pending:
                messages.append(user([tool_result(call, draw(text)) for call in sorted(pending)]))
            else:
                messages.append(user(draw(text)))
    request: dict[str, Any] = {"model": MODEL, "messages": messages}
    if draw(st.booleans()):
        request["system"] = draw(text)
    return request


@given(conversations(), st.integers(1, 4000))
@settings(max_examples=200, deadline=None)
def test_any_budget_keeps_the_conversation_valid(request: dict[str, Any], budget: int) -> None:
    original = copy.deepcopy(request)
    result, report = fit_context(request, budget)
    assert request == original
    messages, kept = request["messages"], result["messages"]
    assert result.get("system") == request.get("system")
    # The result is the first turn (or not) followed by an unbroken run of the newest turns.
    assert report.kept_first_turn == (kept[0] is messages[0])
    tail = kept[1:] if report.kept_first_turn else kept
    assert all(a is b for a, b in zip(tail, messages[len(messages) - len(tail) :], strict=True))
    assert kept[-1] is messages[-1]
    if estimate_request_tokens(request) <= budget:
        assert result is request
        return
    if len(kept) < len(messages):
        assert_valid(result)
    if report.fits:
        assert estimate_request_tokens(result) <= budget
    first_alone = estimate_request_tokens({**request, "messages": messages[:1]})
    if first_alone <= budget:
        assert report.kept_first_turn


# --- whitespace ------------------------------------------------------------------------------


def test_prose_is_collapsed_and_code_is_not() -> None:
    text = (
        "Please   review   this:\n\n\n\n"
        "```python\n"
        "def f(x):\n"
        "    return  x   *  2\n\n\n\n"
        "```\n"
        "Keep `a  b` as is.   \n"
        "    indented  line\n"
        "~~~\n"
        "a   b\n"
        "~~~\n"
    )
    assert normalize_text(text) == (
        "Please review this:\n\n"
        "```python\n"
        "def f(x):\n"
        "    return  x   *  2\n\n\n\n"
        "```\n"
        "Keep `a  b` as is.\n"
        "    indented line\n"
        "~~~\n"
        "a   b\n"
        "~~~\n"
    )


def test_normalize_whitespace_touches_text_only_and_counts_the_saving() -> None:
    padded = "Summarize   the   following   notes.\n\n\n\n\n" + "item  one   \n\n\n" * 50
    request = {
        "model": MODEL,
        "system": "Be   brief.\n\n\n\nUse bullets.",
        "messages": [
            user(padded),
            assistant([tool_use("t1")]),
            user([tool_result("t1", "col1    col2\n\n\n\nrow")]),
        ],
    }
    original = copy.deepcopy(request)
    result, saved = normalize_whitespace(request)
    assert request == original
    assert result["system"] == "Be brief.\n\nUse bullets."
    assert result["messages"][0]["content"].startswith(
        "Summarize the following notes.\n\nitem one\n\n"
    )
    assert result["messages"][1:] == request["messages"][1:]  # tool use and results untouched
    assert saved == estimate_request_tokens(request) - estimate_request_tokens(result) > 0


def test_nothing_to_normalize_returns_the_request() -> None:
    request = {"model": MODEL, "messages": [user("Already tidy.\n\nTwo paragraphs.")]}
    result, saved = normalize_whitespace(request)
    assert result is request and saved == 0


@given(st.text(alphabet=st.sampled_from(list("ab `~\n\t\r가")), max_size=200))
@settings(max_examples=300, deadline=None)
def test_normalization_changes_only_whitespace_and_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert "".join(once.split()) == "".join(text.split())
    assert normalize_text(once) == once
    assert len(once) <= len(text)
