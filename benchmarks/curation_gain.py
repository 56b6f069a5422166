"""Does curation help? Equal-budget proxy models on raw extracted text vs winnow-curated text.

1. Input: every HTML page of the shared data (the shared WARCs' HTML responses, the article-extraction
   benchmark's and CleanEval's pages), written as WARC files.
2. winnow runs extract -> heuristics -> dedup on them; a fastText quality classifier is trained with
   `winnow classifier train` on high-quality prose that is not the target (ABC news, StackExchange) against
   a sample of the extracted raw pages; the run then adds the quality stage (top ``--top-fraction``).
3. A byte-level BPE is trained on the raw text; the raw corpus (extract's output: every extracted page)
   and the curated corpus (quality's output) are tokenised with it.
4. Proxy language models (the mix stage's trainer, same size, same token budget, same seeds) are trained on
   each and evaluated on two high-quality targets neither saw: Wikipedia articles (WikiText-2) and the Brown
   corpus (edited English prose of 15 genres), both turned back into plain text (``target_texts``): as
   shipped they are tokenised (spaces before punctuation, Brown's `` '' quotes, WikiText's @-@ and <unk>),
   and a proxy's loss on those artefacts measures how much tokenised text it saw, not the quality of its
   data. The token budget is the curated corpus's size (at most ``--tokens``): proxies sample windows at
   random offsets, so the curated corpus is seen about once on average (some windows twice) and the raw
   one's windows are almost all distinct; the comparison is of the text, with any repetition against the
   curated side.

Curation helps when the curated corpus's loss, averaged over the targets, is lower; each target's losses are
printed too. Needs ../shared/data (exits 0 with a message without it).

    python benchmarks/curation_gain.py [--quick] [--tokens 1000000] [--seeds 0 1 2] [--keep DIR]

Ends with ``RESULT loss_raw=.. loss_curated=.. gain_pct=.. wiki_raw=.. wiki_curated=.. brown_raw=..
brown_curated=.. budget=.. raw_tokens=.. curated_tokens=.. seeds=..``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.extract_vs_datatrove import collect_pages, gold_sets, write_input  # noqa: E402
from winnow.mixers.proxy import ProxyConfig, train_proxy  # noqa: E402
from winnow.mixers.tokens import END_OF_TEXT, train_tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
POSITIVE = ["nltk_abc_news.jsonl", "stackexchange_beer_coffee.jsonl"]
TARGETS = {"wiki": "wikipedia_wikitext2.jsonl", "brown": "nltk_brown_mixed_genres.jsonl"}
WINNOW = str(Path(sys.executable).with_name("winnow"))


def manifest(work: Path, quality: bool, top_fraction: float) -> Path:
    stages: dict[str, object] = {
        "extract": {"timeout_s": 5, "url_filter": {"use_integrated_lists": False}, "language": {"keep": ["en"]}},
        "heuristics": {"gopher_repetition": True, "gopher_quality": True, "c4": True, "fineweb": True},
        "dedup": {},
    }
    if quality:
        stages["quality"] = {
            "classifiers": [{"name": "quality", "model": str(work / "quality.bin")}],
            "keep": {"top_fraction": top_fraction},
        }
    path = work / ("curated.yaml" if quality else "filtered.yaml")
    document = {
        "name": "gain",
        "output": str(work / "out"),
        "executor": {"kind": "local", "tasks": 2, "workers": 2},
        "sources": [{"name": "web", "kind": "warc", "paths": [str(work / "in" / "*.warc.gz")]}],
        "stages": stages,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def winnow(*args: str) -> None:
    result = subprocess.run([WINNOW, *args], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"winnow {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr[-3000:]}")


def texts(folder: Path) -> list[str]:
    return [
        t
        for f in sorted(folder.glob("*.parquet"))
        for t in pq.read_table(f, columns=["text"]).column("text").to_pylist()
    ]


def tokens(tokenizer: object, documents: list[str]) -> np.ndarray:
    eot = tokenizer.token_to_id(END_OF_TEXT)  # type: ignore[attr-defined]
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(documents):  # type: ignore[attr-defined]
        ids.extend(encoding.ids)
        ids.append(eot)
    return np.array(ids, dtype=np.uint16)


def experiment(args: argparse.Namespace, work: Path) -> str:
    pages = collect_pages(SHARED, gold_sets(SHARED))
    chunk = -(-len(pages) // 4)
    for n in range(4):
        write_input(pages[n * chunk : (n + 1) * chunk], work / "in" / f"pages-{n}.warc.gz")
    print(f"input: {len(pages):,} HTML pages in 4 WARC files")

    started = time.monotonic()
    winnow("run", str(manifest(work, False, args.top_fraction)), "--no-progress", "--no-publish")
    run_dir = work / "out" / "gain"
    raw = texts(run_dir / "stages" / "extract" / "data")
    negatives = work / "negative.jsonl"
    negatives.write_text("".join(json.dumps({"text": t}) + "\n" for t in raw))
    positives = [a for name in POSITIVE for a in ("-p", str(SHARED / "text" / name))]
    winnow("classifier", "train", *positives, "-n", str(negatives), "-o", str(work / "quality.bin"), "--no-progress")
    winnow("run", str(manifest(work, True, args.top_fraction)), "--no-progress", "--no-publish")
    curated = texts(run_dir / "stages" / "quality" / "data")
    seconds = time.monotonic() - started
    print(f"winnow: {len(raw):,} documents extracted, {len(curated):,} kept after curation ({seconds:.0f} s)")

    tokenizer = train_tokenizer(raw, args.vocab)
    arrays = {"raw": tokens(tokenizer, raw), "curated": tokens(tokenizer, curated)}
    targets = {name: tokens(tokenizer, target_texts(name)) for name in TARGETS}
    budget = min(args.tokens, *(len(a) for a in arrays.values()))
    print(f"tokens: raw {len(arrays['raw']):,}, curated {len(arrays['curated']):,}; budget {budget:,} per proxy")
    # small batches and windows: ~8x more optimiser steps than the mix defaults at this budget, less seed noise
    config = ProxyConfig(tokens=budget, threads=2, batch_size=8, context=64)
    losses: dict[str, dict[str, list[float]]] = {name: {t: [] for t in TARGETS} for name in arrays}
    for seed in args.seeds:
        for name, array in arrays.items():
            result = train_proxy({name: array}, {name: 1.0}, targets, tokenizer.get_vocab_size(), config, seed)
            for target, loss in result.losses.items():
                losses[name][target].append(loss)
            shown = ", ".join(f"{t} {v:.4f}" for t, v in result.losses.items())
            print(f"  seed {seed} {name:>7}: {shown} ({result.seconds:.0f} s)")
    mean = {name: {t: statistics.mean(v) for t, v in per.items()} for name, per in losses.items()}
    for target in TARGETS:
        print(f"{target:>6}: raw {mean['raw'][target]:.4f}, curated {mean['curated'][target]:.4f} nats/token")
    raw_loss = statistics.mean(mean["raw"].values())
    curated_loss = statistics.mean(mean["curated"].values())
    gain = 100 * (raw_loss - curated_loss) / raw_loss
    verdict = "curation helps" if curated_loss < raw_loss else "curation does NOT help"
    print(f"{verdict}: {curated_loss:.4f} curated vs {raw_loss:.4f} raw, mean over targets ({gain:+.2f}%)")
    per_target = " ".join(f"{t}_{n}={mean[n][t]:.4f}" for t in TARGETS for n in ("raw", "curated"))
    return (
        f"RESULT loss_raw={raw_loss:.4f} loss_curated={curated_loss:.4f} gain_pct={gain:.2f} {per_target} "
        f"budget={budget} raw_tokens={len(arrays['raw'])} curated_tokens={len(arrays['curated'])} "
        f"seeds={len(args.seeds)}"
    )


WIKITEXT = [
    (re.compile(r" @([-,.])@ "), r"\1"),  # 1 @,@ 000 -> 1,000; guest @-@ starring -> guest-starring
    (re.compile(r" ([.,;:!?)\]}%]|'s\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),
    (re.compile(r"(?:= )+([^=]+?)(?: =)+(?=\s|$)"), r"\1"),  # = = Heading = = -> Heading
]
BROWN = [
    (re.compile(r"``\s*|\s*''"), '"'),  # `` quoted '' -> "quoted"
    (re.compile(r" ([.,;:!?)\]}%]|'s\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
]
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def without_unknowns(document: str) -> str:
    """WikiText-2's document with every sentence that holds an ``<unk>`` (a rare word it replaced) left out."""
    lines = (
        " ".join(s for s in SENTENCE_BREAK.split(line.strip()) if "<unk>" not in s) for line in document.split("\n")
    )
    return "\n".join(line for line in lines if line)


def target_texts(name: str) -> list[str]:
    """A target's documents as plain text: both corpora come tokenised (spaces before punctuation, Brown's
    `` '' quotes, WikiText's @-@ and <unk>), which no web page looks like; that is undone here."""
    lines = (SHARED / "text" / TARGETS[name]).read_text().splitlines()
    documents = [json.loads(line)["text"] for line in lines if line.strip()]
    for pattern, replacement in WIKITEXT if name == "wiki" else BROWN:
        documents = [pattern.sub(replacement, d) for d in documents]
    return [without_unknowns(d) for d in documents] if name == "wiki" else documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two seeds instead of three")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="most training tokens per proxy")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="proxy seeds (the same for both corpora)")
    parser.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary")
    parser.add_argument("--top-fraction", type=float, default=0.5, help="quality stage: share of documents kept")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    if not all((SHARED / "text" / t).exists() for t in TARGETS.values()) or not (SHARED / "html_gt").is_dir():
        print(f"{SHARED} is absent: this benchmark needs the shared WARCs, HTML sets and text corpora")
        return 0
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        print(experiment(args, args.keep))
        return 0
    with tempfile.TemporaryDirectory(prefix="winnow-gain-") as work:
        print(experiment(args, Path(work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
