"""The OCR engines on generated PDFs: triage routes, reading order, tesseract on scans, cleanup, the VLM client.

PDFs are made by pipeline/pdf_writer.py (hand-written text PDFs, Pillow scans); tesseract is the real
one (Debian's language data). The VLM server here is a canned-response stub, the one thing a real
server cannot be asked to do on demand: fail with 500s, 429s and truncated or malformed answers.
"""

from __future__ import annotations

import io
from base64 import b64decode
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw

from winnow.ocr.cleanup import assemble, join_hyphenation, remove_margins
from winnow.ocr.document import engine_chain, process_pdf
from winnow.ocr.evaluation import BenchCheck, cer, flexible_cer
from winnow.ocr.rules import erase_rules
from winnow.ocr.tesseract import EngineUnavailable, render_dpi, tessdata_dir
from winnow.ocr.text_layer import page_text
from winnow.ocr.triage import PageFacts, route
from winnow.ocr.vlm import VlmEngine, VlmFailed, page_png, parse_answer
from winnow.pipeline.manifest import OcrConfig, TesseractConfig, TriageConfig, VlmConfig
from winnow.pipeline.pdf_writer import scan_image, scan_pdf, text_pdf

PANGRAMS = [
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "Pack my box with five dozen liquor jugs before the train leaves.",
    "How vexingly quick daft zebras jump when the music starts again.",
    "Sphinx of black quartz, judge my vow and weigh every single word.",
]


NAMES = ["Alice", "Bruno", "Chiara", "Dmitri"]


def _has_tesseract() -> bool:
    try:
        tessdata_dir(None, "eng")
    except EngineUnavailable:
        return False
    return True


def _page_lines(n: int) -> list[str]:
    """Body lines of page ``n``, different on every page (a line repeated at the top or bottom of many pages
    is a running head, and cleanup drops it)."""
    return [f"{line[:-1]}, says {NAMES[n]}." for line in PANGRAMS]


needs_tesseract = pytest.mark.skipif(not _has_tesseract(), reason="tesseract language data (tesseract-ocr-eng)")


# ---------------------------------------------------------------- cleanup


def test_running_heads_page_numbers_and_hyphens_are_cleaned() -> None:
    hyphenated = "A sentence in the middle of the page ends in a hyphen-\nated word."
    body = ["\n".join([*_page_lines(n)[:2], hyphenated, *_page_lines(n)[2:]]) for n in range(4)]
    pages = [f"Journal of Tests, Vol. {n + 1}\n{text}\n{n + 1}" for n, text in enumerate(body)]
    cleaned = remove_margins(pages)
    for n, page in enumerate(cleaned):
        assert "Journal of Tests" not in page  # the same head on every page (its digits aside)
        assert page.splitlines()[-1] != str(n + 1)  # the page number
        assert page == body[n]  # the body stays whole
        assert "hyphenated word." in join_hyphenation(page)


def test_a_single_page_keeps_its_first_line_and_loses_stamps() -> None:
    """A running head is known by repeating at its place; on one page a short numbered first line may as well be
    a section heading ("2 Related Work"), so it stays."""
    stamp = "Downloaded from jipm.irandoc.ac.ir at 6:51 IRST on Monday November 11th 2019"
    body = "The body of the page starts here.\nDownloaded from the archive, the files were read.\nIt ends here."
    for first in ("Advocacy in Action 447", "2 Related Work"):
        (page,) = remove_margins([f"{first}\n{stamp}\n{body}\nDownload date: 15. Sep. 2023"])
        assert page == f"{first}\n{body}"


def test_assemble_records_spans_that_cut_the_text_back_into_pages() -> None:
    text, spans = assemble(["first page ends in a hyphen-", "ated word.", "", "last page"], [1, 2, 3, 4])
    assert "hyphenated word." in text
    for start, end, _page in spans:
        assert 0 <= start <= end <= len(text)
    assert [text[s:e] for s, e, _ in spans] == ["first page ends in a hyphen", "ated word.", "", "last page"]
    assert [p for _, _, p in spans] == [1, 2, 3, 4]


# ---------------------------------------------------------------- triage and the text layer


def test_triage_routes_pages_by_what_they_hold() -> None:
    config = TriageConfig()
    text = PageFacts(chars=900, alnum_share=0.8, replacement_share=0.0, image_coverage=0.0, image_dpi=None, ink=None)
    assert route(text, config) == "text-layer"
    broken_fonts = PageFacts(900, 0.8, 0.3, 0.0, None, None)
    assert route(broken_fonts, config) == "ocr"
    # index-list-out-of-range's pages 5-6 (papermage): math symbols without Unicode, the words intact
    math = PageFacts(3100, 0.88, 0.058, None, None, None)
    assert route(math, config) == "text-layer"
    scan = PageFacts(0, 0.0, 0.0, 1.0, 200.0, None)
    assert route(scan, config) == "ocr"
    stamped_scan = PageFacts(80, 0.9, 0.0, 0.98, 300.0, None)  # a scan with a little text laid over it
    assert route(stamped_scan, config) == "ocr"
    blank = PageFacts(0, 0.0, 0.0, 0.0, None, 0.0)
    assert route(blank, config) == "blank"
    drawn = PageFacts(0, 0.0, 0.0, 0.0, None, 0.05)  # vector-drawn text: ink but no characters
    assert route(drawn, config) == "ocr"


def test_two_columns_are_read_one_after_the_other() -> None:
    left = [(72, 650 - 14 * i, f"left column line {i} of the article body") for i in range(12)]
    right = [(320, 650 - 14 * i, f"right column line {i} of the article body") for i in range(12)]
    title = [(72, 700, "A Title That Spans Both Columns Of The Page, Wider Than Either Column Alone")]
    pdf = pdfium.PdfDocument(text_pdf([title + left + right]))
    lines = page_text(pdf[0], pdf[0].get_textpage()).splitlines()
    assert lines[0].startswith("A Title")
    assert lines[1:13] == [f"left column line {i} of the article body" for i in range(12)]
    assert lines[13:] == [f"right column line {i} of the article body" for i in range(12)]


def test_text_layer_pages_need_no_ocr() -> None:
    pages = [_page_lines(n) for n in range(3)]
    result = process_pdf(text_pdf(pages), {"engine": "tesseract"})
    assert [p["route"] for p in result["pages"]] == ["text-layer"] * 3
    assert [p["engine"] for p in result["pages"]] == ["text-layer"] * 3
    assert result["page_texts"] == ["\n".join(lines) for lines in pages]


def test_render_resolution_follows_the_scan_and_caps_pixels() -> None:
    config = TesseractConfig()
    assert render_dpi(150.0, 612, 792, config) == 150.0  # a low-resolution scan is not upsampled
    assert render_dpi(600.0, 612, 792, config) == config.max_dpi
    assert render_dpi(None, 612, 792, config) == config.max_dpi
    huge = render_dpi(300.0, 200 * 72, 200 * 72, config)  # a 200-inch page
    assert (200 * huge) ** 2 <= config.max_render_pixels * 1.001


# ---------------------------------------------------------------- tesseract


@needs_tesseract
def test_tesseract_reads_a_scan_at_its_own_resolution() -> None:
    result = process_pdf(scan_pdf([PANGRAMS], dpi=200), {})
    (page,) = result["pages"]
    assert (page["route"], page["engine"], page["dpi"]) == ("ocr", "tesseract", 200.0)
    assert page["image_coverage"] > 0.99
    assert cer("\n".join(PANGRAMS), result["text"]) < 0.02


@needs_tesseract
def test_a_sideways_scan_is_turned_upright() -> None:
    result = process_pdf(scan_pdf([PANGRAMS * 3], dpi=200, rotate=90), {})
    (page,) = result["pages"]
    assert page["rotated"] in (90, 270)
    assert cer("\n".join(PANGRAMS * 3), result["text"]) < 0.05


def test_missing_language_data_falls_back_to_the_text_layer(tmp_path: Any) -> None:
    settings = {"tesseract": {"tessdata": str(tmp_path)}}  # an empty folder: no eng.traineddata
    result = process_pdf(scan_pdf([PANGRAMS]), settings)
    (page,) = result["pages"]
    assert page["engine"] == "text-layer"
    assert page["failures"][0]["engine"] == "tesseract"
    assert "tesseract-ocr-eng" in page["failures"][0]["error"]


# ---------------------------------------------------------------- measures


def test_cer_and_flexible_cer() -> None:
    reference = "first block of text\nsecond block of text"
    assert cer(reference, reference) == 0.0
    swapped = "second block of text\nfirst block of text"
    assert cer(reference, swapped) > 0.25
    assert flexible_cer(reference, swapped) == 0.0
    assert flexible_cer(reference, "first block of text") == pytest.approx(17 / 33)  # "secondblockoftext" missing
    assert cer("ﬁne", "fine") == 0.0  # ligatures read as their letters


def test_bench_checks_follow_olmocr_semantics() -> None:
    present = BenchCheck("p", "x.pdf", 1, "present", text="the “quick” brown fox", max_diffs=2)
    assert present.passes('We saw **the "quick" brovn fox** today.')
    assert not present.passes("nothing like it")
    absent = BenchCheck("a", "x.pdf", 1, "absent", text="Page 12")
    assert absent.passes("Body text only.") and not absent.passes("Body\nPage 12\n")
    order = BenchCheck("o", "x.pdf", 1, "order", before="Introduction", after="Conclusion")
    assert order.passes("Introduction ... Conclusion") and not order.passes("Conclusion ... Introduction")


# ---------------------------------------------------------------- the VLM engine against a stub server

GOOD = "---\nprimary_language: en\nis_rotation_valid: True\nrotation_correction: 0\nis_table: False\n"
GOOD += "is_diagram: False\n---\nThe page text, as the model read it."
SIDEWAYS = GOOD.replace("is_rotation_valid: True", "is_rotation_valid: False").replace(
    "rotation_correction: 0", "rotation_correction: 90"
)


def _vlm(url: str, **extra: Any) -> VlmConfig:
    return VlmConfig.model_validate({"endpoint": url, "model": "stub", "timeout_s": 5, **extra})


def test_vlm_retries_server_errors_and_bad_answers(stub_llm: Any) -> None:
    server = stub_llm([(500, "", "stop"), (429, "", "stop"), (200, "no front matter", "stop"), (200, GOOD, "length")])
    server.script.append((200, GOOD, "stop"))
    engine = VlmEngine(_vlm(server.url, temperatures=[0.1, 0.3, 0.5]))
    page = pdfium.PdfDocument(scan_pdf([PANGRAMS]))[0]
    answer = engine.recognise(page)
    assert answer.text == "The page text, as the model read it."
    assert answer.attempts == 3 and answer.temperature == 0.5  # client retried 500 and 429 inside attempt 1
    assert "front matter" in answer.errors[0] and "truncated" in answer.errors[1]
    assert [r["temperature"] for r in server.requests] == [0.1, 0.1, 0.1, 0.3, 0.5]
    image = server.requests[0]["messages"][0]["content"][1]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,")
    engine.close()


def test_vlm_timeouts_are_retried_then_reported(stub_llm: Any) -> None:
    server = stub_llm([(0, "", "stop")] * 3 + [(200, GOOD, "stop")])
    engine = VlmEngine(_vlm(server.url, temperatures=[0.1, 0.3], timeout_s=0.5))
    answer = engine.recognise(pdfium.PdfDocument(scan_pdf([PANGRAMS]))[0])
    assert answer.attempts == 2 and "APITimeoutError" in answer.errors[0]  # 3 timed-out tries: attempt 1
    engine.close()


def test_vlm_turns_a_sideways_page_and_asks_again(stub_llm: Any) -> None:
    server = stub_llm([(200, SIDEWAYS, "stop"), (200, GOOD, "stop")])
    engine = VlmEngine(_vlm(server.url, grammar=True))
    answer = engine.recognise(pdfium.PdfDocument(scan_pdf([PANGRAMS]))[0])
    assert answer.rotated == 90 and answer.attempts == 2
    assert "grammar" in server.requests[0] and "root ::=" in server.requests[0]["grammar"]
    engine.close()


def test_vlm_failure_raises_with_every_reason(stub_llm: Any) -> None:
    server = stub_llm([(200, "garbage", "stop"), (200, "more garbage", "stop")])
    engine = VlmEngine(_vlm(server.url, temperatures=[0.1, 0.9]))
    with pytest.raises(VlmFailed, match=r"attempt 1: .*front matter.*attempt 2"):
        engine.recognise(pdfium.PdfDocument(scan_pdf([PANGRAMS]))[0])
    engine.close()


@needs_tesseract
def test_a_page_the_vlm_fails_on_falls_back_to_tesseract(stub_llm: Any) -> None:
    server = stub_llm([(200, "garbage", "stop")] * 2)
    settings = {"engine": "vlm", "vlm": {"endpoint": server.url, "model": "stub", "temperatures": [0.1, 0.2]}}
    assert engine_chain(OcrConfig.model_validate(settings)) == ["vlm", "tesseract", "text-layer"]
    result = process_pdf(scan_pdf([PANGRAMS]), settings)
    (page,) = result["pages"]
    assert page["engine"] == "tesseract" and page["failures"][0]["engine"] == "vlm"
    assert cer("\n".join(PANGRAMS), result["text"]) < 0.02


def test_vlm_reads_a_pdfs_pages_concurrently_and_keeps_their_order(stub_llm: Any) -> None:
    """Up to ``concurrency`` pages are at the server at once; each answer lands on its own page."""
    pdf = scan_pdf([[f"Page {n}: " + line for line in PANGRAMS[: 1 + n % 3]] for n in range(6)])
    sizes = [len(page_png(page, 1288)) for page in pdfium.PdfDocument(pdf)]
    assert len(set(sizes)) == len(sizes), "the stub tells pages apart by the size of their image"

    def respond(body: dict[str, Any]) -> tuple[int, str, str]:
        url = body["messages"][0]["content"][1]["image_url"]["url"]
        text = f"The image of this page has {len(b64decode(url.split(',')[1]))} bytes."
        return 200, GOOD.replace("The page text, as the model read it.", text), "stop"

    server = stub_llm([], respond=respond, delay_s=1.0)
    vlm = {"endpoint": server.url, "model": "stub", "concurrency": 3}
    settings = {"engine": "vlm", "vlm": vlm, "remove_headers": False}  # the answers would look like running heads
    result = process_pdf(pdf, settings)
    assert result["page_texts"] == [f"The image of this page has {size} bytes." for size in sizes]
    assert [page["engine"] for page in result["pages"]] == ["vlm"] * 6
    assert server.most_in_flight == 3


def test_answer_parsing() -> None:
    answer = parse_answer(GOOD)
    assert (answer.language, answer.rotation_valid, answer.rotation_correction) == ("en", True, 0)
    with pytest.raises(ValueError, match="rotation_correction"):
        parse_answer(GOOD.replace("rotation_correction: 0", "rotation_correction: 45"))
    with pytest.raises(ValueError, match="lacks"):
        parse_answer("---\nis_table: False\n---\ntext")


TABLE_ROWS = [
    "GENIA (Kim et al., 2003) - LAS 91.92 90.22 90.33",
    "EBM-NLP (Nye et al., 2018) 66.30 61.44 71.53",
    "ChemProt (Kringelum et al., 2016) 76.68 68.21 79.14",
    "SciERC (Luan et al., 2018) 64.20 63.58 65.24",
    "ACL-ARC (Jurgens et al., 2018) 67.9 62.04 63.91",
]


def ruled_table(dpi: int = 200, rule_below_row_px: int = 16) -> tuple[Image.Image, Image.Image]:
    """(the table's rows as a scan, the same with a dotted rule under each row and a solid vertical rule)."""
    rows = scan_image(TABLE_ROWS, dpi)
    ruled = rows.copy()
    draw = ImageDraw.Draw(ruled)
    pitch = round(18 / 72 * dpi)
    for i in range(len(TABLE_ROWS) + 1):
        y = dpi + i * pitch - rule_below_row_px
        for x in range(dpi - 20, dpi + 1400, 5):  # dots 3 px long, 2 px apart, in grey as a renderer draws them
            draw.rectangle([x, y, x + 2, y + 1], fill=90)
    draw.rectangle([dpi + 1000, dpi - 20, dpi + 1002, dpi + pitch * len(TABLE_ROWS)], fill=0)
    return rows, ruled


def test_erase_rules_paints_rules_white_and_leaves_the_letters() -> None:
    rows, ruled = ruled_table()
    letters, before, after = (np.asarray(image) < 128 for image in (rows, ruled, erase_rules(ruled, 200)))
    rule_ink = before & ~letters
    assert rule_ink.sum() > 10_000
    assert (after & rule_ink).sum() / rule_ink.sum() < 0.01, "the rules are gone"
    assert (after & letters).sum() >= 0.99 * letters.sum(), "letters keep their ink (but where a rule crosses them)"
    assert np.array_equal(np.asarray(erase_rules(rows, 200)), np.asarray(rows)), "a page without rules is unchanged"


@needs_tesseract
def test_dotted_rules_touching_table_rows_are_erased_before_tesseract_reads_them() -> None:
    """Rules touching the letters' feet: tesseract reads dots as punctuation ("Kim.et.al") unless they are erased."""
    _, ruled = ruled_table()
    buffer = io.BytesIO()
    ruled.save(buffer, "PDF", resolution=200)
    reference = "\n".join(TABLE_ROWS)
    errors = {
        erase: flexible_cer(reference, process_pdf(buffer.getvalue(), {"tesseract": {"erase_rules": erase}})["text"])
        for erase in (True, False)
    }
    assert errors[True] <= 0.04
    assert errors[True] < errors[False]
