"""The quality stage: fastText scores as columns, selection over the whole run, selection reruns without rescoring."""

from __future__ import annotations

import collections
import itertools
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import WinnowCli
from winnow.filters.quality import Cut, nth_tied_id
from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest, QualityConfig
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


def _train(folder: Path, seed: int) -> Path:
    """A small fastText model (labels hq/lq) trained in a fresh process, as winnow trains them."""
    rng = random.Random(seed)
    lines = [f"__label__hq {_mixed_text(rng, 0.9)}" for _ in range(400)]
    lines += [f"__label__lq {_mixed_text(rng, 0.1)}" for _ in range(400)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-c", TRAIN, folder / "train.txt", folder / "q.bin"], check=True)
    return folder / "q.bin"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("quality-model"), seed=3)


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained on other samples: a second classifier that ranks documents differently from ``model``."""
    return _train(tmp_path_factory.mktemp("quality-model-2"), seed=4)


def _corpus(folder: Path, split: int | Sequence[int], docs: int = 900, seed: int = 5, repeated: int = 0) -> list[Path]:
    """``docs`` documents of all qualities as JSONL files, the same ids whatever the split: ``split`` files dealt
    round-robin, or consecutive files of the given sizes. The last ``repeated`` documents repeat earlier texts under
    their own ids, so their scores tie."""
    rng = random.Random(seed)
    texts = [_mixed_text(rng, rng.random()) for _ in range(docs - repeated)]
    texts += [rng.choice(texts) for _ in range(repeated)]
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(texts)]
    if isinstance(split, int):
        parts = [rows[n::split] for n in range(split)]
    else:
        assert sum(split) == docs
        ends = list(itertools.accumulate(split))
        parts = [rows[end - size : end] for size, end in zip(split, ends, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, part in enumerate(parts):
        path = folder / f"part{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
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


RANK_COLUMNS = ("quality_rank", "quality_bucket")


def _outcomes(run_dir: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(kept rows, rejected rows), each sorted: id, the score and rank columns, and for rejects reason and detail."""
    with connect(run_dir) as con:
        names = [d[0] for d in con.execute("SELECT * FROM quality_rejects LIMIT 0").description]
        columns = ", ".join([n for n in names if n.startswith("score_")] + [n for n in RANK_COLUMNS if n in names])
        kept = con.execute(f"SELECT id, {columns} FROM quality").fetchall()
        rejected = con.execute(f"SELECT id, {columns}, reason, detail FROM quality_rejects").fetchall()
    return sorted(kept), sorted(rejected)


def _rule_from_scores(rule: str, rows: list[tuple[Any, ...]], by: int) -> dict[str, Any]:
    """The ``keep`` of ``rule``, placed on a tie of column ``by`` of ``rows`` (every document, annotated): a top
    fraction whose last kept row is the first (by id) of a tied group near the top 30%, or a threshold equal to a
    tied value near the median."""
    counts = collections.Counter(row[by] for row in rows)
    tied = sorted((v for v, n in counts.items() if n >= 2), reverse=True)
    assert tied, "the corpus has no tied scores"
    above = {v: sum(n for w, n in counts.items() if w > v) for v in tied}
    if rule == "threshold":
        value = min(tied, key=lambda v: abs(above[v] - len(rows) / 2))
        return {"threshold": {"score_q": float(value)}}
    value = min(tied, key=lambda v: abs(above[v] - 0.3 * len(rows)))
    wanted = above[value] + 1
    assert round(wanted / len(rows) * len(rows)) == wanted
    return {"top_fraction": wanted / len(rows)}


# rule -> (several classifiers, buckets)
RULES = {
    "top_fraction": (False, None),
    "top_fraction_rank": (True, None),
    "threshold": (False, None),
    "buckets": (True, 4),
}
# layout -> (tasks, files): one file; three even files; one file of 1000 rows and two of 10
LAYOUTS = {"one": (1, 1), "three": (3, 3), "uneven": (3, (1000, 10, 10))}


@pytest.mark.parametrize("rule", list(RULES))
def test_selection_is_global_whatever_the_task_count(
    tmp_path: Path, model: Path, second_model: Path, rule: str
) -> None:
    """Each rule keeps the same documents, and rejects the same ones with the same reasons and details (and the same
    quality_rank and quality_bucket), on 1 task, on 3 tasks, and on 3 tasks over files of 1000, 10 and 10 rows. The
    corpus repeats a third of its texts, so scores tie: a top fraction's cut splits a tied group by id, a threshold
    sits on a tied value, and tied documents share their rank and bucket."""
    several, buckets = RULES[rule]
    classifiers = [{"name": "a", "model": str(model)}, {"name": "b", "model": str(second_model)}]
    quality: dict[str, Any] = {"classifiers": classifiers if several else [{"name": "q", "model": str(model)}]}
    quality.update({"buckets": buckets} if buckets else {})
    docs = 1020
    corpus = {name: _corpus(tmp_path / f"c-{name}", split, docs, repeated=340) for name, (_, split) in LAYOUTS.items()}

    annotated = Runner(_manifest(tmp_path / "one", corpus["one"], quality, tasks=1), progress=False).run()
    every, _ = _outcomes(annotated.run_dir)  # no rule: every document is kept, with its scores and ranks
    by = 3 if several else 1  # the ranked column in an outcome row: score_q, or quality_rank after score_a, score_b
    keep = {"min_bucket": 2} if rule == "buckets" else _rule_from_scores(rule, every, by)
    quality["keep"] = keep

    results = {}
    for name, (tasks, _) in LAYOUTS.items():
        run = Runner(_manifest(tmp_path / name, corpus[name], quality, tasks=tasks), progress=False).run()
        results[name] = _outcomes(run.run_dir)
    stage = tmp_path / "uneven" / "q" / "stages" / "quality"
    assert sorted(pq.ParquetFile(f).metadata.num_rows for f in (stage / "scored").glob("*.parquet")) == [10, 10, 1000]
    written = [f.name for folder in ("data", "rejects") for f in (stage / folder).glob("*.parquet")]
    assert all(any(f"-{rank:05d}-" in n for n in written) for rank in range(3))  # each select task wrote its share

    kept, rejected = results["one"]
    assert results["three"] == results["one"] and results["uneven"] == results["one"]
    assert len(kept) + len(rejected) == docs and len({r[0] for r in kept + rejected}) == docs
    assert 0.2 <= len(kept) / docs <= 0.8
    assert len({r[by] for r in every}) < docs  # scores tie
    reason = {"buckets": "below_min_bucket", "threshold": "below_threshold"}.get(rule, "below_top_fraction")
    assert {r[-2] for r in rejected} == {reason}
    if rule.startswith("top_fraction"):
        assert len(kept) == round(keep["top_fraction"] * docs)
        cut = min(r[by] for r in kept)
        assert cut == max(r[by] for r in rejected)  # the tied group at the cut is split ...
        assert max(r[0] for r in kept if r[by] == cut) < min(r[0] for r in rejected if r[by] == cut)  # ... by id
    elif rule == "threshold":
        minimum = keep["threshold"]["score_q"]
        assert min(r[by] for r in kept) == minimum and max(r[by] for r in rejected) < minimum
        assert sum(r[by] == minimum for r in kept) >= 2  # the tied documents at the threshold are all kept
    else:
        rank, bucket = by, by + 1
        assert all(r[bucket] >= 2 for r in kept) and all(r[bucket] < 2 for r in rejected)
        assert all(r[bucket] == min(int(r[rank] * 4), 3) for r in kept + rejected)
        assert {r[bucket] for r in kept + rejected} == {0, 1, 2, 3}
        by_scores = collections.defaultdict(list)
        for r in kept + rejected:
            by_scores[r[1:by]].append(r[by : by + 2])
        assert any(len(ranks) >= 2 for ranks in by_scores.values())
        assert all(len(set(ranks)) == 1 for ranks in by_scores.values())  # equal scores, equal rank and bucket


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


def test_tied_id_is_found_holding_few_ids(tmp_path: Path) -> None:
    """The n-th id among the rows tied at a cut value is the same when fewer ids than the tie may be held at once
    (passes narrowing by id prefix) as when all are sorted: shared prefixes, an id that is another's prefix, an id
    repeated more often than the hold, non-ASCII ids, and rows off the value in between."""
    rng = random.Random(11)
    tied = ["aa1", "aa2", "aa", "a", "ab", "aé", "b", "aa1", "", "é", "ß", *["zz"] * 7]
    tied += ["".join(rng.choice("ab") for _ in range(rng.randint(1, 6))) for _ in range(60)]
    other = [f"x{i}" for i in range(40)] + ["aa0", "a"]
    rows = [(i, 0.5) for i in tied] + [(i, rng.choice([0.25, 0.75])) for i in other]
    rng.shuffle(rows)
    files = []
    for n in range(3):
        part = rows[n::3]
        files.append(tmp_path / f"part{n}.parquet")
        columns = {"id": [i for i, _ in part], "score_q": pa.array([s for _, s in part], pa.float32())}
        pq.write_table(pa.table(columns), files[-1])
    config = QualityConfig.model_validate(
        {"classifiers": [{"name": "q", "model": "q.bin"}], "keep": {"top_fraction": 0.5}}
    )
    cut = Cut(len(rows), {})
    expected = sorted(tied)
    for held in (len(tied), 3, 1):
        found = [nth_tied_id(files, config, cut, "score_q", np.float32(0.5), n, held) for n in range(1, len(tied) + 1)]
        assert found == expected
