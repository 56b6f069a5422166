"""The heuristics filters: wiring from the manifest, and a failing filter turning into error records."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document

from filters.heuristics import GuardedGopherQuality, heuristic_filters
from filters.word_tokenizer import RegexWordTokenizer
from pipeline.manifest import HeuristicsConfig, LanguageConfig
from pipeline.outcomes import OutcomeWriter, StageLayout


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
