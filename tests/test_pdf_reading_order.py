"""Reading order and hyphenation of the text layer, each failure class on a PDF made by pipeline/pdf_writer.py
(or, where noted, a shared one): turned pages, columns pdfium reads as one line, boxes that a character
outside the BMP shifted, a tall run pulling the line above into its own, split hyphenated words."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from winnow.ocr.document import process_pdf
from winnow.ocr.evaluation import midline_splits
from winnow.pipeline.pdf_writer import text_pdf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pdf"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/pdf is absent")
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils)")

LEFT = [f"left column line {i} of the article body" for i in range(8)]
RIGHT = [f"right column line {i} of the same article" for i in range(8)]


def _text(pdf: bytes) -> str:
    return process_pdf(pdf, {"engine": "text-layer", "remove_headers": False})["text"]


def _columns(x_right: float, top: float = 520, size: float = 11) -> list[tuple[float, float, str, float]]:
    """Two columns drawn line by line across the page (left line, right line, next row), as some writers do."""
    rows = zip(LEFT, RIGHT, strict=True)
    drawn: list[tuple[float, float, str, float]] = []
    for i, (left, right) in enumerate(rows):
        drawn += [(72, top - 14 * i, left, size), (x_right, top - 14 * i, right, size)]
    return drawn


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_a_turned_page_reads_like_an_upright_one(rotate: int) -> None:
    """/Rotate with the text drawn upright on the turned page: read top to bottom, column by column
    (in the page's own coordinates a 180 page read bottom-up and right to left)."""
    assert _text(text_pdf([_columns(330)], rotate=rotate)).splitlines() == LEFT + RIGHT


def test_two_columns_that_pdfium_reads_as_one_line_are_read_one_after_the_other() -> None:
    """A gutter of 1.3 line heights: pdfium joins each left line to the right one beside it."""
    assert _text(text_pdf([_columns(258)])).splitlines() == LEFT + RIGHT  # left lines end at 244 pt, 10 pt tall


def test_characters_outside_the_bmp_do_not_shift_the_boxes() -> None:
    """pdfium counts a character outside the BMP twice; read as one, every box after it on the page belonged to
    the wrong character, lines took pieces of their neighbours and columns ran together."""
    beta = {"ß": "\U0001d6fd"}  # the font's ß reads as MATHEMATICAL ITALIC SMALL BETA
    left = [(72, 700 - 14 * i, f"the weight ß{i} and ß{i + 1} of line {i} in the left column") for i in range(12)]
    right = [(330, 700 - 14 * i, f"line {i} of the right column, another ß text") for i in range(12)]
    lines = _text(text_pdf([left + right], to_unicode=beta)).splitlines()
    assert lines == [t.replace("ß", "\U0001d6fd") for _, _, t in left + right]


def test_a_tall_run_does_not_take_the_line_above_into_its_own() -> None:
    """A large glyph makes a line's box reach into the line above; the two still read as two lines, so the
    hyphenated word across them is joined instead of left split mid-line."""
    page = [
        (72, 700, "the noise added to the answer may be data-"),
        (72, 686, "dependent, which keeps the results useful"),
        (300, 682, "(", 30),
        (72, 672, "for the analyst who asked the question."),
    ]
    text = _text(text_pdf([page]))
    assert "data-dependent" in text or "datadependent" in text.replace("\n", "")
    assert midline_splits(text) == 0


@needs_shared
@needs_pdftotext
def test_lines_pdfium_runs_together_at_small_print_are_taken_apart() -> None:
    """olmOCR-Bench's small_page_size.pdf: a 180 x 300 pt book page whose OCR text layer pdfium reads as a
    few long lines, each over several printed ones; no more split words than pdftotext leaves."""
    path = SHARED / "olmocr_bench_sample" / "pdfs" / "small_page_size.pdf"
    peer = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    text = _text(path.read_bytes())
    assert midline_splits(text) <= midline_splits(peer)
    assert "Since the use of bones has, however, become general" in " ".join(text.split())


@needs_shared
def test_pieces_of_a_pdfium_line_out_of_reading_order_are_put_back() -> None:
    """olmOCR-Bench's ff518b...pg2.pdf: a two-column scan whose OCR text layer pdfium reads as lines running
    across both columns, their words not always left to right ("culcomplete tural series retaining")."""
    path = SHARED / "olmocr_bench_sample" / "pdfs" / "headers_footers" / "ff518b1240a66978f22035528ccb029450b5_pg2.pdf"
    text = _text(path.read_bytes())
    assert "facsimile translation xxix of the\ncomplete series retaining original" in text
    assert text.index("their religious adversaries jones") < text.index("garnishes his numerous doctrinal")
    assert midline_splits(text) == 0


def test_an_accent_drawn_on_its_own_is_put_on_its_letter() -> None:
    """TeX sets "Färber" as "Farber" and a spacing "¨" over the a; pdfium reads the accent at the line's end."""
    probe = text_pdf([[(72, 700, "Saier and Farber (2019) read their work")]])
    textpage = pdfium.PdfDocument(probe)[0].get_textpage()
    a_left, _, a_right, _ = textpage.get_charbox(len("Saier and F"))
    page = [(72, 700, "Saier and Farber (2019) read their work"), ((a_left + a_right) / 2 - 1.8, 701.5, "¨")]
    page.append((72, 686, "and the next line follows it."))
    assert _text(text_pdf([page])).splitlines() == [
        "Saier and Färber (2019) read their work",
        "and the next line follows it.",
    ]


def test_a_superscript_note_mark_is_not_glued_to_the_word_after_it() -> None:
    """Footnotes set as a small raised number right against their text: pdfium gives "2https", pdftotext
    "2 https". A number in the line's own size ("3D", "2nd") stays one word."""
    body = [(72, 700 - 14 * i, f"body line {i} of a page about the corpus and its parts", 11) for i in range(6)]
    notes = [(72, 103, "2", 6), (75.4, 100, "https://arxiv.org is where the papers come from", 9)]
    notes += [(72, 91, "†", 6), (75.4, 88, "Allen Institute for AI", 9), (72, 76, "3D printing of the corpus", 9)]
    lines = _text(text_pdf([body + notes])).splitlines()
    assert lines[-3:] == [
        "2 https://arxiv.org is where the papers come from",
        "† Allen Institute for AI",
        "3D printing of the corpus",
    ]


def _results_table(top: float, group: str, datasets: list[str], score: int) -> list[tuple[float, float, str]]:
    """One row group of a results table: the group's label beside its first row, then dataset and two scores
    (from ``score`` on, each its own)."""
    rows: list[tuple[float, float, str]] = [(72, top, group)]
    for i, dataset in enumerate(datasets):
        y = top - 11 * i
        rows += [(130, y, dataset), (300, y, f"{score + i}.01"), (350, y, f"{score + i}.02")]
    return rows


def test_a_table_is_read_in_its_row_groups() -> None:
    """1903.10676's results table: a group label column ("Bio", "CS") left of the rows, the groups a line apart.
    Its widest gap is the label column's gutter, so the labels of every group were read first and each group's
    scores far from its rows; pdftotext reads the table group by group."""
    bio = _results_table(700, "Bio", ["BC5CDR", "JNLPBA", "ChemProt"], 60)
    cs = _results_table(700 - 3 * 11 - 9, "CS", ["SciERC", "ACL-ARC"], 70)
    lines = _text(text_pdf([bio + cs], font_size=9)).splitlines()
    assert max(lines.index(text) for _, _, text in bio) < min(lines.index(text) for _, _, text in cs)


def test_prose_columns_with_a_gap_across_both_are_still_read_column_by_column() -> None:
    """Two columns of prose whose paragraph breaks fall at the same height (a blank line across the page):
    lines of prose are no table cells, so each column is still read whole."""
    left = [(72, 700 - 14 * i - (14 if i >= 4 else 0), text) for i, text in enumerate(LEFT)]
    right = [(330, 700 - 14 * i - (14 if i >= 4 else 0), text) for i, text in enumerate(RIGHT)]
    assert _text(text_pdf([left + right])).splitlines() == LEFT + RIGHT
