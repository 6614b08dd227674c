"""`bench perf`: each speed figure as a ratio to a floor measured in the same run.

These machines are shared and noisy, so an absolute millisecond means little; a ratio to the
cheapest thing that could do the same job, measured minutes apart on the same machine, does.
Figures (medians; all traffic on 127.0.0.1; every loop bounded by `requests`):

1. exact hit over HTTP vs a bare FastAPI endpoint returning the same bytes;
2. semantic hit over HTTP vs a bare endpoint doing one raw encode and one raw FAISS search
   over an index of the same size;
3. 16 concurrent semantic lookups, micro-batching on vs off (`batch_max_size=1`): throughput;
4. process start (`promptcache serve`) to the first semantic hit, vs `python -c "import torch"`;
5. a semantic lookup (one encode + one search) at `big_entries` vs `entries` cached rows, per
   index kind: p50 ratio, recall@1 against exact search, memory (`benchmarks/scale.py`);
6. each embedding model alone, side by side: one-prompt latency and batched throughput
   (`benchmarks/embedder_speed.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from benchmarks.embedder_speed import embedder_figures, embedder_markdown
from benchmarks.hitrate import MemoEmbedder
from benchmarks.scale import (
    filler_rows,
    first_block_width,
    random_unit_rows,
    scale_figure,
    scale_markdown,
)
from embeddings.base import Embedder
from service.config import Settings
from service.keys import CacheKeys

CACHED_PROMPT = "How do I reset my password on the website?"
PARAPHRASE = "How can I reset my password on the website?"
CONCURRENCY = 16


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """uvicorn on 127.0.0.1 in a thread, as the tests run it; yields the base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("benchmark server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"content-type": "application/json"}, timeout=60)


def _p50(values: list[float]) -> float:
    return float(np.percentile(values, 50))


def populate(
    settings: Settings,
    embedder: Embedder,
    entries: int,
    *,
    answer: Any = "filler answer",
    prompt_prefix: str = "",
) -> None:
    """`entries` filler prompts with random unit vectors plus one real prompt, stored through
    `SemanticCache.store` (the filler vectors stand in for embeddings: only their number
    matters to the search, and random vectors never compete with the real prompt).
    `answer` and `prompt_prefix` set how large each filler entry is on disk."""
    from benchmarks.hitrate import MODEL
    from service.cache import SemanticCache
    from service.keys import prompt_keys

    def keys_for(text: str) -> CacheKeys:
        # The tenant of a request without an API key, as the HTTP lookups below are.
        return prompt_keys([{"role": "user", "content": text}], model=MODEL, tenant="default")

    memo = MemoEmbedder(embedder)
    rng = np.random.default_rng(0)
    fillers = [f"{prompt_prefix}filler prompt {i}" for i in range(entries)]
    memo.seed(fillers, filler_rows(rng, entries, embedder))
    cache = SemanticCache(settings, memo)
    try:
        for text in fillers:
            cache.store(keys_for(text), answer)
        cache.store(keys_for(CACHED_PROMPT), "Use the 'Forgot password' link.")
    finally:
        cache.close()


def _lookup_body(prompt: str) -> bytes:
    from benchmarks.hitrate import MODEL

    return orjson.dumps({"prompt": prompt, "model": MODEL})


def _bare_app(body: bytes, work: Callable[[], None] | None) -> FastAPI:
    # Module-level imports: FastAPI resolves the handler's annotations from module globals.
    app = FastAPI()

    @app.post("/v1/cache/lookup")
    async def lookup(request: Request) -> Response:
        await request.body()
        if work is not None:
            await run_in_threadpool(work)
        return Response(body, media_type="application/json")

    return app


def http_figures(
    settings: Settings, embedder: Embedder, entries: int, requests: int
) -> dict[str, Any]:
    """Figures 1-3. The cache and its floors run side by side and each pair is timed in turn,
    request by request, so that a change of machine load hits both sides of a ratio alike."""
    import faiss

    from service.api.app import create_app

    exact_body = _lookup_body(CACHED_PROMPT)
    semantic_body = _lookup_body(PARAPHRASE)
    rng = np.random.default_rng(1)
    width = first_block_width(embedder)  # the block the cache searches for English prompts
    flat = faiss.IndexFlatIP(width)
    flat.add(random_unit_rows(rng, entries + 1, width))

    def raw_work() -> None:
        vector = embedder.embed([PARAPHRASE])
        flat.search(np.ascontiguousarray(vector[:, :width]), settings.cache.top_k)

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="promptcache-perf-") as tmp:
        batched_settings = settings.model_copy(update={"data_dir": Path(tmp) / "batched"})
        populate(batched_settings, embedder, entries)
        shutil.copytree(Path(tmp) / "batched", Path(tmp) / "unbatched")
        unbatched_settings = settings.model_copy(
            update={
                "data_dir": Path(tmp) / "unbatched",
                "embedding": settings.embedding.model_copy(update={"batch_max_size": 1}),
            }
        )
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(_serve(create_app(batched_settings, embedder=embedder)))
            c = stack.enter_context(_client(url))
            exact_reply = c.post("/v1/cache/lookup", content=exact_body)
            semantic_reply = c.post("/v1/cache/lookup", content=semantic_body)
            out["exact_status"] = exact_reply.json()["status"]
            out["semantic_status"] = semantic_reply.json()["status"]
            if (out["exact_status"], out["semantic_status"]) != ("hit-exact", "hit-semantic"):
                raise RuntimeError(f"benchmark prompts did not hit: {out}")
            bare_url = stack.enter_context(_serve(_bare_app(exact_reply.content, None)))
            bare = stack.enter_context(_client(bare_url))
            floor_url = stack.enter_context(_serve(_bare_app(semantic_reply.content, raw_work)))
            floor = stack.enter_context(_client(floor_url))
            # Each ratio's two sides take turns in a loop of their own. In one loop of all four,
            # the call after the floor's encode + search paid for its after-effects (caches
            # cold, threads still winding down), and that call was always the exact hit.
            times = _interleaved(
                {
                    "exact": lambda: c.post("/v1/cache/lookup", content=exact_body),
                    "bare": lambda: bare.post("/v1/cache/lookup", content=exact_body),
                },
                requests,
            )
            times |= _interleaved(
                {
                    "semantic": lambda: c.post("/v1/cache/lookup", content=semantic_body),
                    "floor": lambda: floor.post("/v1/cache/lookup", content=semantic_body),
                },
                requests,
            )
            unbatched_url = stack.enter_context(
                _serve(create_app(unbatched_settings, embedder=embedder))
            )
            rounds: dict[str, list[float]] = {"batched": [], "unbatched": []}
            for _ in range(2):
                rounds["batched"].append(_throughput(url, semantic_body, requests))
                rounds["unbatched"].append(_throughput(unbatched_url, semantic_body, requests))
    batched, unbatched = _p50(rounds["batched"]), _p50(rounds["unbatched"])
    out.update(
        {
            "requests": requests,
            "exact_hit_p50_ms": _p50(times["exact"]),
            "bare_endpoint_p50_ms": _p50(times["bare"]),
            "exact_ratio": _p50(times["exact"]) / _p50(times["bare"]),
            "semantic_hit_p50_ms": _p50(times["semantic"]),
            "raw_encode_search_p50_ms": _p50(times["floor"]),
            "semantic_ratio": _p50(times["semantic"]) / _p50(times["floor"]),
            "concurrent_batched_rps": batched,
            "concurrent_unbatched_rps": unbatched,
            "batching_ratio": batched / unbatched,
        }
    )
    return out


def _interleaved(
    calls: dict[str, Callable[[], httpx.Response]], requests: int, warmup: int = 20
) -> dict[str, list[float]]:
    """Milliseconds per call, the calls taking turns."""
    for _ in range(warmup):
        for call in calls.values():
            call().raise_for_status()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(requests):
        for name, call in calls.items():
            t0 = time.perf_counter()
            reply = call()
            times[name].append((time.perf_counter() - t0) * 1000)
            reply.raise_for_status()
    return times


def _throughput(url: str, body: bytes, requests: int) -> float:
    """Requests per second with CONCURRENCY clients each sending requests/CONCURRENCY, from a
    process of their own (`benchmarks/load_client.py` says why)."""
    per_client = max(requests // CONCURRENCY, 4)
    with tempfile.NamedTemporaryFile(prefix="promptcache-perf-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.load_client",
                url,
                body_file.name,
                str(CONCURRENCY),
                str(per_client),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=Path(__file__).parents[1],
        )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.strip())


def startup_figure(settings: Settings, embedder: Embedder) -> dict[str, float]:
    """Figure 4: a fresh `promptcache serve` process until its first semantic hit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
    torch_import = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="promptcache-start-") as tmp:
        data = settings.model_copy(update={"data_dir": Path(tmp)})
        populate(data, embedder, 100)
        port = _free_port()
        command = [sys.executable, "-m", "service.cli.main", "serve", "--port", str(port)]
        command += ["--data-dir", str(data.data_dir)]
        t0 = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            answering, elapsed = _first_semantic_hit(f"http://127.0.0.1:{port}", t0, process)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "start_to_first_response_s": answering,
        "start_to_first_semantic_hit_s": elapsed,
        "python_import_torch_s": torch_import,
    }


def _first_semantic_hit(
    url: str, t0: float, process: subprocess.Popen[bytes]
) -> tuple[float, float]:
    """(seconds to the first answer of any kind, seconds to the first semantic hit)."""
    body = _lookup_body(PARAPHRASE)
    headers = {"content-type": "application/json"}
    answering: float | None = None
    while time.perf_counter() - t0 < 120:
        if process.poll() is not None:
            raise RuntimeError("promptcache serve exited during the start-up benchmark")
        try:
            reply = httpx.post(f"{url}/v1/cache/lookup", content=body, headers=headers, timeout=30)
            now = time.perf_counter() - t0
            answering = now if answering is None else answering
            if reply.json().get("status") == "hit-semantic":
                return answering, now
        except httpx.TransportError:
            time.sleep(0.02)
    raise RuntimeError("no semantic hit within 120 s of start")


def run_perf_suite(
    settings: Settings,
    *,
    entries: int,
    big_entries: int,
    requests: int,
    environment: dict[str, Any],
) -> dict[str, Any]:
    from service.embedder_factory import build_embedder

    embedder = build_embedder(settings.embedding)
    result: dict[str, Any] = {"environment": environment, "model": embedder.model_id}
    result["embedders"] = embedder_figures(embedder, max(20, requests // 5))
    result["http"] = http_figures(settings, embedder, entries, requests)
    result["startup"] = startup_figure(settings, embedder)
    result["scale"] = scale_figure(
        embedder, entries, big_entries, min(requests, 200), settings.cache.top_k
    )
    return result


def perf_markdown(result: dict[str, Any]) -> str:
    http, start = result["http"], result["startup"]
    rows = [
        (
            "exact hit over HTTP / bare endpoint (p50)",
            http["exact_ratio"],
            "≤ 1.5×",
            f"{http['exact_hit_p50_ms']:.2f} / {http['bare_endpoint_p50_ms']:.2f} ms",
        ),
        (
            "semantic hit over HTTP / bare + encode + search (p50)",
            http["semantic_ratio"],
            "≤ 1.25×",
            f"{http['semantic_hit_p50_ms']:.2f} / {http['raw_encode_search_p50_ms']:.2f} ms",
        ),
        (
            f"{CONCURRENCY} concurrent lookups: batching / no batching (throughput)",
            http["batching_ratio"],
            "≥ 2×",
            f"{http['concurrent_batched_rps']:.1f} / {http['concurrent_unbatched_rps']:.1f} req/s",
        ),
    ]
    lines = [
        f"`{result['environment']['command']}` — model `{result['model']}`, "
        f"{result['environment']['machine']['cpus']} CPUs, load average at start "
        f"{result['environment']['machine']['load_average_at_start']}",
        "",
        "| figure | ratio | target | measured |",
        "|---|---:|---|---|",
    ]
    lines += [
        f"| {name} | {ratio:.2f}× | {target} | {detail} |" for name, ratio, target, detail in rows
    ]
    lines.append(
        f"| start to first semantic hit | {start['start_to_first_semantic_hit_s']:.1f} s | ≤ 3 s "
        f"| first answer of any kind {start['start_to_first_response_s']:.1f} s; "
        f"`python -c 'import torch'` alone {start['python_import_torch_s']:.1f} s |"
    )
    lines += ["", scale_markdown(result["scale"])]
    lines += ["", "Embedders side by side (the same prompts, in turn):", ""]
    lines.append(embedder_markdown(result["embedders"]))
    return "\n".join(lines)
