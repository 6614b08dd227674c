"""Every answer a client receives carries its own message id, as the Messages API gives.

A hit replays a stored answer, and with it the id upstream gave the first client: a client
that files or de-duplicates answers by id would take a hit for an answer it already has.
The entry a hit came from is named apart (`x-cache-entry`, the ledger's `entry_id`). A hit
is served as a whole Messages object with an id of its own (`hit_message`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.store import Entry

PREFIX = "msg_pc_"


def fresh_message_id() -> str:
    return PREFIX + secrets.token_hex(12)


def with_fresh_id(message: Mapping[str, Any]) -> dict[str, Any]:
    return {**message, "id": fresh_message_id()}


def hit_message(entry: Entry) -> dict[str, Any]:
    """A stored answer as a whole Messages object, which the SDK needs to parse a hit.

    Upstream's answers are stored whole. One stored through the cache API is plain text, or
    a message that may lack what upstream always sends (`id`, `role`, `usage`, ...): those
    are filled in, the usage from the entry's own `usage` (the token counts the caller
    gave, which price the hit's saving) or else zeros (no saving claimed)."""
    usage = entry.usage or {"input_tokens": 0, "output_tokens": 0}
    filled = {
        "type": "message",
        "role": "assistant",
        "model": entry.model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if isinstance(entry.response, dict):
        return with_fresh_id({**filled, **entry.response})
    return with_fresh_id({**filled, "content": [{"type": "text", "text": str(entry.response)}]})
