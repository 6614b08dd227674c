"""Request bodies of the cache-native API, validated at the HTTP edge.

Unknown fields are refused (a typo such as `min_similarty` must not silently fall back to
the default threshold). `prompt` is shorthand for one user turn; exactly one of `prompt` and
`messages` is required.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.errors import InvalidRequest
from service.names import checked_name
from service.pricing import usage_from_message
from service.request_checks import check_fields

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number or a string like `90`, `15m`, `12h`, `7d`."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use seconds or 30m, 12h, 7d, 2w)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class _Body(BaseModel):
    # strict: `true` is not a TTL of 1 s, nor "yes" a request to remove everything.
    model_config = ConfigDict(extra="forbid", strict=True)


class Message(_Body):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class PromptFields(_Body):
    prompt: str | None = None
    messages: list[Message] | None = None
    system: str | list[dict[str, Any]] | None = None
    namespace: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else checked_name(value, "namespace")

    @model_validator(mode="after")
    def _one_prompt(self) -> PromptFields:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` and `messages`")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("`prompt` is empty")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("`messages` is empty")
            if self.messages[-1].role != "user":
                raise ValueError("the last message must have role `user`")
            last = self.messages[-1].content
            if isinstance(last, str) and not last.strip():
                raise ValueError("the last user message is empty")
            try:  # the Messages API's own rules: typed blocks, no empty turn
                check_fields({"model": "m", "messages": self.as_messages()})
            except InvalidRequest as exc:
                raise ValueError(exc.message) from exc
        return self

    def as_messages(self) -> list[dict[str, Any]]:
        if self.prompt is not None:
            return [{"role": "user", "content": self.prompt}]
        return [m.model_dump() for m in self.messages or []]


class LookupBody(PromptFields):
    model: str | None = Field(default=None, min_length=1, max_length=256)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)
    max_age: float | None = Field(default=None, ge=0)


class StoreBody(PromptFields):
    model: str = Field(min_length=1, max_length=256)
    response: str | dict[str, Any]
    usage: dict[str, int] | None = None
    ttl: float | None = Field(default=None, gt=0, description="seconds")
    tags: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return [checked_name(tag, "tag") for tag in tags]

    @field_validator("usage")
    @classmethod
    def _usage(cls, usage: dict[str, int] | None) -> dict[str, int] | None:
        if usage is not None:
            known = {"input_tokens", "output_tokens"}
            known |= {"cache_creation_input_tokens", "cache_read_input_tokens"}
            unknown = sorted(set(usage) - known)
            if unknown:
                raise ValueError(f"usage: unknown count(s) {', '.join(unknown)}")
            try:  # the counts a hit's saving is priced from: as a message's usage is checked
                usage_from_message({"usage": usage})
            except InvalidRequest as exc:
                raise ValueError(f"usage: {exc.message}") from exc
        return usage

    @field_validator("response")
    @classmethod
    def _response(cls, response: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(response, str) and not response:
            raise ValueError("`response` is empty")
        if isinstance(response, dict) and not isinstance(response.get("content"), list):
            raise ValueError("a message `response` needs a `content` list (Anthropic format)")
        if isinstance(response, dict):
            _check_message(response)
        return response


def _check_message(message: dict[str, Any]) -> None:
    """What every hit replays must parse in the client's SDK: typed blocks, text as text,
    tool input as an object, the message's own fields as strings, token counts as counts."""
    for i, block in enumerate(message["content"]):
        where = f"response.content[{i}]"
        if not (isinstance(block, dict) and isinstance(block.get("type"), str)):
            raise ValueError(f'{where}: each block needs a `type` (e.g. {{"type": "text"}})')
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise ValueError(f"{where}: a text block needs `text` as a string")
        if block["type"] == "tool_use" and not isinstance(block.get("input"), dict):
            raise ValueError(f"{where}: a tool_use block needs `input` as an object")
    for name in ("id", "type", "role", "model"):
        if name in message and not isinstance(message[name], str):
            raise ValueError(f"response.{name}: must be a string")
    stop = message.get("stop_reason")
    if stop is not None and not isinstance(stop, str):
        raise ValueError("response.stop_reason: must be a string or null")
    if "usage" in message:
        try:
            usage_from_message(message)
        except InvalidRequest as exc:
            raise ValueError(f"response.usage: {exc.message}") from exc


class InvalidateBody(_Body):
    ids: list[int] = Field(default_factory=list, max_length=10_000)
    namespace: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=32)
    model: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else checked_name(value, "namespace")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:  # a tag no entry can have is a typo
        return [checked_name(tag, "tag") for tag in tags]

    older_than: str | float | None = None
    similar_to: str | None = Field(default=None, min_length=1)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)
    tenant: str | None = Field(default=None, description="admin: a tenant name, or * for all")
    all: bool = False

    @field_validator("older_than")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _some_filter(self) -> InvalidateBody:
        given = (
            self.ids
            or self.namespace
            or self.tags
            or self.model
            or self.similar_to
            or self.older_than is not None
        )
        if not given and not self.all:
            raise ValueError(
                "give at least one filter (ids, namespace, tags, model, older_than, similar_to) "
                "or `all: true`"
            )
        if self.min_similarity is not None and self.similar_to is None:
            raise ValueError("`min_similarity` goes with `similar_to`")
        return self
