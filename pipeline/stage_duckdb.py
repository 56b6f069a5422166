"""DuckDB work in a stage's phases (dedup's pairs and clustering, the quality cut, the mix's final writer).

:func:`stage_duckdb` opens a connection capped at the manifest's memory limit that spills to the
stage's ``tmp/`` folder (removed afterwards); :func:`copy_to_file` writes a query's
result as zstd Parquet that appears under its final name only when complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb


@contextmanager
def stage_duckdb(
    stage_dir: Path, memory_limit: str, threads: int, task: str | None = None
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """(connection, scratch folder): ``memory_limit`` and ``threads`` set, spilling to ``stage_dir/tmp``, or to
    ``stage_dir/tmp/<task>`` for one of several tasks that run at once (each clears only its own folder)."""
    tmp = stage_dir / "tmp" if task is None else stage_dir / "tmp" / task
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{tmp}'")
        con.execute(f"SET threads = {threads}")
        con.execute("SET preserve_insertion_order = false")
        yield con, tmp
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


def sql_path(path: Path) -> str:
    """``path`` as an SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def sql_paths(paths: Sequence[Path]) -> str:
    """``paths`` as an SQL list of string literals, for ``read_parquet``."""
    return "[" + ", ".join(sql_path(p) for p in paths) + "]"


def copy_to_file(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write a query result to one Parquet file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(f"COPY ({query}) TO {sql_path(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")
    os.replace(tmp, path)
