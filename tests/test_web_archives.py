"""Unit tests of winnow.extract.web_archives: damaged WARC/ARC files give every readable record plus ReadErrors.

Archives are built in ``tmp_path`` with winnow.pipeline.warc_writer (WARC) or by hand (ARC v1), then damaged
on purpose; the last test compares Common Crawl's malformed 2008/09 ARCs with their WARC conversions.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from winnow.extract.web_archives import ArchiveRecord, ReadError, iter_archive
from winnow.pipeline.readers import is_html
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"
N_PAGES = 4


def page(i: int) -> bytes:
    """A small, distinct HTML page."""
    return f"<html><body><h1>Page {i}</h1><p>Some text of page number {i}.</p></body></html>".encode()


def url(i: int) -> str:
    return f"http://example.com/page/{i}"


def records(n: int = N_PAGES) -> list[bytes]:
    """``n`` uncompressed WARC response records of :func:`page`."""
    return [warc_record(url(i), http_response(page(i)), index=i) for i in range(n)]


def read(path: Path) -> tuple[list[ArchiveRecord], list[ReadError]]:
    """All records and all read errors of ``path``, each list in file order."""
    with open(path, "rb") as fh:
        entries = list(iter_archive(fh, str(path)))
    return [e for e in entries if isinstance(e, ArchiveRecord)], [e for e in entries if isinstance(e, ReadError)]


def pages_of(recs: list[ArchiveRecord]) -> dict[str | None, bytes | None]:
    """URL -> payload of every record but an ARC's ``filedesc`` header."""
    return {r.url: r.payload for r in recs if r.record_type != "filedesc"}


def assert_offsets_point_at_records(data: bytes, recs: list[ArchiveRecord], compressed: bool) -> None:
    """Every record's offset is where that record starts in the file."""
    for rec in recs:
        if compressed:
            start = gzip.GzipFile(fileobj=io.BytesIO(data[rec.offset :])).read(200)
        else:
            start = data[rec.offset : rec.offset + 200]
        assert start.startswith(b"WARC/1.")
        assert rec.url is not None and rec.url.encode() in start


# ------------------------------------------------------------------------------------------ WARC


def test_clean_gzip_warc_reads_every_record(tmp_path: Path) -> None:
    """A well-formed gzip WARC yields each response with its decoded payload, no errors."""
    path = write_warc(tmp_path / "clean.warc.gz", records())
    recs, errors = read(path)
    assert errors == []
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES)}
    assert all(r.record_type == "response" and r.http_status == 200 and is_html(r.content_type) for r in recs)
    assert_offsets_point_at_records(path.read_bytes(), recs, compressed=True)


def test_clean_uncompressed_warc_reads_every_record(tmp_path: Path) -> None:
    """The same for an uncompressed WARC."""
    path = write_warc(tmp_path / "clean.warc", records(), compress=False)
    recs, errors = read(path)
    assert errors == []
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES)}
    assert_offsets_point_at_records(path.read_bytes(), recs, compressed=False)


@pytest.mark.parametrize("cut", ["middle", "trailer"])
def test_truncated_gzip_warc_reports_the_cut_member(tmp_path: Path, cut: str) -> None:
    """A gzip file cut inside its last member: earlier records, then one ``warc_truncated`` error.

    The cut record itself is reported, never emitted half-read (not even when only the gzip trailer is
    missing, since its completeness cannot be verified).
    """
    members = [gzip.compress(r, mtime=0) for r in records()]
    last = members[-1]
    members[-1] = last[: len(last) // 2] if cut == "middle" else last[:-4]
    path = tmp_path / "truncated.warc.gz"
    path.write_bytes(b"".join(members))
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES - 1)}
    assert [(e.reason, e.offset) for e in errors] == [("warc_truncated", sum(map(len, members[:-1])))]


def test_truncated_uncompressed_warc_reports_the_cut_record(tmp_path: Path) -> None:
    """An uncompressed WARC cut inside its last record's body: earlier records plus ``warc_truncated``."""
    recs_bytes = records()
    data = b"".join(recs_bytes)[:-60]
    path = tmp_path / "truncated.warc"
    path.write_bytes(data)
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES - 1)}
    assert [(e.reason, e.offset) for e in errors] == [("warc_truncated", sum(map(len, recs_bytes[:-1])))]


def test_truncated_uncompressed_warc_inside_header(tmp_path: Path) -> None:
    """Cut inside the last record's header: still reported, not silently ignored."""
    recs_bytes = records()
    data = b"".join(recs_bytes[:-1]) + recs_bytes[-1][:40]
    path = tmp_path / "truncated.warc"
    path.write_bytes(data)
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES - 1)}
    assert [e.reason for e in errors] == ["warc_truncated"]


GARBAGE = b"\x00\x13garbage bytes \xff\xfe that are no WARC record at all" * 20


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "uncompressed"])
def test_garbage_between_records_is_skipped_and_reported(tmp_path: Path, compressed: bool) -> None:
    """Garbage between two records: the records before AND after it, and exactly one ReadError
    whose offset is where the garbage starts; offsets of the later records are still exact."""
    parts = [gzip.compress(r, mtime=0) if compressed else r for r in records()]
    data = b"".join(parts[:2]) + GARBAGE + b"".join(parts[2:])
    path = tmp_path / ("garbage.warc.gz" if compressed else "garbage.warc")
    path.write_bytes(data)
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES)}
    assert [(e.reason, e.offset) for e in errors] == [("warc_unreadable", len(parts[0]) + len(parts[1]))]
    assert_offsets_point_at_records(data, recs, compressed)


def test_garbage_before_first_gzip_member(tmp_path: Path) -> None:
    """Junk at the very start of a ``.warc.gz``: one error, then every record (resync on gzip members)."""
    members = [gzip.compress(r, mtime=0) for r in records()]
    data = GARBAGE + b"".join(members)
    path = tmp_path / "junk_first.warc.gz"
    path.write_bytes(data)
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES)}
    assert [(e.reason, e.offset) for e in errors] == [("warc_unreadable", 0)]
    assert_offsets_point_at_records(data, recs, compressed=True)


def test_corrupt_gzip_member_costs_only_that_record(tmp_path: Path) -> None:
    """A member whose deflate data is damaged: one error at that member, all other records read."""
    members = [gzip.compress(r, mtime=0) for r in records()]
    bad = bytearray(members[1])
    middle = len(bad) // 2
    bad[middle : middle + 16] = b"\xff" * 16
    members[1] = bytes(bad)
    path = tmp_path / "corrupt.warc.gz"
    path.write_bytes(b"".join(members))
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES) if i != 1}
    assert [(e.reason, e.offset) for e in errors] == [("warc_unreadable", len(members[0]))]


def test_garbage_then_truncation_both_reported(tmp_path: Path) -> None:
    """Two kinds of damage in one file: both reported (the truncation check runs after a resync too)."""
    members = [gzip.compress(r, mtime=0) for r in records()]
    data = members[0] + GARBAGE + members[1] + members[2] + members[3][: len(members[3]) // 2]
    path = tmp_path / "two_faults.warc.gz"
    path.write_bytes(data)
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES - 1)}
    assert [e.reason for e in errors] == ["warc_unreadable", "warc_truncated"]
    assert errors[1].offset == len(data) - len(members[3]) // 2


def test_non_response_records_have_no_payload(tmp_path: Path) -> None:
    """Request/warcinfo/metadata records are returned with their type but no HTTP payload."""
    get = b"GET /page/0 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    recs_bytes = [
        warc_record("urn:info", b"software: test\r\n", record_type="warcinfo"),
        warc_record(url(0), get, record_type="request"),
        warc_record(url(0), http_response(page(0))),
        warc_record(url(0), b"fetchTimeMs: 12\r\n", record_type="metadata"),
    ]
    recs, errors = read(write_warc(tmp_path / "mixed.warc.gz", recs_bytes))
    assert errors == []
    assert [(r.record_type, r.payload is not None) for r in recs] == [
        ("warcinfo", False),
        ("request", False),
        ("response", True),
        ("metadata", False),
    ]


# -------------------------------------------------------------------------------------- HTTP body


def http_with(body: bytes, *headers: str) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" + "".join(h + "\r\n" for h in headers)
    return head.encode() + b"\r\n" + body


def test_chunked_header_over_plain_body_keeps_the_payload(tmp_path: Path) -> None:
    """``Transfer-Encoding: chunked`` (and gzip) declared, body stored plain: the body is the payload."""
    body = page(7)
    blocks = [
        http_with(body, "Transfer-Encoding: chunked"),
        http_with(body, "Transfer-Encoding: chunked", "Content-Encoding: gzip"),
    ]
    path = write_warc(tmp_path / "chunked.warc.gz", [warc_record(url(i), b, index=i) for i, b in enumerate(blocks)])
    recs, errors = read(path)
    assert errors == []
    assert [r.payload for r in recs] == [body, body]


def test_really_chunked_and_gzipped_bodies_are_decoded(tmp_path: Path) -> None:
    """The contrast case: a body that IS chunked / gzip-encoded comes out decoded."""
    body = page(8)
    half = len(body) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    blocks = [
        http_with(chunked, "Transfer-Encoding: chunked"),
        http_with(gzip.compress(body), "Content-Encoding: gzip"),
    ]
    path = write_warc(tmp_path / "encoded.warc.gz", [warc_record(url(i), b, index=i) for i, b in enumerate(blocks)])
    recs, errors = read(path)
    assert errors == []
    assert [r.payload for r in recs] == [body, body]


# ------------------------------------------------------------------------------------------- ARC

ARC_DESC = b"1 0 Test Crawl\nURL IP-address Archive-date Content-type Archive-length\n"


def arc_file(blocks: list[tuple[str, str, bytes]], filedesc_error: int = 0) -> bytes:
    """An ARC v1 file: a ``filedesc://`` record whose declared length is off by ``filedesc_error``,
    then one record per (url, content type, block), each followed by a newline."""
    declared = len(ARC_DESC) + 1 + filedesc_error
    out = b"filedesc://test.arc 0.0.0.0 20080619093439 text/plain %d\n" % declared + ARC_DESC + b"\n"
    for i, (rec_url, content_type, block) in enumerate(blocks):
        header = f"{rec_url} 10.0.0.{i + 1} 2008050919{i:04d} {content_type} {len(block)}\n"
        out += header.encode() + block + b"\n"
    return out


def arc_blocks(n: int = N_PAGES) -> list[tuple[str, str, bytes]]:
    return [(url(i), "text/html", http_response(page(i))) for i in range(n)]


@pytest.mark.parametrize("filedesc_error", [0, -9, 1, 5, 100, 1_000_000])
@pytest.mark.parametrize("suffix", [".arc", ".arc.gz"])
def test_arc_reads_every_record_even_with_a_wrong_filedesc_length(
    tmp_path: Path, filedesc_error: int, suffix: str
) -> None:
    """ARC records are all read, whether the filedesc length is right, short, a few bytes long (so it
    points into the next header line), far too long, or past the end of the file."""
    blocks = [*arc_blocks(), ("dns:example.com", "text/dns", b"20080509190000\nexample.com. 60 IN A 10.0.0.1\n")]
    data = arc_file(blocks, filedesc_error)
    path = tmp_path / f"test{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    recs, errors = read(path)
    assert errors == []
    responses = [r for r in recs if r.record_type == "response"]
    assert pages_of(responses) == {url(i): page(i) for i in range(N_PAGES)}
    assert all(r.http_status == 200 and is_html(r.content_type) for r in responses)
    assert [r.url for r in recs if r.record_type != "response"] == ["filedesc://test.arc", "dns:example.com"]
    assert responses[0].date == "20080509190000"


def test_arc_record_with_wrong_length_resyncs_on_next_header(tmp_path: Path) -> None:
    """A record whose own declared length is wrong does not swallow or cut its neighbour."""
    good = arc_file(arc_blocks())
    length = len(http_response(page(1)))
    header = f"{url(1)} 10.0.0.2 20080509190001 text/html {length}\n".encode()
    data = good.replace(header, header.replace(str(length).encode(), str(length + 700).encode()))
    assert data != good
    path = tmp_path / "bad_length.arc"
    path.write_bytes(data)
    recs, errors = read(path)
    assert errors == []
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES)}


def test_truncated_arc_reports_the_cut_record(tmp_path: Path) -> None:
    """An ARC cut inside its last record: the earlier records plus one ``arc_truncated`` error."""
    data = arc_file(arc_blocks())
    path = tmp_path / "truncated.arc"
    path.write_bytes(data[:-40])
    recs, errors = read(path)
    assert pages_of(recs) == {url(i): page(i) for i in range(N_PAGES - 1)}
    assert [e.reason for e in errors] == ["arc_truncated"]
    assert data[errors[0].offset :].startswith(url(N_PAGES - 1).encode())


def test_arc_chunked_header_over_plain_body(tmp_path: Path) -> None:
    """As in Common Crawl's 2008 ARCs: chunked + gzip declared, body stored plain."""
    body = page(3)
    block = http_with(body, "Transfer-Encoding:chunked", "Content-Encoding:gzip")
    path = tmp_path / "chunked.arc"
    path.write_bytes(arc_file([(url(3), "text/html", block)]))
    recs, errors = read(path)
    assert errors == []
    assert pages_of(recs) == {url(3): body}


# ------------------------------------------------------------------------------ shared real data

MALFORMED_PAIRS = [
    ("small-sample-1213893279526_0.arc", "commoncrawl2008_small-sample-1213893279526_0.converted.warc.gz"),
    ("small-sample-1262850551027_8.arc", "commoncrawl2009_small-sample-1262850551027_8.converted.warc.gz"),
]


def html_responses(path: Path) -> tuple[list[tuple[str | None, bytes | None]], list[ReadError]]:
    recs, errors = read(path)
    pages = [(r.url, r.payload) for r in recs if r.record_type == "response" and is_html(r.content_type)]
    return pages, errors


@pytest.mark.skipif(not SHARED_WARC.is_dir(), reason="shared test data (../shared/data) not present")
@pytest.mark.parametrize(("arc_name", "warc_name"), MALFORMED_PAIRS, ids=["cc2008", "cc2009"])
def test_malformed_cc_arc_matches_its_warc_conversion(arc_name: str, warc_name: str) -> None:
    """Common Crawl's ARCs with a wrong filedesc length give the same HTML pages (URL and payload) as
    the WARC files converted from them, and no read errors."""
    arc_pages, arc_errors = html_responses(SHARED_WARC / "malformed_cc_arc" / arc_name)
    warc_pages, warc_errors = html_responses(SHARED_WARC / warc_name)
    assert arc_errors == [] and warc_errors == []
    assert len(warc_pages) > 0
    assert len(arc_pages) == len(warc_pages)
    assert sorted(arc_pages, key=repr) == sorted(warc_pages, key=repr)


def test_bracketed_target_uri_is_unwrapped(tmp_path: Path) -> None:
    """wget and WARC 1.0 drafts write ``WARC-Target-URI: <http://...>``; the URL is the part inside."""
    path = write_warc(tmp_path / "b.warc.gz", [warc_record(f"<{url(1)}>", http_response(page(1)))])
    (rec,), errors = read(path)
    assert errors == [] and rec.url == url(1)


def test_corrupt_member_in_arc_gz_costs_only_that_record(tmp_path: Path) -> None:
    """A damaged gzip member of a .arc.gz loses its record, not the records before and after it."""
    blocks = arc_blocks(5)
    plain = arc_file(blocks)
    first_record = plain.index(url(0).encode())
    members = [plain[:first_record]]  # the filedesc header
    cuts = [plain.index(url(i).encode()) for i in range(5)] + [len(plain)]
    members += [plain[cuts[i] : cuts[i + 1]] for i in range(5)]
    compressed = [gzip.compress(m, mtime=0) for m in members]
    damaged = bytearray(compressed[3])  # the member of record 2
    damaged[len(damaged) // 2] ^= 0xFF
    compressed[3] = bytes(damaged)
    path = tmp_path / "damaged.arc.gz"
    path.write_bytes(b"".join(compressed))
    recs, errors = read(path)
    assert {r.url for r in recs if r.payload} == {url(i) for i in (0, 1, 3, 4)}
    assert len(errors) == 1 and errors[0].reason == "arc_unreadable"
