"""Settings -> a ready `Embedder`. The one place that knows which backends exist."""

from __future__ import annotations

from embeddings.base import Embedder
from service.config import EmbeddingSettings


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    from embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        settings.model, device=settings.device, threads=settings.threads
    )
