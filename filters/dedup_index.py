"""The dedup index on disk: its folders, its hash-range partitions, and reading it (and released ones) in DuckDB.

The signatures phase writes, under ``stages/dedup/index/``:

- ``docs/``: one row per document (position key, id, keeper-rule fields, URL and text keys, signature);
- ``bands/``: one row per LSH band of each signed document (band, bucket hash, key, id hash);
- ``texts/``: (key, text_key) of documents with a text;
- ``urls/``: (key, url_key, date, id) of documents with a URL (revisit stubs excluded);
- ``shingles/``: distinct shingle hashes, only for ``verify: exact``;
- ``params.json`` (hashing parameters that must match across runs) and ``layout.json`` (partition count).

``bands``, ``texts`` and ``urls`` files are named ``pNNNN-<rank>-<shard>.parquet``: partition ``NNNN`` holds
the rows whose 64-bit hash (bucket hash; first 8 bytes of the text key; xxh64 of the URL key) falls in
that partition's range. Every row of one LSH bucket, text key or URL lies in one partition, so a task per
partition finds exactly the groups one task over everything would.

A released index (``stages.dedup.against``) may have any partition count or the older unpartitioned
layout: it is read whole with a range filter on the hash. Its keys are mapped below zero
(``released_key``) so they never collide with this run's keys (``file << 32 | row`` >= 0).
"""

from __future__ import annotations

import json
import os
from itertools import pairwise
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from winnow.filters.minhash import MinHasher
from winnow.pipeline.manifest import DedupConfig

RELEASED_KEY_BASE = 1 << 52  # keys of released documents: -(index * base + their own key) - 1
TEXTS_SCHEMA = pa.schema([("key", pa.int64()), ("text_key", pa.binary(16))])
URLS_SCHEMA = pa.schema([("key", pa.int64()), ("url_key", pa.string()), ("date", pa.string()), ("id", pa.string())])
PARTITIONED = ("bands", "texts", "urls")  # the index folders written per hash-range partition
BANDS_SCHEMA = pa.schema([("band", pa.int16()), ("bucket", pa.uint64()), ("key", pa.int64()), ("idh", pa.uint64())])
SHINGLES_SCHEMA = pa.schema([("key", pa.int64()), ("shingles", pa.list_(pa.uint32()))])  # verify: exact only


def hasher_for(config: DedupConfig) -> MinHasher:
    """The MinHasher a dedup configuration asks for."""
    m = config.minhash
    if m.threshold is not None:
        return MinHasher.for_threshold(m.threshold, m.bands * m.rows, ngram=m.ngram, seed=m.seed)
    return MinHasher(ngram=m.ngram, bands=m.bands, rows=m.rows, seed=m.seed)


def index_params(config: DedupConfig) -> dict[str, object]:
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
    """``index/docs/``: one row per document."""
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


def released_key(number: int, column: str = "key") -> str:
    """SQL: the key of a row of released index ``number`` (0-based) in this run's key space (negative)."""
    return f"-({(number + 1) * RELEASED_KEY_BASE} + {column}) - 1"


def partition_edges(partitions: int) -> list[int]:
    """The ``partitions + 1`` edges splitting the 64-bit hash space into equal ranges (the last is 2**64)."""
    return [p * (1 << 64) // partitions for p in range(partitions + 1)]


def partition_ranges(partitions: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each partition's hash range."""
    return list(pairwise(partition_edges(partitions)))


def partition_of(hashes: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each uint64 hash (consistent with :func:`partition_ranges`)."""
    inner = np.array(partition_edges(partitions)[1:-1], dtype=np.uint64)
    return np.searchsorted(inner, hashes.astype(np.uint64), side="right")


def partition_file_prefix(partition: int) -> str:
    """File-name prefix of a partition's files in ``bands/``, ``texts/`` and ``urls/``."""
    return f"p{partition:04d}"


def in_range(column: str, lo: int, hi: int, blob: bool = False) -> str:
    """SQL: ``column``'s first 64 bits in ``[lo, hi)``; a BLOB column compares by its first 8 bytes, big-endian."""

    def literal(value: int) -> str:
        if not blob:
            return str(value)
        return "'" + "".join(f"\\x{b:02X}" for b in value.to_bytes(8, "big")) + "'::BLOB"

    upper = f" AND {column} < {literal(hi)}" if hi < 1 << 64 else ""
    return f"{column} >= {literal(lo)}{upper}"


def relation(con: duckdb.DuckDBPyConnection, folder: Path, schema: pa.Schema, pattern: str = "*.parquet") -> str:
    """SQL for the Parquet files matching ``pattern`` in ``folder``; an empty table of ``schema`` when none do."""
    if any(folder.glob(pattern)):
        return "read_parquet('" + str(folder / pattern).replace("'", "''") + "')"
    name = f"empty_{abs(hash((str(folder), pattern)))}"
    con.register(name, schema.empty_table())
    return name


def partition_relation(
    con: duckdb.DuckDBPyConnection, folder: Path, schema: pa.Schema, partition: int, partitions: int, column: str
) -> str:
    """SQL: the rows of ``folder`` (``bands/``, ``texts/`` or ``urls/`` of an index) in ``partition``.

    An index written with this partition count is read from that partition's files alone; one written
    with another count (or unpartitioned) is read whole through a range filter on ``column``."""
    if index_partitions(folder.parent) == partitions:
        return relation(con, folder, schema, f"{partition_file_prefix(partition)}-*.parquet")
    lo, hi = partition_ranges(partitions)[partition]
    return f"(SELECT * FROM {relation(con, folder, schema)} WHERE {in_range(column, lo, hi, column == 'text_key')})"


def write_params(index: Path, config: DedupConfig, rank: int) -> None:
    """Record the hashing parameters (read back by runs that dedup against this index) and the partition
    count; every signatures task writes the same content, each through its own temporary file."""
    index.mkdir(parents=True, exist_ok=True)
    for name, content in (("params.json", index_params(config)), ("layout.json", {"partitions": config.partitions})):
        tmp = index / f".{name}.{rank:05d}.tmp"
        tmp.write_text(json.dumps(content, indent=2) + "\n")
        os.replace(tmp, index / name)


def index_partitions(index: Path) -> int | None:
    """The partition count an index was written with (None: an unpartitioned index of an older winnow)."""
    try:
        return int(json.loads((index / "layout.json").read_text())["partitions"])
    except (OSError, ValueError, KeyError):
        return None
