"""The proxy model of mix optimisation (``mixers/proxy.py``): it learns, the mixture decides what it learns, runs
are reproducible, bad input is refused, and its fused output head computes what plain autograd computes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winnow.mixers.proxy import (
    ProxyConfig,
    ProxyDiverged,
    ProxyModel,
    adamw_step,
    eval_windows,
    sequence_sources,
    train_proxy,
)

VOCAB = 256
TINY = ProxyConfig(
    d_model=32, layers=1, heads=2, context=32, batch_size=16, tokens=20_000, lr=1e-2, eval_tokens=4096, curve_points=5
)


def markov_chain(seed: int, states: np.ndarray, length: int) -> np.ndarray:
    """Tokens of a chain over ``states`` in which every state has two equally likely successors (0.69 nats/token)."""
    rng = np.random.default_rng(seed)
    successors = rng.choice(states, size=(VOCAB, 2))
    choices = rng.integers(0, 2, length)
    tokens = np.empty(length, dtype=np.uint16)
    state = int(states[0])
    for i in range(length):
        tokens[i] = state
        state = int(successors[state, choices[i]])
    return tokens


@pytest.fixture(scope="module")
def corpora() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two sources of different structure (overlapping token sets), each split into training data and a target."""
    a = markov_chain(1, np.arange(0, 32), 60_000)
    b = markov_chain(2, np.arange(16, 48), 60_000)
    return {"A": a[:50_000], "B": b[:50_000]}, {"A": a[50_000:], "B": b[50_000:]}


def test_learns_the_training_distribution(corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    train, targets = corpora
    result = train_proxy(train, {"A": 1.0}, {"A": targets["A"]}, VOCAB, TINY, seed=0)
    assert result.losses["A"] < 0.5 * math.log(VOCAB)
    assert result.tokens == 39 * TINY.batch_size * TINY.context
    assert [tokens for tokens, _ in result.curve] == [8 * 512, 16 * 512, 23 * 512, 31 * 512, 39 * 512]
    assert result.curve[-1][1] < result.curve[0][1]
    assert result.parameters == sum(p.numel() for p in ProxyModel(VOCAB, TINY).parameters())
    assert result.device == "cpu"


def test_mixture_decides_what_is_learned(corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    train, targets = corpora
    on_a = train_proxy(train, {"A": 1.0, "B": 0.0}, targets, VOCAB, TINY, seed=0).losses
    on_b = train_proxy(train, {"A": 0.0, "B": 1.0}, targets, VOCAB, TINY, seed=0).losses
    assert on_a["A"] + 1 < on_b["A"]
    assert on_b["B"] + 1 < on_a["B"]


def test_same_seed_same_losses(corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    train, targets = corpora
    weights = {"A": 0.3, "B": 0.7}
    first = train_proxy(train, weights, targets, VOCAB, TINY, seed=7)
    again = train_proxy(train, weights, targets, VOCAB, TINY, seed=7)
    other = train_proxy(train, weights, targets, VOCAB, TINY, seed=8)
    assert first.losses == again.losses
    assert first.curve == again.curve
    assert first.losses != other.losses


def test_memmapped_uint32_source_trains_like_the_array(
    corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], tmp_path: Path
) -> None:
    train, targets = corpora
    np.save(tmp_path / "a.npy", train["A"].astype(np.uint32))
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    config = replace(TINY, tokens=2048)
    from_map = train_proxy({"A": mapped}, {"A": 1.0, "B": 0.0}, targets, VOCAB, config, seed=3)
    from_array = train_proxy({"A": train["A"]}, {"A": 1.0}, targets, VOCAB, config, seed=3)
    assert from_map.losses == from_array.losses


def test_refuses_a_source_shorter_than_a_window(corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    train, targets = corpora
    short = {**train, "tiny": np.zeros(TINY.context, dtype=np.uint16)}
    with pytest.raises(ValueError, match="'tiny'"):
        train_proxy(short, {"A": 1.0}, targets, VOCAB, TINY, seed=0)


@pytest.mark.parametrize("weights", [{"A": 0.5, "B": 0.4}, {"A": 1.2, "B": -0.2}, {"A": 0.5, "C": 0.5}])
def test_refuses_bad_weights(
    corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], weights: dict[str, float]
) -> None:
    train, targets = corpora
    with pytest.raises(ValueError, match="weights"):
        train_proxy(train, weights, targets, VOCAB, TINY, seed=0)


def test_absurd_learning_rate_diverges(corpora: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    train, targets = corpora
    with pytest.raises(ProxyDiverged, match=r"at step \d+ of 39"):
        train_proxy(train, {"A": 1.0}, targets, VOCAB, replace(TINY, lr=1e6), seed=0)


def test_sources_get_exact_shares_in_random_order() -> None:
    rng = np.random.default_rng(0)
    sources = sequence_sources(np.array([0.5, 0.0, 0.3, 0.2]), 1001, rng)
    assert np.bincount(sources, minlength=4).tolist() == [501, 0, 300, 200]
    assert sources[:10].tolist() != sorted(sources[:10].tolist())


def test_eval_windows_are_fixed_and_disjoint() -> None:
    starts = eval_windows(10_000, context=32, eval_tokens=4096)
    assert len(starts) == 4096 // 32
    assert starts[0] == 0 and starts[-1] == 10_000 - 33
    assert (np.diff(starts) >= 33).all()
    assert len(eval_windows(100, context=32, eval_tokens=4096)) == 3
    assert eval_windows(33, context=32, eval_tokens=4096).tolist() == [0]


def test_fused_head_matches_autograd() -> None:
    torch.manual_seed(0)
    config = replace(TINY, context=16)
    model = ProxyModel(300, config)  # 2 * 16 * 16 = 512 rows: two head chunks
    batch = torch.randint(0, 300, (32, 17))
    loss = model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    fused = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model.trunk(batch[:, :-1]) @ model.trunk.token.weight.T
    reference = F.cross_entropy(logits, batch[:, 1:].flatten())
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    for got, expected in zip(fused, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert model(batch[:, :-1], batch[:, 1:]).item() == pytest.approx(reference.item(), rel=1e-6)


def test_adamw_step_matches_torch() -> None:
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    reference = [p.detach().clone().requires_grad_() for p in ours]
    optimizer = torch.optim.AdamW(
        [{"params": reference[:1], "weight_decay": 0.1}, {"params": reference[1:], "weight_decay": 0.0}],
        lr=0.01,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in ours]
    for step in range(1, 4):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, reference, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        adamw_step(ours, moments, [0.1, 0.0], step, lr=0.01)
        optimizer.step()
        for p, q in zip(ours, reference, strict=True):
            torch.testing.assert_close(p, q)
