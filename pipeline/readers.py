"""datatrove reader steps: web archives into raw-HTML documents; stage outputs and JSONL/Parquet sources into documents.

Both shard their inputs across tasks by file (file ``i`` goes to rank ``i % world_size``), read one
file per run of the pipeline when the executor cuts a task into units (:class:`UnitReader`), count
every document they emit as ``in:<source>`` (the independent side of the funnel's accounting), and
report progress. The archive reader turns unreadable stretches of a file into error records instead
of stopping, and counts (but does not emit) records that are not HTML responses. Its counters, per
source, are what :func:`winnow.pipeline.funnel.archive_funnel` checks against the stage's Parquet:
``records_in:<source>`` for every entry read (a record, an unreadable stretch, a file that cannot be
opened), ``skipped:<source>:<record type>:<content type>`` where a record is skipped, and
``unreadable:<source>`` where an error record is written.

A URL that is a Wayback Machine address (:mod:`winnow.filters.archive_urls`) becomes the URL it wraps;
the address it was fetched from is kept in ``meta.archive_url``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.extract.web_archives import ArchiveRecord, ReadError, iter_archive
from winnow.filters.archive_urls import unwrap
from winnow.pipeline.commits import UnitReader
from winnow.pipeline.manifest import DocumentSource
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.remote import remote_errors
from winnow.pipeline.schema import CORE_COLUMNS, attributes_of, row_to_doc
from winnow.pipeline.sources import InputFile

# what reading a damaged or mislabelled file can raise (gzip/zstd/xz streams, Parquet, JSON decoding), or a
# remote one whose retries are spent (pipeline/remote.py)
READ_ERRORS = (OSError, ValueError, EOFError, zlib.error, lzma.LZMAError, pa.ArrowException, *remote_errors())

HTML_TYPES = ("text/html", "application/xhtml+xml")
CRAWL_IN_NAME = re.compile(r"CC-MAIN-\d{4}-\d{2}")


def stable_id(*parts: str) -> str:
    """Same parts, same id, on every run: 32 hex chars of sha1 over the NUL-joined parts."""
    return hashlib.sha1("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def stable_fraction(*parts: str) -> float:
    """Same parts, same number in [0, 1) on every run: a hash draw for seeded, id-based sampling."""
    digest = hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_html(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";")[0].strip() in HTML_TYPES


def skip_content_type(record: ArchiveRecord) -> str:
    """The media type a skipped record is counted under: its HTTP body's when it has one, else the record's
    own (``text/dns``, ``application/warc-fields``...), lower case without parameters; ``-`` if none."""
    declared = record.content_type if record.http_status is not None else record.block_type
    return (declared or "").split(";")[0].strip().lower()[:100] or "-"


class WarcDocumentReader(UnitReader, PipelineStep):
    """Reads WARC/ARC inputs; emits one document per HTML response, payload bytes in ``metadata['payload']``."""

    name = "📦 read web archives"
    type = "WINNOW"

    def __init__(self, inputs: Sequence[InputFile], layout: StageLayout) -> None:
        super().__init__()
        self.inputs = list(inputs)
        self.layout = layout

    def unit_inputs(self) -> list[str]:
        return [item.path for item in self.inputs]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        with OutcomeWriter(self.layout, "read", kind="errors") as errors:
            for index, item in enumerate(self.inputs):
                if not self.reads(index, rank, world_size):
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
        except (OSError, *remote_errors()) as exc:
            self.stat_update(f"records_in:{item.source}")
            self._error(errors, rank, item, name, 0, "input_unreadable", _why(exc))
            return
        offset: int | None = None  # of the last entry read
        with stream:
            try:
                for entry in iter_archive(stream, item.path):
                    self.stat_update(f"records_in:{item.source}")
                    offset = entry.offset
                    if isinstance(entry, ReadError):
                        self._error(errors, rank, item, name, entry.offset, entry.reason, entry.detail)
                        progress.advance(docs=1, units=entry.offset)
                        continue
                    is_revisit = entry.record_type == "revisit"
                    is_http = entry.record_type == "response" and entry.payload is not None
                    if not (is_revisit or is_http) or not is_html(entry.content_type):
                        self.stat_update(f"skipped:{item.source}:{entry.record_type}:{skip_content_type(entry)}")
                        continue
                    self.stat_update(f"in:{item.source}")
                    progress.advance(docs=1, units=entry.offset)
                    yield self._document(entry, item, name, crawl)
            except (OSError, *remote_errors()) as exc:  # a remote read still failing after its retries
                self.stat_update(f"records_in:{item.source}")
                where = 0 if offset is None else offset + 1  # just past the last entry read: an offset of its own
                detail = f"reading stopped at byte {where}: {_why(exc)}"
                self._error(errors, rank, item, name, where, "input_unreadable", detail)

    def _document(self, rec: ArchiveRecord, item: InputFile, name: str, crawl: str | None) -> Document:
        meta = {
            "warc_file": item.path,
            "offset": rec.offset,
            "record_id": rec.record_id,
            "date": rec.date,
            "http_status": rec.http_status,
            "content_type": rec.content_type,
            "http_charset": rec.charset,
            "payload_digest": rec.payload_digest,
        }
        url, archive_url = unwrap(rec.url)
        if archive_url is not None:
            meta["archive_url"] = archive_url
        if rec.record_type == "revisit":  # a stub: see winnow.pipeline.revisits
            meta["revisit"] = {
                "payload_digest": rec.payload_digest,
                "refers_to_uri": rec.refers_to_uri,
                "refers_to_date": rec.refers_to_date,
            }
        doc_id = stable_id(item.source, rec.record_id or f"{name}@{rec.offset}")
        metadata = {"source": item.source, "url": url, "crawl": crawl, "meta": meta, "payload": rec.payload}
        return Document(text="", id=doc_id, metadata=metadata)

    def _error(
        self, errors: OutcomeWriter, rank: int, item: InputFile, name: str, offset: int, reason: str, detail: str
    ) -> None:
        self.stat_update(f"in:{item.source}")
        self.stat_update(f"unreadable:{item.source}")
        meta = {"warc_file": item.path, "offset": offset}
        doc = Document(
            text="",
            id=stable_id(item.source, f"{name}@{offset}", "error"),
            metadata={"source": item.source, "meta": meta},
        )
        errors.write(doc, rank, reason=reason, detail=detail)


def _why(exc: BaseException) -> str:
    """An error's type and message, and its cause's (fsspec's http ``FileNotFoundError`` wraps the 503 it got)."""
    why = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        why += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
    return why


@dataclass(frozen=True)
class DocumentFile:
    """One file of documents: an earlier stage's output (``stage``) or a document source's JSONL/Parquet file."""

    path: str
    format: Literal["stage", "jsonl", "parquet"]
    units: int  # progress units: rows (Parquet) or 1 (JSON Lines)
    source: str | None = None  # document sources only: the manifest's source name
    text_field: str = "text"
    id_field: str | None = "id"
    url_field: str | None = "url"
    crawl: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()  # a Parquet file in winnow's schema: its attribute columns

    @staticmethod
    def of_stage(path: Path) -> DocumentFile:
        return DocumentFile(str(path), "stage", pq.ParquetFile(path).metadata.num_rows)

    @staticmethod
    def of_source(item: InputFile, source: DocumentSource) -> DocumentFile:
        units, attributes = 1, ()
        if source.kind == "parquet":
            try:
                with fsspec.open(item.path, "rb") as handle:
                    parquet = pq.ParquetFile(handle)
                    units = parquet.metadata.num_rows
                    if set(CORE_COLUMNS) <= set(parquet.schema_arrow.names):
                        attributes = tuple((n, str(t)) for n, t in attributes_of(parquet.schema_arrow).items())
            except READ_ERRORS:
                pass  # the reader records why it cannot be read
        fields = source.model_dump(include={"text_field", "id_field", "url_field", "crawl"})
        return DocumentFile(item.path, source.kind, units, source.name, attributes=attributes, **fields)


class DocumentReader(UnitReader, PipelineStep):
    """Reads document files (stage outputs, JSONL and Parquet sources) in a fixed order.

    Each document carries ``metadata["position"] = (file index, row index)``, the same on every run,
    which stages such as dedup use to find their decisions again. A row without a text, an invalid
    JSON line, an unreadable file or a JSON Lines file without a line becomes an error record (reasons
    ``missing_text``, ``bad_json``, ``input_unreadable``, ``input_empty``; a Parquet file of 0 bytes is
    ``input_unreadable``, as Parquet cannot read it).
    """

    name = "📖 read documents"
    type = "WINNOW"

    def __init__(self, files: Sequence[DocumentFile], layout: StageLayout, record: bool = True) -> None:
        """``record=False`` for an extra pass over the same files (dedup's signatures): no ``in:`` counts
        and no error records, which the stage's final pass makes."""
        super().__init__()
        self.files = list(files)
        self.layout = layout
        self.record = record

    def unit_inputs(self) -> list[str]:
        return [file.path for file in self.files]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        progress = TaskProgress(self.layout.progress_dir, rank)
        with OutcomeWriter(self.layout, "read", kind="errors") as errors:
            for index, file in enumerate(self.files):
                if not self.reads(index, rank, world_size):
                    continue
                for row_index, doc in enumerate(read_document_file(file)):
                    if self.record:
                        self.stat_update(f"in:{doc.metadata['source']}")
                    progress.advance(docs=1, units=row_index + 1 if file.format != "jsonl" else 0)
                    if doc.metadata.pop("read_error", None) is None:
                        doc.metadata["position"] = (index, row_index)
                        yield doc
                    elif self.record:
                        errors.write(doc, rank, reason=doc.metadata.pop("reason"), detail=doc.metadata.pop("detail"))
                progress.next_input(file.units)
        progress.flush()


def read_document_file(file: DocumentFile) -> Iterator[Document]:
    """Documents of one file, in order; rows that cannot become documents are yielded flagged ``read_error``
    (with ``reason`` and ``detail`` in their metadata), one per row, so row numbers stay aligned."""
    try:
        if file.format == "jsonl":
            # utf-8-sig: a byte-order mark at the start of the file (Windows tools write one) is not part of
            # line 1; surrogateescape: bytes that are not UTF-8 make their line an error, not the rest of the file
            with fsspec.open(
                file.path, "rt", compression="infer", encoding="utf-8-sig", errors="surrogateescape"
            ) as lines:
                empty = True
                for line_no, line in enumerate(lines):
                    if not line.strip():
                        continue  # blank lines (e.g. a trailing one) hold no record
                    empty = False
                    try:
                        row = json.loads(_valid_utf8(line))
                        if not isinstance(row, dict):
                            raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                        if _SURROGATE_ESCAPE.search(line):
                            _no_lone_surrogates(row)
                    except ValueError as exc:
                        yield _unreadable(file, f"line {line_no + 1}", "bad_json", str(exc))
                        continue
                    yield _source_document(row, file, line_no, f"line {line_no + 1}")
            if empty:  # 0 bytes, or blank lines only: counted as an error, not read as a source of nothing
                yield _unreadable(file, "file", "input_empty", "the file holds no JSON line")
            return
        with fsspec.open(file.path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = tuple(attributes_of(parquet.schema_arrow))
            native = file.format == "stage" or set(CORE_COLUMNS) <= set(parquet.schema_arrow.names)
            row_no = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    where = f"row {row_no + 1}"
                    yield (
                        _native_document(row, names, file, where)
                        if native
                        else _source_document(row, file, row_no, where)
                    )
                    row_no += 1
    except READ_ERRORS as exc:
        yield _unreadable(file, "file", "input_unreadable", _why(exc))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _valid_utf8(line: str) -> str:
    """The line, or ValueError if it held bytes that are not UTF-8 (decoded as lone surrogates by surrogateescape)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid UTF-8 at character {exc.start + 1}") from None
    return line


def _no_lone_surrogates(row: dict[str, Any]) -> None:
    """ValueError if a JSON ``\\uD800``-style escape left a lone surrogate: such text cannot be written as UTF-8."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a \\u escape of a lone UTF-16 surrogate: not valid Unicode text") from None


def _native_document(row: dict[str, Any], names: tuple[str, ...], file: DocumentFile, where: str) -> Document:
    """A document from a row already in winnow's schema (a stage output, or a source of such files)."""
    if not isinstance(row.get("text"), str):
        return _unreadable(file, where, "missing_text", "column 'text' is null")
    doc = row_to_doc(row, names)
    doc.metadata["source"] = doc.metadata.get("source") or file.source or ""
    return doc


def _source_document(row: dict[str, Any], file: DocumentFile, row_no: int, where: str) -> Document:
    """A document from one JSONL/Parquet row of a document source."""
    text = row.get(file.text_field)
    if not isinstance(text, str):
        return _unreadable(file, where, "missing_text", f"field {file.text_field!r} is not a string")
    record_id = row.get(file.id_field) if file.id_field else None
    doc_id = stable_id(file.source or "", str(record_id) if record_id is not None else f"{file.path}#{row_no}")
    url = row.get(file.url_field) if file.url_field else None
    meta = {k: v for k, v in row.items() if k not in (file.text_field, file.id_field, file.url_field)}
    meta["source_file"] = file.path
    url, archive_url = unwrap(url if isinstance(url, str) else None)
    if archive_url is not None:
        meta["archive_url"] = archive_url
    metadata = {"source": file.source, "url": url, "crawl": file.crawl, "meta": meta}
    return Document(text=text, id=doc_id, metadata=metadata)


def _unreadable(file: DocumentFile, where: str, reason: str, detail: str) -> Document:
    doc_id = stable_id(file.source or "", f"{file.path}#{where}", "error")
    metadata = {"source": file.source or "", "meta": {"source_file": file.path, "where": where}}
    metadata.update(read_error=True, reason=reason, detail=detail)
    return Document(text="", id=doc_id, metadata=metadata)
