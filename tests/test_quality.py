"""The quality stage: fastText scores as columns, selection over the whole run, selection reruns without rescoring."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WinnowCli
from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.runner import Runner

GOOD = [f"good{i}" for i in range(300)]
BAD = [f"bad{i}" for i in range(300)]

TRAIN = """
import sys, fasttext
model = fasttext.train_supervised(sys.argv[1], epoch=10, wordNgrams=2, dim=16, bucket=50000, thread=1, verbose=0)
model.save_model(sys.argv[2])
"""


def _mixed_text(rng: random.Random, good_share: float, words: int = 60) -> str:
    return " ".join(rng.choice(GOOD) if rng.random() < good_share else rng.choice(BAD) for _ in range(words))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fastText model (labels hq/lq) trained in a fresh process, as winnow trains them."""
    folder = tmp_path_factory.mktemp("quality-model")
    rng = random.Random(3)
    lines = [f"__label__hq {_mixed_text(rng, 0.9)}" for _ in range(400)]
    lines += [f"__label__lq {_mixed_text(rng, 0.1)}" for _ in range(400)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-c", TRAIN, folder / "train.txt", folder / "q.bin"], check=True)
    return folder / "q.bin"


def _corpus(folder: Path, files: int, docs: int = 900, seed: int = 5) -> list[Path]:
    """``docs`` documents of all qualities over ``files`` JSONL files (the same ids whatever the split)."""
    rng = random.Random(seed)
    rows = [{"id": f"d{i}", "text": _mixed_text(rng, rng.random())} for i in range(docs)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(files):
        path = folder / f"part{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[n::files]))
        paths.append(path)
    return paths


def _manifest(output: Path, paths: list[Path], quality: dict[str, Any], tasks: int = 2) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "q",
            "output": str(output),
            "executor": {"kind": "local", "tasks": tasks, "workers": min(tasks, 2)},
            "sources": [{"name": "web", "kind": "jsonl", "paths": [str(p) for p in paths]}],
            "stages": {"extract": None, "heuristics": None, "dedup": None, "quality": quality},
        }
    )


def _kept_ids(run_dir: Path) -> set[str]:
    with connect(run_dir) as con:
        return {row[0] for row in con.execute("SELECT id FROM quality").fetchall()}


def test_top_fraction_is_global_whatever_the_task_count(tmp_path: Path, model: Path) -> None:
    """The top 30% of the whole run is kept: the same documents, within 0.5 points of 30%, with 1 or 3 tasks."""
    quality = {"classifiers": [{"name": "q", "model": str(model)}], "keep": {"top_fraction": 0.3}}
    one = Runner(_manifest(tmp_path / "one", _corpus(tmp_path / "c1", 1), quality, tasks=1), progress=False).run()
    three = Runner(_manifest(tmp_path / "three", _corpus(tmp_path / "c3", 3), quality, tasks=3), progress=False).run()
    kept_one, kept_three = _kept_ids(one.run_dir), _kept_ids(three.run_dir)
    assert abs(len(kept_one) / 900 - 0.3) <= 0.005
    assert kept_one == kept_three
    with connect(one.run_dir) as con:
        lowest_kept = con.execute("SELECT min(score_q) FROM quality").fetchone()[0]
        highest_dropped, reasons = con.execute(
            "SELECT max(score_q), list(DISTINCT reason) FROM quality_rejects"
        ).fetchone()
    assert lowest_kept >= highest_dropped and reasons == ["below_top_fraction"]


def test_new_selection_settings_do_not_rescore(tmp_path: Path, model: Path) -> None:
    """Changing `keep` reruns only the select phase: scored/ is not rewritten and the score phase is kept."""
    paths = _corpus(tmp_path / "c", 2)
    classifiers = [{"name": "q", "model": str(model)}]
    run_dir = (
        Runner(_manifest(tmp_path, paths, {"classifiers": classifiers, "keep": {"top_fraction": 0.5}})).run().run_dir
    )
    scored = {p: p.stat().st_mtime_ns for p in (run_dir / "stages" / "quality" / "scored").glob("*.parquet")}
    assert scored
    state = json.loads((run_dir / "stages" / "quality" / "stage.json").read_text())

    stricter = {"classifiers": classifiers, "keep": {"threshold": {"score_q": 0.8}}}
    result = Runner(_manifest(tmp_path, paths, stricter), progress=False).run()
    after = json.loads((run_dir / "stages" / "quality" / "stage.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in scored} == scored
    assert after["phases"]["score"] == state["phases"]["score"]
    assert after["phases"]["select"]["fingerprint"] != state["phases"]["select"]["fingerprint"]
    assert not result.stages[0].skipped
    with connect(run_dir) as con:
        assert con.execute("SELECT count(*) FROM quality WHERE score_q < 0.8").fetchone()[0] == 0
        details = con.execute("SELECT reason, detail FROM quality_rejects LIMIT 1").fetchone()
        total = con.execute("SELECT (SELECT count(*) FROM quality) + (SELECT count(*) FROM quality_rejects)").fetchone()
    assert details[0] == "below_threshold" and details[1].startswith("score_q=")
    assert total[0] == 900


def test_ensemble_buckets(tmp_path: Path, model: Path) -> None:
    """Two classifiers: quality_rank is the mean of their percent ranks, cut into N equal buckets; min_bucket keeps
    the top ones."""
    paths = _corpus(tmp_path / "c", 1)
    quality = {
        "classifiers": [{"name": "a", "model": str(model)}, {"name": "b", "model": str(model), "label": "lq"}],
        "buckets": 4,
        "keep": {"min_bucket": 2},
    }
    run_dir = Runner(_manifest(tmp_path, paths, quality), progress=False).run().run_dir
    with connect(run_dir) as con:
        rows = con.execute(
            """SELECT score_a, score_b, quality_rank, quality_bucket, kept FROM (
                 SELECT *, true AS kept FROM quality UNION ALL BY NAME SELECT *, false AS kept FROM quality_rejects)"""
        ).fetchall()
    assert len(rows) == 900
    assert all((bucket >= 2) == kept for _, _, _, bucket, kept in rows)
    assert all(bucket == min(int(rank * 4), 3) for _, _, rank, bucket, _ in rows)
    # score_b is P(lq) = 1 - P(hq): the two ranks cancel out, so the ensemble rank sits near the middle
    assert all(abs(a + b - 1) < 1e-3 for a, b, _, _, _ in rows)
    assert all(0.4 <= rank <= 0.6 for _, _, rank, _, _ in rows)


def test_empty_and_huge_documents_are_scored(tmp_path: Path, model: Path) -> None:
    """An empty text and a 10 MB text get scores like any document; nothing errors."""
    rng = random.Random(9)
    huge = _mixed_text(rng, 0.9, words=1_200_000)
    rows = [{"id": "empty", "text": ""}, {"id": "huge", "text": huge}, {"id": "plain", "text": _mixed_text(rng, 0.5)}]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    quality = {"classifiers": [{"name": "q", "model": str(model)}]}
    run_dir = Runner(_manifest(tmp_path, [path], quality), progress=False).run().run_dir
    with connect(run_dir) as con:
        scores = dict(con.execute("SELECT id, score_q FROM quality").fetchall())
        errors = con.execute("SELECT count(*) FROM quality_errors").fetchone()[0]
    assert len(scores) == 3 and errors == 0
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_missing_model_is_refused_before_any_work(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """A model path that does not exist: exit 2 naming the field, and no run folder."""
    paths = _corpus(tmp_path / "c", 1, docs=10)
    data = _manifest(tmp_path / "out", paths, {"classifiers": [{"name": "q", "model": str(tmp_path / "none.bin")}]})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(data.model_dump(mode="json")))
    result = winnow_cli("run", manifest, "--no-progress")
    assert result.returncode == 2
    assert "stages.quality.classifiers[0].model" in result.stderr and "none.bin" in result.stderr
    assert not (tmp_path / "out" / "q").exists()


def test_corrupt_model_is_refused_before_any_work(tmp_path: Path, model: Path, winnow_cli: WinnowCli) -> None:
    """A truncated model file (fastText itself would load it with garbage weights) and a text file: exit 2 naming
    the field and the file, no run folder."""
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    text = tmp_path / "notes.bin"
    text.write_text("not a model\n")
    paths = _corpus(tmp_path / "c", 1, docs=10)
    for bad in (truncated, text):
        data = _manifest(tmp_path / "out", paths, {"classifiers": [{"name": "q", "model": str(bad)}]})
        manifest = tmp_path / "m.json"
        manifest.write_text(json.dumps(data.model_dump(mode="json")))
        result = winnow_cli("run", manifest, "--no-progress")
        assert result.returncode == 2, result.stderr
        assert "stages.quality.classifiers[0].model" in result.stderr and bad.name in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out" / "q").exists()


def test_ensemble_top_fraction_ranks_by_the_mean_rank(tmp_path: Path, model: Path) -> None:
    """Several classifiers and a top fraction: exactly round(f * n) documents, the ones with the highest
    quality_rank."""
    paths = _corpus(tmp_path / "c", 2)
    quality = {
        "classifiers": [{"name": "a", "model": str(model)}, {"name": "b", "model": str(model)}],
        "keep": {"top_fraction": 0.25},
    }
    run_dir = Runner(_manifest(tmp_path, paths, quality), progress=False).run().run_dir
    with connect(run_dir) as con:
        kept = con.execute("SELECT count(*), min(quality_rank) FROM quality").fetchone()
        dropped = con.execute("SELECT count(*), max(quality_rank) FROM quality_rejects").fetchone()
    assert kept[0] == round(0.25 * 900) and dropped[0] == 900 - kept[0]
    assert kept[1] >= dropped[1]
