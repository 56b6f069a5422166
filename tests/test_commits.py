"""Commit records and resume inside a task (pipeline/commits.py), through the CLI in subprocesses.

One task reads 10 JSON Lines files in the heuristics stage, so it commits 10 units; the run is
SIGKILLed as soon as the 6th commit record appears. The views of the killed run show exactly the
committed units' rows; the rerun reads the last 4 files only (the reader's ``units_read`` /
``units_resumed`` counters in stats.json) and its output equals an undisturbed run's, row for row.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from winnow.pipeline.commits import committed_files
from winnow.pipeline.funnel import connect, stage_counters

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]
FILES = 10
DOCS_PER_FILE = 400  # enough that one unit takes a while: the kill lands between commits, not after the 7th
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "it",
    "at",
    "from",
    "his",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "had",
    "not",
    "but",
    "river",
    "valley",
    "history",
    "people",
    "city",
    "music",
    "science",
    "water",
    "winter",
    "garden",
    "school",
    "market",
    "village",
    "island",
    "summer",
    "train",
    "station",
    "bridge",
    "museum",
    "library",
    "forest",
    "mountain",
    "harbour",
    "castle",
    "church",
    "theatre",
]


def write_inputs(folder: Path) -> None:
    """10 JSON Lines files of plain English-like documents (seeded, so every run reads the same)."""
    rng = random.Random(19)
    folder.mkdir(parents=True)
    for f in range(FILES):
        with open(folder / f"part-{f:02d}.jsonl", "w") as fh:
            for d in range(DOCS_PER_FILE):
                sentences = [" ".join(rng.choices(WORDS, k=rng.randint(8, 16))).capitalize() + "." for _ in range(12)]
                fh.write(json.dumps({"id": f"{f}-{d}", "text": " ".join(sentences)}) + "\n")


def write_manifest(path: Path, inputs: Path, output: Path) -> Path:
    path.write_text(
        f"name: units\noutput: {output}\nexecutor: {{kind: local, tasks: 1, workers: 1}}\n"
        f"sources:\n  - {{name: docs, kind: jsonl, paths: ['{inputs}/*.jsonl']}}\n"
        "stages:\n  heuristics: {c4: true, fineweb: true}\n  dedup: null\n"
    )
    return path


def commit_records(run_dir: Path) -> list[Path]:
    folder = run_dir / "logs" / "heuristics" / "commits" / "00000"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def outcome_rows(run_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the heuristics stage's views (data: id and text; rejects and errors: id and reason)."""
    with connect(run_dir) as con:
        return {
            "data": con.execute("SELECT id, text FROM heuristics ORDER BY id").fetchall(),
            "rejects": con.execute("SELECT id, reason FROM heuristics_rejects ORDER BY id").fetchall(),
            "errors": con.execute("SELECT id, reason FROM heuristics_errors ORDER BY id").fetchall(),
        }


def reader_counters(run_dir: Path) -> dict[str, int]:
    return stage_counters(run_dir, "heuristics")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("units") / "in"
    write_inputs(folder)
    return folder


@pytest.fixture(scope="module")
def undisturbed(inputs: Path, tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> Path:
    work = tmp_path_factory.mktemp("undisturbed")
    manifest = write_manifest(work / "units.yaml", inputs, work / "out")
    result = winnow_cli("run", manifest, "--no-progress", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "out" / "units"


def test_undisturbed_run_commits_every_input_file(undisturbed: Path) -> None:
    records = [json.loads(p.read_text()) for p in commit_records(undisturbed)]
    assert [r["unit"] for r in records] == [f"f{i:05d}" for i in range(FILES)]
    assert [Path(r["input"]).name for r in records] == [f"part-{i:02d}.jsonl" for i in range(FILES)]
    committed = committed_files(undisturbed)
    rows = outcome_rows(undisturbed)
    assert sum(e["rows"] for e in committed.values()) == sum(len(v) for v in rows.values()) == FILES * DOCS_PER_FILE
    for path, entry in committed.items():  # the record's size and checksum are the file's
        assert (undisturbed / path).stat().st_size == entry["bytes"]
    counters = reader_counters(undisturbed)
    assert (counters["units_read"], counters.get("units_resumed", 0)) == (FILES, 0)
    assert counters["in:docs"] == FILES * DOCS_PER_FILE


def test_task_killed_after_its_6th_commit_resumes_with_the_last_4_files(
    inputs: Path, undisturbed: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    manifest = write_manifest(tmp_path / "units.yaml", inputs, tmp_path / "out")
    run_dir = tmp_path / "out" / "units"
    executable = Path(sys.executable).with_name("winnow")
    proc = subprocess.Popen(
        [str(executable), "run", str(manifest), "--no-progress"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while len(commit_records(run_dir)) < 6:
            if proc.poll() is not None:
                pytest.fail("the run ended before its 6th commit could be seen")
            assert time.monotonic() < deadline, "no 6th commit within 300 s"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(commit_records(run_dir)) == 6, "the kill must land before the 7th commit (units too quick?)"

    # the killed run's views hold the 6 committed files' documents and nothing of the 7th
    with connect(run_dir) as con:
        seen = con.execute(
            "SELECT count(*) FROM (SELECT id FROM heuristics UNION ALL SELECT id FROM heuristics_rejects "
            "UNION ALL SELECT id FROM heuristics_errors)"
        ).fetchone()[0]
    assert seen == 6 * DOCS_PER_FILE

    result = winnow_cli("run", manifest, "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    counters = reader_counters(run_dir)
    assert (counters["units_read"], counters["units_resumed"]) == (4, 6)
    assert counters["in:docs"] == FILES * DOCS_PER_FILE  # the 6 earlier units' counts come from their records
    assert outcome_rows(run_dir) == outcome_rows(undisturbed)
    ids = [row[0] for rows in outcome_rows(run_dir).values() for row in rows]
    assert len(ids) == len(set(ids)) == FILES * DOCS_PER_FILE
    leftovers = sorted(p.name for p in (run_dir / "stages").rglob("*.parquet"))
    assert len(leftovers) == len(committed_files(run_dir)), "every shard on disk is committed"
