"""The RegMix proposal: the mixture a fitted regression predicts to have the lowest loss, within the constraints.

Simulate many candidate mixtures around the prior, score each by its predicted loss (plus an optional KL penalty
that keeps the proposal near the prior), and average the ``top_k`` best: the average is steadier than the single
best candidate, whose prediction is the most optimistic error of the regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr

from winnow.mixers.regression import MixModel
from winnow.mixers.sampling import project, sample_mixtures

CHUNK = 10_000  # candidates drawn and scored at a time: bounds memory, whatever ``candidates`` is


@dataclass(frozen=True, eq=False)
class Proposal:
    """The proposed mixture, the model's prediction for it, and how it was searched."""

    weights: np.ndarray
    predicted_loss: float
    candidates: int
    top_k: int


def propose(
    model: MixModel,
    prior: np.ndarray,
    rng: np.random.Generator,
    caps: np.ndarray | None = None,
    floor: float = 0.0,
    candidates: int = 100_000,
    top_k: int = 100,
    concentration: float = 1.0,
    kl_weight: float = 0.0,
) -> Proposal:
    """Average of the ``top_k`` candidates with the lowest ``predicted + kl_weight * KL(w || prior)``.

    Candidates are ``sample_mixtures(prior, ..., concentration, floor, caps)`` draws, so every one is feasible and
    so is their average (the constraints are convex); it is projected again only against rounding.
    """
    if not 1 <= top_k <= candidates:
        raise ValueError(f"top_k must be between 1 and candidates ({candidates}), got {top_k}")
    prior = np.asarray(prior, dtype=float)
    best = np.empty((0, len(prior)))
    best_scores = np.empty(0)
    for start in range(0, candidates, CHUNK):
        drawn = sample_mixtures(prior, min(CHUNK, candidates - start), rng, concentration, floor, caps)
        scores = model.predict(drawn) + kl_weight * rel_entr(drawn, prior).sum(axis=1)
        pool = np.concatenate([best, drawn])
        pool_scores = np.concatenate([best_scores, scores])
        keep = np.argsort(pool_scores, kind="stable")[:top_k]
        best, best_scores = pool[keep], pool_scores[keep]
    weights = project(best.mean(axis=0), floor, caps)[0]
    return Proposal(weights, float(model.predict(weights[None, :])[0]), candidates, top_k)
