"""The `Embedder` seam: texts in, unit-length float32 rows out.

Everything above this seam (index, policy, cache) relies on three facts: rows are float32,
rows have unit L2 norm (so inner product is cosine similarity), and `model_id` names the
model exactly enough that vectors from two embedders with the same id are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """A stable name of the model; stored in the index manifest and in every entry."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        """Unicode scripts the model was trained on ("Latin", "Hangul", ...); None: all.

        The policy treats text in other scripts as unseen: it stays precision-safe there.
        """
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an `(len(texts), dim)` float32 array of unit rows."""
        ...

    def reads_whole(self, text: str) -> bool:
        """False when `text` is longer than the model reads as one input (cut, or averaged
        over windows): two such texts that differ past the window can get the same vector,
        so the policy keeps them to exact hits."""
        ...


@runtime_checkable
class RoutingEmbedder(Embedder, Protocol):
    """An embedder that sends some texts to a second model (embeddings/routed.py).

    Similarities from the two models are not on one scale, so the policy needs to know which
    texts went to the second one to apply that model's floor. Wrappers (a memo, a counter)
    forward `uses_fallback` and `blocks` when what they wrap has them.
    """

    def uses_fallback(self, text: str) -> bool:
        """True: `text` is embedded by the second model."""
        ...

    @property
    def blocks(self) -> tuple[tuple[str, int], ...]:
        """(model_id, width) of each model's block of the vector, in order: the index keeps
        one FAISS index per block (index/blocks.py)."""
        ...


def empty_or_refused(texts: Sequence[str], dim: int) -> Vectors | None:
    """The answer for input no model needs to see: an empty batch gets `(0, dim)` rows, and
    a bare `str` (a sequence of characters, embedded one by one by mistake) is refused."""
    if isinstance(texts, str):
        raise TypeError("embed takes a sequence of texts, not one str")
    return None if texts else np.zeros((0, dim), dtype=np.float32)


def fits_by_length(text: str, max_tokens: int) -> bool:
    """True: `text` fits `max_tokens` whatever the tokenizer (none makes more than 4 tokens
    of a character, one per UTF-8 byte, plus two specials). False: count its tokens to know."""
    return 4 * len(text) + 2 <= max_tokens


def normalize_rows(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Scale each row to unit length; an all-zero row stays zero rather than becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)
