"""The `promptcache` command: one module per command group, errors as one line.

Heavy imports (torch, faiss) happen inside the commands that need them, so `--help` is
instant. Every command exits 0 on success and non-zero with one clear line on error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from service.errors import PromptCacheError

# Command modules; each has `add_parser(subparsers)`. Optional ones may not exist yet.
_COMMANDS = (
    "service.cli.serve",
    "service.cli.index_cmd",
    "service.cli.invalidate",
    "service.cli.report",
    "service.cli.standin",
    "service.cli.batch",
    "service.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptcache",
        description="Semantic cache in front of the Anthropic Messages API.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except PromptCacheError as exc:
        print(f"promptcache: {exc.message}", file=sys.stderr)
        return 2 if exc.status < 500 else 1
    except (ValueError, OSError) as exc:
        print(f"promptcache: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
