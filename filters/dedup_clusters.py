"""The dedup stage's clustering phase: from the dedup index to duplicate clusters and per-document decisions.

Everything runs in DuckDB over the Parquet index, under the manifest's ``memory_limit``, spilling to
``stages/dedup/tmp/``; Python only sees bounded batches of candidate pairs. Memory does not grow with
the corpus beyond DuckDB's limit. Steps:

1. URL duplicates: among documents of this run with the same normalised URL, the latest fetch (then
   the smallest id) is kept; the others are removed as ``url_duplicate`` and take no further part.
2. Exact duplicates: documents with the same text key are joined to one hub of their group.
3. Near duplicates: documents sharing an LSH bucket (band, bucket hash) are joined to the bucket's hub,
   the member with the smallest id hash (a rule on ids, so the result does not depend on task count
   or file order). Each candidate pair is then checked: by the Jaccard estimate of the full
   signatures (default), by exact Jaccard of the shingle sets, or not at all; pairs below
   ``min_similarity`` are dropped.
4. Connected components of those pairs (label propagation with pointer jumping, in SQL).
5. The keeper of each component: a released document (``against``) first, then the highest
   ``prefer`` attribute, then the earliest crawl, the earliest fetch date, the smallest id. The others
   of this run are removed: ``exact_duplicate`` when their text key equals the keeper's, else
   ``near_duplicate``. Released documents are never removed; they are only compared against.
6. WARC revisit stubs (no payload of their own) are exact duplicates of the response with the payload
   digest they name, here or in a released index. When that response was dropped by an earlier stage
   of this run, the stub is ``revisit_of_rejected`` (detail: the dropped page's id); when it is
   nowhere, ``revisit_unresolved``.

A URL duplicate joins the final cluster of its URL's latest fetch (and follows it if that fetch is
itself removed), so every removed document's keeper is a document that survives.

Outputs: ``clusters/`` (one row per document of this run in a cluster of two or more: id, cluster_id
= the final keeper's id, kept, method, similarity to the keeper, cluster size counting this run's
documents and a released keeper) and ``decisions/decisions.parquet`` (file, row, reason, keeper,
dup_count; sorted by file and row) for the select phase.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.dedup import BANDS_SCHEMA, SHINGLES_SCHEMA, docs_schema, hasher_for, index_params, write_params
from winnow.filters.minhash import estimated_jaccard, exact_jaccard
from winnow.pipeline.manifest import DedupConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.stage_duckdb import copy_to_file, stage_duckdb

PAIR_BATCH = 65_536
RELEASED_KEY_BASE = 1 << 52  # keys of released documents: -(index * base + their own key) - 1
STEPS = 8


class AgainstIndexError(ValueError):
    """An ``against`` entry is not a usable dedup index (missing, or hashed with other parameters)."""


def find_index(path: str | Path) -> Path:
    """The dedup index folder of an earlier run: a run folder, its dedup stage folder, or the index itself."""
    path = Path(path)
    for candidate in (path / "stages" / "dedup" / "index", path / "index", path / "dedup_index", path):
        if (candidate / "docs").is_dir() and (candidate / "params.json").exists():
            return candidate
    raise AgainstIndexError(f"{path}: no dedup index found (looked for stages/dedup/index, index/, dedup_index/)")


def check_against(config: DedupConfig) -> list[Path]:
    """Resolve ``against`` entries to index folders, refusing indexes hashed with other parameters."""
    indexes = []
    wanted = index_params(config)
    for entry in config.against:
        index = find_index(entry)
        theirs = json.loads((index / "params.json").read_text())
        if theirs != wanted:
            raise AgainstIndexError(f"{entry}: its dedup index was built with {theirs}, this run uses {wanted}")
        indexes.append(index)
    return indexes


def partition_ranges(partitions: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges of a 64-bit hash splitting it into ``partitions`` equal parts (the last ends at 2**64).

    Every row of one LSH bucket (or one text key) falls into one range, so the hub of each bucket, and
    so every candidate pair, is the same for any partition count."""
    edges = [p * (1 << 64) // partitions for p in range(partitions + 1)]
    return list(pairwise(edges))


def _in_range(column: str, lo: int, hi: int, blob: bool = False) -> str:
    """SQL: ``column``'s first 64 bits in ``[lo, hi)``; a BLOB column compares by its first 8 bytes, big-endian."""

    def literal(value: int) -> str:
        if not blob:
            return str(value)
        return "'" + "".join(f"\\x{b:02X}" for b in value.to_bytes(8, "big")) + "'::BLOB"

    upper = f" AND {column} < {literal(hi)}" if hi < 1 << 64 else ""
    return f"{column} >= {literal(lo)}{upper}"


def _relation(con: duckdb.DuckDBPyConnection, folder: Path, schema: pa.Schema) -> str:
    """SQL for the Parquet dataset in ``folder``; an empty table of ``schema`` when it has no files."""
    if any(folder.glob("*.parquet")):
        return "read_parquet('" + str(folder / "*.parquet").replace("'", "''") + "')"
    name = f"empty_{abs(hash(str(folder)))}"
    con.register(name, schema.empty_table())
    return name


class DedupClusters(PipelineStep):
    """Phase 2 (one task): find clusters and write decisions (terminal step: yields nothing)."""

    name = "🕸️ dedup clusters"
    type = "DEDUP"

    def __init__(
        self, config: DedupConfig, layout: StageLayout, threads: int, upstream_outcomes: Sequence[Path] = ()
    ) -> None:
        """``upstream_outcomes``: rejects/errors folders of earlier stages (to explain revisits of dropped pages)."""
        super().__init__()
        self.config = config
        self.layout = layout
        self.threads = threads
        self.upstream_outcomes = [Path(p) for p in upstream_outcomes]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        stage_dir = self.layout.stage_dir
        progress = TaskProgress(self.layout.progress_dir, rank)
        with stage_duckdb(stage_dir, self.config.memory_limit, self.threads) as (con, _), self.track_time():
            self._cluster(con, progress)
        write_params(stage_dir / "index", self.config)
        progress.flush()
        return
        yield  # a generator that yields nothing

    # ------------------------------------------------------------------ the steps

    def _cluster(self, con: duckdb.DuckDBPyConnection, progress: TaskProgress) -> None:
        index = self.layout.stage_dir / "index"
        released = check_against(self.config)
        self._load_nodes(con, index, released)
        progress.advance(docs=1, units=1)
        if self.config.url:
            con.execute(
                """CREATE TABLE url_groups AS SELECT url_key FROM nodes
                   WHERE NOT released AND url_key IS NOT NULL AND revisit_of IS NULL
                   GROUP BY url_key HAVING count(*) > 1"""
            )
            con.execute(
                """CREATE TABLE url_removed AS SELECT key, keeper FROM (
                     SELECT key, first(key) OVER w AS keeper, row_number() OVER w AS rn
                     FROM nodes SEMI JOIN url_groups USING (url_key)
                     WHERE NOT released AND revisit_of IS NULL
                     WINDOW w AS (PARTITION BY url_key ORDER BY date DESC NULLS LAST, id, key))
                   WHERE rn > 1"""
            )
        else:
            con.execute("CREATE TABLE url_removed (key BIGINT, keeper BIGINT)")
        con.execute("CREATE TABLE edges (a BIGINT, b BIGINT)")
        progress.advance(docs=1, units=2)
        if self.config.exact:
            for lo, hi in partition_ranges(self.config.partitions):
                in_range = _in_range("text_key", lo, hi, blob=True)
                con.execute(
                    f"""CREATE OR REPLACE TABLE exact_groups AS SELECT text_key, min(key) AS hub FROM nodes
                        WHERE {in_range} AND key NOT IN (SELECT key FROM url_removed)
                        GROUP BY text_key HAVING count(*) > 1"""
                )
                con.execute(
                    """INSERT INTO edges SELECT n.key, g.hub FROM nodes n JOIN exact_groups g USING (text_key)
                       WHERE n.key <> g.hub AND n.key NOT IN (SELECT key FROM url_removed)"""
                )
        progress.advance(docs=1, units=3)
        if self.config.minhash.enabled:
            self._near_edges(con, index, released)
        progress.advance(docs=1, units=4)
        self._components(con)
        progress.advance(docs=1, units=5)
        self._keepers(con)
        progress.advance(docs=1, units=6)
        self._similarities(con, index, released)
        progress.advance(docs=1, units=7)
        self._write_outputs(con)
        progress.advance(docs=1, units=8)

    def _load_nodes(self, con: duckdb.DuckDBPyConnection, index: Path, released: list[Path]) -> None:
        """``nodes`` (this run's and released documents) and the ``sigs``/``bands`` views over all indexes."""
        columns = "key, idh, id, source, file, row, crawl, date, url_key, text_key, prefer, payload_digest, revisit_of"
        docs_schema_ = docs_schema(hasher_for(self.config).num_perm)
        own_docs = _relation(con, index / "docs", docs_schema_)
        con.execute(f"CREATE TABLE nodes AS SELECT {columns}, false AS released FROM {own_docs}")
        sigs = [f"SELECT key, sig FROM {own_docs}"]
        bands = [f"SELECT band, bucket, key, idh FROM {_relation(con, index / 'bands', BANDS_SCHEMA)}"]
        shingles = [f"SELECT key, shingles FROM {_relation(con, index / 'shingles', SHINGLES_SCHEMA)}"]
        for number, folder in enumerate(released):
            key = f"-({(number + 1) * RELEASED_KEY_BASE} + key) - 1"  # disjoint from this run's keys (>= 0)
            their_docs = _relation(con, folder / "docs", docs_schema_)
            docs = their_docs
            removed = folder.parent / "clusters"
            if any(removed.glob("*.parquet")):  # only what that run kept was released
                removed_ids = f"(SELECT id FROM {_relation(con, removed, pa.schema([]))} WHERE NOT kept)"
                docs = f"(SELECT * FROM {their_docs} ANTI JOIN {removed_ids} USING (id))"
            con.execute(
                f"""INSERT INTO nodes SELECT {key}, idh, id, source, NULL, NULL, crawl, date, NULL, text_key, NULL,
                    payload_digest, NULL, true FROM {docs} WHERE revisit_of IS NULL"""
            )
            sigs.append(f"SELECT {key} AS key, sig FROM {their_docs}")
            if (folder / "shingles").is_dir():
                shingles.append(
                    f"SELECT {key} AS key, shingles FROM {_relation(con, folder / 'shingles', SHINGLES_SCHEMA)}"
                )
            bands.append(
                f"""SELECT band, bucket, {key} AS key, idh FROM {_relation(con, folder / "bands", BANDS_SCHEMA)}
                    WHERE {key} IN (SELECT key FROM nodes WHERE released)"""
            )
        con.execute("CREATE VIEW sigs AS " + " UNION ALL ".join(sigs))
        con.execute("CREATE VIEW bands AS " + " UNION ALL ".join(bands))
        if self.config.minhash.verify == "exact":
            con.execute("CREATE VIEW shingle_sets AS " + " UNION ALL ".join(shingles))

    def _near_edges(self, con: duckdb.DuckDBPyConnection, index: Path, released: list[Path]) -> None:
        con.execute("CREATE TABLE candidates (a BIGINT, b BIGINT)")
        for lo, hi in partition_ranges(self.config.partitions):
            in_range = _in_range("bucket", lo, hi)
            con.execute(
                f"""CREATE OR REPLACE TABLE buckets AS SELECT band, bucket, arg_min(key, idh) AS hub
                    FROM bands WHERE {in_range} AND key NOT IN (SELECT key FROM url_removed)
                    GROUP BY band, bucket HAVING count(*) > 1"""
            )
            con.execute(
                f"""INSERT INTO candidates SELECT b.key AS a, k.hub AS b
                    FROM bands b JOIN buckets k USING (band, bucket)
                    WHERE {in_range} AND b.key <> k.hub AND NOT (b.key < 0 AND k.hub < 0)
                      AND b.key NOT IN (SELECT key FROM url_removed)"""
            )
        con.execute("CREATE OR REPLACE TABLE candidates AS SELECT DISTINCT a, b FROM candidates")
        verify = self.config.minhash.verify
        if verify == "none":
            con.execute("INSERT INTO edges SELECT a, b FROM candidates")
            return
        con.execute("CREATE TABLE near_edges (a BIGINT, b BIGINT)")
        if verify == "signature":
            query = """SELECT c.a, c.b, sa.sig AS sa, sb.sig AS sb FROM candidates c
                       JOIN sigs sa ON sa.key = c.a JOIN sigs sb ON sb.key = c.b"""
        else:
            query = """SELECT c.a, c.b, sa.shingles AS sa, sb.shingles AS sb FROM candidates c
                       JOIN shingle_sets sa ON sa.key = c.a JOIN shingle_sets sb ON sb.key = c.b"""
        writer = con.cursor()  # inserts go through a second connection while the first one streams
        for batch, similarity in self._pair_similarities(con, query, verify):
            passed = pa.array(similarity >= self.config.minhash.min_similarity)
            kept = pa.table({"a": batch.column("a").filter(passed), "b": batch.column("b").filter(passed)})
            writer.register("passed_batch", kept)
            writer.execute("INSERT INTO near_edges SELECT a, b FROM passed_batch")
            writer.unregister("passed_batch")
        writer.close()
        con.execute("INSERT INTO edges SELECT a, b FROM near_edges")

    def _pair_similarities(
        self, con: duckdb.DuckDBPyConnection, query: str, verify: str
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """Batches of (a, b, sa, sb) rows with the similarity of each pair (signature estimate or exact)."""
        for batch in con.sql(query).to_arrow_reader(PAIR_BATCH):
            if batch.num_rows == 0:
                continue
            if verify == "exact":
                left = batch.column("sa").to_pylist()
                right = batch.column("sb").to_pylist()
                similarity = np.array(
                    [exact_jaccard(np.array(x), np.array(y)) for x, y in zip(left, right, strict=True)]
                )
            else:
                left = batch.column("sa").flatten().to_numpy().reshape(batch.num_rows, -1)
                right = batch.column("sb").flatten().to_numpy().reshape(batch.num_rows, -1)
                similarity = estimated_jaccard(left, right)
            yield batch, similarity

    def _components(self, con: duckdb.DuckDBPyConnection) -> None:
        """``labels(n, l)``: every node with an edge and the smallest key of its connected component."""
        con.execute("CREATE TABLE adjacency AS SELECT a AS n, b AS m FROM edges UNION ALL SELECT b, a FROM edges")
        con.execute("CREATE TABLE labels AS SELECT n, least(n, min(m)) AS l FROM adjacency GROUP BY n")
        while True:
            con.execute(
                """CREATE OR REPLACE TABLE spread AS
                   SELECT a.n, least(min(nb.l), min(own.l)) AS l FROM adjacency a
                   JOIN labels nb ON nb.n = a.m JOIN labels own ON own.n = a.n GROUP BY a.n"""
            )
            con.execute(  # pointer jumping: adopt the label of your label
                """CREATE OR REPLACE TABLE jumped AS
                   SELECT s.n, least(s.l, t.l) AS l FROM spread s JOIN spread t ON t.n = s.l"""
            )
            (changed,) = con.execute(
                "SELECT count(*) FROM jumped j JOIN labels o USING (n) WHERE j.l <> o.l"
            ).fetchone()
            con.execute("CREATE OR REPLACE TABLE labels AS SELECT * FROM jumped")
            if changed == 0:
                break

    def _keepers(self, con: duckdb.DuckDBPyConnection) -> None:
        """``outcome``: every document of this run that is in a cluster, with its final keeper and reason."""
        con.execute(
            """CREATE TABLE members AS
               SELECT n.key, c.l AS comp, n.id, n.released, n.text_key,
                      row_number() OVER w AS rnk
               FROM labels c JOIN nodes n ON n.key = c.n
               WINDOW w AS (PARTITION BY c.l ORDER BY n.released DESC, n.prefer DESC NULLS LAST,
                            n.crawl ASC NULLS LAST, n.date ASC NULLS LAST, n.id, n.key)"""
        )
        con.execute(
            """CREATE TABLE keepers AS SELECT comp, key AS keeper_key, id AS keeper_id, text_key AS keeper_text
               FROM members WHERE rnk = 1"""
        )
        con.execute(
            """CREATE TABLE outcome AS
               SELECT m.key, k.keeper_key, k.keeper_id,
                      CASE WHEN m.rnk = 1 THEN NULL
                           WHEN m.text_key = k.keeper_text THEN 'exact_duplicate'
                           ELSE 'near_duplicate' END AS reason
               FROM members m JOIN keepers k USING (comp) WHERE NOT m.released"""
        )
        # revisit stubs name the payload of another document: here, or released
        con.execute(
            """CREATE TABLE stub_targets AS
               SELECT s.key, s.revisit_of, min(t.key) AS target FROM nodes s
               LEFT JOIN nodes t ON t.payload_digest = s.revisit_of AND t.revisit_of IS NULL
               WHERE s.revisit_of IS NOT NULL AND NOT s.released GROUP BY s.key, s.revisit_of"""
        )
        # URL keepers and revisit targets that are in no cluster of their own keep themselves
        con.execute(
            """INSERT INTO outcome SELECT n.key, n.key, n.id, NULL FROM nodes n
               WHERE NOT n.released
                 AND (n.key IN (SELECT keeper FROM url_removed) OR n.key IN (SELECT target FROM stub_targets))
                 AND n.key NOT IN (SELECT key FROM outcome) AND n.key NOT IN (SELECT key FROM url_removed)"""
        )
        # an older fetch follows its URL's latest fetch to that one's final keeper
        con.execute(
            """INSERT INTO outcome SELECT u.key, o.keeper_key, o.keeper_id, 'url_duplicate'
               FROM url_removed u JOIN outcome o ON o.key = u.keeper"""
        )
        con.execute(f"CREATE TABLE rejected_payloads AS {self._rejected_payloads(con)}")
        con.execute(
            """INSERT INTO outcome
               SELECT s.key, coalesce(o.keeper_key, s.target), coalesce(o.keeper_id, t.id, r.id),
                      CASE WHEN s.target IS NOT NULL THEN 'exact_duplicate'
                           WHEN r.id IS NOT NULL THEN 'revisit_of_rejected'
                           ELSE 'revisit_unresolved' END
               FROM stub_targets s
               LEFT JOIN nodes t ON t.key = s.target
               LEFT JOIN outcome o ON o.key = s.target
               LEFT JOIN rejected_payloads r ON r.payload_digest = s.revisit_of"""
        )
        # cluster size: the documents of this run that share a final keeper, plus a released keeper
        con.execute(
            """CREATE TABLE cluster_sizes AS
               SELECT keeper_key, count(*) + CASE WHEN keeper_key < 0 THEN 1 ELSE 0 END AS size FROM outcome
               WHERE reason IS NULL OR reason IN ('url_duplicate', 'exact_duplicate', 'near_duplicate')
               GROUP BY keeper_key"""
        )

    def _rejected_payloads(self, con: duckdb.DuckDBPyConnection) -> str:
        """SQL: (payload_digest, id) of pages an earlier stage of this run rejected or errored."""
        parts = []
        for folder in self.upstream_outcomes:
            if any(folder.glob("*.parquet")):
                relation = _relation(con, folder, pa.schema([]))
                parts.append(
                    f"SELECT json_extract_string(meta, '$.payload_digest') AS payload_digest, id FROM {relation}"
                )
        if not parts:
            return "SELECT NULL::VARCHAR AS payload_digest, NULL::VARCHAR AS id WHERE false"
        union = " UNION ALL ".join(parts)
        return f"SELECT payload_digest, min(id) AS id FROM ({union}) WHERE payload_digest IS NOT NULL GROUP BY 1"

    def _similarities(self, con: duckdb.DuckDBPyConnection, index: Path, released: list[Path]) -> None:
        """``similarity(key, value)`` to the keeper for every removed document (1.0 for exact and revisits)."""
        con.execute("CREATE TABLE similarity (key BIGINT, value DOUBLE)")
        query = """SELECT o.key AS a, o.keeper_key AS b, sa.sig AS sa, sb.sig AS sb FROM outcome o
                   JOIN sigs sa ON sa.key = o.key JOIN sigs sb ON sb.key = o.keeper_key
                   WHERE o.reason IN ('near_duplicate', 'url_duplicate')"""
        writer = con.cursor()
        for batch, value in self._pair_similarities(con, query, "signature"):
            writer.register("similarity_batch", pa.table({"key": batch.column("a"), "value": value}))
            writer.execute("INSERT INTO similarity SELECT key, value FROM similarity_batch")
            writer.unregister("similarity_batch")
        writer.close()

    def _write_outputs(self, con: duckdb.DuckDBPyConnection) -> None:
        stage_dir = self.layout.stage_dir
        clusters = """SELECT n.id, o.keeper_id AS cluster_id, o.reason IS NULL AS kept,
                   CASE WHEN o.reason IS NULL THEN NULL
                        WHEN o.reason = 'url_duplicate' THEN 'url'
                        WHEN o.reason = 'near_duplicate' THEN 'near'
                        WHEN n.revisit_of IS NOT NULL THEN 'revisit'
                        ELSE 'exact' END AS method,
                   CASE WHEN o.reason IS NULL OR o.reason = 'exact_duplicate' THEN 1.0 ELSE s.value END
                        AS similarity,
                   z.size AS cluster_size, n.source
                   FROM outcome o JOIN nodes n USING (key) JOIN cluster_sizes z USING (keeper_key)
                   LEFT JOIN similarity s USING (key)
                   WHERE z.size > 1 ORDER BY cluster_id, n.id"""
        copy_to_file(con, clusters, stage_dir / "clusters" / "part-00000-0000.parquet")
        decisions = """SELECT n.file, n.row, o.reason, o.keeper_id AS keeper, coalesce(z.size, 1) AS dup_count
                       FROM outcome o JOIN nodes n USING (key) LEFT JOIN cluster_sizes z USING (keeper_key)
                       ORDER BY n.file, n.row"""
        copy_to_file(con, decisions, stage_dir / "decisions" / "decisions.parquet")
