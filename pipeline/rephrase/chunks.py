"""Cutting a document into chunks that fit a template's input budget, on natural boundaries.

Chunks are packed greedily from paragraphs (blank-line separated); a paragraph longer than the
budget is packed from its lines, a line from its words, and a word longer than the budget is cut.
Joining the chunks with the separators they were cut at gives the text back (whitespace runs at the
cuts aside). The budget is in characters: ``max_input_tokens * chars_per_token``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PARAGRAPH = re.compile(r"\n\s*\n")


def chunk_text(text: str, max_chars: int) -> list[str]:
    """``text`` in chunks of at most ``max_chars`` characters (at least one chunk, possibly empty)."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    return _pack(PARAGRAPH.split(text.strip()), "\n\n", max_chars, _lines) or [""]


def _lines(paragraph: str, max_chars: int) -> list[str]:
    return _pack(paragraph.split("\n"), "\n", max_chars, _words)


def _words(line: str, max_chars: int) -> list[str]:
    return _pack(line.split(" "), " ", max_chars, _cut)


def _cut(word: str, max_chars: int) -> list[str]:
    return [word[i : i + max_chars] for i in range(0, len(word), max_chars)]


def _pack(parts: list[str], separator: str, max_chars: int, smaller: Callable[[str, int], list[str]]) -> list[str]:
    """Greedy packing of ``parts`` joined by ``separator``; a part too long is split by ``smaller``."""
    chunks: list[str] = []
    current = ""
    for part in parts:
        if not part.strip():
            continue
        pieces = [part] if len(part) <= max_chars else smaller(part, max_chars)
        for piece in pieces:
            if current and len(current) + len(separator) + len(piece) <= max_chars:
                current += separator + piece
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks
