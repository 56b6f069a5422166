"""The quality stage: score documents with fastText classifiers (annotate), then select by the scores.

Two phases (see :mod:`winnow.pipeline.stages`):

1. ``score`` (all tasks): :class:`QualityScorer` loads each model once per worker process and writes
   ``score_<name>`` = P(label) of every document, predicted in batches, to ``scored/``
   (:mod:`winnow.filters.classifier_score`). Only the first 100,000 characters count
   (:mod:`winnow.filters.classifier_text`, as in training), so empty and huge documents score like any other.
2. ``select`` (one task): :class:`QualitySelect` decides over the whole run at once with DuckDB — a top
   fraction is a global ranking, not a per-task one — and writes ``data/`` and ``rejects/``. With
   several classifiers or ``buckets``, ``quality_rank`` (the mean of each score's percent rank) and
   ``quality_bucket`` (that rank cut into N equal-width buckets, 0 the lowest) are added; with one
   classifier the rule is a plain condition on its score (a top fraction becomes its cut value).
   Changing ``keep`` or ``buckets`` reruns this phase only: nothing is rescored.

Reject reasons: ``below_top_fraction`` (detail: the last kept value), ``below_threshold`` (detail: the
failing column, value and minimum) and ``below_min_bucket``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.classifier_score import load_classifier, score_texts
from winnow.pipeline.manifest import ClassifierConfig, QualityConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.schema import CORE_COLUMNS
from winnow.pipeline.stage_duckdb import copy_to_shards, stage_duckdb

BATCH_DOCS = 512


class QualityScorer(PipelineStep):
    """Phase 1: add ``score_<name>`` for every classifier to each document."""

    name = "🏅 quality scores"
    type = "QUALITY"

    def __init__(self, classifiers: Sequence[ClassifierConfig], layout: StageLayout) -> None:
        super().__init__()
        self.classifiers = list(classifiers)
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        models = [load_classifier(c.model, c.label) for c in self.classifiers]  # cached: once per process
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


class QualitySelect(PipelineStep):
    """Phase 2 (one task): rank and select over the whole scored run; write ``data/`` and ``rejects/``."""

    name = "🎯 quality select"
    type = "QUALITY"

    def __init__(self, config: QualityConfig, layout: StageLayout, memory_limit: str, threads: int) -> None:
        super().__init__()
        self.config = config
        self.layout = layout
        self.memory_limit = memory_limit
        self.threads = threads

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        stage_dir = self.layout.stage_dir
        progress = TaskProgress(self.layout.progress_dir, rank)
        with stage_duckdb(stage_dir, self.memory_limit, self.threads) as (con, tmp), self.track_time():
            self._select(con, stage_dir, tmp)
        progress.advance(docs=1, units=1)
        progress.flush()
        return
        yield  # a generator that yields nothing

    def _select(self, con: duckdb.DuckDBPyConnection, stage_dir: Path, tmp: Path) -> None:
        """Decide from the score columns, then stream the documents from ``scored/`` into ``data/`` and
        ``rejects/``: text is never loaded into a table."""
        scored_files = sorted((stage_dir / "scored").glob("*.parquet"))
        scores = [f"score_{c.name}" for c in self.config.classifiers]
        if not scored_files:  # nothing reached the stage: empty outputs, nothing to decide
            return
        listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in scored_files)
        if self.config.ranked:
            self._select_ranked(
                con,
                f"read_parquet([{listing}], union_by_name = true, filename = true, file_row_number = true)",
                scores,
                stage_dir,
                tmp,
            )
        else:
            self._select_by_scores(con, f"read_parquet([{listing}], union_by_name = true)", scores, stage_dir, tmp)

    def _select_by_scores(
        self, con: duckdb.DuckDBPyConnection, documents: str, scores: list[str], stage_dir: Path, tmp: Path
    ) -> None:
        """One classifier, no ranks: the rule is a condition on the score itself (a top fraction becomes its cut
        value), so both outputs stream straight from ``scored/`` with no join and no table."""
        keep = self.config.keep
        if keep.top_fraction is not None:
            by = keep.by or scores[0]
            (total,) = con.execute(f"SELECT count(*) FROM {documents}").fetchone()
            wanted = round(keep.top_fraction * total)
            cut = con.execute(
                f'SELECT "{by}", id FROM {documents} ORDER BY "{by}" DESC, id LIMIT 1 OFFSET {max(wanted - 1, 0)}'
            ).fetchone()
            if wanted == 0 or cut is None:
                condition = "false"
            else:  # the `wanted`-th row by score, ties by id: everything at or above it
                value, last_id = cut
                literal = "'" + str(last_id).replace("'", "''") + "'"
                condition = (
                    f'("{by}" > CAST({value!r} AS FLOAT) OR ("{by}" = CAST({value!r} AS FLOAT) AND id <= {literal}))'
                )
            reason, detail = "'below_top_fraction'", f"'{by} below {cut[0] if cut else None} (top {keep.top_fraction})'"
        else:
            condition, reason, detail = self._rule(con, scores, prefix="")
        self._write(con, documents, condition, reason, detail, stage_dir, tmp, ranks_join=None)

    def _select_ranked(
        self, con: duckdb.DuckDBPyConnection, documents: str, scores: list[str], stage_dir: Path, tmp: Path
    ) -> None:
        """Ensembles and buckets: ``ranks`` (one small row per document: key, id, scores, rank, bucket) is computed
        first, then joined back to the documents by (file, row) while they stream into the outputs."""
        percent = " + ".join(f'percent_rank() OVER (ORDER BY "{s}")' for s in scores)
        bucket = (
            f"least(CAST(floor(quality_rank * {self.config.buckets}) AS BIGINT), {self.config.buckets - 1})"
            if self.config.buckets
            else "NULL::BIGINT"
        )
        score_list = ", ".join(f'"{s}"' for s in scores)
        con.execute(
            f"""CREATE TABLE ranks AS
                SELECT *, {bucket} AS quality_bucket FROM (
                  SELECT filename, file_row_number, id, {score_list},
                         CAST(({percent}) / {len(scores)} AS FLOAT) AS quality_rank
                  FROM {documents})"""
        )
        keep, reason, detail = self._rule(con, scores, prefix="r.")
        con.execute(f"ALTER TABLE ranks ADD COLUMN selected BOOLEAN; UPDATE ranks SET selected = ({keep})")
        joined = f"{documents} d JOIN ranks r USING (filename, file_row_number)"
        self._write(con, joined, "r.selected", reason, detail, stage_dir, tmp, ranks_join="r")

    def _write(
        self,
        con: duckdb.DuckDBPyConnection,
        source: str,
        condition: str,
        reason: str,
        detail: str,
        stage_dir: Path,
        tmp: Path,
        ranks_join: str | None,
    ) -> None:
        """Stream the rows of ``source`` meeting ``condition`` to ``data/``, the others to ``rejects/``."""
        own = {"quality_rank", "quality_bucket"}
        names = (*CORE_COLUMNS, *self.layout.attribute_names)
        if ranks_join:
            columns = ", ".join(f'r."{c}"' if c in own else f'd."{c}"' for c in names)
        else:
            columns = ", ".join(f'"{c}"' for c in names)
        copy_to_shards(con, f"SELECT {columns} FROM {source} WHERE {condition}", stage_dir / "data", tmp)
        rejected = (
            f"SELECT {columns}, '{self.layout.stage}' AS stage, {reason} AS reason, {detail} AS detail "
            f"FROM {source} WHERE NOT ({condition})"
        )
        copy_to_shards(con, rejected, stage_dir / "rejects", tmp)
        kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (stage_dir / "data").glob("*.parquet"))
        self.stat_update("kept", value=kept)

    def _rule(self, con: duckdb.DuckDBPyConnection, scores: list[str], prefix: str) -> tuple[str, str, str]:
        """SQL for (keep condition, reject reason, reject detail); over ``ranks`` when ``prefix`` is ``r.``."""
        keep = self.config.keep
        if keep.top_fraction is not None:  # ranked: the first round(f * n) rows by `by`, ties by id
            by = keep.by or (scores[0] if len(scores) == 1 else "quality_rank")
            (total,) = con.execute("SELECT count(*) FROM ranks").fetchone()
            wanted = round(keep.top_fraction * total)
            con.execute(
                f"""CREATE TABLE chosen AS SELECT filename, file_row_number FROM ranks
                    ORDER BY "{by}" DESC, id, filename, file_row_number LIMIT {wanted}"""
            )
            con.execute("ALTER TABLE ranks ADD COLUMN top BOOLEAN DEFAULT false")
            con.execute(
                "UPDATE ranks SET top = true FROM chosen c WHERE ranks.filename = c.filename "
                "AND ranks.file_row_number = c.file_row_number"
            )
            (last,) = con.execute(f'SELECT min("{by}") FROM ranks WHERE top').fetchone()
            return "top", "'below_top_fraction'", f"'{by} below {last} (top {keep.top_fraction})'"
        if keep.threshold:
            conditions = [f'"{column}" >= {value}' for column, value in keep.threshold.items()]
            failing = " ".join(
                f"""WHEN NOT ({prefix}"{column}" >= {value}) THEN '{column}=' || round({prefix}"{column}", 4) """
                f"""|| ' < {value}'"""
                for column, value in keep.threshold.items()
            )
            return " AND ".join(conditions), "'below_threshold'", f"CASE {failing} END"
        if keep.min_bucket is not None:
            return (
                f"quality_bucket >= {keep.min_bucket}",
                "'below_min_bucket'",
                f"'quality_bucket=' || {prefix}quality_bucket || ' < {keep.min_bucket}'",
            )
        return "true", "NULL", "NULL"
