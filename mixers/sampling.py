"""Mixture sampling: the prior, the per-source caps, and the feasible mixtures the swarm and the proposer draw.

A mixture is a row of weights over the mixed sources: ``floor <= w_i <= caps_i`` and ``sum(w) == 1``. Caps come
from the token budget (no source repeated more than ``max_epochs`` times); mixtures are Dirichlet draws around the
prior (as RegMix samples them), put onto the constraints by Euclidean projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class InfeasibleMixError(ValueError):
    """No mixture satisfies the floor, the caps and the budget together."""


def natural_prior(tokens: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Token-proportional prior ``p_i ∝ tokens_i ** (1 / temperature)``; temperature > 1 flattens it."""
    tokens = np.asarray(tokens, dtype=float)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tokens.ndim != 1 or not np.all(np.isfinite(tokens)) or np.any(tokens < 0):
        raise ValueError(f"tokens must be a 1-D array of finite counts >= 0, got {tokens!r}")
    if not tokens.any():
        raise ValueError("every source has 0 tokens: no prior exists; check the token counts of the mixed sources")
    powered = tokens ** (1 / temperature)
    return powered / powered.sum()


def epoch_caps(tokens: np.ndarray, budget: float, max_epochs: float | None) -> np.ndarray:
    """Largest weight per source such that ``weight * budget <= max_epochs * tokens`` (at most 1; None: all 1)."""
    tokens = np.asarray(tokens, dtype=float)
    if max_epochs is None:
        return np.ones_like(tokens)
    if budget <= 0 or max_epochs <= 0:
        raise ValueError(f"budget and max_epochs must be > 0, got budget={budget}, max_epochs={max_epochs}")
    return np.minimum(1.0, max_epochs * tokens / budget)


def check_feasible(caps: np.ndarray, floor: float, names: Sequence[str], budget: float | None = None) -> None:
    """Raise InfeasibleMixError, saying what to change, unless some mixture has ``floor <= w <= caps``, sum 1."""
    caps = np.asarray(caps, dtype=float)
    if len(names) != len(caps):
        raise ValueError(f"{len(names)} names for {len(caps)} caps")
    if floor < 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    if floor * len(caps) > 1:
        raise InfeasibleMixError(
            f"a floor of {floor} for each of the {len(caps)} sources sums to {floor * len(caps):g} > 1; "
            f"lower the floor to at most {1 / len(caps):.6g} or mix fewer sources"
        )
    small = [f"{n} (cap {c:.4g})" for n, c in zip(names, caps, strict=True) if c < floor]
    if small:
        raise InfeasibleMixError(
            f"the floor {floor} exceeds the cap of {', '.join(small)}: these sources are too small to reach the "
            "floor without repeating more than max_epochs; lower the floor, raise max_epochs, or drop them"
        )
    if caps.sum() < 1:
        capped = ", ".join(f"{n} (cap {c:.4g})" for n, c in zip(names, caps, strict=True))
        tokens = "" if budget is None else f" ({caps.sum() * budget:.4g} of the {budget:.4g}-token budget)"
        raise InfeasibleMixError(
            f"the sources can fill only {caps.sum():.4g} of the mixture{tokens} without repeating any more than "
            f"max_epochs: {capped}; raise max_epochs, lower the token budget, or add sources"
        )


def project(weights: np.ndarray, floor: float = 0.0, caps: np.ndarray | None = None) -> np.ndarray:
    """Euclidean projection of each row onto ``{w : floor <= w_i <= caps_i, sum(w) = 1}`` (exact, vectorised).

    The projection is ``clip(v - tau, floor, caps)`` for the one ``tau`` where the row sums to 1. That sum is
    piecewise linear and decreasing in ``tau``, with breakpoints where a coordinate leaves its cap (``v_i - caps_i``)
    or reaches the floor (``v_i - floor``); walking the sorted breakpoints finds the segment holding 1 and ``tau``
    on it solves a linear equation. Mass taken from capped sources goes in equal parts to the uncapped ones.
    """
    rows = np.atleast_2d(np.asarray(weights, dtype=float))
    k = rows.shape[1]
    upper = np.ones(k) if caps is None else np.asarray(caps, dtype=float)
    lower = np.full(k, float(floor))
    check_feasible(upper, floor, [f"source {i}" for i in range(k)])
    breakpoints = np.concatenate([rows - upper, rows - lower], axis=1)
    # Going up in tau, a coordinate becomes free at v_i - caps_i and stops at the floor at v_i - floor.
    changes = np.concatenate([np.ones_like(rows), -np.ones_like(rows)], axis=1)
    order = np.argsort(breakpoints, axis=1, kind="stable")
    breakpoints = np.take_along_axis(breakpoints, order, axis=1)
    free = np.cumsum(np.take_along_axis(changes, order, axis=1), axis=1)  # free coordinates after each breakpoint
    drops = np.cumsum(free[:, :-1] * np.diff(breakpoints, axis=1), axis=1)
    totals = upper.sum() - np.concatenate([np.zeros((len(rows), 1)), drops], axis=1)  # row sum at each breakpoint
    segment = np.clip((totals >= 1).sum(axis=1) - 1, 0, 2 * k - 2)
    at = np.arange(len(rows))
    slope = free[at, segment]
    excess = totals[at, segment] - 1
    tau = breakpoints[at, segment] + np.divide(excess, slope, out=np.zeros_like(excess), where=slope > 0)
    return np.clip(rows - tau[:, None], lower, upper)


def sample_mixtures(
    prior: np.ndarray,
    n: int,
    rng: np.random.Generator,
    concentration: float = 1.0,
    floor: float = 0.0,
    caps: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` feasible mixtures: Dirichlet(concentration * k * prior) draws, projected onto floor and caps.

    The draws' mean is the prior; low concentration gives sparse, diverse mixtures, high concentration mixtures
    close to the prior. Deterministic for a given ``rng`` state.
    """
    prior = np.asarray(prior, dtype=float)
    if concentration <= 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    if prior.ndim != 1 or np.any(prior <= 0) or not np.isclose(prior.sum(), 1):
        raise ValueError(
            f"prior must be a 1-D distribution with every weight > 0, got {prior!r}; drop sources with no tokens"
        )
    draws = rng.dirichlet(concentration * len(prior) * prior, size=n)
    return project(draws, floor, caps)
