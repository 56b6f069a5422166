"""The stage registry: for each stage name, how to build its datatrove pipeline from a manifest.

A builder receives the manifest, the run folder, the run's input files and the layout of the
upstream stage (None for the first), and returns a :class:`StagePlan`: the full list of datatrove
steps (``BeginTask``, a reader, the stage's work, ``DocumentWriter``), what the progress bar counts,
and the configuration that decides whether an earlier result can be reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep

from filters.heuristics import heuristic_filters
from filters.language import LanguageAnnotator
from filters.url_filter import url_filter
from pipeline.extract import HtmlExtractor
from pipeline.manifest import ExtractConfig, HeuristicsConfig, Manifest
from pipeline.outcomes import BeginTask, DocumentWriter, StageLayout
from pipeline.readers import StageOutputReader, WarcDocumentReader
from pipeline.sources import InputFile


@dataclass
class StagePlan:
    """Everything the runner needs to execute one stage."""

    layout: StageLayout
    steps: list[PipelineStep]
    config: dict[str, Any]
    total_units: int  # input bytes (archives) or rows (Parquet): what the progress bar counts


def _layout(manifest: Manifest, run_dir: Path, stage: str, upstream: StageLayout | None) -> StageLayout:
    attributes = dict(upstream.attributes) if upstream else {}
    return StageLayout(run_dir, stage, manifest.shard_target_mb * 1024 * 1024, attributes)


def build_extract(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: ExtractConfig = manifest.stages.extract
    layout = _layout(manifest, run_dir, "extract", upstream)
    steps: list[PipelineStep] = [
        BeginTask(layout),
        WarcDocumentReader(inputs, layout),
        *url_filter(config.url_filter, layout),
        HtmlExtractor(config, layout),
        LanguageAnnotator(config.language.model, layout),
        DocumentWriter(layout),
    ]
    # language.min_score only matters to the selection in heuristics: changing it must not re-extract
    settings = config.model_dump(mode="json", exclude={"language": {"min_score"}})
    fingerprint = {"config": settings, "inputs": [(f.path, f.size) for f in inputs]}
    return StagePlan(layout, steps, fingerprint, sum(f.size for f in inputs))


def build_heuristics(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: HeuristicsConfig = manifest.stages.heuristics
    assert upstream is not None, "manifest validation guarantees extract runs before heuristics"
    layout = _layout(manifest, run_dir, "heuristics", upstream)
    files = sorted(upstream.dataset_dir("data").glob("*.parquet"))
    language = (manifest.stages.extract or ExtractConfig()).language
    steps: list[PipelineStep] = [
        BeginTask(layout),
        StageOutputReader(files, layout),
        *heuristic_filters(config, language, layout),
        DocumentWriter(layout),
    ]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    fingerprint = {"config": config.model_dump(mode="json"), "language": language.model_dump(mode="json")}
    return StagePlan(layout, steps, fingerprint, rows)


Builder = Callable[[Manifest, Path, Sequence[InputFile], StageLayout | None], StagePlan]

BUILDERS: dict[str, Builder] = {"extract": build_extract, "heuristics": build_heuristics}
