"""Mixture sampling: prior, epoch caps, feasibility messages, Dirichlet draws and the exact projection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from winnow.mixers.sampling import (
    InfeasibleMixError,
    check_feasible,
    epoch_caps,
    natural_prior,
    project,
    sample_mixtures,
)

PRIOR = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


def test_natural_prior_follows_tokens_and_temperature() -> None:
    tokens = np.array([1.0, 3.0, 0.0])
    assert np.allclose(natural_prior(tokens), [0.25, 0.75, 0.0])
    assert np.allclose(natural_prior(tokens, temperature=2.0), np.array([1, 3**0.5, 0]) / (1 + 3**0.5))
    with pytest.raises(ValueError, match="0 tokens"):
        natural_prior(np.zeros(3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_are_mixtures(seed: int) -> None:
    weights = sample_mixtures(PRIOR, 500, np.random.default_rng(seed), concentration=0.3)
    assert weights.shape == (500, len(PRIOR))
    assert np.all(weights >= 0)
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("concentration", [0.1, 1.0, 10.0])
def test_floor_and_caps_hold_exactly(seed: int, concentration: float) -> None:
    caps = np.array([0.2, 0.5, 1.0, 0.3, 0.1])
    weights = sample_mixtures(PRIOR, 1000, np.random.default_rng(seed), concentration, floor=0.02, caps=caps)
    assert weights.min() >= 0.02
    assert np.all(weights <= caps)
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-12)


def test_epoch_caps_bound_repetition() -> None:
    tokens = np.array([1e6, 5e8, 2e9])
    budget, max_epochs = 1e9, 4.0
    caps = epoch_caps(tokens, budget, max_epochs)
    assert np.allclose(caps, [0.004, 1.0, 1.0])
    weights = sample_mixtures(natural_prior(tokens), 2000, np.random.default_rng(0), caps=caps)
    assert np.all(weights * budget <= max_epochs * tokens * (1 + 1e-12))  # the small source is never over-repeated
    assert np.array_equal(epoch_caps(tokens, budget, None), np.ones(3))


def test_infeasible_budget_names_the_sources() -> None:
    tokens = np.array([1e6, 2e6])
    caps = epoch_caps(tokens, 1e9, 4.0)
    with pytest.raises(InfeasibleMixError, match=r"wiki \(cap 0\.004\), books \(cap 0\.008\).*raise max_epochs"):
        check_feasible(caps, 0.0, ["wiki", "books"], budget=1e9)


def test_floor_above_a_cap_names_the_source() -> None:
    with pytest.raises(InfeasibleMixError, match=r"exceeds the cap of tiny \(cap 0\.01\)"):
        check_feasible(np.array([1.0, 0.01, 1.0]), 0.05, ["web", "tiny", "code"])
    with pytest.raises(InfeasibleMixError, match=r"lower the floor to at most 0\.25"):
        check_feasible(np.ones(4), 0.3, ["a", "b", "c", "d"])
    check_feasible(np.array([0.5, 0.5]), 0.5, ["a", "b"])  # exactly one mixture: feasible


def test_high_concentration_samples_around_the_prior() -> None:
    weights = sample_mixtures(PRIOR, 4000, np.random.default_rng(0), concentration=1000.0)
    assert np.allclose(weights.mean(axis=0), PRIOR, atol=2e-3)
    sparse = sample_mixtures(PRIOR, 4000, np.random.default_rng(0), concentration=0.05)
    assert (sparse < 1e-3).mean() > 0.5  # low concentration: most weights near zero


def test_sampling_is_deterministic_for_a_seed() -> None:
    caps = np.array([0.3, 0.3, 0.3, 0.3, 0.3])

    def draw(seed: int) -> np.ndarray:
        return sample_mixtures(PRIOR, 100, np.random.default_rng(seed), 0.5, 0.01, caps)

    assert np.array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_sampling_rejects_a_prior_with_empty_sources() -> None:
    with pytest.raises(ValueError, match="drop sources with no tokens"):
        sample_mixtures(np.array([0.5, 0.5, 0.0]), 10, np.random.default_rng(0))


def _reference_projection(point: np.ndarray, floor: float, caps: np.ndarray) -> np.ndarray:
    """Euclidean projection by a general-purpose solver, to check the exact one against."""
    result = minimize(
        lambda w: ((w - point) ** 2).sum(),
        np.full(len(point), 1 / len(point)),
        jac=lambda w: 2 * (w - point),
        bounds=list(zip(np.full(len(point), floor), caps, strict=True)),
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return result.x


def test_project_matches_a_general_solver() -> None:
    rng = np.random.default_rng(0)
    caps = np.array([0.5, 0.1, 0.9, 0.3, 0.6])
    points = rng.normal(0.2, 0.5, size=(20, 5))
    projected = project(points, 0.05, caps)
    for point, exact in zip(points, projected, strict=True):
        assert np.allclose(exact, _reference_projection(point, 0.05, caps), atol=1e-6)
    assert np.allclose(projected.sum(axis=1), 1, atol=1e-12)


def test_project_edge_cases() -> None:
    inside = np.array([0.2, 0.3, 0.5])
    assert np.allclose(project(inside), inside, atol=1e-15)  # a feasible point stays put (1-D input -> one row)
    assert np.allclose(project(np.array([1.0, 0.0, 0.0]), caps=np.array([0.5, 1.0, 1.0])), [0.5, 0.25, 0.25])
    assert np.allclose(project(np.array([-5.0, -5.0, -1.0])), [0.0, 0.0, 1.0])
    assert np.allclose(project(np.array([9.0, 0.0, 0.0, 0.0]), floor=0.25), 0.25)  # floor * k == 1: one mixture
    assert np.allclose(project(np.array([0.0, 0.0, 1.0]), caps=np.array([0.5, 0.3, 0.2])), [0.5, 0.3, 0.2])
    assert np.allclose(project(np.array([0.7, 0.7, -0.4]), floor=0.1, caps=np.array([0.45, 1, 1])), [0.45, 0.45, 0.1])
    with pytest.raises(InfeasibleMixError, match=r"source 0 \(cap 0\.3\), source 1 \(cap 0\.3\)"):
        project(np.array([0.5, 0.5]), caps=np.array([0.3, 0.3]))
