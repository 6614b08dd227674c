"""`promptcache bench hitrate | calibrate | fit-verifier | perf` (DESIGN §7, §8).

The commands load the configured embedding model and settings like `serve` does, so what they
measure is what the server would decide; the work itself lives in the `benchmarks` package.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.common import add_common, settings_from
from service.errors import InvalidRequest

if TYPE_CHECKING:
    from benchmarks.datasets import Dataset
    from benchmarks.hitrate import Policy, ProbeSet
    from service.config import Settings


def _thresholds(value: str) -> list[float]:
    try:
        numbers = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {value}") from exc
    if not numbers or any(not -1.0 <= n <= 1.0 for n in numbers):
        raise argparse.ArgumentTypeError("similarities are cosines in [-1, 1]")
    return sorted(set(numbers))


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 < rate < 1.0:
        raise argparse.ArgumentTypeError("a rate is a fraction in (0, 1), e.g. 0.02")
    return rate


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("bench", help="offline quality and speed benchmarks")
    actions = parser.add_subparsers(dest="action", required=True)

    hitrate = actions.add_parser("hitrate", help="hit rate / false-hit rate on labelled pairs")
    _dataset_args(hitrate)
    hitrate.add_argument("--out", type=Path, default=Path("bench-results"), help="result dir")
    hitrate.add_argument(
        "--min-similarity",
        type=_thresholds,
        help="comma-separated thresholds to sweep (default 0.80,0.82,...,0.98 + configured)",
    )
    hitrate.add_argument(
        "--baseline", action="store_true", help="add the plain-cosine policy (top-1, no guards)"
    )
    hitrate.add_argument(
        "--ablation", action="store_true", help="add each guard alone and the verifier"
    )
    hitrate.set_defaults(func=run_hitrate)

    calibrate = actions.add_parser(
        "calibrate", help="the most permissive setting under a false-hit-rate bound"
    )
    _dataset_args(calibrate)
    calibrate.add_argument("--max-false-hit-rate", type=_rate, required=True)
    calibrate.add_argument("--out", type=Path, help="also write the grid as JSON here")
    calibrate.set_defaults(func=run_calibrate)

    fit = actions.add_parser("fit-verifier", help="fit the verifier's weights on labelled pairs")
    _dataset_args(fit)
    fit.add_argument("--out", type=Path, required=True, help="verifier JSON file to write")
    fit.add_argument("--floor", type=float, default=0.85, help="lowest cosine trained on")
    fit.add_argument("--min-score", type=float, default=0.5, help="min_score written")
    fit.set_defaults(func=run_fit)

    perf = actions.add_parser("perf", help="latency and throughput as ratios to their floors")
    add_common(perf)
    perf.add_argument("--entries", type=int, default=10_000, help="cache size for lookups")
    perf.add_argument(
        "--big-entries", type=int, default=1_000_000, help="index size of the scale test"
    )
    perf.add_argument("--requests", type=int, default=300, help="timed requests per figure")
    perf.add_argument("--out", type=Path, default=Path("bench-results"), help="result dir")
    perf.set_defaults(func=run_perf)

    startup = actions.add_parser("startup", help="time to open a populated cache (a restart)")
    add_common(startup)
    startup.add_argument("--entries", type=int, default=100_000, help="entries to store first")
    startup.add_argument("--opens", type=int, default=3, help="timed opens (median reported)")
    startup.set_defaults(func=run_startup)


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--dataset", type=Path, required=True, help="pairs JSONL (DESIGN §8)")
    parser.add_argument("--limit", type=int, help="use only the first N pairs")
    parser.add_argument(
        "--sweep",
        choices=("min_similarity", "fallback_min_similarity"),
        default="min_similarity",
        help="the setting to sweep: fallback_min_similarity is the floor of text the routed "
        "embedder sends to its second model (Korean with the default)",
    )


def _swept(policy: Policy, args: argparse.Namespace, probes: ProbeSet) -> Policy:
    if args.sweep != "fallback_min_similarity":
        return policy
    if probes.base.fallback is None:
        raise InvalidRequest(
            "--sweep fallback_min_similarity needs a routed embedder: embedding.model must "
            "leave some script to embedding.fallback_model"
        )
    return replace(policy, sweeps_fallback=True)


def _probe(args: argparse.Namespace) -> tuple[Settings, Dataset, ProbeSet]:
    from benchmarks.datasets import load_pairs
    from benchmarks.hitrate import collect_probes
    from service.embedder_factory import build_embedder

    settings = settings_from(args)
    dataset = load_pairs(args.dataset, limit=args.limit)
    embedder = build_embedder(settings.embedding)
    return settings, dataset, collect_probes(settings, embedder, dataset)


def run_hitrate(args: argparse.Namespace) -> int:
    from benchmarks import report
    from benchmarks.hitrate import (
        ablation_policies,
        configured_policy,
        hitrate_result,
        plain_cosine_policy,
    )
    from service.verifier import load_verifier

    settings, dataset, probes = _probe(args)
    shipped = _swept(configured_policy(settings, probes.base), args, probes)
    policies = [shipped]
    if args.baseline:
        policies.append(plain_cosine_policy())
    if args.ablation:
        policies += ablation_policies(shipped, load_verifier("bundled"))
    grid = args.min_similarity or [round(0.80 + 0.02 * i, 2) for i in range(10)]
    thresholds = sorted({*grid, shipped.configured_value(probes.base)})
    result = hitrate_result(probes, policies, thresholds, report.environment())
    out: Path = args.out
    stem = f"hitrate-{dataset.name}"
    report.write_json(out / f"{stem}.json", result)
    markdown = report.hitrate_markdown(result)
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    plot = report.plot_tradeoff(out / f"{stem}.png", f"{dataset.name}", result["policies"])  # type: ignore[arg-type]
    print(markdown)
    print(f"wrote {out / stem}.json, .md" + (", .png" if plot else ""))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from benchmarks import report
    from benchmarks.calibrate import calibrate
    from benchmarks.hitrate import configured_policy

    settings, dataset, probes = _probe(args)
    policy = _swept(configured_policy(settings, probes.base), args, probes)
    choice, grid = calibrate(probes, policy, args.max_false_hit_rate)
    if args.out is not None:
        report.write_json(
            args.out / f"calibrate-{dataset.name}.json",
            {
                "environment": report.environment(),
                "dataset": {"name": dataset.name, "sha256": dataset.sha256},
                "max_false_hit_rate": args.max_false_hit_rate,
                "chosen": None if choice is None else choice.tally.row(),
                "grid": [
                    {**c.tally.row(), "verifier_min_score": c.verifier_min_score} for c in grid
                ],
            },
        )
    if choice is None:
        print(
            f"no setting keeps the false-hit rate's 95% upper bound under "
            f"{args.max_false_hit_rate:.2%} on {dataset.name}"
        )
        return 1
    tally = choice.tally
    print(
        f"{dataset.name}: hit rate {report.pct(tally.hit_rate)}, false-hit rate "
        f"{report.pct(tally.false_hit_rate, 2)} (95% upper {report.pct(tally.false_hit_upper, 2)}"
        f" <= {args.max_false_hit_rate:.2%}), precision {report.pct(tally.precision)}"
    )
    print("use in the config file:\n")
    print("\n".join(choice.config_lines()))
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from benchmarks import report
    from benchmarks.fit_verifier import fit_verifier

    settings, dataset, probes = _probe(args)
    verifier, scores = fit_verifier(
        probes,
        tuple(settings.policy.guards),
        floor=args.floor,
        min_score=args.min_score,
        source=f"{dataset.name} sha256:{dataset.sha256[:16]} model:{probes.model_id} "
        f"floor:{args.floor:g}",
    )
    report.write_json(args.out, {**verifier.to_json(), "cross_validation": scores})
    print(f"wrote {args.out}: {dict(verifier.weights)} bias {verifier.bias:.4f}")
    print(
        f"out-of-fold AUC {scores['auc_verifier_out_of_fold']:.4f} "
        f"(cosine alone {scores['auc_cosine_alone']:.4f}) on {int(scores['rows'])} rows"
    )
    return 0


def run_perf(args: argparse.Namespace) -> int:
    from benchmarks import report
    from benchmarks.perf import perf_markdown, run_perf_suite

    settings = settings_from(args)
    result = run_perf_suite(
        settings,
        entries=args.entries,
        big_entries=args.big_entries,
        requests=args.requests,
        environment=report.environment(),
    )
    report.write_json(args.out / "perf.json", result)
    markdown = perf_markdown(result)
    (args.out / "perf.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


def run_startup(args: argparse.Namespace) -> int:
    from benchmarks.startup import startup_figure, startup_markdown
    from service.embedder_factory import build_embedder

    if args.entries < 1 or args.opens < 1:
        raise InvalidRequest("--entries and --opens must be at least 1")
    settings = settings_from(args)
    figure = startup_figure(settings, build_embedder(settings.embedding), args.entries, args.opens)
    print(startup_markdown(figure))
    return 0
