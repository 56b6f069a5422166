"""Manifest models: the YAML file that describes a run, validated with pydantic.

A manifest names the run, where it writes, how it executes, its sources and the configuration of each
stage. Every model forbids unknown keys, so a typo is an error that names the field path rather than
a silently ignored setting. :func:`load_manifest` is the only entry point: it reads YAML with
``yaml.safe_load``, applies ``--set dotted.path=value`` overrides, validates, and checks that local
input paths exist. Every failure is a :class:`ManifestError` whose message names the file and field.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ManifestError(Exception):
    """A manifest is unreadable or invalid; the message names the file and the field path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- executor


class LocalExecutor(Strict):
    """Run tasks on this machine with datatrove's LocalPipelineExecutor."""

    kind: Literal["local"] = "local"
    tasks: int = Field(2, ge=1, description="number of tasks (input shards) per stage")
    workers: int = Field(2, ge=1, description="tasks run at the same time")

    @property
    def threads(self) -> int:
        """Cores one single-task phase (dedup clustering, the mix's fit) may use."""
        return self.workers


class SlurmExecutor(Strict):
    """Submit every phase as a Slurm job array (datatrove's SlurmPipelineExecutor); `winnow run` waits for each.

    The run folder and the inputs must be on a file system the nodes share, and winnow must be importable
    there: by default the nodes activate the Python environment `winnow run` itself runs in."""

    kind: Literal["slurm"]
    tasks: int = Field(2, ge=1, description="number of tasks (array elements) per stage")
    workers: int | None = Field(
        None, ge=1, description="array elements running at once (sbatch --array %N); none: no limit"
    )
    partition: str = Field(description="sbatch --partition")
    time: str = Field("04:00:00", description="sbatch --time per task, e.g. 04:00:00 or 2-00:00:00")
    cpus_per_task: int = Field(1, ge=1, description="sbatch --cpus-per-task (also the threads of single-task phases)")
    mem_per_cpu_gb: float = Field(2, gt=0, description="sbatch --mem-per-cpu, in GB")
    qos: str | None = Field(None, description="sbatch --qos")
    sbatch_args: dict[str, str] = Field(
        default_factory=dict,
        description='more sbatch options without the dashes, e.g. {account: myproj, constraint: ""}',
    )
    python_env: str | None = Field(
        None, description="virtual environment for the nodes (folder or its bin/activate); default: the current one"
    )
    env_command: str | None = Field(
        None, description="shell lines run before each task instead (e.g. module load ...; conda activate ...)"
    )
    poll_s: float = Field(5, gt=0, description="seconds between checks of the queue while a phase runs")

    @property
    def threads(self) -> int:
        return self.cpus_per_task


class RayExecutor(Strict):
    """Run every phase as Ray tasks (datatrove's RayPipelineExecutor) on a Ray cluster; `winnow run` drives it.

    The run folder and the inputs must be on a file system the workers share; tasks run in the driver's
    working directory."""

    kind: Literal["ray"]
    tasks: int = Field(2, ge=1, description="number of tasks per stage")
    workers: int | None = Field(None, ge=1, description="tasks in flight at once; none: as many as the tasks")
    address: str | None = Field(
        None,
        description="Ray cluster address (host:port); none: RAY_ADDRESS, else a local Ray started for the run",
    )
    cpus_per_task: int = Field(1, ge=1, description="CPUs reserved per task (also the threads of single-task phases)")
    mem_per_cpu_gb: float = Field(2, gt=0, description="memory reserved per CPU, in GB")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources each task needs")
    env: list[str] = Field(
        default_factory=list,
        description="names of environment variables passed to the workers (runtime_env); API key variables "
        "named by stages are passed too",
    )
    time_limit_s: int | None = Field(None, ge=1, description="a task running longer is killed and resubmitted")

    @property
    def threads(self) -> int:
        return self.cpus_per_task


Executor = Annotated[LocalExecutor | SlurmExecutor | RayExecutor, Field(discriminator="kind")]


# ---------------------------------------------------------------- sources


class WarcSource(Strict):
    """Web archives: WARC or ARC files (gzip or not), local globs, fsspec URLs, or a CC listing."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["warc"]
    paths: list[str] = Field(default_factory=list, description="files, globs or fsspec URLs")
    listing: str | None = Field(None, description="a Common Crawl warc.paths(.gz) file")
    listing_base: str = Field("https://data.commoncrawl.org/", description="prefix for listing entries")
    limit: int | None = Field(None, ge=1, description="use only the first N files")
    crawl: str | None = Field(None, description="crawl id recorded on every document")

    @model_validator(mode="after")
    def _has_input(self) -> WarcSource:
        if not self.paths and not self.listing:
            raise ValueError("give `paths` or `listing`")
        return self


class DocumentSource(Strict):
    """Documents that are already text: JSON Lines (optionally compressed) or Parquet files.

    Each row becomes one document: ``text_field`` holds the text, ``id_field`` a record id (the
    document id is a hash of source name and that value; without it, of the file and row number),
    ``url_field`` the URL; every other field is kept in ``meta``. The documents join the flow at
    ``enter``.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["jsonl", "parquet"]
    paths: list[str] = Field(min_length=1, description="files, globs or fsspec URLs (.jsonl may be .gz/.zst)")
    text_field: str = "text"
    id_field: str | None = Field("id", description="record id field; null numbers rows per file")
    url_field: str | None = "url"
    crawl: str | None = Field(None, description="crawl or batch id recorded on every document")
    limit: int | None = Field(None, ge=1, description="use only the first N files")
    enter: str | None = Field(
        None, description="first stage these documents go through; default: the first enabled stage after extract"
    )


class PdfSource(Strict):
    """PDF files (local globs or fsspec URLs), turned into documents by ``stages.ocr``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["pdf"]
    paths: list[str] = Field(min_length=1, description="files, globs or fsspec URLs of PDFs")
    limit: int | None = Field(None, ge=1, description="use only the first N files")
    crawl: str | None = Field(None, description="batch id recorded on every document")


Source = Annotated[WarcSource | DocumentSource | PdfSource, Field(discriminator="kind")]


# ---------------------------------------------------------------- stages


class Switchable(Strict):
    """A filter that can be turned off with ``name: false`` or configured with a mapping."""

    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the datatrove filter (everything but ``enabled``)."""
        return self.model_dump(exclude={"enabled"}, exclude_none=False)


class UrlFilterConfig(Switchable):
    """datatrove's URLFilter: block-listed domains/URLs and banned words in the URL."""

    soft_word_threshold: int = 2
    extra_domains: list[str] | None = None
    extra_urls: list[str] | None = None
    banned_words: list[str] | None = None
    banned_subwords: list[str] | None = None
    soft_banned_words: list[str] | None = None
    use_integrated_lists: bool = True


class LanguageConfig(Strict):
    """Language ID (annotation in extract) and selection (in heuristics)."""

    model: str | None = Field(None, description="fastText LID model (.bin/.ftz); default lid.176.ftz")
    keep: list[str] | None = Field(["en"], description="languages to keep; null keeps all")
    min_score: float = Field(0.65, ge=0, le=1)
    precheck_min_score: float | None = Field(
        0.9,
        ge=0,
        le=1,
        description="before extraction, reject pages whose visible text is confidently (>= this) in a "
        "language not kept, sparing trafilatura; null disables",
    )


class ExtractConfig(Strict):
    """Read HTML responses, extract main text with trafilatura, identify the language."""

    timeout_s: float = Field(5.0, gt=0, description="per-document extraction timeout")
    max_html_bytes: int = Field(5_000_000, ge=1024, description="larger pages are rejected (too_large)")
    memory_limit_mb: int = Field(2048, ge=256, description="address-space cap of the extraction worker")
    focus: Literal["recall", "balanced", "precision"] = Field(
        "recall", description="trafilatura's mode: favor_recall, neither, or favor_precision (FineWeb's)"
    )
    fallback: bool = Field(False, description="run trafilatura's fallback extractors (about 2x slower)")
    include_tables: bool = True
    include_comments: bool = False
    url_filter: UrlFilterConfig = Field(default_factory=UrlFilterConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    min_text_chars: int = Field(1, ge=0, description="shorter extractions are rejected (no_text)")


class TriageConfig(Strict):
    """How a page is routed: text layer, OCR, or blank (see ``ocr/triage.py``)."""

    min_text_chars: int = Field(32, ge=1, description="fewer text-layer characters (not spaces) route to OCR")
    min_alnum_share: float = Field(0.5, ge=0, le=1, description="a text layer with fewer letters/digits is junk")
    max_replacement_share: float = Field(
        0.02, ge=0, le=1, description="more U+FFFD (broken font maps) than this share routes to OCR"
    )
    image_page_coverage: float = Field(
        0.5, gt=0, le=1, description="a page this much covered by images is a scan unless its text is dense"
    )
    dense_text_chars: int = Field(600, ge=1, description="text-layer characters that make an image-covered page text")
    min_ink: float = Field(0.001, ge=0, le=1, description="a page without text or images and less ink is blank")


class TesseractConfig(Strict):
    """tesseract (CPU): rendering and recognition."""

    languages: str = Field("eng", description="tesseract languages, e.g. eng or eng+deu")
    tessdata: str | None = Field(None, description="folder with <lang>.traineddata; default: Debian's")
    min_dpi: float = Field(100, gt=0, description="never render below this resolution")
    max_dpi: float = Field(300, gt=0, description="scans are rendered at their own resolution up to this")
    max_render_pixels: int = Field(40_000_000, ge=1_000_000, description="larger renders lower the resolution")
    detect_rotation: bool = Field(True, description="turn sideways/upside-down scans upright (tesseract OSD)")
    rotation_confidence: float = Field(2.0, ge=0, description="OSD confidence needed to turn a page")
    erase_rules: bool = Field(True, description="paint table rules (solid, dotted) white before recognition")


class EndpointConfig(Strict):
    """An OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted API): where, which model, which key."""

    endpoint: str = Field(description="base URL of the server, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(description="model name the server serves")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never the key)")


class VlmConfig(EndpointConfig):
    """A vision-language model behind an OpenAI-compatible endpoint, asked olmOCR-style."""

    image_longest_side: int = Field(1288, ge=64, description="pages are rendered to this longest side in pixels")
    max_tokens: int = Field(4096, ge=16, description="completion token limit per page")
    temperatures: list[float] = Field(
        [0.1, 0.3, 0.5, 0.8], min_length=1, description="one attempt per temperature, rising on each retry"
    )
    timeout_s: float = Field(120, gt=0, description="per-request timeout (the client retries a timeout twice)")
    concurrency: int = Field(
        8, ge=1, description="pages of one PDF in flight at once, per worker (a GPU server batches them)"
    )
    grammar: bool = Field(
        False, description="send a GBNF grammar of the answer's shape in the request's `grammar` field (llama.cpp)"
    )


class OcrConfig(Strict):
    """PDFs into documents: page triage, text layer, OCR engines with a per-page fallback chain."""

    engine: Literal["auto", "tesseract", "vlm", "text-layer"] = Field(
        "auto",
        description="engine for OCR pages: auto = vlm when configured, else tesseract; each falls back down "
        "the chain vlm -> tesseract -> text layer",
    )
    split: Literal["document", "page"] = Field("document", description="one document per PDF, or one per page")
    enter: str | None = Field(
        None, description="first stage the OCR'd documents go through; default: dedup, else the next enabled stage"
    )
    triage: TriageConfig = Field(default_factory=TriageConfig)
    tesseract: TesseractConfig = Field(default_factory=TesseractConfig)
    vlm: VlmConfig | None = None
    max_fallback_pages: int | None = Field(
        None, ge=0, description="a PDF with more pages that fell back to a later engine is an error (null: no limit)"
    )
    max_pages: int = Field(5000, ge=1, description="longer PDFs are rejected (too_many_pages)")
    max_file_mb: int = Field(512, ge=1, description="larger PDF files are rejected (too_large)")
    timeout_s: float = Field(600, gt=0, description="per-PDF time limit; the worker is killed past it")
    memory_limit_mb: int = Field(3072, ge=512, description="address-space cap of the OCR worker")
    remove_headers: bool = Field(True, description="drop lines repeated at the top/bottom of pages, and page numbers")
    margin_share: float = Field(
        0.06, ge=0, lt=0.5, description="text-layer text wholly in this top/bottom share of a page is dropped"
    )
    min_text_chars: int = Field(1, ge=0, description="documents with less text are rejected (no_text)")

    @model_validator(mode="after")
    def _vlm_given(self) -> OcrConfig:
        if self.engine == "vlm" and self.vlm is None:
            raise ValueError("engine vlm needs stages.ocr.vlm (endpoint, model)")
        return self


class GopherRepetitionConfig(Switchable):
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]

    def kwargs(self) -> dict[str, Any]:
        """datatrove wants the n-gram settings as tuples of tuples."""
        kwargs = super().kwargs()
        kwargs["top_n_grams"] = tuple(map(tuple, kwargs["top_n_grams"]))
        kwargs["dup_n_grams"] = tuple(map(tuple, kwargs["dup_n_grams"]))
        return kwargs


class GopherQualityConfig(Switchable):
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100000
    min_avg_word_length: int | None = 3
    max_avg_word_length: int | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = Field(
        0.8, description="least share of words containing a letter (despite datatrove's name for it)"
    )
    alpha_ratio_counts: Literal["words", "tokens"] = Field(
        "words",
        description="what that share is of: words, leaving out punctuation tokens (Gopher's rule), or every "
        "token, punctuation included (datatrove's; drops most Wikipedia articles)",
    )
    min_stop_words: int | None = 2
    stop_words: list[str] | None = None


class C4Config(Switchable):
    split_paragraph: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = False  # FineWeb's setting; C4 itself used True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class FineWebConfig(Switchable):
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class HeuristicsConfig(Strict):
    """FineWeb's heuristic filters, in FineWeb's order, each switchable."""

    language: bool = Field(True, description="apply stages.extract.language keep/min_score here")
    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    tokenizer: Literal["fast", "spacy"] = Field(
        "fast", description="word/sentence splitter for the filters: winnow's regex one or spaCy (datatrove)"
    )


class MinhashConfig(Switchable):
    """Near duplicates: MinHash over word n-grams, LSH with ``bands`` x ``rows``, then a check of candidate pairs."""

    ngram: int = Field(5, ge=1, description="shingle length in tokens")
    bands: int = Field(14, ge=1, description="LSH bands (FineWeb: 14)")
    rows: int = Field(8, ge=1, description="signature values per band (FineWeb: 8)")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="if set, datasketch picks bands x rows for this Jaccard threshold"
    )
    seed: int = Field(1, description="permutation seed; runs deduplicated against each other must share it")
    verify: Literal["signature", "exact", "none"] = Field(
        "signature",
        description="check candidate pairs by the Jaccard estimate of the full signatures, by exact Jaccard of "
        "the shingle sets (reads the texts again), or not at all (every LSH collision is a duplicate)",
    )
    min_similarity: float = Field(0.7, ge=0, le=1, description="candidate pairs below this Jaccard are not duplicates")


class DedupConfig(Strict):
    """URL, exact and near-duplicate removal over the whole run (and against earlier runs)."""

    url: bool = Field(True, description="same normalised URL: keep the latest fetch")
    exact: bool = Field(True, description="same normalised text (case, whitespace and punctuation folded)")
    minhash: MinhashConfig = Field(default_factory=MinhashConfig)
    prefer: str | None = Field(
        None,
        description="attribute column (e.g. score_quality) whose highest value wins a cluster, before crawl and id",
    )
    against: list[str] = Field(
        default_factory=list, description="earlier run folders (or their dedup index folders) never to duplicate"
    )
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory for clustering")
    threads: int | None = Field(None, ge=1, description="DuckDB threads for clustering; default: executor workers")


class ClassifierConfig(Strict):
    """One fastText classifier: its probability of ``label`` becomes the column ``score_<name>``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the score column is score_<name>")
    model: str = Field(description="fastText model (.bin/.ftz), e.g. from `winnow classifier train`")
    label: str = Field("hq", description="the positive label, without __label__")


class QualityKeep(Strict):
    """Which scored documents go on: at most one rule; none keeps every document (annotation only)."""

    top_fraction: float | None = Field(None, gt=0, le=1, description="the best share of the whole run, by `by`")
    by: str | None = Field(
        None, description="column ranked for top_fraction; default: the only score, or quality_rank for several"
    )
    threshold: dict[str, float] | None = Field(None, description="column -> minimum value; every one must hold")
    min_bucket: int | None = Field(None, ge=0, description="keep quality_bucket >= this (needs `buckets`)")

    @model_validator(mode="after")
    def _one_rule(self) -> QualityKeep:
        rules = [r for r in ("top_fraction", "threshold", "min_bucket") if getattr(self, r) is not None]
        if len(rules) > 1:
            raise ValueError(f"give one of top_fraction, threshold, min_bucket (got {', '.join(rules)})")
        if self.by is not None and self.top_fraction is None:
            raise ValueError("`by` only applies to top_fraction")
        return self


class QualityConfig(Strict):
    """Score every document with fastText classifiers (annotate), then select by the scores (cheap to change)."""

    classifiers: list[ClassifierConfig] = Field(min_length=1)
    buckets: int | None = Field(
        None, ge=2, le=1000, description="rank-average of all scores into N buckets: column quality_bucket (0 = worst)"
    )
    keep: QualityKeep = Field(default_factory=QualityKeep)
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory for selection")

    @model_validator(mode="after")
    def _columns_exist(self) -> QualityConfig:
        names = [c.name for c in self.classifiers]
        if len(set(names)) != len(names):
            raise ValueError("classifier names must be unique")
        columns = {f"score_{n}" for n in names} | {"quality_rank"} | ({"quality_bucket"} if self.buckets else set())
        asked = [self.keep.by] if self.keep.by else []
        asked += list(self.keep.threshold or {})
        for column in asked:
            if column not in columns:
                raise ValueError(f"keep: unknown column {column!r}; choose from {', '.join(sorted(columns))}")
        if self.keep.min_bucket is not None and (self.buckets is None or self.keep.min_bucket >= self.buckets):
            raise ValueError("keep.min_bucket needs `buckets` greater than it")
        return self

    @property
    def ranked(self) -> bool:
        """Whether selection computes ``quality_rank`` (an ensemble, buckets, or a rule that names it)."""
        named = [self.keep.by, *(self.keep.threshold or {})]
        return len(self.classifiers) > 1 or self.buckets is not None or "quality_rank" in named


class RephraseRoute(Strict):
    """Which documents get which templates: by source, by an attribute column's range, and a seeded fraction."""

    templates: list[str] = Field(min_length=1, description="template ids (shipped, or from stages.rephrase.templates)")
    sources: list[str] | None = Field(None, description="only these sources (default: all)")
    column: str | None = Field(None, description="an attribute column to select on, e.g. quality_bucket or score_q")
    min: float | None = Field(None, description="keep documents with column >= min")
    max: float | None = Field(None, description="keep documents with column <= max")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the matching documents, chosen by a hash of the id")
    seed: int = 0

    @model_validator(mode="after")
    def _range_needs_column(self) -> RephraseRoute:
        if (self.min is not None or self.max is not None) and self.column is None:
            raise ValueError("min/max need `column`")
        return self


class RephraseConfig(EndpointConfig):
    """Rewrite documents with an LLM behind an OpenAI-compatible endpoint; the rewrites are new rows."""

    concurrency: int = Field(8, ge=1, description="requests in flight per task")
    timeout_s: float = Field(300, gt=0, description="per-request timeout")
    max_retries: int = Field(3, ge=0, description="retries (exponential backoff) on connection errors, 429 and 5xx")
    templates: list[str] = Field(
        default_factory=list, description="extra template YAML files or folders (the shipped ones are always there)"
    )
    routes: list[RephraseRoute] = Field(min_length=1)
    grammar: bool = Field(False, description="send templates' GBNF grammars (llama.cpp's `grammar` field)")
    seed: int = Field(0, description="sampling seed sent with every request (and part of the cache key)")
    chars_per_token: float = Field(4.0, gt=0, description="estimate used to cut documents to a template's input budget")
    max_chunks: int = Field(32, ge=1, description="documents needing more chunks are rejected (too_long)")


class MixTarget(Strict):
    """A target the proxies are scored on: a source's held-out split (or, for a source not mixed, all of it)."""

    source: str = Field(description="source name")
    weight: float = Field(1.0, gt=0, description="weight of this target's loss in the objective")


class ImportedSwarm(Strict):
    """Swarm results produced elsewhere (e.g. on a GPU cluster): two tables keyed by run id (CSV or Parquet)."""

    ratios: str = Field(description="table: run id + one weight column per source")
    metrics: str = Field(description="table: run id + one loss column per target")
    key: str = Field("run_id", description="the run id column of both tables")


class SwarmConfig(Strict):
    """The proxy swarm: mixtures sampled around the prior, one small model trained on each."""

    runs: int = Field(32, ge=4, description="proxy runs (mixtures) to train")
    concentration: float = Field(
        1.0, gt=0, description="Dirichlet concentration around the prior: low = sparse, diverse mixtures"
    )
    temperature: float = Field(1.0, gt=0, description="prior = token share ** (1/temperature), renormalised")
    floor: float = Field(0.0, ge=0, lt=1, description="minimum weight of every mixed source")
    seed: int = 0
    retries: int = Field(1, ge=0, description="a proxy run that fails (e.g. diverges) is retried with a new seed")
    results: ImportedSwarm | None = Field(
        None, description="use swarm results from another tool (ratios + metrics tables) instead of training"
    )


class ProxySettings(Strict):
    """The proxy language model (a small decoder-only transformer) and its training budget.

    CPU defaults train in about a minute per run. For GPU swarms use 15-30M-parameter proxies
    (e.g. d_model 384-512, 6-8 layers): olmix reports rankings that hold up to 1B models only from
    ~15M parameters up.
    """

    d_model: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    context: int = Field(128, ge=8)
    batch_size: int = Field(32, ge=1)
    tokens: int = Field(1_000_000, ge=1000, description="training tokens per proxy run")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate (warmup, cosine decay)")
    eval_tokens: int = Field(65_536, ge=1000, description="tokens of each target evaluated")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    threads: int = Field(1, ge=1, description="torch threads per proxy run (runs go in parallel as tasks)")
    compile: bool = Field(False, description="torch.compile the model (no gain measured on CPU; try it on GPUs)")


class RegressionConfig(Strict):
    """Models mapping mixture weights to target loss; the best by k-fold Spearman is used."""

    models: list[Literal["lightgbm", "log_linear", "linear"]] = Field(
        default_factory=lambda: ["lightgbm", "log_linear", "linear"], min_length=1
    )
    folds: int = Field(5, ge=2)


class ProposerConfig(Strict):
    """RegMix proposal: predict many candidate mixtures, average the best ``top_k``."""

    candidates: int = Field(100_000, ge=100)
    top_k: int = Field(100, ge=1)
    kl_weight: float = Field(0.0, ge=0, description="penalty on KL(mixture || prior), keeps proposals near the prior")
    seed: int = 0


class FinalConfig(Strict):
    """The final corpus: documents sampled to the proposed weights, shuffled, in fixed-size shards."""

    shard_rows: int = Field(100_000, ge=1, description="rows per final/part-NNNNN.parquet (the last may be shorter)")
    seed: int = 0
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory for the writer")


class MixConfig(Strict):
    """Choose how many tokens each source contributes (RegMix-style swarm + regression) and write ``final/``."""

    token_budget: float = Field(gt=0, description="tokens in the final corpus")
    targets: list[MixTarget] = Field(min_length=1)
    sources: list[str] | None = Field(None, description="sources to mix; default: every source of the manifest")
    holdout: float = Field(
        0.05, gt=0, lt=1, description="share of a mixed target source held out as its target (never trained on)"
    )
    max_epochs: float | None = Field(4.0, gt=0, description="no source repeated more often in the final corpus")
    tokenizer: str | None = Field(None, description="a tokenizer.json; default: a byte-level BPE trained on the run")
    vocab_size: int = Field(4096, ge=260, description="vocabulary of the BPE trained when no tokenizer is given")
    tokenizer_sample_mb: int = Field(16, ge=1, description="text sampled to train that BPE")
    proxy_data_tokens: int = Field(
        4_000_000, ge=10_000, description="tokens per source kept for proxy training (the rest is not needed)"
    )
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    proposer: ProposerConfig = Field(default_factory=ProposerConfig)
    final: FinalConfig = Field(default_factory=FinalConfig)

    @model_validator(mode="after")
    def _distinct(self) -> MixConfig:
        names = [t.source for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("targets: each source at most once")
        if self.sources is not None and len(set(self.sources)) != len(self.sources):
            raise ValueError("sources: each source at most once")
        return self


class Stages(Strict):
    """The stages a run executes, in flow order; a missing key runs the stage with defaults, ``null`` skips it
    (ocr needs PDF sources, quality a model, rephrase an endpoint and mix a target, so they run only when
    given). ``ocr`` is a branch: its documents join the flow at ``ocr.enter``, not at the stage after it."""

    ocr: OcrConfig | None = None
    extract: ExtractConfig | None = Field(default_factory=ExtractConfig)
    heuristics: HeuristicsConfig | None = Field(default_factory=HeuristicsConfig)
    dedup: DedupConfig | None = Field(default_factory=DedupConfig)
    quality: QualityConfig | None = None
    rephrase: RephraseConfig | None = None
    mix: MixConfig | None = None

    def enabled(self) -> list[str]:
        """Names of the enabled stages, in flow order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


STAGE_ORDER: tuple[str, ...] = tuple(Stages.model_fields)
SOURCE_STAGES: tuple[str, ...] = ("ocr", "extract")  # they read raw inputs (PDFs, web archives), not documents
DOCUMENT_STAGES: tuple[str, ...] = tuple(s for s in STAGE_ORDER if s not in SOURCE_STAGES)


class Manifest(Strict):
    """A whole run."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    output: str = Field(description="folder under which the run folder <output>/<name> is created")
    executor: Executor = Field(default_factory=LocalExecutor, description="where tasks run: local, slurm or ray")
    shard_target_mb: int = Field(128, ge=1, description="target size of one output Parquet shard")
    sources: list[Source] = Field(min_length=1)
    stages: Stages = Field(default_factory=Stages)

    @field_validator("executor", mode="before")
    @classmethod
    def _local_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            return {**value, "kind": "local"}
        return value

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Source]) -> list[Source]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    @model_validator(mode="after")
    def _every_stage_has_input(self) -> Manifest:
        enabled = self.stages.enabled()
        if any(isinstance(s, WarcSource) for s in self.sources) and "extract" not in enabled:
            raise ValueError("stages: web archive sources are read by stages.extract: enable stages.extract")
        has_pdfs = any(isinstance(s, PdfSource) for s in self.sources)
        if has_pdfs and "ocr" not in enabled:
            raise ValueError("stages: PDF sources are read by stages.ocr: add `ocr: {}` to stages")
        if "ocr" in enabled and not has_pdfs:
            raise ValueError("stages.ocr has no input: no source of kind pdf")
        ocr = self.stages.ocr
        if ocr is not None and ocr.enter is not None and self.ocr_entry() is None:
            raise ValueError(f"stages.ocr.enter: stages.{ocr.enter} is not an enabled document stage")
        for source in self.sources:
            if isinstance(source, DocumentSource) and self.entry_stage(source) is None:
                where = f"stages.{source.enter}" if source.enter else "a stage after extract"
                raise ValueError(f"sources.{source.name}.enter: {where} is not an enabled document stage")
        fed = {self.entry_stage(s) for s in self.sources} | {self.ocr_entry()}
        for stage in [s for s in enabled if s != "ocr"]:  # the chain: each stage feeds the next
            if stage in fed:
                break
            if stage in self.stages.model_fields_set:
                raise ValueError(f"stages.{stage} has no input: no earlier stage is enabled and no source enters it")
            setattr(self.stages, stage, None)  # left at its default with nothing to read (a PDF-only run): not run
        return self

    @model_validator(mode="after")
    def _rephrase_names_sources(self) -> Manifest:
        rephrase = self.stages.rephrase
        known = [s.name for s in self.sources]
        for i, route in enumerate(rephrase.routes if rephrase else []):
            for name in route.sources or ():
                if name not in known:
                    raise ValueError(f"stages.rephrase.routes[{i}].sources: no source named {name!r}")
        return self

    @model_validator(mode="after")
    def _mix_names_sources(self) -> Manifest:
        mix = self.stages.mix
        if mix is None:
            return self
        known = [s.name for s in self.sources]
        named = [("sources", n) for n in mix.sources or ()] + [("targets", t.source) for t in mix.targets]
        for field, name in named:
            if name not in known:
                raise ValueError(f"stages.mix.{field}: no source named {name!r} (sources: {', '.join(known)})")
        return self

    def entry_stage(self, source: WarcSource | DocumentSource | PdfSource) -> str | None:
        """The stage a source's documents enter: extract for archives, ocr for PDFs; for document sources
        ``enter`` or the first enabled document stage."""
        enabled = self.stages.enabled()
        if isinstance(source, WarcSource):
            return "extract" if "extract" in enabled else None
        if isinstance(source, PdfSource):
            return "ocr" if "ocr" in enabled else None
        if source.enter is not None:
            return source.enter if source.enter in enabled and source.enter not in SOURCE_STAGES else None
        return next((stage for stage in enabled if stage not in SOURCE_STAGES), None)

    def ocr_entry(self) -> str | None:
        """The stage the OCR stage's documents enter: ``ocr.enter``, else the first enabled document stage
        after heuristics (whose filters are tuned for web pages); None when OCR is off or the run ends with it."""
        ocr = self.stages.ocr
        if ocr is None:
            return None
        enabled = self.stages.enabled()
        if ocr.enter is not None:
            return ocr.enter if ocr.enter in enabled and ocr.enter not in SOURCE_STAGES else None
        return next((s for s in enabled if s not in SOURCE_STAGES and s != "heuristics"), None)

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name


# ---------------------------------------------------------------- loading


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.path=YAML_VALUE`` override to the raw manifest mapping, in place."""
    if "=" not in assignment:
        raise ManifestError(f"--set {assignment!r}: expected dotted.path=value")
    path, _, text = assignment.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ManifestError(f"--set {assignment!r}: empty key in dotted path")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"--set {path}: value is not valid YAML ({_yaml_problem(exc)})") from None
    node: Any = raw
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, ".".join(keys[: depth + 1]))
    last = keys[-1]
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ManifestError(f"--set {path}: {'.'.join(keys[:-1])} is not a mapping or list")


def _child(node: Any, key: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, where)]
    if not isinstance(node, dict):
        raise ManifestError(f"--set: {where} is not a mapping or list")
    if node.get(key) is None:
        node[key] = {}
    elif isinstance(node[key], bool):  # a switch written as `c4: true` takes sub-fields too
        node[key] = {"enabled": node[key]}
    return node[key]


def _index(node: list[Any], key: str, where: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ManifestError(f"--set: {where}: {key!r} is not an index of a list of {len(node)}")
    return int(key)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: ``line L, column C: what`` (PyYAML's own text spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _format_validation(path: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # drop discriminator tags such as 'warc' that pydantic inserts into the location
        tags = ("warc", "jsonl", "parquet", "pdf", "local")
        loc = [p for p in err["loc"] if p not in tags and not str(p).startswith("function-")]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `winnow schema` prints every field)"
        lines.append(f"{path}: {_format_loc(loc)}: {msg}")
    return "\n".join(lines)


def load_manifest(path: str | os.PathLike[str], overrides: Sequence[str] = (), check_paths: bool = True) -> Manifest:
    """Read, override, validate and (optionally) check the input paths of a manifest file."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML at {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(_format_validation(path, exc)) from None
    if check_paths:
        problems = missing_inputs(manifest)
        if problems:
            raise ManifestError("\n".join(f"{path}: {p}" for p in problems))
    return manifest


def is_remote(path: str) -> bool:
    """True for fsspec URLs such as s3://, https://; such inputs are not checked at validation."""
    return "://" in path and not path.startswith("file://")


def missing_inputs(manifest: Manifest) -> list[str]:
    """Field paths of local inputs (globs, listings, model files) that match nothing on disk."""
    problems = []
    for i, source in enumerate(manifest.sources):
        for j, pattern in enumerate(source.paths):
            if not is_remote(pattern) and not glob.glob(pattern, recursive=True):
                problems.append(f"sources[{i}].paths[{j}]: {pattern!r} matches no file")
        listing = getattr(source, "listing", None)
        if listing and not is_remote(listing) and not os.path.exists(listing):
            problems.append(f"sources[{i}].listing: {listing!r} does not exist")
    extract = manifest.stages.extract
    if extract and extract.language.model and not os.path.exists(extract.language.model):
        problems.append(f"stages.extract.language.model: {extract.language.model!r} does not exist")
    for i, classifier in enumerate(manifest.stages.quality.classifiers if manifest.stages.quality else []):
        if not is_remote(classifier.model) and not os.path.exists(classifier.model):
            problems.append(f"stages.quality.classifiers[{i}].model: {classifier.model!r} does not exist")
    return problems
