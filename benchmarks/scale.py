"""`bench perf` figure 5: a semantic lookup with `big` cached entries against `small`.

A lookup is one embedding of a prompt plus one index search, timed together, with the index
holding random unit rows of the width an English prompt's block has (`first_block_width`: 384 for
the routed default, whose index keeps one FAISS index per model; embedding a million prompts
would take hours, and only the row count matters to the search). Queries sit at cosine 0.95
to a stored row, near the shipped `min_similarity`: the near-duplicate a hit needs, and a
harder query for an approximate index than the row itself. The search is the one the cache
makes for a context holding every entry (unfiltered, `top_k` neighbours), recall@1 is
against the flat (exact) search over the same rows, and memory is the growth of resident
memory while the index is built, with its rows already in memory.

HNSW is measured only up to `HNSW_MAX_ROWS`: it builds 100k 384-dim rows in minutes on 2
cores, and once the cache holds several contexts its searches scan HNSW's rows exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embeddings.base import Embedder, normalize_rows
from index.manifest import IndexKind

HNSW_MAX_ROWS = 200_000
QUERY_COSINE = 0.95
_CHUNK = 100_000


def random_unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """Generated in chunks, so a million rows never need a float64 copy."""
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, _CHUNK):
        stop = min(rows, start + _CHUNK)
        out[start:stop] = normalize_rows(
            rng.standard_normal((stop - start, dim)).astype(np.float32)
        )
    return out


def first_block_width(embedder: Embedder) -> int:
    """The width of the first model's block, the leading coordinates where an English
    prompt's row sits: the index searches that block alone (index/blocks.py)."""
    from service.maintenance import index_blocks

    return index_blocks(embedder)[0].dim


def filler_rows(rng: np.random.Generator, rows: int, embedder: Embedder) -> np.ndarray:
    """Random unit rows in the first model's block, zero elsewhere: stand-ins for English
    prompts' embeddings, shaped as the embedder would make them."""
    width = first_block_width(embedder)
    out = np.zeros((rows, embedder.dim), dtype=np.float32)
    out[:, :width] = random_unit_rows(rng, rows, width)
    return out


def near_duplicates(rng: np.random.Generator, rows: np.ndarray, cosine: float) -> np.ndarray:
    """Each row turned by a random orthogonal direction to exactly `cosine`."""
    noise = rng.standard_normal(rows.shape).astype(np.float32)
    noise -= np.sum(noise * rows, axis=1, keepdims=True) * rows
    noise = normalize_rows(noise)
    turned = cosine * rows + np.sqrt(1.0 - cosine**2) * noise
    return normalize_rows(turned.astype(np.float32))


def scale_figure(
    embedder: Embedder,
    small: int,
    big: int,
    queries: int,
    top_k: int,
    kinds: Sequence[IndexKind] | None = None,
) -> dict[str, Any]:
    """`kinds` default: flat (the exact reference, measured first), IVF, and HNSW up to
    `HNSW_MAX_ROWS`."""
    from index.faiss_index import FaissIndex, set_faiss_threads

    if kinds is None:
        kinds = ["flat", "ivf", "hnsw"] if big <= HNSW_MAX_ROWS else ["flat", "ivf"]
    if not kinds or kinds[0] != "flat":
        raise ValueError("the flat index comes first: it is the exact reference for recall")
    prompts = [f"How do I rotate the API key of project number {i}?" for i in range(queries)]
    rng = np.random.default_rng(2)
    out: dict[str, Any] = {"small": small, "big": big, "kinds": list(kinds), "queries": queries}
    width = first_block_width(embedder)
    out["dim"] = width
    for size in (small, big):
        vectors = random_unit_rows(rng, size, width)
        probes = near_duplicates(rng, vectors[rng.integers(0, size, queries)], QUERY_COSINE)
        exact: np.ndarray | None = None
        for kind in kinds:
            rss_before = _rss_now_mb()
            t0 = time.perf_counter()
            set_faiss_threads(os.cpu_count() or 1)  # a bulk build gains from every core
            index = FaissIndex.rebuild_from(np.arange(size, dtype=np.int64), vectors, kind)
            set_faiss_threads(1)  # as the service searches
            build = time.perf_counter() - t0
            memory = _rss_now_mb() - rss_before
            search_ms, lookup_ms = [0.0] * queries, [0.0] * queries
            found = np.zeros(queries, dtype=np.int64)
            for i in range(queries):
                t1 = time.perf_counter()
                embedder.embed([prompts[i]])
                t2 = time.perf_counter()
                found[i] = index.search(probes[i : i + 1], top_k)[0][0].id
                t3 = time.perf_counter()
                search_ms[i], lookup_ms[i] = (t3 - t2) * 1000, (t3 - t1) * 1000
            if kind == "flat":
                exact = found
            stats = index.stats()
            out[f"{kind}_{size}"] = {
                "build_s": build,
                "search_p50_ms": _p50(search_ms),
                "lookup_p50_ms": _p50(lookup_ms),
                "recall_at_1": float(np.mean(found == exact)),
                "memory_mb": memory,
                "ivf_nlist": stats.ivf_nlist,
                "ivf_nprobe": stats.ivf_nprobe,
            }
            del index
        del vectors
    for kind in kinds:
        b, s = out[f"{kind}_{big}"], out[f"{kind}_{small}"]
        out[f"{kind}_lookup_ratio"] = b["lookup_p50_ms"] / s["lookup_p50_ms"]
        out[f"{kind}_search_ratio"] = b["search_p50_ms"] / s["search_p50_ms"]
    return out


def scale_markdown(scale: dict[str, Any]) -> str:
    big, small = scale["big"], scale["small"]
    lines = [
        f"Lookups (one embedding + one search; {scale['queries']} queries at cosine "
        f"{QUERY_COSINE} to a stored row) at {big:,} / {small:,} entries of "
        f"{scale.get('dim', '?')} dimensions:",
        "",
        "| index | lookup ratio (target ≤ 1.2×) | lookup p50 | search p50 | search ratio "
        "| recall@1 | build | memory |",
        "|---|---:|---|---|---:|---|---|---|",
    ]
    for kind in scale["kinds"]:
        b, s = scale[f"{kind}_{big}"], scale[f"{kind}_{small}"]
        name = (
            kind
            if b["ivf_nlist"] is None
            else f"ivf ({b['ivf_nlist']} lists, nprobe {b['ivf_nprobe']})"
        )
        lines.append(
            f"| {name} | {scale[f'{kind}_lookup_ratio']:.2f}× "
            f"| {b['lookup_p50_ms']:.1f} / {s['lookup_p50_ms']:.1f} ms "
            f"| {b['search_p50_ms']:.2f} / {s['search_p50_ms']:.3f} ms "
            f"| {scale[f'{kind}_search_ratio']:.1f}× "
            f"| {b['recall_at_1']:.3f} / {s['recall_at_1']:.3f} "
            f"| {b['build_s']:.1f} / {s['build_s']:.1f} s "
            f"| {b['memory_mb']:,.0f} / {s['memory_mb']:,.0f} MB |"
        )
    return "\n".join(lines)


def _p50(values: list[float]) -> float:
    return float(np.percentile(values, 50))


def _rss_now_mb() -> float:
    """Resident memory now (Linux), not the peak: an index freed before the next is built
    must not hide the next one's growth."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
