"""One PDF into page texts: triage every page, run its route, fall back along the engine chain, clean up.

:func:`process_pdf` is what the OCR stage's sandboxed worker runs (``winnow.ocr.document:process_pdf``): it
receives the PDF's bytes and the stage's settings and returns plain data (it must pickle). Engines
are created once per worker and kept for the next PDF.

Routes (``ocr/triage.py``): ``text-layer`` pages take pdfium's text; ``blank`` pages give no text;
``ocr`` pages go down the chain — ``vlm`` (when configured), ``tesseract``, then the text layer —
and a page that an engine fails on (server down after retries, unusable answers, missing tesseract
data) moves to the next engine, as does a page an engine reads no text on while its text layer has
some (a scan with a few words of text layer that OCR cannot see). Each page records its route, the
engine that produced its text, the failures before it, and the triage facts.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pypdfium2 as pdfium

from winnow.ocr.cleanup import assemble, join_hyphenation, remove_margins
from winnow.ocr.tesseract import EngineUnavailable, TesseractEngine
from winnow.ocr.text_layer import read_layer
from winnow.ocr.triage import PageFacts, page_facts, route
from winnow.ocr.vlm import VlmEngine, VlmFailed, VlmResult, page_png
from winnow.pipeline.manifest import OcrConfig

_engines: dict[str, Any] = {}  # engine name -> engine, or the EngineUnavailable that stops it, per worker


def engine_chain(config: OcrConfig) -> list[str]:
    """Engines an OCR page tries, in order; the text layer is always the last resort."""
    first = {"auto": "vlm" if config.vlm else "tesseract"}.get(config.engine, config.engine)
    chain = ["vlm", "tesseract", "text-layer"]
    return chain[chain.index(first) :]


def _engine(name: str, config: OcrConfig) -> Any:
    """The worker's engine ``name`` (created on first use); raises EngineUnavailable if it cannot run."""
    key = f"{name}:{config.model_dump_json(include={'tesseract', 'vlm'})}"
    if key not in _engines:
        try:
            _engines[key] = TesseractEngine(config.tesseract) if name == "tesseract" else VlmEngine(config.vlm)
        except EngineUnavailable as exc:
            _engines[key] = exc
    engine = _engines[key]
    if isinstance(engine, EngineUnavailable):
        raise engine
    return engine


def _ocr_page(
    page: pdfium.PdfPage, facts: PageFacts, layer: str, config: OcrConfig, asked: Future[VlmResult] | None = None
) -> dict[str, Any]:
    """Text of an OCR-routed page from the first engine of the chain that does not fail; ``asked`` is the
    VLM's answer for this page when it was already requested (the VLM is then not asked again)."""
    failures: list[dict[str, str]] = []
    for name in engine_chain(config):
        try:
            if name == "text-layer":
                return {"engine": name, "text": layer, "failures": failures}
            if name == "tesseract":
                found = _engine(name, config).recognise(page, facts.image_dpi)
                detail = {"dpi": found.dpi, "confidence": round(found.confidence, 1), "rotated": found.rotated}
                read = {"engine": name, "text": found.text, "failures": failures, **detail}
            else:
                answer = asked.result() if asked is not None else _engine(name, config).recognise(page)
                detail = {
                    "attempts": answer.attempts,
                    "temperature": answer.temperature,
                    "rotated": answer.rotated,
                    "language": answer.language,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                }
                read = {"engine": name, "text": answer.text, "failures": failures, **detail}
        except (EngineUnavailable, VlmFailed, RuntimeError) as exc:
            failures.append({"engine": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if _has_text(read["text"]) or not _has_text(layer):
            return read
        failures.append({"engine": name, "error": "read no text where the text layer has some"})
    raise AssertionError("the text layer never fails")  # pragma: no cover


def _has_text(text: str) -> bool:
    """Whether ``text`` holds a letter or digit."""
    return any(ch.isalnum() for ch in text)


def _read_pages(
    pdf: pdfium.PdfDocument, config: OcrConfig
) -> tuple[list[dict[str, Any]], list[str], list[list[float] | None]]:
    """Every page's record, text and the places of its lines (text-layer text only), in page order.

    When the chain starts with the VLM, OCR pages are rendered here (pdfium stays on this thread) and
    sent to it from a pool of ``vlm.concurrency`` threads; at most twice that many pages wait at once.
    A page's answer is taken in page order, and a page the VLM failed on goes down the rest of the
    chain here."""
    vlm = _concurrent_vlm(config)
    pool = ThreadPoolExecutor(vlm.config.concurrency, "vlm") if vlm is not None else None
    pages: list[dict[str, Any]] = []
    texts: list[str] = []
    places: list[list[float] | None] = []
    waiting: dict[int, tuple[Future[VlmResult], PageFacts, str, list[float]]] = {}  # index -> answer, facts, layer

    def finish(index: int) -> None:
        asked, facts, layer, placed = waiting.pop(index)
        page = pdf[index]
        pages[index].update(_ocr_page(page, facts, layer, config, asked))
        texts[index] = pages[index].pop("text")
        places[index] = placed if pages[index]["engine"] == "text-layer" else None
        page.close()

    try:
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            read = read_layer(page, textpage)
            layer, placed = read.text, read.places
            facts = page_facts(page, layer, config.triage)
            where = route(facts, config.triage)
            record: dict[str, Any] = {"page": index + 1, "route": where, **facts.as_dict()}
            if where == "text-layer":
                record.update(engine="text-layer", text=layer, failures=[])
            elif where == "blank":
                record.update(engine=None, text="", failures=[])
            elif vlm is not None and pool is not None:
                png = page_png(page, vlm.config.image_longest_side)
                waiting[index] = (pool.submit(vlm.recognise_png, png), facts, layer, placed)
                record["text"] = ""
            else:
                record.update(_ocr_page(page, facts, layer, config))
            texts.append(record.pop("text"))
            places.append(placed if record.get("engine") == "text-layer" else None)
            pages.append(record)
            textpage.close()
            page.close()
            if vlm is not None and len(waiting) >= 2 * vlm.config.concurrency:
                finish(min(waiting))
        for index in sorted(waiting):
            finish(index)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return pages, texts, places


def _concurrent_vlm(config: OcrConfig) -> VlmEngine | None:
    """The worker's VLM engine when OCR pages go to it first and it can run; else None (pages then take the
    chain one by one, and an unavailable VLM is recorded as each page's failure)."""
    if config.vlm is None or engine_chain(config)[0] != "vlm":
        return None
    try:
        return _engine("vlm", config)
    except EngineUnavailable:
        return None


def _gives_no_pages(error: bool, reason: str, detail: str) -> dict[str, Any]:
    return {"error": error, "reason": reason, "detail": detail}


def process_pdf(data: bytes, settings: dict[str, Any]) -> dict[str, Any]:
    """Pages of one PDF as ``{"pages": [...], "text": ..., "spans": [...], "page_texts": [...]}``, or for a
    PDF that gives none ``{"error": bool, "reason": ..., "detail": ...}``: ``pdf_unreadable``,
    ``pdf_encrypted`` (errors), ``too_many_pages`` (a reject). What an engine raises unexpectedly propagates."""
    config = OcrConfig.model_validate(settings)
    started = time.perf_counter()
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = "pdf_encrypted" if "password" in str(exc).lower() else "pdf_unreadable"
        return _gives_no_pages(True, reason, f"PdfiumError: {exc}")
    try:
        count = len(pdf)
        if count > config.max_pages:
            return _gives_no_pages(False, "too_many_pages", f"{count} pages > max_pages {config.max_pages}")
        pages, texts, places = _read_pages(pdf, config)
    finally:
        pdf.close()
    if config.remove_headers:
        texts = remove_margins(texts, places, config.margin_share)
    text, spans = assemble(texts, [p["page"] for p in pages])
    return {
        "pages": pages,
        "page_texts": [join_hyphenation(t.strip()) for t in texts],
        "text": text,
        "spans": spans,
        "seconds": round(time.perf_counter() - started, 3),
    }
