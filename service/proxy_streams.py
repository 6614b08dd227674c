"""The bytes of a streamed `/v1/messages` answer, and the iterators that carry them.

`service.proxy` decides what a streaming request gets; this holds what it is sent: a miss's
relay (`Relay`, whose cleanup runs however the response ends), a request waiting on an
identical one (`Following`: `ping`s until the answer it shares comes), a hit's replay, and
the `error` event the API sends when a stream fails after it began.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from service.sse import MessageAssembler, message_to_events
from service.upstream import StreamBroken, StreamEvent

logger = logging.getLogger(__name__)

# A streaming request waiting on an identical one gets its 200 after this long, then a
# `ping` event this often until the answer comes (the SDK skips pings, as the API sends them).
FOLLOW_COMMIT_SECONDS = 1.0
PING_SECONDS = 1.0
PING = StreamEvent("ping", {"type": "ping"}).encode()


def error_event(error_type: str, message: str) -> bytes:
    """An SSE `error` event, as the API sends one when a stream fails after it began."""
    return StreamEvent(
        "error", {"type": "error", "error": {"type": error_type, "message": message}}
    ).encode()


def feed(assembler: MessageAssembler, event: StreamEvent) -> None:
    """An event of the wrong shape (a delta for a block never started) is upstream's fault:
    the stream ends with an `error` event and a 502 row, as a broken stream does."""
    try:
        assembler.feed(event)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # The parser's words are for the log; the client hears what happened.
        logger.warning("malformed %s event from upstream: %r", event.event, exc)
        raise StreamBroken(f"upstream sent a malformed {event.event} event") from exc


class Relay:
    """A streamed miss's events, with an `aclose` that always runs the relay's cleanup.

    The cleanup (settle the identical requests waiting on this one, release the budget hold,
    bill what was consumed) lives in the relay generator's `finally`. A generator that never
    started has no `finally` to run: if the client leaves before the response starts, closing
    it would do nothing, and the requests waiting on it would wait forever. So a relay that
    never started is advanced to its first event (already in memory) before it is closed.
    """

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self._events = events
        self._started = False

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        self._started = True
        return await anext(self._events)

    async def aclose(self) -> None:
        if not self._started:
            self._started = True
            with contextlib.suppress(StopAsyncIteration):
                await anext(self._events)
        await self._events.aclose()


class Following(Relay):
    """A streaming follower's events, committed before the answer it waits on is known: the
    response headers say `x-cache: hit-exact` without its cost (the ledger has it)."""


async def replay(message: Mapping[str, Any]) -> AsyncIterator[bytes]:
    for event in message_to_events(message):
        yield event.encode()
