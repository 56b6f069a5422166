"""The one text normalisation every fastText classifier sees, in training and in scoring.

DCLM-like: lower case, punctuation split from words (each mark its own token), all whitespace
(newlines included) collapsed to single spaces, so a document is one fastText line. Only the first
``max_chars`` characters count: a 10 MB page costs what a 100 kB page does, and scores the same way
its first 100 kB would.
"""

from __future__ import annotations

import re

MAX_CHARS = 100_000
_PUNCTUATION = re.compile(r"([^\w\s])")
_SPACES = re.compile(r"\s+")


def normalize(text: str, max_chars: int = MAX_CHARS) -> str:
    """The fastText input for ``text``: one line, lower case, punctuation as separate tokens."""
    head = text[:max_chars].lower()
    return _SPACES.sub(" ", _PUNCTUATION.sub(r" \1 ", head)).strip()
