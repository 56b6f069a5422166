"""The dedup stage's per-task steps: hash every document into the dedup index, then apply the decisions.

The stage runs in three phases (see :mod:`winnow.pipeline.stages`):

1. ``signatures`` (all tasks): :class:`DedupSignatures` writes, for each document, one row of
   ``index/docs/`` (id, position, URL key, text key, MinHash signature, keeper-rule fields) and one row
   per LSH band to ``index/bands/``. Nothing else is held in memory beyond a batch.
2. ``clusters`` (one task): :class:`winnow.filters.dedup_clusters.DedupClusters` finds duplicates with DuckDB
   and writes ``clusters/`` and ``decisions/``.
3. ``select`` (all tasks): :class:`DedupSelect` reads the documents again in the same order and, using
   the decisions for each input file, writes removed documents to ``rejects/`` (reason
   ``url_duplicate``, ``exact_duplicate``, ``near_duplicate`` or ``revisit_unresolved``, detail = the
   keeper's id) and passes the others on with a ``dup_count`` attribute.

Documents are addressed by their position (input file index, row index), which the reader assigns
the same way in phases 1 and 3. Internal integer keys are ``file << 32 | row``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.dedup_keys import text_key_of_tokens, url_key
from winnow.filters.minhash import MinHasher, tokens
from winnow.pipeline.manifest import DedupConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.parquet_sink import ParquetSink, remove_rank_files

BATCH_DOCS = 1024
INDEX_TARGET_BYTES = 256 * 1024 * 1024


def hasher_for(config: DedupConfig) -> MinHasher:
    """The MinHasher a dedup configuration asks for."""
    m = config.minhash
    if m.threshold is not None:
        return MinHasher.for_threshold(m.threshold, m.bands * m.rows, ngram=m.ngram, seed=m.seed)
    return MinHasher(ngram=m.ngram, bands=m.bands, rows=m.rows, seed=m.seed)


def index_params(config: DedupConfig) -> dict[str, Any]:
    """What must match for two dedup indexes to be compared (stored as ``index/params.json``)."""
    hasher = hasher_for(config)
    return {
        "scheme": "datasketch-affine32/xxh64-tokens/v1",
        "ngram": hasher.ngram,
        "bands": hasher.bands,
        "rows": hasher.rows,
        "seed": hasher.seed,
    }


def docs_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            ("key", pa.int64()),
            ("idh", pa.uint64()),
            ("id", pa.string()),
            ("source", pa.string()),
            ("file", pa.int32()),
            ("row", pa.int64()),
            ("crawl", pa.string()),
            ("date", pa.string()),
            ("url_key", pa.string()),
            ("text_key", pa.binary(16)),
            ("prefer", pa.float64()),
            ("payload_digest", pa.string()),
            ("revisit_of", pa.string()),
            ("sig", pa.list_(pa.uint32(), num_perm)),
        ]
    )


BANDS_SCHEMA = pa.schema([("band", pa.int16()), ("bucket", pa.uint64()), ("key", pa.int64()), ("idh", pa.uint64())])
SHINGLES_SCHEMA = pa.schema([("key", pa.int64()), ("shingles", pa.list_(pa.uint32()))])  # verify: exact only


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
        for folder in ("docs", "bands", "shingles"):
            remove_rank_files(index / folder, rank)
        sinks = {
            "docs": ParquetSink(index / "docs", "part", docs_schema(hasher.num_perm), rank, INDEX_TARGET_BYTES),
            "bands": ParquetSink(index / "bands", "part", BANDS_SCHEMA, rank, INDEX_TARGET_BYTES),
        }
        if self.config.minhash.verify == "exact":
            sinks["shingles"] = ParquetSink(index / "shingles", "part", SHINGLES_SCHEMA, rank, INDEX_TARGET_BYTES)
        with contextlib.ExitStack() as stack:
            for sink in sinks.values():
                stack.enter_context(sink)
            batch: list[Document] = []
            for doc in data or ():
                batch.append(doc)
                if len(batch) >= BATCH_DOCS:
                    self._write(batch, hasher, sinks)
                    batch = []
            if batch:
                self._write(batch, hasher, sinks)
        return
        yield  # a generator that yields nothing: the phase ends here

    def _write(self, batch: list[Document], hasher: MinHasher, sinks: dict[str, ParquetSink]) -> None:
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
            sinks["docs"].write_table(pa.table(columns, schema=sinks["docs"].schema))
            rows = np.flatnonzero(has_sig)
            if len(rows) and "shingles" in sinks:
                distinct = [np.unique(shingles[i]) for i in rows]
                sinks["shingles"].write_table(
                    pa.table({"key": keys[rows], "shingles": distinct}, schema=SHINGLES_SCHEMA)
                )
            if len(rows):
                bands = hasher.band_keys(signatures[rows])
                band_table = pa.table(
                    {
                        "band": np.tile(np.arange(hasher.bands, dtype=np.int16), len(rows)),
                        "bucket": bands.reshape(-1),
                        "key": np.repeat(keys[rows], hasher.bands),
                        "idh": np.repeat(id_hashes[rows], hasher.bands),
                    },
                    schema=BANDS_SCHEMA,
                )
                sinks["bands"].write_table(band_table)
        self.stat_update("indexed", value=len(batch))
        self.stat_update("no_signature", value=int(len(batch) - has_sig.sum()))


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


def write_params(index: Path, config: DedupConfig) -> None:
    """Record the hashing parameters next to the index (read back by runs that dedup against it)."""
    index.mkdir(parents=True, exist_ok=True)
    (index / "params.json").write_text(json.dumps(index_params(config), indent=2) + "\n")
