"""Per-task resource records: every task attempt of a real local run (2 tasks, 2 workers) ends with a record
of its wall seconds, CPU seconds and peak RSS in ``attempts/<rank>.jsonl``, and `winnow status` shows each
phase's CPU-seconds and largest task peak; the peak is reset at a task's start, so a reused worker process
does not report an earlier task's peak."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import WinnowCli
from winnow.pipeline.executors import _peak_rss_mb, _reset_peak_rss


def write_documents(folder: Path, files: int = 4, rows: int = 150) -> None:
    """Parquet documents (some exact copies) in ``files`` files."""
    folder.mkdir(parents=True)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    for f in range(files):
        texts = [
            " ".join(words[(i * 7 + k * (f + 3)) % len(words)] + str(k % 13) for k in range(120)) for i in range(rows)
        ]
        texts[1::10] = texts[0::10][: len(texts[1::10])]
        ids = [f"f{f}-r{i}" for i in range(rows)]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / f"part-{f}.parquet")


@pytest.fixture(scope="module")
def dedup_run(tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> Path:
    """The run folder of a dedup-only run (three phases) on the local executor, 2 tasks and 2 workers."""
    work = tmp_path_factory.mktemp("resources")
    write_documents(work / "docs")
    manifest = {
        "name": "resources",
        "output": str(work / "out"),
        "executor": {"kind": "local", "tasks": 2, "workers": 2},
        "sources": [{"name": "docs", "kind": "parquet", "paths": [str(work / "docs" / "*.parquet")], "id_field": "id"}],
        "stages": {"extract": None, "heuristics": None, "dedup": {}},
    }
    (work / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    result = winnow_cli("run", work / "manifest.yaml", "--no-progress", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "out" / "resources"


def attempt_records(run_dir: Path) -> dict[str, list[list[dict[str, object]]]]:
    """Per phase (``stage:phase``), each task's attempt records, read from the folders stage.json names."""
    found = {}
    state = json.loads((run_dir / "stages" / "dedup" / "stage.json").read_text())
    for phase, record in state["phases"].items():
        folder = run_dir / record["logs"] / "attempts"
        found[f"dedup:{phase}"] = [
            [json.loads(line) for line in (folder / f"{rank:05d}.jsonl").read_text().splitlines()]
            for rank in range(record["tasks"])
        ]
    return found


def test_every_task_records_its_resources_and_status_shows_them(dedup_run: Path, winnow_cli: WinnowCli) -> None:
    phases = attempt_records(dedup_run)
    assert len(phases) >= 3, phases.keys()  # signatures ... select
    assert len(phases["dedup:signatures"]) == len(phases["dedup:select"]) == 2
    reset_works = _reset_peak_rss()
    for name, tasks in phases.items():
        for rank, records in enumerate(tasks):
            assert len(records) == 2, f"{name} task {rank}: expected a start and an end record, got {records}"
            start, end = records
            assert "started" in start and "ended" in end and end["ok"] is True
            assert end["pid"] == start["pid"] and end["ended"] >= start["started"]
            assert 0 < end["wall_s"] <= end["ended"] - start["started"] + 0.01
            assert end["cpu_s"] > 0, f"{name} task {rank} used no CPU: {end}"
            assert 20 < end["peak_rss_mb"] < 8192, f"{name} task {rank}: implausible peak RSS {end}"
            assert end["rss_source"] == ("vmhwm" if reset_works else "ru_maxrss")

    result = winnow_cli("status", dedup_run, "--json")
    assert result.returncode == 0, result.stderr
    status = {f"{p['stage']}:{p['phase']}": p for p in json.loads(result.stdout)["phases"]}
    for name, tasks in phases.items():
        ends = [records[1] for records in tasks]
        assert status[name]["cpu_s"] == pytest.approx(sum(e["cpu_s"] for e in ends), abs=0.01)
        assert status[name]["peak_rss_mb"] == max(e["peak_rss_mb"] for e in ends)
        span = max(e["ended"] for e in ends) - min(records[0]["started"] for records in tasks)
        assert status[name]["wall_s"] == pytest.approx(span, abs=0.01)

    text = winnow_cli("status", dedup_run).stdout
    assert "cpu s" in text and "peak MB" in text
    for name in phases:
        phase = name.split(":")[1]
        row = next(line for line in text.splitlines() if f" {phase} " in line)
        assert f"{status[name]['cpu_s']:,.1f}" in row and f"{status[name]['peak_rss_mb']:,.0f}" in row, row


def test_peak_rss_reset_forgets_an_earlier_peak() -> None:
    if not _reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    block = b"x" * (300 * 2**20)  # written, so every page is resident
    with_block, source = _peak_rss_mb("vmhwm")
    del block
    _reset_peak_rss()
    after_reset, _ = _peak_rss_mb("vmhwm")
    assert source == "vmhwm"
    assert with_block - after_reset > 250, (with_block, after_reset)
