"""The text-layer engine: a born-digital page's own text, in reading order.

pdfium reads the page's characters in content-stream order and breaks them into lines. That order
is often not reading order (footers first, two columns interleaved, or one "line" running across
both columns), so the text is cut into runs with boxes and the runs are ordered by geometry:

0. Runs: each pdfium line is one run, unless its boxes (``count_rects``/``get_rect`` over the
   line's characters) leave a gap wider than :data:`SPLIT_GAP_EM` line heights; such a line is cut
   at the gaps using its character boxes. Only those lines pay for per-character calls.
1. Blocks (recursive XY-cut): a region is cut at its widest empty gap, a vertical gutter (left part
   read first) or a horizontal one (top part first). Column gutters are wider than line spacing, so
   each column is read whole; titles and full-width figures close a band of columns.
2. Lines: within a block, runs whose boxes overlap vertically by half the smaller one form a line,
   read left to right.

Nothing is dropped here: each line is returned with its place (its middle, as a share of the page
height from the top), by which cleanup tells running heads and page numbers (``ocr/cleanup.py``).
Rotated pages are read in their unrotated coordinates.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pypdfium2 as pdfium

MIN_GUTTER_PT = 6.0  # narrowest gap between two columns (wider than a word space at body sizes)
SPLIT_GAP_EM = 1.5  # a gap this many line heights wide inside a pdfium line separates two runs (columns)
LINE = re.compile(r"([^\r\n\ufffe]*\ufffe?)(?:\r\n|\r|\n)?")
SOFT_HYPHENS = str.maketrans({"\x02": "-", "\ufffe": "-", "\u00ad": "-"})  # pdfium's marks of a line-end hyphen
DOUBLED_QUOTES = (("‘‘", "“"), ("’’", "”"), ("``", "“"))  # TeX-style quotes set as two single ones


@dataclass(frozen=True)
class Run:
    """A run of text and its box in PDF points (origin bottom left)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str

    @property
    def middle(self) -> float:
        return (self.bottom + self.top) / 2

    @property
    def middle_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 1e-3)


def runs_of(textpage: pdfium.PdfTextPage) -> list[Run]:
    """The page's text runs with their boxes, in content order (empty runs dropped)."""
    count = textpage.count_chars()
    text = textpage.get_text_range(0, count) if count else ""
    runs = []
    for match in LINE.finditer(text):  # a line ends at pdfium's line break or at a line-end hyphen
        line = match.group(1)
        if line.strip():
            runs += _line_runs(textpage, match.start(), line)
    return runs


def _line_runs(textpage: pdfium.PdfTextPage, start: int, line: str) -> list[Run]:
    """One pdfium line as runs: itself, or its pieces between gaps wider than SPLIT_GAP_EM heights."""
    boxes = [textpage.get_rect(i) for i in range(textpage.count_rects(start, len(line)))]
    if not boxes:
        return []
    height = max(top - bottom for _, bottom, _, top in boxes) or 1.0
    ordered = sorted(boxes)
    if all(b[0] - a[2] <= SPLIT_GAP_EM * height for a, b in itertools.pairwise(ordered)):
        return [_run(boxes, line)]
    runs: list[Run] = []
    piece: list[tuple[float, float, float, float]] = []
    chars: list[str] = []
    reach = 0.0  # right edge of the piece so far
    for offset, char in enumerate(line):
        box = textpage.get_charbox(start + offset) if not char.isspace() else None
        if box is not None and piece and box[0] - reach > SPLIT_GAP_EM * height:
            runs.append(_run(piece, "".join(chars)))
            piece, chars = [], []
        if box is not None and box[2] > box[0]:
            piece.append(box)
            reach = box[2] if len(piece) == 1 else max(reach, box[2])
        chars.append(char)
    if piece:
        runs.append(_run(piece, "".join(chars)))
    return runs


def _run(boxes: list[tuple[float, float, float, float]], text: str) -> Run:
    left = min(b[0] for b in boxes)
    bottom = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    top = max(b[3] for b in boxes)
    text = " ".join(text.translate(SOFT_HYPHENS).split())
    for doubled, single in DOUBLED_QUOTES:
        text = text.replace(doubled, single)
    return Run(left, bottom, right, top, text)


def _gaps(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The empty intervals between the union of ``spans`` (each ``(low, high)``), widest first."""
    gaps = []
    reach = None
    for low, high in sorted(spans):
        if reach is not None and low > reach:
            gaps.append((reach, low))
        reach = high if reach is None else max(reach, high)
    return sorted(gaps, key=lambda g: g[0] - g[1])


def xy_cut(runs: list[Run]) -> list[list[Run]]:
    """Runs as blocks in reading order (recursive XY-cut).

    A region is cut at its widest gap: a vertical gutter at least MIN_GUTTER_PT wide that no run
    crosses (left part read first: columns), or a horizontal gap that no run crosses (top part read
    first). Column gutters are wider than the space between lines, so columns are split before their
    lines; a title, or the gap between rows of a grid, that is wider than the gutter is cut first. A
    region with neither is one block."""
    if len(runs) < 2:
        return [runs] if runs else []
    columns = [g for g in _gaps([(r.left, r.right) for r in runs]) if g[1] - g[0] >= MIN_GUTTER_PT]
    rows = _gaps([(r.bottom, r.top) for r in runs])
    if columns and (not rows or columns[0][1] - columns[0][0] >= rows[0][1] - rows[0][0]):
        x = (columns[0][0] + columns[0][1]) / 2
        return xy_cut([r for r in runs if r.middle_x < x]) + xy_cut([r for r in runs if r.middle_x >= x])
    if rows:
        y = (rows[0][0] + rows[0][1]) / 2
        return xy_cut([r for r in runs if r.middle > y]) + xy_cut([r for r in runs if r.middle <= y])
    return [runs]


def lines_of(runs: list[Run]) -> list[tuple[str, float]]:
    """Runs grouped into lines (top to bottom), each read left to right, with the middle of its first run."""
    lines: list[list[Run]] = []
    for run in sorted(runs, key=lambda r: -r.middle):
        if lines and _same_line(lines[-1][0], run):
            lines[-1].append(run)
        else:
            lines.append([run])
    return [(" ".join(r.text for r in sorted(line, key=lambda r: r.left)), line[0].middle) for line in lines]


def _same_line(a: Run, b: Run) -> bool:
    """Boxes that overlap vertically by half the smaller one (a comma or superscript joins its line)."""
    overlap = min(a.top, b.top) - max(a.bottom, b.bottom)
    return overlap >= 0.5 * min(a.height, b.height)


def ordered_lines(runs: list[Run]) -> list[tuple[str, float]]:
    """The page's lines in reading order, with their middles: XY-cut blocks, each read line by line."""
    return [line for block in xy_cut(runs) for line in lines_of(block)]


def page_lines(page: pdfium.PdfPage, runs: list[Run]) -> tuple[list[str], list[float]]:
    """The lines of ``runs`` (a page's, from :func:`runs_of`) in reading order, and the place of each: its
    middle as a share of the page height from the top (0 top, 1 bottom), for finding running heads."""
    _, bottom, _, top = page.get_cropbox()
    height = max(top - bottom, 1e-3)
    lines = ordered_lines(runs)
    return [text for text, _ in lines], [min(max((top - middle) / height, 0.0), 1.0) for _, middle in lines]


def page_text(page: pdfium.PdfPage, runs: list[Run]) -> str:
    """The text of ``runs`` in reading order, one line per line."""
    return "\n".join(page_lines(page, runs)[0])
