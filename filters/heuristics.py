"""FineWeb's heuristic filters from datatrove, wired from the manifest, each writing its rejects.

The order is FineWeb's: URL filter (:mod:`winnow.filters.url_filter`, run before extraction in the extract
stage), language, Gopher
repetition, Gopher quality, C4 quality, FineWeb quality. Each filter is datatrove's own class with
the manifest's keyword arguments; winnow adds two things: every dropped document goes to the
stage's ``rejects`` with ``<filter>:<datatrove reason>``, the word tokenizer is the regex one
from :mod:`winnow.filters.word_tokenizer` unless the manifest asks for spaCy, and WARC revisit stubs
(:mod:`winnow.pipeline.revisits`) pass untouched to the dedup stage that resolves them.
"""

from __future__ import annotations

from typing import Any, Literal

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer

from winnow.filters.language import LanguageSelector
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig
from winnow.pipeline.outcomes import ErrorsAsRecords, OutcomeWriter, StageLayout
from winnow.pipeline.revisits import PassRevisitStubs

PUNCTUATION = "".join(PUNCTUATION_SET)  # a token that strips to nothing is punctuation only


def word_tokenizer(config: HeuristicsConfig) -> WordTokenizer | str:
    """What the filters get as ``language``: a tokenizer instance, or the language code for spaCy."""
    return RegexWordTokenizer("en") if config.tokenizer == "fast" else "en"


class GuardedGopherRepetition(PassRevisitStubs, ErrorsAsRecords, GopherRepetitionFilter):
    """datatrove's GopherRepetitionFilter; a per-document exception becomes an error record."""


class GuardedGopherQuality(PassRevisitStubs, ErrorsAsRecords, GopherQualityFilter):
    """datatrove's GopherQualityFilter; a per-document exception becomes an error record.

    Gopher keeps a document when 80% of its *words* contain a letter. datatrove divides by every token,
    punctuation marks included, so ordinary prose with numbers and commas falls under 0.8 (it drops 86%
    of the WikiText-2 articles). With ``alpha_ratio_counts="words"`` (the default) tokens made only of
    punctuation are left out of the ratio, as datatrove already does for the word count and mean word
    length; ``"tokens"`` keeps datatrove's rule.
    """

    def __init__(
        self,
        *args: Any,
        alpha_ratio_counts: Literal["words", "tokens"] = "words",
        max_non_alpha_words_ratio: float | None = 0.8,
        **kwargs: Any,
    ) -> None:
        by_words = alpha_ratio_counts == "words"
        super().__init__(*args, max_non_alpha_words_ratio=None if by_words else max_non_alpha_words_ratio, **kwargs)
        self.min_alpha_words_ratio = max_non_alpha_words_ratio if by_words else None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """datatrove's checks, then the share of words (not punctuation tokens) that contain a letter."""
        verdict = super().filter(doc)
        if verdict is not True or not self.min_alpha_words_ratio:
            return verdict
        words = [w for w in split_into_words(doc.text, self.language) if w.strip(PUNCTUATION)]
        if words and sum(any(c.isalpha() for c in w) for w in words) / len(words) < self.min_alpha_words_ratio:
            return False, "gopher_below_alpha_threshold"
        return True


class GuardedC4Quality(PassRevisitStubs, ErrorsAsRecords, C4QualityFilter):
    """datatrove's C4QualityFilter; a per-document exception becomes an error record."""


class GuardedFineWebQuality(PassRevisitStubs, ErrorsAsRecords, FineWebQualityFilter):
    """datatrove's FineWebQualityFilter; a per-document exception becomes an error record."""


# FineWeb's order; the name is both the manifest key and the reject-reason prefix
FILTERS: tuple[tuple[str, type[BaseFilter]], ...] = (
    ("gopher_repetition", GuardedGopherRepetition),
    ("gopher_quality", GuardedGopherQuality),
    ("c4", GuardedC4Quality),
    ("fineweb", GuardedFineWebQuality),
)


def heuristic_filters(config: HeuristicsConfig, language: LanguageConfig, layout: StageLayout) -> list[PipelineStep]:
    """The enabled filters in FineWeb's order."""
    steps: list[PipelineStep] = []
    if config.language:
        steps.append(LanguageSelector(language.keep, language.min_score, OutcomeWriter(layout, "language")))
    tokenizer = word_tokenizer(config)
    for name, filter_class in FILTERS:
        settings = getattr(config, name)
        if settings.enabled:
            writer = OutcomeWriter(layout, name)
            steps.append(filter_class(exclusion_writer=writer, language=tokenizer, **settings.kwargs()))
    return steps
