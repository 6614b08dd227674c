"""`bench perf`'s embedder figures: both models of the routed default, measured on one list."""

from __future__ import annotations

from benchmarks.embedder_speed import PROMPTS, embedder_figures, embedder_markdown
from embeddings.routed import RoutedEmbedder
from embeddings.sentence_transformer import SentenceTransformerEmbedder


def test_routed_default_reports_each_model(routed: RoutedEmbedder) -> None:
    figures = embedder_figures(routed, rounds=4)
    assert set(figures) == {"primary", "fallback"}
    assert figures["primary"]["model"] == routed.primary.model_id
    assert figures["fallback"]["model"] == routed.fallback.model_id
    for f in figures.values():
        assert f["one_prompt_p50_ms"] > 0 and f["batch_texts_per_s"] > 0
        assert f["batch_size"] == len(PROMPTS)
    table = embedder_markdown(figures)
    assert table.count("\n") == 4 and routed.fallback.model_id in table


def test_a_single_model_is_reported_alone(model: SentenceTransformerEmbedder) -> None:
    assert set(embedder_figures(model, rounds=1)) == {"model"}
