"""datatrove reader steps: web archives into raw-HTML documents, and a stage's Parquet output into documents.

Both shard their inputs across tasks by file (file ``i`` goes to rank ``i % world_size``), count
every document they emit as ``in:<source>`` (the independent side of the funnel's accounting), and
report progress. The archive reader turns unreadable stretches of a file into error records instead
of stopping, and counts (but does not emit) records that are not HTML responses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipeline.outcomes import OutcomeWriter, StageLayout
from pipeline.progress import TaskProgress
from pipeline.schema import attributes_of, row_to_doc
from pipeline.sources import InputFile
from pipeline.web_archives import ArchiveRecord, ReadError, iter_archive

HTML_TYPES = ("text/html", "application/xhtml+xml")
CRAWL_IN_NAME = re.compile(r"CC-MAIN-\d{4}-\d{2}")


def stable_id(*parts: str) -> str:
    """Same parts, same id, on every run: 32 hex chars of sha1 over the NUL-joined parts."""
    return hashlib.sha1("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def is_html(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";")[0].strip() in HTML_TYPES


class WarcDocumentReader(PipelineStep):
    """Reads WARC/ARC inputs; emits one document per HTML response, payload bytes in ``metadata['payload']``."""

    name = "📦 read web archives"
    type = "WINNOW"

    def __init__(self, inputs: Sequence[InputFile], layout: StageLayout) -> None:
        super().__init__()
        self.inputs = list(inputs)
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        with OutcomeWriter(self.layout, "read", kind="errors") as errors:
            for index, item in enumerate(self.inputs):
                if index % world_size != rank:
                    continue
                yield from self._read_file(item, errors, progress, rank)
                progress.next_input(item.size)
        progress.flush()

    def _read_file(
        self, item: InputFile, errors: OutcomeWriter, progress: TaskProgress, rank: int
    ) -> DocumentsPipeline:
        name = Path(item.path).name
        crawl = item.crawl or (m.group(0) if (m := CRAWL_IN_NAME.search(item.path)) else None)
        try:
            stream = fsspec.open(item.path, "rb").open()
        except OSError as exc:
            self._error(errors, rank, item, name, 0, "input_unreadable", f"{type(exc).__name__}: {exc}")
            return
        with stream:
            for entry in iter_archive(stream, item.path):
                if isinstance(entry, ReadError):
                    self._error(errors, rank, item, name, entry.offset, entry.reason, entry.detail)
                    progress.advance(docs=1, units=entry.offset)
                    continue
                self.stat_update(f"records:{entry.record_type}")
                if entry.record_type != "response" or entry.payload is None:
                    continue
                if not is_html(entry.content_type):
                    self.stat_update("skipped_non_html")
                    continue
                self.stat_update(f"in:{item.source}")
                progress.advance(docs=1, units=entry.offset)
                yield self._document(entry, item, name, crawl)

    def _document(self, rec: ArchiveRecord, item: InputFile, name: str, crawl: str | None) -> Document:
        meta = {
            "warc_file": item.path,
            "offset": rec.offset,
            "record_id": rec.record_id,
            "date": rec.date,
            "http_status": rec.http_status,
            "content_type": rec.content_type,
            "http_charset": rec.charset,
        }
        doc_id = stable_id(item.source, rec.record_id or f"{name}@{rec.offset}")
        metadata = {"source": item.source, "url": rec.url, "crawl": crawl, "meta": meta, "payload": rec.payload}
        return Document(text="", id=doc_id, metadata=metadata)

    def _error(
        self, errors: OutcomeWriter, rank: int, item: InputFile, name: str, offset: int, reason: str, detail: str
    ) -> None:
        self.stat_update(f"in:{item.source}")
        meta = {"warc_file": item.path, "offset": offset}
        doc = Document(
            text="",
            id=stable_id(item.source, f"{name}@{offset}", "error"),
            metadata={"source": item.source, "meta": meta},
        )
        errors.write(doc, rank, reason=reason, detail=detail)


class StageOutputReader(PipelineStep):
    """Reads the ``data/`` Parquet dataset of an earlier stage."""

    name = "📖 read stage output"
    type = "WINNOW"

    def __init__(self, files: Sequence[Path], layout: StageLayout) -> None:
        super().__init__()
        self.files = [Path(f) for f in files]
        self.layout = layout

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        for index, path in enumerate(self.files):
            if index % world_size != rank:
                continue
            parquet = pq.ParquetFile(path)
            names = tuple(attributes_of(parquet.schema_arrow))
            rows_done = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    doc = row_to_doc(row, names)
                    self.stat_update(f"in:{doc.metadata['source']}")
                    rows_done += 1
                    progress.advance(docs=1, units=rows_done)
                    yield doc
            progress.next_input(parquet.metadata.num_rows)
        progress.flush()
