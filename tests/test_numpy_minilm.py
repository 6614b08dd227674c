"""The numpy MiniLM gives the reference's vectors (sentence-transformers), without torch.

The serving path for the bundled model may differ from the reference only in float rounding:
these tests bound the difference on English, Korean, long and odd inputs, check that batching
changes nothing, and that the factory picks each path when told to.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embeddings.numpy_minilm import NumpyMiniLMEmbedder, erf32
from embeddings.routed import RoutedEmbedder
from embeddings.sentence_transformer import SentenceTransformerEmbedder, resolve_model
from service.config import EmbeddingSettings
from service.embedder_factory import build_embedder
from tests.test_multilingual import AGREEMENT_SAMPLE

ODD = [
    "",
    "   ",
    "🙂🙂🙂",
    "x",
    "naïve café — “quoted” text\twith\ttabs",
    "def f(x):\n    return x ** 2  # squares",
    "word " * 400,  # past max_seq_length (256 tokens): both truncate
    "How do I reset my password? " * 30,
]


@pytest.fixture(scope="module")
def fast() -> NumpyMiniLMEmbedder:
    folder, model_id = resolve_model("bundled:all-MiniLM-L6-v2")
    return NumpyMiniLMEmbedder(Path(folder), model_id)


def test_same_vectors_as_sentence_transformers(
    fast: NumpyMiniLMEmbedder, model: SentenceTransformerEmbedder
) -> None:
    texts = list(AGREEMENT_SAMPLE) + ODD
    ours, reference = fast.embed(texts), model.embed(texts)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert float(np.abs(ours - reference).max()) < 1e-5
    assert float((ours * reference).sum(axis=1).min()) > 0.99999
    assert fast.model_id == model.model_id and fast.dim == model.dim
    assert fast.covered_scripts == model.covered_scripts


def test_float32_erf_stays_within_4e_7_of_scipys() -> None:
    from scipy.special import erf

    z = np.linspace(-9.0, 9.0, 2_000_001, dtype=np.float32)
    ours = erf32(z)
    assert ours.dtype == np.float32
    assert float(np.abs(ours.astype(np.float64) - erf(z.astype(np.float64))).max()) < 4e-7
    assert erf32(np.array([0.0], dtype=np.float32))[0] == 0.0


def test_a_text_gets_the_same_row_alone_or_in_a_batch(fast: NumpyMiniLMEmbedder) -> None:
    texts = list(AGREEMENT_SAMPLE[:6]) + ODD[:4]
    batch = fast.embed(texts)
    alone = np.vstack([fast.embed([text]) for text in texts])
    assert float(np.abs(batch - alone).max()) < 1e-6
    assert fast.embed([]).shape == (0, fast.dim)
    with pytest.raises(TypeError):
        fast.embed("not a list")  # type: ignore[arg-type]


def test_a_long_list_is_embedded_in_passes_with_the_same_rows(fast: NumpyMiniLMEmbedder) -> None:
    """A Message Batch embeds all its requests in one call; in one forward pass 300 long
    prompts needed 3 GB of attention scores. Passes of a few dozen rows give the same rows."""
    texts = [f"Question {i}: how do I rotate log file {i}?" for i in range(70)]
    together = fast.embed(texts)
    assert together.shape == (70, fast.dim)
    alone = np.vstack([fast.embed([texts[i]]) for i in (0, 31, 32, 33, 69)])
    assert float(np.abs(together[[0, 31, 32, 33, 69]] - alone).max()) < 1e-6


def test_factory_picks_the_backend() -> None:
    alone = EmbeddingSettings(fallback_model="")
    assert isinstance(build_embedder(alone), NumpyMiniLMEmbedder)
    reference = EmbeddingSettings(fallback_model="", backend="sentence-transformers")
    assert isinstance(build_embedder(reference), SentenceTransformerEmbedder)


def test_refuses_a_folder_it_does_not_implement(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(resolve_model("bundled:all-MiniLM-L6-v2")[0], folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False}))
    with pytest.raises(ValueError, match="mean-pooled"):
        NumpyMiniLMEmbedder(folder, "copy")


def test_the_routed_default_uses_it(routed: RoutedEmbedder, fast: NumpyMiniLMEmbedder) -> None:
    # Same model id, so a data dir built with either backend serves the other without a rebuild.
    assert routed.primary.model_id == fast.model_id
