"""The mix's phases that are not document pipelines (tokenizer, corpus, swarm plan, fit, final writer): a shared
step shape.

Each is a datatrove step that reads nothing from the pipeline, does its work (``work``), times it, and marks
its progress file done, so the runner's progress bar and resume treat it like any task. A
:class:`OneTaskStep` works once; a :class:`TaskStep` runs on every task of its phase and is told its rank.
Their JSON records (plan, summary, run records, report, final manifest) are written by
:func:`write_record`, atomically.
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress


class OneTaskStep(PipelineStep):
    """Base of a one-task mix phase: subclasses implement :meth:`work`."""

    type = "MIX"

    def __init__(self, config: MixConfig, layout: StageLayout, threads: int = 1) -> None:
        """``threads``: what the work may use (DuckDB), usually the executor's workers."""
        super().__init__()
        self.config = config
        self.layout = layout
        self.threads = threads

    def work(self, progress: TaskProgress) -> None:
        """Do the phase's work; ``progress`` may count documents as they are written."""
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        progress = TaskProgress(self.layout.progress_dir, rank)
        with self.track_time():
            self.work(progress)
        progress.advance(units=1)
        progress.flush()
        return
        yield  # a generator that yields nothing


class TaskStep(OneTaskStep):
    """Base of a mix phase that runs on all tasks: subclasses implement :meth:`work_task`."""

    def work_task(self, progress: TaskProgress, rank: int, world_size: int) -> None:
        """Do task ``rank``'s share of the phase (of ``world_size`` tasks), counting its own progress units."""
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        progress = TaskProgress(self.layout.progress_dir, rank)
        with self.track_time():
            self.work_task(progress, rank, world_size)
        progress.flush()
        return
        yield  # a generator that yields nothing
