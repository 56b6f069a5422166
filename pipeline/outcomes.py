"""Where a stage's documents end up: its output, its rejects, its errors, and the task bookkeeping around them.

Every document that enters a stage leaves through exactly one of three doors, each a Parquet
dataset under ``stages/<stage>/``:

- ``data/``: :class:`DocumentWriter`, the last step of a stage's pipeline;
- ``rejects/``: an :class:`OutcomeWriter` with a ``reason`` (datatrove filters get one as their
  ``exclusion_writer``; the reason is the filter's name and its own reason, e.g. ``gopher_quality:gopher_short_doc``);
- ``errors/``: an :class:`OutcomeWriter` of kind ``errors`` with the exception text as ``detail``.

:class:`BeginTask` is the first step of every stage pipeline: it removes the files an interrupted
attempt of the same task left behind, so a rerun replaces instead of duplicating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.pipeline.parquet_sink import ParquetSink, remove_rank_files
from winnow.pipeline.schema import doc_to_row, document_schema, outcome_schema

DATASETS = ("data", "rejects", "errors")


@dataclass(frozen=True)
class StageLayout:
    """Paths and output settings of one stage of one run (picklable; shipped to every task)."""

    run_dir: Path
    stage: str
    target_bytes: int
    attributes: Mapping[str, pa.DataType] = field(default_factory=dict)
    phase: str | None = None  # stages that run in several passes (dedup) keep each pass's logs apart

    @property
    def stage_dir(self) -> Path:
        return self.run_dir / "stages" / self.stage

    @property
    def logs_dir(self) -> Path:
        logs = self.run_dir / "logs" / self.stage
        return logs / self.phase if self.phase else logs

    def for_phase(self, phase: str) -> StageLayout:
        """The same stage, with the logs and progress of one of its phases."""
        return replace(self, phase=phase)

    @property
    def progress_dir(self) -> Path:
        return self.logs_dir / "progress"

    def dataset_dir(self, dataset: str) -> Path:
        return self.stage_dir / dataset

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self.attributes)


ERROR_KEY = "winnow_error"


class OutcomeWriter:
    """A datatrove-compatible exclusion writer that records rejected or errored documents.

    Used as ``with writer: writer.write(doc, rank)``; datatrove filters put their reason in
    ``doc.metadata["filter_reason"]``; winnow steps pass ``reason`` and ``detail`` directly. A
    document that carries ``metadata[ERROR_KEY]`` (see :class:`ErrorsAsRecords`) goes to the errors
    dataset whatever the writer's kind.
    """

    def __init__(self, layout: StageLayout, step: str, kind: Literal["rejects", "errors"] = "rejects") -> None:
        self.layout = layout
        self.step = step
        self.kind = kind
        self._sinks: dict[str, ParquetSink] = {}

    def __enter__(self) -> OutcomeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for sink in self._sinks.values():
            sink.__exit__(*exc)  # publishes the shard, or drops it if the task failed
        self._sinks = {}

    def write(self, doc: Document, rank: int = 0, reason: str | None = None, detail: str | None = None) -> None:
        """Record ``doc``; ``reason`` defaults to the datatrove filter's reason, prefixed by the step name."""
        kind = self.kind
        if (error := doc.metadata.pop(ERROR_KEY, None)) is not None:
            kind, reason, detail = "errors", f"{self.step}:exception", error
            doc.metadata.pop("filter_reason", None)
        if reason is None:
            reason = f"{self.step}:{doc.metadata.pop('filter_reason', 'filtered')}"
        if kind not in self._sinks:
            schema = outcome_schema(self.layout.attributes)
            folder = self.layout.dataset_dir(kind)
            self._sinks[kind] = ParquetSink(folder, self.step, schema, rank, self.layout.target_bytes)
        row: dict[str, Any] = doc_to_row(doc, self.layout.attribute_names)
        row.update(stage=self.layout.stage, reason=reason, detail=detail)
        self._sinks[kind].write(row)


class ErrorsAsRecords:
    """Mixin for datatrove filters: an exception on one document makes it an error record, not a failed task.

    The document is dropped with ``metadata[ERROR_KEY]`` set, so the filter's :class:`OutcomeWriter`
    files it under ``errors/`` with the exception text (reason ``<step>:exception``).
    """

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        try:
            return super().filter(doc)  # type: ignore[misc]
        except Exception as exc:
            doc.metadata[ERROR_KEY] = f"{type(exc).__name__}: {exc}"
            return False, "exception"


class BeginTask(PipelineStep):
    """First step of a stage: clear what an earlier attempt of this task wrote, then pass data on."""

    name = "🧹 begin task"
    type = "WINNOW"

    def __init__(self, layout: StageLayout, datasets: tuple[str, ...] = DATASETS) -> None:
        """``datasets``: the folders of the stage this phase writes per task (and so clears)."""
        super().__init__()
        self.layout = layout
        self.datasets = datasets

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for dataset in self.datasets:
            remove_rank_files(self.layout.dataset_dir(dataset), rank)
        if data:
            yield from data


class DocumentWriter(PipelineStep):
    """Last step of a stage: write every document that reached it to the stage's ``data/`` dataset (or another)."""

    name = "💽 write documents"
    type = "WINNOW"

    def __init__(self, layout: StageLayout, dataset: str = "data") -> None:
        super().__init__()
        self.layout = layout
        self.dataset = dataset

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        schema = document_schema(self.layout.attributes)
        names = self.layout.attribute_names
        sink = ParquetSink(self.layout.dataset_dir(self.dataset), "part", schema, rank, self.layout.target_bytes)
        with sink:
            for doc in data:
                with self.track_time():
                    sink.write(doc_to_row(doc, names))
                self.stat_update("written")
                yield doc
