"""The bundled all-MiniLM-L6-v2 run in numpy: the same vectors as sentence-transformers, no torch.

Serving a prompt through sentence-transformers costs a torch import at start (seconds) and
~30 ms of framework time per short prompt on these machines, for a six-layer BERT whose
arithmetic on a 12-token prompt takes well under a millisecond. This module runs that BERT
directly: weights from the model folder's `model.safetensors`, tokens from its
`tokenizer.json` (the `tokenizers` library sentence-transformers itself uses, truncating at
the folder's `max_seq_length`), then mean pooling over real tokens and L2 normalization, as
the folder's `modules.json` prescribes. sentence-transformers stays the reference:
`tests/test_numpy_minilm.py` checks that both give the same vectors, and every other model
still goes through it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embeddings.base import Vectors, empty_or_refused, fits_by_length, normalize_rows

Array = npt.NDArray[np.float32]


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: Array = centred / np.sqrt(var + eps) * weight + bias
    return out


# erf(z) ~ z * P(z^2) / Q(z^2) for |z| <= 4; beyond 4, erf is +-1 to float32 precision. The
# coefficients (lowest power first) are a rational fit to scipy's erf on [0, 4]: weighted least
# squares, reweighted towards the smallest maximum error. Evaluated in float32 the error stays
# below 4e-7 (tests/test_numpy_minilm.py checks it on a dense grid).
_ERF_P = np.array(
    [
        1.1283786848499502,
        0.2140555171613974,
        0.052449581677780084,
        0.004297790257133007,
        0.0001556400871290863,
        -1.990537163424312e-06,
        1.92117478814572e-08,
    ],
    dtype=np.float32,
)
_ERF_Q = np.array(
    [1.0, 0.5230294732748494, 0.12084655284393057, 0.015561166529372995, 0.0010991390495405698],
    dtype=np.float32,
)
_ERF_LIMIT = 4.0


def _polynomial(coefficients: Array, t: Array) -> Array:
    """Horner's rule, in place on one new array."""
    out: Array = t * coefficients[-1]
    out += coefficients[-2]
    for coefficient in coefficients[-3::-1]:
        out *= t
        out += coefficient
    return out


def erf32(z: Array) -> Array:
    """erf in float32 arithmetic. scipy's erf computes each value in float64 and took 30% of
    a 16-prompt batch's forward pass; this takes about half as long (a fifth for one prompt)."""
    z = np.clip(z, -_ERF_LIMIT, _ERF_LIMIT)
    t = z * z
    out = _polynomial(_ERF_P, t)
    out *= z
    out /= _polynomial(_ERF_Q, t)
    return out


_GELU_ROWS = 32  # 32 rows of 1536 floats stay in the L2 cache through erf's dozen passes


def _gelu(x: Array) -> Array:
    """BERT's exact GELU, x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, in place on a 2-D `x`
    (the tanh approximation would move vectors by about 1e-3; `erf32` moves them by less
    than 1e-6). A block of rows at a time: on a 16-prompt batch the whole array took 2.4 ms
    per layer, 32-row blocks 0.9 ms, scipy's erf 4.5 ms."""
    scale = np.float32(1.0 / math.sqrt(2.0))
    for start in range(0, x.shape[0], _GELU_ROWS):
        rows = x[start : start + _GELU_ROWS]
        phi = erf32(rows * scale)
        phi += np.float32(1.0)
        phi *= np.float32(0.5)
        rows *= phi
    return x


@dataclass(frozen=True)
class _Layer:
    qkv: Array  # (hidden, 3 * hidden): query, key and value in one product
    qkv_bias: Array
    out: Array
    out_bias: Array
    norm1: tuple[Array, Array]
    up: Array
    up_bias: Array
    down: Array
    down_bias: Array
    norm2: tuple[Array, Array]


def _weights(raw: dict[str, Any], name: str) -> Array:
    """A linear layer's weight, transposed once so that the forward pass is `x @ w`."""
    return np.ascontiguousarray(np.asarray(raw[f"{name}.weight"], dtype=np.float32).T)


def _vector(raw: dict[str, Any], name: str) -> Array:
    return np.asarray(raw[name], dtype=np.float32)


def _layer(raw: dict[str, Any], prefix: str) -> _Layer:
    attention = f"{prefix}.attention"
    parts = ("query", "key", "value")
    return _Layer(
        qkv=np.ascontiguousarray(
            np.concatenate([_weights(raw, f"{attention}.self.{p}") for p in parts], axis=1)
        ),
        qkv_bias=np.concatenate([_vector(raw, f"{attention}.self.{p}.bias") for p in parts]),
        out=_weights(raw, f"{attention}.output.dense"),
        out_bias=_vector(raw, f"{attention}.output.dense.bias"),
        norm1=(
            _vector(raw, f"{attention}.output.LayerNorm.weight"),
            _vector(raw, f"{attention}.output.LayerNorm.bias"),
        ),
        up=_weights(raw, f"{prefix}.intermediate.dense"),
        up_bias=_vector(raw, f"{prefix}.intermediate.dense.bias"),
        down=_weights(raw, f"{prefix}.output.dense"),
        down_bias=_vector(raw, f"{prefix}.output.dense.bias"),
        norm2=(
            _vector(raw, f"{prefix}.output.LayerNorm.weight"),
            _vector(raw, f"{prefix}.output.LayerNorm.bias"),
        ),
    )


def _check_folder(folder: Path) -> tuple[dict[str, Any], int]:
    """The BERT config and max_seq_length; refuse anything this module does not implement."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    sbert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    supported = (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and pooling.get("pooling_mode_mean_tokens") is True
        and [m["type"].rsplit(".", 1)[-1] for m in modules]
        == ["Transformer", "Pooling", "Normalize"]
    )
    if not supported:
        raise ValueError(f"{folder} is not a mean-pooled, normalized BERT this backend runs")
    return config, int(sbert["max_seq_length"])


# Rows in one forward pass. The attention scores of a pass take rows x heads x length² floats:
# 300 prompts of 256 word pieces in one pass needed 0.9 GB (a Message Batch embeds all its
# requests in one call); 32 rows need 100 MB at most, and a serving micro-batch is 16.
_ROWS_PER_PASS = 32


class NumpyMiniLM:
    """The forward pass; thread-safe (it only reads its weights)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config, max_seq_length = _check_folder(folder)
        raw = load_file(str(folder / "model.safetensors"))
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._words = _vector(raw, "embeddings.word_embeddings.weight")
        self._positions = _vector(raw, "embeddings.position_embeddings.weight")
        self._token_type = _vector(raw, "embeddings.token_type_embeddings.weight")[0]
        self._norm = (
            _vector(raw, "embeddings.LayerNorm.weight"),
            _vector(raw, "embeddings.LayerNorm.bias"),
        )
        self._layers = [
            _layer(raw, f"encoder.layer.{i}") for i in range(int(config["num_hidden_layers"]))
        ]
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_seq_length)
        self._tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    def reads_whole(self, text: str) -> bool:
        """No tokens cut by the truncation at `max_seq_length`."""
        if fits_by_length(text, self.max_seq_length):
            return True
        return not self._tokenizer.encode(text).overflowing

    def embed(self, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts))
        chunks = range(0, len(encodings), _ROWS_PER_PASS)
        return np.concatenate([self._forward(encodings[i : i + _ROWS_PER_PASS]) for i in chunks])

    def _forward(self, encodings: list[Any]) -> Vectors:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1.0
        hidden = self._words[ids] + self._positions[:length] + self._token_type
        hidden = _layer_norm(hidden, *self._norm, self._eps)
        # Padding never gets attention: a large negative score before the softmax.
        blocked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self._layers:
            hidden = self._block(hidden, blocked, layer)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        return normalize_rows(summed / mask.sum(axis=1, keepdims=True))

    def _block(self, hidden: Array, blocked: Array, layer: _Layer) -> Array:
        """One encoder layer. Dense products run on 2-D (tokens, width) arrays: numpy hands
        those to BLAS, while a 3-D @ 2-D product took a loop ten times slower."""
        batch, length, width = hidden.shape
        size = width // self._heads
        flat = hidden.reshape(batch * length, width)
        qkv = flat @ layer.qkv + layer.qkv_bias
        heads = qkv.reshape(batch, length, 3, self._heads, size).transpose(2, 0, 3, 1, 4)
        query, key, value = heads[0], heads[1], heads[2]
        scores = query @ key.transpose(0, 1, 3, 2) * np.float32(1.0 / math.sqrt(size)) + blocked
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, width)
        flat = _layer_norm(context @ layer.out + layer.out_bias + flat, *layer.norm1, self._eps)
        inner = _gelu(flat @ layer.up + layer.up_bias)
        flat = _layer_norm(inner @ layer.down + layer.down_bias + flat, *layer.norm2, self._eps)
        return flat.reshape(batch, length, width)


class NumpyMiniLMEmbedder:
    """`Embedder` over `NumpyMiniLM`, reporting the same model id as sentence-transformers,
    because its vectors are the same (the test bounds the difference)."""

    def __init__(self, folder: Path, model_id: str, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        from threadpoolctl import threadpool_limits

        # numpy's BLAS would start a thread per core for the larger products; on a shared
        # 2-core machine that oversubscribes (the README's 20x). Applies to the process.
        threadpool_limits(limits=threads, user_api="blas")
        self._model = NumpyMiniLM(folder)
        self._model_id = model_id
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        return frozenset({"Latin"})

    def reads_whole(self, text: str) -> bool:
        return self._model.reads_whole(text)

    def embed(self, texts: Sequence[str]) -> Vectors:
        empty = empty_or_refused(texts, self.dim)
        return self._model.embed(texts) if empty is None else empty
