"""Manifest models: the YAML file that describes a run, validated with pydantic.

A manifest names the run, where it writes, how it executes, its sources and the configuration of each
stage. Every model forbids unknown keys, so a typo is an error that names the field path rather than
a silently ignored setting. :func:`load_manifest` is the only entry point: it reads YAML with
``yaml.safe_load``, applies ``--set dotted.path=value`` overrides, validates, and checks that local
input paths exist. Every failure is a :class:`ManifestError` whose message names the file and the field
as the user writes it (``sources.0.paths``, never pydantic's union tags) and says what to do: the closest
field for a misspelt key, the choices for a kind, the directory a relative path resolved against.
:func:`schema_text` is the readable reference ``winnow schema`` prints.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from winnow.pipeline.stage_order import STAGE_ORDER


class ManifestError(Exception):
    """A manifest is unreadable or invalid; the message names the file and the field path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _one_or_many(value: Any) -> Any:
    """A single string where a list of paths is expected is that one path."""
    return [value] if isinstance(value, str) else value


Paths = Annotated[list[str], BeforeValidator(_one_or_many, json_schema_input_type=str | list[str])]
_SOURCE_NAME = "the source's name, recorded on every document: letters, digits, _ . -"


# ---------------------------------------------------------------- executor


class LocalExecutor(Strict):
    """Run tasks on this machine with datatrove's LocalPipelineExecutor."""

    kind: Literal["local"] = Field("local", description="run on this machine (the default executor)")
    tasks: int = Field(2, ge=1, description="number of tasks (input shards) per stage")
    workers: int = Field(2, ge=1, description="tasks run at the same time")

    @property
    def threads(self) -> int:
        """Cores one single-task phase (dedup clustering, the mix's fit) may use."""
        return self.workers

    @property
    def task_threads(self) -> int:
        """Threads of one task of a parallel DuckDB phase (dedup pairs): ``workers`` of them share the machine."""
        return 1


class SlurmExecutor(Strict):
    """Submit every phase as a Slurm job array (datatrove's SlurmPipelineExecutor); `winnow run` waits for each.

    The run folder and the inputs must be on a file system the nodes share, and winnow must be importable
    there: by default the nodes activate the Python environment `winnow run` itself runs in."""

    kind: Literal["slurm"] = Field(description="submit to Slurm")
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

    @property
    def task_threads(self) -> int:
        return self.cpus_per_task


class RayExecutor(Strict):
    """Run every phase as Ray tasks (datatrove's RayPipelineExecutor) on a Ray cluster; `winnow run` drives it.

    The run folder and the inputs must be on a file system the workers share; tasks run in the driver's
    working directory."""

    kind: Literal["ray"] = Field(description="run on a Ray cluster")
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

    @property
    def task_threads(self) -> int:
        return self.cpus_per_task


Executor = Annotated[LocalExecutor | SlurmExecutor | RayExecutor, Field(discriminator="kind")]


# ---------------------------------------------------------------- sources


class WarcSource(Strict):
    """Web archives: WARC or ARC files (gzip or not), local globs, fsspec URLs, or a CC listing."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description=_SOURCE_NAME)
    kind: Literal["warc"] = Field(description="web archives")
    paths: Paths = Field(default_factory=list, description="files, globs or fsspec URLs (one, or a list)")
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

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description=_SOURCE_NAME)
    kind: Literal["jsonl", "parquet"] = Field(description="JSON Lines or Parquet files of documents")
    paths: Paths = Field(min_length=1, description="files, globs or fsspec URLs (.jsonl may be .gz/.zst)")
    text_field: str = Field("text", description="field holding the document text")
    id_field: str | None = Field("id", description="record id field; null numbers rows per file")
    url_field: str | None = Field("url", description="field holding the URL; null: no URL")
    crawl: str | None = Field(None, description="crawl or batch id recorded on every document")
    limit: int | None = Field(None, ge=1, description="use only the first N files")
    enter: str | None = Field(
        None, description="first stage these documents go through; default: the first enabled stage after extract"
    )


class PdfSource(Strict):
    """PDF files (local globs or fsspec URLs), turned into documents by ``stages.ocr``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description=_SOURCE_NAME)
    kind: Literal["pdf"] = Field(description="PDF files, read by stages.ocr")
    paths: Paths = Field(min_length=1, description="files, globs or fsspec URLs of PDFs")
    limit: int | None = Field(None, ge=1, description="use only the first N files")
    crawl: str | None = Field(None, description="batch id recorded on every document")


Source = Annotated[WarcSource | DocumentSource | PdfSource, Field(discriminator="kind")]


# ---------------------------------------------------------------- stages


class Switchable(Strict):
    """A filter that can be turned off with ``name: false`` or configured with a mapping."""

    enabled: bool = Field(True, description="false turns this filter off (also written as `<filter>: false`)")

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the datatrove filter (everything but ``enabled``)."""
        return self.model_dump(exclude={"enabled"}, exclude_none=False)


class UrlFilterConfig(Switchable):
    """datatrove's URLFilter: block-listed domains/URLs and banned words in the URL."""

    soft_word_threshold: int = Field(2, description="soft-banned words in a URL that reject it")
    extra_domains: list[str] | None = Field(None, description="more domains to block")
    extra_urls: list[str] | None = Field(None, description="more URLs to block")
    banned_words: list[str] | None = Field(None, description="more words that block a URL")
    banned_subwords: list[str] | None = Field(None, description="more substrings that block a URL")
    soft_banned_words: list[str] | None = Field(None, description="more soft-banned words")
    use_integrated_lists: bool = Field(True, description="use datatrove's shipped block lists")


class LanguageConfig(Strict):
    """Language ID (annotation in extract) and selection (in heuristics)."""

    model: str | None = Field(None, description="fastText LID model (.bin/.ftz); default lid.176.ftz")
    keep: list[str] | None = Field(["en"], description="languages to keep; null keeps all")
    min_score: float = Field(0.65, ge=0, le=1, description="documents less confidently in a kept language go")
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
    memory_limit_mb: int = Field(
        2048, ge=256, description="address-space cap of the extraction worker (plus the language model's file size)"
    )
    focus: Literal["recall", "balanced", "precision"] = Field(
        "recall", description="trafilatura's mode: favor_recall, neither, or favor_precision (FineWeb's)"
    )
    fallback: bool | Literal["auto"] = Field(
        "auto",
        description="trafilatura's fallback extractors (readability, jusText): auto runs them only on pages whose "
        "fast extraction found under a tenth of the visible text (needs prepass); true on every page",
    )
    prepass: bool = Field(
        True,
        description="parse with lexbor first: drop scripts, styles, comments and unread elements, bound the words "
        "(pages under the heuristics' min_doc_words are rejected as too_few_words without extraction)",
    )
    min_words: int | None = Field(
        50,
        ge=1,
        description="too_few_words floor: the lower of this and the heuristics' gopher_quality.min_doc_words (a "
        "higher min_doc_words then never re-extracts); null: no pre-rejection",
    )
    include_tables: bool = Field(True, description="keep the text of HTML tables")
    include_comments: bool = Field(False, description="keep comment sections under articles")
    url_filter: UrlFilterConfig = Field(default_factory=UrlFilterConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    min_text_chars: int = Field(1, ge=0, description="shorter extractions are rejected (no_text)")


class TriageConfig(Strict):
    """How a page is routed: text layer, OCR, or blank (see ``ocr/triage.py``)."""

    min_text_chars: int = Field(32, ge=1, description="fewer text-layer characters (not spaces) route to OCR")
    min_alnum_share: float = Field(0.5, ge=0, le=1, description="a text layer with fewer letters/digits is junk")
    max_replacement_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="more U+FFFD (broken font maps) than this share of the characters routes to OCR (a page of "
        "math whose symbols have no Unicode keeps its text layer)",
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
        0.06,
        ge=0,
        lt=0.5,
        description="top/bottom share of a page whose text-layer lines count as margin lines: page numbers there "
        "go, other lines only when they repeat at the same place across pages",
    )
    min_text_chars: int = Field(1, ge=0, description="documents with less text are rejected (no_text)")

    @model_validator(mode="after")
    def _vlm_given(self) -> OcrConfig:
        if self.engine == "vlm" and self.vlm is None:
            raise ValueError("engine vlm needs stages.ocr.vlm (endpoint, model)")
        return self


class GopherRepetitionConfig(Switchable):
    """datatrove's GopherRepetitionFilter (the same parameter names): repeated lines, paragraphs and n-grams."""

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
    """datatrove's GopherQualityFilter (the same parameter names): word counts, symbols, bullets, stop words."""

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
    """datatrove's C4QualityFilter (the same parameter names): line and sentence rules, boilerplate, code."""

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
    """datatrove's FineWebQualityFilter (the same parameter names): punctuation, short lines, duplicated chars."""

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class DecontamSet(Strict):
    """One evaluation set: a JSON Lines (optionally compressed) or Parquet file of benchmark rows."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the set's name, given in rejects and attributes")
    path: str = Field(description="a local file: .parquet, else JSON Lines (.jsonl, .jsonl.gz, .jsonl.zst...)")
    fields: list[str] = Field(
        min_length=1, description="fields of each row whose text is looked for, each on its own (a string or strings)"
    )


class DecontamConfig(Strict):
    """Benchmark decontamination: documents sharing ``n``-word n-grams with evaluation sets are annotated
    (``decontam_matches``, ``decontam_set``) and, with ``action: drop``, rejected (``decontam:<set>``)."""

    sets: list[DecontamSet] = Field(min_length=1, max_length=64, description="the evaluation sets (at most 64)")
    n: int = Field(13, ge=1, description="n-gram length in words after normalisation (GPT-3, OLMo: 13)")
    min_matches: int = Field(
        1, ge=1, description="distinct n-grams a document must share with one set to count as contaminated by it"
    )
    action: Literal["drop", "annotate"] = Field(
        "drop", description="drop contaminated documents (rejects), or keep them annotated only"
    )

    @model_validator(mode="after")
    def _distinct_names(self) -> DecontamConfig:
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError("sets: each name at most once")
        return self


class PiiConfig(Switchable):
    """Personal data replaced as FineWeb does (datatrove's PIIFormatter: its patterns and replacements); phone
    numbers optionally. Each document gets the counts ``pii_emails``, ``pii_ips``, ``pii_phones``."""

    emails: bool = Field(True, description="replace email addresses")
    ips: bool = Field(True, description="replace IPv4 addresses")
    only_public_ips: bool = Field(True, description="leave private, loopback and reserved addresses (not PII)")
    phones: bool = Field(False, description="replace phone numbers (+country code, or (555) 123-4567 / 555-123-4567)")
    email_replacement: list[str] = Field(
        ["email@example.com", "firstname.lastname@example.org"], min_length=1, description="used in turn"
    )
    ip_replacement: list[str] = Field(
        ["22.214.171.124", "126.96.36.199", "188.8.131.52", "184.108.40.206", "220.127.116.11", "18.104.22.168"],
        min_length=1,
        description="used in turn (datatrove's: addresses that answered no ping)",
    )
    phone_replacement: list[str] = Field(
        ["+1-202-555-0100"], min_length=1, description="used in turn (555-01xx numbers are reserved for fiction)"
    )


class MultilingualConfig(Strict):
    """FineWeb-2's per-language filtering: each document's language and script pick one of FineWeb-2's
    configuration files, whose thresholds and stop words drive the Gopher and FineWeb filters for it."""

    configs: str = Field(
        description="folder of FineWeb-2's per-language files, <lang>_<Script>.yml (its repository's configs/)"
    )
    languages: list[str] | Literal["all"] = Field(
        "all",
        description="language-script codes to keep (deu_Latn, jpn_Jpan...), or all: every code with a file in "
        "configs, plus default_settings",
    )
    default_settings: list[str] = Field(
        ["eng_Latn"],
        description="codes judged by this stage's own filter settings (FineWeb English's) instead of a file; "
        "FineWeb-2 has no English file",
    )
    min_score: float | None = Field(
        None, ge=0, le=1, description="least language_score for every language; null: each file's language_score"
    )

    @field_validator("languages", "default_settings")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if isinstance(value, list):
            bad = [c for c in value if not re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", c)]
            if bad:
                raise ValueError(f"{bad}: expected language-script codes such as deu_Latn")
        return value


class HeuristicsConfig(Strict):
    """FineWeb's heuristic filters, in FineWeb's order, each switchable; then benchmark decontamination."""

    language: bool = Field(True, description="apply stages.extract.language keep/min_score here")
    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    tokenizer: Literal["fast", "spacy"] = Field(
        "fast", description="word/sentence splitter for the filters: winnow's regex one or spaCy (datatrove)"
    )
    decontam: DecontamConfig | None = Field(
        None, description="benchmark decontamination after the filters: n-gram overlap with evaluation sets"
    )
    multilingual: MultilingualConfig | None = Field(
        None,
        description="judge each language by FineWeb-2's settings for it (replaces the language selection and the "
        "filters above for languages with a file; those in default_settings keep the filters above)",
    )
    pii: PiiConfig | None = Field(
        None, description="replace email and IP addresses (and phone numbers) last, counting them per document"
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
    against: Paths = Field(
        default_factory=list, description="earlier run folders (or their dedup index folders) never to duplicate"
    )
    memory_limit: str = Field(
        "2GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory of each pairs task and of clustering"
    )
    threads: int | None = Field(None, ge=1, description="DuckDB threads for clustering; default: executor workers")
    partitions: int = Field(
        8,
        ge=1,
        le=4096,
        description="hash ranges the dedup index is split into; the urls and pairs phases run one task per range "
        "(each one DuckDB job under memory_limit). The result is the same for any count; changing it rehashes",
    )


class ClassifierConfig(Strict):
    """One classifier: its score (fastText: the probability of ``label``) becomes the column ``score_<name>``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the score column is score_<name>")
    model: str = Field(
        description="fastText model (.bin/.ftz), embedding or ensemble model (.json) from `winnow classifier`, "
        "or a Hugging Face sequence-classification folder"
    )
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
    seed: int = Field(0, description="seed of the hash that picks the fraction")

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
    templates: Paths = Field(
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
    seed: int = Field(0, description="seed of the sampled mixtures")
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

    d_model: int = Field(64, ge=8, description="width of the transformer")
    layers: int = Field(2, ge=1, description="transformer blocks")
    heads: int = Field(4, ge=1, description="attention heads (d_model must divide by it)")
    context: int = Field(128, ge=8, description="sequence length in tokens")
    batch_size: int = Field(32, ge=1, description="sequences per training step")
    tokens: int = Field(1_000_000, ge=1000, description="training tokens per proxy run")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate (warmup, cosine decay)")
    eval_tokens: int = Field(65_536, ge=1000, description="tokens of each target evaluated")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    threads: int = Field(1, ge=1, description="torch threads per proxy run (runs go in parallel as tasks)")
    compile: bool = Field(False, description="torch.compile the model (no gain measured on CPU; try it on GPUs)")


class RegressionConfig(Strict):
    """Models mapping mixture weights to target loss; the best by k-fold Spearman is used."""

    models: list[Literal["lightgbm", "log_linear", "linear"]] = Field(
        default_factory=lambda: ["lightgbm", "log_linear", "linear"],
        min_length=1,
        description="regression models tried",
    )
    folds: int = Field(5, ge=2, description="cross-validation folds that rank them")


class ProposerConfig(Strict):
    """RegMix proposal: predict many candidate mixtures, average the best ``top_k``."""

    candidates: int = Field(100_000, ge=100, description="candidate mixtures predicted")
    top_k: int = Field(100, ge=1, description="best-predicted candidates averaged into the proposal")
    kl_weight: float = Field(0.0, ge=0, description="penalty on KL(mixture || prior), keeps proposals near the prior")
    seed: int = Field(0, description="seed of the candidate mixtures")


class FinalConfig(Strict):
    """The final corpus: documents sampled to the mix's weights, shuffled, in near-equal shards written in parallel."""

    shard_rows: int = Field(
        100_000,
        ge=1,
        description="target rows per final/part-NNNNN.parquet: ceil(rows / shard_rows) shards, each copy placed by "
        "a seeded hash, so shards are near-equal (about rows / shards each), not exactly this size",
    )
    seed: int = Field(0, description="seed of sampling and shuffling")
    memory_limit: str = Field(
        "2GB",
        pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
        description="DuckDB memory of each task of the writer (and of the proxy corpus); it spills to disk beyond",
    )


class MixConfig(Strict):
    """Choose how many tokens each source contributes (RegMix-style swarm + regression, or fixed ``weights``) and
    write ``final/``."""

    token_budget: float = Field(gt=0, description="tokens in the final corpus")
    targets: list[MixTarget] = Field(
        default_factory=list,
        description="what the proxies are scored on; required unless `weights` is given (then optional: a target's "
        "held-out split is still kept out of the final corpus)",
    )
    sources: list[str] | None = Field(None, description="sources to mix; default: every source of the manifest")
    weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None,
        description="fixed weights, mixed source -> share of the token budget (>= 0, summing to 1; a mixed source "
        "left out gets 0): the final corpus is written with them and no proxy corpus, swarm, proxy or fit runs; "
        "default: fitted by the swarm",
    )
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

    @field_validator("weights")
    @classmethod
    def _a_mixture(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is not None and abs(sum(weights.values()) - 1) > 1e-6:
            raise ValueError(f"the weights sum to {sum(weights.values()):.6g}, not 1 (within 1e-6)")
        return weights

    @model_validator(mode="after")
    def _distinct(self) -> MixConfig:
        if not self.targets and self.weights is None:
            raise ValueError(
                "targets: at least one target is needed to fit the weights (the proxies are scored on its loss); "
                "or fix the weights with stages.mix.weights"
            )
        names = [t.source for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("targets: each source at most once")
        if self.sources is not None and len(set(self.sources)) != len(self.sources):
            raise ValueError("sources: each source at most once")
        return self


class Stages(Strict):
    """The stages a run executes, in flow order; a missing key runs the stage with defaults, ``null`` skips it
    (ocr needs PDF sources, quality a model, rephrase an endpoint and mix a target or fixed weights, so they run
    only when given). ``ocr`` is a branch: its documents join the flow at ``ocr.enter``, not at the stage after it."""

    ocr: OcrConfig | None = Field(None, description="PDFs into documents (for sources of kind pdf)")
    extract: ExtractConfig | None = Field(
        default_factory=ExtractConfig, description="web archives into documents: text extraction, language ID"
    )
    heuristics: HeuristicsConfig | None = Field(
        default_factory=HeuristicsConfig, description="FineWeb's heuristic filters"
    )
    dedup: DedupConfig | None = Field(default_factory=DedupConfig, description="URL, exact and near-duplicate removal")
    quality: QualityConfig | None = Field(None, description="fastText quality scores and selection")
    rephrase: RephraseConfig | None = Field(None, description="LLM rewrites of documents")
    mix: MixConfig | None = Field(None, description="source weights (RegMix-style, or fixed) and the final corpus")

    def enabled(self) -> list[str]:
        """Names of the enabled stages, in flow order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


if tuple(Stages.model_fields) != STAGE_ORDER:  # the run-folder readers use STAGE_ORDER without this module
    raise RuntimeError(f"Stages fields {tuple(Stages.model_fields)} differ from stage_order.STAGE_ORDER")
SOURCE_STAGES: tuple[str, ...] = ("ocr", "extract")  # they read raw inputs (PDFs, web archives), not documents
DOCUMENT_STAGES: tuple[str, ...] = tuple(s for s in STAGE_ORDER if s not in SOURCE_STAGES)


class Manifest(Strict):
    """A whole run."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", description="the run's name (its folder under output): letters, digits, _ . -"
    )
    output: str = Field(
        description="folder under which the run folder <output>/<name> is created, or an object store URL "
        "(s3://bucket/prefix, any fsspec URL): the run is then stored at <output>/<name> and runs in work_dir"
    )
    work_dir: str | None = Field(
        None,
        description="with an object store output: the run's local working copy (default: under $WINNOW_WORK_DIR, "
        "else ~/.cache/winnow/work)",
    )
    executor: Executor = Field(default_factory=LocalExecutor, description="where tasks run: local, slurm or ray")
    shard_target_mb: int = Field(128, ge=1, description="target size of one output Parquet shard")
    intermediates: Literal["keep", "discard"] = Field(
        "keep",
        description="discard: delete a stage's data/ (and quality's scored/) once no later phase reads it, so a run "
        "holds about two copies of the documents instead of one per stage; rejects, errors, stats and the dedup "
        "index stay. A later change that needs a deleted folder stops with the stages to recompute",
    )
    sources: list[Source] = Field(min_length=1, description="the inputs, each a mapping with a `kind`")
    stages: Stages = Field(default_factory=Stages, description="the configuration of each stage")

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
    def _discard_on_local_runs(self) -> Manifest:
        if self.intermediates == "discard" and self.store_url is not None:
            raise ValueError(
                "intermediates: discard is for runs on a file system; a run on an object store keeps its intermediates"
            )
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
        mixed = mix.sources or known
        for name in mix.weights or ():
            if name not in mixed:
                raise ValueError(f"stages.mix.weights: {name!r} is not a mixed source (mixed: {', '.join(mixed)})")
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
    def store_url(self) -> str | None:
        """Where the run is stored when ``output`` is an object store URL (else None)."""
        from winnow.pipeline.store import is_url

        return f"{self.output.rstrip('/')}/{self.name}" if is_url(self.output) else None

    @property
    def run_dir(self) -> Path:
        """The run folder; with an object store output, its local working copy."""
        from winnow.pipeline.store import default_work_dir

        if (url := self.store_url) is not None:
            return Path(self.work_dir) if self.work_dir else default_work_dir(url)
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


def _unwrap(kind: Any) -> Any:
    """The type behind ``Annotated[...]`` and ``X | None`` (a union of several types stays a union)."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) in (Union, types.UnionType):
        members = [m for m in get_args(kind) if m is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return kind


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _union_members(kind: Any) -> dict[str, Any] | None:
    """For a union, its members by discriminator tag (``kind``); None for any other type."""
    if get_origin(kind) not in (Union, types.UnionType):
        return None
    members: dict[str, Any] = {}
    for member in map(_unwrap, get_args(kind)):
        field = member.model_fields.get("kind") if _is_model(member) else None
        for tag in get_args(_unwrap(field.annotation)) if field else ():
            members[tag] = member
    return members


def _walk(loc: Sequence[int | str]) -> tuple[list[int | str], Any]:
    """A pydantic error location as the user writes it (union and discriminator tags dropped), and the
    manifest type at its end (``Any`` past a point the models do not describe)."""
    path: list[int | str] = []
    kind: Any = Manifest
    for part in loc:
        kind = _unwrap(kind)
        members = _union_members(kind)
        if members is not None:  # pydantic names the member it tried: a tag, not a key of the manifest
            kind = members.get(str(part), Any)
            continue
        path.append(part)
        origin, args = get_origin(kind), get_args(kind)
        if _is_model(kind):
            field = kind.model_fields.get(str(part))
            kind = field.annotation if field else Any
        elif origin is list and args:
            kind = args[0]
        elif origin is tuple and isinstance(part, int) and part < len(args):
            kind = args[part]
        elif origin is dict and len(args) == 2:
            kind = args[1]
        else:
            kind = Any
    return path, _unwrap(kind)


def _dotted(path: Sequence[int | str]) -> str:
    return ".".join(map(str, path))


def _suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean `x`?)`` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _error_line(err: ErrorDetails) -> tuple[str, str]:
    """(dotted field path, plain message) for one pydantic error."""
    loc, kind = _walk(err["loc"])
    where = _dotted(loc)
    if err["type"] == "extra_forbidden":
        _, parent = _walk(err["loc"][:-1])
        allowed = list(parent.model_fields) if _is_model(parent) else []
        key = str(loc[-1])
        hint = _suggest(key, allowed) or (f" (fields here: {', '.join(allowed)})" if allowed else "")
        return where, f"unknown field{hint}; `winnow schema` lists every field"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tags = list(_union_members(kind) or ())
        # the field holding the union names the thing: sources.0 -> a source kind, executor -> an executor kind
        noun = next(str(part) for part in reversed(loc) if isinstance(part, str)).removesuffix("s")
        choose = f"choose one of {', '.join(tags)}"
        if err["type"] == "union_tag_not_found":
            return f"{where}.kind", f"missing: every {noun} needs a kind; {choose}"
        tag = str(err["ctx"]["tag"])
        return f"{where}.kind", f"unknown {noun} kind {tag!r}; {choose}{_suggest(tag, tags)}"
    if err["type"] == "missing":
        _, parent = _walk(err["loc"][:-1])
        field = parent.model_fields.get(str(loc[-1])) if _is_model(parent) else None
        meaning = f" ({field.description})" if field and field.description else ""
        return where, f"required field is missing{meaning}"
    if err["type"] in ("model_type", "model_attributes_type", "dict_type") and _is_model(kind):
        switch = "true, false or " if issubclass(kind, Switchable) else ""
        return where, f"expected {switch}a mapping of its fields (got {_shown(err['input'])})"
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = err.get("input")
    if err["type"] != "value_error" and (given is None or isinstance(given, str | int | float | bool)):
        message += f" (got {_shown(given)})"
    return where, message


def _shown(value: Any, limit: int = 80) -> str:
    """A value the user gave, as Python writes it, cut to ``limit`` characters (one line: newlines escaped)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_validation(path: str, exc: ValidationError) -> str:
    """One line per error: ``file: dotted.field.path: message``."""
    lines = []
    for err in exc.errors():
        where, message = _error_line(err)
        lines.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
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


def _nothing_at(path: str, what: str) -> str:
    """``path <what>``, saying for a relative path which directory it resolved against."""
    where = "" if os.path.isabs(path) else f" (relative paths resolve against {os.getcwd()})"
    return f"{path} {what}{where}"


def missing_inputs(manifest: Manifest) -> list[str]:
    """Field paths of local inputs (globs, listings, model files) that match nothing on disk. Paths are
    checked as :mod:`winnow.pipeline.sources` expands them at run time: relative to the current directory."""
    problems = []
    for i, source in enumerate(manifest.sources):
        for j, pattern in enumerate(source.paths):
            if not is_remote(pattern) and not glob.glob(pattern, recursive=True):
                problems.append(f"sources.{i}.paths.{j}: {_nothing_at(pattern, 'matched no file')}")
        listing = getattr(source, "listing", None)
        if listing and not is_remote(listing) and not os.path.exists(listing):
            problems.append(f"sources.{i}.listing: {_nothing_at(listing, 'does not exist')}")
    extract = manifest.stages.extract
    if extract and extract.language.model and not os.path.exists(extract.language.model):
        problems.append(f"stages.extract.language.model: {_nothing_at(extract.language.model, 'does not exist')}")
    for i, classifier in enumerate(manifest.stages.quality.classifiers if manifest.stages.quality else []):
        if not is_remote(classifier.model) and not os.path.exists(classifier.model):
            problems.append(f"stages.quality.classifiers[{i}].model: {_nothing_at(classifier.model, 'does not exist')}")
    return problems


# ---------------------------------------------------------------- reference (`winnow schema`)


@dataclass(frozen=True)
class SchemaSection:
    """One table of ``winnow schema``: the fields of one mapping of the manifest, at its dotted path."""

    path: str
    summary: str
    rows: list[tuple[str, str, str, str]]  # field, type, default, meaning


def _doc_line(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring, on one line."""
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "`")


def _type_text(kind: Any) -> str:
    """A type as a manifest author reads it: ``int``, ``str | null``, ``list[str]``, ``a | b`` for choices."""
    if get_origin(kind) is Annotated:
        return _type_text(get_args(kind)[0])
    if kind is type(None):
        return "null"
    if kind is Any:
        return "any"
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if _union_members(kind):
            return "mapping with a kind"
        members = sorted(args, key=lambda m: m is type(None))  # null last
        return " | ".join(_type_text(m) for m in members)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin is list:
        return f"list[{_type_text(args[0])}]"
    if origin is tuple:
        return f"[{', '.join(map(_type_text, args))}]"
    if origin is dict:
        return f"mapping {_type_text(args[0])} -> {_type_text(args[1])}"
    if _is_model(kind):
        return "true | false | mapping" if issubclass(kind, Switchable) else "mapping"
    return getattr(kind, "__name__", str(kind))


def _field_type(field: FieldInfo) -> str:
    """A field's type with its bounds and patterns: ``int, >= 1``, ``float, > 0, < 1``, ``list[str] | str``."""
    parts = [_type_text(field.annotation)]
    for meta in field.metadata:
        if isinstance(meta, BeforeValidator) and meta.func is _one_or_many:
            parts[0] += " | str"
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(meta, getattr(annotated_types, name.capitalize())):
                parts.append(f"{symbol} {getattr(meta, name)}")
        if isinstance(meta, annotated_types.MinLen):
            parts.append(f"at least {meta.min_length} item{'s' if meta.min_length > 1 else ''}")
        if getattr(meta, "pattern", None):
            parts.append(f"matching {meta.pattern}")
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    """A default as YAML flow text: null, true, 0.65, [en], {}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, BaseModel):
        return "{}"
    if isinstance(value, list | tuple):
        return f"[{', '.join(map(_value_text, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    if value == "":
        return '""'
    return str(value)


def _nested_models(kind: Any) -> list[tuple[str, type[BaseModel]]]:
    """The mappings a field holds, with the path suffix they sit at: ``("", M)`` for a mapping field,
    ``(".<i>", M)`` for a list of mappings."""
    kind = _unwrap(kind)
    if get_origin(kind) is list:
        return [(".<i>", model) for _, model in _nested_models(get_args(kind)[0])]
    if _is_model(kind):
        return [("", kind)]
    return []


def _section(path: str, model: type[BaseModel]) -> SchemaSection:
    rows = []
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = _value_text(field.default_factory())  # type: ignore[call-arg]
        else:
            default = _value_text(field.default)
        nested = _nested_models(field.annotation)
        meaning = field.description or (_doc_line(nested[0][1]) if nested else "")
        rows.append((name, _field_type(field), default, meaning))
    return SchemaSection(path, _doc_line(model), rows)


def schema_reference() -> list[SchemaSection]:
    """Every mapping of a manifest, in reading order: the top level, sources by kind, executor by kind, the
    stages, then each stage and the mappings inside it (depth first)."""
    sections = [_section("(top level)", Manifest)]
    for key, union in (("sources.<i>", Source), ("executor", Executor)):
        for model in dict.fromkeys((_union_members(_unwrap(union)) or {}).values()):
            kinds = " or ".join(get_args(_unwrap(model.model_fields["kind"].annotation)))
            sections.append(_section(f"{key} (kind: {kinds})", model))

    def walk(path: str, model: type[BaseModel]) -> None:
        sections.append(_section(path, model))
        for name, field in model.model_fields.items():
            for suffix, nested in _nested_models(field.annotation):
                walk(f"{path}.{name}{suffix}", nested)

    walk("stages", Stages)
    return sections


def schema_text() -> str:
    """``winnow schema``: each section as a table of field, type, default and meaning, columns aligned."""
    header = ("field", "type", "default", "meaning")
    blocks = [
        "The manifest, section by section. A key is written in YAML as nested mappings and in --set as its "
        "dotted path (list items by index: sources.0.paths). `winnow schema --json` prints the JSON Schema."
    ]
    for section in schema_reference():
        rows = [header, *section.rows]
        widths = [max(len(row[c]) for row in rows) for c in range(3)]
        lines = [f"{section.path} — {section.summary}" if section.summary else section.path]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
            lines.append(("  " + "  ".join([*cells, row[3]])).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
