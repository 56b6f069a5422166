"""Executors: running one phase's datatrove pipeline on this machine, a Slurm cluster or a Ray cluster.

The runner drives a run stage by stage: a stage's plan needs its upstream's output files, so each
stage is submitted when the one before it has finished. :class:`ExecutorSession` turns a phase
(steps, task count, logging folder) into datatrove's executor for the manifest's ``executor.kind``;
the runner waits until no task of it runs any more and then checks the completion markers.

- local: datatrove's LocalPipelineExecutor, task logs to files only (the console keeps the bar).
- slurm: datatrove's SlurmPipelineExecutor submits a job array of the incomplete ranks per phase, the
  phases of a stage chained with ``--dependency=afterok`` (datatrove's ``depends``); the session polls
  ``squeue`` until each array has left the queue. The runner records the job ids before waiting, so
  ``winnow status`` can look them up and a rerun waits for a job that is still queued instead of
  submitting a second copy.
- ray: datatrove's RayPipelineExecutor, which blocks until its tasks finish (it resubmits a rank whose
  worker died, up to three times). The session connects with ``ray.init`` once per run, passing the
  configured environment variables through ``runtime_env``; tasks run in the driver's working folder.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from datatrove.executor.base import PipelineExecutor
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor
from datatrove.executor.slurm import SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import add_task_logger, close_task_logger, log_pipeline, logger
from datatrove.utils.stats import PipelineStats, Stats

from winnow.pipeline import remote
from winnow.pipeline.commits import TaskCommits, UnitReader, unit_key, unit_scope
from winnow.pipeline.logs import quiet_console
from winnow.pipeline.manifest import LocalExecutor, RayExecutor, SlurmExecutor
from winnow.pipeline.store import RunStore

ExecutorConfig = LocalExecutor | SlurmExecutor | RayExecutor


class ExecutorError(Exception):
    """The cluster refused or lost a phase (sbatch failed, Ray unreachable); the message says what to check."""


class RecordsAttempts(PipelineExecutor):
    """Runs a task unit by unit with commit records (:meth:`_run_units`), and records every task attempt in
    ``attempts/<rank>.jsonl`` in the logging folder, wherever it runs.

    A line (host, pid, ``started``) when the task starts, so `winnow status` tells a retried task, and one
    whose worker was killed before it could write a log, from one that never started. A second line when
    it ends (whether it succeeded or raised): ``ended``, ``ok``, ``wall_s``, ``cpu_s`` (user + system of
    the task's process, all its threads, plus the children it waited for, as ``getrusage`` deltas over the
    task) and ``peak_rss_mb`` with ``rss_source``: ``vmhwm`` is the process's high-water mark reset at
    the task's start (``/proc/self/clear_refs``), so it is the task's own peak even in a reused pool
    worker; ``ru_maxrss`` (where the reset is not possible) is the process's lifetime peak, which may
    belong to an earlier task of the same worker. Memory of child processes is not included.
    """

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        if self.is_rank_completed(rank):
            return super()._run_for_rank(rank, local_rank, node_rank)
        started = time.time()
        attempt = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
        with self.logging_dir.open(f"attempts/{rank:05d}.jsonl", "a") as fh:
            fh.write(json.dumps(attempt) + "\n")
        rss_source = "vmhwm" if _reset_peak_rss() else "ru_maxrss"
        cpu0, wall0, ok = _cpu_seconds(), time.perf_counter(), False
        try:
            stats = self._run_units(rank, local_rank, node_rank)
            ok = True
            return stats
        finally:
            end: dict[str, Any] = {
                "host": attempt["host"],
                "pid": attempt["pid"],
                "ended": time.time(),
                "ok": ok,
                "wall_s": round(time.perf_counter() - wall0, 3),
                "cpu_s": round(_cpu_seconds() - cpu0, 3),
            }
            end["peak_rss_mb"], end["rss_source"] = _peak_rss_mb(rss_source)
            with self.logging_dir.open(f"attempts/{rank:05d}.jsonl", "a") as fh:
                fh.write(json.dumps(end) + "\n")

    def _run_units(self, rank: int, local_rank: int, node_rank: int) -> PipelineStats:
        """datatrove's task body (task log, piping, stats, completion marker), with the pipeline run once per
        unit the task has not committed (:mod:`winnow.pipeline.commits`): each unit's shards and stats are
        committed when its run ends, and the task's stats are the sum over every committed unit."""
        self._set_distributed_environment(node_rank)
        logfile = add_task_logger(self.logging_dir, rank, local_rank, node_rank=node_rank)
        log_pipeline(self.pipeline)
        try:
            remote.install()
            steps = [step for step in self.pipeline if isinstance(step, PipelineStep)]
            reader = next((step for step in steps if isinstance(step, UnitReader)), None)
            units: list[tuple[int | None, str | None]] = [(None, None)]
            if reader is not None:  # a task without inputs still runs its pipeline once, reading nothing
                units = list(reader.task_units(rank, self.world_size)) or units
            store_url = getattr(self, "store_url", None)
            store = RunStore(store_url) if store_url else None
            commits = TaskCommits(self.logging_dir, rank, Path(getattr(self, "run_dir", ".")), store)
            resumed = 0
            for index, source in units:
                key = unit_key(index)
                if key in commits.records:
                    resumed += 1
                    continue
                for step in steps:
                    step.stats = Stats(str(step))
                if reader is not None:
                    reader.unit = index
                retried = remote.retries()
                with unit_scope(rank, key, commits.kept_paths()) as scope:
                    data = None
                    for step in self.pipeline:
                        data = step(data, rank, self.world_size)
                    if data:
                        deque(data, maxlen=0)
                if retried := remote.retries() - retried:  # S3 requests this unit had to repeat
                    (reader or steps[0]).stat_update("remote_retries", value=retried)
                commits.commit(key, source, scope.written, [step.stats.to_dict() for step in steps])
            for step, total in zip(steps, commits.merged_stats([str(step) for step in steps]), strict=True):
                step.stats = total
            if reader is not None:  # this attempt's own counts: what it read, what earlier attempts had committed
                reader.stat_update("units_read", value=len(units) - resumed)
                reader.stat_update("units_resumed", value=resumed)
            logger.success(f"Processing done for {rank=}")
            stats = PipelineStats(self.pipeline)
            if node_rank <= 0:
                with self.logging_dir.open(f"stats/{rank:05d}.json", "w") as fh:
                    stats.save_to_disk(fh)
                logger.info(stats.get_repr(f"Task {rank}"))
                self.mark_rank_as_completed(rank)
            return stats
        except Exception as exc:
            logger.exception(exc)
            raise
        finally:
            close_task_logger(logfile)


def _cpu_seconds() -> float:
    """User + system CPU-seconds of this process (every thread) and of the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size to its current one (Linux 4.0+); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _vmhwm_kb() is not None


def _vmhwm_kb() -> int | None:
    """VmHWM (peak resident set size since start or the last reset) of this process in kB, from /proc."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _peak_rss_mb(source: str) -> tuple[float, str]:
    """Peak resident set size in MB and where it was read: VmHWM since the reset (``vmhwm``), else the
    process's lifetime peak (``ru_maxrss``)."""
    kb = _vmhwm_kb() if source == "vmhwm" else None
    if kb is not None:
        return round(kb / 1024, 1), "vmhwm"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    if sys.platform == "darwin":  # bytes there
        kb //= 1024
    return round(kb / 1024, 1), "ru_maxrss"


class QuietLocalExecutor(RecordsAttempts, LocalPipelineExecutor):
    """datatrove's local executor with task logs going to files only (the console shows the progress bar).

    datatrove prints a task's log to the console only for local_rank 0 and uses local_rank for
    nothing else; shifting it keeps the console for winnow's progress bar and errors.
    """

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        try:
            return super()._run_for_rank(rank, local_rank + 1, node_rank)
        finally:
            quiet_console()  # datatrove restores its default console logger after each task


class VerboseLocalExecutor(RecordsAttempts, LocalPipelineExecutor):
    """datatrove's local executor, task logs on the console too (``--verbose``)."""


class WinnowSlurmExecutor(RecordsAttempts, SlurmPipelineExecutor):
    """datatrove's Slurm executor without its separate merge-stats job (the runner merges the stats)."""

    def launch_merge_stats(self) -> None:
        return None

    def sbatch_script(self, ranks: int) -> str:
        """The launch script ``launch_job`` would submit for ``ranks`` incomplete ranks; creates no folder."""
        folder = Path(self.slurm_logs_folder)
        created = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
        arrays = min(math.ceil(ranks / self.tasks_per_job), self.max_array_size)
        command = f"launch_pickled_pipeline {self.logging_dir.resolve_paths('executor.pik')}"
        if self.with_srun:
            command = f"srun -l -n {self.nodes_per_task} {command}"
        try:
            return self.get_launch_file_contents(self.get_sbatch_args(max(arrays, 1)), command)
        finally:
            if created is not None:  # datatrove's get_sbatch_args makes the Slurm log folder
                shutil.rmtree(created, ignore_errors=True)


class WinnowRayExecutor(RecordsAttempts, RayPipelineExecutor):
    """datatrove's Ray executor whose tasks run in the driver's working folder (relative paths keep working)."""

    def __init__(self, *args: Any, cwd: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cwd = cwd

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        os.chdir(self.cwd)
        return super()._run_for_rank(rank, local_rank, node_rank)


def slurm_env_command(config: SlurmExecutor) -> str:
    """Shell lines that give a Slurm task the Python environment winnow runs in (or the configured one)."""
    if config.env_command:
        return config.env_command
    if config.python_env:
        env = Path(config.python_env).absolute()
        return f"source {env / 'bin' / 'activate' if env.is_dir() else env}"
    if sys.prefix != sys.base_prefix:  # a virtual environment: datatrove wants its bin/activate file
        return f"source {Path(sys.prefix) / 'bin' / 'activate'}"
    return f'export PATH="{Path(sys.executable).parent}:$PATH"'


def slurm_job_state(job_id: str) -> list[str]:
    """States of a job's array elements still in the queue (empty once it has left)."""
    result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return []
        raise ExecutorError(f"squeue failed: {result.stderr.strip() or result.returncode} (is SLURM_CONF set?)")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


class ExecutorSession:
    """One run's connection to where tasks execute; use as a context manager around the run."""

    def __init__(self, config: ExecutorConfig, run_name: str, verbose: bool = False, env: Sequence[str] = ()) -> None:
        """``env``: names of environment variables the stages need on workers (API keys), besides ``executor.env``."""
        self.config = config
        self.run_name = run_name
        self.verbose = verbose
        self.env = list(env)
        self._ray_started = False

    def __enter__(self) -> ExecutorSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    def executor(
        self,
        steps: list[PipelineStep],
        tasks: int,
        logging_dir: Path,
        job: str,
        run_dir: Path,
        store_url: str | None = None,
    ) -> PipelineExecutor:
        """datatrove's executor for one phase; ``job`` names it (Slurm job name); its commit records name files
        relative to ``run_dir``, and are uploaded with them to ``store_url`` (an object store output)."""
        executor = self._executor(steps, tasks, logging_dir, job)
        executor.run_dir = str(Path(run_dir).absolute())  # type: ignore[attr-defined]
        executor.store_url = store_url  # type: ignore[attr-defined]
        return executor

    def _executor(self, steps: list[PipelineStep], tasks: int, logging_dir: Path, job: str) -> PipelineExecutor:
        config = self.config
        if isinstance(config, LocalExecutor):
            executor_class = VerboseLocalExecutor if self.verbose else QuietLocalExecutor
            return executor_class(
                pipeline=steps,
                tasks=tasks,
                workers=min(config.workers, tasks),
                logging_dir=str(logging_dir),
                skip_completed=True,
            )
        if isinstance(config, SlurmExecutor):
            return WinnowSlurmExecutor(
                pipeline=steps,
                tasks=tasks,
                time=config.time,
                partition=config.partition,
                cpus_per_task=config.cpus_per_task,
                workers=config.workers or -1,
                job_name=f"winnow-{self.run_name}-{job}",
                qos=config.qos or "",
                env_command=slurm_env_command(config),
                sbatch_args={"mem-per-cpu": f"{round(config.mem_per_cpu_gb * 1024)}M", **config.sbatch_args},
                logging_dir=str(logging_dir.absolute()),
                skip_completed=True,
                mail_type="NONE",
            )
        return WinnowRayExecutor(
            pipeline=steps,
            tasks=tasks,
            workers=config.workers or -1,
            logging_dir=str(logging_dir.absolute()),
            skip_completed=True,
            cpus_per_task=config.cpus_per_task,
            mem_per_cpu_gb=config.mem_per_cpu_gb,
            ray_remote_kwargs={"resources": config.resources} if config.resources else None,
            time=config.time_limit_s,
            cwd=os.getcwd(),
        )

    @property
    def submits_jobs(self) -> bool:
        """True for Slurm: phases are submitted as jobs (``submit_chain``) and waited for (``wait_for_job``)."""
        return isinstance(self.config, SlurmExecutor)

    def run(self, executor: PipelineExecutor) -> None:
        """Local and Ray: run the phase's incomplete ranks; returns when none is running any more."""
        if isinstance(executor, WinnowRayExecutor):
            self._connect_ray()
        executor.run()

    def submit_chain(self, executors: list[PipelineExecutor]) -> list[str | None]:
        """Slurm: submit the phases as job arrays, each depending (afterok) on the one before; returns each
        phase's job id (None: all its tasks were complete, nothing submitted)."""
        for previous, executor in itertools.pairwise(executors):
            executor.depends = previous  # type: ignore[attr-defined]
        try:
            executors[-1].run()  # datatrove submits the dependencies first
        except subprocess.CalledProcessError as exc:
            message = f"sbatch failed with exit {exc.returncode}; check the partition and sbatch_args"
            raise ExecutorError(message) from exc
        except FileNotFoundError as exc:
            raise ExecutorError(f"{exc.filename}: not found; is this a Slurm submit host?") from exc
        jobs = [getattr(e, "job_id", None) for e in executors]
        return [str(job) if job not in (None, -1) else None for job in jobs]

    def wait_for_job(self, job_id: str) -> None:
        """Slurm: return once every element of the job has left the queue."""
        assert isinstance(self.config, SlurmExecutor)
        while slurm_job_state(job_id):
            time.sleep(self.config.poll_s)

    def _connect_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        assert isinstance(self.config, RayExecutor)
        names = [*self.config.env, *self.env]
        env_vars = {name: os.environ[name] for name in names if name in os.environ}
        options: dict[str, Any] = {"log_to_driver": self.verbose, "configure_logging": self.verbose}
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        if not (self.config.address or os.environ.get("RAY_ADDRESS")):
            options["include_dashboard"] = False  # a Ray started for this run only
        try:
            ray.init(address=self.config.address, **options)
        except ConnectionError as exc:
            raise ExecutorError(f"cannot reach the Ray cluster at {self.config.address}: {exc}") from exc
        self._ray_started = True

    def describe(self, executor: PipelineExecutor, incomplete: int) -> str:
        """What submitting this phase's ``incomplete`` ranks would do (``winnow run --dry-run``)."""
        if isinstance(executor, WinnowSlurmExecutor):
            return executor.sbatch_script(incomplete)
        if isinstance(executor, WinnowRayExecutor):
            assert isinstance(self.config, RayExecutor)
            options = {
                "num_cpus": self.config.cpus_per_task,
                "memory_gb": self.config.cpus_per_task * self.config.mem_per_cpu_gb,
            }
            if self.config.resources:
                options["resources"] = self.config.resources
            return f"{incomplete} Ray task(s) at {self.config.address or 'a local Ray'} with {options}"
        return f"{incomplete} local task(s), {getattr(executor, 'workers', 1)} at a time"
