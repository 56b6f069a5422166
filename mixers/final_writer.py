"""The final corpus: documents sampled to the mix's weights and token budget, shuffled, in near-equal shards.

Each mixed source gets a quota of ``weight × token_budget`` tokens, filled from its ``train`` documents:
whole epochs of every document while the quota allows (never more than ``max_epochs``: the fitted weights'
caps guarantee it, fixed weights are checked), then the remainder from one more copy of the documents taken
in a seeded order (a hash ``h`` of the id, then the id): the whole histogram buckets of that order that fit,
then, greedily, the documents of the next stretch that still fit, so a source ends below its quota by less
than one document.
Every copy is placed by a seeded hash ``key`` of (id, copy): its shard is ``key % shards`` and a shard's rows
are sorted by (key, id, copy), which is a global shuffle. The result depends on the documents and the seed,
never on the task count, so 1 and 3 tasks write the same bytes.

No task holds or writes the whole corpus. The phases (work files under ``stages/mix/final/``):

1. ``final-scan`` (all tasks): each task's share of ``data/`` (file ``i`` to task ``i % tasks``) as a
   histogram: train documents and tokens per source and bucket (the top 12 bits of ``h``) ->
   ``hist/part-<rank>.parquet``.
2. ``final-plan`` (one task; input: tasks × sources × 4,096 histogram rows): the weights (the fit's
   proposal, or ``stages.mix.weights``), and per source the quota, the epochs, the boundary bucket (the
   whole buckets before it fit in the remainder) and the tokens left for it; the shard count
   ``ceil(expected rows / shard_rows)`` -> ``plan.json``.
3. ``final-scatter`` (all tasks): each task reads its own files and writes every copy it picks, with its
   key and shard, to ``buckets/part-<rank>.parquet`` (sorted by shard, so a writer reads only its slice).
   The boundary documents of that copy are candidates: listed in ``candidates/part-<rank>.parquet`` too.
4. ``final-pick`` (one task; input: per source the boundary bucket's documents and the next buckets' up to
   10,000, so about 1/4,096 of a large source): the candidates in ``h`` order, taken greedily while they fit
   the tokens left -> ``picks/picks.parquet``.
5. ``final-write`` (all tasks): task ``t`` writes a contiguous range of shards, one shard at a time (so a
   task holds one shard: ``shard_rows`` bounds its memory), from every bucket file's slice (candidates that
   were not picked dropped), sorted, with explicit schema (the mix stage's columns
   plus ``mix_copy``, 0 for a document's first copy) and fixed row groups -> ``shards/part-NNNNN.parquet``
   and ``stats/part-NNNNN.json`` (rows, tokens and first copies per source, SHA-256).
6. ``final-publish`` (one task; input: shards × sources): ``_manifest.json`` (where the weights came from;
   weights, quotas and tokens written per source; rows and tokens per source per shard; each shard's
   SHA-256; the swarm and regression that chose the weights, null for fixed weights), then the shards
   folder is swapped in as ``final/`` whole, so readers see the old or the new corpus, never a mix, and
   the buckets are removed.

DuckDB runs in every task under ``final.memory_limit``, spilling to its own folder.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.mixers.corpus import MixDataError
from winnow.mixers.fit import fit_dir
from winnow.mixers.phase import OneTaskStep, TaskStep
from winnow.mixers.sampling import InfeasibleMixError
from winnow.mixers.tokens import file_sha256, tokenizer_path
from winnow.pipeline.json_records import write_json
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.schema import document_schema
from winnow.pipeline.stage_duckdb import copy_to_file, sql_path, sql_paths, stage_duckdb

BUCKET_BITS = 12  # histogram resolution: 4,096 buckets of the seeded document order per source
MIN_CANDIDATES = 10_000  # per source: the boundary bucket, and the buckets after it until this many documents
ROW_GROUP_ROWS = 10_000  # rows per row group of a final shard (fixed, so the bytes do not depend on batching)
BATCH_ROWS = 4096


def staging_dir(layout: StageLayout) -> Path:
    """The final writer's work folder: histograms, plan, buckets, picks, shards before they are published."""
    return layout.stage_dir / "final"


def _task_files(layout: StageLayout, rank: int, world_size: int) -> list[Path]:
    """This task's share of the counted documents: file ``i`` goes to task ``i % world_size``."""
    return sorted(layout.dataset_dir("data").glob("*.parquet"))[rank::world_size]


def _rows(files: Sequence[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _doc_hash(seed: int) -> str:
    """SQL: the seeded 64-bit hash ``h`` of a document's id (its place in the remainder order)."""
    return f"md5_number_upper(id || ':{seed}')"


def _copy_key(seed: int) -> str:
    """SQL: the seeded 64-bit hash ``key`` of (id, copy): a copy's shard and its place in it."""
    return f"md5_number_upper(id || ':' || copy || ':{seed}')"


def _write_buckets(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Like ``copy_to_file``, in row groups small enough for a writer's slice to skip the rest of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    options = f"FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
    con.execute(f"COPY ({query}) TO {sql_path(tmp)} ({options})")
    os.replace(tmp, path)


def read_plan(layout: StageLayout) -> dict[str, Any]:
    return json.loads((staging_dir(layout) / "plan.json").read_text())


def publish(staging: Path, final: Path) -> None:
    """Swap ``staging`` in as ``final`` (the old folder is removed only after the new one is in place)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


class _FinalTask(TaskStep):
    """A final-writer phase on all tasks: DuckDB under ``final.memory_limit`` with its own spill folder."""

    def _duckdb(self, rank: int) -> Any:
        task = f"{self.layout.phase}-{rank}"
        return stage_duckdb(self.layout.stage_dir, self.config.final.memory_limit, self.threads, task)


class ScanFinal(_FinalTask):
    """Phase ``final-scan`` (all tasks): per source and bucket of the seeded order, train documents and tokens."""

    name = "📊 final scan"

    def work_task(self, progress: TaskProgress, rank: int, world_size: int) -> None:
        files = _task_files(self.layout, rank, world_size)
        target = staging_dir(self.layout) / "hist" / f"part-{rank:05d}.parquet"
        target.unlink(missing_ok=True)
        if not files:
            return
        query = f"""
            SELECT source, ({_doc_hash(self.config.final.seed)} >> {64 - BUCKET_BITS})::BIGINT AS bucket,
                   count(*) AS docs, sum(tokens)::BIGINT AS tokens
            FROM read_parquet({sql_paths(files)}, union_by_name = true)
            WHERE mix_split = 'train' AND tokens > 0
            GROUP BY ALL"""
        with self._duckdb(rank) as (con, _):
            copy_to_file(con, query, target)
        rows = _rows(files)
        progress.advance(docs=rows, units=rows)


class PlanFinal(OneTaskStep):
    """Phase ``final-plan`` (one task): weights, per-source quota, epochs and boundary bucket, the shard count."""

    name = "🧮 final plan"

    def __init__(self, config: MixConfig, mixed: Sequence[str], layout: StageLayout, threads: int) -> None:
        super().__init__(config, layout, threads)
        self.mixed = list(mixed)

    def work(self, progress: TaskProgress) -> None:
        weights, fit = self._weights()
        folder = staging_dir(self.layout)
        hist = sorted((folder / "hist").glob("*.parquet"))
        buckets: dict[str, list[tuple[int, int, int]]] = {}
        if hist:
            with stage_duckdb(self.layout.stage_dir, self.config.final.memory_limit, self.threads) as (con, _):
                rows = con.execute(
                    f"""SELECT source, bucket, sum(docs)::BIGINT, sum(tokens)::BIGINT
                        FROM read_parquet({sql_paths(hist)}) GROUP BY ALL ORDER BY source, bucket"""
                ).fetchall()
            for source, bucket, docs, tokens in rows:
                buckets.setdefault(source, []).append((int(bucket), int(docs), int(tokens)))
        budget = self.config.token_budget
        sources = {s: self._source(s, w * budget, buckets.get(s, [])) for s, w in weights.items()}
        for name, weight in weights.items():
            sources[name]["weight"] = weight
        expected = sum(s["expected_rows"] for s in sources.values())
        plan = {
            "weights_from": "manifest" if self.config.weights is not None else "fit",
            "weights": weights,
            "shards": max(1, math.ceil(expected / self.config.final.shard_rows)),
            "expected_rows": expected,
            "sources": sources,
            "fit": fit,
        }
        write_json(folder / "plan.json", plan)

    def _weights(self) -> tuple[dict[str, float], dict[str, Any] | None]:
        """(weights over every mixed source, what the fit reports about them; None for fixed weights)."""
        if self.config.weights is not None:
            return {s: float(self.config.weights.get(s, 0.0)) for s in self.mixed}, None
        report = json.loads((fit_dir(self.layout) / "report.json").read_text())
        fit = {
            "swarm": {"runs": report["runs"], "failed_runs": report["failed_runs"]},
            "regression": {"chosen": report["chosen"], "models": report["models"], "folds": report["folds"]},
            "predicted_loss": report["predicted_loss"]["proposed"],
            "objective": report["objective"],
        }
        return dict(report["weights"]["proposed"]), fit

    def _source(self, name: str, quota: float, buckets: list[tuple[int, int, int]]) -> dict[str, Any]:
        """One source's plan: ``epochs`` whole copies of every document; of one more copy, the buckets before
        ``boundary`` whole, and ``rest`` tokens from the candidates, the documents of buckets ``boundary`` to
        ``last`` (both -1: nothing more)."""
        documents = sum(d for _, d, _ in buckets)
        total = sum(t for _, _, t in buckets)
        if quota > 0 and total == 0:
            raise MixDataError(
                f"stages.mix: source {name!r} has weight {quota / self.config.token_budget:.4g} but no documents "
                f"left to mix (none reached the mix stage, or all were held out); see `winnow inspect` for where "
                f"its documents went"
            )
        cap = self.config.max_epochs
        if self.config.weights is not None and cap is not None and quota > cap * total * (1 + 1e-9):
            raise InfeasibleMixError(
                f"stages.mix.weights: source {name!r} would fill its {quota:,.0f} tokens only by repeating its "
                f"{total:,} train tokens {quota / total:.3g} times, more than stages.mix.max_epochs ({cap:g}); "
                f"lower its weight or the token_budget, or raise max_epochs"
            )
        epochs = math.floor(quota / total) if total else 0
        rest = quota - epochs * total
        boundary, last, prefix_docs, prefix_tokens, expected = -1, -1, 0, 0, float(epochs * documents)
        if rest > 0:
            for i, (bucket, docs, tokens) in enumerate(buckets):
                if prefix_tokens + tokens > rest:
                    boundary = bucket
                    expected += prefix_docs + docs * (rest - prefix_tokens) / tokens
                    last, candidates = bucket, 0
                    for later, more, _ in buckets[i:]:  # the boundary bucket, and more until enough candidates
                        last, candidates = later, candidates + more
                        if candidates >= MIN_CANDIDATES:
                            break
                    break
                prefix_docs, prefix_tokens = prefix_docs + docs, prefix_tokens + tokens
        return {
            "quota": quota,
            "available_tokens": total,
            "documents": documents,
            "epochs": epochs,
            "boundary": boundary,
            "last": last,
            "prefix_documents": prefix_docs,
            "prefix_tokens": prefix_tokens,
            "rest": rest - prefix_tokens if boundary >= 0 else 0.0,
            "expected_rows": round(expected),
        }


class ScatterFinal(_FinalTask):
    """Phase ``final-scatter`` (all tasks): every copy this task's documents contribute, with its shard."""

    name = "🪣 final scatter"

    def work_task(self, progress: TaskProgress, rank: int, world_size: int) -> None:
        files = _task_files(self.layout, rank, world_size)
        folder = staging_dir(self.layout)
        buckets = folder / "buckets" / f"part-{rank:05d}.parquet"
        candidates = folder / "candidates" / f"part-{rank:05d}.parquet"
        buckets.unlink(missing_ok=True)
        candidates.unlink(missing_ok=True)
        if not files:
            return
        plan = read_plan(self.layout)
        seed = self.config.final.seed
        columns = ", ".join(f'"{n}"' for n in document_schema(self.layout.attributes).names)
        with self._duckdb(rank) as (con, _):
            con.execute("CREATE TABLE plan (source VARCHAR, epochs BIGINT, boundary BIGINT, last BIGINT)")
            con.executemany(
                "INSERT INTO plan VALUES (?, ?, ?, ?)",
                [[s, p["epochs"], p["boundary"], p["last"]] for s, p in plan["sources"].items()],
            )
            con.execute(
                f"""CREATE VIEW docs AS
                    SELECT *, (h >> {64 - BUCKET_BITS})::BIGINT AS bucket FROM (
                        SELECT {columns}, {_doc_hash(seed)} AS h
                        FROM read_parquet({sql_paths(files)}, union_by_name = true)
                        WHERE mix_split = 'train' AND tokens > 0
                    )"""
            )
            # copies 0 .. epochs-1 of every document, and copy `epochs` of the buckets up to the last candidate
            copies = f"""
                WITH copies AS (
                    SELECT docs.*, plan.epochs, plan.boundary,
                           unnest(range(0, plan.epochs + CASE WHEN bucket <= plan.last THEN 1 ELSE 0 END)) AS copy
                    FROM docs JOIN plan USING (source)
                ), keyed AS (SELECT *, {_copy_key(seed)} AS key FROM copies)
                SELECT {columns}, copy, key, (key % {plan["shards"]})::BIGINT AS shard,
                       copy = epochs AND bucket >= boundary AS candidate
                FROM keyed ORDER BY shard"""
            _write_buckets(con, copies, buckets)
            copy_to_file(
                con,
                "SELECT source, id, tokens, h FROM docs JOIN plan USING (source)"
                " WHERE bucket BETWEEN boundary AND last",
                candidates,
            )
        rows = _rows(files)
        progress.advance(docs=rows, units=rows)


class PickFinal(OneTaskStep):
    """Phase ``final-pick`` (one task): which candidates fill each source's last tokens (greedy in ``h`` order)."""

    name = "🎯 final pick"

    def work(self, progress: TaskProgress) -> None:
        plan = read_plan(self.layout)
        folder = staging_dir(self.layout)
        files = sorted((folder / "candidates").glob("*.parquet"))
        picked: dict[str, list[str]] = {"source": [], "id": []}
        if files:
            with stage_duckdb(self.layout.stage_dir, self.config.final.memory_limit, self.threads) as (con, _):
                reader = con.sql(
                    f"SELECT source, id, tokens FROM read_parquet({sql_paths(files)}) ORDER BY source, h, id"
                ).to_arrow_reader(BATCH_ROWS)
                left: dict[str, float] = {s: p["rest"] for s, p in plan["sources"].items()}
                for batch in reader:
                    for source, doc_id, tokens in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
                        if tokens <= left[source]:
                            left[source] -= tokens
                            picked["source"].append(source)
                            picked["id"].append(doc_id)
        target = folder / "picks" / "picks.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(pa.table(picked, pa.schema([("source", pa.string()), ("id", pa.string())])), tmp)
        os.replace(tmp, target)


def shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


class WriteFinal(_FinalTask):
    """Phase ``final-write`` (all tasks): task ``t`` writes its contiguous range of shards."""

    name = "📦 final shards"

    def work_task(self, progress: TaskProgress, rank: int, world_size: int) -> None:
        plan = read_plan(self.layout)
        shards = plan["shards"]
        low, high = rank * shards // world_size, (rank + 1) * shards // world_size
        if low == high:
            progress.advance(units=1)
            return
        folder = staging_dir(self.layout)
        schema = document_schema(self.layout.attributes).append(pa.field("mix_copy", pa.int64()))
        columns = ", ".join(f'"{n}"' for n in schema.names[:-1])
        files = sorted((folder / "buckets").glob("*.parquet"))
        with self._duckdb(rank) as (con, _):
            picks = folder / "picks" / "picks.parquet"
            con.execute(f"CREATE TABLE picks AS SELECT * FROM read_parquet({sql_path(picks)})")
            counts: dict[int, dict[str, dict[str, int]]] = {}
            writer = _ShardWriter(folder, schema, counts, progress)
            if files:
                listing = sql_paths(files)
                for shard, source, rows, tokens, first in con.execute(
                    f"""SELECT shard, source, count(*), sum(tokens)::BIGINT, count(*) FILTER (WHERE copy = 0)
                        FROM ({_to_write(listing, f"shard >= {low} AND shard < {high}")}) GROUP BY ALL"""
                ).fetchall():
                    counts.setdefault(int(shard), {})[source] = {
                        "rows": int(rows),
                        "tokens": int(tokens),
                        "first_copies": int(first),
                    }
                for shard in sorted(counts):  # one shard at a time: a task holds one shard, not its whole range
                    reader = con.sql(
                        f"""SELECT {columns}, copy AS mix_copy, shard FROM ({_to_write(listing, f"shard = {shard}")})
                            ORDER BY key, id, copy"""
                    ).to_arrow_reader(BATCH_ROWS)
                    for batch in reader:
                        writer.write(batch)
            writer.finish(range(low, high))
        progress.advance(units=1)


def _to_write(listing: str, shards: str) -> str:
    """SQL: the copies of the bucket files ``listing`` in the shards ``shards`` (a condition on ``shard``) that go
    into the final corpus (candidates only when picked). The condition sits in the scan's own WHERE, where
    DuckDB prunes the files' row groups by it; from an outer query over several files it does not (DuckDB 2.0),
    and every shard's pass read every row group of every file."""
    picked = "EXISTS (SELECT 1 FROM picks p WHERE p.source = b.source AND p.id = b.id)"
    return f"SELECT * FROM read_parquet({listing}) b WHERE {shards} AND (NOT candidate OR {picked})"


class _ShardWriter:
    """Rows sorted by shard into ``shards/part-NNNNN.parquet`` (temporary name until complete) with fixed-size
    row groups, and each shard's ``stats/part-NNNNN.json``."""

    def __init__(
        self, folder: Path, schema: pa.Schema, counts: dict[int, dict[str, dict[str, int]]], progress: TaskProgress
    ) -> None:
        self.folder = folder
        self.schema = schema
        self.counts = counts
        self.progress = progress
        self.shard: int | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.written: set[int] = set()

    def write(self, batch: pa.RecordBatch) -> None:
        """Add a batch of rows sorted by their ``shard`` column."""
        shards = batch.column("shard").to_numpy()
        table = pa.Table.from_batches([batch]).drop_columns(["shard"]).cast(self.schema)
        starts = [0, *(np.flatnonzero(np.diff(shards)) + 1).tolist(), len(shards)]
        for start, end in itertools.pairwise(starts):
            if end > start:
                self._rows(int(shards[start]), table.slice(start, end - start))

    def _rows(self, shard: int, rows: pa.Table) -> None:
        if shard != self.shard:
            self._close()
            self._open(shard)
        self.pending.append(rows)
        self.pending_rows += rows.num_rows
        while self.pending_rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _open(self, shard: int) -> None:
        self.shard = shard
        path = self.folder / "shards" / f".{shard_name(shard)}.tmp"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending).combine_chunks()
        self.writer.write_table(table.slice(0, rows), row_group_size=rows)
        rest = table.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self.progress.advance(docs=rows)

    def _close(self) -> None:
        if self.shard is None:
            return
        if self.pending_rows:
            self._flush(self.pending_rows)
        self.writer.close()
        shard, self.shard, self.writer = self.shard, None, None
        tmp = self.folder / "shards" / f".{shard_name(shard)}.tmp"
        path = tmp.with_name(shard_name(shard))
        os.replace(tmp, path)
        sources = self.counts.get(shard, {})
        stats = {
            "path": path.name,
            "rows": sum(v["rows"] for v in sources.values()),
            "tokens": sum(v["tokens"] for v in sources.values()),
            "sha256": file_sha256(path),
            "sources": dict(sorted(sources.items())),
        }
        write_json(self.folder / "stats" / f"{path.stem}.json", stats)
        self.written.add(shard)

    def finish(self, shards: range) -> None:
        """Close the last shard, and write the shards of the range that got no rows (empty, same schema)."""
        self._close()
        for shard in shards:
            if shard not in self.written:
                self._open(shard)
                self._close()


class PublishFinal(OneTaskStep):
    """Phase ``final-publish`` (one task): ``_manifest.json`` from the shards' stats; swap ``final/`` in whole."""

    name = "🚚 final publish"

    def work(self, progress: TaskProgress) -> None:
        folder = staging_dir(self.layout)
        shards_dir = folder / "shards"
        final = self.layout.run_dir / "final"
        if shards_dir.is_dir():
            self._publish(shards_dir, final)
        elif not (final / "_manifest.json").exists():  # with it, an earlier attempt published and was cut short
            raise FileNotFoundError(f"{shards_dir}: the final-write phase's shards are gone; nothing to publish")
        for name in ("buckets", "candidates"):
            shutil.rmtree(folder / name, ignore_errors=True)

    def _publish(self, shards_dir: Path, final: Path) -> None:
        folder = shards_dir.parent
        plan = read_plan(self.layout)
        shards = [json.loads((folder / "stats" / f"part-{n:05d}.json").read_text()) for n in range(plan["shards"])]
        fit = plan["fit"] or {}
        manifest = {
            "token_budget": self.config.token_budget,
            "seed": self.config.final.seed,
            "shard_rows": self.config.final.shard_rows,
            "rows": sum(s["rows"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "weights_from": plan["weights_from"],
            "weights": plan["weights"],
            "sources": self._per_source(plan, shards),
            "shards": [
                {**s, "sources": {n: {"rows": v["rows"], "tokens": v["tokens"]} for n, v in s["sources"].items()}}
                for s in shards
            ],
            "tokenizer_sha256": file_sha256(tokenizer_path(self.layout)),
            "swarm": fit.get("swarm"),
            "regression": fit.get("regression"),
            "predicted_loss": fit.get("predicted_loss"),
            "objective": fit.get("objective"),
        }
        write_json(shards_dir / "_manifest.json", manifest)
        publish(shards_dir, final)

    def _per_source(self, plan: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, Any]:
        written: dict[str, dict[str, int]] = {}
        for shard in shards:
            for source, counts in shard["sources"].items():
                total = written.setdefault(source, {"rows": 0, "tokens": 0, "first_copies": 0})
                for key in total:
                    total[key] += counts[key]
        result = {}
        for source, p in plan["sources"].items():
            w = written.get(source, {"rows": 0, "tokens": 0, "first_copies": 0})
            partial = w["rows"] > p["epochs"] * p["documents"]
            result[source] = {
                "weight": p["weight"],
                "quota_tokens": round(p["quota"]),
                "tokens": w["tokens"],
                "rows": w["rows"],
                "distinct_documents": w["first_copies"],
                "available_tokens": p["available_tokens"],
                "epochs": p["epochs"] + int(partial),
            }
        return result
