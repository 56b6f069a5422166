"""An end-to-end mixing experiment: does the mixture winnow proposes beat uniform and natural weights?

1. Runs a winnow manifest with the ``mix`` stage over real text sources: a swarm of proxy runs, the
   regression chosen by k-fold Spearman, the proposal, the final shards.
   Sources: six corpora from ``../shared/data/text`` with the Brown corpus (mixed genres) as a target
   that is never trained on; without that folder, four sources built from this machine's files
   (:mod:`winnow.mixers.local_sources`) with the standard library's docstrings as the never-trained target.
2. Trains fresh proxies, with the same size and token budget and 3 seeds the swarm never used, on the
   proposed mixture, on uniform weights and on natural (token-proportional) weights, and prints the
   target loss of each as mean +- sd.

Passes when the proposal's mean loss is the lowest by more than the pooled seed sd and the held-out
Spearman of the chosen regression is >= 0.8. CPU is the user+sys time of the whole process tree.

    python benchmarks/mix_experiment.py [--quick] [--runs 32] [--proxy-tokens 1000000] [--keep DIR]

Ends with ``RESULT runs=.. spearman=.. loss_proposed=.. loss_uniform=.. loss_natural=.. seed_sd=.. cpu_min=..``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.process_tree import cpu_children, reap_orphans, run_benchmark

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "text"
SHARED_SOURCES = [
    "wikipedia_wikitext2",
    "nltk_abc_news",
    "stackexchange_beer_coffee",
    "nltk_webtext_forum_ads_reviews_scripts",
    "nltk_nps_chat",
    "sms_spam_collection",
]
SHARED_TARGET = "nltk_brown_mixed_genres"
NEW_SEEDS = (101, 202, 303)


def _sources(work: Path) -> tuple[dict[str, Path], str]:
    """Source name -> JSONL path (the target among them) and the target's name."""
    if all((SHARED_TEXT / f"{name}.jsonl").exists() for name in [*SHARED_SOURCES, SHARED_TARGET]):
        return {name: SHARED_TEXT / f"{name}.jsonl" for name in [*SHARED_SOURCES, SHARED_TARGET]}, SHARED_TARGET
    from winnow.mixers.local_sources import write_local_sources

    return write_local_sources(work / "local_sources"), "python_docs"


def _manifest(args: argparse.Namespace, work: Path, sources: dict[str, Path], target: str) -> Path:
    proxy = {
        "d_model": args.d_model,
        "layers": args.layers,
        "context": args.context,
        "batch_size": args.batch_size,
        "tokens": args.proxy_tokens,
        "eval_tokens": args.eval_tokens,
    }
    manifest = {
        "name": "mix_experiment",
        "output": str(work / "out"),
        "executor": {"tasks": 2, "workers": 2},
        "sources": [{"name": n, "kind": "jsonl", "paths": [str(p)]} for n, p in sources.items()],
        "stages": {
            "extract": None,
            "heuristics": None,
            "dedup": None,
            "mix": {
                "token_budget": args.budget,
                "sources": [n for n in sources if n != target],
                "targets": [{"source": target}],
                "vocab_size": args.vocab,
                "proxy_data_tokens": args.source_tokens,
                "swarm": {"runs": args.runs, "concentration": args.concentration, "seed": 0},
                "proxy": proxy,
                "proposer": {"candidates": 100_000, "top_k": 100},
                "max_epochs": None,
            },
        },
    }
    path = work / "mix_experiment.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def _fresh_run(job: tuple[str, dict[str, float], int, str, dict[str, Any], list[str], str]) -> tuple[str, float]:
    """Train one proxy (a worker process) and return (mixture name, target loss)."""
    name, weights, seed, corpus, proxy, targets, vocab = job
    from winnow.mixers.corpus import load_arrays
    from winnow.mixers.proxy import ProxyConfig, train_proxy

    train = load_arrays(Path(corpus) / "train", [s for s, w in weights.items() if w > 0])
    evaluation = load_arrays(Path(corpus) / "targets", targets)
    result = train_proxy(train, weights, evaluation, int(vocab), ProxyConfig(**proxy), seed)
    return name, statistics.fmean(result.losses.values())


def experiment(args: argparse.Namespace, work: Path) -> str:
    started = time.monotonic()
    sources, target = _sources(work)
    manifest = _manifest(args, work, sources, target)
    print(f"swarm: {args.runs} proxy runs of {args.proxy_tokens:,} tokens; target {target} (never trained on)")
    winnow = Path(sys.executable).with_name("winnow")
    subprocess.run([str(winnow), "run", str(manifest), "--no-progress"], check=True)
    reap_orphans()
    run_dir = work / "out" / "mix_experiment"
    report = json.loads((run_dir / "stages" / "mix" / "fit" / "report.json").read_text())
    summary = json.loads((run_dir / "stages" / "mix" / "corpus" / "summary.json").read_text())
    spearman = report["models"][report["chosen"]]["spearman"]
    print(f"regression: {json.dumps(report['models'])}; chosen {report['chosen']}")
    proxy_settings = json.loads((run_dir / "run.json").read_text())["manifest"]["stages"]["mix"]["proxy"]
    mixtures = {
        "proposed": report["weights"]["proposed"],
        "uniform": {s: 1 / len(report["sources"]) for s in report["sources"]},
        "natural": report["weights"]["prior"],
    }
    for name, weights in mixtures.items():
        print(f"{name:9s}", " ".join(f"{s}={w:.3f}" for s, w in weights.items()))
    corpus = str(run_dir / "stages" / "mix" / "corpus")
    jobs = [
        (name, weights, seed, corpus, proxy_settings, summary["targets"], summary["vocab_size"])
        for name, weights in mixtures.items()
        for seed in NEW_SEEDS
    ]
    with get_context("spawn").Pool(2) as pool:
        results = pool.map(_fresh_run, jobs)
    losses: dict[str, list[float]] = {name: [] for name in mixtures}
    for name, loss in results:
        losses[name].append(loss)
    means = {name: statistics.fmean(values) for name, values in losses.items()}
    seed_sd = statistics.fmean(statistics.variance(v) for v in losses.values()) ** 0.5  # pooled over the groups
    for name, values in losses.items():
        print(f"{name:9s} target loss {means[name]:.4f} +- {statistics.stdev(values):.4f}  ({len(values)} seeds)")
    others = min(means["uniform"], means["natural"])
    won = means["proposed"] < others - seed_sd
    print(
        f"proposed beats the better baseline by {others - means['proposed']:.4f} nats "
        f"(pooled seed sd {seed_sd:.4f}): {'yes' if won else 'NO'}; held-out Spearman {spearman:.3f} "
        f"({'>=' if spearman >= 0.8 else '<'} 0.8)"
    )
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu_min = (own.ru_utime + own.ru_stime + cpu_children()) / 60
    print(f"wall {time.monotonic() - started:.0f} s")
    return (
        f"RESULT runs={report['runs']} spearman={spearman:.4f} loss_proposed={means['proposed']:.4f} "
        f"loss_uniform={means['uniform']:.4f} loss_natural={means['natural']:.4f} seed_sd={seed_sd:.4f} "
        f"cpu_min={cpu_min:.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke check: 8 runs of tiny proxies (< 1 minute)")
    parser.add_argument("--runs", type=int, default=32, help="proxy runs in the swarm")
    parser.add_argument("--proxy-tokens", type=int, default=1_000_000, help="training tokens per proxy")
    parser.add_argument("--eval-tokens", type=int, default=65_536, help="target tokens evaluated per proxy")
    parser.add_argument("--source-tokens", type=int, default=2_000_000, help="tokens per source kept for proxies")
    parser.add_argument("--vocab", type=int, default=2048, help="BPE vocabulary trained by winnow")
    parser.add_argument("--d-model", type=int, default=64, help="proxy width")
    parser.add_argument("--layers", type=int, default=2, help="proxy depth")
    parser.add_argument("--context", type=int, default=128, help="proxy context length")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--concentration", type=float, default=1.0, help="Dirichlet concentration of the swarm")
    parser.add_argument("--budget", type=float, default=50_000_000, help="final corpus tokens")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.proxy_tokens, args.eval_tokens, args.source_tokens = 8, 50_000, 8192, 200_000
        args.vocab, args.d_model, args.layers, args.context = 1024, 32, 1, 64
    return run_benchmark(experiment, args, "winnow-mix-")


if __name__ == "__main__":
    raise SystemExit(main())
