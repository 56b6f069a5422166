"""Benchmark: winnow's quality stage (fastText scoring, then selection) against datatrove's FastTextClassifierFilter.

What it measures:

1. A classifier. Real text from ``--shared-data``/text (exit 2 when absent): positives (``hq``) are
   the WikiText-2, StackExchange, NLTK ABC news and Brown documents; negatives (``lq``) the SMS spam
   collection, NLTK NPS chat and NLTK webtext lines. Each source is split ``--train-share`` / rest
   (seeded). A fastText model (``__label__hq``/``__label__lq``, wordNgrams 2, dim 32, bucket 500,000,
   epoch 5) is trained on the training part, normalised with ``winnow.filters.classifier_text.normalize``, in
   a fresh child process (this binding's training can hit "Encountered NaN" in a process that has
   trained or allocated before). ``auc``: ROC AUC (rank statistic, ties averaged) of P(hq) on the
   held-out part, predicted by the stage's own scorer (``winnow.filters.classifier_score``: ``load_classifier`` +
   ``score_texts``, which normalises as training did).
2. The scoring corpus: every document of both parts (so the natural mix: mostly short chat and SMS
   lines, some long articles; the mean length is printed), replicated under distinct ids
   (``<id>`` for the first copy, ``<id>~<k>`` after) and shuffled to ``--docs`` documents (default
   1,000,000; ``--quick``: 10,000), written as ``--shards`` zstd Parquet files (columns ``id``, ``text``).
   Both sides read these files and split them over their tasks by file (file ``i`` to task
   ``i % tasks``).
3. winnow: ``python -m winnow.pipeline.cli run MANIFEST --no-progress`` with only ``stages.quality``
   enabled (one classifier ``q``, ``keep: {top_fraction: --top-fraction}``; local executor with
   ``--tasks``/``--workers``, default 2/2), in a child process. It reads the Parquet source, scores
   every document into ``scored/`` (zstd Parquet, all document columns + ``score_q``), then the select
   phase (DuckDB, one task, ``--workers`` threads) writes ``data/`` and ``rejects/`` (again every
   document), and the run writes its records (input checksums, funnel, stats). Headline figure
   ``winnow_docs_per_cpu_s``: documents / CPU-seconds (user+sys) of the whole process tree of that
   command, start-up, both phases and bookkeeping included. This script makes itself a child subreaper
   (as ``dedup_scale.py`` does), so descendants orphaned by their parents (a forkserver and its pool
   workers) are reaped here and counted by ``getrusage(RUSAGE_CHILDREN)``.
4. Reselection: the same command again with ``--set stages.quality.keep.top_fraction=--reselect-fraction``.
   The runner compares per-phase fingerprints, so only the select phase runs. Then that command once
   more, with nothing left to do (start-up, the model check, bookkeeping). ``reselect_share``, the
   issue's measure: the select phase's CPU-seconds (rerun minus unchanged rerun) / the score phase's
   (first run minus rerun). ``reselect_command_share`` (extra): the whole rerun command's CPU-seconds /
   the whole first command's (start-up, about 2 CPU-seconds, is in both, so a small ``--docs`` gives a
   large share); ``reselect_wall_share``: the same with wall times. Checked: the files in ``scored/`` keep their names
   and mtimes, ``stage.json`` keeps the score phase's record, and ``data/`` holds the new fraction.
   ``winnow_score_docs_per_cpu_s`` (extra): the score phase alone, estimated as documents / (first run
   - rerun CPU-seconds), since the rerun repeats everything of the first run except the scoring.
   Caveat: the copies make the output more compressible than unique text (at the default size each
   kept ``hq`` text is ~15 of the 100,000 rows a top 10% keeps), which flatters the select phase's writing.
5. datatrove: ``ParquetReader -> FastTextClassifierFilter -> ParquetWriter(compression="zstd")`` on
   ``LocalPipelineExecutor`` with the same tasks/workers, in a child process (this script with
   ``--side datatrove``); documents / CPU-seconds of its whole process tree (``datatrove_docs_per_cpu_s``).
   The filter has neither ``keep_labels`` nor ``remove_labels``, so it annotates every document with
   both label probabilities and keeps all of them (``save_labels_in_metadata=True``, document level,
   its default ``newline_replacement=""``): the scoring phase of a datatrove pipeline, writing every
   document once. Two adaptations: the model is loaded straight from the local file instead of being
   copied into datatrove's asset cache first (``cached_asset_path_or_download``), and the writer gets
   an explicit schema (the filter stores the labels best first, so the metadata struct inferred from
   the first document does not fit every document). datatrove feeds the model the raw text (newlines
   removed), not winnow's normalisation, so its probabilities differ; their held-out AUC is printed,
   not in RESULT.

6. Classifier kinds (in this process; CPU = this process's user+sys, all threads): the same held-out
   sample (``--kind-docs`` documents, default 2,000; ``--quick`` 300) scored by the fastText model, by an
   embedding + head model (``winnow.filters.classifier_embed``: the bundled all-MiniLM-L6-v2, a logistic head
   fitted on 200 training documents; only the first ``--embed-docs`` of the sample, default 256, ``--quick``
   64, as the transformer is slow on CPU) and by a static distillation of that encoder with its own head
   (the table made once by ``winnow classifier distill`` into ``--static-table``, default
   ``~/.cache/winnow/bench-minilm-static.npz``, and reused). ``fasttext_docs_per_cpu_s``,
   ``embedding_docs_per_cpu_s``, ``static_docs_per_cpu_s``: documents / CPU-seconds of the scoring call alone.
   Human judgment: the fastText model of step 1 scores ``--labels`` (default the DCLM agreement set in
   ``quality_labels/``, evaluation only): ``auc_human`` (ROC AUC), ``auc_length`` (length alone) and
   ``tercile_auc`` (mean AUC within length terciles), as ``winnow classifier eval --labels`` prints them.

``ratio`` = winnow / datatrove documents per CPU-second (target >= 1.5). Also printed: wall times, the
per-step time stats (datatrove's, wall, summed over tasks) of both sides, and the held-out AUC of the
scores each side wrote. Ends with one ``RESULT`` line. Exit 2 when the shared data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from process_tree import cpu_children, reap_orphans, run_benchmark  # noqa: E402

from winnow.filters.classifier_metrics import roc_auc  # noqa: E402
from winnow.filters.classifier_text import normalize  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
STATIC_TABLE = Path.home() / ".cache" / "winnow" / "bench-minilm-static.npz"
HEAD_TRAIN_DOCS = 200  # training documents of the embedding and static heads (throughput, not quality)
# file stem -> label; positives are edited prose, negatives chat/SMS/forum lines
CORPUS_FILES = {
    "wikipedia_wikitext2": "hq",
    "stackexchange_beer_coffee": "hq",
    "nltk_abc_news": "hq",
    "nltk_brown_mixed_genres": "hq",
    "sms_spam_collection": "lq",
    "nltk_nps_chat": "lq",
    "nltk_webtext_forum_ads_reviews_scripts": "lq",
}
FASTTEXT_PARAMS = {"wordNgrams": 2, "dim": 32, "bucket": 500_000, "epoch": 5, "verbose": 0}
TRAIN_ATTEMPTS = 3
RUN_NAME = "quality-bench"
SOURCE_NAME = "bench"
CLASSIFIER = "q"
SCORE_COLUMN = f"score_{CLASSIFIER}"
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])
# datatrove's ParquetWriter infers its schema from the first document unless given one, and the filter stores
# the label probabilities in prediction order (best first), so the struct's field order would vary by document
LABEL_FIELDS = [("__label__hq", pa.float64()), ("__label__lq", pa.float64())]
DATATROVE_SCHEMA = pa.schema(
    [("text", pa.string()), ("id", pa.string()), ("metadata", pa.struct([("file_path", pa.string()), *LABEL_FIELDS]))]
)


# ------------------------------------------------------------------------------------ input


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    label: int  # 1 = hq
    origin: str


def load_documents(text_dir: Path) -> list[Doc]:
    docs: list[Doc] = []
    for stem, label in CORPUS_FILES.items():
        with open(text_dir / f"{stem}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                text = row.get("text")
                if isinstance(text, str) and text.strip():
                    docs.append(Doc(str(row["id"]), text, int(label == "hq"), stem))
    return docs


def split(docs: Sequence[Doc], train_share: float, seed: int) -> tuple[list[Doc], list[Doc]]:
    """Per source, a seeded ``train_share`` of the documents for training, the rest held out."""
    rng = random.Random(seed)
    train: list[Doc] = []
    held: list[Doc] = []
    for stem in CORPUS_FILES:
        part = [d for d in docs if d.origin == stem]
        rng.shuffle(part)
        cut = round(len(part) * train_share)
        train += part[:cut]
        held += part[cut:]
    return train, held


def train_model(train: Sequence[Doc], work: Path) -> Path:
    """Train the classifier in a fresh child process (this script with ``--side train``); retry on failure."""
    train_file = work / "train.txt"
    lines = [f"__label__{'hq' if d.label else 'lq'} {normalize(d.text)}" for d in train]
    random.Random(0).shuffle(lines)
    train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = work / "quality.bin"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "train"]
    cmd += ["--train-file", str(train_file), "--model", str(model)]
    for attempt in range(1, TRAIN_ATTEMPTS + 1):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode == 0 and model.is_file():
            return model
        print(f"  training attempt {attempt} failed: {(proc.stderr or proc.stdout).strip()[-300:]}", file=sys.stderr)
    raise SystemExit(f"fastText training failed {TRAIN_ATTEMPTS} times; see the messages above")


def train_side(train_file: Path, model: Path) -> None:
    import fasttext

    threads = max(1, min(4, os.cpu_count() or 1))
    fasttext.train_supervised(str(train_file), thread=threads, **FASTTEXT_PARAMS).save_model(str(model))


def heldout_scores(model: Path, held: Sequence[Doc]) -> np.ndarray:
    """P(hq) of the held-out documents, computed as the stage computes it."""
    from winnow.filters.classifier_score import load_classifier, score_texts

    return score_texts(load_classifier(model, "hq"), [d.text for d in held], "hq")


def scores_of(files: Sequence[Path], wanted: Sequence[str], column: str, field: str | None = None) -> dict[str, float]:
    """id -> score of the rows of ``files`` whose id is in ``wanted``; the score is ``column`` (or its struct
    ``field``)."""
    keep = pa.array(list(wanted), pa.string())
    found: dict[str, float] = {}
    for path in files:
        table = pq.read_table(path, columns=["id", column])
        table = table.filter(pc.is_in(table.column("id"), value_set=keep))
        values = table.column(column).combine_chunks()
        if field is not None:
            values = pc.struct_field(values, field)
        found.update(zip(table.column("id").to_pylist(), values.to_pylist(), strict=True))
    return found


def copy_id(doc_id: str, copy: int) -> str:
    return doc_id if copy == 0 else f"{doc_id}~{copy}"


@dataclass
class Corpus:
    folder: Path
    n_docs: int
    mean_chars: float
    bytes_on_disk: int
    shards: int


def write_corpus(docs: Sequence[Doc], n_docs: int, shards: int, seed: int, folder: Path) -> Corpus:
    """``n_docs`` documents: ``docs`` repeated (distinct ids per copy), shuffled, in ``shards`` Parquet files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    # copy k of every document is used (in a random order) before any copy k + 1, so a partial last copy
    # (or a corpus smaller than the documents) is a uniform sample; then the whole corpus is shuffled
    rounds = -(-n_docs // len(docs))
    which = np.concatenate([rng.permutation(len(docs)) for _ in range(rounds)])[:n_docs]
    copies = np.repeat(np.arange(rounds), len(docs))[:n_docs]
    order = rng.permutation(n_docs)
    which, copies = which[order], copies[order]
    chars = 0
    for shard in range(shards):
        rows = range(shard, n_docs, shards)
        ids = [copy_id(docs[int(which[i])].id, int(copies[i])) for i in rows]
        texts = [docs[int(which[i])].text for i in rows]
        chars += sum(len(t) for t in texts)
        table = pa.table({"id": ids, "text": texts}, schema=DOC_SCHEMA)
        pq.write_table(table, folder / f"part-{shard:04d}.parquet", compression="zstd", row_group_size=10_000)
    size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    return Corpus(folder, n_docs, chars / n_docs, size, shards)


# --------------------------------------------------------------------------- process-tree tools


@dataclass
class Timed:
    cpu_s: float
    wall_s: float


def run_tree(cmd: Sequence[str], log: Path, what: str) -> Timed:
    """Run ``cmd`` (cwd: repo root) to completion; CPU of its whole tree and wall time. Exit 0 required."""
    reap_orphans(0)
    cpu0, wall0 = cpu_children(), time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        proc.wait()
    wall = time.perf_counter() - wall0
    reap_orphans()
    if proc.returncode != 0:
        sys.stderr.write(log.read_bytes()[-4000:].decode("utf-8", "replace"))
        raise SystemExit(f"{what} failed (exit {proc.returncode}); its output is above (log: {log})")
    return Timed(cpu_children() - cpu0, wall)


# ------------------------------------------------------------------------------------- winnow


def write_manifest(work: Path, corpus: Corpus, model: Path, args: argparse.Namespace) -> Path:
    import yaml

    manifest = {
        "name": RUN_NAME,
        "output": str(work / "out"),
        "executor": {"kind": "local", "tasks": args.tasks, "workers": args.workers},
        "sources": [
            {"name": SOURCE_NAME, "kind": "parquet", "paths": [str(corpus.folder / "*.parquet")], "id_field": "id"}
        ],
        "stages": {
            "extract": None,
            "heuristics": None,
            "dedup": None,
            "quality": {
                "classifiers": [{"name": CLASSIFIER, "model": str(model), "label": "hq"}],
                "keep": {"top_fraction": args.top_fraction},
            },
        },
    }
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def step_seconds(steps: Any) -> list[tuple[str, float]]:
    """(step name, seconds summed over tasks) from datatrove-format per-step stats."""
    out = []
    for step in steps or []:
        total = (step.get("time_stats") or {}).get("total")
        if total is not None:
            out.append((str(step.get("name", "?")), float(total)))
    return out


def rows_in(folder: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))


@dataclass
class WinnowResult:
    first: Timed
    rerun: Timed
    noop: Timed  # the rerun's command once more, nothing to do: start-up and bookkeeping
    scored_rows: int
    kept_first: int
    kept_rerun: int
    stage_seconds: float | None  # the first run's stage time (both phases), from stats.json
    select_seconds: float | None  # the first run's select phase, from its datatrove stats
    rerun_stage_seconds: float | None
    steps: list[tuple[str, float]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # wanted id -> score_q


def run_winnow(
    work: Path, corpus: Corpus, model: Path, args: argparse.Namespace, wanted: Sequence[str]
) -> WinnowResult:
    work.mkdir(parents=True)
    manifest = write_manifest(work, corpus, model, args)
    run_dir = work / "out" / RUN_NAME
    stage_dir = run_dir / "stages" / "quality"
    cmd = [sys.executable, "-m", "winnow.pipeline.cli", "run", str(manifest), "--no-progress"]
    print(f"winnow: quality stage on {corpus.n_docs:,} documents (top {args.top_fraction}) ...", flush=True)
    first = run_tree(cmd, work / "run-1.log", "the winnow run")
    print(f"  wall {first.wall_s:.1f} s, CPU {first.cpu_s:.1f} s", flush=True)
    stats = read_json(stage_dir / "stats.json") or {}
    select_stats = read_json(run_dir / "logs" / "quality" / "select" / "stats.json")
    select_steps = step_seconds(select_stats)
    scored_files = sorted((stage_dir / "scored").glob("*.parquet"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in scored_files}
    state = read_json(stage_dir / "stage.json") or {}
    kept_first = rows_in(stage_dir / "data")

    print(f"winnow: rerun with keep.top_fraction={args.reselect_fraction} (selection only) ...", flush=True)
    rerun = run_tree(
        [*cmd, "--set", f"stages.quality.keep.top_fraction={args.reselect_fraction}"],
        work / "run-2.log",
        "the winnow rerun",
    )
    print(f"  wall {rerun.wall_s:.1f} s, CPU {rerun.cpu_s:.1f} s", flush=True)
    print("winnow: the same command again (nothing changed: start-up and bookkeeping only) ...", flush=True)
    noop = run_tree(
        [*cmd, "--set", f"stages.quality.keep.top_fraction={args.reselect_fraction}"],
        work / "run-3.log",
        "the unchanged winnow rerun",
    )
    print(f"  wall {noop.wall_s:.1f} s, CPU {noop.cpu_s:.1f} s", flush=True)
    after = {p.name: p.stat().st_mtime_ns for p in sorted((stage_dir / "scored").glob("*.parquet"))}
    state_after = read_json(stage_dir / "stage.json") or {}
    if after != mtimes:
        raise SystemExit("the rerun rewrote stages/quality/scored/: selection changes must not rescore")
    score_phase = (state.get("phases") or {}).get("score")
    if score_phase is None or (state_after.get("phases") or {}).get("score") != score_phase:
        raise SystemExit("the rerun changed the score phase's record in stage.json")
    kept_rerun = rows_in(stage_dir / "data")
    rerun_stats = read_json(stage_dir / "stats.json") or {}
    return WinnowResult(
        first=first,
        rerun=rerun,
        noop=noop,
        scored_rows=rows_in(stage_dir / "scored"),
        kept_first=kept_first,
        kept_rerun=kept_rerun,
        stage_seconds=stats.get("seconds"),
        select_seconds=select_steps[0][1] if select_steps else None,
        rerun_stage_seconds=rerun_stats.get("seconds"),
        steps=[(f"score: {n}", s) for n, s in step_seconds(stats.get("steps"))]
        + [(f"select: {n}", s) for n, s in select_steps],
        scores=scores_of(scored_files, wanted, SCORE_COLUMN),
    )


# ----------------------------------------------------------------------------------- datatrove


def datatrove_side(docs_dir: Path, workdir: Path, model: Path, tasks: int, workers: int) -> None:
    """datatrove's reader -> fastText filter (annotate, keep all) -> Parquet writer on the same files."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    class LocalFastTextClassifierFilter(FastTextClassifierFilter):
        """Loads ``model_url`` as a local path (no copy into datatrove's asset cache); otherwise unchanged."""

        @property
        def model(self) -> Any:
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(self.model_url)
            return self._model

    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(docs_dir), glob_pattern="*.parquet", text_key="text", id_key="id"),
            LocalFastTextClassifierFilter(model_url=str(model), save_labels_in_metadata=True),
            ParquetWriter(str(workdir / "output"), compression="zstd", schema=DATATROVE_SCHEMA),
        ],
        tasks=tasks,
        workers=workers,
        logging_dir=str(workdir / "logs"),
    ).run()


@dataclass
class DatatroveResult:
    timed: Timed
    rows: int
    steps: list[tuple[str, float]]
    scores: dict[str, float]  # wanted id -> P(hq)


def run_datatrove(
    work: Path, corpus: Corpus, model: Path, args: argparse.Namespace, wanted: Sequence[str]
) -> DatatroveResult:
    work.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "datatrove", "--docs-dir", str(corpus.folder)]
    cmd += ["--workdir", str(work), "--model", str(model), "--tasks", str(args.tasks), "--workers", str(args.workers)]
    print(f"datatrove: FastTextClassifierFilter on {corpus.n_docs:,} documents ...", flush=True)
    timed = run_tree(cmd, work / "run.log", "the datatrove run")
    print(f"  wall {timed.wall_s:.1f} s, CPU {timed.cpu_s:.1f} s", flush=True)
    files = sorted((work / "output").rglob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    scores = scores_of(files, wanted, "metadata", "__label__hq")
    return DatatroveResult(timed, rows, step_seconds(read_json(work / "logs" / "stats.json")), scores)


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: 10,000 documents")
    parser.add_argument("--docs", type=int, help="documents scored (default 1,000,000; --quick 10,000)")
    parser.add_argument("--shards", type=int, default=8, help="Parquet files of the scoring corpus")
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED, help="the shared data folder")
    parser.add_argument("--train-share", type=float, default=0.5, help="share of each source used for training")
    parser.add_argument("--seed", type=int, default=7, help="split and shuffle seed")
    parser.add_argument("--tasks", type=int, default=2, help="executor tasks (both sides)")
    parser.add_argument("--workers", type=int, default=2, help="executor workers (both sides)")
    parser.add_argument("--top-fraction", type=float, default=0.3, help="stages.quality.keep.top_fraction")
    parser.add_argument("--reselect-fraction", type=float, default=0.1, help="top_fraction of the rerun")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    parser.add_argument("--kind-docs", type=int, help="held-out documents scored per kind (2,000; --quick 300)")
    parser.add_argument("--embed-docs", type=int, help="of those, scored by the transformer (256; --quick 64)")
    parser.add_argument("--static-table", type=Path, default=STATIC_TABLE, help="static table, made once if absent")
    parser.add_argument("--labels", type=Path, help="human labels (default: quality_labels/dclm_agreement_data.jsonl)")
    parser.add_argument("--side", choices=["train", "datatrove"], help="internal: one child process's job")
    parser.add_argument("--train-file", type=Path, help="internal: training file of --side train")
    parser.add_argument("--model", type=Path, help="internal: model file of --side")
    parser.add_argument("--docs-dir", type=Path, help="internal: corpus folder of --side datatrove")
    parser.add_argument("--workdir", type=Path, help="internal: output folder of --side datatrove")
    args = parser.parse_args(argv)
    args.docs = args.docs or (10_000 if args.quick else 1_000_000)
    args.kind_docs = args.kind_docs or (300 if args.quick else 2_000)
    args.embed_docs = args.embed_docs or (64 if args.quick else 256)
    args.labels = args.labels or args.shared_data / "quality_labels" / "dclm_agreement_data.jsonl"
    return args


def heldout_auc(scores: dict[str, float], held: Sequence[Doc], keys: Sequence[str]) -> tuple[float, int]:
    """AUC over the held-out documents (``keys``: their ids on that side) found in ``scores``."""
    pairs = [(d.label, scores[k]) for d, k in zip(held, keys, strict=True) if scores.get(k) is not None]
    if not pairs:
        return float("nan"), 0
    labels, values = zip(*pairs, strict=True)
    return roc_auc(np.array(labels), np.array(values)), len(pairs)


def cpu_rate(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> float:
    """Documents per CPU-second (this process, all threads) of ``score(texts)``."""
    start = time.process_time()
    result = score(texts)
    spent = time.process_time() - start
    if len(result) != len(texts) or not np.isfinite(result).all():
        raise SystemExit("a classifier gave missing or non-finite scores")
    return len(texts) / max(spent, 1e-9)


def classifier_kinds(
    args: argparse.Namespace, model: Path, train: Sequence[Doc], held: Sequence[Doc]
) -> dict[str, float]:
    """Step 6: scoring throughput per kind on one held-out sample, and the fastText model against human labels."""
    from winnow.filters.classifier_data import read_labelled
    from winnow.filters.classifier_embed import BUNDLED, SentenceEncoder, StaticEncoder, distill_static, fit_head
    from winnow.filters.classifier_metrics import evaluate
    from winnow.filters.classifier_score import load_classifier, score_texts

    rng = random.Random(args.seed)
    sample = [d.text for d in rng.sample(list(held), min(args.kind_docs, len(held)))]
    head_docs = rng.sample(list(train), min(HEAD_TRAIN_DOCS, len(train)))
    labels = np.array([d.label for d in head_docs], float)
    fasttext = load_classifier(model, "hq")
    rates = {"fasttext": cpu_rate(lambda texts: score_texts(fasttext, texts, "hq"), sample)}
    if not args.static_table.is_file():
        print(f"making the static table {args.static_table} (once)...", flush=True)
        distill_static(BUNDLED, args.static_table)
    for kind, encoder in (
        ("embedding", SentenceEncoder(BUNDLED, device="cpu")),
        ("static", StaticEncoder(args.static_table)),
    ):
        head = fit_head("logistic", encoder.encode([d.text for d in head_docs]), labels)
        texts = sample[: args.embed_docs] if kind == "embedding" else sample
        rates[kind] = cpu_rate(lambda texts, e=encoder, h=head: h.apply(e.encode(texts)), texts)
        print(f"  {kind}: {rates[kind]:,.1f} docs per CPU-second over {len(texts):,} documents", flush=True)
    print(f"  fasttext: {rates['fasttext']:,.1f} docs per CPU-second over {len(sample):,} documents")
    human = read_labelled(args.labels)
    truth = np.array(human.values) >= 0.5
    metrics = evaluate(truth, score_texts(fasttext, human.texts, "hq"), lengths=np.array([len(t) for t in human.texts]))
    print(
        f"human labels ({args.labels.name}, {len(truth)} documents): ROC AUC {metrics['roc_auc']:.4f}, "
        f"length alone {metrics['length_auc']:.4f}, within length terciles {metrics['tercile_auc']:.4f}"
    )
    return {
        **{f"{kind}_docs_per_cpu_s": rate for kind, rate in rates.items()},
        "auc_human": metrics["roc_auc"],
        "auc_length": metrics["length_auc"],
        "tercile_auc": metrics["tercile_auc"],
    }


def benchmark(args: argparse.Namespace, work: Path) -> str:
    from winnow.pipeline.readers import stable_id

    docs = load_documents(args.shared_data / "text")
    train, held = split(docs, args.train_share, args.seed)
    print(f"documents: {len(docs):,} ({sum(d.label for d in docs):,} hq), train {len(train):,}, held out {len(held):,}")
    for stem, label in CORPUS_FILES.items():
        lengths = [len(d.text) for d in docs if d.origin == stem]
        print(f"  {label}  {stem:<40} {len(lengths):>7,} docs, mean {np.mean(lengths):>8,.0f} chars")
    started = time.perf_counter()
    model = train_model(train, work)
    print(f"model: {model.stat().st_size / 1e6:.1f} MB, trained in {time.perf_counter() - started:.1f} s", flush=True)
    held_scores = heldout_scores(model, held)
    if not np.isfinite(held_scores).all():
        raise SystemExit("the trained model gives non-finite scores")
    auc = roc_auc(np.array([d.label for d in held]), held_scores)
    print(f"held-out ROC AUC: {auc:.4f} ({len(held):,} documents)", flush=True)

    corpus = write_corpus(docs, args.docs, args.shards, args.seed, work / "corpus")
    print(
        f"scoring corpus: {corpus.n_docs:,} documents ({corpus.n_docs / len(docs):.1f} copies of each), mean "
        f"{corpus.mean_chars:,.0f} chars, {corpus.shards} zstd Parquet files, {corpus.bytes_on_disk / 1e6:.1f} MB\n",
        flush=True,
    )

    # the held-out documents' first copies, by each side's document id (winnow hashes source name + record id)
    held_dt = [d.id for d in held]
    held_wn = [stable_id(SOURCE_NAME, d.id) for d in held]
    dt = run_datatrove(work / "datatrove", corpus, model, args, held_dt)
    wn = run_winnow(work / "winnow", corpus, model, args, held_wn)
    if dt.rows != corpus.n_docs or wn.scored_rows != corpus.n_docs:
        raise SystemExit(f"rows written: datatrove {dt.rows:,}, winnow scored {wn.scored_rows:,}; {corpus.n_docs:,} in")
    expected = [round(f * corpus.n_docs) for f in (args.top_fraction, args.reselect_fraction)]
    if [wn.kept_first, wn.kept_rerun] != expected:
        raise SystemExit(f"kept {wn.kept_first:,} then {wn.kept_rerun:,} documents; expected {expected}")
    # the stage scored with the same model and normalisation as the direct prediction above
    diffs = [abs(wn.scores[k] - float(s)) for k, s in zip(held_wn, held_scores, strict=True) if k in wn.scores]
    max_diff = max(diffs) if diffs else float("nan")
    wn_auc, wn_n = heldout_auc(wn.scores, held, held_wn)
    dt_auc, dt_n = heldout_auc(dt.scores, held, held_dt)

    n = corpus.n_docs
    rate = {"winnow": n / wn.first.cpu_s, "datatrove": n / dt.timed.cpu_s}
    ratio = rate["winnow"] / rate["datatrove"]
    score_cpu = wn.first.cpu_s - wn.rerun.cpu_s
    score_wall = wn.first.wall_s - wn.rerun.wall_s
    select_cpu = max(wn.rerun.cpu_s - wn.noop.cpu_s, 0.0)
    select_wall = max(wn.rerun.wall_s - wn.noop.wall_s, 0.0)
    phase_share = select_cpu / score_cpu  # the measure: reselecting against scoring
    cpu_share = wn.rerun.cpu_s / wn.first.cpu_s
    wall_share = wn.rerun.wall_s / wn.first.wall_s

    print(f"\n{n:,} documents, tasks={args.tasks} workers={args.workers}; CPU = user+sys of each command's tree")
    print(f"{'run':<70} {'CPU s':>8} {'wall s':>8} {'docs/CPU-s':>11}")
    table = [
        ("datatrove: ParquetReader -> FastTextClassifierFilter -> ParquetWriter", dt.timed, rate["datatrove"]),
        (f"winnow run: score + select top {args.top_fraction}", wn.first, rate["winnow"]),
        (f"winnow rerun: select top {args.reselect_fraction} only", wn.rerun, None),
        ("winnow unchanged rerun: start-up and bookkeeping only", wn.noop, None),
        ("winnow select phase alone, estimated (rerun - unchanged rerun)", Timed(select_cpu, select_wall), None),
        ("winnow score phase alone, estimated (run - rerun)", Timed(score_cpu, score_wall), n / score_cpu),
    ]
    for label, t, r in table:
        print(f"{label:<70} {t.cpu_s:>8.2f} {t.wall_s:>8.2f} {'' if r is None else f'{r:,.0f}':>11}")
    if wn.stage_seconds is not None:
        select = f", select phase {wn.select_seconds:.2f} s" if wn.select_seconds is not None else ""
        again = f"; rerun {wn.rerun_stage_seconds:.2f} s" if wn.rerun_stage_seconds is not None else ""
        print(
            f"winnow stage wall time inside the command (stats.json): first run {wn.stage_seconds:.2f} s{select}{again}"
        )
    for side, steps in (("datatrove", dt.steps), ("winnow", wn.steps)):
        print(f"\n{side} per-step wall time (s, summed over tasks; datatrove stats):")
        for name, secs in steps:
            print(f"  {name:<48} {secs:>8.2f}")
    print(
        f"\nreselection (target < 5% of scoring): select phase {phase_share:.1%} of the score phase's CPU; "
        f"whole commands: CPU {cpu_share:.1%}, wall {wall_share:.1%} of the first run's; "
        f"scored/ untouched; kept {wn.kept_first:,} -> {wn.kept_rerun:,}"
    )
    print(
        f"held-out AUC: direct {auc:.4f}; winnow scored/ {wn_auc:.4f} ({wn_n:,} docs, max |diff| to direct "
        f"{max_diff:.1e}); datatrove metadata {dt_auc:.4f} ({dt_n:,} docs; raw text, not normalised)"
    )
    print(f"winnow / datatrove documents per CPU-second: {ratio:.2f}x (target >= 1.5x)")
    print("\nclassifier kinds (scoring in this process):", flush=True)
    kinds = classifier_kinds(args, model, train, held)
    return (
        f"RESULT fasttext_docs_per_cpu_s={kinds['fasttext_docs_per_cpu_s']:.1f} "
        f"embedding_docs_per_cpu_s={kinds['embedding_docs_per_cpu_s']:.1f} "
        f"static_docs_per_cpu_s={kinds['static_docs_per_cpu_s']:.1f} auc_human={kinds['auc_human']:.4f} "
        f"auc_length={kinds['auc_length']:.4f} tercile_auc={kinds['tercile_auc']:.4f} "
        f"winnow_docs_per_cpu_s={rate['winnow']:.1f} datatrove_docs_per_cpu_s={rate['datatrove']:.1f} "
        f"ratio={ratio:.2f} auc={auc:.4f} reselect_share={phase_share:.4f} reselect_command_share={cpu_share:.4f} "
        f"reselect_wall_share={wall_share:.4f} "
        f"docs={n} winnow_score_docs_per_cpu_s={n / score_cpu:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side == "train":
        train_side(args.train_file, args.model)
        return 0
    if args.side == "datatrove":
        datatrove_side(args.docs_dir, args.workdir, args.model, args.tasks, args.workers)
        return 0
    text_dir = args.shared_data / "text"
    missing = [f"{stem}.jsonl" for stem in CORPUS_FILES if not (text_dir / f"{stem}.jsonl").is_file()]
    missing += [str(args.labels)] if not args.labels.is_file() else []
    if missing:
        print(f"shared data not found: {', '.join(missing)} (give --shared-data or --labels)", file=sys.stderr)
        return 2
    return run_benchmark(benchmark, args, "winnow-quality-bench-")


if __name__ == "__main__":
    sys.exit(main())
