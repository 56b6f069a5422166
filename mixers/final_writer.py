"""The final corpus: documents sampled to the proposed weights and token budget, shuffled, in fixed-size shards.

Phase ``final`` (one task, DuckDB, out of core) gives each mixed source a quota of
``weight × token_budget`` tokens and fills it from the source's ``train`` documents: whole epochs of all
documents while the quota allows (never more than ``max_epochs``, which the weights' caps guarantee),
then the remainder from the documents in a seeded pseudo-random order, so a source's tokens land
within one document of its quota. Every copy is placed by a seeded hash of (id, copy), which is a
global shuffle, and the rows are cut into ``final/part-NNNNN.parquet`` shards of ``shard_rows`` rows.
Rows carry every column of the mix stage plus ``mix_copy`` (0 for a document's first copy).

``final/_manifest.json`` records the weights, quotas and tokens written per source, rows and tokens
per source per shard, each shard's SHA-256, and the swarm and regression that chose the weights. The
whole folder is built under a temporary name and swapped in, so readers see the old or the new
corpus, never a mix. The same inputs and seed give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb

from winnow.mixers.corpus import read_summary
from winnow.mixers.fit import fit_dir
from winnow.mixers.phase import OneTaskStep
from winnow.mixers.tokens import file_sha256
from winnow.pipeline.json_records import write_json
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.stage_duckdb import stage_duckdb


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def publish(staging: Path, final: Path) -> None:
    """Swap ``staging`` in as ``final`` (the old folder is removed only after the new one is in place)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


class WriteFinal(OneTaskStep):
    """Phase ``final`` (one task): sample, shuffle and shard the final corpus; write ``_manifest.json``."""

    name = "📦 final shards"

    def work(self, progress: TaskProgress) -> None:
        report = json.loads((fit_dir(self.layout) / "report.json").read_text())
        summary = read_summary(self.layout)
        weights: dict[str, float] = report["weights"]["proposed"]
        final = self.layout.run_dir / "final"
        staging = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        settings = self.config.final
        files = sorted(self.layout.dataset_dir("data").glob("*.parquet"))
        listing = ", ".join(_quoted(f) for f in files)
        documents = f"read_parquet([{listing}], union_by_name = true, filename = true, file_row_number = true)"
        with stage_duckdb(self.layout.stage_dir, settings.memory_limit, self.threads) as (con, _):
            self._select(con, documents, weights)
            shards = self._write_shards(con, documents, staging, progress)
            per_source = self._per_source(con, weights)
        manifest = {
            "token_budget": self.config.token_budget,
            "seed": settings.seed,
            "shard_rows": settings.shard_rows,
            "rows": sum(s["rows"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "weights": weights,
            "sources": per_source,
            "shards": shards,
            "tokenizer_sha256": summary["tokenizer_sha256"],
            "swarm": {"runs": report["runs"], "failed_runs": report["failed_runs"]},
            "regression": {"chosen": report["chosen"], "models": report["models"], "folds": report["folds"]},
            "predicted_loss": report["predicted_loss"]["proposed"],
            "objective": report["objective"],
        }
        write_json(staging / "_manifest.json", manifest)
        publish(staging, final)

    def _select(self, con: duckdb.DuckDBPyConnection, documents: str, weights: dict[str, float]) -> None:
        """Table ``picks``: (file, row, copy, position) of every row of the final corpus.

        Per source: ``epochs`` whole copies of every train document, then the remainder of the quota
        from one more copy, filled in two passes over the documents in seeded order: the longest prefix
        that fits, then, into the gap left, the following documents short enough to fit in it.
        """
        seed = str(self.config.final.seed)
        con.execute("CREATE TABLE quota (source VARCHAR, quota DOUBLE)")
        con.executemany(
            "INSERT INTO quota VALUES (?, ?)", [[s, w * self.config.token_budget] for s, w in weights.items()]
        )
        con.execute(
            f"""CREATE TABLE pool AS
                SELECT filename, file_row_number, id, source, tokens,
                       sum(tokens) OVER (PARTITION BY source ORDER BY md5(id || ':' || ?), id
                                         ROWS UNBOUNDED PRECEDING) AS cum
                FROM {documents} WHERE mix_split = 'train' AND tokens > 0""",
            [seed],
        )
        con.execute(
            """CREATE TABLE fill AS
               WITH plan AS (
                   SELECT source, floor(quota / total)::BIGINT AS epochs, quota - floor(quota / total) * total AS rest
                   FROM quota JOIN (SELECT source, sum(tokens) AS total FROM pool GROUP BY source) USING (source)
               )
               SELECT source, epochs, rest, rest - coalesce(sum(tokens) FILTER (WHERE cum <= rest), 0) AS gap
               FROM plan JOIN pool USING (source) GROUP BY source, epochs, rest"""
        )
        con.execute(
            """CREATE TABLE partial AS
               SELECT filename, file_row_number FROM pool JOIN fill USING (source) WHERE cum <= rest
               UNION ALL
               SELECT filename, file_row_number FROM (
                   SELECT pool.*, gap, sum(tokens) OVER (PARTITION BY source ORDER BY cum ROWS UNBOUNDED PRECEDING)
                       AS filled
                   FROM pool JOIN fill USING (source) WHERE cum > rest AND tokens <= gap
               ) WHERE filled <= gap"""
        )
        con.execute(
            """CREATE TABLE picks AS
               WITH copies AS (
                   SELECT pool.*, unnest(range(0, epochs)) AS copy FROM pool JOIN fill USING (source)
                   UNION ALL
                   SELECT pool.*, epochs AS copy FROM pool JOIN fill USING (source)
                   SEMI JOIN partial USING (filename, file_row_number)
               )
               SELECT filename, file_row_number, source, tokens, copy,
                      row_number() OVER (ORDER BY md5(id || ':' || copy || ':' || ?), id, copy) - 1 AS position
               FROM copies""",
            [seed],
        )

    def _write_shards(
        self, con: duckdb.DuckDBPyConnection, documents: str, staging: Path, progress: TaskProgress
    ) -> list[dict[str, Any]]:
        rows = int(con.execute("SELECT count(*) FROM picks").fetchone()[0])
        size = self.config.final.shard_rows
        con.execute(
            f"""
            CREATE TABLE final_rows AS
            SELECT d.* EXCLUDE (filename, file_row_number), p.copy AS mix_copy, p.position
            FROM picks p JOIN {documents} d USING (filename, file_row_number)
            ORDER BY p.position
            """
        )
        counts = con.execute(
            f"SELECT position // {size} AS shard, source, count(*), sum(tokens) FROM picks GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        shards: list[dict[str, Any]] = []
        for number in range((rows + size - 1) // size):
            path = staging / f"part-{number:05d}.parquet"
            con.execute(
                f"""COPY (SELECT * EXCLUDE (position) FROM final_rows
                          WHERE position >= {number * size} AND position < {(number + 1) * size} ORDER BY position)
                    TO {_quoted(path)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"""
            )
            sources = {s: {"rows": int(n), "tokens": int(t)} for shard, s, n, t in counts if shard == number}
            shards.append(
                {
                    "path": path.name,
                    "rows": sum(v["rows"] for v in sources.values()),
                    "tokens": sum(v["tokens"] for v in sources.values()),
                    "sha256": file_sha256(path),
                    "sources": sources,
                }
            )
            progress.advance(docs=shards[-1]["rows"])
        return shards

    def _per_source(self, con: duckdb.DuckDBPyConnection, weights: dict[str, float]) -> dict[str, Any]:
        written = {
            source: (int(rows), int(distinct), int(tokens), int(copies))
            for source, rows, distinct, tokens, copies in con.execute(
                "SELECT source, count(*), count(DISTINCT (filename, file_row_number)), sum(tokens), max(copy) + 1 "
                "FROM picks GROUP BY source"
            ).fetchall()
        }
        available = dict(con.execute("SELECT source, sum(tokens) FROM pool GROUP BY source").fetchall())
        return {
            source: {
                "weight": weight,
                "quota_tokens": round(weight * self.config.token_budget),
                "tokens": written.get(source, (0, 0, 0, 0))[2],
                "rows": written.get(source, (0, 0, 0, 0))[0],
                "distinct_documents": written.get(source, (0, 0, 0, 0))[1],
                "available_tokens": int(available.get(source) or 0),
                "epochs": written.get(source, (0, 0, 0, 0))[3],
            }
            for source, weight in weights.items()
        }
