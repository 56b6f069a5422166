"""FineWeb's heuristic filters from datatrove, wired from the manifest, each writing its rejects.

The order is FineWeb's: URL filter (:mod:`filters.url_filter`, run before extraction in the extract
stage), language, Gopher
repetition, Gopher quality, C4 quality, FineWeb quality. Each filter is datatrove's own class with
the manifest's keyword arguments; winnow adds two things: every dropped document goes to the
stage's ``rejects`` with ``<filter>:<datatrove reason>``, and the word tokenizer is the regex one
from :mod:`filters.word_tokenizer` unless the manifest asks for spaCy.
"""

from __future__ import annotations

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.word_tokenizers import WordTokenizer

from filters.language import LanguageSelector
from filters.word_tokenizer import RegexWordTokenizer
from pipeline.manifest import HeuristicsConfig, LanguageConfig
from pipeline.outcomes import OutcomeWriter, StageLayout


def word_tokenizer(config: HeuristicsConfig) -> WordTokenizer | str:
    """What the filters get as ``language``: a tokenizer instance, or the language code for spaCy."""
    return RegexWordTokenizer("en") if config.tokenizer == "fast" else "en"


def heuristic_filters(config: HeuristicsConfig, language: LanguageConfig, layout: StageLayout) -> list[PipelineStep]:
    """The enabled filters in FineWeb's order."""
    steps: list[PipelineStep] = []
    tokenizer = word_tokenizer(config)
    if config.language:
        steps.append(LanguageSelector(language.keep, language.min_score, OutcomeWriter(layout, "language")))
    if config.gopher_repetition.enabled:
        kwargs = config.gopher_repetition.kwargs()
        kwargs["top_n_grams"] = tuple(tuple(x) for x in kwargs["top_n_grams"])
        kwargs["dup_n_grams"] = tuple(tuple(x) for x in kwargs["dup_n_grams"])
        steps.append(
            GopherRepetitionFilter(
                exclusion_writer=OutcomeWriter(layout, "gopher_repetition"), language=tokenizer, **kwargs
            )
        )
    if config.gopher_quality.enabled:
        steps.append(
            GopherQualityFilter(
                exclusion_writer=OutcomeWriter(layout, "gopher_quality"),
                language=tokenizer,
                **config.gopher_quality.kwargs(),
            )
        )
    if config.c4.enabled:
        steps.append(
            C4QualityFilter(exclusion_writer=OutcomeWriter(layout, "c4"), language=tokenizer, **config.c4.kwargs())
        )
    if config.fineweb.enabled:
        steps.append(
            FineWebQualityFilter(
                exclusion_writer=OutcomeWriter(layout, "fineweb"), language=tokenizer, **config.fineweb.kwargs()
            )
        )
    return steps
