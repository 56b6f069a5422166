"""Fit and propose: from the swarm's results to the mixture the final corpus uses.

Phase ``fit`` (one task) gathers the proxy runs (or the imported tables) into ``swarm/ratios.parquet``
and ``swarm/metrics.parquet``, keeps failed runs out (listed in the report, never used), computes the
objective (the targets' losses, weighted), scores every configured regression by k-fold Spearman,
refits the best on all runs and asks the proposer for the mixture with the lowest predicted loss under
the epoch caps and floor. It writes ``fit/report.json`` (held-out Spearman per model, the chosen one,
prior / uniform / proposed weights with their predicted losses, failed runs) and
``fit/predictions.parquet`` (each run's actual loss next to every model's out-of-fold prediction).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.mixers.phase import OneTaskStep
from winnow.mixers.sampling import project
from winnow.mixers.swarm import read_plan, swarm_dir
from winnow.mixers.swarm_tables import Swarm, read_swarm, write_swarm
from winnow.pipeline.json_records import write_json
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress


class SwarmFailedError(RuntimeError):
    """Too few proxy runs succeeded to fit a regression."""


def fit_dir(layout: StageLayout) -> Path:
    return layout.stage_dir / "fit"


def read_report(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "stages" / "mix" / "fit" / "report.json").read_text())


def gather_runs(layout: StageLayout, sources: list[str]) -> tuple[Swarm, list[dict[str, Any]]]:
    """The successful proxy runs as a Swarm, and the failed runs' records."""
    ratios = pq.read_table(swarm_dir(layout) / "ratios.parquet").to_pylist()
    ok, failed = [], []
    for row in ratios:
        record = json.loads((swarm_dir(layout) / "runs" / f"{row['run_id']}.json").read_text())
        (ok if record["status"] == "ok" else failed).append(record)
    targets = sorted(ok[0]["losses"]) if ok else []
    swarm = Swarm(
        run_ids=[r["run_id"] for r in ok],
        sources=sources,
        weights=np.array([[r["weights"][s] for s in sources] for r in ok]).reshape(len(ok), len(sources)),
        targets=targets,
        losses=np.array([[r["losses"][t] for t in targets] for r in ok]).reshape(len(ok), len(targets)),
    )
    return swarm, failed


class FitMix(OneTaskStep):
    """Phase ``fit`` (one task): regression by k-fold Spearman, then the proposal."""

    name = "📈 fit and propose"

    def work(self, progress: TaskProgress) -> None:
        from winnow.mixers.proposer import propose  # LightGBM and SciPy load only in the task that fits
        from winnow.mixers.regression import select_model

        plan = read_plan(self.layout)
        sources = plan["sources"]
        if plan.get("imported"):
            swarm, failed = (
                read_swarm(swarm_dir(self.layout) / "ratios.parquet", swarm_dir(self.layout) / "metrics.parquet"),
                [],
            )
        else:
            swarm, failed = gather_runs(self.layout, sources)
            write_swarm(swarm, swarm_dir(self.layout))
        order = [swarm.sources.index(s) for s in sources]
        weights = swarm.weights[:, order]
        needed = self.config.regression.folds + 1
        if len(swarm.run_ids) < needed:
            raise SwarmFailedError(
                f"only {len(swarm.run_ids)} of {len(swarm.run_ids) + len(failed)} proxy runs succeeded and the fit "
                f"needs {needed}; see the errors in {swarm_dir(self.layout) / 'runs'} and raise stages.mix.swarm.runs "
                f"or fix the proxy settings"
            )
        objective = swarm.objective({t.source: t.weight for t in self.config.targets})
        model, scores = select_model(
            weights, objective, self.config.regression.models, folds=self.config.regression.folds
        )
        prior, caps = np.array(plan["prior"]), np.array(plan["caps"])
        proposer = self.config.proposer
        proposal = propose(
            model,
            prior,
            np.random.default_rng(proposer.seed),
            caps=caps,
            floor=self.config.swarm.floor,
            candidates=proposer.candidates,
            top_k=proposer.top_k,
            concentration=self.config.swarm.concentration,
            kl_weight=proposer.kl_weight,
        )
        uniform = np.full(len(sources), 1 / len(sources))
        feasible_uniform = project(uniform[None, :], self.config.swarm.floor, caps)[0]
        best = int(np.argmin(objective))
        report = {
            "objective": {t.source: t.weight for t in self.config.targets},
            "runs": len(swarm.run_ids),
            "failed_runs": [{"run_id": r["run_id"], "error": r.get("error")} for r in failed],
            "models": {s.name: {"spearman": round(float(s.spearman), 4)} for s in scores},
            "chosen": model.name,
            "folds": self.config.regression.folds,
            "sources": sources,
            "weights": {
                "proposed": dict(zip(sources, proposal.weights.tolist(), strict=True)),
                "prior": dict(zip(sources, prior.tolist(), strict=True)),
                "uniform": dict(zip(sources, feasible_uniform.tolist(), strict=True)),
                "best_run": dict(zip(sources, weights[best].tolist(), strict=True)),
            },
            "predicted_loss": {
                "proposed": proposal.predicted_loss,
                "prior": float(model.predict(prior[None, :])[0]),
                "uniform": float(model.predict(feasible_uniform[None, :])[0]),
            },
            "best_run": {"run_id": swarm.run_ids[best], "loss": float(objective[best])},
            "caps": dict(zip(sources, caps.tolist(), strict=True)),
            "proposer": {"candidates": proposal.candidates, "top_k": proposal.top_k, "kl_weight": proposer.kl_weight},
        }
        folder = fit_dir(self.layout)
        columns: dict[str, Any] = {"run_id": swarm.run_ids, "actual": objective}
        columns.update({f"predicted_{s.name}": s.oof_predictions for s in scores})
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), folder / ".predictions.parquet.tmp")
        os.replace(folder / ".predictions.parquet.tmp", folder / "predictions.parquet")
        write_json(folder / "report.json", report)
