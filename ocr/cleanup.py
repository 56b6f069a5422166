"""Turning per-page texts into one clean document text with page spans (pure functions).

- Running heads and feet: a line among the first or last :data:`MARGIN_LINES` lines of a page that
  recurs (digits ignored) on at least half of the pages — and on at least two — is dropped.
- Page numbers: a margin line that is only a page number ("12", "- 12 -", "Page 3 of 9", "xiv"), and
  a page's first or last line when it is short and starts or ends with a number ("Advocacy in
  Action 447", "400 BRITISH HUSBANDRY. [Ch. XIX.": a running head even on a single page).
- Provenance stamps: "Downloaded from <site> on <date>", "Download date: ..." lines, anywhere on
  the page (publishers stamp them into the margin, often sideways).
- Hyphenation: a word broken at a line end ("exam-" / "ple") is joined when the next line starts in
  lower case, also across a page break.

:func:`assemble` joins the pages with a blank line and records ``[start, end, page]`` character
spans (end exclusive, pages numbered from 1) so a consumer can cut the text back into pages.
"""

from __future__ import annotations

import math
import re
from collections import Counter

MARGIN_LINES = 3
PAGE_NUMBER = re.compile(
    r"^[\s\-–—.]*(page\s+)?(\d{1,4}|[ivxlcdm]{1,7})(\s*(/|of)\s*\d{1,4})?[\s\-–—.]*$", re.IGNORECASE
)
STAMP = re.compile(r"^\s*(?:(?:this content )?downloaded from\s+\S+\.\S+|download date\s*:)", re.IGNORECASE)
STAMP_CHARS = 200
NUMBERED_HEAD = re.compile(r"^\d{1,4}\s+\D|\D\s+\d{1,4}$")
NUMBERED_HEAD_CHARS = 60
HYPHEN_BREAK = re.compile(r"(\w)-\n(?=[a-zß-ÿ])")
PAGE_SEPARATOR = "\n\n"


def _shape(line: str) -> str:
    """A line with digits and spacing normalised: the same running head on every page has one shape."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", line)).strip().lower()


def remove_margins(pages: list[str]) -> list[str]:
    """Pages without their running heads/feet, page-number lines and provenance stamps."""
    split = [[line for line in page.splitlines()] for page in pages]
    margins = [_margin_indexes(lines) for lines in split]
    counts: Counter[str] = Counter()
    for lines, indexes in zip(split, margins, strict=True):
        counts.update({_shape(lines[i]) for i in indexes if lines[i].strip()})
    needed = max(2, math.ceil(len(pages) / 2))
    out = []
    for lines, indexes in zip(split, margins, strict=True):
        drop = {
            i
            for i in indexes
            if lines[i].strip() and (counts[_shape(lines[i])] >= needed or PAGE_NUMBER.match(lines[i]))
        }
        filled = [i for i, line in enumerate(lines) if line.strip()]
        drop.update(i for i in filled[:1] + filled[-1:] if _numbered_head(lines[i]))
        drop.update(i for i in filled if len(lines[i]) <= STAMP_CHARS and STAMP.match(lines[i]))
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return out


def _numbered_head(line: str) -> bool:
    """A short line that starts or ends with a page number: a running head or foot."""
    text = line.strip()
    return len(text) <= NUMBERED_HEAD_CHARS and bool(NUMBERED_HEAD.search(text))


def _margin_indexes(lines: list[str]) -> list[int]:
    """Indexes of the first and last MARGIN_LINES non-empty lines of a page."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:MARGIN_LINES] + filled[-MARGIN_LINES:]))


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
