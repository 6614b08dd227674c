"""Run the stand-in Anthropic server on loopback for a test, in a background thread.

Usage (any test module):

    from tests.standin_server import RunningStandin, running_standin

    with running_standin() as standin:          # or running_standin(StandinState(...))
        client = anthropic.Anthropic(base_url=standin.base_url, api_key="test")
        ...
        standin.state.inject("rate_limit")       # faults, counters: see service.standin
        assert standin.state.messages_calls == 1

For a server shared by a module, wrap it in a module-scoped fixture and call
`standin.state.reset()` between tests. Shutdown is bounded (about one second even with
requests still sleeping in a fault), so tests never hang on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from service.standin import StandinState, create_standin_app


@dataclass(frozen=True)
class RunningStandin:
    base_url: str  # "http://127.0.0.1:PORT", no trailing slash
    state: StandinState


@contextmanager
def running_standin(state: StandinState | None = None) -> Iterator[RunningStandin]:
    """Serve a fresh stand-in on 127.0.0.1 (free port) until the block exits."""
    state = state if state is not None else StandinState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_standin_app(state),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"standin-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.01)
        yield RunningStandin(base_url=f"http://127.0.0.1:{port}", state=state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
