"""Language identification with fastText: annotate every document, select by language later.

:class:`LanguageAnnotator` writes ``language`` and ``language_score`` (the top label of a fastText
LID model, :mod:`winnow.filters.fasttext_models`). The model comes by path from the manifest
(``lid.176.bin``, GlotLID...); by default it is the quantised ``lid.176.ftz`` that ships with winnow,
so nothing is downloaded. Models are loaded once per process and shared by every step that asks for
the same path. :class:`LanguageSelector` is the cheap, separate keep/drop decision over those columns.
(The check before extraction, on a page's visible text, runs in the extraction worker:
:mod:`winnow.extract.html_text`.)
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext
from winnow.pipeline.outcomes import ErrorsAsRecords, OutcomeWriter, StageLayout
from winnow.pipeline.revisits import is_revisit_stub

DETAIL_KEY = "filter_detail"  # the same key as the heuristic filters' rejects writer reads


class LanguageAnnotator(PipelineStep):
    """Sets ``language`` / ``language_score`` on every document."""

    name = "🌍 language ID (fastText)"
    type = "WINNOW"

    def __init__(self, model_path: str | None, layout: StageLayout) -> None:
        super().__init__()
        self.model_path = str(model_path or default_lid_model())
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        model = load_fasttext(self.model_path)
        with OutcomeWriter(self.layout, "language_id", kind="errors") as errors:
            for doc in data:
                if is_revisit_stub(doc):  # no text of its own
                    yield doc
                    continue
                try:
                    with self.track_time():
                        language, score = identify(model, doc.text)
                except Exception as exc:
                    errors.write(doc, rank, reason="language_id_failed", detail=f"{type(exc).__name__}: {exc}")
                    continue
                doc.metadata["language"] = language
                doc.metadata["language_score"] = score
                self.stat_update(f"lang_{language}")
                yield doc


class LanguageSelector(ErrorsAsRecords, BaseFilter):
    """Keeps documents whose annotated language is in ``keep`` with score >= ``min_score``; a dropped
    document carries its detail (``language=de not in en``, ``language_score=0.412<0.65``) under
    :data:`DETAIL_KEY` for a rejects writer that moves it to ``detail``."""

    name = "🌍 language selection"

    def __init__(self, keep: list[str] | None, min_score: float, exclusion_writer: OutcomeWriter) -> None:
        super().__init__(exclusion_writer)
        self.keep = set(keep) if keep else None
        self.min_score = min_score

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if is_revisit_stub(doc):  # no text, no language: dedup resolves it
            return True
        language = doc.metadata.get("language")
        score = doc.metadata.get("language_score") or 0.0
        if self.keep is not None and language not in self.keep:
            doc.metadata[DETAIL_KEY] = f"language={language} not in {','.join(sorted(self.keep))}"
            return False, "other_language"
        if score < self.min_score:
            doc.metadata[DETAIL_KEY] = f"language_score={score:.3f}<{self.min_score}"
            return False, "low_language_score"
        return True
