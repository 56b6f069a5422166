"""Regression from mixture weights to loss: three models behind one interface, chosen by k-fold Spearman.

- ``linear``: least squares on the weights (RegMix's linear baseline).
- ``log_linear``: ``loss = c + k * exp(w @ t)`` (Data Mixing Laws, olmix); few parameters, good on small swarms.
- ``lightgbm``: gradient-boosted trees (RegMix's choice); needs a few hundred runs to shine. It uses LightGBM's
  native ``lightgbm.train``: the ``LGBMRegressor`` wrapper needs scikit-learn, which winnow does not install.

What matters downstream is the ranking of mixtures (the proposer keeps the lowest predictions), so models are
scored by the Spearman correlation of their pooled out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import lightgbm
import numpy as np
from scipy.optimize import least_squares
from scipy.stats import spearmanr


class MixModel(Protocol):
    """A regression from mixture weights ``(n, k)`` to one loss per row."""

    name: str

    def fit(self, weights: np.ndarray, loss: np.ndarray) -> MixModel: ...

    def predict(self, weights: np.ndarray) -> np.ndarray: ...


class LinearMix:
    """``loss = weights @ beta + intercept`` by least squares (minimum-norm: on the simplex they are collinear)."""

    name = "linear"

    def fit(self, weights: np.ndarray, loss: np.ndarray) -> LinearMix:
        self.coef, *_ = np.linalg.lstsq(_with_intercept(weights), loss, rcond=None)
        return self

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return _with_intercept(weights) @ self.coef


class LogLinearMix:
    """``loss = c + k * exp(weights @ t)``, fitted by ``scipy.optimize.least_squares`` from several starts.

    Rows sum to 1, so ``k = exp(b)`` folds into ``t`` (``exp(b + w @ t) = exp(w @ (t + b))``): the fitted
    parameters are ``c`` and ``t``. Each start fixes ``c`` below the lowest loss and takes ``t`` from the linear
    fit of ``log(loss - c)``; the fit with the lowest residual wins. Deterministic.
    """

    name = "log_linear"
    starts = (0.05, 0.25, 1.0, 4.0)  # offsets of the initial c below min(loss), in units of the loss range

    def fit(self, weights: np.ndarray, loss: np.ndarray) -> LogLinearMix:
        def residuals(p: np.ndarray) -> np.ndarray:
            return p[0] + np.exp(weights @ p[1:]) - loss

        def jacobian(p: np.ndarray) -> np.ndarray:
            return np.column_stack([np.ones(len(loss)), np.exp(weights @ p[1:])[:, None] * weights])

        fits = []
        for offset in self.starts:
            c0 = float(loss.min()) - offset * max(float(np.ptp(loss)), 1e-6)
            t0, *_ = np.linalg.lstsq(weights, np.log(loss - c0), rcond=None)
            fits.append(least_squares(residuals, np.concatenate([[c0], t0]), jac=jacobian))
        best = min(fits, key=lambda fit: fit.cost)
        self.c, self.t = float(best.x[0]), best.x[1:]
        return self

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return self.c + np.exp(weights @ self.t)


class LightGBMMix:
    """LightGBM regression with RegMix's settings (1000 trees, learning rate 0.01), deterministic.

    ``min_child_samples`` defaults to ``max(2, min(20, n // 10))``: LightGBM's 20 leaves a swarm of under ~40
    runs with a single leaf, i.e. a constant prediction.
    """

    name = "lightgbm"

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.01,
        min_child_samples: int | None = None,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, weights: np.ndarray, loss: np.ndarray) -> LightGBMMix:
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples or max(2, min(20, len(loss) // 10)),
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }
        self.booster = lightgbm.train(params, lightgbm.Dataset(weights, loss), num_boost_round=self.n_estimators)
        return self

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return self.booster.predict(weights)


MODELS: dict[str, Callable[[], MixModel]] = {"linear": LinearMix, "log_linear": LogLinearMix, "lightgbm": LightGBMMix}


@dataclass(frozen=True, eq=False)
class ModelScore:
    """A model's k-fold Spearman and its out-of-fold prediction for every row."""

    name: str
    spearman: float
    oof_predictions: np.ndarray


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant (it ranks nothing)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def cross_validate(
    factory: Callable[[], MixModel], weights: np.ndarray, loss: np.ndarray, folds: int = 5, seed: int = 0
) -> ModelScore:
    """Spearman of the pooled out-of-fold predictions of a fresh model per fold (folds shuffled by ``seed``)."""
    _check_rows(weights, loss, folds)
    predictions = np.empty(len(loss))
    for held in np.array_split(np.random.default_rng(seed).permutation(len(loss)), folds):
        train = np.setdiff1d(np.arange(len(loss)), held)
        model = factory().fit(weights[train], loss[train])
        predictions[held] = model.predict(weights[held])
    return ModelScore(model.name, spearman(predictions, loss), predictions)


def select_model(
    weights: np.ndarray,
    loss: np.ndarray,
    names: Sequence[str] = ("lightgbm", "log_linear", "linear"),
    folds: int = 5,
    seed: int = 0,
) -> tuple[MixModel, list[ModelScore]]:
    """The model with the best k-fold Spearman (ties: the earlier name), refitted on all rows, and every score."""
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown regression models {unknown or '(none given)'}; choose from {', '.join(MODELS)}")
    _check_rows(weights, loss, folds)
    scores = [cross_validate(MODELS[n], weights, loss, folds, seed) for n in names]
    best = max(range(len(names)), key=lambda i: scores[i].spearman)
    return MODELS[names[best]]().fit(weights, loss), scores


def _with_intercept(weights: np.ndarray) -> np.ndarray:
    return np.column_stack([weights, np.ones(len(weights))])


def _check_rows(weights: np.ndarray, loss: np.ndarray, folds: int) -> None:
    """Raise ValueError unless ``weights`` (n, k) and finite ``loss`` (n,) have enough rows for ``folds`` folds."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if weights.ndim != 2 or loss.shape != (len(weights),) or not np.all(np.isfinite(loss)):
        raise ValueError(f"need weights (n, k) and n finite losses, got shapes {weights.shape} and {loss.shape}")
    if len(loss) < folds + 1:
        raise ValueError(f"{len(loss)} runs are too few for {folds}-fold cross-validation: run at least {folds + 1}")
