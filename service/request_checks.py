"""The checks the Messages API makes on a request body, made before anything is looked up.

A body the API would refuse must be refused here too, with a 400 in its wording: otherwise a
malformed request can be answered by a lenient upstream (or a cached answer) and stored, and
an absurd count can reach the ledger's integer columns. Fields promptcache does not know are
left alone: they are forwarded, and upstream judges them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from service.errors import InvalidRequest

# More tokens than any model reads or writes in one request. A bound, not a model's limit
# (upstream enforces that): counts past it cannot be real, and a count held in the ledger's
# 64-bit columns must stay far below 2**63 once multiplied by a price.
MAX_TOKEN_COUNT = 10_000_000
# Model ids (Anthropic's, Bedrock's, Vertex's) are printable ASCII. The model that answered
# goes back in `x-promptcache-model`, and a header cannot carry other characters.
MAX_MODEL_CHARS = 256
_MODEL_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_MODEL_CHARS}}}")


def validate_request(
    body: Any, task_max_tokens: Mapping[str, int], task: str | None
) -> dict[str, Any]:
    """The request as a new dict, `max_tokens` filled from the task's default when missing."""
    check_fields(body)
    request = dict(body)
    max_tokens = request.get("max_tokens")
    if max_tokens is None:
        if task is None or task not in task_max_tokens:
            raise InvalidRequest(
                "max_tokens: field required (or send x-promptcache-task with one of "
                f"{', '.join(sorted(task_max_tokens))} to use its default)"
            )
        request["max_tokens"] = task_max_tokens[task]
    elif not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKEN_COUNT:
        limit = f"{MAX_TOKEN_COUNT:,}"
        raise InvalidRequest(
            f"max_tokens: must be a whole number from 1 to {limit}, got {_shown(max_tokens)}"
        )
    return request


def check_fields(body: Any) -> None:
    """Every check but `max_tokens` (which count_tokens does not take)."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "model: field required (a model id, or `auto` to let promptcache route)"
        )
    if not _MODEL_ID.fullmatch(model):  # it goes back in a response header
        raise InvalidRequest(
            f"model: {model[:60]!r} is not a model id (printable ASCII without spaces, at most "
            f"{MAX_MODEL_CHARS} characters, such as claude-sonnet-4-6)"
        )
    _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    _check_sampling(body)
    _check_list_of_objects(body, "tools")
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("stop_sequences: must be a list of strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: must be true or false")
    _check_metadata(body.get("metadata"))


def _shown(value: object) -> str:
    """A value as the client sent it, cut short: 1e+30 read as a float is not "whole"."""
    return repr(value)[:40]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    last = len(messages) - 1
    for position, message in enumerate(messages):
        where = f"messages.{position}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"{where}: needs role `user` or `assistant`")
        content = message.get("content")
        if isinstance(content, str):
            # The API allows an empty turn only as the final assistant prefill.
            if not content.strip() and not (position == last and message["role"] == "assistant"):
                raise InvalidRequest(f"{where}.content: must not be empty")
        elif isinstance(content, list):
            if not content and not (position == last and message["role"] == "assistant"):
                raise InvalidRequest(f"{where}.content: must not be empty")
            _check_blocks(content, f"{where}.content")
        else:
            raise InvalidRequest(f"{where}.content: must be a string or a list of blocks")


def _check_blocks(blocks: list[Any], where: str) -> None:
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f'{where}.{i}: each block must be an object with a "type"')
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.{i}.text: must be a string")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidRequest("system: must be a string or a list of text blocks")
    _check_blocks(system, "system")


def _check_list_of_objects(body: Mapping[str, Any], field: str) -> None:
    value = body.get(field)
    if value is not None and not (
        isinstance(value, list) and all(isinstance(item, dict) for item in value)
    ):
        raise InvalidRequest(f"{field}: must be a list of objects")


def check_keys(value: Any, where: str, allowed: set[str]) -> None:
    """An object with no field but `allowed`, refused in the API's words."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: must be a JSON object")
    for key in value:
        if key not in allowed:
            prefix = f"{where}." if where != "request body" else ""
            raise InvalidRequest(f"{prefix}{key}: Extra inputs are not permitted")


def _check_metadata(metadata: Any) -> None:
    """The API's `metadata` holds `user_id` only. It is not part of the cache key, so a hit
    never reaches upstream to have it judged: checked here, a typo in it is the 400 the API
    would send, not a cached answer that fails once the cache misses."""
    if metadata is None:
        return
    check_keys(metadata, "metadata", {"user_id"})
    user_id = metadata.get("user_id")
    if user_id is not None and not (isinstance(user_id, str) and len(user_id) <= 256):
        raise InvalidRequest("metadata.user_id: must be a string of at most 256 characters")


def _check_sampling(body: Mapping[str, Any]) -> None:
    for field in ("temperature", "top_p"):
        value = body.get(field)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            raise InvalidRequest(f"{field}: must be a number from 0 to 1")
    top_k = body.get("top_k")
    if top_k is not None and not (_is_int(top_k) and top_k >= 0):
        raise InvalidRequest(f"top_k: must be a whole number, 0 or more, got {_shown(top_k)}")
