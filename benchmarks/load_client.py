"""Concurrent HTTP clients for `bench perf`'s throughput figure, run as a process of their own.

Clients in the server's process would share its GIL: under 16 client threads a server
thread waiting to re-take the GIL after a SQLite read or a numpy call waited for the client
threads too, which no deployment's server does. Usage (prints requests per second):

    python -m benchmarks.load_client URL BODY_FILE CONCURRENCY REQUESTS_PER_CLIENT
"""

from __future__ import annotations

import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

PATH = "/v1/cache/lookup"


def requests_per_second(url: str, body: bytes, concurrency: int, per_client: int) -> float:
    """One warm-up round (connections, threads), then one timed round of the same requests.

    The clients are built before the clock starts: an `httpx.Client` loads a TLS context when
    it is made (about 25 ms of CPU here, even for http://).
    """
    headers = {"content-type": "application/json"}
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=url, headers=headers, timeout=60))
            for _ in range(concurrency)
        ]

        def client(c: httpx.Client) -> None:
            for _ in range(per_client):
                c.post(PATH, content=body).raise_for_status()

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(client, clients))
            started = time.perf_counter()
            list(pool.map(client, clients))
            elapsed = time.perf_counter() - started
    return concurrency * per_client / elapsed


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, body_file, concurrency, per_client = argv
    rate = requests_per_second(url, Path(body_file).read_bytes(), int(concurrency), int(per_client))
    print(f"{rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
