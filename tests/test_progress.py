"""Progress never goes backwards, shows no ETA before it settles, and counts each phase in its own unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from winnow.pipeline.progress import (
    ETA_AFTER_FRACTION,
    ETA_AFTER_S,
    ProgressMonitor,
    TaskProgress,
    eta_text,
    read_progress,
)


def _write(folder: Path, rank: int, docs: int, units: int) -> None:
    (folder / f"{rank:05d}.json").write_text(json.dumps({"docs": docs, "units": units}))


def test_task_units_never_decrease(tmp_path: Path) -> None:
    """An input whose last reported position passes its size (a reader's offset past the listed size)
    must not pull the task back when the next input starts."""
    progress = TaskProgress(tmp_path, 0, interval_s=0)
    readings = []
    for position in (40, 90, 130):  # the first input is listed as 100 units
        progress.advance(docs=1, units=position)
        readings.append(progress.units)
    progress.next_input(100)
    readings.append(progress.units)
    for position in (10, 50, 120):  # the second input, 100 units more
        progress.advance(docs=1, units=position)
        readings.append(progress.units)
    progress.next_input(100)
    readings.append(progress.units)
    assert readings == sorted(readings), readings
    assert readings[-1] == 220 and json.loads(progress.path.read_text()) == {"docs": 6, "units": 220}


def test_sum_keeps_each_task_at_its_highest(tmp_path: Path) -> None:
    """A retried task restarts its file at zero and a file can be unreadable for a moment: neither lowers the sum."""
    _write(tmp_path, 0, docs=80, units=800)
    _write(tmp_path, 1, docs=50, units=500)
    highest: dict[str, tuple[int, int]] = {}
    sums = [read_progress(tmp_path, highest)]
    _write(tmp_path, 1, docs=5, units=50)  # task 1 retried from the start
    sums.append(read_progress(tmp_path, highest))
    (tmp_path / "00000.json").write_text("{trunc")  # unreadable for one tick
    sums.append(read_progress(tmp_path, highest))
    _write(tmp_path, 1, docs=60, units=600)  # the retry passes where it was
    sums.append(read_progress(tmp_path, highest))
    assert sums == [(130, 1300), (130, 1300), (130, 1300), (140, 1400)]
    assert read_progress(tmp_path) == (60, 600)  # without memory: what the readable files say now


@pytest.mark.parametrize(
    ("elapsed", "done", "expected"),
    [
        (ETA_AFTER_S / 2, 50, "-:--:--"),  # too early, however far along
        (120.0, int(ETA_AFTER_FRACTION * 100) - 1, "-:--:--"),  # too little done
        (20.0, 50, "0:00:20"),  # half done in 20 s: 20 s left at the average rate
        (600.0, 10, "1:30:00"),
    ],
)
def test_eta_waits_until_it_has_settled(elapsed: float, done: int, expected: str) -> None:
    assert eta_text(elapsed, done, 100) == expected


def test_a_phase_shows_its_own_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A phase that counts runs (no documents) shows runs done, not "0 docs"."""
    _write(tmp_path, 0, docs=0, units=3)
    with ProgressMonitor("proxies", tmp_path, total_units=4, unit="runs"):
        pass
    shown = capsys.readouterr().out
    assert "runs" in shown and "docs" not in shown
    with ProgressMonitor("extract", tmp_path, total_units=4):
        pass
    assert "0 docs" in capsys.readouterr().out
