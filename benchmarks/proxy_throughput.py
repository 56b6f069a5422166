"""Benchmark: training throughput of the mix proxy model (``mixers/proxy.py``) on one CPU thread.

What it measures (every figure is CPU-seconds of one thread: ``torch.set_num_threads(1)``,
``TORCHINDUCTOR_COMPILE_THREADS=1``, random tokens, d_model 64, 2 layers, 4 heads, 4,096 tokens per step):

1. Step throughput: training steps as ``train_proxy`` runs them (forward, backward, gradient clipping, the AdamW update)
   for vocab 2048/4096/8192 x context 128/256 (one fresh child process each) x six variants
   ``<head>_<mode>_<precision>``:
   - ``head``: ``full`` is the plain formulation (all logits, then ``F.cross_entropy``; nanoGPT's);
     ``fused`` is the proxy's own model (``ProxyModel``: the output head and its gradients chunk by chunk);
   - ``mode``: ``eager`` or ``compile`` (``torch.compile``: the whole model for ``full``, the trunk for
     ``fused``, as ``train_proxy`` does);
   - ``precision``: ``fp32`` or ``bf16`` (``torch.autocast`` around the forward; ``full`` only, the fused head
     is fp32).
   Tokens per CPU-second after two warm-up steps (compilation happens there: its cost is measured in 2). This
   machine's speed drifts by +-25% within a minute, so the variants of a child take turns: 7 rounds (``--quick``:
   3) in which each runs about 1.5 s (0.5 s) of steps; the table gives each variant's median round.
2. Per-run cost at the defaults (``ProxyConfig()``, vocab ``--vocab``, two sources at 0.5 each, three targets
   of ``eval_tokens``): ``train_proxy`` end to end in a fresh process, CPU-seconds of the whole child
   (interpreter, imports, training, evaluation) for ``--tokens`` training tokens (default 1,000,000; ``--quick``
   131,072). Then ``compile=True`` against eager at ``--compile-tokens``, twice in fresh processes sharing one
   new inductor cache: ``compile_cold_s`` / ``compile_warm_s`` = the extra CPU-seconds of the first / second.

``--quick``: vocab ``--vocab`` and context 128 only, shorter timings. Ends with one ``RESULT`` line (step figures
of vocab ``--vocab``, context 128; ``eager_fp32`` is ``full_eager_fp32``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCABS = (2048, 4096, 8192)
CONTEXTS = (128, 256)
VARIANTS = ("full_eager_fp32", "full_eager_bf16", "full_compile_fp32", "full_compile_bf16")
VARIANTS += ("fused_eager_fp32", "fused_compile_fp32")
STEP_TOKENS = 4096
WARMUP_STEPS = 2
TARGETS = 3


def child_env(cache: str) -> dict[str, str]:
    return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_COMPILE_THREADS": "1"}


def run_child(args: list[str], cache: str) -> tuple[dict[str, Any], float]:
    """Run this script with ``args`` in a fresh process; its JSON answer and the CPU-seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, __file__, *args], env=child_env(cache), capture_output=True, text=True, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("CHILD ")]
    if done.returncode or not lines:
        sys.exit(f"child {args} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return json.loads(lines[-1].removeprefix("CHILD ")), cpu


# ------------------------------------------------------------------------------------ children


def training_step(variant: str, vocab: int, context: int) -> Callable[[], None]:
    """One training step of ``variant`` (``<head>_<eager|compile>_<fp32|bf16>``) as ``train_proxy`` runs it."""
    import torch
    import torch.nn.functional as F

    from winnow.mixers.proxy import GRAD_CLIP, ProxyConfig, ProxyModel, adamw_step

    head, mode, precision = variant.split("_")
    torch.manual_seed(0)
    model = ProxyModel(vocab, ProxyConfig(context=context))
    if head == "fused":
        forward = model
        if mode == "compile":
            model.trunk.compile(dynamic=False)
    else:

        def full(idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            logits = model.trunk(idx) @ model.trunk.token.weight.T
            return F.cross_entropy(logits.float(), targets.flatten())

        forward = torch.compile(full, dynamic=False) if mode == "compile" else full
    params = list(model.parameters())
    decay = [0.1 if p.dim() == 2 else 0.0 for p in params]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    batch = torch.randint(0, vocab, (STEP_TOKENS // context, context + 1))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(batch[:, :-1], batch[:, 1:])
        model.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        adamw_step(params, moments, decay, 1, 1e-3)

    return step


def measure_group(vocab: int, context: int, rounds: int, round_seconds: float) -> dict[str, float]:
    """Tokens per CPU-second of every variant: after warm-up, ``rounds`` rounds in which each variant in turn runs
    about ``round_seconds`` of steps (at least one); the median round per variant, so drift hits all alike."""
    import torch

    torch.set_num_threads(1)
    steps, per_round = {}, {}
    for variant in VARIANTS:
        steps[variant] = training_step(variant, vocab, context)
        for _ in range(WARMUP_STEPS):
            started = time.process_time()
            steps[variant]()
        per_round[variant] = max(1, round(round_seconds / (time.process_time() - started)))
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant, step in steps.items():
            started = time.process_time()
            for _ in range(per_round[variant]):
                step()
            rates[variant].append(per_round[variant] * STEP_TOKENS / (time.process_time() - started))
    return {variant: statistics.median(found) for variant, found in rates.items()}


def proxy_run(vocab: int, tokens: int, compile: bool) -> dict[str, Any]:
    """``train_proxy`` at the defaults on random tokens: two sources at 0.5, TARGETS targets."""
    import numpy as np

    from winnow.mixers.proxy import ProxyConfig, train_proxy

    rng = np.random.default_rng(0)
    config = replace(ProxyConfig(), tokens=tokens, compile=compile)
    train = {s: rng.integers(0, vocab, 1_000_000).astype(np.uint16) for s in ("a", "b")}
    targets = {f"t{i}": rng.integers(0, vocab, config.eval_tokens + 1024).astype(np.uint16) for i in range(TARGETS)}
    result = train_proxy(train, {"a": 0.5, "b": 0.5}, targets, vocab, config, seed=0)
    return {"tokens": result.tokens, "seconds": result.seconds, "parameters": result.parameters}


# ------------------------------------------------------------------------------------ parent


def step_table(args: argparse.Namespace) -> dict[tuple[int, int], dict[str, float]]:
    """Tokens per CPU-second per (vocab, context) and variant, one fresh child per (vocab, context)."""
    groups = [(args.vocab, 128)] if args.quick else [(v, c) for v in sorted({*VOCABS, args.vocab}) for c in CONTEXTS]
    rounds, round_seconds = (3, 0.5) if args.quick else (7, 1.5)
    found: dict[tuple[int, int], dict[str, float]] = {}
    print(f"| vocab | context | {' | '.join(VARIANTS)} |\n|---|---|{'---|' * len(VARIANTS)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="proxy-inductor-") as cache:
        for vocab, context in groups:
            spec = {"vocab": vocab, "context": context, "rounds": rounds, "round_seconds": round_seconds}
            found[vocab, context] = run_child(["--group", json.dumps(spec)], cache)[0]
            cells = " | ".join(f"{found[vocab, context][variant]:,.0f}" for variant in VARIANTS)
            print(f"| {vocab} | {context} | {cells} |", flush=True)
    return found


def run_costs(args: argparse.Namespace) -> dict[str, str]:
    tokens = args.tokens or (131_072 if args.quick else 1_000_000)
    compile_tokens = min(args.compile_tokens, tokens)
    with tempfile.TemporaryDirectory(prefix="proxy-inductor-") as cache:
        spec = {"vocab": args.vocab, "compile": False}
        full, full_cpu = run_child(["--run", json.dumps({**spec, "tokens": tokens})], cache)
        _, eager_cpu = run_child(["--run", json.dumps({**spec, "tokens": compile_tokens})], cache)
        spec = {**spec, "compile": True, "tokens": compile_tokens}
        _, cold_cpu = run_child(["--run", json.dumps(spec)], cache)
        _, warm_cpu = run_child(["--run", json.dumps(spec)], cache)
    print(
        f"\nper run (vocab {args.vocab}, defaults, {TARGETS} targets): {full['tokens']:,} tokens, "
        f"{full_cpu:.1f} CPU-s in a fresh process ({full['tokens'] / full_cpu:,.0f} tok/CPU-s), "
        f"{full['parameters']:,} parameters\n"
        f"compile at {compile_tokens:,} tokens: eager {eager_cpu:.1f} CPU-s, compile cold {cold_cpu:.1f}, "
        f"warm cache {warm_cpu:.1f}"
    )
    return {
        "run_tokens": str(full["tokens"]),
        "run_cpu_s": f"{full_cpu:.1f}",
        "compile_cold_s": f"{cold_cpu - eager_cpu:.1f}",
        "compile_warm_s": f"{warm_cpu - eager_cpu:.1f}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: --vocab, context 128, short timings")
    parser.add_argument("--vocab", type=int, default=2048, help="vocabulary of the RESULT figures and per-run cost")
    parser.add_argument("--tokens", type=int, help="training tokens of the per-run cost (default 1,000,000)")
    parser.add_argument("--compile-tokens", type=int, default=262_144, help="training tokens of the compile runs")
    parser.add_argument("--group", help="internal: one child's step measurements (JSON)")
    parser.add_argument("--run", help="internal: one child's train_proxy run (JSON)")
    args = parser.parse_args(argv)
    if args.group:
        print("CHILD " + json.dumps(measure_group(**json.loads(args.group))))
        return 0
    if args.run:
        print("CHILD " + json.dumps(proxy_run(**json.loads(args.run))))
        return 0

    headline = step_table(args)[args.vocab, 128]
    best = max(headline, key=headline.__getitem__)
    baseline = headline["full_eager_fp32"]
    fields = {"vocab": args.vocab, "context": 128, "eager_fp32_tok_per_s": f"{baseline:.0f}"}
    fields |= {"best_tok_per_s": f"{headline[best]:.0f}", "best": best, "speedup": f"{headline[best] / baseline:.2f}"}
    fields |= run_costs(args)
    print("\nRESULT " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
