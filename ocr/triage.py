"""Page triage: what a PDF page holds, and which route its text takes.

For each page :func:`page_facts` measures the text layer (characters, share of alphanumerics, share
of U+FFFD — the mark of a font whose ToUnicode map is missing or broken), the share of the page that
images cover and their resolution, and for a page with neither text nor images whether anything is
drawn on it at all. :func:`route` turns those facts into one of three routes:

- ``text-layer``: enough readable characters and the page is not mostly a picture of text;
- ``ocr``: no usable text layer (scans, image wrappers, broken fonts) or a page covered by images
  with only a little text (e.g. a scan with a stamped header);
- ``blank``: nothing to read.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from winnow.pipeline.manifest import TriageConfig

Route = Literal["text-layer", "ocr", "blank"]

NOT_ALNUM = re.compile(r"[\W_]+")
INK_PROBE_DPI = 18  # a thumbnail is enough to tell a blank page from a drawn one
INK_LEVEL = 200  # grey levels below this count as ink
MAX_FORM_DEPTH = 4  # images nested deeper in form XObjects are not counted


@dataclass(frozen=True)
class PageFacts:
    """What triage measured on one page (kept per page in the document's ``meta``)."""

    chars: int  # characters in the text layer
    alnum_share: float  # of the non-space characters
    replacement_share: float  # U+FFFD among the non-space characters
    image_coverage: float | None  # share of the page area under image objects (0..1); None: not measured
    image_dpi: float | None  # resolution of the largest image as placed on the page
    ink: float | None  # share of dark pixels of a thumbnail; measured only without text and images

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def page_facts(page: pdfium.PdfPage, text: str, config: TriageConfig) -> PageFacts:
    """Measure ``page``; ``text`` is its whole text layer.

    A page whose text layer is readable and dense enough that no image could make it OCR's is not
    searched for images (``image_coverage`` None): walking every page object through pdfium costs
    about a fifth of the text-layer engine's time on a paper's page."""
    visible = "".join(text.split())
    n = max(len(visible), 1)
    alnum = len(NOT_ALNUM.sub("", visible)) / n  # [^\W_] is exactly str.isalnum, counted in C
    replacement = visible.count("\ufffd") / n
    if len(visible) >= config.dense_text_chars and _readable(len(visible), alnum, replacement, config):
        return PageFacts(len(visible), round(alnum, 4), round(replacement, 4), None, None, None)
    width, height = page.get_size()
    area = max(width * height, 1e-6)
    covered = 0.0
    largest, dpi = 0.0, None
    for left, bottom, right, top, px_width in _images(page.raw):
        w = max(0.0, min(right, width) - max(left, 0.0))
        h = max(0.0, min(top, height) - max(bottom, 0.0))
        covered += w * h
        if w * h > largest and right > left and px_width > 0:
            largest, dpi = w * h, px_width / ((right - left) / 72.0)
    ink = None
    if not visible and covered == 0:
        thumb = page.render(scale=INK_PROBE_DPI / 72.0, grayscale=True).to_pil()
        histogram = thumb.histogram()
        ink = sum(histogram[:INK_LEVEL]) / max(sum(histogram), 1)
    return PageFacts(len(visible), round(alnum, 4), round(replacement, 4), round(min(covered / area, 1.0), 4), dpi, ink)


def _images(page: Any, depth: int = 0) -> Iterator[tuple[float, float, float, float, int]]:
    """(left, bottom, right, top, pixel width) of the page's image objects, those inside form XObjects too.

    Raw pdfium calls: wrapping every object of a page in Python (text runs, paths) costs more than the
    rest of triage together."""
    count, get = (
        (pdfium_c.FPDFPage_CountObjects, pdfium_c.FPDFPage_GetObject)
        if depth == 0
        else (pdfium_c.FPDFFormObj_CountObjects, pdfium_c.FPDFFormObj_GetObject)
    )
    box = [ctypes.c_float() for _ in range(4)]
    px_width, px_height = ctypes.c_uint(), ctypes.c_uint()
    for index in range(count(page)):
        obj = get(page, index)
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < MAX_FORM_DEPTH:
            yield from _images(obj, depth + 1)
        elif kind == pdfium_c.FPDF_PAGEOBJ_IMAGE and pdfium_c.FPDFPageObj_GetBounds(obj, *map(ctypes.byref, box)):
            ok = pdfium_c.FPDFImageObj_GetImagePixelSize(obj, ctypes.byref(px_width), ctypes.byref(px_height))
            yield (*(b.value for b in box), px_width.value if ok else 0)


def _readable(chars: int, alnum_share: float, replacement_share: float, config: TriageConfig) -> bool:
    """A text layer with enough characters, mostly letters and digits, few U+FFFD."""
    return (
        chars >= config.min_text_chars
        and alnum_share >= config.min_alnum_share
        and replacement_share <= config.max_replacement_share
    )


def route(facts: PageFacts, config: TriageConfig) -> Route:
    """The route of a page with ``facts`` under the thresholds of ``config``."""
    readable = _readable(facts.chars, facts.alnum_share, facts.replacement_share, config)
    pictured = (
        facts.image_coverage is not None
        and facts.image_coverage >= config.image_page_coverage
        and facts.chars < config.dense_text_chars
    )
    if readable and not pictured:
        return "text-layer"
    if facts.chars == 0 and facts.image_coverage == 0 and (facts.ink or 0.0) < config.min_ink:
        return "blank"
    return "ocr"
