"""Commit records: a task's files are part of the run once a record naming them exists; resume inside a task.

A task's work is cut into **units**: one input file of its reader (a :class:`UnitReader`: the archive
and document readers), or the whole task when the phase has no such reader (DuckDB passes, the mix's
phases). The executor (:mod:`winnow.pipeline.executors`) runs the phase's whole pipeline once per unit
the task has not committed yet, inside a :func:`unit_scope`, and then writes the unit's commit record
``<logs>/commits/<rank>/<unit>.json``: the input it read, every Parquet shard the unit's sinks finished
(path relative to the run folder, rows, bytes, SHA-256) and each step's stats for the unit. With an
object store output the unit's files, then its record, are uploaded (:mod:`winnow.pipeline.store`). A task
killed after its 6th unit commits leaves six records; its rerun skips those units and the task's
stats are the sum of every record's, so rows counted in a killed attempt are not lost or doubled.

Inside a scope, :class:`~winnow.pipeline.parquet_sink.ParquetSink` names its shards after the unit
(``<prefix>-<rank>-<unit>-<shard>.parquet``, unit ``f<input index>`` or ``task``) and reports each shard
it finishes; clearing a rank's files at a unit's start spares the files earlier units committed.
Shards with such names are **sink shards**: views, later phases and run.json read one only when a
commit record names it (:func:`visible_parquet`), so a file a killed task left behind is never read.
Other Parquet files (DuckDB's outputs, written under a temporary name and renamed) are visible as
they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datatrove.utils.stats import MetricStats, Stats, TimingStats

if TYPE_CHECKING:
    from datatrove.io import DataFolder

    from winnow.pipeline.store import RunStore

SINK_SHARD = re.compile(r"-\d{5}-(?:f\d{5,}|task)-\d{4}\.parquet$")
TASK_UNIT = "task"


def unit_key(index: int | None) -> str:
    """The name of a unit: ``f<input file index>``, or ``task`` for a task that is one unit."""
    return TASK_UNIT if index is None else f"f{index:05d}"


class UnitReader:
    """Mixin for a reader step whose task's work can be cut into units, one per input file.

    The executor sets :attr:`unit` to the input index the next run of the pipeline reads; ``None``
    (outside an executor) reads every input of the task. Subclasses list their inputs' paths in
    :meth:`unit_inputs` and ask :meth:`reads` before reading input ``index``.
    """

    unit: int | None = None

    def unit_inputs(self) -> Sequence[str]:
        """The paths of the reader's inputs, in order (input ``i`` belongs to task ``i % world_size``)."""
        raise NotImplementedError

    def task_units(self, rank: int, world_size: int) -> list[tuple[int, str]]:
        """(index, path) of every input of task ``rank``."""
        return [(i, path) for i, path in enumerate(self.unit_inputs()) if i % world_size == rank]

    def reads(self, index: int, rank: int, world_size: int) -> bool:
        """Whether this run of the pipeline reads input ``index``."""
        return index % world_size == rank and (self.unit is None or self.unit == index)


@dataclass
class UnitScope:
    """The unit a task process runs now: what its sinks name their shards after, and may not delete."""

    rank: int
    key: str
    keep: frozenset[str]  # resolved paths of the shards earlier units of this task committed
    written: list[Path] = field(default_factory=list)


_SCOPE: list[UnitScope] = []


def current_scope() -> UnitScope | None:
    """The unit being run in this process, or None outside a unit (a sink used on its own)."""
    return _SCOPE[-1] if _SCOPE else None


@contextmanager
def unit_scope(rank: int, key: str, keep: frozenset[str]) -> Iterator[UnitScope]:
    """Run one unit of task ``rank``: sinks opened inside name and report their shards for it."""
    scope = UnitScope(rank, key, keep)
    _SCOPE.append(scope)
    try:
        yield scope
    finally:
        _SCOPE.pop()


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_record(path: Path, run_dir: Path) -> dict[str, Any]:
    """What a commit record says of one file: path relative to the run folder, bytes, SHA-256 (and rows)."""
    record: dict[str, Any] = {
        "path": Path(path).resolve().relative_to(Path(run_dir).resolve()).as_posix(),
        "bytes": Path(path).stat().st_size,
        "sha256": _sha256(path),
    }
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # here, not at import: the read-only commands load this module

        record["rows"] = pq.ParquetFile(path).metadata.num_rows
    return record


class TaskCommits:
    """The commit records of one task of one phase (``commits/<rank>/`` in the phase's logging folder)."""

    def __init__(self, logging_dir: DataFolder, rank: int, run_dir: Path, store: RunStore | None = None) -> None:
        """``store``: the object store the run is kept in (the unit's files, then its record, are uploaded)."""
        self.logging_dir = logging_dir
        self.rank = rank
        self.run_dir = Path(run_dir)
        self.store = store
        self.folder = f"commits/{rank:05d}"
        self.records: dict[str, dict[str, Any]] = {}
        for name in sorted(logging_dir.list_files(self.folder)):
            if name.endswith(".json"):
                with logging_dir.open(name, "r") as fh:
                    record = json.load(fh)
                self.records[record["unit"]] = record

    def kept_paths(self) -> frozenset[str]:
        """Resolved paths of every file these records name (a new attempt must not delete them)."""
        root = self.run_dir.resolve()
        return frozenset(str(root / f["path"]) for r in self.records.values() for f in r["files"])

    def commit(self, key: str, source: str | None, files: Sequence[Path], stats: list[dict[str, Any]]) -> None:
        """Write unit ``key``'s record (its files, its steps' stats); from now on its files are part of the run."""
        record = {
            "unit": key,
            "rank": self.rank,
            "input": source,
            "files": [file_record(p, self.run_dir) for p in files],
            "stats": stats,
        }
        if self.store is not None:
            for entry, path in zip(record["files"], files, strict=True):
                self.store.put(Path(path), entry["path"])
        tmp = f"{self.folder}/.{key}.json.tmp"
        with self.logging_dir.open(tmp, "w") as fh:
            json.dump(record, fh)
        self.logging_dir.mv(tmp, f"{self.folder}/{key}.json")
        if self.store is not None:
            local = Path(self.logging_dir.resolve_paths(f"{self.folder}/{key}.json"))
            self.store.put(local, local.resolve().relative_to(self.run_dir.resolve()).as_posix())
        self.records[key] = record

    def merged_stats(self, names: Sequence[str]) -> list[Stats]:
        """Each step's stats summed over every committed unit (steps named ``names``, in pipeline order)."""
        totals = [Stats(name) for name in names]
        for key in sorted(self.records):
            for i, data in enumerate(self.records[key]["stats"]):
                totals[i] = totals[i] + _stats_from_dict(data)
        return totals


def _stats_from_dict(data: dict[str, Any]) -> Stats:
    """A step's stats from ``Stats.to_dict`` with every counter a MetricStats (datatrove's own ``from_dict``
    leaves them plain numbers or dicts, which cannot be added)."""
    stats = Stats(data["name"])
    stats.time_stats = TimingStats.from_dict(data["time_stats"])
    for key, value in data["stats"].items():
        # to_dict writes a bare number only for a counter of updates by 1 (as many updates as its total)
        plain = not isinstance(value, dict)
        stats.stats[key] = (
            MetricStats(total=value, n=value, mean=1, min=1, max=1) if plain else MetricStats.from_dict(value)
        )
    return stats


def committed_files(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every file a commit record of the run names, by path relative to the run folder (its file record)."""
    found: dict[str, dict[str, Any]] = {}
    logs = Path(run_dir) / "logs"
    if not logs.is_dir():
        return found
    for path in sorted(logs.glob("**/commits/*/*.json")):  # a later sync record's entry wins
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # unreadable: names nothing
        for entry in record.get("files", []):
            found[entry["path"]] = entry
    return found


def visible_parquet(folder: Path, run_dir: Path, committed: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """The Parquet files of ``folder`` that are part of the run, sorted: sink shards only when committed
    (``committed``: :func:`committed_files` of the run, read here when not given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.parquet"))
    if not any(SINK_SHARD.search(p.name) for p in files):
        return files
    if committed is None:
        committed = committed_files(run_dir)
    root = Path(run_dir).resolve()
    return [p for p in files if not SINK_SHARD.search(p.name) or _relative(p, root) in committed]


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root).as_posix()
