"""Labelled prompt pairs for `promptcache bench` (DESIGN §8): loading, hashing, describing.

A dataset is JSONL, one pair a line: `{"a": cached prompt, "b": new prompt, "duplicate": bool}`;
other fields are ignored. Its sha256 goes into every result file, so a number can always be
traced to the exact bytes it was measured on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from service.errors import InvalidRequest


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    duplicate: bool


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    sha256: str
    pairs: tuple[Pair, ...]

    @property
    def duplicates(self) -> int:
        return sum(p.duplicate for p in self.pairs)

    @property
    def distinct_cached(self) -> tuple[str, ...]:
        """Every distinct `a`, in first-seen order: what the benchmark stores."""
        return tuple(dict.fromkeys(p.a for p in self.pairs))


def dataset_name(path: Path) -> str:
    """`.../qqp_dev/pairs.jsonl` -> `qqp_dev`; `bench_pairs.jsonl` -> `bench_pairs`."""
    return path.parent.name if path.stem == "pairs" else path.stem


def load_pairs(path: Path, *, limit: int | None = None) -> Dataset:
    """Read a pairs file; `limit` keeps the first N pairs (the hash is of the whole file)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read dataset {path}: {exc.strerror or exc}") from exc
    pairs: list[Pair] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            pair = Pair(str(row["a"]), str(row["b"]), bool(row["duplicate"]))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"{path}:{number}: not a pair ({exc!r})") from exc
        if not pair.a.strip() or not pair.b.strip():
            raise InvalidRequest(f"{path}:{number}: empty prompt")
        pairs.append(pair)
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise InvalidRequest(f"dataset {path} has no pairs")
    return Dataset(dataset_name(path), str(path), hashlib.sha256(raw).hexdigest(), tuple(pairs))
