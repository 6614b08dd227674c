"""Two models behind one `Embedder`: each text goes to the one that covers its script.

The bundled English model is the better one on English (docs/multilingual.md) but blind to
Hangul; the multilingual one sees Korean. Each model owns its own block of coordinates in
one vector: a text embedded by the primary model is
`[v, 0 ... 0]`, one embedded by the fallback is `[0 ... 0, w]`. Rows stay unit length, a
similarity within a block is that model's cosine, and across blocks it is exactly 0, so a
Korean prompt can never hit an English entry (or the reverse) at any threshold, while the
store, the entries' model id and the rebuild path stay as they are for one model. The index
does not pay for the width: it keeps one FAISS index per block (`blocks`, index/blocks.py).

Which texts go where is a rule the caller passes in (`uses_fallback`), the same one the policy
uses to pick the fallback's `min_similarity`; this module knows nothing of scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from embeddings.base import Embedder, Vectors, empty_or_refused


def routed_model_id(primary: str, fallback: str) -> str:
    return f"routed[{primary} | {fallback}]"


class RoutedEmbedder:
    """`Embedder` over a primary model and a fallback for the texts `uses_fallback` picks."""

    def __init__(
        self, primary: Embedder, fallback: Embedder, uses_fallback: Callable[[str], bool]
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._rule = uses_fallback
        self._model_id = routed_model_id(primary.model_id, fallback.model_id)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self.primary.dim + self.fallback.dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        # Whatever the primary does not cover goes to the fallback, so together they cover
        # what the fallback covers plus the primary's own scripts.
        covered = self.fallback.covered_scripts
        primary = self.primary.covered_scripts
        if covered is None or primary is None:
            return None
        return covered | primary

    def uses_fallback(self, text: str) -> bool:
        return self._rule(text)

    def reads_whole(self, text: str) -> bool:
        return (self.fallback if self._rule(text) else self.primary).reads_whole(text)

    @property
    def blocks(self) -> tuple[tuple[str, int], ...]:
        return (
            (self.primary.model_id, self.primary.dim),
            (self.fallback.model_id, self.fallback.dim),
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        empty = empty_or_refused(texts, self.dim)
        if empty is not None:
            return empty
        split = self.primary.dim
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        to_fallback = [self._rule(text) for text in texts]
        primary_rows = [i for i, fallback in enumerate(to_fallback) if not fallback]
        fallback_rows = [i for i, fallback in enumerate(to_fallback) if fallback]
        if primary_rows:
            out[primary_rows, :split] = self.primary.embed([texts[i] for i in primary_rows])
        if fallback_rows:
            out[fallback_rows, split:] = self.fallback.embed([texts[i] for i in fallback_rows])
        return out
