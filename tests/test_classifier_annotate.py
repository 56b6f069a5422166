"""`winnow classifier annotate` against a real llama.cpp server (tiny random-weight model, tests/llm_server.py):
the score is held to the rubric's scale by the GBNF grammar, labels are written with rationale, model and
template hash, a rerun is answered from the cache, and a server killed mid-run leaves a rerun that labels
every sampled document exactly once, asking the server only for what it had not answered. Sampling is
checked on its own: seeded and stratified by source.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import WinnowCli, cli_env, winnow_executable
from tests.llm_server import LlamaServer, llama_cpp_available, write_tiny_model
from winnow.filters.classifier_annotate import available_rubrics, load_rubric, parse_answer, sample_documents
from winnow.filters.classifier_data import read_labelled, resolve_source
from winnow.pipeline.schema import document_schema

needs_server = pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python[server] and gguf are not installed (make installs them)"
)
WORDS = ["river", "stone", "bridge", "market", "winter", "harbour", "garden", "lantern"]


def _stage(root: Path, counts: dict[str, int]) -> Path:
    """A run folder whose `dedup` stage holds documents of several sources, in winnow's schema."""
    data = root / "run" / "stages" / "dedup" / "data"
    data.mkdir(parents=True)
    rng = random.Random(0)
    rows = [
        {"id": f"{source}-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(30)) + ".", "source": source}
        for source, n in counts.items()
        for i in range(n)
    ]
    rng.shuffle(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=document_schema()), data / "part-0-0.parquet")
    return root / "run"


def test_sample_is_seeded_and_stratified(tmp_path: Path) -> None:
    run = _stage(tmp_path, {"web": 300, "wiki": 90, "forum": 10})
    sources = [resolve_source(str(run), stage="dedup")]
    sample = sample_documents(sources, 40, seed=1)
    by_source = {s: sum(d.source == s for d in sample.documents) for s in ("web", "wiki", "forum")}
    assert by_source == {"web": 30, "wiki": 9, "forum": 1} and dict(sample.per_source) == {
        "web": 300, "wiki": 90, "forum": 10,
    }  # fmt: skip
    assert len({d.id for d in sample.documents}) == 40
    assert [d.id for d in sample_documents(sources, 40, seed=1).documents] == [d.id for d in sample.documents]
    assert [d.id for d in sample_documents(sources, 40, seed=2).documents] != [d.id for d in sample.documents]
    assert len(sample_documents(sources, 1000, seed=1).documents) == 400  # fewer than asked: all of them


def test_rubrics_are_data_and_answers_parse() -> None:
    assert {"fineweb_edu", "general_quality"} <= set(available_rubrics())
    edu = load_rubric("fineweb_edu")
    assert (edu.score_min, edu.score_max) == (0, 5) and len(edu.hash) == 64
    assert "additive" in edu.user.lower() or "points" in edu.user.lower()
    assert load_rubric("general_quality").hash != edu.hash
    assert parse_answer('{"rationale": "clear", "score": 4}', edu) == (4.0, "clear", None)
    assert parse_answer('{"rationale": "x", "score": 9}', edu)[2] == "score 9 outside 0-5"
    assert parse_answer('noise "score": 2 more', edu)[0] == 2.0
    assert parse_answer("no idea", edu)[2] == "no score in the answer"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("llm") / "tiny.gguf")


def _command(run: Path, output: Path, url: str, samples: int) -> list[str]:
    return [
        winnow_executable(), "classifier", "annotate", str(run), "--stage", "dedup", "-o", str(output),
        "--endpoint", url, "--model", "tiny", "--samples", str(samples), "--concurrency", "2", "--retries", "0",
        "--no-progress",
    ]  # fmt: skip


def _rows(output: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.open()]


@needs_server
def test_labels_written_and_cache_honoured(model: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    run = _stage(tmp_path, {"web": 20, "wiki": 10})
    output = tmp_path / "labels.jsonl"
    server = LlamaServer(model, tmp_path / "server.log").start()
    try:
        first = winnow_cli(*_command(run, output, server.url, 12)[1:], timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr
        rows = _rows(output)
        assert "12 requested, 0 from the cache" in first.stdout
        second = winnow_cli(*_command(run, output, server.url, 12)[1:], timeout=600)
    finally:
        server.stop()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 requested, 12 from the cache" in second.stdout
    assert _rows(output) == rows
    edu = load_rubric("fineweb_edu")
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert sorted(r["source"] for r in rows).count("web") == 8
    for row in rows:
        assert row["score"] in {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}, row  # the grammar holds the random model to the scale
        assert isinstance(row["rationale"], str) and row["model"] == "tiny" and row["template_hash"] == edu.hash
        assert row["text"] and row["template"] == "fineweb_edu"
    labelled = read_labelled(output, label_field="score")  # what `train --labels` and `eval --labels` read
    assert len(labelled.texts) == 12 and not labelled.skipped


@needs_server
def test_server_killed_mid_run_rerun_labels_each_document_once(model: Path, tmp_path: Path) -> None:
    samples = 16
    run = _stage(tmp_path, {"web": 40})
    output = tmp_path / "labels.jsonl"
    cache = tmp_path / "labels.jsonl.cache"
    server = LlamaServer(model, tmp_path / "server.log").start()
    command = _command(run, output, server.url, samples)
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while len(list(cache.rglob("*.json"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    server.kill()
    log, _ = process.communicate(timeout=300)
    answered = len(list(cache.rglob("*.json")))
    assert process.returncode == 1 and "rerun to resume" in log, log
    assert 3 <= answered < samples and not output.exists()  # nothing half-written

    again = LlamaServer(model, tmp_path / "server2.log", port=server.port).start()
    try:
        rerun = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=600)
    finally:
        again.stop()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{samples - answered} requested, {answered} from the cache" in rerun.stdout
    rows = _rows(output)
    assert len(rows) == samples and len({r["id"] for r in rows}) == samples  # each document once
    assert len(list(cache.rglob("*.json"))) == samples
