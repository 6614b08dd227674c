"""Messages <-> server-sent events, both ways, with no I/O.

A streamed miss is relayed event by event and assembled here into the message that gets
stored; a hit on a streaming request is replayed from the stored message as the same event
sequence the API sends (`message_start`, per block `content_block_start` / deltas /
`content_block_stop`, `message_delta` with the stop reason and usage, `message_stop`), so the
SDK's stream helpers build a final message equal to the original. The events are not the
ones upstream sent: text is re-chunked into 48-character deltas and tool input comes as one
`input_json_delta`; only the message they build is the same.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jiter

from service.upstream import StreamEvent

_TEXT_CHUNK = 48  # characters per replayed text delta: small enough to look like a stream


def _chunks(text: str, size: int = _TEXT_CHUNK) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(index: int, block: Mapping[str, Any]) -> list[StreamEvent]:
    kind = block.get("type")
    events: list[StreamEvent] = []
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        if "citations" in block:
            # A list starts empty and is streamed below; null stays null (the SDK's stream
            # helper keeps the start block's value, so `[]` would change the final message).
            start["citations"] = [] if isinstance(block["citations"], list) else None
        events.append(
            StreamEvent(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in _chunks(str(block.get("text", ""))):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                StreamEvent(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        citations = block.get("citations")
        # The API streams each citation as its own delta; the start block carried none.
        for citation in citations if isinstance(citations, list) else ():
            delta = {"type": "citations_delta", "citation": citation}
            events.append(
                StreamEvent(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
    elif kind in ("tool_use", "server_tool_use"):
        start = {key: value for key, value in block.items() if key != "input"}
        start["input"] = {}
        events.append(
            StreamEvent(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        partial = json.dumps(block.get("input", {}), ensure_ascii=False, separators=(",", ":"))
        delta = {"type": "input_json_delta", "partial_json": partial}
        events.append(
            StreamEvent(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(
            StreamEvent(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in _chunks(str(block.get("thinking", ""))):
            delta = {"type": "thinking_delta", "thinking": piece}
            events.append(
                StreamEvent(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        delta = {"type": "signature_delta", "signature": block.get("signature", "")}
        events.append(
            StreamEvent(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
    else:  # redacted_thinking and anything newer: sent whole in the start event
        events.append(
            StreamEvent(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": dict(block)},
            )
        )
    events.append(StreamEvent("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def message_to_events(message: Mapping[str, Any]) -> list[StreamEvent]:
    """The event sequence the Messages API would have streamed for `message`."""
    usage = dict(message.get("usage") or {})
    head = {k: copy.deepcopy(v) for k, v in message.items() if k not in ("content", "usage")}
    head.update(content=[], stop_reason=None, stop_sequence=None)
    head["usage"] = {**usage, "output_tokens": min(1, int(usage.get("output_tokens", 0) or 0))}
    events = [StreamEvent("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(message.get("content") or []):
        events.extend(_block_events(index, block))
    delta = {
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
    }
    events.append(
        StreamEvent("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
    )
    events.append(StreamEvent("message_stop", {"type": "message_stop"}))
    return events


class MessageAssembler:
    """Feed events in arrival order; `message` is the complete message after `message_stop`."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._json_parts: dict[int, list[str]] = {}
        self.complete = False
        self.cut_inputs: list[int] = []  # tool blocks whose input JSON was cut off

    def feed(self, event: StreamEvent) -> None:
        data = event.data
        kind = data.get("type", event.event)
        if kind == "message_start":
            started: dict[str, Any] = copy.deepcopy(data["message"])
            started.setdefault("content", [])
            self._message = started
        elif self._message is None:
            return
        elif kind == "content_block_start":
            blocks = self._message["content"]
            block = copy.deepcopy(data["content_block"])
            index = int(data.get("index", len(blocks)))
            while len(blocks) <= index:
                blocks.append({})
            blocks[index] = block
        elif kind == "content_block_delta":
            self._apply_delta(int(data.get("index", 0)), data.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(data.get("index", 0))
            parts = self._json_parts.pop(index, None)
            if parts is not None:
                self._message["content"][index]["input"] = self._input(index, "".join(parts))
        elif kind == "message_delta":
            self._message.update(data.get("delta") or {})
            usage = self._message.setdefault("usage", {})
            for key, value in (data.get("usage") or {}).items():
                if value is not None:
                    usage[key] = value
        elif kind == "message_stop":
            self.complete = True

    def _input(self, index: int, joined: str) -> Any:
        """A tool block's input from its `input_json_delta`s. An answer cut by `max_tokens`
        inside the input ends the block on JSON cut mid-way: the API sends it that way, so
        it is no fault of the stream. The input is read as the SDK reads it (what parses of
        it), and the block is listed in `cut_inputs`: such an answer must not be stored."""
        if not joined:
            return {}
        try:
            return json.loads(joined)
        except ValueError:
            self.cut_inputs.append(index)
            return jiter.from_json(joined.encode(), partial_mode=True)

    def _apply_delta(self, index: int, delta: Mapping[str, Any]) -> None:
        assert self._message is not None
        block = self._message["content"][index]
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._json_parts.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    @property
    def message(self) -> dict[str, Any] | None:
        return self._message if self.complete else None

    @property
    def partial(self) -> dict[str, Any] | None:
        """The message as far as it came, complete or not (None before `message_start`)."""
        return self._message
