"""Turning per-page texts into one clean document text with page spans (pure functions).

:func:`remove_margins` takes away what is not the page's own text, and nothing else:

- Running heads and feet: a margin line (among the first or last :data:`MARGIN_LINES` lines of a
  page, or for a text-layer page one lying in the top or bottom ``band`` of it) that recurs, digits
  ignored, at the same place on at least half of the pages and on at least two. The same place: for
  lines with a position (text-layer pages) middles within :data:`PLACE_TOLERANCE` of the page
  height; for OCR text, the same rank from the same edge. Such lines go only when they are short
  next to the page's text (each at most :data:`HEAD_CHARS`, together at most :data:`HEAD_SHARE` of
  the page's characters), and not when the repeated stretch runs on past the margin into the body
  (a paragraph repeated on every page is body text, however often it repeats).
- Page numbers: a margin line that is only a page number ("12", "- 12 -", "Page 3 of 9", "xiv"); a
  lone number elsewhere, even near the top, may be a list item's ("157." beside its exercise).
- Provenance stamps: "Downloaded from <site> on <date>", "Download date: ..." lines, anywhere on
  the page (publishers stamp them into the margin, often sideways).
- Never the only text of a page: a page all of whose lines would go keeps them all.

:func:`join_hyphenation` joins a word broken at a line end ("exam-" / "ple") when the next line
starts in lower case, also across a page break; :func:`assemble` joins the pages with a blank line
and records ``[start, end, page]`` character spans (end exclusive, pages numbered from 1) so a
consumer can cut the text back into pages.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Sequence

MARGIN_LINES = 3
PLACE_TOLERANCE = 0.02  # share of the page height between two placings of the same running head
HEAD_CHARS = 160  # a longer line is never a running head
HEAD_SHARE = 0.25  # the running heads and feet a page loses are at most this share of its characters
PAGE_NUMBER = re.compile(
    r"^[\s\-–—.]*(page\s+)?(\d{1,4}|[ivxlcdm]{1,7})(\s*(/|of)\s*\d{1,4})?[\s\-–—.]*$", re.IGNORECASE
)
STAMP = re.compile(r"^\s*(?:(?:this content )?downloaded from\s+\S+\.\S+|download date\s*:)", re.IGNORECASE)
STAMP_CHARS = 200
HYPHEN_BREAK = re.compile(r"(\w)-\n(?=[a-zß-ÿ])")
PAGE_SEPARATOR = "\n\n"

Places = Sequence[float] | None  # per line of a page: its vertical middle as a share of the page height from the top


def _shape(line: str) -> str:
    """A line with digits and spacing normalised: the same running head on every page has one shape."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", line)).strip().lower()


def _margins(lines: list[str], places: Places, band: float) -> dict[int, tuple[str, int]]:
    """The page's margin lines: index -> (edge, rank from that edge), a line in both margins counting at the top;
    and the first body line after each margin, at rank MARGIN_LINES, by which a repeated stretch that runs on
    into the body is told (it is never dropped itself)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    found: dict[int, tuple[str, int]] = {}
    for rank, i in enumerate(reversed(filled[-MARGIN_LINES - 1 :])):
        found[i] = ("bottom", rank)
    for rank, i in enumerate(filled[: MARGIN_LINES + 1]):
        if rank < MARGIN_LINES or i not in found:
            found[i] = ("top", rank)
    if places is not None and band > 0:
        for i in filled:
            if i not in found and (places[i] <= band or places[i] >= 1 - band):
                found[i] = ("top" if places[i] < 0.5 else "bottom", -1)
    return found


class _Recurrence:
    """On how many pages each margin line recurs at the same place."""

    def __init__(self) -> None:
        self._placed: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
        self._ranked: dict[tuple[str, str, int], set[int]] = defaultdict(set)
        self._counts: dict[tuple[str, str, float], int] = {}
        self._sorted: set[tuple[str, str]] = set()

    def add(self, page: int, shape: str, edge: str, rank: int, place: float | None) -> None:
        if place is None:
            self._ranked[shape, edge, rank].add(page)
        else:
            self._placed[shape, edge].append((place, page))

    def pages(self, shape: str, edge: str, rank: int, place: float | None) -> int:
        if place is None:
            return len(self._ranked[shape, edge, rank])
        key = (shape, edge, place)
        if key not in self._counts:
            placed = self._placed[shape, edge]
            if (shape, edge) not in self._sorted:  # sorted once, on first use (every add comes before)
                placed.sort()
                self._sorted.add((shape, edge))
            low = bisect.bisect_left(placed, (place - PLACE_TOLERANCE, -1))
            high = bisect.bisect_right(placed, (place + PLACE_TOLERANCE, math.inf))
            self._counts[key] = len({page for _, page in placed[low:high]})
        return self._counts[key]


def remove_margins(pages: list[str], places: Sequence[Places] | None = None, band: float = 0.0) -> list[str]:
    """Pages without their running heads/feet, page-number lines and provenance stamps.

    ``places[i]`` gives the position of each line of ``pages[i]`` (None for a page without positions,
    such as OCR text); ``band`` is the top/bottom share of a positioned page whose lines count as
    margin lines wherever reading order put them."""
    split = [page.splitlines() for page in pages]
    placed: list[Places] = list(places) if places is not None else [None] * len(pages)
    for lines, where in zip(split, placed, strict=True):
        if where is not None and len(where) != len(lines):
            raise ValueError(f"{len(where)} places for {len(lines)} lines")
    margins = [_margins(lines, where, band) for lines, where in zip(split, placed, strict=True)]
    recurrence = _Recurrence()
    for n, (lines, where, found) in enumerate(zip(split, placed, margins, strict=True)):
        for i, (edge, rank) in found.items():
            recurrence.add(n, _shape(lines[i]), edge, rank, None if where is None else where[i])
    needed = max(2, math.ceil(len(pages) / 2))
    out = []
    for lines, where, found in zip(split, placed, margins, strict=True):
        repeated = {
            i
            for i, (edge, rank) in found.items()
            if len(lines[i].strip()) <= HEAD_CHARS
            and recurrence.pages(_shape(lines[i]), edge, rank, None if where is None else where[i]) >= needed
        }
        heads = {i for i in repeated if found[i][1] < MARGIN_LINES} - _runs_into_body(found, repeated)
        filled = [i for i, line in enumerate(lines) if line.strip()]
        chars = sum(len(lines[i].strip()) for i in filled)
        if sum(len(lines[i].strip()) for i in heads) > HEAD_SHARE * chars:
            heads = set()
        drop = heads | {i for i, (_, rank) in found.items() if rank < MARGIN_LINES and PAGE_NUMBER.match(lines[i])}
        drop.update(i for i in filled if len(lines[i]) <= STAMP_CHARS and STAMP.match(lines[i]))
        if len(drop) >= len(filled):  # never the only text of a page
            drop = set()
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return out


def _runs_into_body(found: dict[int, tuple[str, int]], repeated: set[int]) -> set[int]:
    """Repeated margin lines that continue into the body: when the first body line after a margin (rank
    MARGIN_LINES) recurs too, the stretch of repeated lines next to it, up to the edge."""
    body = set()
    for edge in ("top", "bottom"):
        ranked = {rank: i for i, (e, rank) in found.items() if e == edge and rank >= 0}
        if ranked.get(MARGIN_LINES) not in repeated:
            continue
        for rank in range(MARGIN_LINES - 1, -1, -1):
            if ranked.get(rank) not in repeated:
                break
            body.add(ranked[rank])
    return body


def join_hyphenation(text: str) -> str:
    """Words broken across lines joined: "exam-\\nple" becomes "example" (the two lines become one)."""
    return HYPHEN_BREAK.sub(r"\1", text)


def assemble(pages: list[str], page_numbers: list[int]) -> tuple[str, list[list[int]]]:
    """One text from cleaned pages, and the ``[start, end, page]`` span of every page in it.

    A page that ends in a hyphenated word continued in lower case on the next page is joined to it."""
    text = ""
    spans: list[list[int]] = []
    for page, number in zip(pages, page_numbers, strict=True):
        body = join_hyphenation(page.strip())
        if text and body:
            if len(text) > 1 and text[-1] == "-" and text[-2].isalnum() and re.match(r"[a-zß-ÿ]", body):
                text = text[:-1]
                spans[-1][1] = len(text)
            else:
                text += PAGE_SEPARATOR
        start = len(text)
        text += body
        spans.append([start, len(text), number])
    return text, spans
