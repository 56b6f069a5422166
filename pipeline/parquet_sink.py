"""Atomic, sharded Parquet writing with an explicit schema.

A :class:`ParquetSink` writes the rows one task produces for one dataset (a stage's ``data``,
``rejects`` or ``errors``) to ``<folder>/<prefix>-<rank:05d>-<shard:04d>.parquet``, or, inside a unit
of a task (:mod:`winnow.pipeline.commits`), ``<prefix>-<rank:05d>-<unit>-<shard:04d>.parquet``, and
reports each finished shard to the unit, whose commit record names it. Each shard is written under a
hidden temporary name and renamed into place when it reaches the target size or the unit ends, so a
reader never sees a half-written file. :func:`remove_rank_files` clears a rank's files from an
earlier, interrupted attempt (called by ``BeginTask`` at the start of every unit), so a rerun replaces
its output instead of adding to it; inside a unit it spares the files earlier units committed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline.commits import current_scope

ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 20_000


def remove_rank_files(folder: Path, rank: int) -> None:
    """Delete every shard and temporary file of ``rank`` in ``folder`` (start of a task attempt or unit),
    except those the current unit's task has committed."""
    if not folder.is_dir():
        return
    scope = current_scope()
    keep = scope.keep if scope is not None else frozenset()
    tag = f"-{rank:05d}-"
    for entry in folder.iterdir():
        if tag in entry.name and entry.name.endswith((".parquet", ".tmp")) and str(entry.resolve()) not in keep:
            entry.unlink(missing_ok=True)


class ParquetSink:
    """Buffered writer of rows (dicts keyed by column) into zstd Parquet shards of one schema."""

    def __init__(self, folder: Path, prefix: str, schema: pa.Schema, rank: int, target_bytes: int) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.schema = schema
        self.rank = rank
        self.target_bytes = target_bytes
        self.rows_written = 0
        self.shards: list[Path] = []
        self._columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: pa.NativeFile | None = None
        self._tmp_path: Path | None = None
        self._shard_index = 0

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row; missing columns are null."""
        for name, values in self._columns.items():
            values.append(row.get(name))
        self._buffered_rows += 1
        text = row.get("text")
        self._buffered_bytes += len(text) if isinstance(text, str) else 64
        if self._buffered_rows >= ROW_GROUP_ROWS or self._buffered_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        """Add a whole table of this sink's schema (columnar producers such as dedup's index)."""
        self._flush()
        if self._writer is None:
            self._open_shard()
        self._writer.write_table(table.cast(self.schema), row_group_size=max(len(table), 1))
        self.rows_written += len(table)
        if self._file.tell() >= self.target_bytes:
            self._finish_shard()

    def close(self) -> list[Path]:
        """Flush, finish the current shard and return the list of shards written by this sink."""
        self._flush()
        self._finish_shard()
        return self.shards

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Drop the shard in progress (the task failed; a rerun rewrites this rank)."""
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._tmp_path.unlink(missing_ok=True)
            self._writer = None

    def _flush(self) -> None:
        if not self._buffered_rows:
            return
        table = pa.Table.from_pydict(self._columns, schema=self.schema)
        if self._writer is None:
            self._open_shard()
        self._writer.write_table(table, row_group_size=len(table))
        self.rows_written += len(table)
        self._columns = {name: [] for name in self.schema.names}
        self._buffered_rows = 0
        self._buffered_bytes = 0
        if self._file.tell() >= self.target_bytes:
            self._finish_shard()

    def _open_shard(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        scope = current_scope()
        unit = f"-{scope.key}" if scope is not None else ""
        name = f"{self.prefix}-{self.rank:05d}{unit}-{self._shard_index:04d}.parquet"
        self._tmp_path = self.folder / f".{name}.tmp"
        self._file = pa.OSFile(str(self._tmp_path), "wb")
        self._writer = pq.ParquetWriter(self._file, self.schema, compression="zstd")

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._file.close()
        final = self._tmp_path.with_name(self._tmp_path.name[1:].removesuffix(".tmp"))
        os.replace(self._tmp_path, final)
        self.shards.append(final)
        if (scope := current_scope()) is not None:
            scope.written.append(final)
        self._writer = None
        self._shard_index += 1
