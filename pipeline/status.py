"""The state of a run's tasks, read from its folder: what `winnow status` prints.

Per stage and phase: tasks done (datatrove's completion markers), running, failed and not started.
A task without a completion marker is *running* while its phase's driver or Slurm job is alive
(``stage.json`` records the driver's host and pid, and the Slurm job id); once they are gone it has
*failed* if it started (a log, or a start recorded in ``attempts/``), else it is *not started*. A
failed task's reason is Slurm's cancellation line from the job's output, else the last error line of
its log, else its recorded start (its worker was killed before it wrote a log). A task that completed
after more than one start is counted as retried.

Resources, from the attempts' end records (``winnow.pipeline.executors.RecordsAttempts``): a phase's
CPU-seconds summed over every attempt that ended, the largest peak RSS of one attempt, its first
recorded start, last recorded end and the span between them (``None`` where no attempt has ended).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from winnow.pipeline.json_records import read_json
from winnow.pipeline.stage_order import STAGE_ORDER


@dataclass
class PhaseStatus:
    """The tasks of one phase of a stage."""

    stage: str
    phase: str
    tasks: int
    done: int = 0
    running: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # rank -> reason
    not_started: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)  # done, after more than one start
    logs: str | None = None
    slurm_job: str | None = None
    cpu_s: float | None = None  # summed over the attempts that ended
    peak_rss_mb: float | None = None  # the largest of one attempt
    peak_rss_source: str | None = None  # vmhwm (the task's own peak) or ru_maxrss (its process's lifetime peak)
    wall_s: float | None = None  # first start to last end of the recorded attempts
    started: float | None = None  # the first recorded start (Unix time)
    ended: float | None = None  # the last recorded end (Unix time)

    @property
    def state(self) -> str:
        if self.done == self.tasks:
            return "done"
        if self.running:
            return "running"
        if self.failed:
            return "failed"
        return "incomplete" if self.done else "not started"


@dataclass
class RunStatus:
    run_dir: str
    finished: bool
    phases: list[PhaseStatus]
    command: str | None

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for phase, status in zip(record["phases"], self.phases, strict=True):
            phase["state"] = status.state
        return record


def _driver_alive(driver: dict[str, Any] | None) -> bool:
    """Whether the process that ran a phase still runs (only knowable on the same host)."""
    if not driver or driver.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(driver["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


ERROR_LINE = re.compile(r"\| (ERROR|CRITICAL) +\|")


def _log_reason(log: Path) -> str:
    """The last error line of a task log and the exception line after it; else the log's last line."""
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if ERROR_LINE.search(line)]
    if errors:
        tail = lines[errors[-1] :]
        exception = next((line for line in reversed(tail) if re.match(r"^\w[\w.]*(Error|Exception|Exit)\b", line)), "")
        message = tail[0].split(" - ", 1)[-1]
        return f"{message} {exception}".strip()[:300]
    return f"stopped without an error in its log (killed?); last line: {lines[-1][:200]}" if lines else "empty log"


def _slurm_reason(logs_dir: Path, job: str | None, rank: int) -> str | None:
    """Slurm's cancellation or time-out message for the array element that ran ``rank``."""
    ranks_file = logs_dir / "ranks_to_run.json"
    if not job or not ranks_file.exists():
        return None
    ranks = json.loads(ranks_file.read_text())
    if rank not in ranks:
        return None
    output = logs_dir / "slurm_logs" / f"{job}_{ranks.index(rank)}.out"
    if not output.exists():
        return None
    for line in reversed(output.read_text(errors="replace").splitlines()):
        if "CANCELLED" in line or "TIME LIMIT" in line or "DUE TO" in line:
            return "Slurm: " + line.split("***")[1].strip() if "***" in line else "Slurm: " + line.strip()
    return None


def phase_status(run_dir: Path, stage: str, phase: str, record: dict[str, Any], default_tasks: int) -> PhaseStatus:
    """The tasks of one phase from its record in ``stage.json`` and its logging folder."""
    logs_rel = record.get("logs") or (f"logs/{stage}" if phase == stage else f"logs/{stage}/{phase}")
    logs_dir = run_dir / logs_rel
    tasks = int(record.get("tasks") or default_tasks)
    status = PhaseStatus(stage, phase, tasks, logs=str(logs_dir), slurm_job=record.get("slurm_job"))
    completions = logs_dir / "completions"
    done = {int(p.name) for p in completions.iterdir() if p.name.isdigit()} if completions.is_dir() else set()
    if record.get("completed"):
        done = set(range(tasks))
    status.done = len(done & set(range(tasks)))
    alive = _driver_alive(record.get("driver"))
    if status.slurm_job:
        from winnow.pipeline.executors import ExecutorError, slurm_job_state  # datatrove: only when asked

        with contextlib.suppress(ExecutorError, FileNotFoundError):  # no Slurm client here: judge by the driver
            alive = alive or bool(slurm_job_state(status.slurm_job))
    starts: list[float] = []
    ends: list[dict[str, Any]] = []
    for rank in range(tasks):
        records = _attempt_records(logs_dir, rank)
        attempts = [r for r in records if "started" in r]
        starts += [float(r["started"]) for r in attempts]
        ends += [r for r in records if "ended" in r]
        if rank in done:
            if len(attempts) > 1:
                status.retried.append(rank)
            continue
        log = logs_dir / "logs" / f"task_{rank:05d}.log"
        if alive:
            (status.running if log.exists() or attempts else status.not_started).append(rank)
        elif reason := _slurm_reason(logs_dir, status.slurm_job, rank):
            status.failed[rank] = reason
        elif log.exists():
            status.failed[rank] = _log_reason(log)
        elif attempts:
            last = attempts[-1]
            status.failed[rank] = (
                f"attempt {len(attempts)} started on {last.get('host')} (pid {last.get('pid')}) and left no log: "
                "its worker was killed or lost"
            )
        else:
            status.not_started.append(rank)
    _add_resources(status, starts, ends)
    return status


def _add_resources(status: PhaseStatus, starts: list[float], ends: list[dict[str, Any]]) -> None:
    """A phase's CPU-seconds, largest task peak RSS and span, from its attempts' start and end records."""
    if not ends:
        return
    status.cpu_s = round(sum(float(e.get("cpu_s") or 0.0) for e in ends), 3)
    measured = [e for e in ends if e.get("peak_rss_mb") is not None]
    if measured:
        largest = max(measured, key=lambda e: float(e["peak_rss_mb"]))
        status.peak_rss_mb, status.peak_rss_source = float(largest["peak_rss_mb"]), largest.get("rss_source")
    status.ended = max(float(e["ended"]) for e in ends)
    if starts:
        status.started = min(starts)
        status.wall_s = round(status.ended - status.started, 3)


def _attempt_records(logs_dir: Path, rank: int) -> list[dict[str, Any]]:
    """The start and end records of a task's attempts (see ``winnow.pipeline.executors.RecordsAttempts``)."""
    path = logs_dir / "attempts" / f"{rank:05d}.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a killed worker
            records.append(json.loads(line))
    return records


def run_status(run_dir: Path) -> RunStatus:
    """Every enabled stage's phases, in flow order; raises FileNotFoundError for a folder that is not a run."""
    record = read_json(run_dir / "run.json")
    if record is None:
        raise FileNotFoundError(f"{run_dir}: no run.json; not a winnow run folder (or the run never started)")
    manifest = record.get("manifest") or {}
    default_tasks = int((manifest.get("executor") or {}).get("tasks") or 1)
    enabled = [s for s in STAGE_ORDER if (manifest.get("stages") or {}).get(s) is not None]
    phases: list[PhaseStatus] = []
    for stage in enabled:
        state = read_json(run_dir / "stages" / stage / "stage.json") or {}
        records = state.get("phases") or {}
        if not records:
            phases.append(PhaseStatus(stage, "-", default_tasks, not_started=list(range(default_tasks))))
        for phase, phase_record in records.items():
            phases.append(phase_status(run_dir, stage, phase, phase_record, default_tasks))
    finished = bool(record.get("finished_at")) and all(p.state == "done" for p in phases)
    return RunStatus(str(run_dir), finished, phases, record.get("command"))
