"""The CPU OCR engine: tesseract, in-process through tesserocr, one thread.

A page is rendered with pdfium at a resolution taken from the page itself: the resolution of its
largest image as placed on the page (a 150 dpi scan is rendered at 150 dpi: upsampling adds no
detail), clamped to ``[min_dpi, max_dpi]``, and lowered further when the render would exceed
``max_render_pixels`` (a huge page size must not allocate gigabytes). Pages without images render
at ``max_dpi``, and so does a page whose scan read as no text at its own resolution (small print
scanned at a low resolution, a chart's labels). Optionally tesseract's orientation detection turns
a page scanned sideways or upside down before recognition, and table rules are erased from the image
(:mod:`winnow.ocr.rules`).

tesseract's language data (``eng.traineddata``, and ``osd.traineddata`` for orientation) come from
Debian's ``tesseract-ocr-eng``/``tesseract-ocr-osd``; :func:`tessdata_dir` finds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium

from winnow.ocr.rules import drop_rules, erase_rules
from winnow.pipeline.manifest import TesseractConfig

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract's OpenMP: one thread per process, before it loads

TESSDATA_CANDIDATES = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)


class EngineUnavailable(Exception):
    """An OCR engine cannot run here (missing package or language data); the message says what to install."""


def tessdata_dir(configured: str | None, languages: str) -> str:
    """The folder holding ``<lang>.traineddata`` for every language of ``languages`` ("eng+deu")."""
    candidates = [configured] if configured else [os.environ.get("TESSDATA_PREFIX"), *TESSDATA_CANDIDATES]
    for folder in filter(None, candidates):
        if all((Path(folder) / f"{lang}.traineddata").is_file() for lang in languages.split("+")):
            return folder
    where = configured or ", ".join(filter(None, candidates))
    raise EngineUnavailable(
        f"tesseract language data for {languages!r} not found in {where}: install Debian's tesseract-ocr-eng "
        "(and tesseract-ocr-<lang> for other languages) or set stages.ocr.tesseract.tessdata"
    )


def render_dpi(image_dpi: float | None, width_pt: float, height_pt: float, config: TesseractConfig) -> float:
    """The resolution to render a page at: its scan's own, clamped, and capped by ``max_render_pixels``."""
    dpi = config.max_dpi if image_dpi is None else min(max(image_dpi, config.min_dpi), config.max_dpi)
    pixels = (width_pt / 72 * dpi) * (height_pt / 72 * dpi)
    if pixels > config.max_render_pixels:
        dpi *= (config.max_render_pixels / pixels) ** 0.5
    return dpi


@dataclass
class TesseractResult:
    text: str
    dpi: float
    confidence: float  # tesseract's mean word confidence, 0..100
    rotated: int  # degrees the page was turned before recognition


class TesseractEngine:
    """Recognises rendered pages; one tesseract API per engine, reused across pages."""

    name = "tesseract"

    def __init__(self, config: TesseractConfig) -> None:
        try:
            import tesserocr
        except ImportError as exc:
            raise EngineUnavailable(f"tesserocr is not installed ({exc}): pip install tesserocr") from None
        self.config = config
        self._tesserocr = tesserocr
        path = tessdata_dir(config.tessdata, config.languages)
        self._api = tesserocr.PyTessBaseAPI(path=path, lang=config.languages, psm=tesserocr.PSM.AUTO)
        self._osd = None
        if config.detect_rotation and (Path(path) / "osd.traineddata").is_file():
            self._osd = tesserocr.PyTessBaseAPI(path=path, lang="osd", psm=tesserocr.PSM.OSD_ONLY)

    def close(self) -> None:
        self._api.End()
        if self._osd is not None:
            self._osd.End()

    def recognise(self, page: pdfium.PdfPage, image_dpi: float | None) -> TesseractResult:
        """The page's text as tesseract reads it: at the scan's own resolution, and once more at ``max_dpi``
        when that reads no letter or digit (a 96-dpi chart's labels are too few pixels tall for tesseract
        to find; at three times the size it reads them)."""
        width, height = page.get_size()
        dpi = render_dpi(image_dpi, width, height, self.config)
        found = self._read(page, dpi)
        larger = render_dpi(None, width, height, self.config)
        if larger >= 1.5 * dpi and not any(ch.isalnum() for ch in found.text):
            found = self._read(page, larger)
        return found

    def _read(self, page: pdfium.PdfPage, dpi: float) -> TesseractResult:
        """The page rendered at ``dpi`` as tesseract reads it."""
        image = page.render(scale=dpi / 72, grayscale=True).to_pil()
        rotated = self._orientation(image, dpi)
        if rotated:
            image = image.rotate(rotated, expand=True)
        if self.config.erase_rules:
            image = erase_rules(image, dpi)
        self._api.SetImage(image)
        self._api.SetSourceResolution(round(dpi))
        text = drop_rules(self._api.GetUTF8Text())
        confidence = float(self._api.MeanTextConf())
        self._api.Clear()
        return TesseractResult(text, round(dpi, 1), confidence, rotated)

    def _orientation(self, image: Any, dpi: float) -> int:
        """Degrees (counter-clockwise) to turn the page upright; 0 when unsure or not detecting."""
        if self._osd is None:
            return 0
        self._osd.SetImage(image)
        self._osd.SetSourceResolution(round(dpi))
        try:
            found = self._osd.DetectOrientationScript()
        except RuntimeError:  # too little text to decide
            found = None
        finally:
            self._osd.Clear()
        if not found or found.get("orient_conf", 0.0) < self.config.rotation_confidence:
            return 0
        return int(found.get("orient_deg", 0)) % 360
