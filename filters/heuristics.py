"""FineWeb's heuristic filters from datatrove, wired from the manifest, each writing its rejects.

The order is FineWeb's: URL filter (:mod:`winnow.filters.url_filter`, run before extraction in the extract
stage), language, Gopher
repetition, Gopher quality, C4 quality, FineWeb quality. Each filter is datatrove's own class with
the manifest's keyword arguments (Gopher repetition computes its n-gram statistics faster, with the same
results: :mod:`winnow.filters.gopher_repetition`); winnow adds these: every dropped document goes to the
stage's ``rejects`` with ``<filter>:<datatrove reason>`` and a ``detail`` that gives the measured value
against the threshold it crossed (``dup_line_frac=0.412>0.3``, ``n_words=12<50``), the word tokenizer is
the regex one from :mod:`winnow.filters.word_tokenizer` unless the manifest asks for spaCy, and WARC
revisit stubs (:mod:`winnow.pipeline.revisits`) pass untouched to the dedup stage that resolves them.
With ``multilingual``, each document is judged by its own language's FineWeb-2 settings instead
(:mod:`winnow.filters.multilingual`). Benchmark decontamination (:mod:`winnow.filters.decontam`) and PII
replacement (:mod:`winnow.filters.pii`), when configured, come last.

The measured value is the one datatrove's own check computed, not a recomputation: each threshold
attribute of the filter is replaced by a :class:`FloatThreshold` / :class:`IntThreshold` (equal to it) that
notes the value it is compared with, so the last comparison before a ``(False, reason)`` is the one that
decided it. Reasons decided without a threshold (``empty``, C4's ``lorem_ipsum`` and ``curly_bracket``)
say what was found and where.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_sentences, split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer

from winnow.filters.gopher_repetition import GopherRepetitionFast
from winnow.filters.language import LanguageSelector
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig
from winnow.pipeline.outcomes import ErrorsAsRecords, OutcomeWriter, StageLayout
from winnow.pipeline.revisits import PassRevisitStubs

PUNCTUATION = "".join(PUNCTUATION_SET)  # a token that strips to nothing is punctuation only
DETAIL_KEY = "filter_detail"  # set on a dropped document's metadata; the rejects writer moves it to ``detail``
RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def word_tokenizer(config: HeuristicsConfig) -> WordTokenizer | str:
    """What the filters get as ``language``: a tokenizer instance, or the language code for spaCy."""
    return RegexWordTokenizer("en") if config.tokenizer == "fast" else "en"


@dataclass
class Reading:
    """One comparison of a measured value with a threshold: ``value relation threshold`` held."""

    value: float
    relation: str
    threshold: float


class Readings:
    """The last comparison a filter made against one of its thresholds (reset before each document)."""

    def __init__(self) -> None:
        self.last: Reading | None = None


class _Watched:
    """Comparisons of a threshold that note the other operand (the measured value) in ``readings``.

    Python tries a subclass's reflected method first, so ``value > threshold`` reaches ``__lt__`` here;
    ``__array_ufunc__ = None`` makes numpy scalars defer to it too. The relation is noted from the
    value's side, and the result is the plain comparison datatrove would have made.
    """

    __array_ufunc__ = None
    readings: Readings | None = None

    def _plain(self) -> float:
        raise NotImplementedError

    def _note(self, value: Any, relation: str) -> bool:
        held = RELATIONS[relation](value, self._plain())
        if held and self.readings is not None:
            self.readings.last = Reading(value, relation, self._plain())
        return held

    def __lt__(self, other: Any) -> bool:  # threshold < value
        return self._note(other, ">")

    def __gt__(self, other: Any) -> bool:
        return self._note(other, "<")

    def __le__(self, other: Any) -> bool:
        return self._note(other, ">=")

    def __ge__(self, other: Any) -> bool:
        return self._note(other, "<=")


class FloatThreshold(_Watched, float):
    """A float threshold that notes what it is compared with."""

    def _plain(self) -> float:
        return float(self)


class IntThreshold(_Watched, int):
    """An int threshold that notes what it is compared with."""

    def _plain(self) -> float:
        return int(self)


def watched(value: Any, readings: Readings) -> Any:
    """``value`` with every number in it (alone, or in ``(n, threshold)`` pairs) watched by ``readings``."""
    if isinstance(value, (list, tuple)):
        return tuple((n, watched(t, readings)) for n, t in value)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    threshold = IntThreshold(value) if isinstance(value, int) else FloatThreshold(value)
    threshold.readings = readings
    return threshold


def shown(reading: Reading) -> str:
    """``value<relation>threshold`` with the fewest digits (3 at least) that keep the relation true."""
    value, threshold = reading.value, reading.threshold
    if float(value).is_integer() and float(threshold).is_integer():
        return f"{int(value)}{reading.relation}{int(threshold)}"
    holds = RELATIONS[reading.relation]
    for digits in range(3, 18):
        v, t = f"{value:.{digits}g}", f"{threshold:.{digits}g}"
        if holds(float(v), float(t)):
            return f"{v}{reading.relation}{t}"
    return f"{value!r}{reading.relation}{threshold!r}"


def _quoted_line(text: str, max_chars: int = 80) -> str:
    line = text.strip()
    return repr(line if len(line) <= max_chars else line[: max_chars - 1] + "…")


class ExplainsRejects:
    """Mixin for a datatrove filter: a dropped document gets ``metadata[DETAIL_KEY]``, the reason's detail.

    ``thresholds`` names the filter's threshold attributes; ``measures`` maps a reason to the name of
    the quantity its threshold bounds (default: the reason itself); :meth:`unmeasured` describes the
    reasons that no threshold decides.
    """

    thresholds: tuple[str, ...] = ()
    measures: ClassVar[dict[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.readings = Readings()
        for name in self.thresholds:
            setattr(self, name, watched(getattr(self, name), self.readings))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        self.readings.last = None
        verdict = super().filter(doc)  # type: ignore[misc]
        if isinstance(verdict, tuple) and not verdict[0]:
            doc.metadata[DETAIL_KEY] = self.explain(doc, verdict[1])
        return verdict

    def measure(self, reason: str) -> str:
        """The name of what ``reason``'s threshold bounds."""
        return self.measures.get(reason, reason)

    def unmeasured(self, doc: Document, reason: str) -> str | None:
        """Detail of a reason decided without a threshold; None when ``reason`` is not one."""
        return None

    def explain(self, doc: Document, reason: str) -> str:
        """``<measure>=<value><relation><threshold>``, or what was found for a reason without a threshold."""
        found = self.unmeasured(doc, reason)
        if found is not None:
            return found
        if self.readings.last is None:
            return f"{reason}: no measured value"
        return f"{self.measure(reason)}={shown(self.readings.last)}"


class DetailedOutcomeWriter(OutcomeWriter):
    """The rejects writer of a filter that explains itself: ``detail`` comes from ``metadata[DETAIL_KEY]``."""

    def write(self, doc: Document, rank: int = 0, reason: str | None = None, detail: str | None = None) -> None:
        found = doc.metadata.pop(DETAIL_KEY, None)
        super().write(doc, rank, reason=reason, detail=detail if detail is not None else found)


class GopherRepetitionExplained(ExplainsRejects, GopherRepetitionFast):
    """datatrove's GopherRepetitionFilter (n-gram statistics as :class:`GopherRepetitionFast` computes them) with
    details: duplicate line/paragraph shares and n-gram char shares."""

    thresholds = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")
    thresholds += ("top_n_grams", "dup_n_grams")

    def measure(self, reason: str) -> str:
        if top := re.fullmatch(r"top_(\d+)_gram", reason):
            return f"top_{top[1]}_gram_char_frac"
        if dup := re.fullmatch(r"duplicated_(\d+)_n_grams", reason):
            return f"dup_{dup[1]}_gram_char_frac"
        return reason

    def unmeasured(self, doc: Document, reason: str) -> str | None:
        return "chars=0" if reason == "empty" else None


class GopherQualityByWords(GopherQualityFilter):
    """datatrove's GopherQualityFilter with Gopher's alpha-word share taken over words.

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


class GopherQualityExplained(ExplainsRejects, GopherQualityByWords):
    """Gopher quality (alpha share over words) with details: word counts and lengths, symbol and line shares."""

    thresholds = ("min_doc_words", "max_doc_words", "min_avg_word_length", "max_avg_word_length")
    thresholds += ("max_symbol_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio")
    thresholds += ("max_non_alpha_words_ratio", "min_alpha_words_ratio", "min_stop_words")
    measures: ClassVar[dict[str, str]] = {
        "gopher_short_doc": "n_words",
        "gopher_long_doc": "n_words",
        "gopher_below_avg_threshold": "mean_word_length",
        "gopher_above_avg_threshold": "mean_word_length",
        "gopher_too_many_hashes": "hash_word_ratio",
        "gopher_too_many_ellipsis": "ellipsis_word_ratio",
        "gopher_too_many_bullets": "bullet_line_frac",
        "gopher_too_many_end_ellipsis": "end_ellipsis_line_frac",
        "gopher_below_alpha_threshold": "alpha_word_frac",
        "gopher_enough_stop_words": "stop_words",
    }


class C4QualityExplained(ExplainsRejects, C4QualityFilter):
    """datatrove's C4QualityFilter with details: the sentence count, or the line that held the phrase.

    C4 counts each line it looks at (stat ``line-total``); that count is the number of the line
    that made it drop the whole document.
    """

    thresholds = ("min_num_sentences",)
    measures: ClassVar[dict[str, str]] = {"too_few_sentences": "n_sentences"}
    phrases: ClassVar[dict[str, str]] = {"lorem_ipsum": "lorem ipsum", "curly_bracket": "{"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines_seen = 0

    def stat_update(self, *labels: str, value: int = 1, unit: str | None = None) -> None:
        if "line-total" in labels:
            self.lines_seen += 1
        super().stat_update(*labels, value=value, unit=unit)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        self.lines_seen = 0
        return super().filter(doc)

    def unmeasured(self, doc: Document, reason: str) -> str | None:
        if reason not in self.phrases:
            return None
        unit = "line" if self.split_paragraph else "sentence"
        lines = doc.text.splitlines() if self.split_paragraph else split_into_sentences(doc.text, self.language)
        line = lines[self.lines_seen - 1] if 0 < self.lines_seen <= len(lines) else ""
        return f"{self.phrases[reason]!r} in {unit} {self.lines_seen}: {_quoted_line(line)}"


class FineWebQualityExplained(ExplainsRejects, FineWebQualityFilter):
    """datatrove's FineWebQualityFilter with details: punctuation, short-line, duplicate-char and list shares."""

    thresholds = ("line_punct_thr", "short_line_threshold", "char_duplicates_ratio", "new_line_ratio")
    measures: ClassVar[dict[str, str]] = {"list_ratio": "newline_word_ratio"}

    def unmeasured(self, doc: Document, reason: str) -> str | None:
        return "non_blank_lines=0" if reason == "empty" else None


class GuardedGopherRepetition(PassRevisitStubs, ErrorsAsRecords, GopherRepetitionExplained):
    """datatrove's GopherRepetitionFilter; a per-document exception becomes an error record."""


class GuardedGopherQuality(PassRevisitStubs, ErrorsAsRecords, GopherQualityExplained):
    """datatrove's GopherQualityFilter (alpha share over words); a per-document exception becomes an error record."""


class GuardedC4Quality(PassRevisitStubs, ErrorsAsRecords, C4QualityExplained):
    """datatrove's C4QualityFilter; a per-document exception becomes an error record."""


class GuardedFineWebQuality(PassRevisitStubs, ErrorsAsRecords, FineWebQualityExplained):
    """datatrove's FineWebQualityFilter; a per-document exception becomes an error record."""


# FineWeb's order; the name is both the manifest key and the reject-reason prefix
FILTERS: tuple[tuple[str, type[BaseFilter]], ...] = (
    ("gopher_repetition", GuardedGopherRepetition),
    ("gopher_quality", GuardedGopherQuality),
    ("c4", GuardedC4Quality),
    ("fineweb", GuardedFineWebQuality),
)


def heuristic_filters(config: HeuristicsConfig, language: LanguageConfig, layout: StageLayout) -> list[PipelineStep]:
    """The language selection and the enabled filters in FineWeb's order (with ``multilingual``: per document,
    FineWeb-2's for its language), then decontamination and PII replacement when configured."""
    steps: list[PipelineStep] = []
    if config.multilingual is not None:
        from winnow.filters.multilingual import multilingual_steps  # it imports this module

        steps += multilingual_steps(config, language, layout)
    else:
        if config.language:
            writer = DetailedOutcomeWriter(layout, "language")
            steps.append(LanguageSelector(language.keep, language.min_score, writer))
        tokenizer = word_tokenizer(config)
        for name, filter_class in FILTERS:
            settings = getattr(config, name)
            if settings.enabled:
                writer = DetailedOutcomeWriter(layout, name)
                steps.append(filter_class(exclusion_writer=writer, language=tokenizer, **settings.kwargs()))
    if config.decontam is not None:
        from winnow.filters.decontam import DecontamFilter  # it imports this module (DETAIL_KEY)

        steps.append(DecontamFilter(config.decontam, DetailedOutcomeWriter(layout, "decontam")))
    if config.pii is not None and config.pii.enabled:
        from winnow.filters.pii import PiiScrubber

        steps.append(PiiScrubber(config.pii))
    return steps
