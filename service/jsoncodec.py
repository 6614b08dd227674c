"""JSON bytes: orjson's speed, with the standard library as the fallback for what it refuses.

orjson rejects integers beyond 64 bits; JSON (and the Messages API) allows them in the
free-form parts of a request. A hostile or odd body must never turn into a 500, so every
serialisation of client-supplied data goes through `dumps`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, option=option)
    except TypeError:
        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
        return text.encode()
