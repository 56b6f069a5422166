"""Measuring OCR output: character error rates and olmOCR-Bench's ``present``, ``absent`` and ``order`` checks.

- :func:`cer`: Levenshtein distance over the reference length — strict about reading order, so a
  table read row by row against a reference read cell by cell scores badly. Both texts are compared
  as a reader would: NFKC (ligatures as letters), olmOCR-Bench's quote and dash normalisation, and
  without whitespace (references made by pdftotext split small caps, "S CI B ERT"; tesseract's
  ground truth letter-spaces spaced-out headlines, "T R A V E L"; neither is a recognition error).
- :func:`flexible_cer`: the reading-order-tolerant variant (in the spirit of Clausner et al.'s
  flexible character accuracy, 2020): each reference line, longest first, is aligned to its best
  matching stretch of the remaining output, which is then used up; the edits of every line plus the
  output left over (insertions) over the reference length.
- :func:`word_f1` / :func:`ngram_f1`: bag-of-words and order-sensitive word n-gram F1 of an output
  against a reference text (both as :func:`words`: NFKC, lower case, runs of letters and digits, a
  word broken at a line end joined, small caps that pdftotext splits, "S CI B ERT", joined on both
  sides) — for comparing a text layer with a peer extractor such as pdftotext.
- :func:`midline_splits`: hyphenated word halves left apart inside a line ("cov- erage").
- :class:`BenchCheck`: one olmOCR-Bench test with the benchmark's own normalisation and matching
  (``fuzz.partial_ratio`` with a threshold from ``max_diffs`` for presence and absence; approximate
  matches within ``max_diffs`` edits, one of ``before`` starting before one of ``after``, for order).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzzysearch import find_near_matches
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

CHECK_TYPES = ("present", "absent", "order")
_FANCY = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "＿": "_", "–": "-", "—": "-", "‑": "-", "‒": "-",
     "−": "-", "\u00b5": "\u03bc"}
)  # fmt: skip


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _plain(text: str) -> str:
    """NFKC (ligatures such as "ﬃ" become "ffi", as a reader sees them), quotes and dashes as ASCII, no whitespace."""
    return "".join(normalize(unicodedata.normalize("NFKC", text)).split())


def cer(reference: str, output: str) -> float:
    """Character error rate of ``output`` against ``reference`` (compared as :func:`_plain` text)."""
    ref = _plain(reference)
    return Levenshtein.distance(ref, _plain(output)) / max(len(ref), 1)


def flexible_cer(reference: str, output: str) -> float:
    """Character error rate that does not punish a different order of lines or blocks (never above :func:`cer`:
    the greedy line matching can misplace a short line that the strict alignment gets right)."""
    lines = sorted((_plain(line) for line in reference.splitlines() if line.strip()), key=len, reverse=True)
    rest = _plain(output)
    edits = 0
    for line in lines:
        found = fuzz.partial_ratio_alignment(line, rest) if rest else None
        if found is None or found.score == 0:
            edits += len(line)
            continue
        matched = rest[found.dest_start : found.dest_end]
        edits += Levenshtein.distance(line, matched)
        rest = rest[: found.dest_start] + " " + rest[found.dest_end :]  # a used stretch cannot match again
    edits += sum(1 for ch in rest if not ch.isspace())
    return min(edits / max(sum(len(line) for line in lines), 1), cer(reference, output))


LINE_END_HYPHEN = re.compile(r"(\w)-\n(?=\w)")
SMALL_CAPS_SPLIT = re.compile(r"\b[A-Z] [A-Z]{2,}\w*(?: [A-Z] [A-Z]{2,}\w*)*")  # "S CI B ERT", "B ERTBase"
MIDLINE_SPLIT = re.compile(r"[a-zß-ÿ]- [a-zß-ÿ]")


def words(text: str) -> list[str]:
    """The words of ``text`` for F1 comparisons (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = LINE_END_HYPHEN.sub(r"\1", text)
    text = SMALL_CAPS_SPLIT.sub(lambda match: match.group().replace(" ", ""), text).lower()
    return re.findall(r"\w+", text)


def _f1(reference: list[Any], output: list[Any]) -> float:
    if not reference and not output:
        return 1.0
    common = sum((Counter(reference) & Counter(output)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(output), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def word_f1(reference: str, output: str) -> float:
    """Bag-of-words F1 of ``output`` against ``reference``."""
    return _f1(words(reference), words(output))


def ngram_f1(reference: str, output: str, n: int = 5) -> float:
    """F1 over the word ``n``-grams (with repeats): sensitive to reading order."""
    ref, out = words(reference), words(output)
    return _f1(
        [tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)],
        [tuple(out[i : i + n]) for i in range(len(out) - n + 1)],
    )


def midline_splits(text: str) -> int:
    """Hyphenated words left in two halves inside a line: "cov- erage" (a lower-case letter, hyphen, space,
    lower-case letter)."""
    return sum(len(MIDLINE_SPLIT.findall(line)) for line in text.splitlines())


def normalize(text: str) -> str:
    """olmOCR-Bench's normalisation: Markdown emphasis and <br> dropped, whitespace collapsed, NFC,
    typographic quotes and dashes to ASCII."""
    text = re.sub(r"<br/?>", " ", text)
    text = re.sub(r"</?[bi]>", "", text)
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    text = re.sub(r"(\*|_)(.*?)\1", r"\2", text)
    text = unicodedata.normalize("NFC", _collapse(text))
    return text.translate(_FANCY)


@dataclass(frozen=True)
class BenchCheck:
    """One olmOCR-Bench test of a page: ``present``/``absent`` of ``text``, or ``before`` ahead of ``after``."""

    id: str
    pdf: str
    page: int
    type: str
    text: str = ""
    before: str = ""
    after: str = ""
    max_diffs: int = 0
    case_sensitive: bool = True

    def passes(self, output: str) -> bool:
        """Whether ``output`` (the page's text) passes this check."""
        content = normalize(output)
        if self.type == "order":
            before = find_near_matches(normalize(self.before), content, max_l_dist=self.max_diffs)
            after = find_near_matches(normalize(self.after), content, max_l_dist=self.max_diffs)
            return any(b.start < a.start for b in before for a in after)
        query = normalize(self.text)
        if not self.case_sensitive:
            query, content = query.lower(), content.lower()
        if len(content) < len(query) - self.max_diffs:  # too short to hold it (partial_ratio is symmetric)
            return self.type == "absent"
        threshold = 1.0 - self.max_diffs / max(len(query), 1)
        found = fuzz.partial_ratio(query, content) / 100.0 >= threshold
        return found if self.type == "present" else not found


def load_checks(dataset: Path) -> list[BenchCheck]:
    """The ``present``, ``absent`` and ``order`` checks of an olmOCR-Bench ``dataset.jsonl`` (others skipped)."""
    checks = []
    fields = set(BenchCheck.__dataclass_fields__)
    for line in dataset.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row: dict[str, Any] = json.loads(line)
        if row.get("type") in CHECK_TYPES:
            checks.append(BenchCheck(**{k: v for k, v in row.items() if k in fields}))
    return checks
