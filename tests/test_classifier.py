"""``winnow classifier train`` / ``eval``: sources of every kind, model cards, metrics, bad models and arguments.

The headline test trains on real third-party text from ``../shared/data`` (skipped when absent):
Wikipedia articles and a high-quality encyclopedia reference against SMS spam, search-engine result
pages (extracted from their WARCs by winnow's own extract stage) and a low-quality Common Crawl page.
The other tests use a small generated corpus.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.filters.classifier_data import ClassTexts, SourceCount
from winnow.filters.classifier_metrics import calibration_table, length_baseline, roc_auc, threshold_metrics
from winnow.filters.classifier_score import ModelError, check_model, load_classifier, score_texts
from winnow.filters.classifier_train import TrainConfig, TrainingError, train_classifier
from winnow.filters.fasttext_models import default_lid_model
from winnow.pipeline.schema import document_schema

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]

SHARED_TEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "text"
SERPS = SHARED_TEXT.parent / "warc" / "serps"
# English search-result pages, about 100 in all: enough negatives of that kind, extracted in ~10 s
SERP_SITES = ("ask", "imdb", "github", "cnn", "ebay", "etsy")

SCIENCE = ["the", "river", "basin", "climate", "species", "habitat", "museum", "century", "theory", "evidence"]
SPAM = ["free", "win", "cash", "prize", "click", "now", "offer", "urgent", "txt", "claim", "bonus", "winner"]
COMMON = ["a", "of", "and", "to", "in", "is", "for", "with", "on", "this"]


def toy_doc(rng: random.Random, vocabulary: list[str]) -> str:
    words = [rng.choice(vocabulary if rng.random() < 0.6 else COMMON) for _ in range(40)]
    return " ".join(words).capitalize() + "."


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ---------------------------------------------------------------- generated corpus, every source kind


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Positives as a glob of .jsonl.gz (field ``body``, one bad line) and a .txt file; negatives as a
    Parquet file and a run folder whose ``heuristics`` stage output is in winnow's schema."""
    root = tmp_path_factory.mktemp("toy")
    rng = random.Random(7)
    (root / "pos").mkdir()
    for part in range(2):
        lines = [json.dumps({"body": toy_doc(rng, SCIENCE)}) for _ in range(75)]
        if part == 0:
            lines.append("{not json")
        (root / "pos" / f"part{part}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (root / "pos_extra.txt").write_text(toy_doc(rng, SCIENCE))
    pq.write_table(pa.table({"body": [toy_doc(rng, SPAM) for _ in range(75)]}), root / "neg.parquet")
    data = root / "run" / "stages" / "heuristics" / "data"
    data.mkdir(parents=True)
    rows = [{"id": f"d{i}", "text": toy_doc(rng, SPAM), "source": "web"} for i in range(75)]
    pq.write_table(pa.Table.from_pylist(rows, schema=document_schema()), data / "part-0-0.parquet")
    return root


@pytest.fixture(scope="module")
def toy_model(toy: Path, winnow_cli: WinnowCli) -> Path:
    """A model trained with the default hyperparameters plus ``--param``s, its held-out set kept."""
    result = winnow_cli(
        "classifier", "train",
        "--positive", toy / "pos" / "*.jsonl.gz", "--positive", toy / "pos_extra.txt",
        "--negative", toy / "neg.parquet", "--negative", toy / "run", "--stage", "heuristics",
        "--text-field", "body", "--output", toy / "model" / "toy.bin", "--holdout-dir", toy / "heldout",
        "--param", "ws=7", "--param", "neg=3", "--param", "lrUpdateRate=50", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ROC AUC" in result.stdout
    assert "training seeds' own documents" in result.stdout and "--labels" in result.stdout  # says what held out means
    return toy / "model" / "toy.bin"


def test_card_counts_sources_and_keeps_params(toy_model: Path) -> None:
    """Every source kind is read and counted; --param values and the defaults reach the card; size is tens of MB."""
    card = json.loads(toy_model.with_suffix(".card.json").read_text())
    positive, negative = card["sources"]["positive"], card["sources"]["negative"]
    assert [(s["files"], s["documents"], s["read_errors"]) for s in positive] == [(2, 150, 1), (1, 1, 0)]
    assert positive[0]["read_error_reasons"] == {"bad_json": 1}
    assert [(s["files"], s["documents"]) for s in negative] == [(1, 75), (1, 75)]
    docs = card["documents"]
    assert docs["positive"]["read"] == 151 and docs["negative"]["read"] == 150
    assert docs["positive"]["after_balancing"] == docs["negative"]["after_balancing"] == 150  # balanced
    assert docs["positive"]["held_out"] == docs["negative"]["held_out"] == 15
    assert sum(s["used"] for s in positive) == 150

    params = card["hyperparameters"]
    assert (params["ws"], params["neg"], params["lrUpdateRate"]) == (7, 3, 50)
    expected = {"wordNgrams": 2, "dim": 32, "bucket": 500_000, "epoch": 5, "lr": 0.1, "minCount": 2, "loss": "softmax"}
    assert expected.items() <= params.items()
    assert card["fasttext"]["version"] and card["training_seconds"] > 0
    assert card["model_size_bytes"] == toy_model.stat().st_size
    assert 10e6 < card["model_size_bytes"] < 100e6, "default model size should be tens of MB"
    assert card["held_out"]["roc_auc"] >= 0.95


def test_eval_prints_metrics_and_calibration(toy_model: Path, toy: Path, winnow_cli: WinnowCli) -> None:
    report = toy / "report.json"
    result = winnow_cli(
        "classifier", "eval", toy_model, "-p", toy / "heldout" / "positive.jsonl",
        "-n", toy / "heldout" / "negative.jsonl", "--report", report, "--bins", "5", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for words in ("ROC AUC", "precision", "recall", "F1", "calibration", "positive rate"):
        assert words in result.stdout
    metrics = json.loads(report.read_text())
    card = json.loads(toy_model.with_suffix(".card.json").read_text())
    assert metrics["roc_auc"] == pytest.approx(card["held_out"]["roc_auc"], abs=1e-9)
    assert metrics["documents"] == 30
    rows = metrics["calibration"]
    assert 1 <= len(rows) <= 5 and sum(r["documents"] for r in rows) == 30
    assert sum(r["positives"] for r in rows) == 15
    assert all(r["low"] <= r["mean_score"] <= r["high"] for r in rows)


def test_eval_labels_file_with_length_baseline(toy_model: Path, toy: Path, winnow_cli: WinnowCli) -> None:
    """--labels with a configurable label field gives the same AUC as -p/-n on the same documents, plus the
    length baseline and tercile figures; rows without a usable label or text are counted, not used."""
    rows = [{"body": json.loads(line)["text"], "good": 1} for line in (toy / "heldout" / "positive.jsonl").open()]
    rows += [{"body": json.loads(line)["text"], "good": False} for line in (toy / "heldout" / "negative.jsonl").open()]
    labels = toy / "labels.jsonl"
    write_jsonl(labels, [*rows, {"body": "no label here"}, {"body": "x", "good": "yes"}, {"good": 1}])
    with labels.open("a") as handle:
        handle.write("{broken\n")
    report = toy / "labels_report.json"
    result = winnow_cli(
        "classifier", "eval", toy_model, "--labels", labels, "--label-field", "good", "--text-field", "body",
        "--report", report, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "length-only baseline ROC AUC" in result.stdout and "within length terciles" in result.stdout
    assert "2 bad_label" in result.stdout and "1 missing_text" in result.stdout and "1 bad_json" in result.stdout
    metrics = json.loads(report.read_text())
    assert metrics["sources"]["labels"]["skipped"] == {"bad_label": 2, "missing_text": 1, "bad_json": 1}
    assert metrics["documents"] == 30 and metrics["positives"] == 15
    card = json.loads(toy_model.with_suffix(".card.json").read_text())
    assert metrics["roc_auc"] == pytest.approx(card["held_out"]["roc_auc"], abs=1e-9)
    lengths = np.array([len(r["body"]) for r in rows])
    assert metrics["length_auc"] == pytest.approx(roc_auc(np.array([bool(r["good"]) for r in rows]), lengths))
    assert [t["documents"] for t in metrics["terciles"]] == [10, 10, 10]
    assert "training seeds" in card["held_out"]["note"]


def test_eval_labels_scores_and_bad_arguments(
    toy_model: Path, toy: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    """0-5 scores with --positive-at; giving both -p and --labels, or a labels file of another type, exits 2."""
    rows = [{"text": json.loads(line)["text"], "score": 4} for line in (toy / "heldout" / "positive.jsonl").open()]
    rows += [{"text": json.loads(line)["text"], "score": 1} for line in (toy / "heldout" / "negative.jsonl").open()]
    labels = write_jsonl(tmp_path / "scores.jsonl", rows)
    report = tmp_path / "r.json"
    args = ["--label-field", "score", "--positive-at", "3", "--report", report, "--no-progress"]
    result = winnow_cli("classifier", "eval", toy_model, "--labels", labels, *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["positives"] == 15
    both = winnow_cli("classifier", "eval", toy_model, "--labels", labels, "-p", labels)
    assert both.returncode == 2 and "or --labels" in one_line(both.stderr)
    wrong = winnow_cli("classifier", "eval", toy_model, "--labels", toy / "pos_extra.txt")
    assert wrong.returncode == 2 and "unsupported labels file" in one_line(wrong.stderr)


def test_length_baseline_terciles() -> None:
    """Labels that follow length overall but not within terciles: length AUC high, tercile AUC of a
    length-only score 0.5-ish, of a score that knows the label within each tercile 1.0."""
    rng = np.random.default_rng(1)
    lengths = np.arange(300) * 10 + 5
    labels = rng.random(300) < np.repeat([0.2, 0.5, 0.8], 100)
    result = length_baseline(labels, labels.astype(float) + rng.random(300) * 0.1, lengths)
    assert result["length_auc"] == pytest.approx(roc_auc(labels, lengths)) and result["length_auc"] > 0.7
    assert result["tercile_auc"] == 1.0
    assert [(t["min_chars"], t["max_chars"], t["documents"]) for t in result["terciles"]] == [
        (5, 995, 100), (1005, 1995, 100), (2005, 2995, 100),
    ]  # fmt: skip
    by_length = length_baseline(labels, lengths.astype(float), lengths)
    assert abs(by_length["tercile_auc"] - 0.5) < 0.15
    one_class = length_baseline(np.array([True] * 3 + [False] * 3), np.arange(6.0), np.arange(6))
    assert [t["roc_auc"] for t in one_class["terciles"]] == [None, 0.0, None]  # one-class terciles left out
    assert one_class["tercile_auc"] == 0.0


def test_ensemble_of_buckets(toy_model: Path, toy: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """`ensemble`: members' buckets fixed on a reference set; the ensemble loads and evaluates like any model."""
    other = tmp_path / "other.bin"
    result = winnow_cli(
        "classifier", "train", "-p", toy / "pos" / "*.jsonl.gz", "-n", toy / "neg.parquet", "--text-field", "body",
        "-o", other, "--seed", "3", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ensemble = tmp_path / "sub" / "ens.json"
    reference = ["-r", toy / "heldout" / "positive.jsonl", "-r", toy / "heldout" / "negative.jsonl"]
    result = winnow_cli(
        "classifier", "ensemble", "-m", toy_model, "-m", other, *reference, "-o", ensemble, "--buckets", "5",
        "--combine", "max", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(ensemble.read_text())
    members = [(ensemble.parent / m["model"]).resolve() for m in document["members"]]
    assert members == [toy_model.resolve(), other.resolve()]  # stored relative to the ensemble's folder
    assert all(len(m["edges"]) == 4 for m in document["members"])
    model = load_classifier(ensemble)
    texts = [json.loads(line)["text"] for line in (toy / "heldout" / "positive.jsonl").open()]
    texts += [json.loads(line)["text"] for line in (toy / "heldout" / "negative.jsonl").open()]
    scores = score_texts(model, texts)
    first = np.searchsorted(document["members"][0]["edges"], score_texts(load_classifier(toy_model), texts), "right")
    second = np.searchsorted(document["members"][1]["edges"], score_texts(load_classifier(other), texts), "right")
    assert np.array_equal(scores, np.maximum(first, second).astype(np.float32))
    assert np.bincount(first, minlength=5).tolist() == [6] * 5  # the reference cut into equal shares
    report = tmp_path / "r.json"
    result = winnow_cli("classifier", "eval", ensemble, "-p", toy / "heldout" / "positive.jsonl",
                        "-n", toy / "heldout" / "negative.jsonl", "--report", report, "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["roc_auc"] >= 0.9
    broken = tmp_path / "broken_ens.json"
    broken.write_text(json.dumps({**document, "members": [{**document["members"][0], "model": "gone.bin"}]}))
    with pytest.raises(ModelError, match=r"gone\.bin"):
        load_classifier(broken)


# ---------------------------------------------------------------- bad models and arguments


@pytest.mark.parametrize("kind", ["missing", "random_bytes", "text_file", "truncated", "not_a_quality_model"])
def test_bad_model_fails_before_reading(kind: str, toy_model: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """Exit 2 with one line naming the model, before the sources are even looked at (this one does not exist)."""
    model = tmp_path / "model.bin"
    if kind == "random_bytes":
        model.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "text_file":
        model.write_text("__label__hq this is not a model\n")
    elif kind == "truncated":
        model.write_bytes(toy_model.read_bytes()[: toy_model.stat().st_size - 100])
    elif kind == "not_a_quality_model":
        model = default_lid_model()  # a language-ID model: no __label__hq
    result = winnow_cli("classifier", "eval", model, "-p", tmp_path / "absent.jsonl", "-n", tmp_path / "absent.jsonl")
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert str(model) in line and "absent" not in line
    assert {"missing": "no such file", "truncated": "truncated", "not_a_quality_model": "no label __label__hq"}.get(
        kind, "not a fastText model"
    ) in line


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_class", "no negative documents"),
        ("bad_param", "--param dimension"),
        ("no_stage", "name the stage"),
        ("missing_source", "matches no file"),
    ],
)
def test_bad_arguments_exit_2(case: str, message: str, toy: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    negative = tmp_path / "no_text.jsonl"
    write_jsonl(negative, [{"body": "   "}, {"other": "a text in the wrong field"}])
    args = ["-p", toy / "pos_extra.txt", "-n", negative, "--text-field", "body", "-o", tmp_path / "m.bin"]
    if case == "bad_param":
        args += ["--param", "dimension=8"]
    elif case == "no_stage":
        args[3] = toy / "run"
    elif case == "missing_source":
        args[1] = tmp_path / "nowhere" / "*.jsonl"
    result = winnow_cli("classifier", "train", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in one_line(result.stderr)
    assert not (tmp_path / "m.bin").exists()


# ---------------------------------------------------------------- real data (Must show)


@dataclass(frozen=True)
class SharedSets:
    root: Path
    positives: list[Path]
    negatives: list[Path]


@pytest.fixture(scope="module")
def shared_sets(tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> SharedSets:
    """Positive and negative sources from ../shared/data/text (and the serps WARCs through winnow's extract)."""
    if not SHARED_TEXT.is_dir():
        pytest.skip(f"{SHARED_TEXT} is absent")
    root = tmp_path_factory.mktemp("shared")
    # the encyclopedia reference is one long article: ~1,000-character runs of paragraphs, one document each
    paragraphs = [p.strip() for p in (SHARED_TEXT / "cs336_fixtures" / "high_quality_wiki_reference.txt").open()]
    chunks, current = [], []
    for paragraph in filter(None, paragraphs):
        current.append(paragraph)
        if sum(map(len, current)) >= 1000:
            chunks.append("\n".join(current))
            current = []
    reference = write_jsonl(root / "reference.jsonl", [{"text": c} for c in [*chunks, "\n".join(current)] if c])
    # the SMS collection is 87% ordinary (ham) messages: keep its spam
    sms = [json.loads(line) for line in (SHARED_TEXT / "sms_spam_collection.jsonl").open()]
    spam = write_jsonl(root / "spam.jsonl", [r for r in sms if r["meta"]["label"] == "spam"])
    negatives = [spam, SHARED_TEXT / "cs336_fixtures" / "low_quality_cc.txt"]
    if SERPS.is_dir():
        manifest = root / "serps.yaml"
        paths = [str(SERPS / f"{site}.warc.gz") for site in SERP_SITES]
        manifest.write_text(
            json.dumps(
                {
                    "name": "serps",
                    "output": str(root / "out"),
                    "executor": {"kind": "local", "tasks": 2, "workers": 2},
                    "sources": [{"name": "serps", "kind": "warc", "paths": paths}],
                    "stages": {
                        "extract": {"language": {"precheck_min_score": None}},
                        "heuristics": None,
                        "dedup": None,
                    },
                }
            )
        )
        result = winnow_cli("run", manifest, "--no-progress")
        assert result.returncode == 0, result.stderr
        negatives.append(root / "out" / "serps" / "stages" / "extract")  # a stage folder of that run
    return SharedSets(root, [SHARED_TEXT / "wikipedia_wikitext2.jsonl", reference], negatives)


def test_trains_on_real_text_with_high_auc(shared_sets: SharedSets, winnow_cli: WinnowCli) -> None:
    """Default hyperparameters, 10% held out: ROC AUC >= 0.95 in the card, and the same from `eval`."""
    root = shared_sets.root
    model = root / "quality.bin"
    sources = [a for p in shared_sets.positives for a in ("-p", p)] + [
        a for n in shared_sets.negatives for a in ("-n", n)
    ]
    result = winnow_cli(
        "classifier", "train", *sources, "-o", model, "--holdout-dir", root / "heldout", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(model.with_suffix(".card.json").read_text())
    held_out = card["held_out"]
    assert held_out["documents"] >= 30
    assert held_out["roc_auc"] >= 0.95, held_out
    assert card["model_size_bytes"] < 100e6
    if SERPS.is_dir():
        assert card["sources"]["negative"][2]["documents"] >= 80  # the extracted result pages

    report = root / "eval.json"
    result = winnow_cli(
        "classifier", "eval", model, "-p", root / "heldout" / "positive.jsonl",
        "-n", root / "heldout" / "negative.jsonl", "--report", report, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    recomputed = json.loads(report.read_text())
    assert recomputed["documents"] == held_out["documents"]
    assert recomputed["roc_auc"] == pytest.approx(held_out["roc_auc"], abs=1e-9)
    assert recomputed["roc_auc"] >= 0.95


def test_human_judgment_must_show(shared_sets: SharedSets, winnow_cli: WinnowCli) -> None:
    """Must show (issue 21): a fastText model trained by `winnow classifier train` on shared seeds (edited
    prose and upvoted StackExchange posts vs chat, forum/overheard lines and SMS spam) ranks DCLM's human
    judgments (evaluation only: never trained on) at ROC AUC >= 0.94 and mean AUC within length terciles
    >= 0.88, above the length-only baseline (docs/DECISIONS.md lists every seed set tried)."""
    labels = SHARED_TEXT.parent / "quality_labels" / "dclm_agreement_data.jsonl"
    if not labels.is_file():
        pytest.skip(f"{labels} is absent")
    root = shared_sets.root
    posts = [json.loads(line) for line in (SHARED_TEXT / "stackexchange_beer_coffee.jsonl").open()]
    upvoted = [p for p in posts if (p["meta"].get("score") or 0) >= 3 and len(p["text"]) >= 300]
    se_good = write_jsonl(root / "stackexchange_upvoted.jsonl", upvoted)
    curated = SHARED_TEXT / "data_juicer_demo_sources"
    prose = ("nltk_abc_news", "nltk_brown_mixed_genres", "wikipedia_wikitext2")
    positives = [SHARED_TEXT / f"{n}.jsonl" for n in prose]
    positives += [shared_sets.positives[1], se_good, curated / "arxiv.jsonl", curated / "redpajama-c4-refined.jsonl"]
    positives += [curated / f"{n}-refined.jsonl" for n in ("redpajama-cc-2023-06", "redpajama-pile-stackexchange")]
    positives += [curated / f"the-pile-{n}-refined.jsonl" for n in ("nih", "uspto")]
    negatives = [SHARED_TEXT / "nltk_nps_chat.jsonl", SHARED_TEXT / "nltk_webtext_forum_ads_reviews_scripts.jsonl"]
    negatives.append(shared_sets.negatives[0])  # the SMS spam
    model = root / "human.bin"
    sources = [a for p in positives for a in ("-p", p)] + [a for n in negatives for a in ("-n", n)]
    result = winnow_cli("classifier", "train", *sources, "-o", model, "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr
    report = root / "human.json"
    result = winnow_cli("classifier", "eval", model, "--labels", labels, "--report", report, "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    assert metrics["documents"] == 281
    assert metrics["roc_auc"] >= 0.94 and metrics["tercile_auc"] >= 0.88, (metrics["roc_auc"], metrics["tercile_auc"])
    assert metrics["roc_auc"] > metrics["length_auc"] + 0.05


# ---------------------------------------------------------------- in-process: retry, metrics


def toy_classes(n: int = 40) -> tuple[ClassTexts, ClassTexts]:
    rng = random.Random(3)
    positive, negative = (
        ClassTexts([toy_doc(rng, vocab) for _ in range(n)], [0] * n, [SourceCount(name, 1, n)])
        for name, vocab in (("pos", SCIENCE), ("neg", SPAM))
    )
    return positive, negative


def test_failed_training_is_retried_once_in_a_new_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import winnow.filters.classifier_train as ct

    real = ct._run_child
    calls: list[list[str]] = []

    def flaky(command: list[str], on_fraction: Callable[[float], None]) -> str | None:
        calls.append(command)
        return "RuntimeError: Encountered NaN." if len(calls) == 1 else real(command, on_fraction)

    monkeypatch.setattr(ct, "_run_child", flaky)
    config = TrainConfig(output=tmp_path / "m.bin", params={"bucket": 1000, "dim": 8, "thread": 1, "minCount": 1})
    card = train_classifier(*toy_classes(), config)
    assert card["training_attempts"] == 2 and len(calls) == 2
    assert (tmp_path / "m.bin").is_file() and card["held_out"]["documents"] == 8

    monkeypatch.setattr(ct, "_run_child", lambda command, on_fraction: "RuntimeError: Encountered NaN.")
    with pytest.raises(TrainingError, match=r"failed twice.*Encountered NaN"):
        train_classifier(*toy_classes(), TrainConfig(output=tmp_path / "n.bin", params={}))
    assert not (tmp_path / "n.bin").exists()


def test_small_models_train_without_nan(tmp_path: Path) -> None:
    """A matrix small enough to come from reused heap memory (where fastText leaves it uninitialised) still
    trains at the first attempt."""
    for run in range(2):
        params = {"bucket": 1000, "dim": 8, "thread": 1, "minCount": 1, "epoch": 20, "lr": 0.5}
        card = train_classifier(*toy_classes(), TrainConfig(output=tmp_path / f"m{run}.bin", params=params))
        assert card["training_attempts"] == 1
        assert card["held_out"]["roc_auc"] == 1.0


def test_check_model_and_scores(toy_model: Path, tmp_path: Path) -> None:
    """The check the quality stage calls up front: ModelError with the path; scores are P(__label__hq)."""
    check_model(toy_model)
    with pytest.raises(ModelError) as caught:
        check_model(tmp_path / "gone.bin")
    assert caught.value.path == str(tmp_path / "gone.bin") and caught.value.problem == "no such file"
    with pytest.raises(ModelError, match="no label __label__other"):
        check_model(toy_model, label="other")
    scores = score_texts(load_classifier(toy_model), ["Free cash prize, click now!", "The river basin museum.", ""])
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert scores[1] > scores[0] and all(0.0 <= s <= 1.0 for s in scores)


def test_roc_auc_is_the_pairwise_rank_statistic() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + labels * 0.3, 1)  # many ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_auc(labels, scores) == pytest.approx(pairwise)
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.2])) is None
    assert roc_auc(np.array([True, False]), np.array([0.9, 0.1])) == 1.0


def test_threshold_metrics_and_calibration() -> None:
    labels = np.array([True, True, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.1])
    m = threshold_metrics(labels, scores, 0.5)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 1, 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    assert threshold_metrics(labels, scores, 0.95).precision == 0.0  # nothing predicted positive
    rows = calibration_table(labels, scores, bins=3)
    assert [(r.documents, r.positives) for r in rows] == [(2, 0), (2, 1), (2, 2)]
    assert rows[0].mean_score == pytest.approx(0.15) and rows[2].positive_rate == 1.0
    tied = calibration_table(labels, np.full(6, 0.5), bins=10)
    assert [(r.documents, r.positive_rate) for r in tied] == [(6, 0.5)]
    assert calibration_table(labels[:0], scores[:0]) == []
