"""An Anthropic-shaped upstream on 127.0.0.1 that breaks in ways the stand-in cannot.

The stand-in is an ASGI app, so it cannot cut a body short under a `content-length`, reset
a connection, stall after the headers, or hold a stream until a test says so. This server
writes raw HTTP/1.1 on asyncio sockets in a background thread. What it does is picked by a
`MODE:<name>` word in the last user turn:

    normal          a whole answer (streamed or not)
    cut_body        200 with a content-length, half the body, then the connection closed
    reset_body      200 with a content-length, half the body, then a TCP reset
    stall_body      200 with a content-length and 20 bytes of body, then nothing
    held            a stream that sends `message_start`, then waits for `release()`
    tool_cut        a stream cut by max_tokens inside a tool_use block's input JSON

`calls` counts the requests to `/v1/messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

USAGE = {"input_tokens": 100, "output_tokens": 50}
TEXT = "The quick brown fox jumps over the lazy dog."
PARTIAL_INPUT = '{"path": "a.txt", "content": "long te'


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _message(model: str, mode: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": f"[{mode}] {TEXT}"}]
    stop = "end_turn"
    if mode == "tool_cut":
        content = [
            {"type": "text", "text": "Calling the tool."},
            {"type": "tool_use", "id": "toolu_01", "name": "write_file", "input": {}},
        ]
        stop = "max_tokens"
    return {
        "id": "msg_faulty",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": dict(USAGE),
    }


def _events(message: dict[str, Any]) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        head = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
        )
        if block["type"] == "text":
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            delta = {"type": "input_json_delta", "partial_json": PARTIAL_INPUT}
        events.append(
            _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    events.append(_sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


class FaultyUpstream:
    def __init__(self) -> None:
        self.calls = 0
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()
        self._stopping = asyncio.Event()

    def release(self) -> None:
        """Let `held` streams go on past their `message_start`."""
        self._loop.call_soon_threadsafe(self._released.set)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                if not await self._answer(body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be used again."""
        self.calls += 1
        content = body["messages"][-1]["content"]
        mode = next((w[5:] for w in str(content).split() if w.startswith("MODE:")), "normal")
        message = _message(str(body["model"]), mode)
        if not body.get("stream"):
            raw = json.dumps(message).encode()
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(raw)
            )
            if mode == "stall_body":
                writer.write(head + raw[:20])
                await writer.drain()
                await self._stopping.wait()
                return False
            if mode in ("cut_body", "reset_body"):
                writer.write(head + raw[: len(raw) // 2])
                await writer.drain()
                if mode == "reset_body":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                return False
            writer.write(head + raw)
            await writer.drain()
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for index, event in enumerate(_events(message)):
            if index == 1 and mode == "held":
                await self._released.wait()
            writer.write(_chunk(event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        server = await asyncio.start_server(self._handle, sock=sock)
        ready.set()
        async with server:
            await self._stopping.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultyUpstream]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        ready = threading.Event()
        thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._serve(sock, ready),), daemon=True
        )
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._released.set)
            self._loop.call_soon_threadsafe(self._stopping.set)
            thread.join(timeout=10)
            self._loop.close()
