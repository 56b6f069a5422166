"""The extraction step: raw HTML bytes of a response into main text with trafilatura.

Cheap checks run first, so trafilatura (most of the CPU of the stage) sees only pages that can be
kept: non-2xx status, empty payload, oversize page, binary payload. Then the bytes are decoded
(declared charset, then ``<meta charset>``, then UTF-8, then charset detection; a last-resort lossy
decode is noted in ``meta.decode``), and the page goes to a :class:`~winnow.pipeline.sandbox.Sandbox`
with a per-page timeout and memory cap, whose worker (:mod:`winnow.extract.html_text`) parses it with
lexbor (:mod:`winnow.extract.prepass`), rejects it when its visible text is confidently in a language
the run does not keep, or when it has fewer words than the heuristics stage's shortest keepable
document (:func:`prerejection_floor`), and otherwise runs trafilatura (with the fallback cascade).
Every page leaves as a document, a reject with a reason (``http_status``, ``empty_payload``,
``too_large``, ``not_html``, ``language_precheck``, ``too_few_words``, ``extract_timeout``,
``no_text``) or an error (``extract_failed``, ``extract_worker_died``); ``meta.extractor`` says which
extraction gave the text (``trafilatura`` or ``trafilatura-fallback``). WARC revisit stubs
(:mod:`winnow.pipeline.revisits`) pass on unextracted when a dedup stage will resolve them, else are
rejected as ``revisit``.
"""

from __future__ import annotations

import codecs
import os
import re
from typing import TYPE_CHECKING, Any

from charset_normalizer import from_bytes
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.filters.fasttext_models import default_lid_model
from winnow.pipeline.manifest import ExtractConfig, HeuristicsConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.revisits import is_revisit_stub
from winnow.pipeline.sandbox import Sandbox, SandboxCrashed, SandboxTimeout

if TYPE_CHECKING:
    from winnow.extract.html_text import LanguageCheck, PageOutcome

TRAFILATURA = "winnow.extract.html_text:extract_page"  # what the extraction sandbox's worker runs

META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
SNIFF_BYTES = 4096
# charsets the HTML standard forbids (they can smuggle markup, and UTF-7 yields lone surrogates)
FORBIDDEN_CODECS = {"utf-7", "utf_7", "hz", "iso2022_jp", "iso2022_kr", "iso2022_jp_2"}


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None
    return None if codec in FORBIDDEN_CODECS else codec


def decode_html(payload: bytes, declared: str | None) -> tuple[str, str]:
    """Decode a page; returns (text, how) where ``how`` names the charset used and how it was chosen."""
    sniffed = META_CHARSET.search(payload[:SNIFF_BYTES])
    candidates = [
        ("http", _codec(declared)),
        ("meta", _codec(sniffed.group(1).decode("ascii", "ignore")) if sniffed else None),
        ("default", "utf-8"),
    ]
    for origin, codec in candidates:
        if codec is None:
            continue
        try:
            return payload.decode(codec), f"{codec} ({origin})"
        except (UnicodeDecodeError, LookupError):
            continue
    # UTF-8 with a few invalid bytes (a damaged page, not another charset): keep the valid text as is.
    # Legacy single-byte text mislabelled as UTF-8 has almost no valid multi-byte sequences.
    lossy = payload.decode("utf-8", errors="replace")
    invalid = lossy.count("\ufffd")
    if len(lossy) - len(lossy.encode("ascii", "ignore")) - invalid > invalid:
        return lossy, "utf-8 (lossy)"
    matches = from_bytes(payload[:200_000])
    best = matches.best()
    if best is not None and best.encoding:
        encoding = best.encoding
        # detection often ties between Western/Central European code pages (same chaos and coherence
        # scores); the tie goes to windows-1252, the web's most common legacy charset (and WHATWG's default)
        tied = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
        if "cp1252" in tied:
            encoding = "cp1252"
        return payload.decode(encoding, errors="replace"), f"{encoding} (detected)"
    return payload.decode("utf-8", errors="replace"), "utf-8 (lossy)"


def min_kept_words(heuristics: HeuristicsConfig | None) -> int | None:
    """The fewest words a document the heuristics stage keeps can have (Gopher quality's ``min_doc_words``,
    counted by the regex tokenizer), or None when no such floor is known: no heuristics stage, Gopher
    quality off, spaCy's tokenizer (it splits inside a run of letters: "cannot") or FineWeb-2's
    per-language settings (their own tokenizers and thresholds)."""
    if heuristics is None or heuristics.multilingual is not None or heuristics.tokenizer != "fast":
        return None
    gopher = heuristics.gopher_quality
    return gopher.min_doc_words if gopher.enabled and gopher.min_doc_words else None


def prerejection_floor(config: ExtractConfig, heuristics: HeuristicsConfig | None) -> int | None:
    """The word bound under which a page is rejected unextracted (``too_few_words``): the lower of
    ``extract.min_words`` and :func:`min_kept_words`, so raising a filter's threshold leaves the extract
    stage's output (and fingerprint) as it was; None when the pre-pass is off or no floor is known."""
    floor = min_kept_words(heuristics)
    if not config.prepass or config.min_words is None or floor is None:
        return None
    return min(floor, config.min_words)


def looks_binary(payload: bytes) -> bool:
    """NUL bytes near the start, or no markup at all: not an HTML page whatever its content type says."""
    head = payload[:SNIFF_BYTES]
    return b"\x00" in head or b"<" not in payload[:65536]


class HtmlExtractor(PipelineStep):
    """Extract main text from ``metadata['payload']`` into ``doc.text``."""

    name = "🛢 trafilatura (sandboxed)"
    type = "WINNOW"

    def __init__(
        self,
        config: ExtractConfig,
        layout: StageLayout,
        resolve_revisits: bool = False,
        min_words: int | None = None,
    ) -> None:
        """``resolve_revisits``: a dedup stage follows, so revisit stubs pass on instead of being rejected;
        ``min_words``: pages whose word bound is below it are rejected unextracted (:func:`prerejection_floor`)."""
        super().__init__()
        self.config = config
        self.layout = layout
        self.resolve_revisits = resolve_revisits
        self.min_words = min_words if config.prepass else None

    @property
    def language_check(self) -> LanguageCheck | None:
        """The worker's check of a page's visible text before extraction; None when the run keeps every
        language or the check is off (``language.precheck_min_score: null``)."""
        language = self.config.language
        if not language.keep or language.precheck_min_score is None:
            return None
        model = language.model or str(default_lid_model())
        keep, min_score = sorted(language.keep), language.precheck_min_score
        check: LanguageCheck = {"model": str(model), "keep": keep, "min_score": min_score}
        return check

    @property
    def worker_memory_mb(self) -> int:
        """The extraction worker's address-space cap: ``memory_limit_mb`` for the page, plus the language
        model's file size when the worker checks languages (a GlotLID model is 1.6 GB)."""
        check = self.language_check
        model_mb = -(-os.path.getsize(check["model"]) // (1 << 20)) if check else 0
        return self.config.memory_limit_mb + model_mb

    @property
    def trafilatura_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "favor_precision": c.focus == "precision",
            "favor_recall": c.focus == "recall",
            "include_comments": c.include_comments,
            "include_tables": c.include_tables,
            "deduplicate": False,
        }

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        c = self.config
        options = self.trafilatura_options
        plan = {"prepass": c.prepass, "language": self.language_check, "min_words": self.min_words}
        plan["fallback"] = c.fallback
        with (
            OutcomeWriter(self.layout, "extract") as rejects,
            OutcomeWriter(self.layout, "extract", kind="errors") as errors,
            Sandbox(TRAFILATURA, c.timeout_s, self.worker_memory_mb) as sandbox,
        ):
            for doc in data:
                payload: bytes = doc.metadata.pop("payload", None) or b""
                meta = doc.metadata.setdefault("meta", {})
                status = meta.get("http_status")
                reason = None
                if status is not None and not 200 <= status < 300:
                    reason, detail = "http_status", str(status)
                elif is_revisit_stub(doc):
                    if self.resolve_revisits:  # dedup resolves it against the payload it names
                        self.stat_update("revisit_stub")
                        yield doc
                        continue
                    reason, detail = "revisit", meta["revisit"]["payload_digest"]
                elif not payload.strip():
                    reason, detail = "empty_payload", None
                elif len(payload) > c.max_html_bytes:
                    reason, detail = "too_large", f"{len(payload)} bytes > {c.max_html_bytes}"
                elif looks_binary(payload):
                    reason, detail = "not_html", "binary or markup-free payload"
                if reason:
                    self.stat_update(f"rejected_{reason}")
                    rejects.write(doc, rank, reason=reason, detail=detail)
                    continue
                try:
                    html, how = decode_html(payload, meta.get("http_charset"))
                except Exception as exc:  # one strange page must not fail the task (and every rerun)
                    self.stat_update("errored_extract_failed")
                    errors.write(doc, rank, reason="extract_failed", detail=f"{type(exc).__name__}: {exc}")
                    continue
                meta["decode"] = how
                with self.track_time():
                    try:
                        outcome: PageOutcome = sandbox.call(html, doc.metadata.get("url"), options, plan)
                    except SandboxTimeout as exc:
                        self.stat_update("rejected_extract_timeout")
                        rejects.write(doc, rank, reason="extract_timeout", detail=str(exc))
                        continue
                    except SandboxCrashed as exc:
                        self.stat_update("errored_extract_worker_died")
                        errors.write(doc, rank, reason="extract_worker_died", detail=str(exc))
                        continue
                    except RuntimeError as exc:
                        self.stat_update("errored_extract_failed")
                        errors.write(doc, rank, reason="extract_failed", detail=str(exc))
                        continue
                method = outcome["how"]
                if method == "language_precheck" and outcome["language"]:
                    self.stat_update("rejected_language_precheck")
                    language, score = outcome["language"]
                    detail = f"visible text is {language} ({score:.2f})"
                    rejects.write(doc, rank, reason="language_precheck", detail=detail)
                    continue
                if method == "too_few_words":
                    self.stat_update("rejected_too_few_words")
                    detail = f"at most {outcome['words']} words < {self.min_words} (the filters keep none shorter)"
                    rejects.write(doc, rank, reason="too_few_words", detail=detail)
                    continue
                text = (outcome["text"] or "").strip()
                if len(text) < max(c.min_text_chars, 1):
                    self.stat_update("rejected_no_text")
                    rejects.write(doc, rank, reason="no_text", detail=f"{len(text)} chars extracted")
                    continue
                doc.text = text
                meta["extractor"] = method
                self.stat_update("extracted")
                if method == "trafilatura-fallback":
                    self.stat_update("extracted_with_fallback")
                yield doc
