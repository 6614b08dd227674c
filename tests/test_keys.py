"""Keys are context-correct: transport details never split a key, content always does."""

from __future__ import annotations

import unicodedata
from typing import Any

from service.keys import cache_keys, canonical_request


def _req(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How do I reset my password?"},
        ],
    }
    base.update(extra)
    return base


def test_transport_fields_do_not_change_the_exact_key() -> None:
    plain = cache_keys(_req(), tenant="t")
    noisy = _req(stream=True, metadata={"user_id": "u1"}, max_tokens=999, service_tier="auto")
    noisy["messages"][-1] = {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "  How do I reset my password?\n",
                "cache_control": {"type": "ephemeral"},
            }
        ],
    }
    noisy["system"] = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
    ]
    assert cache_keys(noisy, tenant="t").exact_key == plain.exact_key


def test_everything_that_changes_the_answer_changes_the_exact_key() -> None:
    plain = cache_keys(_req(), tenant="t").exact_key
    variants = [
        _req(model="claude-opus-4-5"),
        _req(system="You are verbose."),
        _req(temperature=0.5),
        _req(top_p=0.9),
        _req(top_k=5),
        _req(stop_sequences=["END"]),
        _req(tools=[{"name": "f", "input_schema": {"type": "object"}}]),
        _req(thinking={"type": "enabled", "budget_tokens": 2000}),
        # Fields this release does not name: they may shape the answer, so they split keys.
        _req(output_format={"type": "json_schema", "schema": {"type": "object"}}),
        _req(output_config={"effort": "low"}),
    ]
    keys = {cache_keys(v, tenant="t").exact_key for v in variants}
    assert plain not in keys and len(keys) == len(variants)
    assert cache_keys(_req(), tenant="other").exact_key != plain
    assert cache_keys(_req(), tenant="t", namespace="ns").exact_key != plain


def test_fingerprint_ignores_only_the_last_user_turn() -> None:
    a = cache_keys(_req(), tenant="t")
    other_question = _req()
    other_question["messages"][-1] = {"role": "user", "content": "Where is the logout button?"}
    b = cache_keys(other_question, tenant="t")
    assert a.fingerprint == b.fingerprint and a.exact_key != b.exact_key
    earlier = _req()
    earlier["messages"][0] = {"role": "user", "content": "Hey"}
    assert cache_keys(earlier, tenant="t").fingerprint != a.fingerprint
    assert cache_keys(_req(system="Other"), tenant="t").fingerprint != a.fingerprint
    assert cache_keys(_req(), tenant="u").fingerprint != a.fingerprint
    assert cache_keys(_req(model="m2"), tenant="t").fingerprint != a.fingerprint


def test_semantic_text_only_for_plain_text_user_turns() -> None:
    assert cache_keys(_req(), tenant="t").semantic_text == "How do I reset my password?"
    tool_result = _req()
    tool_result["messages"][-1] = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "x", "content": "42"}],
    }
    assert cache_keys(tool_result, tenant="t").semantic_text is None
    image = _req()
    image["messages"][-1] = {
        "role": "user",
        "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "source": {}}],
    }
    assert cache_keys(image, tenant="t").semantic_text is None


def test_canonical_form_string_equals_one_text_block() -> None:
    a = canonical_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    b = canonical_request(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x "}]}]}
    )
    assert a == b


def test_an_unknown_field_splits_the_context_too() -> None:
    """A semantic hit across a request that asks for JSON output and one that does not
    would serve free text where a schema was asked for."""
    plain = cache_keys(_req(), tenant="t")
    schema = cache_keys(_req(output_format={"type": "json_schema", "schema": {}}), tenant="t")
    assert schema.fingerprint != plain.fingerprint
    assert schema.semantic_text == plain.semantic_text


def test_citations_asked_for_count_and_citations_echoed_back_do_not() -> None:
    def with_document(citations: Any) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "Rain falls."},
        }
        if citations is not None:
            document["citations"] = citations
        return _req(messages=[{"role": "user", "content": [document]}])

    plain = cache_keys(with_document(None), tenant="t").exact_key
    assert cache_keys(with_document({"enabled": True}), tenant="t").exact_key != plain
    answered = [{"type": "text", "text": "It rains.", "citations": [{"cited_text": "Rain"}]}]
    echoed = _req()
    echoed["messages"][1] = {"role": "assistant", "content": answered}
    bare = _req()
    bare["messages"][1] = {"role": "assistant", "content": "It rains."}
    assert cache_keys(echoed, tenant="t").exact_key == cache_keys(bare, tenant="t").exact_key


def test_a_routed_task_hint_and_unknown_message_fields_change_the_key() -> None:
    plain = cache_keys(_req(model="auto"), tenant="t")
    hinted = cache_keys(_req(model="auto"), tenant="t", route_hint="code_generation")
    assert plain.exact_key != hinted.exact_key and plain.fingerprint != hinted.fingerprint
    assert hinted == cache_keys(_req(model="auto"), tenant="t", route_hint="code_generation")
    messages = _req()["messages"]
    named = [*messages[:-1], {**messages[-1], "name": "bob"}]
    # A message field this module does not know may change the answer (it was dropped).
    assert cache_keys(_req(messages=named), tenant="t").exact_key != (
        cache_keys(_req(), tenant="t").exact_key
    )
    # ... and the context: on the last turn it was served the plain prompt at similarity 1.0.
    assert cache_keys(_req(messages=named), tenant="t").fingerprint != (
        cache_keys(_req(), tenant="t").fingerprint
    )


def test_beta_flags_are_part_of_the_key_in_any_order() -> None:
    """A beta feature can change the answer: the same body with a beta header was served
    the answer given without it."""
    plain = cache_keys(_req(), tenant="t")
    beta = cache_keys(_req(), tenant="t", betas="context-1m-2025-08-07, fancy-2025")
    assert plain.exact_key != beta.exact_key and plain.fingerprint != beta.fingerprint
    assert beta == cache_keys(_req(), tenant="t", betas="fancy-2025,context-1m-2025-08-07")
    assert plain == cache_keys(_req(), tenant="t", betas=" , ")


def _last_turn(text: str) -> dict[str, Any]:
    return _req(messages=[{"role": "user", "content": text}])


def test_the_semantic_text_is_read_in_one_form_and_the_exact_key_keeps_the_bytes() -> None:
    composed = "화면을 밝게 하는 방법"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    nfc, nfd = (cache_keys(_last_turn(t), tenant="t") for t in (composed, decomposed))
    assert nfd.semantic_text == nfc.semantic_text == composed
    assert nfd.exact_key != nfc.exact_key  # upstream sees what was sent
    hidden = cache_keys(_last_turn("포도 안\u200b줘도 돼요?"), tenant="t")
    assert hidden.semantic_text == "포도 안줘도 돼요?"
    wide = cache_keys(_last_turn("ＧＰＵ　１２３개"), tenant="t")
    assert wide.semantic_text == "GPU 123개"
    kept = "x² ① 👩\u200d💻"  # not width forms: they keep their meaning
    assert cache_keys(_last_turn(kept), tenant="t").semantic_text == kept
