"""DuckDB over a run folder: one view per stage dataset, and the funnel (rows in / out / rejected / errored).

Views are named after the stages: ``extract`` (its output), ``extract_rejects`` and
``extract_errors``; the same for every other stage, plus ``final`` once a mix is written. Other
Parquet folders of a stage become ``<stage>_<folder path with _>`` views, e.g. ``dedup_clusters``,
``dedup_decisions``, ``dedup_index_docs``. A dataset
with no files yet is an empty view with the right columns, so queries never fail on a quiet stage.

The funnel counts ``out``, ``rejected`` and ``errored`` from the Parquet files themselves and
``in`` from what the stage's readers counted while running (``stats.json``), so the identity
``in == out + rejected + errored`` is a real check, not a tautology.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from winnow.pipeline.manifest import STAGE_ORDER
from winnow.pipeline.schema import document_schema, outcome_schema


def stage_names(run_dir: Path) -> list[str]:
    """Stages present in a run folder, in flow order (unknown names last, alphabetically)."""
    stages_dir = Path(run_dir) / "stages"
    present = sorted(p.name for p in stages_dir.iterdir() if p.is_dir()) if stages_dir.is_dir() else []
    return [s for s in STAGE_ORDER if s in present] + [s for s in present if s not in STAGE_ORDER]


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []


def connect(run_dir: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per stage dataset of ``run_dir``."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a winnow run folder (no run.json)")
    con = duckdb.connect()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    for stage in stage_names(run_dir):
        stage_dir = run_dir / "stages" / stage
        attributes = _stage_attributes(stage_dir)
        for dataset, suffix in (("data", ""), ("rejects", "_rejects"), ("errors", "_errors")):
            _register(con, f"{stage}{suffix}", _files(stage_dir / dataset), dataset == "data", attributes)
        for folder in sorted(p for p in stage_dir.rglob("*") if p.is_dir()):
            relative = folder.relative_to(stage_dir)
            if relative.parts[0] not in ("data", "rejects", "errors", "tmp") and _files(folder):
                view = f"{stage}_{'_'.join(relative.parts)}"
                listing = ", ".join("'" + f.replace("'", "''") + "'" for f in _files(folder))
                con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet([{listing}], union_by_name = true)')
    final = _files(run_dir / "final")
    if final:
        _register(con, "final", final, True)
    return con


def _stage_attributes(stage_dir: Path) -> dict[str, pa.DataType]:
    """The attribute columns a stage declared (recorded in stage.json when it completed)."""
    try:
        recorded = json.loads((stage_dir / "stage.json").read_text()).get("attributes") or {}
        return {name: pa.type_for_alias(dtype) for name, dtype in recorded.items()}
    except (OSError, ValueError):
        return {}


def _register(
    con: duckdb.DuckDBPyConnection,
    view: str,
    files: list[str],
    is_data: bool,
    attributes: dict[str, pa.DataType] | None = None,
) -> None:
    """A view over ``files``; without files, an empty view with the dataset's columns (attributes included)."""
    if files:
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet([{listing}], union_by_name = true)')
    else:
        empty = (document_schema(attributes) if is_data else outcome_schema(attributes)).empty_table()
        con.register(f"_{view}_empty", empty)
        con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_{view}_empty"')


@dataclass
class SourceFunnel:
    """Counts of one stage for one source."""

    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rows_errored: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    errored_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_rejected + self.rows_errored


def count_outcomes(
    con: duckdb.DuckDBPyConnection, stage: str, rows_in: dict[str, int] | None = None
) -> dict[str, SourceFunnel]:
    """Per source: rows out, rejected and errored (with reasons) of ``stage`` from its Parquet files,
    next to ``rows_in`` as counted by the stage's readers."""
    result: dict[str, SourceFunnel] = {}
    for source, n in (rows_in or {}).items():
        result.setdefault(source, SourceFunnel()).rows_in = n
    for source, n in con.execute(f'SELECT source, count(*) FROM "{stage}" GROUP BY 1').fetchall():
        result.setdefault(source, SourceFunnel()).rows_out = n
    for suffix, attr in (("_rejects", "rejected_by_reason"), ("_errors", "errored_by_reason")):
        query = f'SELECT source, reason, count(*) FROM "{stage}{suffix}" GROUP BY 1, 2 ORDER BY 3 DESC'
        for source, reason, n in con.execute(query).fetchall():
            getattr(result.setdefault(source, SourceFunnel()), attr)[reason] = n
    for funnel in result.values():
        funnel.rows_rejected = sum(funnel.rejected_by_reason.values())
        funnel.rows_errored = sum(funnel.errored_by_reason.values())
    return result


def stage_funnel(run_dir: Path, con: duckdb.DuckDBPyConnection, stage: str) -> dict[str, SourceFunnel]:
    """Per source funnel of one stage: outcomes from Parquet, ``rows_in`` from the stage's stats.json."""
    stats_path = Path(run_dir) / "stages" / stage / "stats.json"
    rows_in = json.loads(stats_path.read_text()).get("rows_in", {}) if stats_path.exists() else {}
    return count_outcomes(con, stage, rows_in)


def token_usage(run_dir: Path, stage: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, template) -> (prompt tokens, completion tokens) a stage spent on an LLM server (rephrase),
    from the ``tokens_in:<source>:<template>`` / ``tokens_out:...`` counters in its stats.json."""
    stats_path = Path(run_dir) / "stages" / stage / "stats.json"
    if not stats_path.exists():
        return {}
    usage: dict[tuple[str, str], list[int]] = {}
    for step in json.loads(stats_path.read_text()).get("steps", []):
        for key, value in (step.get("stats") or {}).items():
            kind, _, rest = key.partition(":")
            if kind not in ("tokens_in", "tokens_out") or ":" not in rest:
                continue
            source, _, template = rest.rpartition(":")
            total = value.get("total", 0) if isinstance(value, dict) else value
            usage.setdefault((source, template), [0, 0])[kind == "tokens_out"] += int(total)
    return {key: (pair[0], pair[1]) for key, pair in usage.items()}
