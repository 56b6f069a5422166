"""Training an embedding + head classifier (:mod:`winnow.filters.classifier_embed`) -> ``<model>.json`` + card.

Two kinds of input. Positives and negatives (as for fastText): the classes are balanced, capped and split
exactly as :func:`winnow.filters.classifier_train.split_classes` does, and a logistic head learns P(good).
A labelled file (``id``/``text``/score rows such as ``winnow classifier annotate`` writes): a share is held
out at random (seeded) and a ridge head learns the score (a logistic one when every label is 0 or 1).

Every text is embedded once (through the on-disk cache when one is named), the head is fitted on the
training rows, and the held-out rows are scored by that head on their embeddings. The
held-out figures describe the seeds' own documents only: ``winnow classifier eval --labels`` on human
judgments says how well the model ranks other text.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from winnow.filters.classifier_data import ClassTexts, LabelledTexts
from winnow.filters.classifier_embed import (
    BUNDLED,
    MAX_TOKENS,
    EmbeddingCache,
    SentenceEncoder,
    StaticEncoder,
    embed_texts,
    fit_head,
    write_head_model,
)
from winnow.filters.classifier_metrics import evaluate
from winnow.filters.classifier_train import CARD_FORMAT, HELD_OUT_NOTE, TrainConfig, split_classes
from winnow.pipeline.json_records import write_json
from winnow.pipeline.version import winnow_version


@dataclass
class HeadTrainConfig:
    """What :func:`train_head_classifier` needs besides the texts."""

    output: Path
    encoder: str = BUNDLED  # a sentence-transformers folder, BUNDLED, or a static table (.npz)
    head: str | None = None  # logistic / ridge; None: logistic for 0/1 labels, ridge for scores
    l2: float = 1.0
    holdout: float = 0.1
    seed: int = 0
    balance: bool = True
    max_per_class: int | None = None
    positive_at: float = 0.5  # a label at or above this counts as positive in held-out AUC
    cache: Path | None = None
    batch_size: int = 16
    max_tokens: int = MAX_TOKENS
    extra_card: dict[str, Any] = field(default_factory=dict)

    @property
    def card_path(self) -> Path:
        return self.output.with_suffix(".card.json")


def _encoder_spec(config: HeadTrainConfig) -> tuple[dict[str, Any], SentenceEncoder | StaticEncoder]:
    """The encoder as the model file records it, and the encoder itself."""
    if config.encoder.endswith(".npz"):
        table = Path(config.encoder).resolve()
        relative = os.path.relpath(table, config.output.resolve().parent)
        return {"kind": "static", "path": relative}, StaticEncoder(table)
    spec = {"kind": "sentence-transformers", "path": config.encoder, "max_tokens": config.max_tokens}
    return spec, SentenceEncoder(config.encoder, config.max_tokens, config.batch_size)


def _binary_split(
    positive: ClassTexts, negative: ClassTexts, config: HeadTrainConfig
) -> tuple[list[str], np.ndarray, list[int], list[int], dict[str, Any]]:
    split_config = TrainConfig(
        output=config.output, params={}, holdout=config.holdout, seed=config.seed,
        balance=config.balance, max_per_class=config.max_per_class,
    )  # fmt: skip
    pos, neg, used = split_classes(positive, negative, split_config)
    texts = [positive.texts[i] for i in pos.train + pos.held_out] + [
        negative.texts[i] for i in neg.train + neg.held_out
    ]
    y = np.array([1.0] * (len(pos.train) + len(pos.held_out)) + [0.0] * (len(neg.train) + len(neg.held_out)))
    n_pos = len(pos.train) + len(pos.held_out)
    train = list(range(len(pos.train))) + [n_pos + i for i in range(len(neg.train))]
    held = [len(pos.train) + i for i in range(len(pos.held_out))] + [
        n_pos + len(neg.train) + i for i in range(len(neg.held_out))
    ]
    documents = {
        name: {"read": c.documents, "after_balancing": used[name], "train": len(s.train), "held_out": len(s.held_out)}
        for name, c, s in (("positive", positive, pos), ("negative", negative, neg))
    }
    return texts, y, train, held, documents


def _labelled_split(
    labelled: LabelledTexts, config: HeadTrainConfig
) -> tuple[list[str], np.ndarray, list[int], list[int], dict[str, Any]]:
    order = list(range(len(labelled.texts)))
    random.Random(config.seed).shuffle(order)
    held_n = min(max(round(config.holdout * len(order)), 1), len(order) - 1) if config.holdout > 0 else 0
    if len(order) - held_n < 2:
        raise ValueError(f"{labelled.path}: {len(order)} labelled document(s): too few to train")
    documents = {"labelled": {**labelled.as_dict(), "train": len(order) - held_n, "held_out": held_n}}
    return labelled.texts, np.array(labelled.values), order[held_n:], order[:held_n], documents


def train_head_classifier(
    data: tuple[ClassTexts, ClassTexts] | LabelledTexts,
    config: HeadTrainConfig,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Embed, fit, evaluate on the held-out rows, write ``config.output`` and its card; returns the card.

    ``on_progress(phase, done, total)`` reports the texts embedded so far."""
    report = on_progress or (lambda phase, done, total: None)
    if isinstance(data, LabelledTexts):
        texts, y, train, held, documents = _labelled_split(data, config)
    else:
        texts, y, train, held, documents = _binary_split(*data, config)
    binary = set(np.unique(y[train])) <= {0.0, 1.0}
    kind = config.head or ("logistic" if binary else "ridge")
    if len(set(y[train].tolist())) < 2:
        raise ValueError("the training documents all have the same label: nothing to learn")
    spec, encoder = _encoder_spec(config)
    cache = EmbeddingCache(config.cache) if config.cache is not None else None
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        report("embedding", done, len(texts))

    vectors = embed_texts(encoder, texts, cache, on_done=advance)
    head = fit_head(kind, vectors[train], y[train], config.l2)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    meaning = "P(good)" if kind == "logistic" else f"predicted label ({head.low:g} to {head.high:g})"
    write_head_model(config.output, spec, head, {"score": meaning, "positive_at": config.positive_at})
    held_out = None
    if held:
        scores = head.apply(vectors[held])
        positive = y[held] >= (0.5 if kind == "logistic" and binary else config.positive_at)
        threshold = 0.5 if kind == "logistic" else config.positive_at
        held_out = evaluate(positive, scores, threshold, lengths=np.array([len(texts[i]) for i in held]))
        if not binary:
            held_out["rmse"] = float(np.sqrt(np.mean((scores - y[held]) ** 2)))
        held_out["note"] = HELD_OUT_NOTE
    card = {
        "format": CARD_FORMAT,
        "model": config.output.name,
        "kind": "static" if spec["kind"] == "static" else "embedding",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": {**spec, "resolved": config.encoder},
        "head": {"kind": kind, "l2": config.l2, "dim": len(head.weights)},
        "documents": documents,
        "sampling": {
            "balance": config.balance,
            "max_per_class": config.max_per_class,
            "holdout": config.holdout,
            "seed": config.seed,
        },
        "winnow_version": winnow_version(),
        "model_size_bytes": config.output.stat().st_size,
        "held_out": held_out,
        **config.extra_card,
    }
    write_json(config.card_path, card)
    return card
