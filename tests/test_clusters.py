"""The Slurm and Ray executors for real: a single-node Slurm cluster on localhost (``.ci/slurm_localhost.sh``)
and a local Ray head started here, running the demo manifest through the CLI.

- Slurm and Ray runs produce the same ids, in every stage's data and rejects, as the local executor.
- A Slurm array element cancelled mid-run (``scancel``): the run exits 3, `winnow status` names the
  cancelled task, the rerun submits only what is missing and ends with the undisturbed run's ids.
- Ray workers SIGKILLed mid-run: their ranks are resubmitted, `winnow status` counts them as retried,
  and the output equals the undisturbed run's.
- `winnow run --dry-run` prints the sbatch script and writes nothing (no cluster needed).

Without a cluster the cluster tests skip; CI sets WINNOW_REQUIRE_CLUSTERS=1 so that they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT, WinnowCli, cli_env, winnow_executable
from tests.server_process import free_port
from winnow.pipeline.demo_data import write_demo_warcs

DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
STAGES = ("extract", "heuristics", "dedup")
REQUIRED = os.environ.get("WINNOW_REQUIRE_CLUSTERS") == "1"
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"WINNOW_REQUIRE_CLUSTERS=1 but {reason}")
    pytest.skip(reason)


def run_args(output: Path, inputs: Path, executor: str, *extra: str) -> list[str]:
    sets = [
        f"output={output}",
        f"sources.0.paths=[{inputs}/*.warc.gz]",
        "stages.extract.url_filter.use_integrated_lists=false",
        f"executor={executor}",
    ]
    return ["run", str(DEMO_MANIFEST), *(a for s in sets for a in ("--set", s)), "--no-progress", *extra]


def all_ids(run_dir: Path) -> dict[str, list[str]]:
    """Sorted ids of every stage's data and rejects."""
    ids = {}
    for stage in STAGES:
        for kind in ("data", "rejects"):
            files = sorted((run_dir / "stages" / stage / kind).glob("*.parquet"))
            ids[f"{stage}/{kind}"] = sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist())
    return ids


def finished(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode in (0, 1), f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def status_json(run_dir: Path, winnow_cli: WinnowCli) -> dict[str, dict[str, object]]:
    result = winnow_cli("status", run_dir, "--json")
    assert result.returncode == 0, result.stderr
    return {f"{p['stage']}:{p['phase']}": p for p in json.loads(result.stdout)["phases"]}


def wait_for(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster-demo")
    write_demo_warcs(folder, pages=300, files=2)
    return folder


@pytest.fixture(scope="module")
def long_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two files big enough that an extract task runs for several seconds (time to disturb it)."""
    folder = tmp_path_factory.mktemp("cluster-long")
    write_demo_warcs(folder, pages=1600, files=2)
    return folder


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> Iterator[object]:
    """``local_run(inputs)``: the run folder of an undisturbed local run on ``inputs`` (one per folder)."""
    runs: dict[Path, Path] = {}

    def run(inputs: Path) -> Path:
        if inputs not in runs:
            output = tmp_path_factory.mktemp("local")
            finished(winnow_cli(*run_args(output, inputs, "{kind: local, tasks: 2, workers: 2}"), cwd=output))
            runs[inputs] = output / "demo"
            assert all_ids(runs[inputs])["dedup/data"], "the demo run should keep documents"
        return runs[inputs]

    yield run


@pytest.fixture(scope="module")
def local_ids(local_run: object) -> object:
    """``local_ids(inputs)``: ids of the undisturbed local run on ``inputs``."""
    return lambda inputs: all_ids(local_run(inputs))  # type: ignore[operator]


# ---------------------------------------------------------------- Slurm


@pytest.fixture(scope="module")
def slurm_partition() -> str:
    if shutil.which("sbatch") is None:
        unavailable(
            "no Slurm client here (apt-get install slurmctld slurmd slurm-client munge; .ci/slurm_localhost.sh)"
        )
    result = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    if result.returncode != 0 or " up" not in result.stdout:
        unavailable(f"no Slurm controller answers (SLURM_CONF={os.environ.get('SLURM_CONF')}): {result.stderr.strip()}")
    return result.stdout.split()[0].rstrip("*")


def slurm_executor(partition: str) -> str:
    return f"{{kind: slurm, partition: {partition}, tasks: 2, time: '00:20:00', mem_per_cpu_gb: 1.5, poll_s: 0.5}}"


def test_slurm_run_matches_local(
    slurm_partition: str, demo_inputs: Path, local_ids: object, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    result = finished(winnow_cli(*run_args(tmp_path, demo_inputs, slurm_executor(slurm_partition)), cwd=tmp_path))
    run_dir = tmp_path / "demo"
    assert all_ids(run_dir) == local_ids(demo_inputs)  # type: ignore[operator]
    state = json.loads((run_dir / "stages" / "extract" / "stage.json").read_text())["phases"]["extract"]
    assert state["executor"] == "slurm" and state["slurm_job"]
    assert "#SBATCH --partition=" in (run_dir / "logs" / "extract" / "launch_script.slurm").read_text()
    dedup = json.loads((run_dir / "stages" / "dedup" / "stage.json").read_text())["phases"]
    jobs = [int(dedup[phase]["slurm_job"]) for phase in ("signatures", "urls", "pairs", "clusters", "select")]
    assert jobs == sorted(set(jobs)), "the dedup phases are submitted together, as a chain"
    assert dedup["pairs"]["tasks"] == dedup["urls"]["tasks"] == 8, "one array element per hash partition"
    assert "Release: published v0001" in result.stdout


def slurm_elements(job: str) -> dict[str, str]:
    result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True)
    return dict(line.split() for line in result.stdout.splitlines() if line.strip())


def test_slurm_task_cancelled_then_resumed(
    slurm_partition: str, long_inputs: Path, local_ids: object, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    run_dir = tmp_path / "demo"
    args = run_args(tmp_path, long_inputs, slurm_executor(slurm_partition))
    proc = subprocess.Popen(
        [winnow_executable(), *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = run_dir / "stages" / "extract" / "stage.json"

    def job() -> str | None:
        try:
            return json.loads(state.read_text())["phases"]["extract"].get("slurm_job")
        except (FileNotFoundError, ValueError, KeyError):
            return None

    wait_for(lambda: job() and slurm_elements(job()).get(f"{job()}_1") == "RUNNING", "extract task 1 to run")
    wait_for(lambda: (run_dir / "logs" / "extract" / "logs" / "task_00001.log").exists(), "task 1's log")
    subprocess.run(["scancel", f"{job()}_1"], check=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stdout + stderr
    assert "stage 'extract' failed: tasks [1] did not complete" in stderr

    phases = status_json(run_dir, winnow_cli)
    extract = phases["extract:extract"]
    assert extract["state"] == "failed" and list(extract["failed"]) == ["1"]
    assert "CANCELLED" in extract["failed"]["1"]
    text = winnow_cli("status", run_dir).stdout
    assert "failed extract:extract task 1" in text and "To resume: winnow run" in text

    finished(winnow_cli(*args, cwd=tmp_path))
    assert all_ids(run_dir) == local_ids(long_inputs)  # type: ignore[operator]
    extract = status_json(run_dir, winnow_cli)["extract:extract"]
    assert extract["state"] == "done" and extract["retried"] == [1], "only the cancelled task ran again"


# ---------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray head (2 CPUs, no dashboard, loopback); stopped after the module."""
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        unavailable("ray is not installed (pip install -e '.[ray]')")
    port = free_port()
    env = {**cli_env(), **RAY_ENV}
    command = [str(ray), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    command += ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        unavailable(f"ray start failed: {result.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True, timeout=120)


def ray_cli(winnow_cli: WinnowCli) -> WinnowCli:
    """The CLI with the Ray environment the head was started with."""

    def run(*args: str | os.PathLike[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [winnow_executable(), *map(str, args)],
            cwd=cwd,
            env={**cli_env(), **RAY_ENV},
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


def test_ray_run_matches_local(
    ray_address: str, demo_inputs: Path, local_ids: object, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    executor = f"{{kind: ray, address: '{ray_address}', tasks: 2}}"
    finished(ray_cli(winnow_cli)(*run_args(tmp_path, demo_inputs, executor), cwd=tmp_path))
    assert all_ids(tmp_path / "demo") == local_ids(demo_inputs)  # type: ignore[operator]


def rank_workers() -> list[int]:
    result = subprocess.run(["pgrep", "-f", "ray::RankWorker"], capture_output=True, text=True)
    return [int(pid) for pid in result.stdout.split()]


def test_ray_workers_killed_are_retried(
    ray_address: str, long_inputs: Path, local_ids: object, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    run_dir = tmp_path / "demo"
    executor = f"{{kind: ray, address: '{ray_address}', tasks: 2}}"
    proc = subprocess.Popen(
        [winnow_executable(), *run_args(tmp_path, long_inputs, executor)],
        cwd=tmp_path,
        env={**cli_env(), **RAY_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = run_dir / "logs" / "extract" / "progress"

    def both_tasks_working() -> bool:
        files = list(progress.glob("*.json")) if progress.is_dir() else []
        return len(files) == 2 and all(json.loads(f.read_text() or "{}").get("docs", 0) > 0 for f in files)

    wait_for(both_tasks_working, "both extract tasks to process documents")
    killed = rank_workers()
    assert killed, "no Ray worker process found"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), stdout + stderr
    assert all_ids(run_dir) == local_ids(long_inputs)  # type: ignore[operator]
    extract = status_json(run_dir, winnow_cli)["extract:extract"]
    assert extract["state"] == "done" and extract["retried"] == [0, 1], extract


# ---------------------------------------------------------------- dry run (no cluster needed)


def test_dry_run_prints_the_plan_and_writes_nothing(
    demo_inputs: Path, local_run: object, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    executor = "{kind: slurm, partition: gpu-a, tasks: 3, cpus_per_task: 2, sbatch_args: {account: proj}}"
    result = winnow_cli(*run_args(tmp_path, demo_inputs, executor, "--dry-run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for expected in (
        "stage extract",
        "extract: run, 3 of 3 task(s)",
        "#SBATCH --partition=gpu-a",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --account=proj",
        "#SBATCH --array=0-2",
        f"source {Path(sys.prefix) / 'bin' / 'activate'}",
        "launch_pickled_pipeline",
        "clusters: run, 1 of 1 task(s): DedupClusters",
    ):
        assert expected in result.stdout, expected
    assert not (tmp_path / "demo").exists(), "a dry run writes nothing"

    done = local_run(demo_inputs)  # type: ignore[operator]
    result = winnow_cli(*run_args(done.parent, demo_inputs, "{kind: ray, tasks: 2}", "--dry-run"), cwd=tmp_path)
    assert "extract: done (2 task(s)), skipped" in result.stdout
    assert "select: done (2 task(s)), skipped" in result.stdout
