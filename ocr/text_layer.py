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
   each column is read whole; titles and full-width figures close a band of columns. A table (a region
   whose characters are mostly in short runs, its cells) is cut first at a gap of most of a line
   between its row groups, and each group read by its columns, as pdftotext reads it.
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
import operator
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

MIN_GUTTER_PT = 6.0  # narrowest gap between two columns (wider than a word space at body sizes)
GUTTER_BIN_PT = 3.0  # resolution of the search for column gutters across a page
# A table (most of a region's characters in runs of at most TABLE_CELL_CHARS) is cut at a horizontal gap of
# ROW_GROUP_EM line heights before any column gutter: read in its row groups, as pdftotext reads it
TABLE_CELL_CHARS = 30
ROW_GROUP_EM = 0.8
SPLIT_GAP_EM = 0.8  # a gap this many line heights (ascent to descent) wide inside a pdfium line may be a gutter
LINE = re.compile(r"([^\r\n\ufffe]*\ufffe?)(?:\r\n|\r|\n)?")
SOFT_HYPHENS = str.maketrans({"\x02": "-", "\ufffe": "-", "\u00ad": "-", "\x00": None})  # pdfium's hyphen marks
SURROGATE = re.compile("[\ud800-\udfff]")
SPACING_ACCENTS = {  # a spacing accent and the combining mark it puts on a letter
    "¨": "\u0308", "´": "\u0301", "ˆ": "\u0302", "˜": "\u0303", "¯": "\u0304", "˘": "\u0306", "˙": "\u0307",
    "˚": "\u030a", "˝": "\u030b", "ˇ": "\u030c", "¸": "\u0327", "˛": "\u0328",
}  # fmt: skip
SPACING_ACCENT = re.compile(f"[{''.join(SPACING_ACCENTS)}]")
DOUBLED_QUOTES = (("‘‘", "“"), ("’’", "”"), ("``", "“"))  # TeX-style quotes set as two single ones
# a line's leading note mark (footnote number, affiliation symbol) set against the word after it: "2https"
NOTE_MARK = re.compile(r"(\d{1,3}|[*†‡§¶∗⋆]|[α-ωΑ-Ω])(?=[^\W\d_])")
NOTE_MARK_SIZE = 0.8  # a mark set under this share of the next character's font size is a superscript
Box = tuple[float, float, float, float]  # left, bottom, right, top

# pdfium's out-parameters, reused by every call (pdfium runs on one thread per process)
_RECT = (ctypes.c_double * 4)()
_RECT_OUT = tuple(  # FPDFText_GetRect: left, top, right, bottom, into _RECT
    ctypes.cast(ctypes.byref(_RECT, 8 * i), ctypes.POINTER(ctypes.c_double)) for i in range(4)
)
_CHAR = (ctypes.c_double * 4)()
_CHAR_OUT = tuple(  # FPDFText_GetCharBox: left, right, bottom, top, into _CHAR
    ctypes.cast(ctypes.byref(_CHAR, 8 * i), ctypes.POINTER(ctypes.c_double)) for i in range(4)
)
_LOOSE = pdfium_c.FS_RECTF()  # FPDFText_GetLooseCharBox: the character's advance by the font's ascent and descent


class Run(NamedTuple):
    """A run of text and its box in the page's reading frame, in PDF points (origin bottom left), with the
    box's middles and height (a tuple: made and compared by the thousand on every page)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str
    sideways: bool  # runs across the page's reading direction (a stamp in the margin, an axis label)
    middle: float
    middle_x: float
    height: float


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
    runs: list[Run] = []
    whole: list[tuple[int, int, str]] = []  # (index in runs, start, line) of lines kept whole by their rects
    accented = SPACING_ACCENT.search(text) is not None
    for start, line, own in found:
        if accented and SPACING_ACCENT.search(line):
            line = _place_accents(raw, start, line, turn)
        pieces = _line_runs(raw, start, line, turn, own == turn, paired)
        indent = len(line) - len(line.lstrip())
        if pieces and (mark := NOTE_MARK.match(line, indent)):
            pieces[0] = _spaced_mark(raw, start + indent, mark.group(1), pieces[0])
        if len(pieces) == 1 and not pieces[0].sideways:
            whole.append((len(runs), start, line))
        runs += pieces
    gutters = _gutters([r for r in runs if not r.sideways])
    if gutters:  # pdfium's box of a word run can hide a gap: lines across a gutter are looked at closely
        cut: dict[int, list[Run]] = {}
        for index, start, line in whole:
            run = runs[index]
            if any(
                run.left < low and run.right > high and _open(raw, run, (low + high) / 2, turn) for low, high in gutters
            ):
                gap = SPLIT_GAP_EM * (_line_height(raw, start + len(line) - len(line.lstrip()), turn) or run.height)
                cut[index] = _pieces(raw, start, line, turn, gap, paired)
        runs = [piece for index, run in enumerate(runs) for piece in cut.get(index, [run])]
    return runs, turn


def _spaced_mark(raw: pdfium_c.FPDF_TEXTPAGE, index: int, mark: str, run: Run) -> Run:
    """``run`` (its line's first, starting with ``mark`` at character ``index``) with a space after the mark
    when the mark is set smaller than the word after it (a superscript note mark, as pdftotext splits it)."""
    size, after = pdfium_c.FPDFText_GetFontSize(raw, index), pdfium_c.FPDFText_GetFontSize(raw, index + len(mark))
    if not run.text.startswith(mark) or not 0 < size < NOTE_MARK_SIZE * after:
        return run
    return run._replace(text=f"{mark} {run.text[len(mark) :]}")


def _open(raw: pdfium_c.FPDF_TEXTPAGE, run: Run, x: float, turn: int) -> bool:
    """Whether no character of ``run``'s line lies at ``x`` (in the reading frame): one call, so that only the
    lines with a gap there are looked at character by character."""
    y = run.middle
    px, py = ((x, y), (-y, x), (-x, -y), (y, -x))[turn]
    return pdfium_c.FPDFText_GetCharIndexAtPos(raw, px, py, 1.0, run.height / 4) < 0


def _gutters(runs: list[Run]) -> list[tuple[float, float]]:
    """Likely column gutters: stretches of the page, at least MIN_GUTTER_PT wide, that fewer than half as
    many runs cross as lie in the busiest stretch on either side of them (the few that cross are lines
    pdfium ran over the gutter)."""
    if len(runs) < 4:
        return []
    origin = min(r.left for r in runs)
    bins = int((max(r.right for r in runs) - origin) / GUTTER_BIN_PT) + 2
    change = [0] * (bins + 1)
    for run in runs:
        change[int((run.left - origin) / GUTTER_BIN_PT)] += 1
        change[int((run.right - origin) / GUTTER_BIN_PT) + 1] -= 1
    cover = list(itertools.accumulate(change[:bins]))
    before = list(itertools.accumulate(cover, max))
    after = list(itertools.accumulate(reversed(cover), max))[::-1]
    gutters = []
    opened = None
    for i, count in enumerate(cover):
        low = count < 0.5 * min(before[i], after[i]) and min(before[i], after[i]) >= 3
        if low and opened is None:
            opened = i
        elif not low and opened is not None:
            if (i - opened) * GUTTER_BIN_PT >= MIN_GUTTER_PT:
                gutters.append((origin + opened * GUTTER_BIN_PT, origin + i * GUTTER_BIN_PT))
            opened = None
    return gutters


def _place_accents(raw: pdfium_c.FPDF_TEXTPAGE, start: int, line: str, turn: int) -> str:
    """``line`` with each spacing accent that sits over (or, a cedilla, under) one of its letters put on it:
    TeX draws "Färber" as "Farber" and a separate "¨", which pdfium may read anywhere in the line. The
    letter becomes its composed form and the accent a NUL (dropped later), so the line keeps its length."""
    chars = list(line)

    def box(index: int) -> Box:
        pdfium_c.FPDFText_GetCharBox(raw, start + index, *_CHAR_OUT)
        return _turned((_CHAR[0], _CHAR[2], _CHAR[1], _CHAR[3]), turn)

    letters: list[tuple[int, Box]] | None = None
    for match in SPACING_ACCENT.finditer(line):
        left, bottom, right, top = box(match.start())
        if right <= left:
            continue
        if letters is None:
            letters = [(i, box(i)) for i, ch in enumerate(chars) if ch.isalpha() and ch not in SPACING_ACCENTS]
        middle = (left + right) / 2
        under = [(abs((b[1] + b[3]) / 2 - (bottom + top) / 2), i) for i, b in letters if b[0] <= middle <= b[2]]
        if not under:
            continue
        _, i = min(under)
        base = {"ı": "i", "ȷ": "j"}.get(chars[i], chars[i])
        composed = unicodedata.normalize("NFC", base + SPACING_ACCENTS[match.group()])
        if len(composed) == 1:
            chars[i], chars[match.start()] = composed, "\x00"
            _close_up(raw, start, chars, match.start(), box)
    return "".join(chars)


def _close_up(raw: pdfium_c.FPDF_TEXTPAGE, start: int, chars: list[str], at: int, box: Callable[[int], Box]) -> None:
    """The spaces pdfium made around a moved accent at ``at`` (it jumped back to it and forward again) dropped
    when the characters either side of them touch: "Min ´ ác" is "Mináč"."""
    before, after = at - 1, at + 1
    spaces = []
    while before >= 0 and chars[before] == " " and pdfium_c.FPDFText_IsGenerated(raw, start + before) == 1:
        spaces.append(before)
        before -= 1
    while after < len(chars) and chars[after] == " " and pdfium_c.FPDFText_IsGenerated(raw, start + after) == 1:
        spaces.append(after)
        after += 1
    if not spaces or before < 0 or after >= len(chars) or not (chars[before].isalpha() and chars[after].isalpha()):
        return
    left, right = box(before), box(after)
    if abs(right[0] - left[2]) <= 0.2 * max(left[3] - left[1], right[3] - right[1]):
        for index in spaces:
            chars[index] = "\x00"


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
    """The boxes pdfium gives for characters ``start`` to ``start + count`` (about one per word)."""
    get = pdfium_c.FPDFText_GetRect
    boxes = []
    for i in range(pdfium_c.FPDFText_CountRects(raw, start, count)):
        get(raw, i, *_RECT_OUT)
        left, top, right, bottom = _RECT
        boxes.append((left, bottom, right, top))
    return [_turned(box, turn) for box in boxes] if turn else boxes


def _line_runs(raw: pdfium_c.FPDF_TEXTPAGE, start: int, line: str, turn: int, along: bool, paired: bool) -> list[Run]:
    """One pdfium line as runs: itself, or (for a line running in the page's direction, ``along``) its pieces
    between gaps wider than SPLIT_GAP_EM line heights, where it jumps back as far and where it moves to
    another line (pdfium's characters of one line are not always in reading order)."""
    boxes = _rects(raw, start, len(line), turn)
    if not boxes:
        return []
    if not along:
        return [_run(boxes, line, paired, sideways=True)]
    left, low, right, high = boxes[0]
    if len(boxes) > 1:
        height = _line_height(raw, start + len(line) - len(line.lstrip()), turn) or max(b[3] - b[1] for b in boxes)
        gap = SPLIT_GAP_EM * height
        whole = True
        for x0, y0, x1, y1 in boxes[1:]:  # the tests of _pieces on pdfium's tight boxes (an accent, a subscript
            # or an underscore lies beside the line's band: only a box of the line's height marks another line)
            if (
                x0 - right > gap
                or x1 < left - gap
                or ((y1 if y1 < high else high) <= (y0 if y0 > low else low) and y1 - y0 >= 0.6 * height)
            ):
                whole = False
                break
            left, low = (x0 if x0 < left else left), (y0 if y0 < low else low)  # no min/max calls: this runs
            right, high = (x1 if x1 > right else right), (y1 if y1 > high else high)  # for every box of a page
        if not whole:
            return _pieces(raw, start, line, turn, gap, paired)
    return [_make_run(left, low, right, high, line, paired)]


def _line_height(raw: pdfium_c.FPDF_TEXTPAGE, index: int, turn: int) -> float:
    """The height of character ``index``'s loose box (its font's ascent to descent): the line's height, whatever
    its glyphs (tight boxes of "we use" are an x-height tall, of "(" more than a line)."""
    pdfium_c.FPDFText_GetLooseCharBox(raw, index, _LOOSE)
    _, bottom, _, top = _turned((_LOOSE.left, _LOOSE.bottom, _LOOSE.right, _LOOSE.top), turn)
    return max(top - bottom, 0.0)


def _pieces(raw: pdfium_c.FPDF_TEXTPAGE, start: int, line: str, turn: int, gap: float, paired: bool) -> list[Run]:
    """A pdfium line cut where, by the loose boxes of its characters, it jumps ``gap`` ahead or back or
    moves to another line."""
    runs: list[Run] = []
    begin = -1  # offset of the piece's first character; -1: no piece yet
    left = right = low = high = 0.0  # extent of the piece so far
    get, box = pdfium_c.FPDFText_GetLooseCharBox, _LOOSE
    for offset, char in enumerate(line):
        if char.isspace():
            continue
        get(raw, start + offset, box)
        if turn:
            x0, y0, x1, y1 = _turned((box.left, box.bottom, box.right, box.top), turn)
        else:
            x0, y0, x1, y1 = box.left, box.bottom, box.right, box.top
        if x1 <= x0:
            continue
        if begin < 0:  # the first piece starts with the line (and keeps any characters pdfium gave no box)
            begin, left, low, right, high = 0, x0, y0, x1, y1
        elif x0 - right > gap or x1 < left - gap or min(high, y1) <= max(low, y0):
            runs.append(_make_run(left, low, right, high, line[begin:offset], paired))
            begin, left, low, right, high = offset, x0, y0, x1, y1
        else:
            left, low = (x0 if x0 < left else left), (y0 if y0 < low else low)
            right, high = (x1 if x1 > right else right), (y1 if y1 > high else high)
    if begin >= 0:
        runs.append(_make_run(left, low, right, high, line[begin:], paired))
    return runs


def _run(boxes: list[Box], text: str, paired: bool = False, sideways: bool = False) -> Run:
    """A run over ``boxes``."""
    left = min(b[0] for b in boxes)
    bottom = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    top = max(b[3] for b in boxes)
    return _make_run(left, bottom, right, top, text, paired, sideways)


def _make_run(
    left: float, bottom: float, right: float, top: float, text: str, paired: bool, sideways: bool = False
) -> Run:
    """A run with ``text`` tidied (``paired``: it may hold UTF-16 surrogate pairs to join)."""
    if paired:
        text = text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")
    text = " ".join(text.translate(SOFT_HYPHENS).split())
    if "‘‘" in text or "’’" in text or "``" in text:
        for doubled, single in DOUBLED_QUOTES:
            text = text.replace(doubled, single)
    return Run(
        left, bottom, right, top, text, sideways, (bottom + top) / 2, (left + right) / 2, max(top - bottom, 1e-3)
    )


def _widest_gap(ordered: list[Run], low: int, high: int) -> tuple[float, float]:
    """The widest interval no run covers between fields ``low`` and ``high`` of the runs (``ordered`` by
    ``low``; the lowest of equal ones); ``(0, 0)`` when they leave none."""
    best = (0.0, 0.0)
    widest = 0.0
    reach = ordered[0][high]
    for run in ordered:
        start = run[low]
        if start - reach > widest:
            best, widest = (reach, start), start - reach
        if run[high] > reach:
            reach = run[high]
    return best


def xy_cut(runs: list[Run]) -> list[list[Run]]:
    """Runs as blocks in reading order (recursive XY-cut).

    A region is cut at its widest gap: a vertical gutter at least MIN_GUTTER_PT wide that no run
    crosses (left part read first: columns), or a horizontal gap that no run crosses (top part read
    first). Column gutters are wider than the space between lines, so columns are split before their
    lines; a title, or the gap between rows of a grid, that is wider than the gutter is cut first, and so
    is a table's gap between row groups (:func:`_row_group_gap`). A region with neither, or that is a
    single line, is one block."""
    blocks: list[list[Run]] = []
    if runs:
        _cut(sorted(runs, key=operator.itemgetter(1)), sorted(runs, key=operator.itemgetter(0)), blocks)
    return blocks


def _cut(by_bottom: list[Run], by_left: list[Run], blocks: list[list[Run]]) -> None:
    """:func:`xy_cut` of one region, its runs given sorted both ways (a cut keeps both orders)."""
    if len(by_bottom) < 2:
        blocks.append(by_bottom)
        return
    row = _widest_gap(by_bottom, 1, 3)  # bottom, top
    if row[1] <= row[0] and min(r.top for r in by_bottom) - by_bottom[-1].bottom >= 0.5 * min(
        r.height for r in by_bottom
    ):
        blocks.append(by_bottom)  # one line ("157." beside its text): its pieces are read as a line, not columns
        return
    column = _widest_gap(by_left, 0, 2)  # left, right
    if (
        column[1] - column[0] >= MIN_GUTTER_PT
        and column[1] - column[0] >= row[1] - row[0]
        and not _row_group_gap(by_bottom, row[1] - row[0])
    ):
        x = (column[0] + column[1]) / 2
        _cut([r for r in by_bottom if r.middle_x < x], [r for r in by_left if r.middle_x < x], blocks)
        _cut([r for r in by_bottom if r.middle_x >= x], [r for r in by_left if r.middle_x >= x], blocks)
    elif row[1] > row[0]:
        y = (row[0] + row[1]) / 2
        _cut([r for r in by_bottom if r.middle > y], [r for r in by_left if r.middle > y], blocks)
        _cut([r for r in by_bottom if r.middle <= y], [r for r in by_left if r.middle <= y], blocks)
    else:
        blocks.append(by_bottom)


def _row_group_gap(runs: list[Run], gap: float) -> bool:
    """Whether a horizontal gap ``gap`` high separates row groups of a table: most of the region's characters
    are in short runs (cells, not lines of prose) and the gap is at least ROW_GROUP_EM line heights (the
    median run's)."""
    if gap <= 0:
        return False
    short = total = 0
    for run in runs:
        total += len(run.text)
        if len(run.text) <= TABLE_CELL_CHARS:
            short += len(run.text)
    return 2 * short >= total and gap >= ROW_GROUP_EM * statistics.median(r.height for r in runs)


def lines_of(runs: list[Run]) -> list[tuple[str, float]]:
    """Runs grouped into lines (top to bottom), each read left to right, with the middle of its first run.

    A run joins the last line, or the one before it, when it overlaps that line's first run vertically by
    half the smaller height and overlaps none of its runs horizontally (two runs one above the other are
    two lines, however tall one of them is)."""
    if len(runs) == 1:
        return [(runs[0].text, runs[0].middle)]
    lines: list[list[Run]] = []
    for run in sorted(runs, key=lambda r: -r.middle):
        for line in lines[-1:-3:-1]:
            if _same_line(line, run):
                line.append(run)
                break
        else:
            lines.append([run])
    return [
        (
            line[0].text if len(line) == 1 else " ".join(r.text for r in sorted(line, key=operator.itemgetter(0))),
            line[0].middle,
        )
        for line in lines
    ]


def _same_line(line: list[Run], run: Run) -> bool:
    """Whether ``run`` belongs on ``line`` (a comma or superscript joins its line)."""
    first = line[0]
    overlap = (first.top if first.top < run.top else run.top) - (
        first.bottom if first.bottom > run.bottom else run.bottom
    )
    if overlap < 0.5 * (first.height if first.height < run.height else run.height):
        return False
    for r in line:
        across = min(r.right, run.right) - max(r.left, run.left)
        if across > 0 and across > 0.5 * min(r.right - r.left, run.right - run.left):
            return False
    return True


def ordered_lines(runs: list[Run]) -> list[tuple[str, float]]:
    """The page's lines in reading order, with their middles: XY-cut blocks, each read line by line."""
    return [line for block in xy_cut(runs) for line in lines_of(block)]


def page_text(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> str:
    """The page's text layer in reading order, one line per line."""
    return read_layer(page, textpage).text
