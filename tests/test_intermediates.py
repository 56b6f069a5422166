"""``intermediates: discard``: each stage's data/ (and quality's scored/) deleted once read, the same final
corpus and funnel as a run that keeps them, and a later change that needs a deleted folder stopped with what
to recompute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_quality import _corpus, _train
from winnow.pipeline.funnel import connect, stage_funnel
from winnow.pipeline.manifest import Manifest, ManifestError
from winnow.pipeline.runner import Runner, StageFailed

STAGES = ("dedup", "quality", "mix")


def _manifest(
    output: Path | str, corpus: list[Path], model: Path, intermediates: str, top_fraction: float = 0.6
) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "chain",
            "output": str(output),
            "executor": {"tasks": 2, "workers": 2},
            "intermediates": intermediates,
            "sources": [{"name": "web", "kind": "jsonl", "paths": [str(p) for p in corpus]}],
            "stages": {
                "extract": None,
                "heuristics": None,
                "quality": {
                    "classifiers": [{"name": "q", "model": str(model)}],
                    "keep": {"top_fraction": top_fraction},
                },
                "mix": {
                    "token_budget": 20_000,
                    "weights": {"web": 1.0},
                    "vocab_size": 300,
                    "max_epochs": None,
                    "final": {"shard_rows": 100},
                },
            },
        }
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    folder = tmp_path_factory.mktemp("chain-inputs")
    return _corpus(folder / "docs", 3, docs=600, repeated=60), _train(folder, seed=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, inputs: tuple[list[Path], Path]) -> dict[str, Path]:
    corpus, model = inputs
    return {
        mode: Runner(_manifest(tmp_path_factory.mktemp(mode), corpus, model, mode), progress=False).run().run_dir
        for mode in ("keep", "discard")
    }


def _funnels(run_dir: Path) -> dict[str, Any]:
    with connect(run_dir) as con:
        return {stage: {s: vars(f) for s, f in stage_funnel(run_dir, con, stage).items()} for stage in STAGES}


def _shards(run_dir: Path) -> list[tuple[str, int, str]]:
    manifest = json.loads((run_dir / "final" / "_manifest.json").read_text())
    return [(s["path"], s["rows"], s["sha256"]) for s in manifest["shards"]]


def test_discarded_folders_go_and_the_output_and_funnel_stay(runs: dict[str, Path]) -> None:
    keep, discard = runs["keep"], runs["discard"]
    stages = discard / "stages"
    for folder in ("dedup/data", "quality/scored", "quality/data"):
        assert (keep / "stages" / folder).is_dir() and not (stages / folder).exists(), folder
    for folder in ("dedup/index", "dedup/rejects", "quality/rejects", "mix/data"):  # what nothing later replaces
        assert (stages / folder).is_dir(), folder
    assert json.loads((stages / "dedup" / "stage.json").read_text())["discarded"] == ["data"]
    assert json.loads((stages / "quality" / "stage.json").read_text())["discarded"] == ["data", "scored"]
    assert _shards(discard) == _shards(keep) and len(_shards(keep)) >= 2
    funnels = _funnels(discard)
    assert funnels == _funnels(keep)
    assert funnels["dedup"]["web"]["rows_out"] > 0 and funnels["dedup"]["web"]["rows_rejected"] > 0
    for stage in STAGES:
        assert all(
            f["rows_in"] == f["rows_out"] + f["rows_rejected"] + f["rows_errored"] for f in funnels[stage].values()
        )


def test_a_rerun_without_changes_skips_every_stage(runs: dict[str, Path], inputs: tuple[list[Path], Path]) -> None:
    corpus, model = inputs
    result = Runner(_manifest(runs["discard"].parent, corpus, model, "discard"), progress=False).run()
    assert [s.skipped for s in result.stages] == [True] * len(STAGES)
    assert _shards(runs["discard"]) == _shards(runs["keep"])


def test_a_change_that_needs_a_discarded_folder_says_what_to_recompute(
    tmp_path: Path, inputs: tuple[list[Path], Path]
) -> None:
    corpus, model = inputs
    Runner(_manifest(tmp_path, corpus, model, "discard"), progress=False).run()
    changed = _manifest(tmp_path, corpus, model, "discard", top_fraction=0.4)
    # a new cut reruns quality's select, which needs scored/ (deleted): so its score phase, which reads dedup's
    # data/ (deleted): the run stops before touching anything, naming the folder and the record to remove
    with pytest.raises(StageFailed, match=r"reads stages/dedup/data/, deleted once read .* remove stages/dedup/stage"):
        Runner(changed, progress=False).run()
    assert (tmp_path / "chain" / "stages" / "quality" / "rejects").is_dir()
    (tmp_path / "chain" / "stages" / "dedup" / "stage.json").unlink()
    run_dir = Runner(changed, progress=False).run().run_dir
    funnel = _funnels(run_dir)["quality"]["web"]
    assert funnel["rows_out"] == round(0.4 * funnel["rows_in"])
    assert json.loads((run_dir / "stages" / "quality" / "stage.json").read_text())["discarded"] == ["data", "scored"]


def test_discard_is_refused_on_an_object_store(inputs: tuple[list[Path], Path]) -> None:
    corpus, model = inputs
    with pytest.raises((ManifestError, ValueError), match="intermediates: discard is for runs on a file system"):
        _manifest("s3://bucket/runs", corpus, model, "discard")
