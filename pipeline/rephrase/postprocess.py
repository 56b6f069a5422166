"""Post-processing of a model's answer: clean-ups and checks as pure functions.

:func:`postprocess` turns an answer into the text of a synthetic row, or says why it cannot be one
(:class:`Rejected` with a reason): the expected prefix is stripped; Markdown emphasis, headings,
code fences and wrapping quotes are removed; QA answers must parse into "Question: / Answer:" pairs
and list answers into "- " items (both re-emitted in one canonical layout); then the length ratio to
the source, the language (when the template names one) and the overlap with the source's word
n-grams (invented content shares few) are checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from winnow.pipeline.rephrase.templates import PostProcess

WORD = re.compile(r"\w+")
FENCE = re.compile(r"^```[a-z]*\n?|\n?```$")
HEADING = re.compile(r"^#{1,6}\s+", re.MULTILINE)
EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
QUESTION = re.compile(r"^\s*(?:\d+[.)]\s*)?\**(?:Q|Question)\s*\d*\**\s*[:.]\**\s*(.+)$", re.IGNORECASE)
ANSWER = re.compile(r"^\s*\**(?:A|Answer)\s*\d*\**\s*[:.]\**\s*(.+)$", re.IGNORECASE)
ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.+)$")
QUOTES = ('"', "“", "”", "'")


class Rejected(Exception):
    """An answer that cannot become a row; ``reason`` is the reject reason, the message its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Checks:
    """What the checks need besides the answer: the source chunk and a language identifier."""

    source: str
    identify: Callable[[str], tuple[str, float]] | None = None


def strip_prefix(text: str, prefix: str | None) -> str:
    """``text`` without a leading ``prefix`` (case-insensitive, surrounding spaces and a colon too)."""
    stripped = text.lstrip()
    if prefix and stripped.lower().startswith(prefix.lower()):
        return stripped[len(prefix) :].lstrip(" :\n")
    return stripped


def clean_markdown(text: str) -> str:
    """Code fences, heading marks, bold and wrapping quotes removed; blank-line runs folded."""
    text = FENCE.sub("", text.strip())
    text = HEADING.sub("", text)
    text = EMPHASIS.sub(r"\2", text)
    if len(text) > 1 and text[0] in QUOTES and text[-1] in QUOTES:
        text = text[1:-1]
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def qa_pairs(text: str) -> list[tuple[str, str]]:
    """The (question, answer) pairs of an answer written as "Question: ..." / "Answer: ..." lines."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for line in text.splitlines():
        if match := QUESTION.match(line):
            question = match.group(1).strip()
        elif (match := ANSWER.match(line)) and question:
            pairs.append((question, match.group(1).strip()))
            question = None
        elif pairs and question is None and line.strip():  # an answer running over several lines
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
    return pairs


def list_items(text: str) -> list[str]:
    """The items of an answer written as a bulleted or numbered list."""
    return [match.group(1).strip() for line in text.splitlines() if (match := ITEM.match(line))]


def source_overlap(answer: str, source: str, n: int) -> float:
    """Share of the answer's word n-grams (lower case) that occur in the source; 0 for an empty answer."""
    grams = _ngrams(answer, n)
    if not grams:
        return 0.0
    known = set(_ngrams(source, n))
    return sum(gram in known for gram in grams) / len(grams)


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def postprocess(answer: str, settings: PostProcess, prefix: str | None, checks: Checks) -> str:
    """The row text for ``answer``; raises Rejected (``empty``, ``no_qa_pairs``, ``no_list_items``,
    ``length_ratio``, ``language``, ``low_overlap``)."""
    text = clean_markdown(strip_prefix(answer, prefix))
    if not text:
        raise Rejected("empty", "the answer is empty after clean-up")
    content = text  # what is compared with the source: without the "Question:"/"Answer:" labels
    if settings.kind == "qa":
        pairs = qa_pairs(text)
        if not pairs:
            raise Rejected("no_qa_pairs", "no 'Question: ... / Answer: ...' pair in the answer")
        text = "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)
        content = "\n".join(f"{q}\n{a}" for q, a in pairs)
    elif settings.kind == "list":
        items = list_items(text)
        if not items:
            raise Rejected("no_list_items", "no '- ' item in the answer")
        text = "\n".join(f"- {item}" for item in items)
        content = "\n".join(items)
    ratio = len(text) / max(len(checks.source), 1)
    if not settings.min_length_ratio <= ratio <= settings.max_length_ratio:
        bounds = f"[{settings.min_length_ratio}, {settings.max_length_ratio}]"
        raise Rejected("length_ratio", f"{ratio:.2f} x the source's length, outside {bounds}")
    if settings.language and checks.identify is not None:
        language, score = checks.identify(text)
        if language != settings.language:
            raise Rejected("language", f"answer is {language} ({score:.2f}), not {settings.language}")
    overlap = source_overlap(content, checks.source, settings.ngram)
    if overlap < settings.min_source_overlap:
        detail = f"{overlap:.2f} of its {settings.ngram}-grams are in the source (< {settings.min_source_overlap})"
        raise Rejected("low_overlap", detail)
    return text
