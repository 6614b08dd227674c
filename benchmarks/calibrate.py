"""`bench calibrate`: the most permissive setting whose false-hit rate stays under a bound.

The point estimate of a false-hit rate on ~2,000 non-duplicates is itself uncertain by about a
percentage point, so the choice is made on the Wilson 95% upper bound: a setting qualifies only
if we are 97.5% sure its false-hit rate is below `max_false_hit_rate`. Among qualifying settings
the one with the highest hit rate wins (ties: the stricter one). The grid is `min_similarity`
and, when a verifier is configured, its `min_score`; both only ever remove hits as they rise,
so each column of the grid is scanned from the strict end down to the first setting over the
bound, over probes collected once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from benchmarks.hitrate import Policy, ProbeSet, Tally, evaluate
from service.verifier import Verifier


@dataclass(frozen=True)
class Choice:
    min_similarity: float  # the value of `setting`
    verifier_min_score: float | None
    tally: Tally
    setting: str = "min_similarity"

    def config_lines(self) -> list[str]:
        lines = ["[cache]", f"{self.setting} = {self.min_similarity:.4g}"]
        if self.verifier_min_score is not None:
            lines += ["", "[policy]", f"verifier_min_score = {self.verifier_min_score:.4g}"]
        return lines


def default_grid() -> list[float]:
    # Up to 0.995: multilingual-e5-small's cosines crowd near 1.
    return [round(float(x), 4) for x in np.arange(0.80, 0.99501, 0.0025)]


def calibrate(
    probes: ProbeSet,
    policy: Policy,
    max_false_hit_rate: float,
    *,
    thresholds: Sequence[float] | None = None,
    min_scores: Sequence[float] | None = None,
) -> tuple[Choice | None, list[Choice]]:
    """Return (the chosen setting or None if none qualifies, every setting evaluated)."""
    grid = sorted(thresholds or default_grid())
    scores: list[float | None] = [None]
    if policy.verifier is not None:
        scores = list(min_scores or [round(float(x), 3) for x in np.arange(0.0, 0.96, 0.05)])
    evaluated: list[Choice] = []
    for score in scores:
        variant = policy
        if score is not None and policy.verifier is not None:
            variant = replace(policy, verifier=_with_min_score(policy.verifier, score))
        # Descending: false hits only grow as the threshold falls, so the first setting over
        # the bound ends this column (and the cheap, strict settings are evaluated first).
        for threshold in reversed(grid):
            tally = evaluate(probes, variant, threshold)
            choice = Choice(threshold, score, tally, policy.setting)
            evaluated.append(choice)
            upper = choice.tally.false_hit_upper
            if upper is not None and upper > max_false_hit_rate:
                break
    qualifying = [
        c
        for c in evaluated
        if c.tally.false_hit_upper is not None and c.tally.false_hit_upper <= max_false_hit_rate
    ]
    if not qualifying:
        return None, evaluated
    best = max(
        qualifying,
        key=lambda c: (c.tally.hit_rate or 0.0, c.min_similarity, c.verifier_min_score or 0.0),
    )
    return best, evaluated


def _with_min_score(verifier: Verifier, min_score: float) -> Verifier:
    return Verifier(verifier.weights, verifier.bias, min_score, verifier.source)
