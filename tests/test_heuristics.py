"""The heuristics filters: wiring from the manifest, and a failing filter turning into error records."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document

from winnow.filters.heuristics import GuardedGopherQuality, heuristic_filters
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout


class BrokenOnMarker(RegexWordTokenizer):
    """A tokenizer that fails on one document, as a filter can on input nobody foresaw."""

    def word_tokenize(self, text: str) -> list[str]:
        if "EXPLODE" in text:
            raise ValueError("tokenizer failed")
        return super().word_tokenize(text)


def test_exception_in_a_filter_is_an_error_record_and_the_task_goes_on(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "heuristics", 1 << 30)
    prose = "The quick brown fox jumps over the lazy dog and the cat. " * 20
    docs = [
        Document(text=prose, id="good-1", metadata={"source": "s"}),
        Document(text="EXPLODE " + prose, id="bad", metadata={"source": "s"}),
        Document(text=prose, id="good-2", metadata={"source": "s"}),
    ]
    step = GuardedGopherQuality(exclusion_writer=OutcomeWriter(layout, "gopher_quality"), language=BrokenOnMarker())
    kept = [d.id for d in step.run(iter(docs), rank=0)]

    assert kept == ["good-1", "good-2"]
    [errors_file] = (tmp_path / "stages" / "heuristics" / "errors").glob("*.parquet")
    [row] = pq.read_table(errors_file).to_pylist()
    assert row["id"] == "bad" and row["reason"] == "gopher_quality:exception"
    assert "ValueError: tokenizer failed" in row["detail"]
    assert not (tmp_path / "stages" / "heuristics" / "rejects").exists()


def test_filters_follow_the_manifest(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "heuristics", 1 << 30)
    config = HeuristicsConfig.model_validate({"c4": False, "gopher_quality": {"min_doc_words": 7}})
    steps = heuristic_filters(config, LanguageConfig(), layout)
    names = [type(s).__name__ for s in steps]
    assert names == ["LanguageSelector", "GuardedGopherRepetition", "GuardedGopherQuality", "GuardedFineWebQuality"]
    assert steps[2].min_doc_words == 7


WIKIPEDIA_PROSE = (
    "Valkyria Chronicles III is a 2011 tactical role-playing video game developed by Sega and Media.Vision "
    "for the PlayStation Portable. Released in January 2011 in Japan, it is the third game in the series. "
    "The game sold 102,779 copies in its first week (April 27 – May 3, 2011), placing it at No. 2 on the "
    "Media Create chart, behind Monster Hunter Portable 3rd; by the end of 2011 it had sold 164,000 copies. "
    "Its score, composed by Hitoshi Sakimoto (who also scored the first two games), was released on 20 "
    "January 2011, with 34 tracks on two discs."
)
NUMBER_TABLE = (
    "Year Sales Share\n"
    + "\n".join(f"{2000 + i} {1000 * i + 17:,} {10 + i}.{i % 7}% ({i})" for i in range(40))
    + "\nTotal of the sales by year in the table above, for the record."
)


def test_alpha_ratio_counts_words_not_punctuation_by_default() -> None:
    """Encyclopedic prose with dates and figures passes Gopher's 80%-of-words rule; a table of numbers does not.

    Counted over datatrove's tokens (commas, brackets and full stops as words) the same prose falls under 0.8.
    """
    settings = HeuristicsConfig().gopher_quality.kwargs()
    assert settings["alpha_ratio_counts"] == "words"
    by_words = GuardedGopherQuality(language=RegexWordTokenizer(), **settings)
    by_tokens = GuardedGopherQuality(language=RegexWordTokenizer(), **{**settings, "alpha_ratio_counts": "tokens"})
    prose, table = Document(text=WIKIPEDIA_PROSE, id="prose"), Document(text=NUMBER_TABLE, id="table")

    assert by_words.filter(prose) is True
    assert by_words.filter(table) == (False, "gopher_below_alpha_threshold")
    assert by_tokens.filter(prose) == (False, "gopher_below_alpha_threshold")
    assert by_tokens.filter(table) == (False, "gopher_below_alpha_threshold")
