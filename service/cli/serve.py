"""`promptcache serve`: run the HTTP service on uvicorn (loopback unless told otherwise)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import socket
import sys

from service.cli.common import add_common, settings_from
from service.config import Settings
from service.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run the HTTP service")
    add_common(parser)
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def check_port_free(host: str, port: int) -> None:
    """One line for a port that is taken, before the models load: uvicorn found out only
    after a slow start, in several log lines, and exited with status 3."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # another reason (an address family the host lacks): uvicorn decides
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)"
        ) from exc


def check_stores_open(settings: Settings) -> None:
    """Open and close the ledger, the batch store and the entry store, so a damaged file
    stops the start in one line naming it (`StorageError`, as `main` prints it). Opened first
    inside the app's start-up, the same error came as ~70 lines of ASGI traceback. Each
    open is a few milliseconds (the schema, not the rows), and the app opens them again."""
    from service.batch_store import BatchStore
    from service.ledger import Ledger
    from service.store import EntryStore

    Ledger(settings.ledger_path).close()
    BatchStore(settings.data_dir / "batches.sqlite3").close()
    EntryStore(settings.entries_dir).close()


def run(args: argparse.Namespace) -> int:
    from service.api.auth import KeyRing
    from service.datadir import DataDirLock

    server: dict[str, object] = {}
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    settings = settings_from(args, server=server or None)
    host, port = settings.server.host, settings.server.port
    if not is_loopback(host) and KeyRing(settings.auth).anonymous_allowed:
        raise ConfigError(
            f"refusing to listen on {host}: no client API keys are configured, so anyone who "
            "can reach the port could use the cache. Add [[auth.keys]] to the config file or "
            "bind to 127.0.0.1"
        )
    # FAISS reads OMP_NUM_THREADS once, in every thread that searches: set it before import.
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.embedding.threads))
    import uvicorn

    from service.api.app import create_app
    from service.embedder_factory import build_embedder
    from service.pricing import load_prices

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with DataDirLock(
        settings.data_dir,
        f"promptcache serve on {host}:{port}",
        advice="or give this one another --data-dir",
    ):
        # What the settings name and cannot be loaded (a price file, an embedding model) stops
        # the start here, in one line, not as a traceback from inside the app's start-up.
        check_port_free(host, port)
        load_prices(settings.prices_file)
        check_stores_open(settings)
        embedder = build_embedder(settings.embedding)
        print(
            f"promptcache: serving on http://{host}:{port} (data dir {settings.data_dir}, "
            f"model {settings.embedding.model})",
            file=sys.stderr,
            flush=True,
        )
        uvicorn.run(
            create_app(settings, embedder=embedder),
            host=host,
            port=port,
            log_level=args.log_level,
            loop="uvloop",
            http="httptools",
        )
    return 0
