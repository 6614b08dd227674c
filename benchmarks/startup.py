"""`bench startup`: opening a populated cache, as a restart does, at a given entry count.

The cache is filled through `SemanticCache.store` with random unit vectors standing in for
embeddings (only their number matters here), closed, and opened again `opens` times; each
open reads every start-up record and loads and checks the saved index. Each open runs in a
fresh process, as a restart does: in the process that has just filled a million entries, opens
took 20-40% longer. The child reports the open's seconds and its peak memory (both embedding
models included).

Entries are shaped like real ones, because what an open costs grows with what each entry
holds: a prompt of about 500 characters and, as the answer, an Anthropic message of about
1.5 KB. Timed in the same run, beside each open: one read of every start-up record (what an
open reads now) and one read of every whole entry (what it read before the records existed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import Embedder
from service.config import Settings

# Run in a child: builds the configured embedder (untimed), then times one open.
_OPEN_IN_CHILD = """
import json, resource, sys, time
from service.cache import SemanticCache
from service.config import Settings
from service.embedder_factory import build_embedder
settings = Settings.model_validate_json(sys.stdin.read())
embedder = build_embedder(settings.embedding)
t0 = time.perf_counter()
cache = SemanticCache(settings, embedder)
seconds = time.perf_counter() - t0
entries = cache.stats().entries
cache.close()
try:  # this process's own high-water mark: ru_maxrss also counts the parent's at exec
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    peak = int(hwm.split()[1]) * 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "entries": entries, "peak_bytes": peak}))
"""


def open_in_child(settings: Settings) -> dict[str, Any]:
    """One open of the cache in a fresh Python process: seconds, entries, peak bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_IN_CHILD],
        input=settings.model_dump_json(),
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"opening the cache in a child process failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# About 500 characters of context before each filler prompt's own words.
PROMPT_PREFIX = (
    "You are reviewing a pull request for a payments service. The change adds retries to the "
    "client that calls the card processor, with exponential backoff capped at eight seconds, "
    "and a circuit breaker that opens after five consecutive failures. The author says the "
    "retries are idempotent because every request carries an idempotency key. Read the diff "
    "summary below and answer the question at the end in at most three short paragraphs, "
    "naming any risk you see for double charges or for requests that never finish. Question: "
)


def message_answer(text_bytes: int = 1_400) -> dict[str, Any]:
    """An answer as the Messages API returns it, with about `text_bytes` of text."""
    sentence = "The retry loop keeps the idempotency key, so a repeated charge is refused. "
    text = (sentence * (text_bytes // len(sentence) + 1))[:text_bytes]
    return {
        "id": "msg_startup_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 180, "output_tokens": 320},
    }


def startup_figure(
    settings: Settings, embedder: Embedder, entries: int, opens: int = 3
) -> dict[str, Any]:
    from benchmarks.perf import populate
    from service.store import EntryStore

    with tempfile.TemporaryDirectory(prefix="promptcache-startup-") as tmp:
        cache_settings = settings.cache.model_copy(
            update={"max_entries": entries + 1, "max_bytes": 2**62}
        )
        filled = settings.model_copy(update={"data_dir": Path(tmp), "cache": cache_settings})
        t0 = time.perf_counter()
        populate(filled, embedder, entries, answer=message_answer(), prompt_prefix=PROMPT_PREFIX)
        populate_s = time.perf_counter() - t0
        seconds: list[float] = []
        peaks: list[int] = []
        records_read: list[float] = []
        full_read: list[float] = []
        for _ in range(opens):
            store = EntryStore(filled.entries_dir)
            t0 = time.perf_counter()
            records = sum(1 for _ in store.records())
            records_read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            read = sum(1 for _ in store.scan())
            full_read.append(time.perf_counter() - t0)
            store.close()
            child = open_in_child(filled)
            seconds.append(child["seconds"])
            peaks.append(child["peak_bytes"])
            opened = child["entries"]
        disk_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    if {opened, read, records} != {entries + 1}:
        raise RuntimeError(
            f"populated {entries + 1} entries but the cache opened {opened}, "
            f"and {records} records and {read} entries were read"
        )
    records_p50 = float(np.median(records_read))
    full_read_p50 = float(np.median(full_read))
    return {
        "entries": entries + 1,
        "index_kind": settings.index.kind,
        "populate_s": populate_s,
        "open_s": seconds,
        "open_p50_s": float(np.median(seconds)),
        "open_peak_mb": max(peaks) / 2**20,
        "records_read_s": records_read,
        "records_read_p50_s": records_p50,
        "full_read_s": full_read,
        "full_read_p50_s": full_read_p50,
        "records_over_full_read": records_p50 / full_read_p50,
        "data_dir_mb": disk_bytes / 2**20,
    }


def startup_markdown(figure: dict[str, Any]) -> str:
    opens = ", ".join(f"{s:.1f}" for s in figure["open_s"])
    return (
        f"Opening a cache of {figure['entries']:,} entries ({figure['index_kind']} index, "
        f"{figure['data_dir_mb']:,.0f} MB on disk): median {figure['open_p50_s']:.1f} s "
        f"(opens, each in a fresh process: {opens} s; peak memory "
        f"{figure['open_peak_mb']:,.0f} MB; filling it took {figure['populate_s']:.0f} s). "
        f"Reading every start-up record: median {figure['records_read_p50_s']:.2f} s, "
        f"{figure['records_over_full_read']:.2f}x reading every whole entry "
        f"({figure['full_read_p50_s']:.2f} s)."
    )
