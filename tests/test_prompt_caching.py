"""Prompt-cache breakpoints: placement, minimums, the caller's own markers, and the money.

The placement tests use the real estimator; the end-to-end check sends marked requests to the
stand-in (which simulates Anthropic's prompt cache) and prices its usage with `PriceTable`.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import UpstreamSettings
from service.pricing import Usage, load_prices, usage_from_message
from service.prompt_caching import (
    DEFAULT_MIN_TOKENS,
    MAX_BREAKPOINTS,
    add_breakpoints,
    has_cache_control,
    min_cacheable_tokens,
)
from service.standin import StandinState
from service.tokens import estimate_request_tokens
from service.upstream import AnthropicUpstream
from tests.standin_server import running_standin

MODEL = "claude-sonnet-4-6"  # minimum 1,024 tokens
EPHEMERAL = {"type": "ephemeral"}
LONG = "Refunds are issued to the original payment method within ten business days. " * 120
TOOL = {
    "name": "lookup_order",
    "description": "Look up an order by number. " + "It returns status and history. " * 300,
    "input_schema": {"type": "object", "properties": {"number": {"type": "string"}}},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def blocks(content: Any) -> list[Any]:
    return [text(content)] if isinstance(content, str) else list(content)


def without_markers(request: dict[str, Any]) -> dict[str, Any]:
    """The request with every cache_control removed and strings in block form."""

    def clean(block: Any) -> Any:
        if not isinstance(block, dict):
            return block
        out = {k: v for k, v in block.items() if k != "cache_control"}
        if out.get("type") == "tool_result" and isinstance(out.get("content"), list):
            out["content"] = [clean(b) for b in out["content"]]
        return out

    result = {k: v for k, v in request.items() if k != "cache_control"}
    if "tools" in result:
        result["tools"] = [clean(t) for t in result["tools"]]
    if result.get("system"):
        result["system"] = [clean(b) for b in blocks(result["system"])]
    result["messages"] = [
        {**m, "content": [clean(b) for b in blocks(m["content"])]} for m in result["messages"]
    ]
    return result


def markers(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(location, marker) of every cache_control in the request."""
    found = []
    for i, tool in enumerate(request.get("tools") or []):
        if "cache_control" in tool:
            found.append((f"tools[{i}]", tool["cache_control"]))
    system = request.get("system")
    for i, block in enumerate(system if isinstance(system, list) else []):
        if "cache_control" in block:
            found.append((f"system[{i}]", block["cache_control"]))
    for i, message in enumerate(request["messages"]):
        content = message["content"]
        for j, block in enumerate(content if isinstance(content, list) else []):
            if isinstance(block, dict) and "cache_control" in block:
                found.append((f"messages[{i}].content[{j}]", block["cache_control"]))
    return found


def conversation() -> dict[str, Any]:
    """Tools, a long system prompt, two earlier turns and a final turn with a document."""
    return {
        "model": MODEL,
        "max_tokens": 256,
        "tools": [{"name": "ping", "description": "Ping.", "input_schema": {}}, TOOL],
        "system": LONG,
        "messages": [
            user("I ordered a keyboard last week."),
            assistant(
                [
                    text("Let me look it up."),
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "lookup_order",
                        "input": {"number": "A-1"},
                    },
                ]
            ),
            user([{"type": "tool_result", "tool_use_id": "t1", "content": "shipped"}]),
            assistant("It shipped yesterday."),
            user(
                [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": LONG},
                    },
                    text("Does this policy apply to me?"),
                ]
            ),
        ],
    }


# --- minimums --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-sonnet-4-6", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-opus-4-7", 2048),
        ("claude-opus-4-8", 1024),
        ("claude-opus-5", 512),
        ("claude-opus-5-5", 512),
        ("claude-fable-5-1", 512),
        ("claude-3-5-haiku-latest", 2048),
        ("claude-haiku-5-5", 2048),
        ("somebody-elses-model", 1024),
        (None, 1024),
    ],
)
def test_minimum_per_model_follows_the_docs(model: object, minimum: int) -> None:
    assert min_cacheable_tokens(model) == minimum


def test_overrides_win_and_the_more_specific_key_wins() -> None:
    assert min_cacheable_tokens("claude-sonnet-4-6", {"sonnet": 2048}) == 2048
    assert min_cacheable_tokens("claude-sonnet-4-6", {"claude-sonnet-4-6": 3000}) == 3000
    # An id listed in the defaults is more specific than a family word.
    assert min_cacheable_tokens("claude-haiku-4-5", {"haiku": 1000}) == 4096
    assert min_cacheable_tokens("other", {"default": 77}) == 77
    assert DEFAULT_MIN_TOKENS["default"] == 1024


# --- placement -------------------------------------------------------------------------------


def test_all_four_parts_are_marked_in_prompt_order() -> None:
    request = conversation()
    original = copy.deepcopy(request)
    marked, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert request == original  # never mutated
    assert markers(marked) == [
        ("tools[1]", EPHEMERAL),
        ("system[0]", EPHEMERAL),
        ("messages[3].content[0]", EPHEMERAL),
        ("messages[4].content[0]", EPHEMERAL),
    ]
    assert [b.part for b in report.added] == ["tools", "system", "history", "leading-blocks"]
    prefixes = [b.prefix_tokens for b in report.added]
    assert prefixes == sorted(prefixes) and prefixes[0] >= 1024
    assert marked["system"] == [{**text(LONG), "cache_control": EPHEMERAL}]
    assert marked["messages"][3]["content"] == [
        {**text("It shipped yesterday."), "cache_control": EPHEMERAL}
    ]
    assert without_markers(marked) == without_markers(request)


def test_the_one_hour_ttl_is_written_on_every_marker() -> None:
    marked, report = add_breakpoints(conversation(), enabled=True, ttl="1h")
    assert report.ttl == "1h"
    assert [m for _, m in markers(marked)] == [{"type": "ephemeral", "ttl": "1h"}] * 4


def test_a_short_request_is_left_alone() -> None:
    request = {"model": MODEL, "max_tokens": 50, "system": "Be brief.", "messages": [user("Hi")]}
    marked, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert marked is request
    assert report.added == () and "minimum" in report.reason
    assert any("below the model's minimum of 1024" in s.reason for s in report.skipped)


def test_a_marker_goes_exactly_where_the_prefix_reaches_the_minimum() -> None:
    request = {
        "model": MODEL,
        "system": LONG,
        "messages": [user("Hi"), assistant("Hello"), user("Bye")],
    }
    system_prefix = estimate_request_tokens({"model": MODEL, "system": LONG})
    history_prefix = estimate_request_tokens({**request, "messages": request["messages"][:2]})
    assert history_prefix > system_prefix + 1

    at = {"default": system_prefix, "sonnet": system_prefix}
    _, report = add_breakpoints(request, enabled=True, ttl="5m", min_tokens_for_model=at)
    assert [b.part for b in report.added] == ["system", "history"]

    above = {"sonnet": system_prefix + 1}
    marked, report = add_breakpoints(request, enabled=True, ttl="5m", min_tokens_for_model=above)
    assert [b.part for b in report.added] == ["history"]
    assert markers(marked) == [("messages[1].content[0]", EPHEMERAL)]

    beyond = {"sonnet": history_prefix + 1}
    marked, _ = add_breakpoints(request, enabled=True, ttl="5m", min_tokens_for_model=beyond)
    assert marked is request


@pytest.mark.parametrize(
    "where",
    ["top", "tool", "system", "message", "tool_result_inner"],
)
def test_the_callers_own_markers_win(where: str) -> None:
    request = conversation()
    if where == "top":
        request["cache_control"] = EPHEMERAL
    elif where == "tool":
        request["tools"][0]["cache_control"] = EPHEMERAL
    elif where == "system":
        request["system"] = [{**text(LONG), "cache_control": EPHEMERAL}]
    elif where == "message":
        request["messages"][0] = user([{**text("hi"), "cache_control": EPHEMERAL}])
    else:
        inner = [{**text("shipped"), "cache_control": EPHEMERAL}]
        request["messages"][2] = user(
            [{"type": "tool_result", "tool_use_id": "t1", "content": inner}]
        )
    assert has_cache_control(request)
    marked, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert marked is request
    assert report.added == () and "its own cache_control" in report.reason


def test_a_field_named_cache_control_inside_a_tool_schema_is_not_a_marker() -> None:
    request = conversation()
    request["tools"][0]["input_schema"] = {"properties": {"cache_control": {"type": "string"}}}
    assert not has_cache_control(request)
    _, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert len(report.added) == 4


def test_disabled_means_untouched() -> None:
    request = conversation()
    marked, report = add_breakpoints(request, enabled=False, ttl="5m")
    assert marked is request and report.added == ()


def test_thinking_and_empty_blocks_never_carry_a_marker() -> None:
    thinking = {"type": "thinking", "thinking": "Checking the order.", "signature": "sig"}
    call = {"type": "tool_use", "id": "t9", "name": "lookup_order", "input": {}}
    request = {
        "model": MODEL,
        "system": LONG,
        "messages": [
            user("Where is my order?"),
            assistant([thinking, call, text("")]),
            user([{"type": "tool_result", "tool_use_id": "t9", "content": "in transit"}]),
        ],
    }
    marked, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert ("messages[1].content[1]", EPHEMERAL) in markers(marked)
    assert "cache_control" not in marked["messages"][1]["content"][0]
    assert "cache_control" not in marked["messages"][1]["content"][2]
    assert len(report.added) == 2


# --- properties ------------------------------------------------------------------------------

WORDS = st.sampled_from(["refund policy ", "환불 규정 ", "x = compute(y)\n", "order A-1042 "])
TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda word, n: word * n, WORDS, st.integers(1, 700)),
)
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
THINKING = {"type": "thinking", "thinking": "hmm", "signature": "s"}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {"model": draw(st.sampled_from([MODEL, "claude-opus-4-6", "x"]))}
    if draw(st.booleans()):
        request["tools"] = [
            {"name": f"t{i}", "description": draw(TEXT), "input_schema": {}}
            for i in range(draw(st.integers(1, 3)))
        ]
    system = draw(st.one_of(st.none(), TEXT, st.lists(TEXT.map(text), min_size=1, max_size=3)))
    if system is not None:
        request["system"] = system
    messages: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 6))):
        if turn % 2 == 0:
            content: Any = draw(TEXT)
            if messages and any(b.get("type") == "tool_use" for b in messages[-1]["content"]):
                content = [
                    {"type": "tool_result", "tool_use_id": f"u{turn - 1}", "content": draw(TEXT)}
                ]
            elif draw(st.booleans()):
                content = draw(
                    st.lists(st.one_of(TEXT.map(text), st.just(IMAGE)), min_size=1, max_size=3)
                )
            messages.append(user(content))
        else:
            parts: list[dict[str, Any]] = [THINKING] if draw(st.booleans()) else []
            parts.append(text(draw(TEXT)))
            if draw(st.booleans()):
                parts.append({"type": "tool_use", "id": f"u{turn}", "name": "t0", "input": {}})
            messages.append(assistant(parts))
    request["messages"] = messages
    if draw(st.integers(0, 9)) == 0:
        request["cache_control"] = EPHEMERAL
    return request


@given(requests(), st.integers(1, 6000), st.sampled_from(["5m", "1h"]))
@settings(max_examples=150, deadline=None)
def test_only_markers_change_and_never_more_than_four(
    request: dict[str, Any], minimum: int, ttl: Any
) -> None:
    original = copy.deepcopy(request)
    overrides = {"default": minimum, "sonnet": minimum, "claude-opus-4-6": minimum}
    marked, report = add_breakpoints(request, enabled=True, ttl=ttl, min_tokens_for_model=overrides)
    assert request == original
    if has_cache_control(original):
        assert marked is request
        return
    found = markers(marked)
    assert len(found) == len(report.added) <= MAX_BREAKPOINTS
    expected = {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else EPHEMERAL
    assert all(marker == expected for _, marker in found)
    assert all(b.prefix_tokens >= minimum for b in report.added)
    assert without_markers(marked) == without_markers(original)
    for location, _ in found:
        if location.startswith("messages"):
            i, j = (int(x.split("]")[0]) for x in location.split("[")[1:])
            block = marked["messages"][i]["content"][j]
            assert block["type"] != "thinking" and (
                block["type"] != "text" or block["text"].strip()
            )


# --- end to end with the stand-in, and the money ----------------------------------------------


@pytest.mark.anyio
async def test_the_standin_reads_the_marked_prefix_the_second_time() -> None:
    prices = load_prices()
    request = {
        "model": MODEL,
        "max_tokens": 64,
        "system": LONG,
        "messages": [user("What is the refund window?")],
    }
    marked, report = add_breakpoints(request, enabled=True, ttl="5m")
    assert [b.part for b in report.added] == ["system"]
    with running_standin(StandinState()) as standin:
        upstream = AnthropicUpstream(
            UpstreamSettings(api_key="k", base_url=standin.base_url, max_retries=0)
        )
        try:
            first = usage_from_message(await upstream.create(marked))
            second = usage_from_message(await upstream.create(marked))
            unmarked = usage_from_message(await upstream.create(request))
        finally:
            await upstream.aclose()
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert unmarked.cache_read_input_tokens == unmarked.cache_creation_input_tokens == 0
    assert first.prompt_tokens == second.prompt_tokens == unmarked.prompt_tokens

    write = prices.charge(first, baseline_model=MODEL, model_used=MODEL)
    read = prices.charge(second, baseline_model=MODEL, model_used=MODEL)
    plain = prices.charge(unmarked, baseline_model=MODEL, model_used=MODEL)
    price = prices.get(MODEL)
    assert price is not None
    written = first.cache_creation_input_tokens
    # Sonnet 4.6 input is $3/MTok = 3 micro-dollars a token: a 5m write costs 1.25x, a read 0.1x.
    assert write.saved_prompt_cache_micros == -round(written * price.input * Fraction(1, 4))
    assert read.saved_prompt_cache_micros == round(written * price.input * Fraction(9, 10))
    assert plain.saved_prompt_cache_micros == 0
    assert read.cost_micros < plain.cost_micros < write.cost_micros


PRICES = load_prices()


@given(
    model=st.sampled_from(PRICES.model_ids()),
    plain=st.integers(0, 2_000_000),
    write_5m=st.integers(0, 2_000_000),
    write_1h=st.integers(0, 2_000_000),
    read=st.integers(0, 2_000_000),
    output=st.integers(0, 100_000),
)
@settings(max_examples=300, deadline=None)
def test_prompt_cache_saving_is_read_discount_minus_write_premium(
    model: str, plain: int, write_5m: int, write_1h: int, read: int, output: int
) -> None:
    usage = Usage(
        input_tokens=plain,
        output_tokens=output,
        cache_creation_input_tokens=write_5m + write_1h,
        cache_read_input_tokens=read,
        cache_creation_5m_input_tokens=write_5m,
        cache_creation_1h_input_tokens=write_1h,
    )
    charge = PRICES.charge(usage, baseline_model=model, model_used=model)
    price = PRICES.get(model)
    assert price is not None
    mult = price.multipliers
    discount = read * price.input * (1 - mult.cache_read)
    premium = price.input * (
        write_5m * (mult.cache_write_5m - 1) + write_1h * (mult.cache_write_1h - 1)
    )
    # Costs are rounded once each, so the saving may differ from the exact figure by < 1 micro.
    assert abs(charge.saved_prompt_cache_micros - (discount - premium)) < 1
    assert charge.saved_routing_micros == charge.saved_batch_micros == 0
    assert charge.baseline_micros - charge.cost_micros == charge.saved_prompt_cache_micros
