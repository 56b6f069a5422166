"""Archives whose header lines end with a bare LF (WARC/0.17-0.18-era writers) read like any other.

FastWARC alone reads such HTTP headers as one endless header (no content type, empty body) and such
WARC headers as no record at all. Archives are written here the old way (bare LF in the HTTP header,
or in both the WARC and HTTP headers), and the shared 2008 Heritrix WARC is rewritten that way record by
record and must give the same records as the original.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import pytest

from winnow.extract.web_archives import ArchiveRecord, ReadError, iter_archive
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.readers import WarcDocumentReader, is_html
from winnow.pipeline.sources import InputFile
from winnow.pipeline.warc_writer import warc_record, write_warc

SHARED_HERITRIX = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "warc"
    / "aut_example_archive.org-2008_heritrix.warc.gz"
)
N_PAGES = 5


def page(i: int) -> bytes:
    return f"<html><body><h1>Old page {i}</h1><p>Text of archived page {i}.</p></body></html>".encode()


def url(i: int) -> str:
    return f"http://example.org/old/{i}"


def lf_http(body: bytes) -> bytes:
    """An HTTP response whose header lines end with a bare LF."""
    head = f"HTTP/1.1 200 OK\nContent-Type: text/html; charset=iso-8859-1\nContent-Length: {len(body)}\n\n"
    return head.encode() + body


def lf_warc_record(rec_url: str, block: bytes, i: int) -> bytes:
    """A WARC/0.18 response record whose header lines end with a bare LF."""
    header = (
        f"WARC/0.18\nWARC-Type: response\nWARC-Target-URI: {rec_url}\nWARC-Date: 2008-04-30T20:48:{i:02d}Z\n"
        f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{i:012d}>\n"
        f"Content-Type: application/http; msgtype=response\nContent-Length: {len(block)}\n\n"
    )
    return header.encode() + block + b"\n\n"


def old_archive(tmp_path: Path, layers: str, compressed: bool, n: int = N_PAGES) -> Path:
    """``layers``: ``http`` (bare LF in the HTTP header only) or ``both`` (the WARC header too)."""
    if layers == "http":
        records = [warc_record(url(i), lf_http(page(i)), index=i) for i in range(n)]
    else:
        records = [lf_warc_record(url(i), lf_http(page(i)), i) for i in range(n)]
    return write_warc(tmp_path / f"old-{layers}.warc{'.gz' if compressed else ''}", records, compress=compressed)


def read(path: Path) -> tuple[list[ArchiveRecord], list[ReadError]]:
    with open(path, "rb") as fh:
        entries = list(iter_archive(fh, str(path)))
    return [e for e in entries if isinstance(e, ArchiveRecord)], [e for e in entries if isinstance(e, ReadError)]


def record_start(data: bytes, offset: int, compressed: bool) -> bytes:
    """The first bytes of the record at ``offset`` (decompressed from its gzip member when ``compressed``)."""
    if compressed:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[offset:], 1000)
    return data[offset : offset + 1000]


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("layers", ["http", "both"])
def test_bare_lf_headers_give_every_page_and_its_payload(tmp_path: Path, layers: str, compressed: bool) -> None:
    """Each page comes out as an HTML response with its body as payload, at the offset where its record starts."""
    path = old_archive(tmp_path, layers, compressed)
    recs, errors = read(path)
    assert errors == []
    assert [(r.url, r.payload) for r in recs] == [(url(i), page(i)) for i in range(N_PAGES)]
    assert all(r.record_type == "response" and r.http_status == 200 and is_html(r.content_type) for r in recs)
    assert {r.charset for r in recs} == {"iso-8859-1"}
    data = path.read_bytes()
    for rec in recs:
        start = record_start(data, rec.offset, compressed)
        assert start.startswith(b"WARC/") and rec.url is not None and rec.url.encode() in start


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "plain"])
def test_bare_lf_archive_cut_short_keeps_the_whole_records_and_reports_the_cut(
    tmp_path: Path, compressed: bool
) -> None:
    """A bare-LF archive cut inside its last record: the others are read, the cut is a ``warc_truncated`` error."""
    path = old_archive(tmp_path, "both", compressed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    recs, errors = read(path)
    assert [r.url for r in recs] == [url(i) for i in range(N_PAGES - 1)]
    assert [e.reason for e in errors] == ["warc_truncated"]
    assert record_start(data, errors[0].offset, compressed).startswith(b"WARC/0.18")


def test_junk_between_bare_lf_records_costs_only_the_junk(tmp_path: Path) -> None:
    """Junk between two records of an uncompressed bare-LF archive is one error; every record is read."""
    records = [lf_warc_record(url(i), lf_http(page(i)), i) for i in range(N_PAGES)]
    records.insert(2, b"this is not a WARC record\n" * 3)
    path = write_warc(tmp_path / "junk.warc", records, compress=False)
    recs, errors = read(path)
    assert [r.url for r in recs] == [url(i) for i in range(N_PAGES)]
    assert [e.reason for e in errors] == ["warc_unreadable"]
    assert path.read_bytes()[errors[0].offset :].startswith(b"this is not")


def test_arc_record_with_bare_lf_http_headers(tmp_path: Path) -> None:
    """The same HTTP parsing serves ARC files: a bare-LF HTTP header gives its content type and body."""
    desc = b"1 0 Old Crawl\nURL IP-address Archive-date Content-type Archive-length\n"
    data = b"filedesc://old.arc 0.0.0.0 20080430204800 text/plain %d\n" % len(desc) + desc + b"\n"
    for i in range(N_PAGES):
        block = lf_http(page(i))
        data += f"{url(i)} 10.0.0.1 2008043020{i:04d} text/html {len(block)}\n".encode() + block + b"\n"
    path = tmp_path / "old.arc.gz"
    path.write_bytes(gzip.compress(data))
    recs, errors = read(path)
    assert errors == []
    pages = [r for r in recs if r.record_type == "response"]
    assert [(r.url, r.payload) for r in pages] == [(url(i), page(i)) for i in range(N_PAGES)]
    assert all(is_html(r.content_type) for r in pages)


def test_the_reader_makes_a_document_of_every_bare_lf_page(tmp_path: Path) -> None:
    """Through the extract stage's reader: one document per page, and the funnel's counters say so."""
    path = old_archive(tmp_path, "both", compressed=True)
    reader = WarcDocumentReader(
        [InputFile(str(path), "old", None, path.stat().st_size)], StageLayout(tmp_path, "x", 1 << 20)
    )
    docs = list(reader.run(None))
    assert [d.metadata["payload"] for d in docs] == [page(i) for i in range(N_PAGES)]
    counters = {name: stat.total for name, stat in reader.stats.stats.items()}
    assert counters["records_in:old"] == counters["in:old"] == N_PAGES
    assert not any(name.startswith(("skipped:", "unreadable:")) for name in counters)


# ------------------------------------------------------------------ a real 2008 Heritrix crawl, rewritten


def _to_bare_lf(record: bytes) -> bytes:
    """One uncompressed WARC record with every WARC and HTTP header line ended by a bare LF (lengths fixed)."""
    head_end = record.index(b"\r\n\r\n")
    head, rest = record[:head_end], record[head_end + 4 :]
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])
    block, trailer = rest[:length], rest[length:]
    if b"application/http" in head and block.startswith(b"HTTP/") and b"\r\n\r\n" in block:
        http_end = block.index(b"\r\n\r\n")
        block = block[:http_end].replace(b"\r\n", b"\n") + b"\n\n" + block[http_end + 4 :]
    head = re.sub(rb"(?im)^(content-length:\s*)\d+", rb"\g<1>%d" % len(block), head.replace(b"\r\n", b"\n"))
    return head + b"\n\n" + block + trailer.replace(b"\r\n", b"\n")


def _members(data: bytes) -> list[bytes]:
    members, position = [], 0
    while position < len(data):
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        members.append(decomp.decompress(data[position:]))
        position = len(data) - len(decomp.unused_data)
    return members


@pytest.mark.skipif(not SHARED_HERITRIX.exists(), reason="shared Heritrix 2008 WARC not present (../shared/data)")
def test_shared_heritrix_warc_rewritten_with_bare_lf_reads_the_same(tmp_path: Path) -> None:
    """Every record of the real 2008 Heritrix WARC (WARC/0.17), its headers rewritten with bare LF, comes out as
    from the original: type, URL, status, content type and payload; offsets point at the rewritten records."""
    members = _members(SHARED_HERITRIX.read_bytes())
    path = tmp_path / "heritrix-lf.warc.gz"
    path.write_bytes(b"".join(gzip.compress(_to_bare_lf(m), mtime=0) for m in members))

    def facts(recs: list[ArchiveRecord]) -> list[tuple[object, ...]]:
        return [(r.record_type, r.url, r.record_id, r.http_status, r.content_type, r.payload) for r in recs]

    original, original_errors = read(SHARED_HERITRIX)
    rewritten, errors = read(path)
    assert errors == original_errors == []
    assert facts(rewritten) == facts(original)
    assert sum(r.payload is not None and is_html(r.content_type) for r in rewritten) >= 100
    data = path.read_bytes()
    for rec in rewritten:
        start = record_start(data, rec.offset, compressed=True)
        assert start.startswith(b"WARC/0.17\n") and rec.record_id is not None and rec.record_id.encode() in start
