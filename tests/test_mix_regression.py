"""Regression, model selection and the proposal, against a known mixing law and against RegMix's published swarm.

- Synthetic: ``loss = 2 + 1.5 * exp(w @ t)`` plus noise, with known ``t`` and epoch caps, so the best feasible
  mixture is known exactly (fill the sources in order of ``t`` up to their caps).
- RegMix (``../shared/data/mixture/regmix``, skipped when absent): 512 + 256 runs of 1M-parameter proxies and 64
  runs of 1B models on the Pile, imported through ``read_swarm``; target Pile-CC validation loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import rel_entr

from winnow.mixers.proposer import propose
from winnow.mixers.regression import MODELS, LightGBMMix, cross_validate, select_model, spearman
from winnow.mixers.sampling import epoch_caps, natural_prior, sample_mixtures
from winnow.mixers.swarm_tables import Swarm, read_swarm, write_swarm

T = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # lower is better: source 0 is the most useful
TOKENS = np.array([2e8, 3e8, 2e9, 4e9, 8e9])  # ... and among the smallest
PRIOR = natural_prior(TOKENS)
CAPS = epoch_caps(TOKENS, budget=1e9, max_epochs=1.0)  # [0.2, 0.3, 1, 1, 1]
OPTIMUM = np.array([0.2, 0.3, 0.5, 0.0, 0.0])  # the lowest loss within the caps

REGMIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "mixture" / "regmix" / "data"
PILE_CC = {"the_pile_pile_cc_val_loss": 1.0}


def true_loss(weights: np.ndarray) -> np.ndarray:
    return 2 + 1.5 * np.exp(weights @ T)


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    """A swarm of 128 runs around the prior with noisy losses."""
    rng = np.random.default_rng(0)
    weights = sample_mixtures(PRIOR, 128, rng, concentration=0.5)
    return weights, true_loss(weights) + rng.normal(0, 0.01, len(weights))


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_ranks_held_out_mixtures(synthetic: tuple[np.ndarray, np.ndarray], name: str) -> None:
    weights, loss = synthetic
    held_out = sample_mixtures(PRIOR, 1000, np.random.default_rng(1), concentration=0.5)
    model = MODELS[name]().fit(weights, loss)
    assert model.name == name
    assert spearman(model.predict(held_out), true_loss(held_out)) > 0.9


def test_select_model_picks_the_true_law(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    weights, loss = synthetic
    model, scores = select_model(weights, loss)
    assert [s.name for s in scores] == ["lightgbm", "log_linear", "linear"]
    assert model.name == "log_linear"  # the generating family wins the k-fold Spearman
    assert max(s.spearman for s in scores) == next(s.spearman for s in scores if s.name == model.name)
    assert all(s.oof_predictions.shape == loss.shape for s in scores)
    again = cross_validate(MODELS["lightgbm"], weights, loss)
    assert np.array_equal(again.oof_predictions, scores[0].oof_predictions)  # deterministic


def test_select_model_errors_are_actionable(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    weights, loss = synthetic
    with pytest.raises(ValueError, match="choose from linear, log_linear, lightgbm"):
        select_model(weights, loss, names=["xgboost"])
    with pytest.raises(ValueError, match="5 runs are too few for 5-fold cross-validation: run at least 6"):
        select_model(weights[:5], loss[:5])


def test_lightgbm_learns_from_a_small_swarm(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    weights, loss = synthetic
    predictions = LightGBMMix().fit(weights[:30], loss[:30]).predict(weights)  # LightGBM's default: a constant
    assert spearman(predictions, true_loss(weights)) > 0.7


def test_proposal_lands_near_the_optimum_within_caps(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    weights, loss = synthetic
    model = MODELS["log_linear"]().fit(weights, loss)
    proposal = propose(model, PRIOR, np.random.default_rng(2), caps=CAPS, concentration=0.3)
    assert np.all(proposal.weights <= CAPS) and np.isclose(proposal.weights.sum(), 1)
    assert (proposal.candidates, proposal.top_k) == (100_000, 100)
    assert proposal.predicted_loss == pytest.approx(model.predict(proposal.weights[None, :])[0])
    gap = true_loss(PRIOR) - true_loss(OPTIMUM)
    random = sample_mixtures(PRIOR, 100_000, np.random.default_rng(3), concentration=0.3, caps=CAPS)
    assert true_loss(proposal.weights) < true_loss(PRIOR) - 0.75 * gap
    assert true_loss(proposal.weights) < true_loss(random).min() + 0.1 * gap


def test_kl_weight_pulls_toward_the_prior(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    weights, loss = synthetic
    model = MODELS["log_linear"]().fit(weights, loss)

    def run(kl_weight: float) -> np.ndarray:
        return propose(model, PRIOR, np.random.default_rng(2), CAPS, 0.01, 20_000, 50, kl_weight=kl_weight).weights

    free, pulled, held = run(0.0), run(1.0), run(10.0)
    divergence = [rel_entr(w, PRIOR).sum() for w in (free, pulled, held)]
    assert divergence[0] > divergence[1] > divergence[2] and divergence[2] < 0.02
    assert true_loss(free) < true_loss(pulled) < true_loss(held)
    assert all(np.all(w >= 0.01) and np.all(w <= CAPS) for w in (free, pulled, held))
    assert np.array_equal(free, run(0.0))  # deterministic for a seed


def test_swarm_round_trip_and_objective(tmp_path: Path) -> None:
    swarm = Swarm(
        ["a", "b", "c"], ["web", "code"], np.array([[0.5, 0.5], [1, 0], [0.2, 0.8]]), ["x", "y"], np.eye(3, 2)
    )
    ratios, metrics = write_swarm(swarm, tmp_path / "swarm")
    back = read_swarm(ratios, metrics)
    assert (back.run_ids, back.sources, back.targets) == (swarm.run_ids, swarm.sources, swarm.targets)
    assert np.array_equal(back.weights, swarm.weights) and np.array_equal(back.losses, swarm.losses)
    assert np.allclose(swarm.objective({"x": 2.0, "y": 1.0}), [2, 1, 0])
    with pytest.raises(ValueError, match="z are not among this swarm's targets: x, y"):
        swarm.objective({"z": 1.0})
    part = swarm.subset([2, 0])
    assert part.run_ids == ["c", "a"] and np.array_equal(part.weights, swarm.weights[[2, 0]])


def test_read_swarm_cleans_imported_csv(tmp_path: Path) -> None:
    (tmp_path / "ratios.csv").write_text("index,train_web,train_code,\n1,0.333,0.666,\n2,0.5,0.5,\n")
    (tmp_path / "loss.csv").write_text("index,metric/web_loss\r\n2,3.5\r\n1,4.0")
    swarm = read_swarm(
        tmp_path / "ratios.csv", tmp_path / "loss.csv", key="index", strip_prefixes=["train_", "metric/"]
    )
    assert swarm.run_ids == ["1", "2"] and swarm.sources == ["web", "code"] and swarm.targets == ["web_loss"]
    assert np.allclose(swarm.weights.sum(axis=1), 1) and np.allclose(swarm.losses[:, 0], [4.0, 3.5])


def test_read_swarm_errors_name_the_runs(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"run_id": ["r1", "r2", "r3"], "web": [1.0, 0.5, 1.0], "code": [0, 0.4, 0]}), tmp_path / "w.parquet"
    )
    pq.write_table(pa.table({"run_id": ["r1", "r2"], "loss": [3.0, 4.0]}), tmp_path / "two.parquet")
    pq.write_table(pa.table({"run_id": ["r1", "r2", "r3"], "loss": [3.0, 4.0, None]}), tmp_path / "nan.parquet")
    with pytest.raises(ValueError, match=r"1 runs are in only one of .* \(e.g. r3\)"):
        read_swarm(tmp_path / "w.parquet", tmp_path / "two.parquet")
    with pytest.raises(ValueError, match="1 runs have a missing loss: r3"):
        read_swarm(tmp_path / "w.parquet", tmp_path / "nan.parquet")
    pq.write_table(pa.table({"run_id": ["r1", "r2", "r3"], "loss": [3.0, 4.0, 5.0]}), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"weights that do not sum to 1 \(within 0.01\): r2 \(sum 0.9\)"):
        read_swarm(tmp_path / "w.parquet", tmp_path / "m.parquet")


@pytest.fixture(scope="module")
def regmix() -> dict[str, Swarm]:
    """RegMix's Pile swarms: ``train`` (512 runs, 1M), ``test`` (256 runs, 1M), ``1b`` (64 runs, 1B models)."""
    if not REGMIX.is_dir():
        pytest.skip("RegMix data (../shared/data/mixture/regmix) not present")
    files = {"train": ("train_mixture_1m", "train_pile_loss_1m"), "test": ("test_mixture_1m", "test_pile_loss_1m")}
    files["1b"] = ("test_mixture_1B", "test_pile_loss_1B")
    return {
        name: read_swarm(REGMIX / f"{r}.csv", REGMIX / f"{m}.csv", key="index", strip_prefixes=["train_", "metric/"])
        for name, (r, m) in files.items()
    }


def _rank(model_name: str, train: Swarm, test: Swarm) -> float:
    model = MODELS[model_name]().fit(train.weights, train.objective(PILE_CC))
    return spearman(model.predict(test.weights), test.objective(PILE_CC))


def test_regmix_tables_import(regmix: dict[str, Swarm]) -> None:
    assert [len(s.run_ids) for s in regmix.values()] == [512, 256, 64]
    assert all(s.sources == regmix["train"].sources and len(s.sources) == 17 for s in regmix.values())
    assert "the_pile_arxiv" in regmix["train"].sources and "the_pile_pile_cc_val_loss" in regmix["1b"].targets


def test_regmix_lightgbm_ranks_unseen_1m_runs(regmix: dict[str, Swarm]) -> None:
    assert _rank("lightgbm", regmix["train"], regmix["test"]) >= 0.98


def test_regmix_log_linear_from_64_runs(regmix: dict[str, Swarm]) -> None:
    first = regmix["train"].subset(np.arange(64))
    assert _rank("log_linear", first, regmix["test"]) >= 0.92


def test_regmix_selected_model_ranks_1b_models(regmix: dict[str, Swarm]) -> None:
    train = regmix["train"]
    model, _ = select_model(train.weights, train.objective(PILE_CC))
    target = regmix["1b"]
    assert spearman(model.predict(target.weights), target.objective(PILE_CC)) >= 0.95
