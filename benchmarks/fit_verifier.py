"""`bench fit-verifier`: fit the verifier's logistic weights on a labelled dev set.

Training rows come from the same probes as `bench hitrate`: for each looked-up `b`, the best
candidate that clears `floor` and the guards — the candidate the verifier would be asked about
first — labelled 1 when it is the entry of `b`'s own `a` and the pair is a duplicate. The model
is an L2-regularised logistic regression fitted by Newton's method (a few features, a few
thousand rows: no library needed). Five-fold cross-validation by pair reports how well the
scores rank unseen pairs (AUC), so a fit that only memorises shows up before it ships. The
file written is what `service.verifier.load_verifier` reads; its `min_score` is then chosen by
`bench calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from benchmarks.hitrate import ProbeSet
from service.guards import check_all
from service.verifier import FEATURES, Verifier, pair_features

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingSet:
    features: Matrix  # (n, len(FEATURES))
    labels: npt.NDArray[np.int8]
    groups: npt.NDArray[np.int64]  # pair index, for cross-validation by pair


def training_rows(probes: ProbeSet, guards: tuple[str, ...], floor: float) -> TrainingSet:
    rows: list[list[float]] = []
    labels: list[int] = []
    groups: list[int] = []
    for probe in probes.probes:
        ranked = probe.candidates
        for rank, (facts, similarity) in enumerate(ranked):
            if similarity < floor or facts.text is None or probe.query.text is None:
                break
            if not check_all(facts.text, probe.query.text, guards).passed:
                continue
            runner_up = max((s for i, (_, s) in enumerate(ranked) if i != rank), default=None)
            values = pair_features(facts.text, probe.query.text, similarity, runner_up)
            rows.append([values[name] for name in FEATURES])
            labels.append(int(probe.duplicate and facts.entry_id == probe.own_entry))
            groups.append(probe.pair_index)
            break
    return TrainingSet(
        np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES)),
        np.array(labels, dtype=np.int8),
        np.array(groups, dtype=np.int64),
    )


def fit_logistic(
    x: Matrix, y: npt.NDArray[np.int8], *, l2: float = 1.0, iterations: int = 50
) -> tuple[Matrix, float, Matrix, Matrix]:
    """Return (weights, bias, mean, scale): features are standardised for the fit and the
    weights mapped back, so the shipped model applies to raw feature values."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    beta = np.zeros(z.shape[1])
    penalty = np.eye(z.shape[1]) * l2
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        gradient = z.T @ (p - y) + penalty @ beta
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    weights = beta[1:] / scale
    bias = float(beta[0] - (weights * mean).sum())
    return weights, bias, mean, scale


def auc(scores: Matrix, labels: npt.NDArray[np.int8]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    # Pairwise (Mann-Whitney); the training sets here are a few thousand rows at most.
    wins = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(wins + ties / 2)


def cross_validate(data: TrainingSet, *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Out-of-fold AUC of the verifier score, and of the cosine alone for comparison."""
    pairs = np.unique(data.groups)
    order = np.random.default_rng(seed).permutation(pairs)
    fold_of = {int(g): i % folds for i, g in enumerate(order)}
    assignment = np.array([fold_of[int(g)] for g in data.groups])
    oof = np.zeros(len(data.labels))
    for fold in range(folds):
        train, test = assignment != fold, assignment == fold
        weights, bias, _, _ = fit_logistic(data.features[train], data.labels[train])
        oof[test] = data.features[test] @ weights + bias
    cosine = data.features[:, FEATURES.index("cosine")]
    return {
        "rows": float(len(data.labels)),
        "positives": float(int(data.labels.sum())),
        "auc_verifier_out_of_fold": auc(oof, data.labels),
        "auc_cosine_alone": auc(cosine, data.labels),
    }


def fit_verifier(
    probes: ProbeSet, guards: tuple[str, ...], *, floor: float, min_score: float, source: str
) -> tuple[Verifier, dict[str, float]]:
    data = training_rows(probes, guards, floor)
    if len(np.unique(data.labels)) < 2:
        raise ValueError("the training rows need both right and wrong candidates; lower --floor")
    report = cross_validate(data)
    weights, bias, _, _ = fit_logistic(data.features, data.labels)
    verifier = Verifier(
        weights=tuple(
            (name, round(float(w), 6)) for name, w in zip(FEATURES, weights, strict=True)
        ),
        bias=round(bias, 6),
        min_score=min_score,
        source=source,
    )
    return verifier, report
