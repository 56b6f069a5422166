"""The OCR stage's datatrove step: every PDF input of the task into documents, rejects or error records.

PDF ``i`` goes to task ``i % tasks``. Each PDF is read once and hashed (SHA-256): the hash is the
document id's key (the same PDF gives the same id wherever it lies) and the key of a per-PDF result
cache, ``stages/ocr/pdfs/<sha256>.json``, written atomically when the PDF is done. A task killed
midway therefore redoes only the PDF it was on: a rerun takes finished PDFs from the cache (all but
those that timed out or killed their worker, which it tries again).

The work itself (:func:`winnow.ocr.document.process_pdf`) runs in a :class:`~winnow.pipeline.sandbox.Sandbox`
worker with a per-PDF timeout and memory cap, so a decompression bomb or a PDF that sends pdfium or
tesseract into a loop costs one error record, not the task. Outcomes:

- a document per PDF (or per page with ``split: page``) with ``meta``: ``pdf_file``, ``sha256``,
  ``pages``, ``page_spans`` (``[start, end, page]``), ``page_routes`` (route, engine, fallbacks and
  triage facts per page); no timing, so the same PDFs give the same rows (a PDF's seconds stay in its cache
  record, ``seconds``, and the stage's stats count ``ocr_ms``);
- rejects: ``too_large``, ``too_many_pages``, ``no_text`` (a PDF, or with ``split: page`` a page, without text);
- errors: ``input_unreadable``, ``pdf_unreadable`` (broken), ``pdf_encrypted`` (needs a password), ``ocr_timeout``,
  ``ocr_worker_died``, ``ocr_failed``, ``ocr_fallback_limit``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.pipeline.json_records import read_json, write_json
from winnow.pipeline.manifest import OcrConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.readers import stable_id
from winnow.pipeline.sandbox import Sandbox, SandboxCrashed, SandboxTimeout
from winnow.pipeline.sources import InputFile

PROCESS_PDF = "winnow.ocr.document:process_pdf"  # what the sandbox worker runs
WORKER_ENV = {"OMP_THREAD_LIMIT": "1"}  # one tesseract thread per worker
RETRIED = ("ocr_timeout", "ocr_worker_died")  # not cached: a rerun tries these PDFs again


class PdfReader(PipelineStep):
    """Reads the task's PDFs and emits their documents (OCR'd in a sandboxed worker, cached per PDF)."""

    name = "📄 PDFs to text"
    type = "OCR"

    def __init__(self, inputs: Sequence[InputFile], config: OcrConfig, layout: StageLayout, crawls: dict[str, str]):
        """``crawls``: the batch id of each PDF source that sets one."""
        super().__init__()
        self.inputs = list(inputs)
        self.config = config
        self.layout = layout
        self.crawls = crawls

    @property
    def cache_dir(self) -> Path:
        return self.layout.stage_dir / "pdfs"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        settings = self.config.model_dump(mode="json")
        with (
            OutcomeWriter(self.layout, "ocr") as rejects,
            OutcomeWriter(self.layout, "ocr", kind="errors") as errors,
            Sandbox(PROCESS_PDF, self.config.timeout_s, self.config.memory_limit_mb, env=WORKER_ENV) as sandbox,
        ):
            for index, item in enumerate(self.inputs):
                if index % world_size != rank:
                    continue
                outcome = self._pdf(item, sandbox, settings)
                # the stage's input unit: a PDF, or each page with split: page
                self.stat_update(f"in:{item.source}", value=len(outcome.documents) + len(outcome.dropped))
                yield from outcome.documents
                for dropped in outcome.dropped:
                    writer = errors if dropped.is_error else rejects
                    self.stat_update(f"{'errored' if dropped.is_error else 'rejected'}_{dropped.reason}")
                    writer.write(dropped.record, rank, reason=dropped.reason, detail=dropped.detail)
                progress.advance(docs=1)
                progress.next_input(1)
        progress.flush()

    def _pdf(self, item: InputFile, sandbox: Sandbox, settings: dict[str, Any]) -> PdfOutcome:
        """What becomes of one PDF."""
        base = {"source": item.source, "crawl": self.crawls.get(item.source), "meta": {"pdf_file": item.path}}
        failed = Document(text="", id=stable_id(item.source, item.path, "error"), metadata=base)
        max_bytes = self.config.max_file_mb * 1024 * 1024
        too_large = f"more than max_file_mb {self.config.max_file_mb}"
        if item.size > max_bytes:
            return PdfOutcome.rejected(failed, "too_large", f"{item.size} bytes: {too_large}")
        try:
            with fsspec.open(item.path, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            return PdfOutcome.error(failed, "input_unreadable", f"{type(exc).__name__}: {exc}")
        if len(data) > max_bytes:
            return PdfOutcome.rejected(failed, "too_large", too_large)
        sha = hashlib.sha256(data).hexdigest()
        failed = Document(text="", id=stable_id(item.source, f"sha256:{sha}"), metadata=base)
        failed.metadata["meta"]["sha256"] = sha
        cached = self.cache_dir / f"{sha}.json"
        result = read_json(cached)
        if result is None:
            with self.track_time():
                result = self._process(data, sandbox, settings)
            if "seconds" in result:
                self.stat_update("ocr_ms", value=round(1000 * result["seconds"]))
            if result.get("reason") not in RETRIED:
                write_json(cached, result)
        else:
            self.stat_update("cached_pdfs")
        if "error" in result:
            make = PdfOutcome.error if result["error"] else PdfOutcome.rejected
            return make(failed, result["reason"], result["detail"])
        return self._documents(item, sha, result, base)

    def _process(self, data: bytes, sandbox: Sandbox, settings: dict[str, Any]) -> dict[str, Any]:
        """The worker's result (pages, or ``{"error": bool, "reason", "detail"}`` for a PDF that gives none),
        or such a record for a worker that timed out, died or raised."""
        try:
            return sandbox.call(data, settings)
        except SandboxTimeout as exc:
            return {"error": True, "reason": "ocr_timeout", "detail": str(exc)}
        except SandboxCrashed as exc:
            return {"error": True, "reason": "ocr_worker_died", "detail": str(exc)}
        except RuntimeError as exc:  # an engine raised unexpectedly: the worker's exception, as "Type: message"
            return {"error": True, "reason": "ocr_failed", "detail": str(exc)}

    def _documents(self, item: InputFile, sha: str, result: dict[str, Any], base: dict[str, Any]) -> PdfOutcome:
        """Documents of a processed PDF (or why it gives none)."""
        pages = result["pages"]
        routes = Counter(p["route"] for p in pages)
        engines = Counter(p["engine"] for p in pages if p["engine"])
        for key, count in routes.items():
            self.stat_update(f"pages_{key}", value=count)
        for key, count in engines.items():
            self.stat_update(f"pages_by_{key}", value=count)
        fallbacks = sum(1 for p in pages if p["failures"])
        self.stat_update("pages_fallback", value=fallbacks)
        meta = {"pdf_file": item.path, "sha256": sha, "pages": len(pages)}
        failed = Document(text="", id=stable_id(item.source, f"sha256:{sha}"), metadata={**base, "meta": meta})
        limit = self.config.max_fallback_pages
        if limit is not None and fallbacks > limit:
            detail = f"{fallbacks} pages fell back to a later engine > max_fallback_pages {limit}"
            return PdfOutcome.error(failed, "ocr_fallback_limit", detail)
        if self.config.split == "document":
            chars = len(result["text"].strip())
            if chars < max(self.config.min_text_chars, 1):
                return PdfOutcome.rejected(failed, "no_text", f"{chars} chars from {len(pages)} pages")
            meta.update(page_spans=result["spans"], page_routes=pages)
            self.stat_update("documents")
            return PdfOutcome([Document(text=result["text"], id=failed.id, metadata={**base, "meta": meta})])
        outcome = PdfOutcome()
        for page, text in zip(pages, result["page_texts"], strict=True):
            page_meta = {**meta, "page": page["page"], "page_routes": [page]}
            page_id = stable_id(item.source, f"sha256:{sha}", str(page["page"]))
            doc = Document(text=text, id=page_id, metadata={**base, "meta": page_meta})
            if len(text) < max(self.config.min_text_chars, 1):
                outcome.dropped.append(Dropped(doc, "no_text", f"{len(text)} chars ({page['route']} page)", False))
            else:
                outcome.documents.append(doc)
        self.stat_update("documents", value=len(outcome.documents))
        return outcome


@dataclass
class Dropped:
    """A PDF (or, with ``split: page``, a page) that gives no document, and why."""

    record: Document
    reason: str
    detail: str
    is_error: bool


@dataclass
class PdfOutcome:
    """What one PDF gives: documents and dropped records (each counts once in the stage's input)."""

    documents: list[Document] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    @staticmethod
    def rejected(record: Document, reason: str, detail: str) -> PdfOutcome:
        return PdfOutcome(dropped=[Dropped(record, reason, detail, False)])

    @staticmethod
    def error(record: Document, reason: str, detail: str) -> PdfOutcome:
        return PdfOutcome(dropped=[Dropped(record, reason, detail, True)])
