"""ParquetSink: explicit schema, atomic shards, size-based rotation, and per-rank cleanup on retry."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline.parquet_sink import ParquetSink, remove_rank_files
from winnow.pipeline.schema import document_schema


def _row(i: int) -> dict[str, object]:
    return {"id": f"doc-{i}", "text": f"text {i} " * 200, "source": "cc", "language_score": 0.5}


def test_rows_land_in_explicit_schema_and_shards_rotate(tmp_path: Path) -> None:
    schema = document_schema({"score_quality": pa.float32()})
    sink = ParquetSink(tmp_path, "part", schema, rank=3, target_bytes=20_000)
    for i in range(60):
        sink.write(_row(i))
        sink._flush()  # one row group per row, so the size check runs often
    shards = sink.close()

    assert len(shards) > 1, "a small target size must rotate shards"
    assert all(p.name.startswith("part-00003-") for p in shards)
    table = pa.concat_tables(pq.read_table(p) for p in shards)
    assert table.schema.equals(schema)
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in range(60)]
    assert table.column("score_quality").null_count == 60


def test_shard_is_invisible_until_closed(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, "part", document_schema(), rank=0, target_bytes=1 << 30)
    sink.write(_row(1))
    sink._flush()
    assert list(tmp_path.glob("*.parquet")) == []
    assert len(list(tmp_path.glob(".*.tmp"))) == 1
    sink.close()
    assert [p.name for p in tmp_path.glob("*.parquet")] == ["part-00000-0000.parquet"]
    assert list(tmp_path.glob(".*.tmp")) == []


def test_abort_leaves_nothing_and_cleanup_is_per_rank(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ParquetSink(tmp_path, "part", document_schema(), 1, 1 << 30) as sink:
        sink.write(_row(1))
        sink._flush()
        raise RuntimeError("task died")
    assert list(tmp_path.iterdir()) == []

    for rank in (1, 2):
        with ParquetSink(tmp_path, "part", document_schema(), rank, 1 << 30) as sink:
            sink.write(_row(rank))
    (tmp_path / ".part-00001-0001.parquet.tmp").write_bytes(b"half a file")
    remove_rank_files(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00002-0000.parquet"]


def test_wrong_type_is_an_error_not_a_silent_cast(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, "part", document_schema(), rank=0, target_bytes=1 << 30)
    sink.write({"id": "x", "text": "t", "source": "cc", "language_score": "high"})
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        sink.close()
