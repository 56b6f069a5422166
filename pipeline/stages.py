"""The stage registry: for each stage name, how to build its datatrove pipelines from a manifest.

A builder receives the manifest, the run folder, the run's input files and the layout of the
upstream stage (None for the first), and returns a :class:`StagePlan`: one or more
:class:`Phase` (a full datatrove pipeline — ``BeginTask``, a reader, the stage's work, usually
``DocumentWriter`` — with its task count and what its progress bar counts) and the configuration
that decides whether an earlier result can be reused. Most stages have one phase; dedup has five
(signatures over all tasks, URL repeats and pairs one task per hash partition, clustering in one task
over the pairs, selection over all tasks).

Document stages read the upstream stage's output plus the files of every document source (JSONL,
Parquet) that enters the flow at that stage (``sources[].enter``). The OCR stage is a branch: it reads
the PDF sources, and its output enters the flow at ``stages.ocr.enter`` (default: dedup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.pipeline.base import PipelineStep

from winnow.extract.stage import HtmlExtractor, prerejection_floor
from winnow.filters.decontam import ATTRIBUTES as DECONTAM_ATTRIBUTES
from winnow.filters.dedup import DedupSelect, DedupSignatures
from winnow.filters.dedup_clusters import DedupClusters
from winnow.filters.dedup_pairs import DedupPairs, DedupUrls
from winnow.filters.heuristics import heuristic_filters
from winnow.filters.language import LanguageAnnotator
from winnow.filters.multilingual import ATTRIBUTES as LANGUAGE_ATTRIBUTES
from winnow.filters.multilingual import used_files
from winnow.filters.pii import ATTRIBUTES as PII_ATTRIBUTES
from winnow.filters.quality import QualityCut, QualityScorer, QualitySelect
from winnow.filters.url_filter import url_filter
from winnow.mixers.corpus import BuildCorpus
from winnow.mixers.final_writer import PickFinal, PlanFinal, PublishFinal, ScanFinal, ScatterFinal, WriteFinal
from winnow.mixers.fit import FitMix
from winnow.mixers.swarm import PlanSwarm, TrainProxies
from winnow.mixers.tokens import (
    TOKEN_ATTRIBUTES,
    CountTokens,
    SampleTokenizerText,
    TrainTokenizer,
    file_sha256,
)
from winnow.ocr.stage import PdfReader
from winnow.pipeline.commits import visible_parquet
from winnow.pipeline.manifest import (
    DedupConfig,
    DocumentSource,
    ExtractConfig,
    HeuristicsConfig,
    Manifest,
    ManifestError,
    MixConfig,
    OcrConfig,
    PdfSource,
    QualityConfig,
    RephraseConfig,
    WarcSource,
)
from winnow.pipeline.outcomes import BeginTask, DocumentWriter, StageLayout
from winnow.pipeline.preflight import preflight as preflight  # re-exported: it lived here
from winnow.pipeline.readers import DocumentFile, DocumentReader, WarcDocumentReader
from winnow.pipeline.rephrase.templates import load_templates
from winnow.pipeline.sources import InputFile


@dataclass
class Phase:
    """One datatrove pipeline of a stage."""

    name: str
    steps: list[PipelineStep]
    total_units: int  # input bytes (archives), rows (Parquet) or steps: what the progress bar counts
    tasks: int | None = None  # None: the executor's task count
    config: dict[str, Any] | None = None  # what this phase's result depends on; None: the stage's whole config
    outputs: tuple[str, ...] | None = None  # folders of the stage it writes; None: the whole stage folder
    counts_input: bool = False  # its readers count ``in:<source>`` (default: the last phase does)
    unit: str = "docs"  # what its progress bar counts: documents read, or its own steps or runs
    frees: tuple[Path, ...] = ()  # dataset folders no later phase reads (``intermediates: discard`` deletes them)


@dataclass
class StagePlan:
    """Everything the runner needs to execute one stage."""

    layout: StageLayout
    phases: list[Phase]
    config: dict[str, Any]
    branch: bool = False  # its documents join the flow at a later stage (ocr), not at the next one

    @property
    def counting_phase(self) -> Phase:
        """The phase whose readers count ``in:<source>``: the one marked so, else the last."""
        return next((p for p in self.phases if p.counts_input), self.phases[-1])


def _layout(
    manifest: Manifest,
    run_dir: Path,
    stage: str,
    upstream: StageLayout | None,
    added: dict[str, pa.DataType] | None = None,
) -> StageLayout:
    attributes = dict(upstream.attributes) if upstream else {}
    attributes.update(added or {})
    return StageLayout(run_dir, stage, manifest.shard_target_mb * 1024 * 1024, attributes)


def document_files(
    manifest: Manifest, run_dir: Path, stage: str, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> list[DocumentFile]:
    """What a document stage reads, in a fixed order: the upstream output, the OCR stage's output when
    it enters here (their committed shards), then entering sources' files."""
    upstream_files = visible_parquet(upstream.dataset_dir("data"), run_dir) if upstream else []
    files = [DocumentFile.of_stage(p) for p in upstream_files]
    if manifest.ocr_entry() == stage:
        files += [DocumentFile.of_stage(p) for p in visible_parquet(run_dir / "stages" / "ocr" / "data", run_dir)]
    sources = {s.name: s for s in manifest.sources}
    for item in inputs:
        source = sources[item.source]
        if isinstance(source, DocumentSource) and manifest.entry_stage(source) == stage:
            files.append(DocumentFile.of_source(item, source))
    return files


def upstream_folders(manifest: Manifest, run_dir: Path, stage: str, upstream: StageLayout | None) -> tuple[Path, ...]:
    """The stage outputs :func:`document_files` reads for ``stage``: the upstream's ``data/`` and the OCR
    stage's when it enters here (what the stage's last reading phase frees)."""
    folders = [upstream.dataset_dir("data")] if upstream else []
    if manifest.ocr_entry() == stage:
        folders.append(run_dir / "stages" / "ocr" / "data")
    return tuple(folders)


def native_attributes(files: Sequence[DocumentFile]) -> dict[str, pa.DataType]:
    """Attribute columns carried in by source files that are already in winnow's schema."""
    return {name: pa.type_for_alias(dtype) for f in files for name, dtype in f.attributes}


def _fingerprint_files(files: Sequence[DocumentFile]) -> list[tuple[str, int]]:
    return [(f.path, f.units) for f in files if f.format != "stage"]  # stage outputs are covered by upstream's


def build_ocr(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: OcrConfig = manifest.stages.ocr
    layout = _layout(manifest, run_dir, "ocr", None)
    sources = {s.name: s for s in manifest.sources if isinstance(s, PdfSource)}
    pdfs = [f for f in inputs if f.source in sources]
    crawls = {name: s.crawl for name, s in sources.items() if s.crawl}
    steps: list[PipelineStep] = [BeginTask(layout), PdfReader(pdfs, config, layout, crawls), DocumentWriter(layout)]
    # where the documents go next, and the worker's limits, do not change what a PDF gives
    settings = config.model_dump(mode="json", exclude={"enter", "timeout_s", "memory_limit_mb"})
    fingerprint = {"config": settings, "crawls": crawls, "inputs": [(f.path, f.size, f.version) for f in pdfs]}
    return StagePlan(layout, [Phase("ocr", steps, len(pdfs))], fingerprint, branch=True)


def build_extract(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: ExtractConfig = manifest.stages.extract
    layout = _layout(manifest, run_dir, "extract", upstream)
    archives = {s.name for s in manifest.sources if isinstance(s, WarcSource)}
    warcs = [f for f in inputs if f.source in archives]
    min_words = prerejection_floor(config, manifest.stages.heuristics)  # too_few_words below
    steps: list[PipelineStep] = [
        BeginTask(layout),
        WarcDocumentReader(warcs, layout),
        *url_filter(config.url_filter, layout),
        HtmlExtractor(config, layout, resolve_revisits=manifest.stages.dedup is not None, min_words=min_words),
        LanguageAnnotator(config.language.model, layout),
        DocumentWriter(layout),
    ]
    # language.min_score only matters to the selection in heuristics: changing it must not re-extract
    settings = config.model_dump(mode="json", exclude={"language": {"min_score"}})
    fingerprint = {
        "config": settings,
        "inputs": [(f.path, f.size) for f in warcs],
        "revisits_to_dedup": manifest.stages.dedup is not None,
        "min_words": min_words,
    }
    return StagePlan(layout, [Phase("extract", steps, sum(f.size for f in warcs))], fingerprint)


def build_heuristics(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: HeuristicsConfig = manifest.stages.heuristics
    files = document_files(manifest, run_dir, "heuristics", inputs, upstream)
    added = native_attributes(files) | (DECONTAM_ATTRIBUTES if config.decontam else {})
    if config.multilingual is not None:
        added |= LANGUAGE_ATTRIBUTES
    if config.pii is not None and config.pii.enabled:
        added |= PII_ATTRIBUTES
    layout = _layout(manifest, run_dir, "heuristics", upstream, added)
    language = (manifest.stages.extract or ExtractConfig()).language
    steps: list[PipelineStep] = [
        BeginTask(layout),
        DocumentReader(files, layout),
        *heuristic_filters(config, language, layout),
        DocumentWriter(layout),
    ]
    fingerprint = {
        "config": config.model_dump(mode="json"),
        "language": language.model_dump(mode="json"),
        "inputs": _fingerprint_files(files),
    }
    if config.decontam:  # the evaluation sets' content, not only their paths
        fingerprint["decontam_sets"] = [file_sha256(Path(s.path)) for s in config.decontam.sets]
    if config.multilingual is not None:  # the settings files' content
        fingerprint["language_configs"] = [(p.name, file_sha256(p)) for p in used_files(config.multilingual)]
    frees = upstream_folders(manifest, run_dir, "heuristics", upstream)
    return StagePlan(layout, [Phase("heuristics", steps, sum(f.units for f in files), frees=frees)], fingerprint)


def build_dedup(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: DedupConfig = manifest.stages.dedup
    files = document_files(manifest, run_dir, "dedup", inputs, upstream)
    layout = _layout(manifest, run_dir, "dedup", upstream, {**native_attributes(files), "dup_count": pa.int64()})
    if config.prefer is not None and config.prefer not in layout.attributes:
        available = ", ".join(a for a in layout.attributes if a != "dup_count") or "none"
        raise ManifestError(
            f"stages.dedup.prefer: no column {config.prefer!r} reaches dedup (attribute columns available: {available})"
        )
    rows = sum(f.units for f in files)
    signatures = layout.for_phase("signatures")
    clusters = layout.for_phase("clusters")
    select = layout.for_phase("select")
    threads = config.threads or manifest.executor.threads
    earlier = manifest.stages.enabled()[: manifest.stages.enabled().index("dedup")]
    outcomes = [run_dir / "stages" / stage / dataset for stage in earlier for dataset in ("rejects", "errors")]
    # the partition count shapes the index's files, so it is part of the signatures' (and later phases') config;
    # memory and threads change how, not what
    settings = config.model_dump(mode="json", exclude={"memory_limit", "threads", "partitions"})
    stage_config = {"config": settings, "inputs": _fingerprint_files(files)}
    partitions = config.partitions
    task_threads = manifest.executor.task_threads
    phases = [
        Phase(
            "signatures",
            [
                BeginTask(signatures, datasets=()),
                DocumentReader(files, signatures, record=False),
                DedupSignatures(config, signatures),
            ],
            rows,
            config=stage_config | {"partitions": partitions},
            outputs=("index",),
        ),
        Phase(
            "urls",
            [DedupUrls(config, layout.for_phase("urls"), task_threads)],
            partitions,
            tasks=partitions,
            outputs=("pairs/url",),
            unit="steps",
        ),
        Phase(
            "pairs",
            [DedupPairs(config, layout.for_phase("pairs"), task_threads)],
            partitions,
            tasks=partitions,
            outputs=("pairs/edges",),
            unit="steps",
        ),
        Phase(  # input: the pairs and the documents they name, bounded by the duplicates
            "clusters",
            [DedupClusters(config, clusters, threads, outcomes)],
            5,
            tasks=1,
            outputs=("clusters", "decisions"),
            unit="steps",
        ),
        Phase(
            "select",
            [BeginTask(select), DocumentReader(files, select), DedupSelect(select), DocumentWriter(select)],
            rows,
            outputs=("data", "rejects", "errors"),
            frees=upstream_folders(manifest, run_dir, "dedup", upstream),
        ),
    ]
    return StagePlan(layout, phases, stage_config)


def build_quality(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: QualityConfig = manifest.stages.quality
    files = document_files(manifest, run_dir, "quality", inputs, upstream)
    scores = {f"score_{c.name}": pa.float32() for c in config.classifiers}
    ranks = {"quality_rank": pa.float32()} if config.ranked else {}
    ranks.update({"quality_bucket": pa.int64()} if config.buckets else {})
    layout = _layout(manifest, run_dir, "quality", upstream, {**native_attributes(files), **scores, **ranks})
    scoring = replace(layout, attributes={k: v for k, v in layout.attributes.items() if k not in ranks}, phase="score")
    cutting, selecting = layout.for_phase("cut"), layout.for_phase("select")
    threads = manifest.executor.threads
    score_config = {
        "classifiers": [c.model_dump(mode="json") for c in config.classifiers],
        "inputs": _fingerprint_files(files),
    }
    select_config = config.model_dump(mode="json", include={"buckets", "keep"})
    phases = [
        Phase(
            "score",
            [
                BeginTask(scoring, datasets=("scored", "errors")),
                DocumentReader(files, scoring),
                QualityScorer(config.classifiers, scoring, manifest.executor.task_threads),
                DocumentWriter(scoring, dataset="scored"),
            ],
            sum(f.units for f in files),
            config=score_config,
            outputs=("scored", "errors"),
            counts_input=True,
            frees=upstream_folders(manifest, run_dir, "quality", upstream),
        ),
        Phase(  # reads the score columns only: bounded by the documents x a few bytes, not their text
            "cut",
            [QualityCut(config, cutting, config.memory_limit, threads)],
            1,
            tasks=1,
            config=select_config,
            outputs=("cut",),
        ),
        Phase(
            "select",
            [BeginTask(selecting, datasets=("data", "rejects")), QualitySelect(config, selecting)],
            manifest.executor.tasks,
            config=select_config,
            outputs=("data", "rejects"),
            frees=(layout.dataset_dir("scored"),),
        ),
    ]
    return StagePlan(layout, phases, {"score": score_config, "select": select_config})


def build_rephrase(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    from winnow.pipeline.rephrase.step import Rephraser  # openai's client: imported only by runs that rephrase

    config: RephraseConfig = manifest.stages.rephrase
    files = document_files(manifest, run_dir, "rephrase", inputs, upstream)
    layout = _layout(manifest, run_dir, "rephrase", upstream, native_attributes(files))
    for i, route in enumerate(config.routes):
        if route.column is not None and route.column not in layout.attributes:
            available = ", ".join(layout.attributes) or "none"
            raise ManifestError(
                f"stages.rephrase.routes[{i}].column: no column {route.column!r} reaches rephrase "
                f"(attribute columns available: {available})"
            )
    steps: list[PipelineStep] = [
        BeginTask(layout),
        DocumentReader(files, layout),
        Rephraser(config, layout),
        DocumentWriter(layout),
    ]
    # how fast and how patiently the server is asked does not change the answers (the cache survives)
    settings = config.model_dump(mode="json", exclude={"concurrency", "timeout_s", "max_retries", "api_key_env"})
    templates = {t.id: t.hash for t in load_templates(config.templates).values()}
    fingerprint = {"config": settings, "templates": templates, "inputs": _fingerprint_files(files)}
    frees = upstream_folders(manifest, run_dir, "rephrase", upstream)
    phase = Phase("rephrase", steps, sum(f.units for f in files), outputs=("data", "rejects", "errors"), frees=frees)
    return StagePlan(layout, [phase], fingerprint)


def build_mix(
    manifest: Manifest, run_dir: Path, inputs: Sequence[InputFile], upstream: StageLayout | None
) -> StagePlan:
    config: MixConfig = manifest.stages.mix
    files = document_files(manifest, run_dir, "mix", inputs, upstream)
    layout = _layout(manifest, run_dir, "mix", upstream, {**native_attributes(files), **TOKEN_ATTRIBUTES})
    mixed = config.sources or [s.name for s in manifest.sources]
    threads = manifest.executor.threads
    executor = manifest.executor
    # threads of one task of an all-task phase (DuckDB, the token encoder): on this machine the workers share
    # its cores
    task_threads = max(1, threads // min(executor.tasks, executor.workers)) if executor.kind == "local" else threads
    rows = sum(f.units for f in files)
    tokenizer_config = config.model_dump(mode="json", include={"tokenizer", "vocab_size", "tokenizer_sample_mb"})
    if config.tokenizer:
        tokenizer_config["sha256"] = file_sha256(Path(config.tokenizer))
    count_config = {
        "mixed": mixed,
        "targets": [t.source for t in config.targets],
        "holdout": config.holdout,
        "inputs": _fingerprint_files(files),
    }
    swarm_config = config.model_dump(mode="json", include={"swarm", "token_budget", "max_epochs"})
    if config.swarm.results:
        swarm_config["imported"] = [
            file_sha256(Path(p)) for p in (config.swarm.results.ratios, config.swarm.results.metrics)
        ]
    phases = []
    if not config.tokenizer:  # the BPE's sample, in every task: by a hash of the id, whatever the files
        sample_config = tokenizer_config | {"inputs": _fingerprint_files(files)}
        phases.append(
            Phase(
                "tokenizer-sample",
                [SampleTokenizerText(config, files, layout.for_phase("tokenizer-sample"))],
                rows,
                config=sample_config,
                outputs=("tokenizer-sample",),
            )
        )
    phases += [
        Phase(
            "tokenizer",
            [TrainTokenizer(config, layout.for_phase("tokenizer"))],
            1,
            tasks=1,
            config=tokenizer_config,
            outputs=("tokenizer.json",),
        ),
        Phase(
            "count",
            [
                BeginTask(layout.for_phase("count")),
                DocumentReader(files, layout.for_phase("count")),
                CountTokens(config, mixed, layout.for_phase("count"), task_threads),
                DocumentWriter(layout.for_phase("count")),
            ],
            rows,
            config=count_config,
            outputs=("data", "rejects", "errors"),
            counts_input=True,
            frees=upstream_folders(manifest, run_dir, "mix", upstream),
        ),
    ]
    if config.weights is None:  # fitted weights: proxy corpus, swarm, proxies, fit
        phases += [
            Phase(
                "corpus",
                [BuildCorpus(config, mixed, layout.for_phase("corpus"), threads)],
                1,
                tasks=1,
                config={"proxy_data_tokens": config.proxy_data_tokens, "eval_tokens": config.proxy.eval_tokens},
                outputs=("corpus",),
            ),
            Phase(
                "swarm",
                [PlanSwarm(config, layout.for_phase("swarm"))],
                1,
                tasks=1,
                config=swarm_config,
                outputs=("swarm",),
                unit="steps",
            ),
        ]
        if config.swarm.results is None:
            phases.append(
                Phase(
                    "proxies",
                    [TrainProxies(config, layout.for_phase("proxies"))],
                    config.swarm.runs,
                    tasks=config.swarm.runs,
                    config=config.model_dump(mode="json", include={"proxy"}) | {"retries": config.swarm.retries},
                    outputs=("swarm/runs",),
                    unit="runs",
                )
            )
        phases.append(
            Phase(
                "fit",
                [FitMix(config, layout.for_phase("fit"))],
                1,
                tasks=1,
                config=config.model_dump(mode="json", include={"regression", "proposer", "targets"}),
                outputs=("fit",),
                unit="steps",
            )
        )
    # the final writer (mixers/final_writer.py): three all-task passes, and one-task steps bounded by the
    # histogram (tasks x sources x 4,096 rows), the boundary buckets' documents and the shards' stats
    final_config = config.model_dump(mode="json", include={"token_budget", "weights", "max_epochs"}) | {
        "final": config.final.model_dump(mode="json", exclude={"memory_limit"})
    }
    names = ("scan", "plan", "scatter", "pick", "write", "publish")
    final = {name: layout.for_phase(f"final-{name}") for name in names}
    phases += [
        Phase(
            "final-scan",
            [ScanFinal(config, final["scan"], task_threads)],
            rows,
            config={"seed": config.final.seed},  # the histogram depends on the seed only
            outputs=("final/hist",),
        ),
        Phase(
            "final-plan",
            [PlanFinal(config, mixed, final["plan"], threads)],
            1,
            tasks=1,
            config=final_config,
            outputs=("final/plan.json",),
            unit="steps",
        ),
        Phase(
            "final-scatter",
            [ScatterFinal(config, final["scatter"], task_threads)],
            rows,
            config=final_config,
            outputs=("final/buckets", "final/candidates"),
        ),
        Phase(
            "final-pick",
            [PickFinal(config, final["pick"], threads)],
            1,
            tasks=1,
            config=final_config,
            outputs=("final/picks",),
            unit="steps",
        ),
        Phase(
            "final-write",
            [WriteFinal(config, final["write"], task_threads)],
            executor.tasks,
            config=final_config,
            outputs=("final/shards", "final/stats"),
        ),
        Phase(
            "final-publish",
            [PublishFinal(config, final["publish"], threads)],
            1,
            tasks=1,
            config=final_config,
            outputs=(),  # final/ lives at the run's root; the publish swaps it in whole
            unit="steps",
        ),
    ]
    settings = config.model_dump(mode="json", exclude={"final": {"memory_limit"}})
    return StagePlan(layout, phases, {"config": settings, "inputs": _fingerprint_files(files)})


Builder = Callable[[Manifest, Path, Sequence[InputFile], StageLayout | None], StagePlan]

BUILDERS: dict[str, Builder] = {
    "ocr": build_ocr,
    "extract": build_extract,
    "heuristics": build_heuristics,
    "dedup": build_dedup,
    "quality": build_quality,
    "rephrase": build_rephrase,
    "mix": build_mix,
}
