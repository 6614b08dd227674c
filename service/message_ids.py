"""Every answer a client receives carries its own message id, as the Messages API gives.

A hit replays a stored answer, and with it the id upstream gave the first client: a client
that files or de-duplicates answers by id would take a hit for an answer it already has.
The entry a hit came from is named apart (`x-cache-entry`, the ledger's `entry_id`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

PREFIX = "msg_pc_"


def fresh_message_id() -> str:
    return PREFIX + secrets.token_hex(12)


def with_fresh_id(message: Mapping[str, Any]) -> dict[str, Any]:
    return {**message, "id": fresh_message_id()}
