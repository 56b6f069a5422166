"""The one text normalisation every fastText classifier sees, in training and in scoring.

DCLM-like: lower case, punctuation split from words (each mark its own token), all whitespace
(newlines included) collapsed to single spaces, so a document is one fastText line. Only the first
``max_chars`` characters count: a 10 MB page costs what a 100 kB page does, and scores the same way
its first 100 kB would.
"""

from __future__ import annotations

import re

MAX_CHARS = 100_000
_TOKEN = re.compile(r"\w+|[^\w\s]")  # a run of word characters, or one punctuation mark or symbol


def normalize(text: str, max_chars: int = MAX_CHARS) -> str:
    """The fastText input for ``text``: one line, lower case, punctuation as separate tokens."""
    return " ".join(_TOKEN.findall(text[:max_chars].lower()))
