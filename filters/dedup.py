"""The dedup stage's per-document steps: hash every document into the dedup index, then apply the decisions.

The stage runs in five phases (see :mod:`winnow.pipeline.stages`):

1. ``signatures`` (all tasks): :class:`DedupSignatures` writes the dedup index (see
   :mod:`winnow.filters.dedup_index`): per document one row of ``index/docs/``, and its LSH band, text
   key and URL rows into the hash-range partitions of ``bands/``, ``texts/`` and ``urls/``. Nothing is
   held in memory beyond a batch.
2. ``urls`` and 3. ``pairs`` (one task per partition): :mod:`winnow.filters.dedup_pairs` finds URL
   repeats, then exact and verified near-duplicate pairs, in that partition only.
4. ``clusters`` (one task over the pairs): :mod:`winnow.filters.dedup_clusters` joins the pairs into
   clusters, picks keepers and writes ``clusters/`` and ``decisions/``.
5. ``select`` (all tasks): :class:`DedupSelect` reads the documents again in the same order and, using
   the decisions for each input file, writes removed documents to ``rejects/`` (reason
   ``url_duplicate``, ``exact_duplicate``, ``near_duplicate``, ``revisit_of_rejected`` or
   ``revisit_unresolved``, detail = the keeper's id) and passes the others on with a ``dup_count``
   attribute.

Documents are addressed by their position (input file index, row index), which the reader assigns
the same way in phases 1 and 5. Internal integer keys are ``file << 32 | row``.
"""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.dedup_index import (
    BANDS_SCHEMA,
    PARTITIONED,
    SHINGLES_SCHEMA,
    TEXTS_SCHEMA,
    URLS_SCHEMA,
    docs_schema,
    hasher_for,
    partition_file_prefix,
    partition_of,
    write_params,
)
from winnow.filters.dedup_keys import text_key_of_tokens, url_key
from winnow.filters.minhash import MinHasher, tokens
from winnow.pipeline.manifest import DedupConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.parquet_sink import ParquetSink, remove_rank_files

BATCH_DOCS = 1024
INDEX_TARGET_BYTES = 256 * 1024 * 1024


def id_hash(doc_id: str) -> int:
    """64-bit hash of a document id: the deterministic tie-break of LSH bucket hubs."""
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8", "surrogatepass"))


class DedupSignatures(PipelineStep):
    """Phase 1: index rows for every document (terminal step: yields nothing)."""

    name = "🔑 dedup signatures"
    type = "DEDUP"

    def __init__(self, config: DedupConfig, layout: StageLayout) -> None:
        super().__init__()
        self.config = config
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        hasher = hasher_for(self.config)
        index = self.layout.stage_dir / "index"
        for folder in ("docs", "shingles", *PARTITIONED):
            remove_rank_files(index / folder, rank)
        write_params(index, self.config, rank)
        sinks = {"docs": ParquetSink(index / "docs", "part", docs_schema(hasher.num_perm), rank, INDEX_TARGET_BYTES)}
        if self.config.minhash.verify == "exact":
            sinks["shingles"] = ParquetSink(index / "shingles", "part", SHINGLES_SCHEMA, rank, INDEX_TARGET_BYTES)
        partitioned = {
            (folder, p): ParquetSink(index / folder, partition_file_prefix(p), schema, rank, INDEX_TARGET_BYTES)
            for folder, schema in zip(PARTITIONED, (BANDS_SCHEMA, TEXTS_SCHEMA, URLS_SCHEMA), strict=True)
            for p in range(self.config.partitions)
        }
        with contextlib.ExitStack() as stack:
            for sink in (*sinks.values(), *partitioned.values()):
                stack.enter_context(sink)
            batch: list[Document] = []
            for doc in data or ():
                batch.append(doc)
                if len(batch) >= BATCH_DOCS:
                    self._write(batch, hasher, sinks, partitioned)
                    batch = []
            if batch:
                self._write(batch, hasher, sinks, partitioned)
        return
        yield  # a generator that yields nothing: the phase ends here

    def _write(
        self,
        batch: list[Document],
        hasher: MinHasher,
        sinks: dict[str, ParquetSink],
        partitioned: dict[tuple[str, int], ParquetSink],
    ) -> None:
        with self.track_time("batch"):
            token_lists = [[] if _revisit_of(d) else tokens(d.text) for d in batch]
            shingles = [hasher.shingle_hashes(hasher.hash_tokens(t)) for t in token_lists]
            signatures, has_sig = hasher.signatures_of_shingles(shingles)
            keys = np.array([(d.metadata["position"][0] << 32) | d.metadata["position"][1] for d in batch], np.int64)
            id_hashes = np.array([id_hash(d.id) for d in batch], dtype=np.uint64)
            meta = [d.metadata.get("meta") or {} for d in batch]
            prefer = self.config.prefer
            columns = {
                "key": keys,
                "idh": id_hashes,
                "id": [d.id for d in batch],
                "source": [d.metadata.get("source") for d in batch],
                "file": [d.metadata["position"][0] for d in batch],
                "row": [d.metadata["position"][1] for d in batch],
                "crawl": [d.metadata.get("crawl") for d in batch],
                "date": [_text(m.get("date")) for m in meta],
                "url_key": [url_key(d.metadata.get("url")) for d in batch],
                "text_key": [text_key_of_tokens(t) for t in token_lists],
                "prefer": [
                    _number((d.metadata.get("attributes") or {}).get(prefer)) if prefer else None for d in batch
                ],
                "payload_digest": [_text(m.get("payload_digest")) for m in meta],
                "revisit_of": [_revisit_of(d) for d in batch],
                "sig": _signature_column(signatures, has_sig),
            }
            docs = pa.table(columns, schema=sinks["docs"].schema)
            sinks["docs"].write_table(docs)
            rows = np.flatnonzero(has_sig)
            if len(rows) and "shingles" in sinks:
                distinct = [np.unique(shingles[i]) for i in rows]
                sinks["shingles"].write_table(
                    pa.table({"key": keys[rows], "shingles": distinct}, schema=SHINGLES_SCHEMA)
                )
            if len(rows):
                bands = hasher.band_keys(signatures[rows]).reshape(-1)
                band_table = pa.table(
                    {
                        "band": np.tile(np.arange(hasher.bands, dtype=np.int16), len(rows)),
                        "bucket": bands,
                        "key": np.repeat(keys[rows], hasher.bands),
                        "idh": np.repeat(id_hashes[rows], hasher.bands),
                    },
                    schema=BANDS_SCHEMA,
                )
                self._scatter(partitioned, "bands", band_table, bands)
            self._write_keys(docs, partitioned)
        self.stat_update("indexed", value=len(batch))
        self.stat_update("no_signature", value=int(len(batch) - has_sig.sum()))

    def _write_keys(self, docs: pa.Table, partitioned: dict[tuple[str, int], ParquetSink]) -> None:
        """The text-key and URL rows of a batch, each into the partition of its hash."""
        texts = docs.select(["key", "text_key"]).filter(pc.is_valid(docs.column("text_key")))
        if len(texts):
            first8 = [int.from_bytes(k[:8], "big") for k in texts.column("text_key").to_pylist()]
            self._scatter(partitioned, "texts", texts, np.array(first8, dtype=np.uint64))
        has_url = pc.and_(pc.is_valid(docs.column("url_key")), pc.is_null(docs.column("revisit_of")))
        urls = docs.select(["key", "url_key", "date", "id"]).filter(has_url)
        if len(urls):
            hashes = [
                xxhash.xxh64_intdigest(u.encode("utf-8", "surrogatepass")) for u in urls.column("url_key").to_pylist()
            ]
            self._scatter(partitioned, "urls", urls, np.array(hashes, dtype=np.uint64))

    def _scatter(
        self, partitioned: dict[tuple[str, int], ParquetSink], folder: str, table: pa.Table, hashes: np.ndarray
    ) -> None:
        """Rows of ``table`` to the partitions of ``hashes`` (one uint64 per row)."""
        parts = partition_of(hashes, self.config.partitions)
        for p in np.unique(parts):
            partitioned[(folder, int(p))].write_table(table.filter(pa.array(parts == p)))


def _revisit_of(doc: Document) -> str | None:
    """The payload digest a WARC revisit stub refers to (None for ordinary documents)."""
    revisit = (doc.metadata.get("meta") or {}).get("revisit")
    return _text(revisit.get("payload_digest")) if isinstance(revisit, dict) else None


def _text(value: Any) -> str | None:
    """A string index column from a ``meta`` value of any JSON/Parquet type (a source's ``date`` may be a
    timestamp or a number): dates and datetimes in ISO format, other values as ``str``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _signature_column(signatures: np.ndarray, has_sig: np.ndarray) -> pa.Array:
    """Signatures as a fixed-size list column; null where the document has no signature."""
    values = pa.array(signatures.reshape(-1), type=pa.uint32())
    mask = None if has_sig.all() else pa.array(~has_sig)
    return pa.FixedSizeListArray.from_arrays(values, signatures.shape[1], mask=mask)


class DedupSelect(PipelineStep):
    """Phase 3: remove the documents the clusters phase decided against; annotate the rest with ``dup_count``."""

    name = "✂️ dedup select"
    type = "DEDUP"

    def __init__(self, layout: StageLayout) -> None:
        super().__init__()
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        decisions_path = self.layout.stage_dir / "decisions" / "decisions.parquet"
        current_file = -1
        decisions: dict[int, tuple[str | None, str | None, int]] = {}
        with OutcomeWriter(self.layout, "dedup") as rejects:
            for doc in data or ():
                file, row = doc.metadata["position"]
                if file != current_file:
                    current_file, decisions = file, load_decisions(decisions_path, file)
                reason, keeper, dup_count = decisions.get(row, (None, None, 1))
                if reason is not None:
                    self.stat_update(reason)
                    rejects.write(doc, rank, reason=reason, detail=keeper)
                    continue
                doc.metadata.setdefault("attributes", {})["dup_count"] = dup_count
                self.stat_update("kept")
                yield doc


def load_decisions(path: Path, file: int) -> dict[int, tuple[str | None, str | None, int]]:
    """Row -> (reason or None, keeper id, dup_count) for the documents of one input file that are in a cluster."""
    table = pq.read_table(path, columns=["row", "reason", "keeper", "dup_count"], filters=[("file", "=", file)])
    rows = table.to_pydict()
    return {
        row: (reason, keeper, count)
        for row, reason, keeper, count in zip(
            rows["row"], rows["reason"], rows["keeper"], rows["dup_count"], strict=True
        )
    }
