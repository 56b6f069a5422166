"""Progress of a stage across tasks and processes: tasks write small counter files, the CLI draws a bar.

Tasks may run in pool workers, Slurm jobs or Ray actors, so progress travels through the run folder:
each task's reader owns a :class:`TaskProgress` that rewrites ``logs/<stage>/progress/<rank>.json``
(atomically, at most twice a second) with documents read and work units done (input bytes for
archives, rows for Parquet); a reader made for the next unit of a task goes on from the counts
there. :class:`ProgressMonitor` sums those files in a thread of the launching process and shows
documents/s (or the phase's own unit: steps, runs) and an ETA from units done against the stage's
known total.

What it shows never goes backwards: a task's units never decrease (an input's last reported position
may pass its size, and a retried task restarts its file from zero), the monitor keeps each task
file's highest reading, and the bar keeps its highest total. No ETA is shown until the estimate has
settled (:data:`ETA_AFTER_S` seconds and :data:`ETA_AFTER_FRACTION` of the work); it is then the
average rate since the start, which moves less than a recent-window rate on uneven inputs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ETA_AFTER_S = 10.0
ETA_AFTER_FRACTION = 0.05


class TaskProgress:
    """Counter file of one task."""

    def __init__(self, folder: Path, rank: int, interval_s: float = 0.5) -> None:
        self.path = Path(folder) / f"{rank:05d}.json"
        self.interval_s = interval_s
        self.docs, self.units = _counts(self.path)  # a task cut into units goes on from its last unit's counts
        self._base_units = self.units
        self._last = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def advance(self, docs: int = 0, units: int | None = None) -> None:
        """Add ``docs``; ``units`` is the position inside the current input (absolute, not a delta)."""
        self.docs += docs
        if units is not None:
            self.units = max(self.units, self._base_units + units)
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self.flush()

    def next_input(self, size: int) -> None:
        """Mark the current input finished (its whole ``size`` done) before moving to the next."""
        self._base_units += size
        self.units = max(self.units, self._base_units)
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"docs": self.docs, "units": self.units}))
        os.replace(tmp, self.path)


def _counts(path: Path) -> tuple[int, int]:
    """(docs, units) a task's counter file shows; zeros when there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
        return int(data.get("docs", 0)), int(data.get("units", 0))
    except (OSError, ValueError, AttributeError):
        return 0, 0


def read_progress(folder: Path, highest: dict[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """Sum of (docs, units) over the task files in ``folder``. With ``highest`` (kept by the caller
    between reads), each file counts with the highest (docs, units) it has shown, so an unreadable
    file or a task that restarts its count cannot lower the sum."""
    seen = {} if highest is None else highest
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            docs, units = seen.get(path.name, (0, 0))
            seen[path.name] = (max(docs, data.get("docs", 0)), max(units, data.get("units", 0)))
    return sum(d for d, _ in seen.values()), sum(u for _, u in seen.values())


def eta_text(elapsed_s: float, done: int, total: int) -> str:
    """Time left as ``H:MM:SS`` at the average rate so far; ``-:--:--`` until the estimate has settled."""
    fraction = done / max(total, 1)
    if elapsed_s < ETA_AFTER_S or fraction < ETA_AFTER_FRACTION:
        return "-:--:--"
    left = round(elapsed_s * (1 - fraction) / fraction)
    return f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"


class ProgressMonitor:
    """Context manager drawing one progress bar for a stage while its executor runs."""

    def __init__(self, stage: str, folder: Path, total_units: int, enabled: bool = True, unit: str = "docs") -> None:
        """``unit``: what the count shows: ``docs`` (documents read), or the phase's own unit (``steps``,
        ``runs``...), counted as the units done."""
        self.stage = stage
        self.unit = unit
        self.folder = folder
        self.total_units = max(total_units, 1)
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def __enter__(self) -> ProgressMonitor:
        if self.enabled:
            self._start = time.monotonic()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        columns = (
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(bar_width=24),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[count]:>8,} {task.fields[unit]} {task.fields[rate]:>6.1f}/s"),
            TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"),
        )
        highest: dict[str, tuple[int, int]] = {}
        shown = 0
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(self.stage, total=self.total_units, count=0, unit=self.unit, rate=0.0, eta="-:--:--")
            while True:
                stopping = self._stop.wait(0.5)
                docs, units = read_progress(self.folder, highest)
                elapsed = max(time.monotonic() - self._start, 1e-6)
                shown = self.total_units if stopping else max(shown, min(units, self.total_units))
                count = docs if self.unit == "docs" else units
                eta = eta_text(elapsed, shown, self.total_units)
                bar.update(task, completed=shown, count=count, rate=count / elapsed, eta=eta)
                if stopping:
                    return
