"""Vectors to nearest entry ids with cosine scores: the `VectorIndex` seam and its FAISS build.

The FAISS-backed names load FAISS on first use rather than on `import index`, so commands that
never search (`promptcache --help`, reading a manifest) stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from index.base import Ids, Neighbour, VectorIndex, Vectors
from index.manifest import (
    FORMAT_VERSION,
    IndexCorrupt,
    IndexKind,
    IndexLoadError,
    IndexMissing,
    IndexModelMismatch,
    Manifest,
    read_manifest,
)

if TYPE_CHECKING:
    from index.faiss_index import (
        DEFAULT_COMPACT_FRACTION,
        FaissIndex,
        IndexStats,
        load_index,
        set_faiss_threads,
    )

_FAISS_NAMES = frozenset(
    {"DEFAULT_COMPACT_FRACTION", "FaissIndex", "IndexStats", "load_index", "set_faiss_threads"}
)

__all__ = [
    "DEFAULT_COMPACT_FRACTION",
    "FORMAT_VERSION",
    "FaissIndex",
    "Ids",
    "IndexCorrupt",
    "IndexKind",
    "IndexLoadError",
    "IndexMissing",
    "IndexModelMismatch",
    "IndexStats",
    "Manifest",
    "Neighbour",
    "VectorIndex",
    "Vectors",
    "load_index",
    "read_manifest",
    "set_faiss_threads",
]


def __getattr__(name: str) -> object:
    if name in _FAISS_NAMES:
        return getattr(importlib.import_module("index.faiss_index"), name)
    raise AttributeError(f"module 'index' has no attribute {name!r}")
