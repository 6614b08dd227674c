"""`promptcache index rebuild [--reembed] | check | stats`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from service.cli.common import add_common, settings_from
from service.config import Settings
from service.errors import NotFound

if TYPE_CHECKING:
    from service.maintenance import CheckReport


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("index", help="check, rebuild or describe the vector index")
    actions = parser.add_subparsers(dest="action", required=True)
    rebuild_parser = actions.add_parser("rebuild", help="rebuild the index from the store")
    rebuild_parser.add_argument(
        "--reembed", action="store_true", help="embed every entry again with the configured model"
    )
    rebuild_parser.add_argument(
        "--salvage",
        action="store_true",
        help="first copy every readable entry of a damaged store into a fresh one "
        "(the damaged one is moved aside)",
    )
    add_common(rebuild_parser)
    rebuild_parser.set_defaults(func=run_rebuild)
    for name, func, text in (
        ("check", run_check, "compare the index with the store (changes nothing)"),
        ("stats", run_stats, "entries, index size, models"),
    ):
        sub = actions.add_parser(name, help=text)
        add_common(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=func)


def run_rebuild(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from service.datadir import DataDirLock
    from service.embedder_factory import build_embedder
    from service.maintenance import rebuild
    from service.store_salvage import Salvaged, salvage_store

    settings = settings_from(args)
    salvaged: list[Salvaged] = []
    with DataDirLock(settings.data_dir, "promptcache index rebuild"):
        embedder = build_embedder(settings.embedding)
        with tqdm(total=0, unit="entry", desc="rebuild", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            def salvage() -> None:
                salvaged.append(salvage_store(settings.entries_dir, progress))

            indexed, reembedded = rebuild(
                settings,
                embedder,
                reembed=args.reembed,
                progress=progress,
                stage=bar.set_description,
                salvage=salvage if args.salvage else None,
            )
    for done in salvaged:
        print(
            f"store salvaged: {done.copied} entries copied, {done.lost} unreadable and lost; "
            f"the old store is in {done.aside} (delete it when you no longer need it)"
        )
    print(
        f"index rebuilt: {indexed} entries indexed, {reembedded} embedded with {embedder.model_id}"
    )
    return 0


def _check(settings: Settings) -> CheckReport:
    from service.embedder_factory import configured_block_models, configured_model_id
    from service.maintenance import check_data_dir

    # check and stats change nothing: a mistyped path must not become a new, empty data dir.
    if not settings.data_dir.is_dir():
        what = "is not a directory" if settings.data_dir.exists() else "does not exist"
        raise NotFound(
            f"data dir {settings.data_dir} {what} (`promptcache serve --data-dir DIR` creates one)"
        )

    embedding = settings.embedding
    return check_data_dir(
        settings, configured_model_id(embedding), configured_block_models(embedding)
    )


def run_check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = _check(settings)
    if args.json:
        print(
            json.dumps(
                {
                    "consistent": report.consistent,
                    "problems": list(report.problems),
                    "notes": list(report.notes),
                }
            )
        )
        return 0 if report.consistent else 1
    from service.datadir import lock_holder

    running = lock_holder(settings.data_dir)
    if running is not None:
        # Its index lives in memory and is saved from time to time: the saved copy read here
        # may lag it, which is not a fault of the store.
        print(
            f"note: {running} holds this data dir; this compares the store with the index it "
            "last saved, which may lag the one it serves"
        )
    if report.consistent:
        print(f"ok: {report.entries} entries, {report.index_entries or 0} in the index")
        if report.manifest_kind and report.manifest_kind != settings.index.kind:
            print(
                f"note: the saved index is {report.manifest_kind} but [index] kind is "
                f"{settings.index.kind}; `promptcache index rebuild` switches it"
            )
    for problem in report.problems:
        print(f"problem: {problem}")
    for note in report.notes:
        print(f"note: {note}")
    if report.fix is not None:
        print(("fix: stop the service, then " if running is not None else "fix: ") + report.fix)
    return 0 if report.consistent else 1


def run_stats(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = _check(settings)
    numbers = {
        "data_dir": str(settings.data_dir),
        "entries": report.entries,
        "entries_with_embedding": report.with_embedding,
        "index_entries": report.index_entries,
        "index_kind": report.manifest_kind,
        "configured_index_kind": settings.index.kind,
        "index_models": list(report.manifest_models),
        "configured_model": report.configured_model,
        "stored_embedding_models": list(report.stored_models),
        "consistent": report.consistent,
    }
    if args.json:
        print(json.dumps(numbers))
    else:
        width = max(len(k) for k in numbers)
        for key, value in numbers.items():
            print(f"{key:<{width}}  {value}", file=sys.stdout)
    return 0
