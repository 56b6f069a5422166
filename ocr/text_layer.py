"""The text-layer engine: a born-digital page's own text, in reading order.

pdfium reads the page's characters in content-stream order and breaks them into lines. That order
is often not reading order (footers first, two columns interleaved, one "line" running across
both columns or, at small print sizes, over several lines), so the text is cut into runs with boxes
and the runs are ordered by geometry:

0. Reading direction: the page is read in the direction most of its characters run (pdfium's
   character angle of each line's first character), so a page turned by ``/Rotate`` or drawn
   sideways reads top to bottom like an upright one; boxes are turned into that frame.
1. Runs: each pdfium line is one run, unless its boxes (``count_rects``/``get_rect`` over the
   line's characters) leave a gap wider than :data:`SPLIT_GAP_EM` line heights or lie on separate
   lines (no vertical overlap); such a line is cut there using its character boxes. Only those lines
   pay for per-character calls. A gap that is no column gutter costs nothing: XY-cut finds no clear
   gutter through it and the pieces meet again on their line.
2. Blocks (recursive XY-cut): a region is cut at its widest empty gap, a vertical gutter (left part
   read first) or a horizontal one (top part first). Column gutters are wider than line spacing, so
   each column is read whole; titles and full-width figures close a band of columns.
3. Lines: within a block, runs whose boxes overlap vertically by half the smaller one and not
   horizontally form a line, read left to right (a run made tall by one large glyph does not pull the
   line above into its own).

Nothing is dropped here: each line is returned with its place (its middle, as a share of the page
height from the top), by which cleanup tells running heads and page numbers (``ocr/cleanup.py``).
"""

from __future__ import annotations

import ctypes
import itertools
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

MIN_GUTTER_PT = 6.0  # narrowest gap between two columns (wider than a word space at body sizes)
SPLIT_GAP_EM = 1.0  # a gap this many line heights wide inside a pdfium line may be a gutter: cut there
LINE = re.compile(r"([^\r\n\ufffe]*\ufffe?)(?:\r\n|\r|\n)?")
SOFT_HYPHENS = str.maketrans({"\x02": "-", "\ufffe": "-", "\u00ad": "-", "\x00": None})  # pdfium's hyphen marks
SURROGATE = re.compile("[\ud800-\udfff]")
DOUBLED_QUOTES = (("‘‘", "“"), ("’’", "”"), ("``", "“"))  # TeX-style quotes set as two single ones
Box = tuple[float, float, float, float]  # left, bottom, right, top

# pdfium's out-parameters, reused by every call (pdfium runs on one thread per process)
_L, _B, _R, _T = (ctypes.c_double() for _ in range(4))
_RECT_OUT = tuple(map(ctypes.byref, (_L, _T, _R, _B)))  # FPDFText_GetRect: left, top, right, bottom
_LOOSE = pdfium_c.FS_RECTF()  # FPDFText_GetLooseCharBox: the character's advance by the font's ascent and descent


@dataclass(frozen=True)
class Run:
    """A run of text and its box in the page's reading frame, in PDF points (origin bottom left)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str
    sideways: bool = False  # runs across the page's reading direction (a stamp in the margin, an axis label)

    @property
    def middle(self) -> float:
        return (self.bottom + self.top) / 2

    @property
    def middle_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 1e-3)


@dataclass(frozen=True)
class Layer:
    """A page's text layer: its lines in reading order and each line's place (share of the page height
    from the top, 0 to 1, in the reading frame)."""

    lines: list[str]
    places: list[float]
    turn: int  # quarter turns (counter-clockwise) of the reading direction from the page's x axis

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _turned(box: Box, turn: int) -> Box:
    """``box`` in the frame whose x axis runs ``turn`` quarter turns counter-clockwise from the page's."""
    left, bottom, right, top = box
    if turn == 1:
        return (bottom, -right, top, -left)
    if turn == 2:
        return (-right, -top, -left, -bottom)
    if turn == 3:
        return (-top, left, -bottom, right)
    return box


def _turn_of(raw: pdfium_c.FPDF_TEXTPAGE, index: int) -> int:
    """Quarter turns of the direction character ``index`` runs in (pdfium measures its angle clockwise)."""
    angle = pdfium_c.FPDFText_GetCharAngle(raw, index)
    return 0 if angle < 0 else (4 - round(angle / (math.pi / 2))) % 4


def read_layer(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> Layer:
    """The page's text layer in reading order, each line with its place (for finding running heads)."""
    runs, turn = runs_of(textpage)
    _, bottom, _, top = _turned(page.get_cropbox(), turn)
    height = max(top - bottom, 1e-3)
    lines = ordered_lines([r for r in runs if not r.sideways]) + ordered_lines([r for r in runs if r.sideways])
    places = [min(max((top - middle) / height, 0.0), 1.0) for _, middle in lines]
    return Layer([text for text, _ in lines], places, turn)


def runs_of(textpage: pdfium.PdfTextPage) -> tuple[list[Run], int]:
    """The page's text runs with their boxes in its reading frame, in content order (empty runs dropped),
    and that frame's turn."""
    raw = textpage.raw
    text = _chars(raw, pdfium_c.FPDFText_CountChars(raw))
    paired = not text.isascii() and SURROGATE.search(text) is not None
    found = []  # (start, line, first visible character)
    weight: Counter[int] = Counter()
    for match in LINE.finditer(text):  # a line ends at pdfium's line break or at a line-end hyphen
        line = match.group(1)
        stripped = line.lstrip()
        if stripped:
            first = match.start() + len(line) - len(stripped)
            found.append((match.start(), line, _turn_of(raw, first)))
            weight[found[-1][2]] += len(stripped)
    turn = weight.most_common(1)[0][0] if weight else 0
    runs = []
    for start, line, own in found:
        runs += _line_runs(raw, start, line, turn, own == turn, paired)
    return runs, turn


def _chars(raw: pdfium_c.FPDF_TEXTPAGE, count: int) -> str:
    """The page's text with one string character per pdfium character, so that string index ``i`` is
    character ``i`` for the box calls: UTF-16 surrogates are kept apart (pdfium counts a character outside
    the BMP twice), and characters ``FPDFText_GetText`` leaves out (some hyphen marks) are put back as NUL."""
    if count <= 0:
        return ""
    buffer = (ctypes.c_ushort * (count + 1))()
    written = pdfium_c.FPDFText_GetText(raw, 0, count, buffer)
    data = memoryview(buffer).cast("B")[: 2 * max(written - 1, 0)]
    text = bytes(data).decode("utf-16-le", errors="surrogatepass")
    if len(text) == count:
        return text
    units = "".join(map(chr, buffer[: max(written - 1, 0)]))
    if len(units) == count:
        return units
    merged = []
    at = 0
    for index in range(count):  # align with the characters themselves; rare (a page that lost some marks)
        own = pdfium_c.FPDFText_GetUnicode(raw, index)
        if at < len(units) and (ord(units[at]) == own or (units[at] == "\ufffe" and own in (0, 2))):
            merged.append(units[at])
            at += 1
        else:
            merged.append("\x00")
    return "".join(merged)


def _rects(raw: pdfium_c.FPDF_TEXTPAGE, start: int, count: int, turn: int) -> list[Box]:
    boxes = []
    for i in range(pdfium_c.FPDFText_CountRects(raw, start, count)):
        pdfium_c.FPDFText_GetRect(raw, i, *_RECT_OUT)
        boxes.append(_turned((_L.value, _B.value, _R.value, _T.value), turn))
    return boxes


def _line_runs(raw: pdfium_c.FPDF_TEXTPAGE, start: int, line: str, turn: int, along: bool, paired: bool) -> list[Run]:
    """One pdfium line as runs: itself, or (for a line running in the page's direction, ``along``) its pieces
    between gaps wider than SPLIT_GAP_EM line heights, where it jumps back as far and where it moves to
    another line (pdfium's characters of one line are not always in reading order)."""
    boxes = _rects(raw, start, len(line), turn)
    if not boxes:
        return []
    height = statistics.median(top - bottom for _, bottom, _, top in boxes) or 1.0
    if not along:
        return [_run(boxes, line, paired, sideways=True)]
    if all(b[0] - a[2] <= SPLIT_GAP_EM * height for a, b in itertools.pairwise(sorted(boxes))) and all(
        min(a[3], b[3]) > max(a[1], b[1]) for a, b in itertools.pairwise(boxes)
    ):
        return [_run(boxes, line, paired)]
    runs: list[Run] = []
    piece: list[Box] = []
    chars: list[str] = []
    left = right = low = high = 0.0  # extent of the piece so far
    gap = SPLIT_GAP_EM * height
    for offset, char in enumerate(line):
        box = None
        if not char.isspace():
            pdfium_c.FPDFText_GetLooseCharBox(raw, start + offset, _LOOSE)
            box = _turned((_LOOSE.left, _LOOSE.bottom, _LOOSE.right, _LOOSE.top), turn)
            if box[2] <= box[0]:
                box = None
        # a gap ahead, a jump back past the piece's start, or another line: a new piece
        if (
            box is not None
            and piece
            and (box[0] - right > gap or box[2] < left - gap or min(high, box[3]) <= max(low, box[1]))
        ):
            runs.append(_run(piece, "".join(chars), paired))
            piece, chars = [], []
        if box is not None:
            if piece:
                left, right, low, high = min(left, box[0]), max(right, box[2]), min(low, box[1]), max(high, box[3])
            else:
                left, low, right, high = box
            piece.append(box)
        chars.append(char)
    if piece:
        runs.append(_run(piece, "".join(chars), paired))
    return runs


def _run(boxes: list[Box], text: str, paired: bool = False, sideways: bool = False) -> Run:
    """A run over ``boxes`` with ``text`` tidied (``paired``: it may hold UTF-16 surrogate pairs to join)."""
    if paired:
        text = text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")
    left = min(b[0] for b in boxes)
    bottom = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    top = max(b[3] for b in boxes)
    text = " ".join(text.translate(SOFT_HYPHENS).split())
    for doubled, single in DOUBLED_QUOTES:
        text = text.replace(doubled, single)
    return Run(left, bottom, right, top, text, sideways)


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
    region with neither, or that is a single line, is one block."""
    if len(runs) < 2:
        return [runs] if runs else []
    rows = _gaps([(r.bottom, r.top) for r in runs])
    if not rows and min(r.top for r in runs) - max(r.bottom for r in runs) >= 0.5 * min(r.height for r in runs):
        return [runs]  # one line ("157." beside its text): its pieces are read as a line, not as columns
    columns = [g for g in _gaps([(r.left, r.right) for r in runs]) if g[1] - g[0] >= MIN_GUTTER_PT]
    if columns and (not rows or columns[0][1] - columns[0][0] >= rows[0][1] - rows[0][0]):
        x = (columns[0][0] + columns[0][1]) / 2
        return xy_cut([r for r in runs if r.middle_x < x]) + xy_cut([r for r in runs if r.middle_x >= x])
    if rows:
        y = (rows[0][0] + rows[0][1]) / 2
        return xy_cut([r for r in runs if r.middle > y]) + xy_cut([r for r in runs if r.middle <= y])
    return [runs]


def lines_of(runs: list[Run]) -> list[tuple[str, float]]:
    """Runs grouped into lines (top to bottom), each read left to right, with the middle of its first run.

    A run joins the last line, or the one before it, when it overlaps that line's first run vertically by
    half the smaller height and overlaps none of its runs horizontally (two runs one above the other are
    two lines, however tall one of them is)."""
    lines: list[list[Run]] = []
    for run in sorted(runs, key=lambda r: -r.middle):
        for line in lines[-1:-3:-1]:
            if _same_line(line, run):
                line.append(run)
                break
        else:
            lines.append([run])
    return [(" ".join(r.text for r in sorted(line, key=lambda r: r.left)), line[0].middle) for line in lines]


def _same_line(line: list[Run], run: Run) -> bool:
    """Whether ``run`` belongs on ``line`` (a comma or superscript joins its line)."""
    first = line[0]
    overlap = min(first.top, run.top) - max(first.bottom, run.bottom)
    if overlap < 0.5 * min(first.height, run.height):
        return False
    return all(
        min(r.right, run.right) - max(r.left, run.left) <= 0.5 * min(r.right - r.left, run.right - run.left)
        for r in line
    )


def ordered_lines(runs: list[Run]) -> list[tuple[str, float]]:
    """The page's lines in reading order, with their middles: XY-cut blocks, each read line by line."""
    return [line for block in xy_cut(runs) for line in lines_of(block)]


def page_text(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> str:
    """The page's text layer in reading order, one line per line."""
    return read_layer(page, textpage).text
