"""The proxy swarm: which mixtures to try, and one small model trained on each.

Phase ``swarm`` (one task) computes the prior (token shares of the mixed sources' train split, with a
temperature), the epoch caps (no source may be repeated more than ``max_epochs`` times in a final
corpus of ``token_budget`` tokens), checks that some mixture satisfies them, and samples ``runs``
mixtures around the prior: ``swarm/plan.json`` and ``swarm/ratios.parquet``. With ``swarm.results``
it imports another tool's ratios and metrics tables instead, and no proxy is trained.

Phase ``proxies`` runs one task per mixture (local processes, or array jobs on a cluster): it trains
a proxy on the corpus arrays with the run's weights and writes ``swarm/runs/<run_id>.json`` (weights,
loss on every target, training curve, timing) atomically. A run whose record exists is never
retrained. Every run starts from the same seed (common random numbers: the same initial weights and
sampling stream), so the runs differ by their mixture and not by their luck. A run that fails (e.g.
diverges) is retried with a new seed ``retries`` times, then recorded as ``failed`` with the error; the
fit excludes and reports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.mixers.corpus import corpus_dir, load_arrays, read_summary
from winnow.mixers.phase import OneTaskStep
from winnow.mixers.sampling import InfeasibleMixError, check_feasible, epoch_caps, natural_prior, sample_mixtures
from winnow.mixers.swarm_tables import read_swarm, write_swarm
from winnow.pipeline.json_records import write_json
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress


def swarm_dir(layout: StageLayout) -> Path:
    return layout.stage_dir / "swarm"


def run_id(index: int) -> str:
    return f"run{index:04d}"


def proxy_seed(swarm_seed: int, attempt: int) -> int:
    """The seed of a proxy run's ``attempt``: the same for every run of a swarm (common random numbers)."""
    return swarm_seed * 1_000_003 + 7919 * attempt


def read_plan(layout: StageLayout) -> dict[str, Any]:
    return json.loads((swarm_dir(layout) / "plan.json").read_text())


def mix_constraints(config: MixConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Prior, epoch caps and the train tokens they come from, per mixed source (checked to be feasible)."""
    sources = summary["mixed"]
    tokens = np.array([summary["sources"][s].get("train_tokens", 0) for s in sources], dtype=float)
    prior = natural_prior(tokens, config.swarm.temperature)
    caps = epoch_caps(tokens, config.token_budget, config.max_epochs)
    try:
        check_feasible(caps, config.swarm.floor, sources, config.token_budget)
    except InfeasibleMixError as exc:
        raise InfeasibleMixError(f"stages.mix (token_budget, max_epochs, swarm.floor): {exc}") from None
    return {"sources": sources, "tokens": tokens.tolist(), "prior": prior.tolist(), "caps": caps.tolist()}


class PlanSwarm(OneTaskStep):
    """Phase ``swarm`` (one task): ``plan.json`` and the mixtures to train (or the imported results)."""

    name = "🎲 plan swarm"

    def work(self, progress: TaskProgress) -> None:
        plan = mix_constraints(self.config, read_summary(self.layout))
        folder = swarm_dir(self.layout)
        swarm = self.config.swarm
        if swarm.results is not None:
            imported = read_swarm(swarm.results.ratios, swarm.results.metrics, key=swarm.results.key)
            if sorted(imported.sources) != sorted(plan["sources"]):
                raise ValueError(
                    f"stages.mix.swarm.results: the imported ratios mix {', '.join(imported.sources)} but this run "
                    f"mixes {', '.join(plan['sources'])}; rename the columns or set stages.mix.sources to match"
                )
            write_swarm(imported, folder)
            plan["imported"] = True
        else:
            rng = np.random.default_rng(swarm.seed)
            weights = sample_mixtures(
                np.array(plan["prior"]),
                swarm.runs,
                rng,
                concentration=swarm.concentration,
                floor=swarm.floor,
                caps=np.array(plan["caps"]),
            )
            columns = {"run_id": [run_id(i) for i in range(swarm.runs)]}
            columns.update({s: weights[:, j] for j, s in enumerate(plan["sources"])})
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(columns), folder / ".ratios.parquet.tmp")
            os.replace(folder / ".ratios.parquet.tmp", folder / "ratios.parquet")
        write_json(folder / "plan.json", plan)


class TrainProxies(PipelineStep):
    """Phase ``proxies`` (one task per run): train the proxy of mixture ``rank`` unless it has a record."""

    name = "🧪 proxy runs"
    type = "MIX"

    def __init__(self, config: MixConfig, layout: StageLayout) -> None:
        super().__init__()
        self.config = config
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        ratios = pq.read_table(swarm_dir(self.layout) / "ratios.parquet").to_pylist()
        progress = TaskProgress(self.layout.progress_dir, rank)
        for index in range(rank, len(ratios), world_size):
            path = swarm_dir(self.layout) / "runs" / f"{ratios[index]['run_id']}.json"
            if not path.exists():  # a finished (or finally failed) run is never retrained
                with self.track_time():
                    write_json(path, self._train(ratios[index]))
            progress.advance(docs=1)
            progress.next_input(1)  # one run = one unit of the progress bar
        progress.flush()
        return
        yield

    def _train(self, row: dict[str, Any]) -> dict[str, Any]:
        from winnow.mixers.proxy import ProxyConfig, train_proxy  # torch loads only in the processes that train

        summary = read_summary(self.layout)
        weights = {s: float(row[s]) for s in summary["mixed"]}
        train = load_arrays(corpus_dir(self.layout) / "train", [s for s, w in weights.items() if w > 0])
        targets = load_arrays(corpus_dir(self.layout) / "targets", summary["targets"])
        config = ProxyConfig(**self.config.proxy.model_dump())
        record: dict[str, Any] = {"run_id": row["run_id"], "weights": weights, "attempts": []}
        for attempt in range(self.config.swarm.retries + 1):
            seed = proxy_seed(self.config.swarm.seed, attempt)
            try:
                result = train_proxy(train, weights, targets, summary["vocab_size"], config, seed)
            except Exception as exc:  # recorded with the run; the fit excludes and reports failed runs
                record["attempts"].append({"seed": seed, "error": f"{type(exc).__name__}: {exc}"})
                self.stat_update("failed_attempts")
                continue
            self.stat_update("trained")
            record.update(
                status="ok",
                seed=seed,
                losses=result.losses,
                curve=result.curve,
                tokens=result.tokens,
                seconds=round(result.seconds, 3),
                parameters=result.parameters,
                device=result.device,
            )
            return record
        self.stat_update("failed_runs")
        record.update(status="failed", error=record["attempts"][-1]["error"])
        return record
