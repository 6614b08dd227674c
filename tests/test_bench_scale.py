"""`bench perf`'s scale figure at test sizes: every kind measured, recall against flat."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scale import near_duplicates, random_unit_rows, scale_figure, scale_markdown
from embeddings.sentence_transformer import SentenceTransformerEmbedder


def test_near_duplicates_sit_at_the_asked_cosine() -> None:
    rng = np.random.default_rng(0)
    rows = random_unit_rows(rng, 250, 64)
    turned = near_duplicates(rng, rows, 0.95)
    np.testing.assert_allclose(np.einsum("ij,ij->i", rows, turned), 0.95, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), 1.0, atol=1e-5)


def test_scale_figure_measures_each_kind_against_flat(model: SentenceTransformerEmbedder) -> None:
    scale = scale_figure(model, 500, 21_000, queries=40, top_k=4, kinds=["flat", "ivf"])
    assert scale["flat_21000"]["recall_at_1"] == scale["flat_500"]["recall_at_1"] == 1.0
    ivf = scale["ivf_21000"]
    assert (ivf["ivf_nlist"], ivf["ivf_nprobe"]) == (512, 32)
    assert scale["ivf_500"]["ivf_nlist"] == 1  # below IVF_MIN_ROWS: one list, exact
    assert scale["ivf_500"]["recall_at_1"] == 1.0
    assert ivf["recall_at_1"] >= 0.9
    for kind in ("flat", "ivf"):
        # A lookup is an embedding plus a search: never faster than the search alone.
        assert scale[f"{kind}_21000"]["lookup_p50_ms"] > scale[f"{kind}_21000"]["search_p50_ms"]
        assert scale[f"{kind}_lookup_ratio"] > 0
    table = scale_markdown(scale)
    assert (
        "ivf (512 lists, nprobe 32)" in table and table.count("\n| ") == 3
    )  # header and two kinds
    with pytest.raises(ValueError, match="flat index comes first"):
        scale_figure(model, 10, 20, queries=2, top_k=1, kinds=["ivf"])
