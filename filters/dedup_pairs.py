"""The dedup stage's partition tasks: URL repeats, then exact and near-duplicate pairs, one hash range per task.

Task ``p`` of each phase reads only partition ``p`` of the dedup index (see
:mod:`winnow.filters.dedup_index`) and works in DuckDB under ``memory_limit``, spilling to its own
folder, so a task holds at most one partition's groups, however large the corpus and however many
partitions run at once.

- ``urls`` (:class:`DedupUrls`): among this run's documents with the same normalised URL, the latest
  fetch (then the smallest id, then key) is kept; the others are written to ``pairs/url/`` as
  (key, keeper) and take no further part.
- ``pairs`` (:class:`DedupPairs`), after every ``urls`` task: documents with the same text key are joined
  to one hub of their group (the smallest key); documents sharing an LSH bucket (band, bucket hash) to
  the bucket's hub, the member with the smallest id hash (a rule on ids, so the result depends on
  neither task count nor file order). Released documents (``against``) take part with their keys mapped
  below zero; two released documents are never paired by a bucket. Each near candidate pair is checked
  (the Jaccard estimate of the signatures, the exact Jaccard of the shingle sets, or not at all) and kept
  when at least ``min_similarity``; the signatures needed are gathered by one streaming pass over
  ``docs/`` joined to the partition's candidates. Written to ``pairs/edges/`` as (a, b).

A pair can be found in more than one partition (two documents sharing buckets of several bands); the
clusters phase, whose input is these pairs, does not mind repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.dedup_index import (
    BANDS_SCHEMA,
    SHINGLES_SCHEMA,
    TEXTS_SCHEMA,
    URLS_SCHEMA,
    check_against,
    docs_schema,
    hasher_for,
    in_range,
    partition_file_prefix,
    partition_ranges,
    partition_relation,
    relation,
    released_key,
)
from winnow.filters.minhash import estimated_jaccard, exact_jaccard
from winnow.pipeline.manifest import DedupConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.stage_duckdb import copy_to_file, stage_duckdb

PAIR_BATCH = 65_536


def pair_similarities(
    con: duckdb.DuckDBPyConnection, query: str, verify: str
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Batches of a query's (a, b, sa, sb) rows with each pair's similarity: the signatures' Jaccard estimate
    (``sa``/``sb`` signatures) or, for ``verify == "exact"``, the exact Jaccard of shingle sets."""
    for batch in con.sql(query).to_arrow_reader(PAIR_BATCH):
        if batch.num_rows == 0:
            continue
        if verify == "exact":
            left = batch.column("sa").to_pylist()
            right = batch.column("sb").to_pylist()
            similarity = np.array([exact_jaccard(np.array(x), np.array(y)) for x, y in zip(left, right, strict=True)])
        else:
            left = batch.column("sa").flatten().to_numpy().reshape(batch.num_rows, -1)
            right = batch.column("sb").flatten().to_numpy().reshape(batch.num_rows, -1)
            similarity = estimated_jaccard(left, right)
        yield batch, similarity


def released_removed_ids(con: duckdb.DuckDBPyConnection, index: Path) -> str | None:
    """SQL: ids a released run removed as duplicates (only what it kept was released); None when it removed none."""
    removed = index.parent / "clusters"
    if not any(removed.glob("*.parquet")):
        return None
    return f"(SELECT id FROM {relation(con, removed, pa.schema([]))} WHERE NOT kept)"


class PartitionTask(PipelineStep):
    """Base of the partition phases: task ``rank`` works on partition ``rank`` (terminal: yields nothing)."""

    type = "DEDUP"
    phase = ""

    def __init__(self, config: DedupConfig, layout: StageLayout, threads: int) -> None:
        super().__init__()
        self.config = config
        self.layout = layout
        self.threads = threads

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        progress = TaskProgress(self.layout.progress_dir, rank)
        task = f"{self.phase}-{rank:05d}"
        stage_dir, memory = self.layout.stage_dir, self.config.memory_limit
        with stage_duckdb(stage_dir, memory, self.threads, task) as (con, _), self.track_time():
            self.work(con, rank)
        progress.advance(docs=1, units=1)
        progress.flush()
        return
        yield  # a generator that yields nothing

    def work(self, con: duckdb.DuckDBPyConnection, partition: int) -> None:
        """Find this partition's pairs and write them."""
        raise NotImplementedError

    @property
    def index(self) -> Path:
        return self.layout.stage_dir / "index"

    def output(self, folder: str, partition: int) -> Path:
        return self.layout.stage_dir / "pairs" / folder / f"{partition_file_prefix(partition)}.parquet"


class DedupUrls(PartitionTask):
    """Phase ``urls``: the older fetches of each URL of this partition, with the fetch that replaces them."""

    name = "🔗 dedup urls"
    phase = "urls"

    def work(self, con: duckdb.DuckDBPyConnection, partition: int) -> None:
        urls = partition_relation(con, self.index / "urls", URLS_SCHEMA, partition, self.config.partitions, "url_key")
        query = f"""SELECT key, keeper FROM (
                      SELECT key, first(key) OVER w AS keeper, row_number() OVER w AS rn FROM {urls}
                      WHERE url_key IN (SELECT url_key FROM {urls} GROUP BY url_key HAVING count(*) > 1)
                      WINDOW w AS (PARTITION BY url_key ORDER BY date DESC NULLS LAST, id, key))
                    WHERE rn > 1 ORDER BY key"""
        output = self.output("url", partition)
        copy_to_file(con, query, output)
        self.stat_update("url_removed", value=pq.read_metadata(output).num_rows)


class DedupPairs(PartitionTask):
    """Phase ``pairs``: exact-duplicate and verified near-duplicate pairs of this partition's text keys and buckets."""

    name = "🧩 dedup pairs"
    phase = "pairs"

    def work(self, con: duckdb.DuckDBPyConnection, partition: int) -> None:
        released = check_against(self.config)
        url_removed = relation(con, self.layout.stage_dir / "pairs" / "url", pa.schema([("key", pa.int64())]))
        con.execute(f"CREATE TABLE url_removed AS SELECT key FROM {url_removed}")
        self._released_views(con, released)
        con.execute("CREATE TABLE edges (a BIGINT, b BIGINT)")
        if self.config.exact:
            self._exact_edges(con, partition, released)
        if self.config.minhash.enabled:
            self._near_edges(con, partition, released)
        copy_to_file(con, "SELECT a, b FROM edges ORDER BY a, b", self.output("edges", partition))
        self.stat_update("pairs", value=int(con.execute("SELECT count(*) FROM edges").fetchone()[0]))

    def _released_views(self, con: duckdb.DuckDBPyConnection, released: list[Path]) -> None:
        """View ``released_docs`` (key, text_key, sig) of the documents the released runs kept, keys mapped below
        zero, and table ``released_removed`` (key) of those they removed (bounded by their duplicates)."""
        docs_schema_ = docs_schema(hasher_for(self.config).num_perm)
        parts = ["SELECT NULL::BIGINT AS key, NULL::BLOB AS text_key, NULL::UINTEGER[] AS sig WHERE false"]
        removed_parts = ["SELECT NULL::BIGINT AS key WHERE false"]
        for number, index in enumerate(released):
            docs = relation(con, index / "docs", docs_schema_)
            removed = released_removed_ids(con, index)
            kept = f" AND id NOT IN {removed}" if removed else ""
            parts.append(
                f"SELECT {released_key(number)} AS key, text_key, sig::UINTEGER[] AS sig FROM {docs} "
                f"WHERE revisit_of IS NULL{kept}"
            )
            if removed:
                removed_parts.append(f"SELECT {released_key(number)} AS key FROM {docs} WHERE id IN {removed}")
        con.execute("CREATE VIEW released_docs AS " + " UNION ALL ".join(parts))
        con.execute("CREATE TABLE released_removed AS " + " UNION ALL ".join(removed_parts))

    def _exact_edges(self, con: duckdb.DuckDBPyConnection, partition: int, released: list[Path]) -> None:
        own = partition_relation(con, self.index / "texts", TEXTS_SCHEMA, partition, self.config.partitions, "text_key")
        lo, hi = partition_ranges(self.config.partitions)[partition]
        con.execute(
            f"""CREATE TABLE texts AS
                SELECT key, text_key FROM {own} WHERE key NOT IN (SELECT key FROM url_removed)
                UNION ALL
                SELECT key, text_key FROM released_docs
                WHERE text_key IS NOT NULL AND {in_range("text_key", lo, hi, blob=True)}"""
        )
        con.execute(
            """INSERT INTO edges SELECT t.key, g.hub FROM texts t
               JOIN (SELECT text_key, min(key) AS hub FROM texts GROUP BY text_key HAVING count(*) > 1) g
               USING (text_key) WHERE t.key <> g.hub"""
        )

    def _near_edges(self, con: duckdb.DuckDBPyConnection, partition: int, released: list[Path]) -> None:
        own = partition_relation(con, self.index / "bands", BANDS_SCHEMA, partition, self.config.partitions, "bucket")
        bands = [f"SELECT band, bucket, key, idh FROM {own} WHERE key NOT IN (SELECT key FROM url_removed)"]
        for number, index in enumerate(released):
            theirs = partition_relation(con, index / "bands", BANDS_SCHEMA, partition, self.config.partitions, "bucket")
            key = released_key(number)
            bands.append(  # a released index's bands hold only documents with a text (never revisit stubs)
                f"SELECT band, bucket, {key} AS key, idh FROM {theirs} "
                f"WHERE {key} NOT IN (SELECT key FROM released_removed)"
            )
        con.execute("CREATE TABLE bands AS " + " UNION ALL ".join(bands))
        con.execute(
            """CREATE TABLE candidates AS SELECT DISTINCT b.key AS a, k.hub AS b FROM bands b
               JOIN (SELECT band, bucket, arg_min(key, idh) AS hub FROM bands
                     GROUP BY band, bucket HAVING count(*) > 1) k USING (band, bucket)
               WHERE b.key <> k.hub AND NOT (b.key < 0 AND k.hub < 0)"""
        )
        verify = self.config.minhash.verify
        if verify == "none":
            con.execute("INSERT INTO edges SELECT a, b FROM candidates")
            return
        con.execute("CREATE TABLE wanted AS SELECT a AS key FROM candidates UNION SELECT b FROM candidates")
        self._gather(con, verify)
        query = """SELECT c.a, c.b, sa.value AS sa, sb.value AS sb FROM candidates c
                   JOIN gathered sa ON sa.key = c.a JOIN gathered sb ON sb.key = c.b"""
        writer = con.cursor()  # inserts go through a second connection while the first one streams
        for batch, similarity in pair_similarities(con, query, verify):
            passed = pa.array(similarity >= self.config.minhash.min_similarity)
            kept = pa.table({"a": batch.column("a").filter(passed), "b": batch.column("b").filter(passed)})
            writer.register("passed_batch", kept)
            writer.execute("INSERT INTO edges SELECT a, b FROM passed_batch")
            writer.unregister("passed_batch")
        writer.close()

    def _gather(self, con: duckdb.DuckDBPyConnection, verify: str) -> None:
        """``gathered(key, value)``: the signature (or shingle set) of every candidate, in one pass over the index."""
        if verify == "signature":
            docs = relation(con, self.index / "docs", docs_schema(hasher_for(self.config).num_perm))
            con.execute(
                f"""CREATE TABLE gathered AS
                    SELECT key, sig::UINTEGER[] AS value FROM {docs} WHERE key IN (SELECT key FROM wanted)
                    UNION ALL
                    SELECT key, sig FROM released_docs WHERE key < 0 AND key IN (SELECT key FROM wanted)"""
            )
            return
        parts = [f"SELECT key, shingles FROM {relation(con, self.index / 'shingles', SHINGLES_SCHEMA)}"]
        for number, index in enumerate(check_against(self.config)):
            if (index / "shingles").is_dir():
                theirs = relation(con, index / "shingles", SHINGLES_SCHEMA)
                parts.append(f"SELECT {released_key(number)} AS key, shingles FROM {theirs}")
        union = " UNION ALL ".join(parts)
        con.execute(
            f"""CREATE TABLE gathered AS SELECT key, shingles AS value FROM ({union})
                WHERE key IN (SELECT key FROM wanted)"""
        )
