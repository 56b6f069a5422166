"""Resume and idempotence of ``winnow run``, through the CLI in subprocesses on generated demo data.

The runs switch off datatrove's integrated URL block lists (4.5M domains, several seconds and ~1 GB
per task to load); resume does not depend on them and the tests stay quick. The manifest's own
``extra_domains`` block list still applies.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from winnow.pipeline.demo_data import write_demo_warcs

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
PAGES = 200
INPUT_FILES = 8  # one per task in the interrupted run, so its tasks finish one by one
DATASETS = [(stage, kind) for stage in ("extract", "heuristics") for kind in ("data", "rejects", "errors")]
SKIPPED = "unchanged since the last run, skipped"
MIN_WORDS_NOBODY_HAS = 100_000

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]


def run_args(output: Path, warcs: Path, tasks: int, workers: int, *overrides: str) -> list[str]:
    """Arguments of ``winnow run`` for the demo manifest on ``warcs`` into ``output``."""
    sets = [
        f"output={output}",
        f"sources.0.paths=[{warcs}/*.warc.gz]",
        f"executor.tasks={tasks}",
        f"executor.workers={workers}",
        "stages.extract.url_filter.use_integrated_lists=false",
        *overrides,
    ]
    return ["run", str(DEMO_MANIFEST), *(a for s in sets for a in ("--set", s)), "--no-progress"]


def assert_finished(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode in (0, 1), f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def dataset_ids(run_dir: Path, stage: str, kind: str) -> list[str]:
    files = sorted((run_dir / "stages" / stage / kind).glob("*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def all_ids(run_dir: Path) -> dict[str, list[str]]:
    return {f"{stage}/{kind}": dataset_ids(run_dir, stage, kind) for stage, kind in DATASETS}


def rejects_by_reason(run_dir: Path, stage: str) -> dict[str, str]:
    """``{id: reason}`` of a stage's rejects."""
    out: dict[str, str] = {}
    for f in sorted((run_dir / "stages" / stage / "rejects").glob("*.parquet")):
        table = pq.read_table(f, columns=["id", "reason"])
        out.update(zip(table.column("id").to_pylist(), table.column("reason").to_pylist(), strict=True))
    return out


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def stage_records(run_dir: Path) -> dict[str, dict[str, object]]:
    return json.loads((run_dir / "run.json").read_text())["stages"]


def completions(run_dir: Path) -> set[int]:
    folder = run_dir / "logs" / "extract" / "completions"
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.is_dir() else set()


@pytest.fixture(scope="module")
def resume_warcs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume-input")
    write_demo_warcs(folder, pages=PAGES, files=INPUT_FILES)
    return folder


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, resume_warcs: Path, winnow_cli: WinnowCli) -> Path:
    """An uninterrupted run (tasks=4, workers=2); returns its run folder."""
    output = tmp_path_factory.mktemp("baseline")
    assert_finished(winnow_cli(*run_args(output, resume_warcs, 4, 2), cwd=output))
    run_dir = output / "demo"
    assert dataset_ids(run_dir, "heuristics", "data"), "the baseline run should keep some documents"
    return run_dir


def test_rerun_of_a_finished_run_does_no_work(baseline: Path, resume_warcs: Path, winnow_cli: WinnowCli) -> None:
    """Every stage is reported skipped and no file under stages/ or logs/ is rewritten."""
    before = {name: mtimes(baseline / name) for name in ("stages", "logs")}
    result = winnow_cli(*run_args(baseline.parent, resume_warcs, 4, 2), cwd=baseline.parent)
    assert_finished(result)
    assert f"extract: {SKIPPED}" in result.stdout
    assert f"heuristics: {SKIPPED}" in result.stdout
    assert f"dedup: {SKIPPED}" in result.stdout
    expected = {"extract": True, "heuristics": True, "dedup": True}
    assert {name: r["skipped"] for name, r in stage_records(baseline).items()} == expected
    assert {name: mtimes(baseline / name) for name in ("stages", "logs")} == before


def test_changed_heuristics_setting_reruns_heuristics_only(
    baseline: Path, resume_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    """A heuristics setting changes heuristics' output (and so dedup's input); extract is untouched; going back
    restores it."""
    output = tmp_path / "out"
    shutil.copytree(baseline.parent, output)
    run_dir = output / "demo"
    extract_before = mtimes(run_dir / "stages" / "extract")
    kept_before = dataset_ids(run_dir, "heuristics", "data")
    rejected_before = rejects_by_reason(run_dir, "heuristics")

    change = f"stages.heuristics.gopher_quality.min_doc_words={MIN_WORDS_NOBODY_HAS}"
    result = winnow_cli(*run_args(output, resume_warcs, 4, 2, change), cwd=output)
    assert_finished(result)
    assert f"extract: {SKIPPED}" in result.stdout
    assert f"heuristics: {SKIPPED}" not in result.stdout
    expected = {"extract": True, "heuristics": False, "dedup": False}
    assert {name: r["skipped"] for name, r in stage_records(run_dir).items()} == expected
    assert mtimes(run_dir / "stages" / "extract") == extract_before

    # every document kept before is now too short for gopher_quality; earlier filters decide as before
    assert dataset_ids(run_dir, "heuristics", "data") == []
    rejected_after = rejects_by_reason(run_dir, "heuristics")
    assert {i: rejected_after.get(i) for i in kept_before} == dict.fromkeys(
        kept_before, "gopher_quality:gopher_short_doc"
    )
    earlier = ("language:", "gopher_repetition:")
    assert {i: r for i, r in rejected_after.items() if r.startswith(earlier)} == {
        i: r for i, r in rejected_before.items() if r.startswith(earlier)
    }

    result = winnow_cli(*run_args(output, resume_warcs, 4, 2), cwd=output)
    assert_finished(result)
    assert f"extract: {SKIPPED}" in result.stdout
    assert sorted(dataset_ids(run_dir, "heuristics", "data")) == sorted(kept_before)
    assert rejects_by_reason(run_dir, "heuristics") == rejected_before


def test_sigkill_halfway_then_resume(baseline: Path, resume_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """A run killed between extract tasks resumes to the same ids as an uninterrupted run, once each."""
    output = tmp_path / "out"
    run_dir = output / "demo"
    args = run_args(output, resume_warcs, INPUT_FILES, 1)
    executable = Path(sys.executable).with_name("winnow")
    proc = subprocess.Popen(
        [str(executable), *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not 1 <= len(completions(run_dir)) < INPUT_FILES:
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be interrupted: make the input bigger")
            assert time.monotonic() < deadline, "no extract task completed within 300 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = completions(run_dir)
    assert 1 <= len(done_at_kill) < INPUT_FILES
    assert not (run_dir / "stages" / "heuristics" / "stage.json").exists(), "killed before heuristics started"
    extract_dir = run_dir / "stages" / "extract"
    finished_files = {k: v for k, v in mtimes(extract_dir).items() if any(f"-{r:05d}-" in k for r in done_at_kill)}

    result = winnow_cli(*args, cwd=tmp_path)
    assert_finished(result)
    assert completions(run_dir) == set(range(INPUT_FILES))
    assert all(not r["skipped"] for r in stage_records(run_dir).values())
    after = mtimes(extract_dir)
    assert {k: after.get(k) for k in finished_files} == finished_files, "completed tasks must not be redone"

    resumed, reference = all_ids(run_dir), all_ids(baseline)
    for dataset, ids in resumed.items():
        assert len(ids) == len(set(ids)), f"duplicate ids in {dataset}"
        assert set(ids) == set(reference[dataset]), f"{dataset} differs from the uninterrupted run"
    leftovers = [p for p in (run_dir / "stages").rglob(".*") if p.name.endswith(".tmp")]
    assert leftovers == []
