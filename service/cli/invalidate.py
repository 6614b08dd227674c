"""`promptcache invalidate`: remove entries by id, namespace, tag, model, age or meaning.

Runs on a stopped service (it takes the data-dir lock); while the service runs, use
`POST /v1/cache/invalidate` with an admin key instead.
"""

from __future__ import annotations

import argparse

from service.cli.common import add_common, settings_from


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("invalidate", help="remove cached entries")
    add_common(parser)
    parser.add_argument("--id", type=int, action="append", default=[], dest="ids")
    parser.add_argument(
        "--tenant", help="only this tenant (default, or `*`: all tenants); not a filter alone"
    )
    parser.add_argument("--namespace")
    parser.add_argument("--tag", action="append", default=[], dest="tags")
    parser.add_argument("--model", help="entries answered by this model")
    parser.add_argument("--older-than", help="age such as 3600, 30m, 12h, 7d")
    parser.add_argument("--similar-to", help="entries a lookup of this text would hit")
    parser.add_argument("--min-similarity", type=float, help="threshold for --similar-to")
    parser.add_argument("--all", action="store_true", help="remove every entry")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.api.schemas import parse_duration
    from service.cache import InvalidateFilter, SemanticCache
    from service.datadir import DataDirLock
    from service.embedder_factory import build_embedder

    # As the HTTP API: a tenant narrows the other filters and is not one (`--tenant acme`
    # alone removing all of acme's entries surprised as much as it would over HTTP).
    given = (
        args.ids or args.namespace or args.tags or args.model or args.older_than or args.similar_to
    )
    if not given and not args.all:
        raise ValueError("give at least one filter, or --all to remove every entry")
    if args.min_similarity is not None and not -1.0 <= args.min_similarity <= 1.0:
        raise ValueError("--min-similarity must be in [-1, 1]")
    what = InvalidateFilter(
        tenant=None if args.tenant == "*" else args.tenant,
        namespace=args.namespace,
        tags=tuple(args.tags),
        model=args.model,
        older_than=None if args.older_than is None else parse_duration(args.older_than),
        similar_to=args.similar_to,
        min_similarity=args.min_similarity,
        ids=tuple(args.ids),
    )
    settings = settings_from(args)
    with DataDirLock(settings.data_dir, "promptcache invalidate"):
        cache = SemanticCache(settings, build_embedder(settings.embedding))
        try:
            removed = cache.invalidate(what)
        finally:
            cache.close()
    print(f"removed {removed} entries")
    return 0
