"""datatrove's Gopher repetition filter with its n-gram statistics computed without building every n-gram.

datatrove's ``GopherRepetitionFilter`` joins the words of every n-gram into a string, for n = 2 to 10,
to find the most common n-gram (n = 2-4, words joined with spaces) and the characters in repeated
n-grams (n = 5-10, words joined with nothing, counted by a greedy left-to-right walk). That is
millions of string joins for a thousand web pages, the largest cost of the heuristics stage.

:class:`GopherRepetitionFast` gives the same verdicts, reasons and measured values. Each n-gram is a span
of one string (the words joined), and a polynomial hash of every span is computed at once with numpy
from prefix sums. Equal strings have equal hashes, so an n-gram whose hash occurs once occurs once:
only the n-grams whose hashes repeat are built as strings and walked as datatrove walks them, and the
most common n-gram's hash group is checked string by string (on a collision datatrove's own count
decides). A test compares both filters' results on the shared corpora and on word lists built to
collide.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import split_into_words

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so it has an inverse modulo 2**64
_BASE_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))


class SpanHashes:
    """Hashes of the spans of one string: ``of(starts, ends)[i]`` is the same number for equal substrings
    ``text[starts[i]:ends[i]]``, wherever they lie (arithmetic modulo 2**64)."""

    def __init__(self, text: str) -> None:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
        powers = np.full(len(codes) + 1, _BASE, dtype=np.uint64)
        powers[0] = 1
        inverse_powers = np.full(len(codes) + 1, _BASE_INVERSE, dtype=np.uint64)
        inverse_powers[0] = 1
        powers, self.inverse_powers = np.cumprod(powers), np.cumprod(inverse_powers)
        self.prefix = np.concatenate(([np.uint64(0)], np.cumsum(codes * powers[:-1], dtype=np.uint64)))

    def of(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """sum(code[k] * BASE**(k - start)) over each span: its hash, independent of where it starts."""
        return (self.prefix[ends] - self.prefix[starts]) * self.inverse_powers[starts]


class NgramSpans:
    """The n-grams of a word list as spans of the words joined with ``separator``."""

    def __init__(self, words: list[str], separator: str) -> None:
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.starts = np.concatenate(([0], np.cumsum(lengths + len(separator))))[:-1]
        self.ends = self.starts + lengths
        self.text = separator.join(words)
        self.hashes = SpanHashes(self.text)
        self.count = len(words)

    def positions(self, n: int) -> int:
        """How many n-grams there are."""
        return max(self.count - n + 1, 0)

    def ngram(self, i: int, n: int) -> str:
        """The n-gram at word ``i``: ``separator.join(words[i:i + n])``."""
        return self.text[self.starts[i] : self.ends[i + n - 1]]

    def ngram_hashes(self, n: int) -> np.ndarray:
        m = self.positions(n)
        return self.hashes.of(self.starts[:m], self.ends[n - 1 : n - 1 + m])


def top_ngram_chars(spans: NgramSpans, n: int) -> int | None:
    """datatrove's ``find_top_duplicate(get_n_grams(words, n))`` (``spans`` joined by spaces): characters of
    the most common n-gram times its count, the earliest seen among equals; None when there is no n-gram."""
    if spans.positions(n) == 0:
        return None
    hashes = spans.ngram_hashes(n)
    _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    top = counts.max()
    group = np.flatnonzero(counts == top)[np.argmin(first[counts == top])]
    found = {spans.ngram(int(i), n) for i in np.flatnonzero(inverse == group)}
    if len(found) == 1:
        return len(found.pop()) * int(top)
    gram, count = Counter(spans.ngram(i, n) for i in range(spans.positions(n))).most_common(1)[0]  # a collision
    return len(gram) * count


def repeated_ngram_chars(spans: NgramSpans, n: int) -> int:
    """datatrove's ``find_all_duplicate(words, n)`` (``spans`` joined by nothing): walking left to right, an
    n-gram seen before adds its characters and the walk jumps past it. n-grams that occur once change
    nothing, so the walk visits only those whose hash repeats."""
    if spans.positions(n) == 0:
        return 0
    _, inverse, counts = np.unique(spans.ngram_hashes(n), return_inverse=True, return_counts=True)
    seen: set[str] = set()
    repeated, next_index = 0, 0
    for i in np.flatnonzero(counts[inverse] > 1).tolist():
        if i < next_index:
            continue
        gram = spans.ngram(i, n)
        if gram in seen:
            repeated += len(gram)
            next_index = i + n
        else:
            seen.add(gram)
    return repeated


class GopherRepetitionFast(GopherRepetitionFilter):
    """datatrove's GopherRepetitionFilter: the same checks in the same order against the same thresholds,
    with the n-gram statistics of :func:`top_ngram_chars` and :func:`repeated_ngram_chars`."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"

        paragraphs = self.paragraph_exp.split(text.strip())
        paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
        if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"

        lines = self._line_splitter.split(text)
        line_duplicates, char_duplicates = find_duplicates(lines)
        if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"

        words = split_into_words(text, self.language)
        spaced = NgramSpans(words, " ")
        for n, n_frac in self.top_n_grams:
            top_char_length = top_ngram_chars(spaced, n)
            if top_char_length is not None and top_char_length / len(text) > n_frac:
                return False, f"top_{n}_gram"

        joined = NgramSpans(words, "")
        for n, n_frac in self.dup_n_grams:
            if repeated_ngram_chars(joined, n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"

        return True
