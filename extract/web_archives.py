"""Robust iteration over web archives: WARC (via FastWARC) and ARC (a lenient reader of our own).

:func:`iter_archive` yields :class:`ArchiveRecord` for every record it can read and
:class:`ReadError` for every stretch it cannot, so a damaged file never ends a task and never loses
records silently (an empty file is a ``ReadError`` too):

- WARC: FastWARC stops at the first corrupt gzip member or garbage between records (raising), and
  stops *silently* at a truncated gzip member. We resume after a failure at the next gzip member
  (or ``WARC/`` header line for uncompressed files) and, when iteration ends, check that the rest of
  the file was really consumed; what was skipped becomes a ``ReadError`` with its byte offset. A
  last record that turns out to be cut short is reported that way, never emitted half-read.
- ARC: strict readers (warcio) reject Common Crawl's 2008/09 ARC files whose ``filedesc`` header
  declares a wrong length. The reader here trusts declared lengths when the next header lines up and
  otherwise resynchronises on the next line that looks like an ARC header. The HTTP payload of an ARC
  record is parsed by FastWARC (wrapped as a WARC response) so chunked and gzip bodies decode the
  same way as in WARC files.
- Bare LF line ends: older writers (WARC/0.17-0.18-era Heritrix and friends, some ARC writers) end header
  lines with a bare LF instead of CRLF. FastWARC's HTTP parser then finds no header end (no content type,
  an empty body), and its WARC parser no record boundary; warcio reads both. HTTP headers are rewritten
  with CRLF before FastWARC parses them (:func:`_crlf_http_head`); a WARC file whose first record header
  ends its lines with a bare LF is read by :func:`_iter_lf_warc`, which splits records itself (either line
  end) and hands each one, header rewritten with CRLF, to FastWARC, so its records come out as any other's.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from winnow.pipeline.revisits import IDENTICAL_PAYLOAD_PROFILE

GZIP_MAGIC = b"\x1f\x8b\x08"
# a WARC header line, not anchored to a line start: garbage before a record may not end in a newline
WARC_MAGIC = re.compile(rb"WARC/[0-9]+\.[0-9]+\r?\n")
ARC_HEADER = re.compile(rb"^(\S+) (\S+) (\d{14}) (\S*) (\d+)\r?$")
HTTP_HEAD_END = re.compile(rb"\r?\n\r?\n")
CONTENT_LENGTH = re.compile(rb"(?i)content-length:[ \t]*(\d+)[ \t]*")
SCAN_CHUNK = 1 << 20


@dataclass(slots=True)
class ArchiveRecord:
    """One archive record. ``payload`` is the decoded HTTP body, set for HTTP responses only;
    ``block_type`` is the record's own content type (WARC ``Content-Type``, or the ARC header's)."""

    offset: int
    record_type: str
    block_type: str | None = None
    url: str | None = None
    date: str | None = None
    record_id: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    charset: str | None = None
    payload: bytes | None = None
    payload_digest: str | None = None  # WARC-Payload-Digest, e.g. "sha1:..."
    refers_to_uri: str | None = None  # revisits: the record whose payload this one repeats
    refers_to_date: str | None = None


@dataclass(slots=True)
class ReadError:
    """A stretch of an archive that could not be read; ``offset`` is where it starts."""

    offset: int
    reason: str
    detail: str


def is_arc(path: str) -> bool:
    """ARC files are recognised by name: ``*.arc`` or ``*.arc.gz``."""
    return path.endswith((".arc", ".arc.gz"))


def iter_archive(stream: BinaryIO, path: str) -> Iterator[ArchiveRecord | ReadError]:
    """Records and read errors of one archive file, in file order. ``stream`` must be seekable. A file of
    0 bytes (a failed download, a truncated copy) is one ``input_empty`` error, never nothing at all."""
    stream.seek(0, io.SEEK_END)
    empty = stream.tell() == 0
    stream.seek(0)
    if empty:
        yield ReadError(0, "input_empty", "the file holds 0 bytes")
        return
    if is_arc(path):
        yield from _iter_arc(stream)
    else:
        yield from _iter_warc(stream, path)


# ------------------------------------------------------------------------------------------- WARC


def _iter_warc(stream: BinaryIO, path: str = "") -> Iterator[ArchiveRecord | ReadError]:
    head = stream.read(2)
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    # by magic, or by name when the file starts with junk (resynchronising must look for gzip members)
    compressed = head == GZIP_MAGIC[:2] or (head != b"WA" and path.endswith(".gz"))
    if _bare_lf_headers(stream, compressed):
        yield from _iter_lf_warc(stream, compressed, size)
        return
    start = 0
    while start < size:
        stream.seek(start)
        last_pos: int | None = None
        pending: ArchiveRecord | None = None  # held back until we know it is complete
        try:
            for rec in ArchiveIterator(stream, parse_http=False):
                last_pos = rec.stream_pos  # FastWARC's stream_pos is absolute, not relative to `start`
                record = _warc_record(rec, last_pos)
                if pending is not None:
                    yield pending
                pending = record
        except (OSError, ValueError) as exc:
            if pending is not None:
                yield pending
            failed_at = last_pos if last_pos is not None else start
            if pending is not None and last_pos is not None:
                # the last record read fine: the bad stretch starts where that record ends
                failed_at = _record_end(stream, last_pos, compressed) or last_pos
            resume = _next_start(stream, failed_at + (failed_at == start), compressed)
            if resume == failed_at:
                start = resume  # nothing skipped yet: the next pass reports what fails there
                continue
            end = resume if resume is not None else size
            reason = f"{str(exc)[:200]}; skipped bytes {failed_at}..{end}"
            yield ReadError(failed_at, "warc_unreadable", reason)
            if resume is None:
                return
            start = resume
            continue
        tail = _unread_tail(stream, last_pos if last_pos is not None else start, compressed)
        if pending is not None and not (tail is not None and tail.offset == last_pos):
            yield pending  # (a last record that the tail check finds cut short is reported, not emitted)
        if tail is not None:
            yield tail
        return


def _bare_lf_headers(stream: BinaryIO, compressed: bool) -> bool:
    """True if the file's first record starts with a ``WARC/x.y`` line ended by a bare LF."""
    stream.seek(0)
    head = stream.read(SCAN_CHUNK >> 4)
    if compressed:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        except zlib.error:
            return False  # junk at the start: FastWARC's path reports it
    line = head[: head.find(b"\n") + 1]
    return line.startswith(b"WARC/") and not line.endswith(b"\r\n") and bool(WARC_MAGIC.fullmatch(line))


def _iter_lf_warc(stream: BinaryIO, compressed: bool, size: int) -> Iterator[ArchiveRecord | ReadError]:
    """Records and read errors of a WARC file with bare-LF header lines (see the module docstring).

    Offsets are as FastWARC gives them: the record's position in an uncompressed file, its gzip
    member's in a compressed one. A corrupt member or junk is reported and skipped to the next member
    (or ``WARC/`` line); a member or record cut short ends the file with a ``warc_truncated`` error.
    """
    if not compressed:
        stream.seek(0)
        yield from _lf_records(stream, lambda position: position)
        return
    position = 0
    while position < size:
        stream.seek(position)
        if stream.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            stream.seek(position)
            if not stream.read().strip(b"\0\r\n "):
                return  # padding after the last member
            error: str | None = "not a gzip member"
        else:
            stream.seek(position)
            try:
                data, length = _gunzip_member(stream.read, keep=True)
                error = None
            except EOFError:
                yield ReadError(position, "warc_truncated", "gzip member ends before its end marker")
                return
            except zlib.error as exc:
                error = f"corrupt gzip member: {exc}"
        if error is not None:
            resume = _next_start(stream, position + 1, compressed=True)
            yield ReadError(position, "warc_unreadable", f"{error}; skipped bytes {position}..{resume or size}")
            if resume is None:
                return
            position = resume
            continue
        yield from _lf_records(io.BytesIO(data), lambda _, member=position: member)
        position += length


def _lf_records(buffer: BinaryIO, offset_of: Callable[[int], int]) -> Iterator[ArchiveRecord | ReadError]:
    """Records of ``buffer`` (from its current position) whose header lines end with LF or CRLF.

    Each record's header is rewritten with CRLF and the record read by FastWARC (:func:`_warc_record`).
    ``offset_of`` maps a position in ``buffer`` to the offset reported for what starts there.
    """
    while True:
        start = buffer.tell()
        line = buffer.readline()
        while line and not line.strip():  # the newlines that close the previous record
            start, line = buffer.tell(), buffer.readline()
        if not line:
            return
        header, complete = [line.rstrip(b"\r\n")], False
        for line in iter(buffer.readline, b""):
            if not line.strip(b"\r\n"):
                complete = True
                break
            header.append(line.rstrip(b"\r\n"))
        lengths = [int(m[1]) for h in header[1:] if (m := CONTENT_LENGTH.fullmatch(h))]
        problem = None
        if not WARC_MAGIC.fullmatch(header[0] + b"\n"):
            problem = "no WARC header line"
        elif complete and not lengths:
            problem = "record header has no Content-Length"
        if problem is not None:
            resume = _next_start(buffer, start + 1, compressed=False)
            where = f"{offset_of(start)}..{offset_of(resume) if resume is not None else 'end'}"
            yield ReadError(offset_of(start), "warc_unreadable", f"{problem}; skipped bytes {where}")
            if resume is None:
                return
            buffer.seek(resume)
            continue
        if not complete:
            yield ReadError(offset_of(start), "warc_truncated", "last record header is incomplete")
            return
        block = buffer.read(lengths[0])
        if len(block) < lengths[0]:
            detail = f"record declares {lengths[0]} bytes, {len(block)} remain"
            yield ReadError(offset_of(start), "warc_truncated", detail)
            return
        crlf = b"\r\n".join(header) + b"\r\n\r\n" + block + b"\r\n\r\n"
        records = [_warc_record(rec, offset_of(start)) for rec in ArchiveIterator(io.BytesIO(crlf), parse_http=False)]
        yield from records or [ReadError(offset_of(start), "warc_unreadable", "FastWARC reads no record here")]


def _record_end(stream: BinaryIO, position: int, compressed: bool) -> int | None:
    """End offset of the gzip member / uncompressed record starting at ``position`` (None if unknown)."""
    stream.seek(position)
    if compressed:
        try:
            return position + _gunzip_member(stream.read, keep=False)[1]
        except (EOFError, zlib.error):
            return None
    declared = _declared_length(stream.read(SCAN_CHUNK))
    if declared is None:
        return None
    block_end = position + declared
    stream.seek(block_end)
    after = stream.read(4)  # the record's closing CRLF CRLF (sloppy writers use fewer)
    return block_end + len(after) - len(after.lstrip(b"\r\n"))


def _gunzip_member(read: Callable[[int], bytes], keep: bool) -> tuple[bytes, int]:
    """Decompress the gzip member that ``read`` starts at: (data if ``keep``, compressed length).

    Raises EOFError if the member is cut short, zlib.error if it is corrupt.
    """
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    consumed = 0
    while not decomp.eof:
        chunk = read(1 << 16)
        if not chunk:
            raise EOFError("member ends before its end marker")
        data = decomp.decompress(chunk)
        if keep:
            parts.append(data)
        consumed += len(chunk)
    return b"".join(parts), consumed - len(decomp.unused_data)


def _declared_length(record: bytes) -> int | None:
    """Length of an uncompressed WARC record's header + block from its Content-Length (None if absent)."""
    header_end = record.find(b"\r\n\r\n")
    if header_end < 0:
        return None
    match = re.search(rb"(?im)^content-length:\s*(\d+)", record[:header_end])
    return header_end + 4 + int(match.group(1)) if match else None


def _warc_record(rec: WarcRecord, offset: int) -> ArchiveRecord:
    headers = rec.headers
    out = ArchiveRecord(
        offset=offset,
        record_type=str(rec.record_type),
        url=_target_uri(headers.get("WARC-Target-URI")),
        date=headers.get("WARC-Date"),
        record_id=headers.get("WARC-Record-ID"),
        payload_digest=headers.get("WARC-Payload-Digest"),
        block_type=headers.get("Content-Type"),
    )
    if rec.record_type == WarcRecordType.response:
        block = rec.reader.read()
        if block.startswith(b"HTTP/"):
            _parse_http_block(block, out)
    elif rec.record_type == WarcRecordType.revisit and (headers.get("WARC-Profile") or "").endswith(
        IDENTICAL_PAYLOAD_PROFILE
    ):
        out.record_type = "revisit"
        out.refers_to_uri = _target_uri(headers.get("WARC-Refers-To-Target-URI"))
        out.refers_to_date = headers.get("WARC-Refers-To-Date")
        block = rec.reader.read()
        if block.startswith(b"HTTP/"):  # the HTTP headers of the revisit; the payload is the original's
            _parse_http_block(block, out)
        out.payload = None
    return out


def _target_uri(value: str | None) -> str | None:
    """The record's URI; some writers (WARC 1.0 drafts, wget) wrap it in angle brackets."""
    if value and value.startswith("<") and value.endswith(">"):
        return value[1:-1]
    return value


def _parse_http_block(block: bytes, out: ArchiveRecord) -> None:
    """Fill status, content type, charset and decoded body of ``out`` from a raw HTTP response.

    Archived headers may describe a transfer or content encoding the stored body no longer has
    (common in Common Crawl's ARCs and in re-packed WARCs), so decoding falls back step by step:
    both encodings, content encoding only, then the body as stored.
    """
    block = _crlf_http_head(block)
    wrapped = (
        b"WARC/1.0\r\nWARC-Type: response\r\nContent-Type: application/http; msgtype=response\r\n"
        b"Content-Length: " + str(len(block)).encode() + b"\r\n\r\n" + block + b"\r\n\r\n"
    )
    for decode in ("all", "content", "none"):
        try:
            for rec in ArchiveIterator(io.BytesIO(wrapped), parse_http=True, auto_decode=decode):
                if rec.http_headers is None:
                    return
                out.http_status = rec.http_headers.status_code
                out.content_type = (rec.http_content_type or "").lower() or None
                out.charset = rec.http_charset
                out.payload = rec.reader.read()
                return
        except OSError:
            continue


def _crlf_http_head(block: bytes) -> bytes:
    """``block`` with its HTTP header lines ended by CRLF (bare LF ends rewritten); the body as stored."""
    end = HTTP_HEAD_END.search(block)
    head = block[: end.start()] if end else block
    if head.count(b"\n") == head.count(b"\r\n") and (end is None or end.group() == b"\r\n\r\n"):
        return block
    lines = b"\r\n".join(line.removesuffix(b"\r") for line in head.split(b"\n"))
    return lines + b"\r\n\r\n" + block[end.end() :] if end else lines


def _next_start(stream: BinaryIO, position: int, compressed: bool) -> int | None:
    """Offset of the next gzip member / WARC header at or after ``position``, or None."""
    pattern = re.compile(re.escape(GZIP_MAGIC)) if compressed else WARC_MAGIC
    while True:
        stream.seek(position)
        chunk = stream.read(SCAN_CHUNK + 16)
        if not chunk:
            return None
        match = pattern.search(chunk)
        if match:
            return position + match.start()
        if len(chunk) <= SCAN_CHUNK:
            return None
        position += SCAN_CHUNK


def _unread_tail(stream: BinaryIO, last_pos: int, compressed: bool) -> ReadError | None:
    """After a clean end, report data FastWARC did not turn into records (truncation, trailing junk)."""
    if compressed:
        position = last_pos
        while True:
            stream.seek(position)
            if not stream.read().strip(b"\0\r\n "):
                return None
            stream.seek(position)
            try:
                position += _gunzip_member(stream.read, keep=False)[1]
            except EOFError:
                return ReadError(position, "warc_truncated", "gzip member ends before its end marker")
            except zlib.error as exc:
                return ReadError(position, "warc_unreadable", f"corrupt gzip member: {exc}")
    # uncompressed: the last record's declared length must fit in the file
    stream.seek(last_pos)
    rest = stream.read()
    end = _declared_length(rest)
    if end is None:
        if rest.strip():
            return ReadError(last_pos, "warc_truncated", "last record header is incomplete")
        return None
    if end > len(rest):
        return ReadError(last_pos, "warc_truncated", f"record declares {end} bytes, {len(rest)} remain")
    if rest[end:].strip():
        return ReadError(last_pos + end, "warc_unreadable", f"{len(rest) - end} bytes of trailing data")
    return None


# -------------------------------------------------------------------------------------------- ARC


def _iter_arc(stream: BinaryIO) -> Iterator[ArchiveRecord | ReadError]:
    head = stream.read(2)
    stream.seek(0)
    if head == GZIP_MAGIC[:2]:
        data, errors = _decompress_members(stream.read())
    else:
        data, errors = stream.read(), []
    yield from _parse_arc(data)
    yield from errors


def _decompress_members(raw: bytes) -> tuple[bytes, list[ReadError]]:
    """Decompress a multi-member gzip file member by member, skipping corrupt members to the next one.

    Error offsets are positions in the compressed file; the ARC parser resynchronises on the next
    record header after a gap.
    """
    buffer = io.BytesIO(raw)
    parts: list[bytes] = []
    errors: list[ReadError] = []
    position = 0
    while position < len(raw):
        buffer.seek(position)
        try:
            data, length = _gunzip_member(buffer.read, keep=True)
        except (EOFError, zlib.error) as exc:
            resume = raw.find(GZIP_MAGIC, position + 1)
            end = resume if resume >= 0 else len(raw)
            errors.append(ReadError(position, "arc_unreadable", f"gzip member: {exc}; skipped bytes {position}..{end}"))
            if resume < 0:
                break
            position = resume
            continue
        parts.append(data)
        position += length
    return b"".join(parts), errors


def _parse_arc(data: bytes) -> Iterator[ArchiveRecord | ReadError]:
    position = 0
    size = len(data)
    while position < size:
        line_end = data.find(b"\n", position)
        if line_end < 0:
            line_end = size
        line = data[position:line_end].rstrip(b"\r")
        if not line.strip():
            position = line_end + 1
            continue
        match = ARC_HEADER.match(line)
        if not match:
            resync = _next_arc_header(data, line_end + 1)
            yield ReadError(position, "arc_unreadable", f"no ARC header at this offset; skipped to {resync}")
            position = resync
            continue
        url, _ip, date, content_type, length = match.groups()
        body_start = line_end + 1
        body_end = body_start + int(length)
        if body_end > size:
            # past the end of the file: truncated, unless another record follows (a wrong length)
            body_end = _next_arc_header(data, body_start)
            if body_end >= size:
                remain = size - body_start
                yield ReadError(position, "arc_truncated", f"record declares {int(length)} bytes, {remain} remain")
                return
        elif not _arc_boundary_ok(data, body_end):
            # declared length is wrong (seen in Common Crawl's 2008/09 ARCs): trust the next header
            body_end = _next_arc_header(data, body_start)
        record_bytes = data[body_start:body_end]
        if body_end != body_start + int(length):
            record_bytes = record_bytes.removesuffix(b"\n")  # the newline that separates records
        if url.startswith(b"filedesc://"):  # the file's header record: counted, never a document
            kind = content_type.decode("utf-8", "replace") or None
            yield ArchiveRecord(
                position, "filedesc", url=url.decode("utf-8", "replace"), date=date.decode(), block_type=kind
            )
            position = body_end
            continue
        record = _arc_record(position, url.decode("utf-8", "replace"), date.decode(), record_bytes)
        record.block_type = content_type.decode("utf-8", "replace") or None
        yield record
        position = body_end


def _arc_boundary_ok(data: bytes, offset: int) -> bool:
    """True if ``offset`` is followed (after newlines) by an ARC header line or end of data.

    The header must start a line: a declared length a few bytes too long lands inside the next
    header line, whose tail (``://host/path IP date type length``) would otherwise pass as a header.
    """
    while offset < len(data) and data[offset : offset + 1] in (b"\n", b"\r"):
        offset += 1
    if offset >= len(data):
        return True
    if data[offset - 1 : offset] != b"\n":
        return False
    line_end = data.find(b"\n", offset)
    return bool(ARC_HEADER.match(data[offset : line_end if line_end >= 0 else len(data)].rstrip(b"\r")))


def _next_arc_header(data: bytes, position: int) -> int:
    """Offset of the next line that parses as an ARC header, or the end of data."""
    while position < len(data):
        line_end = data.find(b"\n", position)
        if line_end < 0:
            return len(data)
        if ARC_HEADER.match(data[position:line_end].rstrip(b"\r")):
            return position
        position = line_end + 1
    return len(data)


def _arc_record(offset: int, url: str, date: str, body: bytes) -> ArchiveRecord:
    out = ArchiveRecord(offset=offset, record_type="response", url=url, date=date)
    if body.startswith(b"HTTP/"):
        _parse_http_block(body, out)
    else:
        out.record_type = "resource"
    return out
