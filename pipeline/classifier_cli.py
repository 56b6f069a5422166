"""``winnow classifier``: train and evaluate fastText quality classifiers (DCLM-style), a typer sub-app.

``train`` reads positive and negative sources (``winnow.filters.classifier_data``), trains with
``winnow.filters.classifier_train`` and writes ``<model>.bin`` and ``<model>.card.json``; ``eval`` scores any
labelled set with a model (``winnow.filters.classifier_score``) and prints the metrics and a calibration table
(``winnow.filters.classifier_metrics``).

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
    help="Train and evaluate fastText quality classifiers (DCLM-style: high-quality vs low-quality text).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PositiveOption = Annotated[
    list[str],
    typer.Option(
        "--positive",
        "-p",
        metavar="SOURCE",
        help="High-quality documents: a .jsonl(.gz/.zst)/.parquet file or glob, a .txt file (one document), "
        "a stage folder of a run (out/demo/stages/dedup) or a run folder with --stage. Repeatable.",
    ),
]
NegativeOption = Annotated[
    list[str],
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


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@classifier_app.command()
def train(
    positive: PositiveOption,
    negative: NegativeOption,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Model file to write (.bin); the card goes beside it (.card.json).")
    ],
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
    """Train a fastText classifier: positives (__label__hq) vs negatives (__label__lq) -> MODEL.bin + card."""
    from winnow.filters.classifier_data import SourceError
    from winnow.filters.classifier_score import ModelError
    from winnow.filters.classifier_train import (
        TrainConfig,
        TrainingError,
        default_threads,
        parse_params,
        train_classifier,
    )

    if output.suffix != ".bin":
        _fail(f"--output {output}: the model file name must end in .bin")
    if not 0 <= holdout < 1:
        _fail(f"--holdout {holdout}: must be at least 0 and below 1")
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


@classifier_app.command("eval")
def eval_(
    model: Annotated[Path, typer.Argument(help="fastText model (.bin/.ftz) to evaluate.")],
    positive: PositiveOption,
    negative: NegativeOption,
    label: Annotated[str, typer.Option(help="The model's positive label (hq or __label__hq).")] = "__label__hq",
    threshold: Annotated[float, typer.Option(help="Score at or above which a document counts as positive.")] = 0.5,
    bins: Annotated[int, typer.Option(help="Rows of the calibration table (score quantiles).")] = 10,
    text_field: TextFieldOption = "text",
    stage: StageOption = None,
    max_per_class: MaxPerClassOption = None,
    seed: SeedOption = 0,
    report: Annotated[
        Path | None, typer.Option(help="Also write the metrics and calibration table there as JSON.")
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Score a labelled set with MODEL: ROC AUC, precision / recall / F1 at a threshold, a calibration table."""
    import numpy as np

    from winnow.filters.classifier_data import SourceError
    from winnow.filters.classifier_metrics import evaluate
    from winnow.filters.classifier_score import ModelError, load_classifier, positive_label, score_texts

    try:
        classifier = load_classifier(model, label)
    except ModelError as exc:
        _fail(str(exc))
    if not 0 <= threshold <= 1:
        _fail(f"--threshold {threshold}: must be between 0 and 1")
    if bins < 1:
        _fail(f"--bins {bins}: must be positive")
    try:
        sources = _resolve(positive, negative, text_field, stage)
    except SourceError as exc:
        _fail(str(exc))
    pos, neg = _read(sources, max_per_class, seed, progress)
    with _bar(progress) as bar:
        bar.add_task(f"scoring {len(pos.texts) + len(neg.texts):,} documents", total=None)
        scores = score_texts(classifier, pos.texts + neg.texts, label)
    labels = np.array([True] * len(pos.texts) + [False] * len(neg.texts))
    metrics = evaluate(labels, scores, threshold, bins)
    out.print(f"model: {model} (positive label {positive_label(label)})")
    _print_metrics(metrics)
    _print_calibration(metrics["calibration"])
    if report is not None:
        sources_json = {"positive": [s.as_dict() for s in pos.sources], "negative": [s.as_dict() for s in neg.sources]}
        document = {"model": str(model), "label": positive_label(label), "sources": sources_json, **metrics}
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(document, indent=2) + "\n")
        out.print(f"report: {report}")


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
