"""The dedup stage's clustering phase: from the partition tasks' pairs to duplicate clusters and decisions.

One task, in DuckDB under the manifest's ``memory_limit``, spilling to ``stages/dedup/tmp/``. Its input
is the pairs the ``urls`` and ``pairs`` tasks wrote (see :mod:`winnow.filters.dedup_pairs`) and the index
rows of the documents those pairs name, plus the WARC revisit stubs and the pages they point to: it is
bounded by the number of duplicates, not by the corpus (the index is only scanned, joined to that set).
Steps:

1. The documents involved: endpoints of the pairs, URL repeats and their keepers, revisit stubs and the
   responses with the payload digest they name (here or in a released index).
2. Connected components of the pairs (label propagation with pointer jumping, in SQL).
3. The keeper of each component: a released document (``against``) first, then the highest
   ``prefer`` attribute, then the earliest crawl, the earliest fetch date, the smallest id. The others
   of this run are removed: ``exact_duplicate`` when their text key equals the keeper's, else
   ``near_duplicate``. Released documents are never removed; they are only compared against.
4. WARC revisit stubs (no payload of their own) are exact duplicates of the response with the payload
   digest they name, here or in a released index. When that response was dropped by an earlier stage
   of this run, the stub is ``revisit_of_rejected`` (detail: the dropped page's id); when it is
   nowhere, ``revisit_unresolved``.
5. The similarity of each removed near or URL duplicate to its keeper (signature estimate).

A URL duplicate joins the final cluster of its URL's latest fetch (and follows it if that fetch is
itself removed), so every removed document's keeper is a document that survives.

Outputs: ``clusters/`` (one row per document of this run in a cluster of two or more: id, cluster_id
= the final keeper's id, kept, method, similarity to the keeper, cluster size counting this run's
documents and a released keeper) and ``decisions/decisions.parquet`` (file, row, reason, keeper,
dup_count; sorted by file and row) for the select phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.dedup_index import check_against, docs_schema, hasher_for, relation, released_key
from winnow.filters.dedup_pairs import pair_similarities, released_removed_ids
from winnow.pipeline.manifest import DedupConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.stage_duckdb import copy_to_file, stage_duckdb

STEPS = 5


class DedupClusters(PipelineStep):
    """Phase ``clusters`` (one task): clusters and decisions from the pairs (terminal step: yields nothing)."""

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
        progress.flush()
        return
        yield  # a generator that yields nothing

    # ------------------------------------------------------------------ the steps

    def _cluster(self, con: duckdb.DuckDBPyConnection, progress: TaskProgress) -> None:
        self._load_nodes(con, check_against(self.config))
        progress.advance(docs=1, units=1)
        self._components(con)
        progress.advance(docs=1, units=2)
        self._keepers(con)
        progress.advance(docs=1, units=3)
        self._similarities(con)
        progress.advance(docs=1, units=4)
        self._write_outputs(con)
        progress.advance(docs=1, units=5)

    def _load_nodes(self, con: duckdb.DuckDBPyConnection, released: list[Path]) -> None:
        """``edges``, ``url_removed`` and ``nodes``: the index rows of every document involved (this run's and
        released), and the view ``sigs`` over all indexes."""
        pairs = self.layout.stage_dir / "pairs"
        edges = relation(con, pairs / "edges", pa.schema([("a", pa.int64()), ("b", pa.int64())]))
        con.execute(f"CREATE TABLE edges AS SELECT a, b FROM {edges}")
        urls = relation(con, pairs / "url", pa.schema([("key", pa.int64()), ("keeper", pa.int64())]))
        con.execute(f"CREATE TABLE url_removed AS SELECT key, keeper FROM {urls}")
        con.execute(
            """CREATE TABLE involved AS SELECT a AS key FROM edges UNION SELECT b FROM edges
               UNION SELECT key FROM url_removed UNION SELECT keeper FROM url_removed"""
        )
        columns = "key, idh, id, source, file, row, crawl, date, url_key, text_key, prefer, payload_digest, revisit_of"
        schema = docs_schema(hasher_for(self.config).num_perm)
        own_docs = relation(con, self.layout.stage_dir / "index" / "docs", schema)
        con.execute(f"CREATE TABLE stubs AS SELECT DISTINCT revisit_of FROM {own_docs} WHERE revisit_of IS NOT NULL")
        con.execute(
            f"""CREATE TABLE nodes AS SELECT {columns}, false AS released FROM {own_docs}
                WHERE key IN (SELECT key FROM involved) OR revisit_of IS NOT NULL
                   OR payload_digest IN (SELECT revisit_of FROM stubs)"""
        )
        sigs = [f"SELECT key, sig::UINTEGER[] AS sig FROM {own_docs}"]
        for number, folder in enumerate(released):
            key = released_key(number)
            their_docs = relation(con, folder / "docs", schema)
            removed = released_removed_ids(con, folder)
            kept = f" AND id NOT IN {removed}" if removed else ""
            con.execute(
                f"""INSERT INTO nodes SELECT {key}, idh, id, source, NULL, NULL, crawl, date, NULL, text_key, NULL,
                    payload_digest, NULL, true FROM {their_docs}
                    WHERE revisit_of IS NULL{kept}
                      AND ({key} IN (SELECT key FROM involved) OR payload_digest IN (SELECT revisit_of FROM stubs))"""
            )
            sigs.append(f"SELECT {key} AS key, sig::UINTEGER[] AS sig FROM {their_docs}")
        con.execute("CREATE VIEW sigs AS " + " UNION ALL ".join(sigs))

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
        """SQL: (payload_digest, id) of pages an earlier stage of this run rejected or errored that a revisit stub
        names (a scan of those outcomes, keeping only the stubs' digests)."""
        parts = []
        for folder in self.upstream_outcomes:
            if any(folder.glob("*.parquet")):
                outcomes = relation(con, folder, pa.schema([]))
                parts.append(
                    f"SELECT json_extract_string(meta, '$.payload_digest') AS payload_digest, id FROM {outcomes}"
                )
        if not parts:
            return "SELECT NULL::VARCHAR AS payload_digest, NULL::VARCHAR AS id WHERE false"
        union = " UNION ALL ".join(parts)
        return f"""SELECT payload_digest, min(id) AS id FROM ({union})
                   WHERE payload_digest IN (SELECT revisit_of FROM stubs) GROUP BY 1"""

    def _similarities(self, con: duckdb.DuckDBPyConnection) -> None:
        """``similarity(key, value)`` to the keeper for every removed near or URL duplicate (the others: 1.0)."""
        con.execute(
            """CREATE TABLE measured AS SELECT key, keeper_key FROM outcome
               WHERE reason IN ('near_duplicate', 'url_duplicate')"""
        )
        con.execute(
            """CREATE TABLE measured_sigs AS SELECT key, sig FROM sigs
               WHERE key IN (SELECT key FROM measured UNION SELECT keeper_key FROM measured)"""
        )
        con.execute("CREATE TABLE similarity (key BIGINT, value DOUBLE)")
        query = """SELECT m.key AS a, m.keeper_key AS b, sa.sig AS sa, sb.sig AS sb FROM measured m
                   JOIN measured_sigs sa ON sa.key = m.key JOIN measured_sigs sb ON sb.key = m.keeper_key"""
        writer = con.cursor()
        for batch, value in pair_similarities(con, query, "signature"):
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
