"""Text that header/footer removal and the OCR fallback must not lose, on PDFs made by pipeline/pdf_writer.py.

Running heads go only when they repeat at the same place across pages and are short next to the page's
text, never when they are all the text of a page; an OCR page whose engine read nothing keeps its text layer.
"""

from __future__ import annotations

from typing import Any

from tests.test_ocr import GOOD, PANGRAMS, _page_lines, needs_tesseract
from winnow.ocr.cleanup import remove_margins
from winnow.ocr.document import process_pdf
from winnow.ocr.evaluation import cer
from winnow.pipeline.pdf_writer import scan_pdf, scanned_text_pdf, text_pdf

SENTENCE = "The committee approved the budget for the coming year."
PARAGRAPH = [
    "Every section of this report follows the same rules: the figures",
    "are audited by two people, the sources are named in the appendix,",
    "and any estimate is marked as one. Readers who need the raw data",
    "may ask the office for it, which answers within ten working days.",
    "This paragraph is repeated under each heading on purpose.",
]
SIGNATURE = "Jane Doe, Director of Operations, Example Corp., 2019-04-11"  # 59 characters


def _text_layer(pdf: bytes, **settings: Any) -> dict[str, Any]:
    return process_pdf(pdf, {"engine": "text-layer", **settings})


def test_pages_that_repeat_one_sentence_keep_it() -> None:
    assert remove_margins([SENTENCE] * 4) == [SENTENCE] * 4  # OCR text: no positions
    result = _text_layer(text_pdf([[SENTENCE]] * 4))
    assert result["page_texts"] == [SENTENCE] * 4


@needs_tesseract
def test_a_scan_whose_pages_repeat_one_sentence_is_not_lost() -> None:
    result = process_pdf(scan_pdf([[SENTENCE]] * 4), {})
    assert [p["engine"] for p in result["pages"]] == ["tesseract"] * 4
    assert cer("\n".join([SENTENCE] * 4), result["text"]) < 0.05


def test_a_paragraph_repeated_under_each_heading_stays_in_all_its_places() -> None:
    pages = [
        [f"{2 * n + 1}. Section {2 * n + 1}", *PARAGRAPH, "", f"{2 * n + 2}. Section {2 * n + 2}", *PARAGRAPH]
        for n in range(3)
    ]
    text = _text_layer(text_pdf(pages))["text"]
    for line in PARAGRAPH:
        assert text.count(line) == 6, line
    unplaced = remove_margins(["\n".join(lines) for lines in pages])  # the same pages as OCR text
    for line in PARAGRAPH:
        assert "\n".join(unplaced).count(line) == 6, line


def test_a_page_whose_only_text_is_a_signature_block_keeps_it() -> None:
    assert len(SIGNATURE) == 59
    alone = _text_layer(text_pdf([[(72, 30, SIGNATURE)]]))  # in the bottom margin of its only page
    assert alone["text"] == SIGNATURE
    letter = [_page_lines(0), _page_lines(1), [(72, 30, SIGNATURE)]]
    assert _text_layer(text_pdf(letter))["page_texts"][2] == SIGNATURE


def test_running_heads_at_the_same_place_go_and_lines_elsewhere_stay() -> None:
    pages = [[(72, 760, "Journal of Tests, Vol. 7"), *_page_lines(n), (300, 40, str(n + 1))] for n in range(4)]
    result = _text_layer(text_pdf(pages))
    assert result["page_texts"] == ["\n".join(_page_lines(n)) for n in range(4)]
    # the same line, first on every page but at a different height each time, is text (a repeated caption)
    moved = [[(72, 700 - 60 * n, "See the notes at the end of this report."), *_page_lines(n)] for n in range(4)]
    for n, text in enumerate(_text_layer(text_pdf(moved))["page_texts"]):
        assert text.splitlines()[0] == "See the notes at the end of this report.", n


def test_a_long_repeated_line_is_not_a_running_head() -> None:
    """A line that is most of its page is text, however often it repeats at the same place."""
    pages = [[PANGRAMS[0] + " " + PANGRAMS[1], f"Short note {n}."] for n in range(4)]
    assert remove_margins(["\n".join(lines) for lines in pages]) == ["\n".join(lines) for lines in pages]


@needs_tesseract
def test_an_ocr_page_that_reads_nothing_keeps_its_text_layer() -> None:
    """A blank scan with 14 characters of invisible text: routed to OCR (too little text), tesseract reads nothing."""
    result = process_pdf(scanned_text_pdf([([], [(72, 700, "Invoice 2021-4")])]), {})
    (page,) = result["pages"]
    assert page["route"] == "ocr" and page["chars"] == 13  # 14 characters, one a space
    assert page["engine"] == "text-layer" and page["failures"][0]["engine"] == "tesseract"
    assert result["text"] == "Invoice 2021-4"


def test_an_empty_vlm_answer_falls_back_to_the_text_layer(stub_llm: Any) -> None:
    server = stub_llm([(200, GOOD.replace("The page text, as the model read it.", ""), "stop")])
    settings = {"engine": "vlm", "vlm": {"endpoint": server.url, "model": "stub", "temperatures": [0.1]}}
    settings["tesseract"] = {"tessdata": "/nonexistent"}  # tesseract unavailable: the text layer is next
    result = process_pdf(scanned_text_pdf([([], [(72, 700, "Invoice 2021-4")])]), settings)
    (page,) = result["pages"]
    assert [f["engine"] for f in page["failures"]] == ["vlm", "tesseract"]
    assert result["text"] == "Invoice 2021-4"


@needs_tesseract
def test_an_ocr_page_without_any_text_is_no_fallback() -> None:
    """A blank scan and an empty text layer: tesseract's empty answer stands, without a failure."""
    result = process_pdf(scanned_text_pdf([([], [])]), {})
    (page,) = result["pages"]
    assert (page["engine"], page["failures"], result["text"]) == ("tesseract", [], "")
