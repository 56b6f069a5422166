"""Metrics of a binary classifier's scores against labels, in numpy only (no scikit-learn).

Precision / recall / F1 / accuracy at a threshold (a document is predicted positive when its score
is >= the threshold; a ratio whose denominator is 0 is 0), ROC AUC as the Mann-Whitney rank statistic
(ties count one half), and a calibration table over score quantiles. :func:`evaluate` bundles them as
the JSON-ready dict that model cards and ``winnow classifier eval --report`` hold.

:func:`length_baseline` is the check against length: the AUC that ranking by document length alone reaches
(``length_auc``), and the classifier's mean AUC within the three length terciles (``tercile_auc``: documents
sorted by length, ties by position, cut into three groups of equal size as :func:`numpy.array_split` does;
a tercile holding one class only is left out of the mean). A classifier that only knows length scores
near 0.5 within terciles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion counts and the ratios derived from them at one threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    accuracy: float


@dataclass(frozen=True)
class CalibrationBin:
    """Documents whose scores fall in [low, high]: mean predicted probability vs observed positive rate."""

    low: float
    high: float
    documents: int
    positives: int
    mean_score: float
    positive_rate: float


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> ThresholdMetrics:
    """Metrics for ``labels`` (True = positive) when ``scores >= threshold`` is predicted positive."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ThresholdMetrics(threshold, tp, fp, fn, tn, precision, recall, f1, _ratio(tp + tn, len(labels)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve: the probability that a random positive outscores a random negative
    (ties count 1/2). None when either class is absent."""
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct score, ties averaged
    rank_sum = float(average_rank[inverse][labels].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def calibration_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[CalibrationBin]:
    """Documents grouped by score quantile (deciles by default); equal scores always share a group, so
    heavily tied scores give fewer groups. Empty input gives no rows."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return []
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)))
    group = np.searchsorted(edges[1:-1], scores, side="right")
    rows = []
    for index in np.unique(group):
        member = group == index
        in_bin, hits = scores[member], labels[member]
        rows.append(
            CalibrationBin(
                low=float(in_bin.min()),
                high=float(in_bin.max()),
                documents=int(member.sum()),
                positives=int(hits.sum()),
                mean_score=float(in_bin.mean()),
                positive_rate=float(hits.mean()),
            )
        )
    return rows


def length_baseline(labels: np.ndarray, scores: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """``length_auc`` (ROC AUC of the lengths as scores), ``tercile_auc`` (mean AUC of ``scores`` within the
    length terciles, None when no tercile holds both classes) and one row per tercile."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = []
    for members in np.array_split(np.argsort(lengths, kind="stable"), 3):
        if len(members) == 0:
            continue
        rows.append(
            {
                "min_chars": int(lengths[members].min()),
                "max_chars": int(lengths[members].max()),
                "documents": len(members),
                "positives": int(labels[members].sum()),
                "roc_auc": roc_auc(labels[members], scores[members]),
            }
        )
    aucs = [row["roc_auc"] for row in rows if row["roc_auc"] is not None]
    return {
        "length_auc": roc_auc(labels, lengths),
        "tercile_auc": float(np.mean(aucs)) if aucs else None,
        "terciles": rows,
    }


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.5,
    bins: int = 10,
    lengths: np.ndarray | None = None,
) -> dict[str, Any]:
    """Document counts, ROC AUC, threshold metrics and calibration rows as one JSON-ready dict; with the
    documents' ``lengths`` (characters) also :func:`length_baseline`'s figures."""
    labels = np.asarray(labels, dtype=bool)
    result = {
        "documents": len(labels),
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()),
        "roc_auc": roc_auc(labels, scores),
        **asdict(threshold_metrics(labels, scores, threshold)),
        "calibration": [asdict(row) for row in calibration_table(labels, scores, bins)],
    }
    if lengths is not None:
        result |= length_baseline(labels, scores, lengths)
    return result
