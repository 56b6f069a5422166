"""Ensembles of quality classifiers in the Nemotron-CC way: each member's score is turned into a bucket, and
the ensemble's score is the maximum or the mean bucket.

A member's buckets are fixed when the ensemble is built: its scores on a reference set of documents (e.g.
the corpus to be filtered, or the training seeds) cut into ``buckets`` equal shares (quantile edges), so a
fastText probability and an embedding head's grade become comparable ranks. Bucket ``b`` of ``buckets``
(0 = the lowest share) holds the scores between edge ``b`` and ``b + 1``. The model file (``format``
:data:`ENSEMBLE_FORMAT`, ``.json``) lists each member's path (relative to the ensemble's folder), its label
and its edges; :func:`winnow.filters.classifier_score.load_classifier` loads it like any model, and its score
is the combined bucket (float32, 0 to ``buckets - 1``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ENSEMBLE_FORMAT = "winnow-ensemble/1"
COMBINE = ("max", "mean")


def bucket_edges(scores: np.ndarray, buckets: int) -> list[float]:
    """The ``buckets - 1`` interior quantile edges of ``scores``."""
    return [float(e) for e in np.quantile(np.asarray(scores, np.float64), np.linspace(0, 1, buckets + 1)[1:-1])]


def to_buckets(scores: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bucket of each score: the number of edges at or below it (0 to len(edges))."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(scores, np.float64), side="right")


def combine_buckets(buckets: np.ndarray, combine: str) -> np.ndarray:
    """Rows = members, columns = documents -> one float32 score per document."""
    if combine == "max":
        return buckets.max(axis=0).astype(np.float32)
    return buckets.mean(axis=0).astype(np.float32)


def write_ensemble(
    output: Path, members: Sequence[tuple[Path, str, list[float]]], buckets: int, combine: str, extra: dict[str, Any]
) -> None:
    """Write the ensemble file (atomically); member paths are stored relative to its folder."""
    base = output.resolve().parent
    rows = [
        {"model": os.path.relpath(path.resolve(), base), "label": label, "edges": edges}
        for path, label, edges in members
    ]
    document = {"format": ENSEMBLE_FORMAT, "buckets": buckets, "combine": combine, "members": rows, **extra}
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, output)


class EnsembleClassifier:
    """An ensemble file loaded for scoring: ``score(texts)`` -> the combined bucket of each text."""

    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        from winnow.filters.classifier_score import load_classifier

        if document.get("combine") not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}")
        self.combine = document["combine"]
        self.buckets = int(document["buckets"])
        self.members = []
        for member in document["members"]:
            edges = [float(e) for e in member["edges"]]
            if len(edges) != self.buckets - 1:
                raise ValueError(f"member {member['model']}: {len(edges)} edges for {self.buckets} buckets")
            self.members.append((load_classifier(path.parent / member["model"], member["label"]), member, edges))
        if not self.members:
            raise ValueError("an ensemble without members")

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The max or mean of the members' buckets for each text."""
        from winnow.filters.classifier_score import score_texts

        rows = [to_buckets(score_texts(model, texts, m["label"]), edges) for model, m, edges in self.members]
        return combine_buckets(np.stack(rows), self.combine)
