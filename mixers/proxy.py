"""The proxy model of mix optimisation: a tiny decoder-only transformer trained on a mixture of sources.

This module owns the model (nanoGPT-shaped: token + learned position embeddings, pre-LN blocks with causal
self-attention and a 4x GELU MLP, final LayerNorm, output head tied to the token embedding), its training loop
(AdamW, linear warmup then cosine decay) and its evaluation (mean cross-entropy on fixed windows of each target).
It is the only winnow module that imports torch; callers import it lazily.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIN_LR_FRACTION = 0.1  # cosine decay ends at this fraction of the peak learning rate
ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8
GRAD_CLIP = 1.0  # global gradient-norm clip
WEIGHT_SUM_TOLERANCE = 1e-6
HEAD_ROWS = 256  # output-head rows per chunk: logits of HEAD_ROWS x vocab stay in cache (measured)


@dataclass(frozen=True)
class ProxyConfig:
    """Size, budget and optimisation of one proxy run; the defaults fit the CPU budget measured by
    ``benchmarks/proxy_throughput.py``."""

    d_model: int = 64
    layers: int = 2
    heads: int = 4
    context: int = 128
    batch_size: int = 32  # sequences per step
    tokens: int = 1_000_000  # training tokens; steps = tokens // (batch_size * context)
    lr: float = 1e-2  # AdamW peak; linear warmup, then cosine decay to MIN_LR_FRACTION * lr
    warmup_frac: float = 0.1
    weight_decay: float = 0.1  # on matrices and embeddings only
    eval_tokens: int = 65_536  # per target, on fixed windows
    curve_points: int = 20  # training-curve samples recorded
    device: str = "auto"  # "auto" = cuda if available, else cpu
    compile: bool = False  # torch.compile the trunk: no faster on CPU, and 5-47 CPU-s more per process
    threads: int = 1  # torch.set_num_threads while training


@dataclass
class ProxyResult:
    """What a proxy run measured."""

    losses: dict[str, float]  # mean cross-entropy (nats/token) on each target
    curve: list[tuple[int, float]]  # (tokens seen, mean train loss since the previous point)
    tokens: int  # training tokens actually used (whole steps)
    seconds: float  # wall time of the run, compilation and evaluation included
    parameters: int
    device: str


class ProxyDiverged(RuntimeError):
    """The training loss became non-finite."""


class _Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, 4 * d_model)
        self.mlp_out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.ln_mlp(x))))


class _Trunk(nn.Module):
    """Everything before the output head: token ids (batch, time) -> final hidden states (batch * time, d_model)."""

    def __init__(self, vocab_size: int, config: ProxyConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, config.d_model)
        self.position = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(_Block(config.d_model, config.heads) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.d_model)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.token(idx) + self.position.weight[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x).flatten(0, 1)


def _head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, grads: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, HEAD_ROWS rows at a time, and with
    ``grads`` its gradients with respect to ``hidden`` and ``weight``; the full logits never exist."""
    total = hidden.new_zeros(())
    grad_hidden = torch.empty_like(hidden) if grads else None
    grad_weight = torch.zeros_like(weight) if grads else None
    buffer = hidden.new_empty(min(HEAD_ROWS, len(hidden)), len(weight))
    for i in range(0, len(hidden), HEAD_ROWS):
        h, t = hidden[i : i + HEAD_ROWS], targets[i : i + HEAD_ROWS, None]
        logits = torch.mm(h, weight.T, out=buffer[: len(h)])
        top = logits.amax(1, keepdim=True)
        picked = logits.gather(1, t)
        probs = logits.sub_(top).exp_()  # softmax, in place
        norm = probs.sum(1, keepdim=True)
        total += (norm.log() + top - picked).sum()
        if grads:
            probs.div_(norm).scatter_add_(1, t, probs.new_full(t.shape, -1.0))  # d(loss)/d(logits)
            torch.mm(probs, weight, out=grad_hidden[i : i + HEAD_ROWS])
            grad_weight.addmm_(probs.T, h)
    return total, grad_hidden, grad_weight


class _HeadLoss(torch.autograd.Function):
    """Mean cross-entropy of the tied output head; gradients are computed with the loss, chunk by chunk."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total, grad_hidden, grad_weight = _head_loss(hidden, weight, targets, grads=True)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total / len(hidden)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad / len(grad_hidden)
        return grad_hidden * scale, grad_weight * scale, None


class ProxyModel(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets)`` returns the mean next-token cross-entropy."""

    def __init__(self, vocab_size: int, config: ProxyConfig) -> None:
        super().__init__()
        if config.d_model % config.heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by heads {config.heads}")
        self.trunk = _Trunk(vocab_size, config)
        for name, p in self.named_parameters():  # GPT-2 initialisation, residual projections scaled by depth
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                residual = name.endswith(("attn_out.weight", "mlp_out.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.layers) if residual else 0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden, weight = self.trunk(idx), self.trunk.token.weight  # tied output head
        if torch.is_grad_enabled():
            return _HeadLoss.apply(hidden, weight, targets.flatten())
        return _head_loss(hidden, weight, targets.flatten(), grads=False)[0] / len(hidden)


def sequence_sources(weights: np.ndarray, sequences: int, rng: np.random.Generator) -> np.ndarray:
    """Source index of each training sequence: source ``s`` gets its largest-remainder share of ``weights[s] *
    sequences`` (exact proportions over the run, deterministic rounding), in a random order."""
    quota = weights * sequences
    counts = np.floor(quota).astype(np.int64)
    counts[np.argsort(-(quota - counts), kind="stable")[: sequences - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(weights)), counts))


def eval_windows(length: int, context: int, eval_tokens: int) -> np.ndarray:
    """Start offsets of evenly spaced, non-overlapping windows of ``context + 1`` tokens in an array of ``length``,
    at most ``eval_tokens // context`` of them (at least one); the same for every run."""
    count = max(1, min(eval_tokens // context, length // (context + 1)))
    return np.linspace(0, length - context - 1, count).astype(np.int64)


def _windows(array: np.ndarray, starts: np.ndarray, context: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array[starts[:, None] + np.arange(context + 1)], dtype=np.int64))


def _sample(arrays: list[np.ndarray], context: int, rng: np.random.Generator) -> torch.Tensor:
    """One window of ``context + 1`` tokens from each array, at a uniformly random offset."""
    offsets = rng.integers(0, [len(a) - context for a in arrays])
    windows = [a[o : o + context + 1] for a, o in zip(arrays, offsets, strict=True)]
    return torch.from_numpy(np.stack(windows).astype(np.int64))


def _check(name: str, kind: str, array: np.ndarray, context: int) -> None:
    if array.ndim != 1 or len(array) < context + 1:
        raise ValueError(f"{kind} {name!r} needs a 1-D array of at least {context + 1} tokens, got shape {array.shape}")


@torch.no_grad()
def adamw_step(
    params: list[torch.Tensor],
    moments: list[tuple[torch.Tensor, torch.Tensor]],
    decay: list[float],
    step: int,
    lr: float,
) -> None:
    """Update ``params`` in place from their ``.grad`` by AdamW step ``step`` (1-based), as ``torch.optim.AdamW``
    computes it: decoupled weight decay ``decay[i]``, bias-corrected moments ``moments[i]`` (updated in place).
    Written out because constructing ``torch.optim.AdamW`` imports ``torch._dynamo``: 2.3 CPU-s per process."""
    beta1, beta2 = ADAM_BETAS
    for p, (mean, square), weight_decay in zip(params, moments, decay, strict=True):
        p.mul_(1 - lr * weight_decay)
        mean.lerp_(p.grad, 1 - beta1)
        square.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        p.addcdiv_(mean, (square / (1 - beta2**step)).sqrt_().add_(ADAM_EPS), value=-lr / (1 - beta1**step))


def _lr(step: int, steps: int, config: ProxyConfig) -> float:
    warmup = max(1, round(config.warmup_frac * steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return config.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_proxy(
    train: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    targets: Mapping[str, np.ndarray],
    vocab_size: int,
    config: ProxyConfig,
    seed: int,
) -> ProxyResult:
    """Train a proxy on ``train`` mixed by ``weights`` and return its mean cross-entropy on each of ``targets``.

    ``weights`` sum to 1; sources of ``train`` they omit weigh 0, and sources they weigh 0 need no data. Each
    source gets exactly its share of the run's sequences (``sequence_sources``), each sequence a window at a
    uniformly random offset of that source. Targets are scored on ``eval_windows``, the same for every run. Seeds
    torch's global RNG and a numpy Generator with ``seed``: deterministic on CPU. Raises ValueError for bad
    weights or an array shorter than ``context + 1``, ProxyDiverged when a loss is not finite."""
    started = time.perf_counter()
    given = np.array([float(x) for x in weights.values()])
    if not np.isfinite(given).all() or (given < 0).any() or abs(given.sum() - 1) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights must be non-negative and sum to 1, got {dict(weights)}")
    missing = sorted(name for name, x in weights.items() if x > 0 and name not in train)
    if missing:
        raise ValueError(f"weights give a share to sources without training data: {missing}")
    names = list(train)
    w = np.array([float(weights.get(name, 0.0)) for name in names])
    for name in names:
        _check(name, "source", train[name], config.context)
    for name, array in targets.items():
        _check(name, "target", array, config.context)
    steps = config.tokens // (config.batch_size * config.context)
    if steps < 1:
        raise ValueError(f"tokens {config.tokens} is less than one batch of {config.batch_size} x {config.context}")

    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if config.device == "auto" else config.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = ProxyModel(vocab_size, config).to(device)
        params = list(model.parameters())
        decay = [config.weight_decay if p.dim() == 2 else 0.0 for p in params]  # matrices and embeddings only
        moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        if config.compile:
            model.trunk.compile(dynamic=False)
        sources = sequence_sources(w / w.sum(), steps * config.batch_size, rng)
        curve_at = set(np.linspace(0, steps, min(config.curve_points, steps) + 1).round().astype(int)[1:].tolist())
        curve: list[tuple[int, float]] = []
        since: list[float] = []
        model.train()
        for step in range(steps):
            batch_sources = sources[step * config.batch_size : (step + 1) * config.batch_size]
            batch = _sample([train[names[s]] for s in batch_sources], config.context, rng).to(device)
            loss = model(batch[:, :-1], batch[:, 1:])
            value = loss.item()
            if not math.isfinite(value):
                raise ProxyDiverged(f"training loss is {value} at step {step + 1} of {steps} (seed {seed})")
            model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            adamw_step(params, moments, decay, step + 1, _lr(step, steps, config))
            since.append(value)
            if step + 1 in curve_at:
                curve.append(((step + 1) * config.batch_size * config.context, float(np.mean(since))))
                since.clear()

        model.eval()
        losses: dict[str, float] = {}
        with torch.no_grad():
            for name, array in targets.items():
                windows = _windows(array, eval_windows(len(array), config.context, config.eval_tokens), config.context)
                total = 0.0
                for chunk in windows.split(config.batch_size):
                    chunk = chunk.to(device)
                    total += model(chunk[:, :-1], chunk[:, 1:]).item() * len(chunk)
                losses[name] = total / len(windows)
                if not math.isfinite(losses[name]):
                    raise ProxyDiverged(f"loss on target {name!r} is {losses[name]} after {steps} steps (seed {seed})")
    finally:
        torch.set_num_threads(threads)
    return ProxyResult(
        losses=losses,
        curve=curve,
        tokens=steps * config.batch_size * config.context,
        seconds=time.perf_counter() - started,
        parameters=sum(p.numel() for p in params),
        device=device.type,
    )
