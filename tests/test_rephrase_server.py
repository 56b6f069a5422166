"""The rephrase stage against a real server process: llama.cpp's, serving a tiny random-weight model.

The test templates (tests/rephrase_templates) carry GBNF grammars that keep the model's output to
the words of the test documents, in the shape each post-processor expects (plain prose after a
prefix; "Question:/Answer:" pairs), so rows are really produced, checked and written. Then the
server is killed mid-run: the run stops (exit 3), the server comes back on the same port, and the
rerun finishes with every document rephrased exactly once, asking the server only what it had not
answered yet.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import WinnowCli, cli_env, winnow_executable
from tests.llm_server import LlamaServer, llama_cpp_available, write_tiny_model
from winnow.pipeline.funnel import connect, token_usage

pytestmark = pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python[server] and gguf are not installed (make installs them)"
)
TEMPLATES = Path(__file__).parent / "rephrase_templates"
WORDS = ["river", "stone", "bridge", "market", "winter", "harbour", "garden", "lantern", "orchard", "meadow"]


def _corpus(path: Path, docs: int) -> Path:
    rng = random.Random(0)
    with path.open("w") as out:
        for i in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(50)) + ".\n\n" + " ".join(WORDS) + "."
            out.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
    return path


def _manifest(tmp_path: Path, url: str, docs: int) -> Path:
    manifest = {
        "name": "rephrased",
        "output": str(tmp_path / "out"),
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "sources": [{"name": "notes", "kind": "jsonl", "paths": [str(_corpus(tmp_path / "docs.jsonl", docs))]}],
        "stages": {
            "extract": None,
            "heuristics": None,
            "dedup": None,
            "rephrase": {
                "endpoint": url,
                "model": "tiny",
                "grammar": True,
                "concurrency": 2,
                "max_retries": 1,
                "templates": [str(TEMPLATES)],
                "routes": [{"templates": ["tiny_prose", "tiny_qa"]}],
            },
        },
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("llm") / "tiny.gguf")


def test_rows_are_made_checked_and_costed(model: Path, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    server = LlamaServer(model, tmp_path / "server.log").start()
    try:
        result = winnow_cli("run", _manifest(tmp_path, server.url, docs=6), "--no-progress")
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "out" / "rephrased"
    with connect(run_dir) as con:
        synthetic = "FROM rephrase WHERE synthetic_of IS NOT NULL"
        rows = con.execute(f"SELECT synthetic_of, style, text, meta {synthetic}").fetchall()
        originals = con.execute("SELECT count(*) FROM rephrase WHERE synthetic_of IS NULL").fetchone()[0]
        rejects = con.execute("SELECT reason FROM rephrase_rejects").fetchall()
    assert originals == 6
    assert len(rows) + len(rejects) == 12 and len(rows) >= 10  # truncation of a random model is possible, rare
    for _, style, text, meta in rows:
        info = json.loads(meta)
        assert info["template"] == style and info["model"] == "tiny" and info["usage"]["completion_tokens"] > 0
        words = set(text.replace("Question:", "").replace("Answer:", "").replace("?", " ").replace(".", " ").split())
        assert words <= set(WORDS)  # the prefix was stripped, the labels are the QA layout's
        if style == "tiny_qa":
            assert text.startswith("Question: ") and "\nAnswer: " in text
    usage = token_usage(run_dir, "rephrase")
    assert set(usage) == {("notes", "tiny_prose"), ("notes", "tiny_qa")}
    assert all(prompt > 0 and completion > 0 for prompt, completion in usage.values())
    inspect = winnow_cli("inspect", run_dir)
    assert "LLM tokens" in inspect.stdout and "tiny_qa" in inspect.stdout
    assert winnow_cli("report", run_dir).returncode == 0
    page = (run_dir / "report.html").read_text()
    assert "id='rephrase'" in page and 'data-chart="rephrase-tokens"' in page and "tiny_qa" in page


def test_a_server_killed_mid_run_then_restarted_rephrases_each_document_once(model: Path, tmp_path: Path) -> None:
    docs = 16
    server = LlamaServer(model, tmp_path / "server.log").start()
    manifest = _manifest(tmp_path, server.url, docs=docs)
    command = [winnow_executable(), "run", str(manifest), "--no-progress"]
    run = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cache = tmp_path / "out" / "rephrased" / "stages" / "rephrase" / "cache"
    deadline = time.monotonic() + 120
    while len(list(cache.rglob("*.json"))) < 4 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    server.kill()
    output, _ = run.communicate(timeout=120)
    answered = len(list(cache.rglob("*.json")))
    assert run.returncode == 3, output  # a stage did not complete: rerun to resume
    assert 4 <= answered < 2 * docs

    again = LlamaServer(model, tmp_path / "server2.log", port=server.port).start()
    try:
        rerun = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
    finally:
        again.stop()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    run_dir = tmp_path / "out" / "rephrased"
    with connect(run_dir) as con:
        made = con.execute("SELECT synthetic_of, style FROM rephrase WHERE synthetic_of IS NOT NULL").fetchall()
        dropped = con.execute("SELECT synthetic_of, style FROM rephrase_rejects").fetchall()
        originals = con.execute("SELECT count(*), count(DISTINCT id) FROM rephrase WHERE synthetic_of IS NULL")
        originals = originals.fetchone()
    jobs = Counter(made + dropped)
    assert len(jobs) == 2 * docs and set(jobs.values()) == {1}  # every (document, template) once, none missing
    assert originals == (docs, docs)
    stats = json.loads((run_dir / "stages" / "rephrase" / "stats.json").read_text())
    merged = {k: v for step in stats["steps"] for k, v in step["stats"].items()}
    counters = {k: v.get("total") if isinstance(v, dict) else v for k, v in merged.items()}
    assert counters["cached_requests"] == answered  # the rerun asked nothing the server had answered
    assert counters["requests"] == 2 * docs - answered
