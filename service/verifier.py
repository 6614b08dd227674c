"""Candidate verification beyond the cosine: a small logistic model over pair features.

The cosine of two sentence embeddings says how alike two prompts are overall; it cannot say
whether the words that differ matter. The verifier scores each candidate that already passed
the cosine threshold and the guards from a handful of cheap, explainable features — the cosine,
its margin over the runner-up candidate, content-word overlap, character-trigram overlap and
the length ratio — as `sigmoid(bias + sum(weight * feature))`, and the policy refuses the
candidate when the score is below `min_score`. The weights are fitted offline on labelled dev
pairs (`benchmarks/fit_verifier.py`, cross-validated) and shipped as `service/data/verifier.json`
with the data they came from, so a change of weights is a reviewed data change. Everything
here is pure except `load_verifier`, which reads that file once at start.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from service.errors import ConfigError
from service.guards import normalize
from service.guards.text import STOPWORDS

FEATURES: Final = ("cosine", "margin", "lexical", "chargram", "length_ratio")
# A runner-up this far below (or none at all) is "no competition"; larger gaps say nothing more.
MAX_MARGIN: Final = 0.2
_TOKEN: Final = re.compile(r"\w+")
_SUFFIXES: Final = ("ing", "ed", "es", "s")
BUNDLED: Final = "bundled"


def _words(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text).casefold())


def _stem(word: str) -> str:
    """A crude English suffix strip: "questions" ~ "question"; enough for an overlap count."""
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _jaccard(a: set[str], b: set[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _trigrams(words: list[str]) -> set[str]:
    joined = f" {' '.join(words)} "
    return {joined[i : i + 3] for i in range(max(1, len(joined) - 2))}


def pair_features(
    cached: str, new: str, similarity: float, runner_up: float | None
) -> dict[str, float]:
    """The verifier's inputs for one (cached prompt, new prompt) pair, each in [-1, 1]."""
    a_words, b_words = _words(cached), _words(new)
    a_content = {_stem(w) for w in a_words if w not in STOPWORDS}
    b_content = {_stem(w) for w in b_words if w not in STOPWORDS}
    margin = MAX_MARGIN if runner_up is None else min(similarity - runner_up, MAX_MARGIN)
    longer = max(len(a_words), len(b_words))
    return {
        "cosine": similarity,
        "margin": margin,
        "lexical": _jaccard(a_content, b_content),
        "chargram": _jaccard(_trigrams(a_words), _trigrams(b_words)),
        "length_ratio": min(len(a_words), len(b_words)) / longer if longer else 1.0,
    }


@dataclass(frozen=True)
class Verifier:
    """A fitted logistic model and the score a candidate needs; see the module docstring."""

    weights: tuple[tuple[str, float], ...]
    bias: float
    min_score: float
    source: str = ""  # where the weights came from, for the decision log and the benchmark

    def score(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(weight * features[name] for name, weight in self.weights)
        if z < -60:  # math.exp overflows past ~709; the answer is 0 long before that
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "bias": self.bias,
            "min_score": self.min_score,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verifier:
        weights = data.get("weights")
        if not isinstance(weights, Mapping) or not weights:
            raise ConfigError("verifier file: `weights` must be a non-empty object")
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ConfigError(f"verifier file: unknown feature(s) {', '.join(sorted(unknown))}")
        try:
            return cls(
                weights=tuple((str(k), float(v)) for k, v in weights.items()),
                bias=float(data["bias"]),
                min_score=float(data["min_score"]),
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"verifier file: {exc!r}") from exc


def load_verifier(spec: str, *, min_score: float | None = None) -> Verifier | None:
    """`"off"` -> None; `"bundled"` -> the shipped fit; anything else is a JSON file path.

    `min_score` overrides the file's calibrated threshold (e.g. from `bench calibrate`).
    """
    if spec == "off":
        return None
    try:
        if spec == BUNDLED:
            text = resources.files("service.data").joinpath("verifier.json").read_text("utf-8")
        else:
            text = Path(spec).expanduser().read_text("utf-8")
        verifier = Verifier.from_json(json.loads(text))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read verifier {spec!r}: {exc}") from exc
    if min_score is not None:
        verifier = Verifier(verifier.weights, verifier.bias, min_score, verifier.source)
    return verifier
