"""Swarm results as two tables keyed by run id: ``ratios`` (one weight column per source) and ``metrics`` (one loss
column per target).

The same two tables come from winnow's own proxy runs or from another tool (RegMix's CSVs, a GPU cluster's swarm),
so a swarm trained elsewhere can be fitted here. Read: CSV or Parquet; written: Parquet with a ``run_id`` column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

ROW_SUM_TOLERANCE = 1e-2  # imported weights are renormalised when their row sums are this close to 1


@dataclass(frozen=True, eq=False)
class Swarm:
    """Mixture weights ``(n, k)`` and losses ``(n, t)`` of ``n`` runs over ``k`` sources and ``t`` targets."""

    run_ids: list[str]
    sources: list[str]
    weights: np.ndarray
    targets: list[str]
    losses: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.run_ids)
        if self.weights.shape != (n, len(self.sources)) or self.losses.shape != (n, len(self.targets)):
            raise ValueError(
                f"a swarm of {n} runs, {len(self.sources)} sources and {len(self.targets)} targets needs weights of "
                f"shape {(n, len(self.sources))} and losses of shape {(n, len(self.targets))}, got "
                f"{self.weights.shape} and {self.losses.shape}"
            )

    def objective(self, target_weights: Mapping[str, float]) -> np.ndarray:
        """Per run, the weighted sum of the named targets' losses."""
        unknown = [t for t in target_weights if t not in self.targets]
        if unknown or not target_weights:
            raise ValueError(
                f"objective targets {', '.join(unknown) or '(none given)'} are not among this swarm's targets: "
                f"{', '.join(self.targets)}"
            )
        columns = [self.targets.index(t) for t in target_weights]
        return self.losses[:, columns] @ np.array(list(target_weights.values()), dtype=float)

    def subset(self, rows: np.ndarray | Sequence[int]) -> Swarm:
        """The swarm restricted to ``rows`` (indices or a boolean mask), in that order."""
        index = np.arange(len(self.run_ids))[np.asarray(rows)]
        return Swarm(
            [self.run_ids[i] for i in index], self.sources, self.weights[index], self.targets, self.losses[index]
        )


def read_swarm(
    ratios: str | Path, metrics: str | Path, key: str = "run_id", strip_prefixes: Sequence[str] = ()
) -> Swarm:
    """Join a ratios table and a metrics table (CSV or Parquet, by suffix) on ``key`` into a Swarm.

    Every other column of ``ratios`` is a source, every other column of ``metrics`` a target; unnamed (empty
    header) columns are dropped, and the first matching prefix of ``strip_prefixes`` is removed from each name.
    Runs must match one to one; rows keep the ratios table's order. Weight rows within 1e-2 of summing to 1 are
    renormalised (imported ratios are rounded); a further row, a negative or missing weight, or a missing loss
    raises ValueError naming the runs (drop or rerun them upstream: a missing loss is not a high loss).
    """
    ratio_ids, sources, weights = _read_table(Path(ratios), key, strip_prefixes)
    metric_ids, targets, losses = _read_table(Path(metrics), key, strip_prefixes)
    unmatched = set(ratio_ids) ^ set(metric_ids)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} runs are in only one of {ratios} and {metrics} (e.g. {_examples(sorted(unmatched))}); "
            "give both tables the same runs"
        )
    losses = losses[[metric_ids.index(r) for r in ratio_ids]]
    for what, values in (("weight", weights), ("loss", losses)):
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{bad.sum()} runs have a missing {what}: {_examples(np.array(ratio_ids)[bad])}; drop or rerun them"
            )
    sums = weights.sum(axis=1)
    bad = (np.abs(sums - 1) > ROW_SUM_TOLERANCE) | (weights < 0).any(axis=1)
    if bad.any():
        runs = [f"{r} (sum {s:.4g})" for r, s, b in zip(ratio_ids, sums, bad, strict=True) if b]
        raise ValueError(
            f"{len(runs)} runs of {ratios} have negative weights or weights that do not sum to 1 "
            f"(within {ROW_SUM_TOLERANCE}): {_examples(runs)}; fix them upstream or leave them out"
        )
    return Swarm(ratio_ids, sources, weights / sums[:, None], targets, losses)


def write_swarm(swarm: Swarm, folder: Path) -> tuple[Path, Path]:
    """Write ``ratios.parquet`` and ``metrics.parquet`` (each with a ``run_id`` column) into ``folder``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, columns, values in (("ratios", swarm.sources, swarm.weights), ("metrics", swarm.targets, swarm.losses)):
        if "run_id" in columns:
            raise ValueError(f"a swarm column may not be named run_id (it is the key); rename it in the {name} table")
        table = pa.table({"run_id": swarm.run_ids, **{c: values[:, j] for j, c in enumerate(columns)}})
        path = folder / f"{name}.parquet"
        pq.write_table(table, folder / f".{name}.parquet.tmp")
        os.replace(folder / f".{name}.parquet.tmp", path)
        written.append(path)
    return written[0], written[1]


def _read_table(path: Path, key: str, strip_prefixes: Sequence[str]) -> tuple[list[str], list[str], np.ndarray]:
    """Run ids, value column names and float values ``(rows, columns)`` of one table."""
    if path.suffix.lower() == ".csv":
        table = pv.read_csv(path)
    elif path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path)
    else:
        raise ValueError(f"{path}: swarm tables must be .csv or .parquet files")
    table = table.select([c for c in table.column_names if c.strip()])
    if key not in table.column_names:
        raise ValueError(f"{path} has no key column {key!r}; its columns are {', '.join(table.column_names)}")
    ids = [str(v) for v in table.column(key).to_pylist()]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path} lists runs more than once: {_examples(duplicated)}; keep one row per run")
    names = [c for c in table.column_names if c != key]
    if not names:
        raise ValueError(f"{path} has no columns besides the key {key!r}")
    stripped = [next((n[len(p) :] for p in strip_prefixes if n.startswith(p)), n) for n in names]
    if len(set(stripped)) != len(stripped):
        raise ValueError(f"{path}: stripping {list(strip_prefixes)} makes column names collide: {stripped}")
    try:
        values = np.column_stack([table.column(n).cast(pa.float64()).to_numpy() for n in names])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{path}: every column but {key!r} must be numeric ({exc})") from exc
    return ids, stripped, values


def _examples(items: Sequence[str] | np.ndarray, limit: int = 5) -> str:
    """The first few items, comma separated, with how many more."""
    shown = ", ".join(map(str, items[:limit]))
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
