"""The `VectorIndex` seam: unit vectors with int64 ids in, nearest ids with cosine scores out.

The index knows nothing of requests, tenants or thresholds. Ids are the cache's entry ids,
so a search result names an entry directly. Queries are always 2-D, even for one vector.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Neighbour:
    id: int
    similarity: float  # cosine similarity in [-1, 1], higher is closer


class VectorIndex(Protocol):
    @property
    def dim(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add rows; an id already present is replaced."""
        ...

    def search(
        self, queries: Vectors, k: int, allowed_ids: Collection[int] | None = None
    ) -> list[list[Neighbour]]:
        """Top-k neighbours per query row, best first; only `allowed_ids` when given."""
        ...

    def remove(self, ids: Ids) -> int:
        """Remove ids; return how many were present."""
        ...

    def ids(self) -> Ids:
        """Every id in the index (used by consistency checks)."""
        ...

    def __len__(self) -> int: ...

    def save(self, directory: Path, model_id: str) -> None:
        """Write index + manifest atomically (temp file, fsync, rename)."""
        ...
