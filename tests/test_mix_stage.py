"""The whole mix path with tiny settings: tokens -> swarm -> fit -> proposal -> final shards, resume and bad input;
fixed weights (no proxies) and the parallel final writer's independence from the task count.

Sources are real text found on the machine (:mod:`winnow.mixers.local_sources`); proxies are tiny so the
module stays within a few minutes on two cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import WinnowCli
from winnow.mixers.local_sources import write_local_sources
from winnow.pipeline.funnel import connect, stage_funnel
from winnow.pipeline.manifest import Manifest, ManifestError, load_manifest
from winnow.pipeline.runner import Runner, StageFailed

TINY_MIX: dict[str, Any] = {
    "token_budget": 150_000,
    "targets": [{"source": "python_docs"}],
    "holdout": 0.2,
    "vocab_size": 400,
    "swarm": {"runs": 6, "seed": 3},
    "proxy": {
        "d_model": 16,
        "layers": 1,
        "heads": 2,
        "context": 32,
        "batch_size": 8,
        "tokens": 8000,
        "eval_tokens": 2048,
    },
    "regression": {"folds": 2},
    "proposer": {"candidates": 2000, "top_k": 20},
    "final": {"shard_rows": 150},
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_local_sources(tmp_path_factory.mktemp("local-sources"), max_chars=250_000, chunk_chars=600)


def _manifest(output: Path, sources: dict[str, Path], mix: dict[str, Any] | None = None, **overrides: Any) -> Manifest:
    settings = {**TINY_MIX, **(mix or {})}
    return Manifest.model_validate(
        {
            "name": "mix",
            "output": str(output),
            "executor": {"tasks": 2, "workers": 2},
            "sources": [{"name": n, "kind": "jsonl", "paths": [str(p)]} for n, p in sources.items()],
            "stages": {"extract": None, "heuristics": None, "dedup": None, "mix": settings},
            **overrides,
        }
    )


def _final_manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "final" / "_manifest.json").read_text())


def _run_records(run_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "stages" / "mix" / "swarm" / "runs").glob("*.json")}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]) -> Path:
    return Runner(_manifest(tmp_path_factory.mktemp("mix"), sources), progress=False).run().run_dir


def test_final_tokens_per_source_follow_the_proposed_weights(mixed_run: Path, winnow_cli: WinnowCli) -> None:
    manifest = _final_manifest(mixed_run)
    weights = manifest["weights"]
    assert abs(sum(weights.values()) - 1) < 1e-6
    query = "SELECT source, sum(tokens) AS tokens FROM final GROUP BY source ORDER BY source"
    result = winnow_cli("sql", mixed_run, query, "--format", "json")
    assert result.returncode == 0, result.stderr
    written = {row["source"]: row["tokens"] for row in map(json.loads, result.stdout.splitlines())}
    total = sum(written.values())
    assert abs(total - TINY_MIX["token_budget"]) / TINY_MIX["token_budget"] < 0.01
    for source, weight in weights.items():
        assert abs(written.get(source, 0) / total - weight) < 0.01, (source, written, weights)
    # the held-out target split never reaches the final corpus
    with connect(mixed_run) as con:
        splits = con.execute("SELECT DISTINCT mix_split FROM final").fetchall()
    assert splits == [("train",)]


def test_final_shards_are_near_equal_and_match_their_manifest(mixed_run: Path) -> None:
    manifest = _final_manifest(mixed_run)
    shards = sorted((mixed_run / "final").glob("part-*.parquet"))
    assert [s["path"] for s in manifest["shards"]] == [p.name for p in shards]
    rows = [pq.ParquetFile(p).metadata.num_rows for p in shards]
    assert rows == [s["rows"] for s in manifest["shards"]]
    # shard_rows is a target: ceil(rows / shard_rows) shards (counted on the plan's expected rows), each copy
    # placed by a hash, so every shard is near the mean
    target, total = TINY_MIX["final"]["shard_rows"], sum(rows)
    assert len(shards) >= 2
    assert (len(shards) - 1) * target * 0.98 < total <= len(shards) * target * 1.02
    assert all(abs(r - total / len(shards)) <= 0.35 * total / len(shards) for r in rows), rows
    assert manifest["weights_from"] == "fit"
    assert manifest["regression"]["chosen"] in manifest["regression"]["models"]
    assert manifest["swarm"]["runs"] == TINY_MIX["swarm"]["runs"]


def test_mix_stage_accounting_balances(mixed_run: Path) -> None:
    with connect(mixed_run) as con:
        funnel = stage_funnel(mixed_run, con, "mix")
    assert set(funnel) == {"python_code", "python_docs", "c_headers", "licenses"}
    assert all(f.balanced and f.rows_in > 0 for f in funnel.values())


def test_rerun_retrains_nothing_and_a_new_final_seed_only_reshuffles(
    mixed_run: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    output = mixed_run.parent
    before = _run_records(mixed_run)
    first = _final_manifest(mixed_run)
    result = Runner(_manifest(output, sources), progress=False).run()
    assert [s.skipped for s in result.stages] == [True]
    reshuffled = Runner(_manifest(output, sources, {"final": {"shard_rows": 150, "seed": 9}}), progress=False).run()
    assert _run_records(mixed_run) == before  # no proxy retrained, no record rewritten
    second = _final_manifest(reshuffled.run_dir)
    assert second["weights"] == first["weights"]
    assert [s["sha256"] for s in second["shards"]] != [s["sha256"] for s in first["shards"]]


def test_same_seed_gives_identical_final_bytes(mixed_run: Path, sources: dict[str, Path], tmp_path: Path) -> None:
    again = Runner(_manifest(tmp_path, sources, {"final": {"shard_rows": 150, "seed": 9}}), progress=False).run()
    reference = Runner(_manifest(mixed_run.parent, sources, {"final": {"shard_rows": 150, "seed": 9}}), progress=False)
    ref = _final_manifest(reference.run().run_dir)
    assert [s["sha256"] for s in _final_manifest(again.run_dir)["shards"]] == [s["sha256"] for s in ref["shards"]]


def test_report_writes_plots_and_html(mixed_run: Path, winnow_cli: WinnowCli) -> None:
    result = winnow_cli("mix", "report", mixed_run)
    assert result.returncode == 0, result.stderr
    report = mixed_run / "stages" / "mix" / "report"
    for name in ("predicted_vs_actual.png", "weights.png", "loss_curves.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"
    page = (report / "index.html").read_text()
    assert "predicted_vs_actual.png" in page and "Spearman" in page


def test_a_failed_proxy_run_is_excluded_and_reported(mixed_run: Path, sources: dict[str, Path]) -> None:
    runs = mixed_run / "stages" / "mix" / "swarm" / "runs"
    victim = sorted(runs.glob("*.json"))[0]
    record = json.loads(victim.read_text())
    record.update(status="failed", error="ProxyDiverged: loss is nan at step 3")
    del record["losses"]
    victim.write_text(json.dumps(record))
    # a new fit setting reruns the fit (and the final writer) on the existing runs
    result = Runner(_manifest(mixed_run.parent, sources, {"regression": {"folds": 3}}), progress=False).run()
    report = json.loads((result.run_dir / "stages" / "mix" / "fit" / "report.json").read_text())
    assert report["runs"] == TINY_MIX["swarm"]["runs"] - 1
    assert report["failed_runs"] == [{"run_id": record["run_id"], "error": record["error"]}]
    assert _final_manifest(result.run_dir)["swarm"]["failed_runs"] == report["failed_runs"]


def test_a_source_with_no_documents_is_named(tmp_path: Path, sources: dict[str, Path]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with_empty = {**sources, "empty": empty}
    with pytest.raises(StageFailed, match="source 'empty' has no documents left to mix"):
        Runner(_manifest(tmp_path / "out", with_empty), progress=False).run()


def test_an_infeasible_budget_is_explained(tmp_path: Path, sources: dict[str, Path]) -> None:
    mix = {"token_budget": 50_000_000, "max_epochs": 1}
    with pytest.raises(StageFailed, match="max_epochs") as caught:
        Runner(_manifest(tmp_path, sources, mix), progress=False).run()
    assert "token_budget" in str(caught.value)


def test_every_proxy_failing_stops_the_fit_with_a_reason(tmp_path: Path, sources: dict[str, Path]) -> None:
    mix = {"proxy": {**TINY_MIX["proxy"], "lr": 1e9}, "swarm": {"runs": 4, "retries": 0}}
    with pytest.raises(StageFailed, match="proxy runs succeeded"):
        Runner(_manifest(tmp_path, sources, mix), progress=False).run()


def test_imported_swarm_results_skip_training(tmp_path: Path, sources: dict[str, Path]) -> None:
    """Results from another tool (two CSV tables keyed by run id) replace the proxy runs."""
    names = sorted(sources)
    rows = [[1.0 if j == i % len(names) else 0.0 for j in range(len(names))] for i in range(8)]
    rows = [[0.7 * w + 0.3 / len(names) for w in row] for row in rows]
    ratios = pa.table(
        {"run_id": [f"gpu{i}" for i in range(8)], **{n: [r[j] for r in rows] for j, n in enumerate(names)}}
    )
    loss = [3.0 - 0.5 * r[names.index("python_docs")] + 0.1 * r[names.index("c_headers")] for r in rows]
    metrics = pa.table({"run_id": [f"gpu{i}" for i in range(8)], "python_docs": loss})
    pacsv.write_csv(ratios, tmp_path / "ratios.csv")
    pacsv.write_csv(metrics, tmp_path / "metrics.csv")
    results = {"ratios": str(tmp_path / "ratios.csv"), "metrics": str(tmp_path / "metrics.csv")}
    mix = {"swarm": {"runs": 8, "results": results}, "regression": {"folds": 3, "models": ["linear"]}}
    run_dir = Runner(_manifest(tmp_path / "out", sources, mix), progress=False).run().run_dir
    assert not (run_dir / "stages" / "mix" / "swarm" / "runs").exists()
    report = json.loads((run_dir / "stages" / "mix" / "fit" / "report.json").read_text())
    assert report["runs"] == 8
    proposed = report["weights"]["proposed"]
    assert max(proposed, key=proposed.get) == "python_docs"


FIXED_WEIGHTS = {"python_code": 0.3, "python_docs": 0.1, "c_headers": 0.1, "licenses": 0.5}
FIXED_MIX: dict[str, Any] = {
    "token_budget": 800_000,  # licenses' quota (400k tokens) is more than it has: some documents get repeated
    "targets": [],
    "weights": FIXED_WEIGHTS,
    "max_epochs": None,
    "final": {"shard_rows": 400},
}


def _fixed_run(output: Path, sources: dict[str, Path], tasks: int) -> Path:
    manifest = _manifest(output, sources, FIXED_MIX, executor={"tasks": tasks, "workers": 2})
    return Runner(manifest, progress=False).run().run_dir


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]) -> Path:
    return _fixed_run(tmp_path_factory.mktemp("fixed"), sources, tasks=3)


def _final_rows(run_dir: Path) -> dict[str, list[tuple[str, int]]]:
    """(id, mix_copy) of every row, in order, per shard file."""
    return {
        path.name: list(zip(*pq.read_table(path, columns=["id", "mix_copy"]).to_pydict().values(), strict=True))
        for path in sorted((run_dir / "final").glob("part-*.parquet"))
    }


def test_fixed_weights_skip_the_proxies_and_set_the_token_shares(fixed_run: Path, winnow_cli: WinnowCli) -> None:
    mix_dir = fixed_run / "stages" / "mix"
    phases = json.loads((mix_dir / "stage.json").read_text())["phases"]
    assert not {"corpus", "swarm", "proxies", "fit"} & set(phases)
    assert not any((mix_dir / name).exists() for name in ("corpus", "swarm", "fit"))
    manifest = _final_manifest(fixed_run)
    assert manifest["weights_from"] == "manifest" and manifest["weights"] == FIXED_WEIGHTS
    assert manifest["swarm"] is None and manifest["regression"] is None and manifest["predicted_loss"] is None
    with connect(fixed_run) as con:
        written = dict(con.execute("SELECT source, sum(tokens) FROM final GROUP BY source").fetchall())
        largest = dict(
            con.execute("SELECT source, max(tokens) FROM mix WHERE mix_split = 'train' GROUP BY 1").fetchall()
        )
        repeats = con.execute("SELECT count(*) FROM final WHERE mix_copy > 0").fetchone()[0]
    total = sum(written.values())
    assert abs(total - FIXED_MIX["token_budget"]) / FIXED_MIX["token_budget"] < 0.01
    for source, weight in FIXED_WEIGHTS.items():
        assert abs(written[source] / total - weight) < 0.01, (source, written)
        # exact but bounded: below the quota by less than one document
        assert 0 <= weight * FIXED_MIX["token_budget"] - written[source] < largest[source], (source, written)
        assert manifest["sources"][source]["tokens"] == written[source]
    assert repeats > 0 and manifest["sources"]["licenses"]["epochs"] >= 2
    # the HTML report shows the fixed weights; `winnow mix report` says there is no fit to plot
    result = winnow_cli("report", fixed_run)
    assert result.returncode == 0, result.stderr
    assert "stages.mix.weights" in (fixed_run / "report.html").read_text()
    result = winnow_cli("mix", "report", fixed_run)
    assert result.returncode == 2 and "fixed in the manifest" in result.stderr


def test_final_writer_on_1_and_3_tasks_writes_identical_shards(
    fixed_run: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    one_task = _fixed_run(tmp_path, sources, tasks=1)
    rows = _final_rows(one_task)
    assert len(rows) >= 3 and rows == _final_rows(fixed_run)
    shards = [(s["path"], s["rows"], s["tokens"], s["sha256"]) for s in _final_manifest(one_task)["shards"]]
    assert shards == [(s["path"], s["rows"], s["tokens"], s["sha256"]) for s in _final_manifest(fixed_run)["shards"]]
    copies = [row for shard in rows.values() for row in shard]
    assert len(copies) == len(set(copies))  # every (document, copy) once


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"python_code": 0.5, "licenses": 0.4}, "stages.mix.weights: the weights sum to 0.9, not 1"),
        ({"python_code": 0.5, "nowhere": 0.5}, "stages.mix.weights: 'nowhere' is not a mixed source"),
        ({"python_code": 1.5, "licenses": -0.5}, "stages.mix.weights.licenses: Input should be greater than"),
        (None, "stages.mix: targets: at least one target is needed to fit the weights"),
    ],
)
def test_weights_are_validated(tmp_path: Path, sources: dict[str, Path], weights: Any, message: str) -> None:
    mix = {"token_budget": 1000, "weights": weights}
    document = {
        "name": "w",
        "output": str(tmp_path),
        "sources": [{"name": n, "kind": "jsonl", "paths": [str(p)]} for n, p in sources.items()],
        "stages": {"extract": None, "heuristics": None, "dedup": None, "mix": mix},
    }
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(path)
    document["stages"]["mix"] = {**mix, "weights": {"licenses": 1.0}}  # one source, no targets: valid
    assert Manifest.model_validate(document).stages.mix.weights == {"licenses": 1.0}
