"""Running a manifest: the run folder, stage by stage execution with resume, and the run records.

For each enabled stage, in flow order, the runner builds the stage's plan, compares its fingerprint
(stage configuration, upstream fingerprint, inputs, winnow version, task count) with the one stored
in ``stages/<stage>/stage.json``, and

- skips the stage when the fingerprint matches and every task completed;
- wipes the stage's folders when the fingerprint changed (downstream stages follow, since their
  fingerprint contains this one), then runs it;
- otherwise runs it through datatrove's executor, which skips tasks already marked complete.

After a stage, ``stages/<stage>/stats.json`` records rows in (counted by the readers) and rows out,
rejected and errored per source (counted in the Parquet files), plus datatrove's per-step stats. The
run's ``run.json`` holds the resolved manifest, winnow version, inputs with sizes and checksums, and
output shards with row counts. Every JSON record is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import multiprocess
import pyarrow.parquet as pq
from datatrove.utils.stats import PipelineStats
from rich.progress import track

from winnow.pipeline import remote
from winnow.pipeline.commits import visible_parquet
from winnow.pipeline.executors import ExecutorSession
from winnow.pipeline.funnel import SourceFunnel, connect, count_outcomes, stage_funnel
from winnow.pipeline.intermediates import discard, discarded, is_discarded
from winnow.pipeline.json_records import read_json, write_json
from winnow.pipeline.manifest import STAGE_ORDER, EndpointConfig, Manifest
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import ProgressMonitor
from winnow.pipeline.releases import Release, publish, run_contents
from winnow.pipeline.sources import InputFile, checksum, resolve_inputs
from winnow.pipeline.stages import BUILDERS, Phase, StagePlan
from winnow.pipeline.store import RunStore, StoreError
from winnow.pipeline.version import winnow_version

# datatrove's local executor starts task processes from a forkserver; importing winnow there once
# (instead of in every task process of every phase) saves seconds per phase
multiprocess.get_context("forkserver").set_forkserver_preload(["winnow.pipeline.stages"])


class StageFailed(Exception):
    """A stage's tasks did not all complete; the message says where the logs are and how to resume."""


@dataclass
class StageResult:
    name: str
    skipped: bool
    seconds: float
    funnel: dict[str, SourceFunnel] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageResult]
    release: Release | None = None  # what releases/latest points at after the run (None: not published)
    released_now: bool = False  # False: the release was already current

    @property
    def rows_errored(self) -> int:
        return sum(f.rows_errored for s in self.stages for f in s.funnel.values())


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _input_records(inputs: list[InputFile], previous: dict[str, Any] | None, progress: bool) -> list[dict[str, Any]]:
    """Inputs with checksums: the input's own when known, else the previous run's when path, size and version
    are unchanged, else computed."""
    known = {(r["path"], r["size"], r.get("version")): r.get("checksum") for r in (previous or {}).get("inputs", [])}
    records = []
    for item in track(inputs, description="checksums ", disable=not progress, transient=True):
        record = item.as_dict()
        record["checksum"] = item.checksum or known.get((item.path, item.size, item.version)) or checksum(item)
        records.append(record)
    return records


def _shards(folder: Path, run_dir: Path) -> list[dict[str, Any]]:
    """The committed shards of a stage's dataset folder, with their rows."""
    return [{"path": str(p), "rows": pq.ParquetFile(p).metadata.num_rows} for p in visible_parquet(folder, run_dir)]


def _merge_stats(logs_dir: Path) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Rows in per source (``in:<source>`` counters) and datatrove's merged per-step stats."""
    merged = PipelineStats()
    for path in sorted((logs_dir / "stats").glob("*.json")):
        merged += PipelineStats.from_json(json.loads(path.read_text()))
    steps = [stat.to_dict() for stat in merged.stats]
    rows_in: dict[str, int] = {}
    for step in merged.stats:
        for key, value in step.stats.items():
            if key.startswith("in:"):
                # datatrove loads a counter from JSON as it was written (a plain int, or a dict with its total);
                # only adding two tasks makes it a MetricStats
                total = (
                    value.total
                    if hasattr(value, "total")
                    else value.get("total", 0)
                    if isinstance(value, dict)
                    else value
                )
                rows_in[key[3:]] = rows_in.get(key[3:], 0) + int(total)
    return rows_in, steps


# the standard variables an object store client reads its endpoint and credentials from
STORE_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def secret_env_names(manifest: Manifest) -> list[str]:
    """Environment variables the stages read API keys from, and with an object store output the store's
    (passed to Ray workers)."""
    configs = [getattr(manifest.stages, name) for name in STAGE_ORDER]
    found = [c for c in configs if isinstance(c, EndpointConfig)]
    found += [c.vlm for c in configs if isinstance(getattr(c, "vlm", None), EndpointConfig)]
    names = {c.api_key_env for c in found if c.api_key_env}
    return sorted(names | set(STORE_ENV if manifest.store_url else ()))


@dataclass
class PlannedStage:
    """A stage's plan with the fingerprint its first phase chains from and each phase's fingerprint."""

    name: str
    plan: StagePlan
    base_fp: str
    phase_fps: list[str]


class Runner:
    """Executes one manifest into its run folder."""

    def __init__(
        self,
        manifest: Manifest,
        progress: bool = True,
        verbose: bool = False,
        command: str | None = None,
        publish: bool = True,
        inputs: list[InputFile] | None = None,
    ) -> None:
        """``command``: the command line that resumes this run (recorded in run.json for `winnow status`).
        ``publish``: publish the output as a release of the run folder when the run finishes.
        ``inputs``: process these files instead of the manifest's sources' (a refresh's new inputs)."""
        self.manifest = manifest
        self.run_dir = manifest.run_dir
        self.progress = progress
        self.verbose = verbose
        self.command = command
        self.publish = publish
        self.inputs = inputs
        self.session = ExecutorSession(manifest.executor, manifest.name, verbose, secret_env_names(manifest))
        self.store = RunStore(manifest.store_url) if manifest.store_url else None
        remote.install()

    def run(self) -> RunResult:
        """Run every enabled stage; raises StageFailed if a stage does not complete."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = read_json(self.run_dir / "run.json")
        inputs = resolve_inputs(self.manifest) if self.inputs is None else self.inputs
        record: dict[str, Any] = {
            "name": self.manifest.name,
            "winnow_version": winnow_version(),
            "started_at": datetime.now(UTC).isoformat(),
            "command": self.command,
            "manifest": self.manifest.model_dump(mode="json"),
            "config_hash": fingerprint(self.manifest.model_dump(mode="json")),
            "inputs": _input_records(inputs, previous, self.progress),
            "stages": {},
        }
        write_json(self.run_dir / "run.json", record)
        self._sync()
        results = []
        with self.session:
            for stage in self._planned(inputs, record["inputs"]):
                result = self._run_stage(stage)
                results.append(result)
                record["stages"][stage.name] = {
                    "fingerprint": stage.phase_fps[-1],
                    "seconds": round(result.seconds, 3),
                    "skipped": result.skipped,
                    "outputs": _shards(stage.plan.layout.dataset_dir("data"), self.run_dir),
                }
                write_json(self.run_dir / "run.json", record)
                self._sync()
        record["finished_at"] = datetime.now(UTC).isoformat()
        record["remote_retries"] = remote.retries()  # the driver's own S3 requests (the tasks': stats.json)
        write_json(self.run_dir / "run.json", record)
        self._sync()
        result = RunResult(self.run_dir, results)
        if self.publish and results:
            result.release, result.released_now = self._publish(record)
        return result

    def _sync(self) -> None:
        """With an object store output: upload what the store lacks (StageFailed when it cannot be written)."""
        if self.store is None:
            return
        try:
            self.store.sync(self.run_dir)
        except StoreError as exc:
            raise StageFailed(f"{exc}. Rerun the same `winnow run` command to resume.") from exc

    def _publish(self, record: dict[str, Any]) -> tuple[Release, bool]:
        """Publish the run's output as a full release (it covers exactly this run's inputs)."""
        stages = list(record["stages"])
        shards, dedup = run_contents(stages, self.run_dir)
        run = str(self.run_dir.absolute())
        fingerprints = {name: stage["fingerprint"] for name, stage in record["stages"].items()}
        content_key = fingerprint({"run": run, "stages": fingerprints})
        summary = {"kind": "run", "run": run, "stages": fingerprints, "inputs": record["inputs"]}
        release, released_now = publish(self.run_dir, content_key, shards, dedup, summary)
        if self.store is not None:  # the same release on the store: a manifest of the run's objects
            try:
                sources = [shard.source for shard in shards]
                self.store.publish_release(self.run_dir, release.version, release.manifest, sources)
            except StoreError as exc:
                raise StageFailed(f"{exc}. Rerun the same `winnow run` command to publish.") from exc
        return release, released_now

    def dry_run(self) -> Iterator[str]:
        """Lines describing what `run` would do now: per stage and phase, done / resume / run, and the
        submission (sbatch script, Ray tasks or local tasks). Stages after one that would run are planned
        from the upstream output there is now, so their task inputs may be incomplete."""
        inputs = resolve_inputs(self.manifest)
        previous = read_json(self.run_dir / "run.json")
        # fingerprints only matter against recorded state: a run folder without any runs everything, so its
        # inputs are not read for checksums
        records = _input_records(inputs, previous, progress=False) if previous else [i.as_dict() for i in inputs]
        kind = self.manifest.executor.kind
        yield f"run {self.manifest.name!r} -> {self.run_dir}  executor: {kind}, {len(inputs)} input file(s)"
        for stage in self._planned(inputs, records):
            state = read_json(stage.plan.layout.stage_dir / "stage.json") or {}
            yield f"stage {stage.name}"
            for phase, fp in zip(stage.plan.phases, stage.phase_fps, strict=True):
                tasks = phase.tasks or self.manifest.executor.tasks
                record = (state.get("phases") or {}).get(phase.name) or {}
                steps = " -> ".join(type(step).__name__ for step in phase.steps)
                if record.get("fingerprint") == fp and record.get("completed"):
                    yield f"  {phase.name}: done ({tasks} task(s)), skipped"
                    continue
                layout = self._phase_layout(stage.plan, phase)
                job = self._job_name(stage.plan, phase)
                executor = self.session.executor(
                    phase.steps, tasks, layout.logs_dir, job, self.run_dir, self.manifest.store_url
                )
                if record.get("fingerprint") == fp:
                    verb, incomplete = "resume", len(executor.get_incomplete_ranks())
                else:
                    verb, incomplete = "run", tasks
                yield f"  {phase.name}: {verb}, {incomplete} of {tasks} task(s): {steps}"
                for line in self.session.describe(executor, incomplete).splitlines():
                    yield f"    | {line}"

    def _planned(self, inputs: list[InputFile], input_records: list[dict[str, Any]]) -> Iterator[PlannedStage]:
        """Each enabled stage's plan, in flow order, built when the previous one has been consumed (a plan
        reads its upstream's output files)."""
        upstream: StageLayout | None = None
        upstream_fp = fingerprint(input_records)
        branches: dict[str, str] = {}  # fingerprints of branch stages (ocr), folded in where they enter
        for name in STAGE_ORDER:
            if getattr(self.manifest.stages, name) is None:
                continue
            plan = BUILDERS[name](self.manifest, self.run_dir, inputs, upstream)
            entering = {b: fp for b, fp in branches.items() if self.manifest.ocr_entry() == name}
            if plan.branch:  # a branch depends on its own inputs (in its plan's config), not on the others
                base_fp = fingerprint({"branch": name})
            else:
                base_fp = fingerprint({"upstream": upstream_fp, "branches": entering}) if entering else upstream_fp
            stage = PlannedStage(name, plan, base_fp, self._phase_fingerprints(plan, base_fp))
            yield stage
            if plan.branch:
                branches[name] = stage.phase_fps[-1]
            else:
                upstream_fp, upstream = stage.phase_fps[-1], plan.layout

    def _phase_fingerprints(self, plan: StagePlan, base_fp: str) -> list[str]:
        """A phase's fingerprint chains the previous one's (the first: the upstream stage's) with its own
        configuration, winnow's version, the task count and the shard size, so a changed phase reruns
        with every phase after it, and the phases before it are kept (e.g. new selection settings do
        not rescore)."""
        common = {
            "version": winnow_version(),
            "tasks": self.manifest.executor.tasks,
            "shard_target_mb": self.manifest.shard_target_mb,
        }
        fps, fp = [], base_fp
        for phase in plan.phases:
            config = plan.config if phase.config is None else phase.config
            fp = fingerprint({"upstream": fp, "phase": phase.name, "config": config, **common})
            fps.append(fp)
        return fps

    def _run_stage(self, stage: PlannedStage) -> StageResult:
        """Run the phases whose fingerprint changed or that did not complete. A phase that reruns first
        loses its outputs and its task logs."""
        plan, layout = stage.plan, stage.plan.layout
        state_path = layout.stage_dir / "stage.json"
        state = read_json(state_path) or {}
        phases: dict[str, Any] = state.get("phases") or {}
        gone = discarded(layout.stage_dir)  # this stage's folders deleted once read (intermediates: discard)
        first, rebuild_until = self._first_to_run(stage, phases)
        started = time.monotonic()
        pending: list[tuple[Phase, str | None]] = []  # phases to run, with a job an earlier driver left queued
        for index, (phase, fp) in enumerate(zip(plan.phases, stage.phase_fps, strict=True)):
            record = phases.get(phase.name) or {}
            rebuild = index < rebuild_until  # done, but rerun to write again a folder deleted once read
            if index < first or (not rebuild and record.get("fingerprint") == fp and record.get("completed")):
                continue
            if record.get("fingerprint") != fp or rebuild:
                self._wipe_phase(plan, phase)
                gone -= set(gone if phase.outputs is None else phase.outputs)
                record = {}
            phases[phase.name] = {
                "fingerprint": fp,
                "completed": False,
                "tasks": phase.tasks or self.manifest.executor.tasks,
                "executor": self.manifest.executor.kind,
                "logs": str(self._phase_layout(plan, phase).logs_dir.relative_to(self.run_dir)),
                "driver": {"host": socket.gethostname(), "pid": os.getpid()},
            }
            pending.append((phase, record.get("slurm_job")))

        def save() -> None:
            write_json(
                state_path,
                {
                    "fingerprint": None,
                    "completed": False,
                    "config": plan.config,
                    "phases": phases,
                    "discarded": sorted(gone),
                },
            )

        def completed(phase: Phase) -> None:
            """With ``intermediates: discard``, delete the folders no later phase reads."""
            if self.manifest.intermediates != "discard" or not phase.frees:
                return
            for folder in phase.frees:
                discard(folder)
                if folder.parent == layout.stage_dir:
                    gone.add(folder.name)
            save()

        if pending:
            save()
            self._run_phases(plan, pending, phases, save, completed)
        ran = bool(pending)
        fp = stage.phase_fps[-1]
        if not ran and state.get("completed") and state.get("fingerprint") == fp:
            return StageResult(layout.stage, True, 0.0, self._funnel(layout.stage))
        seconds = time.monotonic() - started
        rows_in, steps = _merge_stats(self._phase_layout(plan, plan.counting_phase).logs_dir)
        with connect(self.run_dir) as con:
            funnel = count_outcomes(con, layout.stage, rows_in)
        write_json(
            layout.stage_dir / "stats.json",
            {
                "stage": layout.stage,
                "seconds": round(seconds, 3),
                "rows_in": rows_in,
                "sources": {s: vars(f) for s, f in funnel.items()},
                "steps": steps,
            },
        )
        attributes = {name: str(dtype) for name, dtype in layout.attributes.items()}
        write_json(
            state_path,
            {
                "fingerprint": fp,
                "completed": True,
                "config": plan.config,
                "phases": phases,
                "attributes": attributes,
                "discarded": sorted(gone),
            },
        )
        return StageResult(layout.stage, False, seconds, funnel)

    def _first_to_run(self, stage: PlannedStage, phases: dict[str, Any]) -> tuple[int, int]:
        """(the first phase that may run, the end of the done phases rerun to rebuild a folder). The first phase
        not done, unless a phase from there reads a folder of this stage deleted once read: then the phase that
        writes that folder, the done phases from it on rerun. One that reads a deleted folder of an earlier stage
        stops the run (StageFailed) saying what to recompute. A stage with every phase done: (its phase count, 0)."""
        plan = stage.plan
        done = [
            (phases.get(p.name) or {}).get("fingerprint") == fp and bool((phases.get(p.name) or {}).get("completed"))
            for p, fp in zip(plan.phases, stage.phase_fps, strict=True)
        ]
        if all(done):
            return len(done), 0
        first = needed = done.index(False)
        moved = True
        while moved:
            moved = False
            for phase in plan.phases[first:]:
                for folder in phase.frees:
                    if not is_discarded(folder):
                        continue
                    writer = next(
                        (
                            i
                            for i, p in enumerate(plan.phases)
                            if folder.parent == plan.layout.stage_dir and folder.name in (p.outputs or ())
                        ),
                        None,
                    )
                    if writer is None:
                        raise StageFailed(self._discarded_message(stage, plan.phases[first], folder))
                    if writer < first:
                        first, moved = writer, True
        return first, needed if first < needed else first

    def _discarded_message(self, stage: PlannedStage, phase: Phase, folder: Path) -> str:
        folder_name = folder.relative_to(self.run_dir).as_posix()
        return (
            f"stage {stage.name!r} must run its phase {phase.name!r} (its settings changed or it did not finish), "
            f"which reads {folder_name}/, deleted once read (intermediates: discard). To recompute it, remove "
            f"{(folder.parent / 'stage.json').relative_to(self.run_dir).as_posix()} and rerun (a stage before it "
            f"whose data/ was deleted too is named the same way), or set intermediates: keep for such changes."
        )

    def _wipe_phase(self, plan: StagePlan, phase: Phase) -> None:
        """Remove what an earlier, different attempt of ``phase`` wrote: its outputs and its task logs."""
        stage_dir = plan.layout.stage_dir
        if phase.outputs is None:  # the phase owns the whole stage folder
            targets = [p for p in stage_dir.iterdir() if p.name != "stage.json"] if stage_dir.is_dir() else []
        else:
            targets = [stage_dir / name for name in phase.outputs]
        logs = self._phase_layout(plan, phase).logs_dir
        for target in targets:
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        shutil.rmtree(logs, ignore_errors=True)
        if self.store is not None:
            try:
                for path in [*targets, logs]:
                    self.store.remove(path.relative_to(self.run_dir).as_posix())
            except StoreError as exc:
                raise StageFailed(str(exc)) from exc

    @staticmethod
    def _phase_layout(plan: StagePlan, phase: Phase) -> StageLayout:
        """Single-phase stages keep their logs in ``logs/<stage>``; others in ``logs/<stage>/<phase>``."""
        return plan.layout if len(plan.phases) == 1 else plan.layout.for_phase(phase.name)

    @staticmethod
    def _job_name(plan: StagePlan, phase: Phase) -> str:
        return plan.layout.stage if len(plan.phases) == 1 else f"{plan.layout.stage}-{phase.name}"

    def _run_phases(
        self,
        plan: StagePlan,
        pending: list[tuple[Phase, str | None]],
        records: dict[str, Any],
        save: Callable[[], None],
        completed: Callable[[Phase], None],
    ) -> None:
        """Run a stage's pending phases in order; raises StageFailed at the first that does not complete.

        On Slurm they are submitted at once as a dependency chain (each phase's job array starts when the
        previous one succeeded; a failed one cancels the rest), after waiting for any job an interrupted
        driver left in the queue; the driver then waits for them one by one.
        """
        executors = []
        for phase, _ in pending:
            layout = self._phase_layout(plan, phase)
            tasks = phase.tasks or self.manifest.executor.tasks
            job = self._job_name(plan, phase)
            executor = self.session.executor(
                phase.steps, tasks, layout.logs_dir, job, self.run_dir, self.manifest.store_url
            )
            executors.append(executor)
        jobs: list[str | None] = [None] * len(pending)
        if self.session.submits_jobs:
            try:
                for _, earlier in pending:
                    if earlier:
                        self.session.wait_for_job(earlier)
                jobs = self.session.submit_chain(executors)
            except Exception as exc:  # ExecutorError: sbatch refused, squeue unreachable
                raise StageFailed(self._failure_message(plan.layout, exc)) from exc
            for (phase, _), job in zip(pending, jobs, strict=True):
                records[phase.name]["slurm_job"] = job
            save()
        for (phase, _), executor, job in zip(pending, executors, jobs, strict=True):
            layout = self._phase_layout(plan, phase)
            label = plan.layout.stage if len(plan.phases) == 1 else f"{plan.layout.stage}:{phase.name}"
            try:
                with ProgressMonitor(label, layout.progress_dir, phase.total_units, self.progress, phase.unit):
                    if self.session.submits_jobs:
                        if job:
                            self.session.wait_for_job(job)
                    else:
                        self.session.run(executor)
            except Exception as exc:  # ExecutorError (the cluster) or an exception raised by the executor itself
                raise StageFailed(self._failure_message(layout, exc)) from exc
            missing = [r for r in range(executor.world_size) if not executor.is_rank_completed(r)]
            if missing:
                raise StageFailed(self._failure_message(layout, f"tasks {missing} did not complete"))
            records[phase.name]["completed"] = True
            save()
            completed(phase)
            self._sync()

    def _funnel(self, stage: str) -> dict[str, SourceFunnel]:
        with connect(self.run_dir) as con:
            return stage_funnel(self.run_dir, con, stage)

    def _failure_message(self, layout: StageLayout, cause: object) -> str:
        return (
            f"stage {layout.stage!r} failed: {cause}. Task logs: {layout.logs_dir / 'logs'}; "
            f"`winnow status {self.run_dir}` lists the failed tasks. Completed tasks are kept; rerun the same "
            f"`winnow run` command to resume."
        )
