"""Table and page rules, erased from a rendered page before tesseract reads it, and dropped from what it read.

tesseract reads a table's rules badly: a solid or dotted line touching a row of text merges with it,
and the row comes back as noise ("EBM-NLP (Nye et al., 2018)" read as "EBMENLE Whe Gt al 3018)"). So
rules are found on the page image and painted white first (:func:`erase_rules`):

- A horizontal rule is a thin band of ink: over a window of ``min_length_in`` inches along a row,
  at least ``min_cover`` of the pixels are ink (dotted rules count: their dots cover about half),
  and on both sides, 2 to 4 pixels away, the same window is nearly blank. A row of text fails the
  second test (the rows beside it cut through the same letters), so text is left alone; underlines
  go with the rules.
- A vertical rule is the same, turned, but must be solid (``min_cover`` 0.85): the left edge of a
  column of text is half ink and half line spacing.

What is left of rules in tesseract's text (lone ``|`` tokens, lines of only rule marks) is dropped by
:func:`drop_rules`.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

RULE_INK = 200  # grey levels below this are ink when looking for rules (dotted rules render light)
ERASE_BELOW = 230  # the rule's pixels darker than this are painted white (its anti-aliased edge too)
BLANK_SIDE = 0.1  # a window beside a rule has at most this share of ink
SIDE_OFFSETS = (2, 3, 4)  # pixels from a rule row to the rows that must be blank (rules up to ~3 px thick)
HORIZONTAL_COVER = 0.45
VERTICAL_COVER = 0.85
RULE_TOKEN = re.compile(r"(?<!\S)[|¦]+(?!\S)")
RULE_LINE = re.compile(r"^[\s|¦_—–\-=~.]*$")


def erase_rules(image: Image.Image, dpi: float, min_length_in: float = 0.4) -> Image.Image:
    """A copy of the greyscale ``image`` (rendered at ``dpi``) with its horizontal and vertical rules painted white."""
    pixels = np.asarray(image.convert("L"))
    length = max(8, round(dpi * min_length_in))
    ink = pixels < RULE_INK
    rules = _horizontal_rules(ink, length, HORIZONTAL_COVER) | _horizontal_rules(ink.T, length, VERTICAL_COVER).T
    if not rules.any():
        return image
    rules[1:] |= rules[:-1].copy()  # one pixel more above and below: the rule's anti-aliased edge
    rules[:-1] |= rules[1:].copy()
    cleaned = pixels.copy()
    cleaned[rules & (pixels < ERASE_BELOW)] = 255
    return Image.fromarray(cleaned)


def _horizontal_rules(ink: np.ndarray, length: int, min_cover: float) -> np.ndarray:
    """Pixels of ``ink`` (rows x columns) on horizontal rules at least ``length`` long."""
    rows, columns = ink.shape
    if columns < length or rows <= 2 * max(SIDE_OFFSETS):
        return np.zeros_like(ink)
    summed = np.cumsum(np.pad(ink, ((0, 0), (1, 0))), axis=1, dtype=np.int32)
    cover = (summed[:, length:] - summed[:, :-length]) / length  # ink share of each window [c, c + length)
    blank = cover <= BLANK_SIDE
    blank_above = np.zeros_like(blank)
    blank_below = np.zeros_like(blank)
    for offset in SIDE_OFFSETS:
        blank_above[offset:] |= blank[:-offset]
        blank_below[:-offset] |= blank[offset:]
    hits = (cover >= min_cover) & blank_above & blank_below
    # each hit window marks its `length` columns: +1 where a window starts, -1 where it ends
    starts = np.zeros((rows, columns + 1), dtype=np.int32)
    starts[:, : hits.shape[1]] += hits
    starts[:, length : length + hits.shape[1]] -= hits
    return np.cumsum(starts, axis=1)[:, :columns] > 0


def drop_rules(text: str) -> str:
    """tesseract's readings of table and page rules removed: lone ``|`` tokens and lines of only rule marks."""
    kept = []
    for line in text.splitlines():
        if line.strip() and RULE_LINE.match(line):
            continue
        kept.append(" ".join(RULE_TOKEN.sub("", line).split()))
    return "\n".join(kept)
