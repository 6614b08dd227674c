"""`promptcache standin`: run the local stand-in Anthropic API (canned answers) for demos.

Point promptcache's upstream at it (`ANTHROPIC_BASE_URL=http://127.0.0.1:8081`, any
`ANTHROPIC_API_KEY`) to try the whole service without an Anthropic account. It never talks
to Anthropic; the banner says so loudly so nobody mistakes its answers for Claude's.
"""

from __future__ import annotations

import argparse

from service.cli.common import add_common


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "standin", help="run a local FAKE Anthropic API with canned answers (tests and demos)"
    )
    add_common(parser)  # accepted like every command's; the stand-in keeps no data
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    parser.add_argument(
        "--min-cacheable-tokens",
        type=int,
        default=1024,
        help="shortest prefix the simulated prompt caching will cache (default 1024)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every /v1/messages call"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    if args.min_cacheable_tokens < 0 or args.latency < 0:
        raise ValueError("--min-cacheable-tokens and --latency must not be negative")
    import uvicorn

    from service.standin import StandinState, create_standin_app

    state = StandinState(
        min_cacheable_tokens=args.min_cacheable_tokens, latency_seconds=args.latency
    )
    print(
        f"*** STAND-IN Anthropic API on http://{args.host}:{args.port} — a local FAKE for tests "
        "and demos: canned answers, NOT Claude, never contacts Anthropic ***",
        flush=True,
    )
    uvicorn.run(create_standin_app(state), host=args.host, port=args.port, log_level="info")
    return 0
