"""A regex word and sentence splitter for datatrove's heuristic filters, in place of spaCy.

datatrove's Gopher, C4 and FineWeb filters call a ``WordTokenizer``; for English that is spaCy's
blank pipeline plus a sentencizer, which costs about 9 ms per web page here and is the largest cost
of those filters. The filters only count words, measure their lengths and split sentences at
terminal punctuation, which a regular expression does at a fraction of the cost. The manifest can
still choose spaCy (``stages.heuristics.tokenizer: spacy``).
"""

from __future__ import annotations

import re

from datatrove.utils.word_tokenizers import WordTokenizer

# Tokens as spaCy's English tokenizer makes them, closely enough for the filters' word statistics:
# URLs whole; numbers with inner separators (3.50, 1,000, 10:30) whole; dotted abbreviations (U.S.,
# e.g.) whole; words with inner ' / & kept together (don't, and/or, AT&T) but split at hyphens; a
# run of one punctuation mark ("...", "--") is one token, other symbols one each.
WORD = re.compile(
    r"(?:https?://|www\.)\S+[^\s.,;:!?)\]\"']"
    r"|\d+(?:[.,:]\d+)+"
    r"|(?:[A-Za-z]\.){2,}"
    r"|\w+(?:[.'’/&]\w+)*"
    r"|(?P<mark>[^\w\s])(?P=mark)*"
)
# a sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace ...
SENTENCE_END = re.compile(r"(?<=[.!?])([\"'”’)\]]*)\s+")
# ... unless the period closes an abbreviation: "Dr.", "Mr.", "e.g.", "U.S.", a lone initial
TITLES = "Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Gen|Col|Lt|Sgt|Rev|Gov|Sen|Rep|No|Vol|Fig|Inc|Ltd|Co|Corp|vs|etc|approx"
ABBREVIATION = re.compile(rf"(?:\b(?:{TITLES})|\b(?:[A-Za-z]\.)+[A-Za-z]|\b[A-Za-z])\.$")


class RegexWordTokenizer(WordTokenizer):
    """Word/sentence splitting with regular expressions; language-agnostic for space-delimited scripts."""

    def __init__(self, language: str = "en") -> None:
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return [match.group() for match in WORD.finditer(text)]

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b].strip() for a, b in self.span_tokenize(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans = []
        start = 0
        for match in SENTENCE_END.finditer(text):
            if ABBREVIATION.search(text[max(start, match.start() - 12) : match.start()]):
                continue
            if text[start : match.end(1)].strip():
                spans.append((start, match.end(1)))
            start = match.end()
        if text[start:].strip():
            spans.append((start, len(text.rstrip())))
        return spans
