"""Run folders on an S3-compatible object store, against moto's standalone server (tests/s3_server.py)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import s3fs

from tests.s3_server import SECRET_KEY, MotoServer


def test_moto_server_takes_objects_and_duckdb_reads_them_through_fsspec(s3_server: MotoServer) -> None:
    """The fixture's server, reached through the standard AWS variables only; DuckDB reads its objects through
    a registered fsspec filesystem (no httpfs extension, which would be downloaded at run time)."""
    fs = s3fs.S3FileSystem()
    with fs.open("winnow/smoke/x.parquet", "wb") as fh:
        pq.write_table(pa.table({"n": [1, 2, 3]}), fh)
    con = duckdb.connect()
    con.register_filesystem(fs)
    assert con.execute("SELECT sum(n) FROM read_parquet('s3://winnow/smoke/x.parquet')").fetchone() == (6,)
    assert SECRET_KEY not in repr(fs)
