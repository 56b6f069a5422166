"""The quality stage: score documents with fastText classifiers (annotate), then select by the scores.

Three phases (see :mod:`winnow.pipeline.stages`):

1. ``score`` (all tasks): :class:`QualityScorer` loads each model once per worker process and writes
   ``score_<name>`` = P(label) of every document, predicted in batches, to ``scored/``
   (:mod:`winnow.filters.classifier_score`). Only the first 100,000 characters count
   (:mod:`winnow.filters.classifier_text`, as in training), so empty and huge documents score like any other.
2. ``cut`` (one task): :class:`QualityCut` reads only the score columns (and, for a top fraction, the ids
   of the rows at the cut value) and writes ``cut/``: per score column the sorted distinct values with
   the number of rows below each (``cut/<column>.parquet``, 12 bytes per distinct value, at most one per
   document) and ``cut/cut.json`` (rows, and a top fraction's cut value and last id). A top fraction is
   found from a histogram of the ranked column, then an exact second pass over the ids of the rows at its
   cut value (at most ``HELD_IDS`` held: a larger tie takes further passes, narrowing by id prefix).
3. ``select`` (all tasks): :class:`QualitySelect` reads its share of ``scored/`` (file ``i`` on task
   ``i % tasks``) in batches and writes ``data/`` and ``rejects/``. A document's percent rank over the
   whole run is exact from the tables (rows with a lower score / (rows - 1), DuckDB's ``percent_rank``);
   ``quality_rank`` is the mean over classifiers, ``quality_bucket`` that rank cut into N equal-width
   buckets (0 the lowest). With one classifier and no buckets the rule is a condition on its score.
   The kept ids do not depend on the task count. Changing ``keep`` or ``buckets`` reruns ``cut`` and
   ``select`` only: nothing is rescored.

A top fraction keeps the first round(f * rows) rows by ``by`` (descending), ties broken by id; rows sharing
the cut's value and id (a repeated id) are kept together. Reject reasons: ``below_top_fraction`` (detail:
the last kept value), ``below_threshold`` (detail: the failing column, value and minimum) and
``below_min_bucket``.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.classifier_score import load_classifier, score_texts
from winnow.pipeline.json_records import write_json
from winnow.pipeline.manifest import ClassifierConfig, QualityConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.parquet_sink import ParquetSink
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.schema import document_schema, outcome_schema
from winnow.pipeline.stage_duckdb import sql_paths, stage_duckdb

BATCH_DOCS = 512
READ_BATCH_ROWS = 20_000  # rows of scored/ held at once by the cut and select phases
HELD_IDS = 1_000_000  # ids of the rows tied at a top fraction's cut value held at once by the cut phase


class QualityScorer(PipelineStep):
    """Phase 1: add ``score_<name>`` for every classifier to each document."""

    name = "🏅 quality scores"
    type = "QUALITY"

    def __init__(self, classifiers: Sequence[ClassifierConfig], layout: StageLayout, threads: int = 1) -> None:
        """``threads``: the CPU threads a task may use (torch's, for embedding and Hugging Face models)."""
        super().__init__()
        self.classifiers = list(classifiers)
        self.layout = layout
        self.threads = threads

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        models = [load_classifier(c.model, c.label) for c in self.classifiers]  # cached: once per process
        if "torch" in sys.modules:  # a torch model was loaded: the task's threads, not one per core of the machine
            sys.modules["torch"].set_num_threads(self.threads)
        with OutcomeWriter(self.layout, "quality", kind="errors") as errors:
            batch: list[Document] = []
            for doc in data or ():
                batch.append(doc)
                if len(batch) >= BATCH_DOCS:
                    yield from self._score(batch, models, errors, rank)
                    batch = []
            if batch:
                yield from self._score(batch, models, errors, rank)

    def _score(
        self, batch: list[Document], models: list[object], errors: OutcomeWriter, rank: int
    ) -> DocumentsPipeline:
        with self.track_time("batch"):
            try:
                columns = self._score_batch(batch, models)
            except Exception:  # one document broke the batch: score one by one to find it
                columns = None
        if columns is None:
            for doc in batch:
                try:
                    single = self._score_batch([doc], models)
                except Exception as exc:
                    errors.write(doc, rank, reason="score_failed", detail=f"{type(exc).__name__}: {exc}")
                    continue
                yield self._annotate(doc, {name: values[0] for name, values in single.items()})
            return
        for i, doc in enumerate(batch):
            yield self._annotate(doc, {name: values[i] for name, values in columns.items()})

    def _score_batch(self, batch: list[Document], models: list[object]) -> dict[str, np.ndarray]:
        columns = {}
        texts = [d.text for d in batch]
        for classifier, model in zip(self.classifiers, models, strict=True):
            columns[f"score_{classifier.name}"] = score_texts(model, texts, classifier.label)
        return columns

    def _annotate(self, doc: Document, scores: dict[str, np.floating]) -> Document:
        doc.metadata.setdefault("attributes", {}).update({k: float(v) for k, v in scores.items()})
        self.stat_update("scored")
        return doc


RANK_COLUMNS = ("quality_rank", "quality_bucket")


def scored_files(layout: StageLayout) -> list[Path]:
    """The files of ``scored/`` in a fixed order: file ``i`` is selected by task ``i % tasks``."""
    return sorted((layout.stage_dir / "scored").glob("*.parquet"))


def _batches(files: Sequence[Path], columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    for path in files:
        yield from pq.ParquetFile(path).iter_batches(
            batch_size=READ_BATCH_ROWS, columns=None if columns is None else list(columns)
        )


def _score_columns(config: QualityConfig) -> list[str]:
    return [f"score_{c.name}" for c in config.classifiers]


def _ranked_by(config: QualityConfig) -> str | None:
    """The column a top fraction ranks by (None without a top fraction)."""
    if config.keep.top_fraction is None:
        return None
    scores = _score_columns(config)
    return config.keep.by or (scores[0] if len(scores) == 1 else "quality_rank")


class Cut:
    """What the ``cut`` phase decided: the run's row count, each score's (sorted distinct values, rows below
    each value), and for a top fraction the cut value and the last kept id at that value."""

    def __init__(
        self,
        rows: int,
        tables: dict[str, tuple[np.ndarray, np.ndarray]],
        value: float | int | None = None,
        last_id: str | None = None,
    ) -> None:
        self.rows = rows
        self.tables = tables
        self.value = value
        self.last_id = last_id

    @staticmethod
    def load(folder: Path) -> Cut:
        record = json.loads((folder / "cut.json").read_text())
        tables = {}
        for column in record["tables"]:
            table = pq.read_table(folder / f"{column}.parquet")
            tables[column] = (table["value"].to_numpy(), table["below"].to_numpy())
        return Cut(record["rows"], tables, record["value"], record["last_id"])


def column_values(batch: pa.RecordBatch, config: QualityConfig, cut: Cut) -> dict[str, np.ndarray]:
    """The score columns of ``batch`` and, when ranked, ``quality_rank`` (the mean of each score's percent rank
    over the whole run: rows below / (rows - 1), as DuckDB's ``percent_rank``) and ``quality_bucket``."""
    scores = _score_columns(config)
    values = {s: batch.column(s).to_numpy(zero_copy_only=False).astype(np.float32, copy=False) for s in scores}
    if not config.ranked:
        return values
    total = np.zeros(len(batch), np.float64)
    for column in scores:
        distinct, below = cut.tables[column]
        less = below[np.searchsorted(distinct, values[column])].astype(np.float64)
        total = total + (less / float(cut.rows - 1) if cut.rows > 1 else 0.0)
    rank = (total / len(scores)).astype(np.float32)
    values["quality_rank"] = rank
    if config.buckets:
        bucket = np.floor(rank * np.float32(config.buckets)).astype(np.int64)
        values["quality_bucket"] = np.minimum(bucket, config.buckets - 1)
    return values


def nth_tied_id(
    files: Sequence[Path], config: QualityConfig, cut: Cut, by: str, value: np.generic, need: int, held: int = HELD_IDS
) -> str:
    """The ``need``-th smallest id (from 1) of the rows of ``files`` whose ``by`` equals ``value``, holding at most
    ``held`` ids at once: while more rows than that share the id prefix found so far, a pass counts them by the
    character after the prefix, which grows by the character where the ``need``-th falls (code point order: the
    byte order in which Arrow compares the ids)."""
    prefix = ""
    while True:
        ids: list[str] | None = []
        following: collections.Counter[str] = collections.Counter()
        for batch in _batches(files, ["id", *_score_columns(config)]):
            tied = batch.column("id").filter(pa.array(column_values(batch, config, cut)[by] == value))
            if prefix:
                tied = tied.filter(pc.starts_with(tied, pattern=prefix))
            chars = pc.value_counts(pc.utf8_slice_codeunits(tied, start=len(prefix), stop=len(prefix) + 1))
            following.update(
                dict(zip(chars.field("values").to_pylist(), chars.field("counts").to_pylist(), strict=True))
            )
            if ids is not None and len(ids) + len(tied) <= held:
                ids.extend(tied.to_pylist())
            else:
                ids = None
        if ids is not None:
            return sorted(ids)[need - 1]
        for char in sorted(following):  # "" (an id equal to the prefix) first
            if need <= following[char]:
                break
            need -= following[char]
        if char == "":
            return prefix
        prefix += char


class QualityCut(PipelineStep):
    """Phase 2 (one task): the global statistics of the selection, from the score columns only (``cut/``)."""

    name = "📏 quality cut"
    type = "QUALITY"

    def __init__(self, config: QualityConfig, layout: StageLayout, memory_limit: str, threads: int) -> None:
        super().__init__()
        self.config = config
        self.layout = layout
        self.memory_limit = memory_limit
        self.threads = threads

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        progress = TaskProgress(self.layout.progress_dir, rank)
        folder = self.layout.stage_dir / "cut"
        folder.mkdir(parents=True, exist_ok=True)
        with self.track_time():
            record = self._cut(scored_files(self.layout), folder)
        write_json(folder / "cut.json", record)
        progress.advance(docs=record["rows"], units=1)
        progress.flush()
        return
        yield  # a generator that yields nothing

    def _cut(self, files: list[Path], folder: Path) -> dict[str, Any]:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        by = _ranked_by(self.config)
        needed = list(_score_columns(self.config)) if self.config.ranked else []
        if by is not None and by.startswith("score_") and by not in needed:
            needed.append(by)
        counts = self._value_counts(files, needed)
        for column, (values, n) in counts.items():
            below = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
            pq.write_table(pa.table({"value": values, "below": below}), folder / f"{column}.parquet")
        record: dict[str, Any] = {"rows": rows, "tables": needed, "by": by, "value": None, "last_id": None}
        wanted = round(self.config.keep.top_fraction * rows) if by is not None else 0
        if wanted == 0:
            return record
        cut = Cut(rows, {c: (v, np.concatenate([[0], np.cumsum(n)[:-1]])) for c, (v, n) in counts.items()})
        values, n = counts[by] if by in counts else self._histogram(files, by, cut)
        descending, n_desc = values[::-1], n[::-1]
        cumulative = np.cumsum(n_desc)
        i = int(np.searchsorted(cumulative, wanted))  # the first value at which `wanted` rows are reached
        value = descending[i]
        need = wanted - int(cumulative[i] - n_desc[i])
        record.update(value=value.item(), last_id=nth_tied_id(files, self.config, cut, by, value, need), wanted=wanted)
        return record

    def _value_counts(self, files: list[Path], columns: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per column: its sorted distinct values and how many rows hold each (DuckDB, under memory_limit)."""
        counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if not columns:
            return counts
        if not files:
            return {c: (np.array([], np.float32), np.array([], np.int64)) for c in columns}
        with stage_duckdb(self.layout.stage_dir, self.memory_limit, self.threads) as (con, _):
            for column in columns:
                query = f'SELECT "{column}" AS value, count(*) AS n FROM read_parquet({sql_paths(files)}) GROUP BY ALL'
                table = con.execute(f"{query} ORDER BY value").fetchnumpy()
                counts[column] = (np.asarray(table["value"], np.float32), np.asarray(table["n"], np.int64))
        return counts

    def _histogram(self, files: list[Path], column: str, cut: Cut) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct values of a derived column (quality_rank, quality_bucket) and their row counts."""
        values = np.array([], np.float32 if column == "quality_rank" else np.int64)
        counts = np.array([], np.int64)
        for batch in _batches(files, _score_columns(self.config)):
            batch_values, batch_counts = np.unique(column_values(batch, self.config, cut)[column], return_counts=True)
            values, inverse = np.unique(np.concatenate([values, batch_values]), return_inverse=True)
            counts = np.bincount(inverse, weights=np.concatenate([counts, batch_counts])).astype(np.int64)
        return values, counts


class QualitySelect(PipelineStep):
    """Phase 3 (all tasks): apply the cut to this task's share of ``scored/``; write ``data/`` and ``rejects/``."""

    name = "🎯 quality select"
    type = "QUALITY"

    def __init__(self, config: QualityConfig, layout: StageLayout) -> None:
        super().__init__()
        self.config = config
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        cut = Cut.load(self.layout.stage_dir / "cut")
        files = scored_files(self.layout)[rank::world_size]
        kept_schema, rejected_schema = document_schema(self.layout.attributes), outcome_schema(self.layout.attributes)
        size = self.layout.target_bytes
        kept = 0
        with (
            ParquetSink(self.layout.dataset_dir("data"), "part", kept_schema, rank, size) as kept_sink,
            ParquetSink(self.layout.dataset_dir("rejects"), "select", rejected_schema, rank, size) as rejected_sink,
        ):
            for batch in _batches(files):
                with self.track_time("batch"):
                    values = column_values(batch, self.config, cut)
                    keep, reason, detail = self._decide(batch, values, cut)
                    table = pa.table(
                        {
                            name: values[name] if name in RANK_COLUMNS else batch.column(name)
                            for name in kept_schema.names
                        }
                    )
                    if keep.any():
                        kept_sink.write_table(table.filter(keep))
                    if not keep.all():
                        dropped = table.filter(~keep)
                        rejected_sink.write_table(
                            dropped.append_column("stage", pa.array([self.layout.stage] * len(dropped)))
                            .append_column("reason", pa.array([reason] * len(dropped)))
                            .append_column("detail", pa.array(detail(~keep), pa.string()))
                        )
                kept += int(keep.sum())
                progress.advance(docs=len(batch))
        self.stat_update("kept", value=kept)
        progress.advance(units=1)
        progress.flush()

    def _decide(
        self, batch: pa.RecordBatch, values: dict[str, np.ndarray], cut: Cut
    ) -> tuple[np.ndarray, str | None, Any]:
        """(keep mask, reject reason, detail(mask of rejected rows) -> their detail strings)."""
        keep = self.config.keep
        rows = len(batch)
        if keep.top_fraction is not None:
            by = _ranked_by(self.config)
            detail = f"{by} below {cut.value} (top {keep.top_fraction})"
            if cut.value is None:
                mask = np.zeros(rows, bool)
            else:
                column = values[by]
                value = np.asarray(cut.value, dtype=column.dtype)
                at_or_before = pc.less_equal(batch.column("id"), pa.scalar(cut.last_id)).to_numpy(zero_copy_only=False)
                mask = (column > value) | ((column == value) & at_or_before)
            return mask, "below_top_fraction", lambda dropped: [detail] * int(dropped.sum())
        if keep.threshold:
            checks = {c: values[c] >= np.asarray(m, dtype=values[c].dtype) for c, m in keep.threshold.items()}
            mask = np.logical_and.reduce(list(checks.values()))

            def failing(dropped: np.ndarray) -> list[str]:
                out = []
                for i in np.flatnonzero(dropped):
                    column = next(c for c, ok in checks.items() if not ok[i])
                    out.append(f"{column}={round(float(values[column][i]), 4)} < {keep.threshold[column]}")
                return out

            return mask, "below_threshold", failing
        if keep.min_bucket is not None:
            bucket = values["quality_bucket"]
            mask = bucket >= keep.min_bucket
            return (
                mask,
                "below_min_bucket",
                lambda dropped: [f"quality_bucket={b} < {keep.min_bucket}" for b in bucket[dropped]],
            )
        return np.ones(rows, bool), None, lambda dropped: []
