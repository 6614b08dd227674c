"""`bench startup`: opening a populated cache, as a restart does, at a given entry count.

The cache is filled through `SemanticCache.store` with random unit vectors standing in for
embeddings (only their number matters here), closed, and opened again `opens` times; each
open reads every stored entry and loads and checks the saved index.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import Embedder
from service.config import Settings


def startup_figure(
    settings: Settings, embedder: Embedder, entries: int, opens: int = 3
) -> dict[str, Any]:
    from benchmarks.perf import populate
    from service.cache import SemanticCache

    with tempfile.TemporaryDirectory(prefix="promptcache-startup-") as tmp:
        cache_settings = settings.cache.model_copy(
            update={"max_entries": entries + 1, "max_bytes": 2**62}
        )
        filled = settings.model_copy(update={"data_dir": Path(tmp), "cache": cache_settings})
        t0 = time.perf_counter()
        populate(filled, embedder, entries)
        populate_s = time.perf_counter() - t0
        seconds: list[float] = []
        for _ in range(opens):
            t0 = time.perf_counter()
            cache = SemanticCache(filled, embedder)
            seconds.append(time.perf_counter() - t0)
            opened = cache.stats().entries
            cache.close()
        disk_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    if opened != entries + 1:
        raise RuntimeError(f"populated {entries + 1} entries but the cache opened {opened}")
    return {
        "entries": entries + 1,
        "index_kind": settings.index.kind,
        "populate_s": populate_s,
        "open_s": seconds,
        "open_p50_s": float(np.median(seconds)),
        "data_dir_mb": disk_bytes / 2**20,
    }


def startup_markdown(figure: dict[str, Any]) -> str:
    opens = ", ".join(f"{s:.1f}" for s in figure["open_s"])
    return (
        f"Opening a cache of {figure['entries']:,} entries ({figure['index_kind']} index, "
        f"{figure['data_dir_mb']:,.0f} MB on disk): median {figure['open_p50_s']:.1f} s "
        f"(opens: {opens} s; filling it took {figure['populate_s']:.0f} s)"
    )
