"""Every record of every archive is counted: records in == documents + skipped + unreadable, per source.

A WARC written here holds HTML pages and the records a crawl also stores (an image, a PDF, a request,
warcinfo and metadata records, a DNS resource) and ends in a cut-off record; the extract stage runs
alone on it. The reader's counters and the stage's Parquet rows must account for each record, skipped
ones by record and content type, and the check must fail when a row goes missing. The same holds on
real crawls from ../shared/data (skipped when absent), counted independently with FastWARC.
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from tests.conftest import WinnowCli
from winnow.pipeline.funnel import archive_funnel, connect
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.runner import Runner
from winnow.pipeline.warc_writer import http_response, warc_record

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"
HERITRIX = "aut_example_archive.org-2008_heritrix.warc.gz"
PROSE = (
    "The village library opens every weekday during the summer holidays. Anyone who wants to borrow books "
    "needs a valid card, which can be requested at the front desk. Children get the card for free. "
)


def record(kind: WarcRecordType, url: str, content_type: str, block: bytes) -> bytes:
    """One uncompressed WARC record with its own Content-Type."""
    rec = WarcRecord()
    rec.init_headers(kind, record_urn=f"urn:uuid:00000000-0000-0000-0000-{abs(hash(url)) % 10**12:012d}".encode())
    rec.headers["WARC-Target-URI"] = url
    rec.headers["Content-Type"] = content_type
    rec.set_bytes_content(block)
    buffer = io.BytesIO()
    rec.write(buffer)
    return buffer.getvalue()


def crawl_warc(path: Path) -> Path:
    """3 HTML pages, a JPEG, a PDF, a request, warcinfo, metadata and DNS records, then a truncated page."""
    pages = [
        warc_record(f"http://example.com/{i}", http_response(f"<html><body><p>{PROSE * 3}</p></body></html>".encode()))
        for i in range(3)
    ]
    others = [
        record(WarcRecordType.warcinfo, "", "application/warc-fields", b"software: test\r\n"),
        warc_record("http://example.com/a.jpg", http_response(b"\xff\xd8\xff\xe0JFIF", "image/jpeg"), index=1),
        warc_record("http://example.com/a.pdf", http_response(b"%PDF-1.4\n%%EOF", "application/pdf"), index=2),
        warc_record("http://example.com/0", b"GET /0 HTTP/1.1\r\nHost: example.com\r\n\r\n", "request", index=3),
        record(WarcRecordType.metadata, "http://example.com/0", "application/warc-fields", b"via: test\r\n"),
        record(WarcRecordType.resource, "dns:example.com", "text/dns", b"example.com. 60 IN A 10.0.0.1\n"),
    ]
    members = [gzip.compress(r, mtime=0) for r in [*pages, *others]]
    last = gzip.compress(warc_record("http://example.com/cut", http_response(b"<html>" + PROSE.encode())), mtime=0)
    path.write_bytes(b"".join(members) + last[: len(last) // 2])
    return path


def extract_run(output: Path, sources: dict[str, list[Path]]) -> Path:
    manifest = Manifest.model_validate(
        {
            "name": "counts",
            "output": str(output),
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "sources": [{"name": n, "kind": "warc", "paths": [str(p) for p in ps]} for n, ps in sources.items()],
            "stages": {"extract": {"url_filter": False, "language": {"keep": None}}, "heuristics": None, "dedup": None},
        }
    )
    return Runner(manifest, progress=False).run().run_dir


@pytest.fixture(scope="module")
def crawl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("counts")
    return extract_run(folder / "out", {"web": [crawl_warc(folder / "crawl.warc.gz")]})


def test_every_record_is_a_document_a_skip_or_unreadable(crawl_run: Path) -> None:
    with connect(crawl_run) as con:
        account = archive_funnel(crawl_run, con)["web"]
    assert account.skipped == {
        ("warcinfo", "application/warc-fields"): 1,
        ("response", "image/jpeg"): 1,
        ("response", "application/pdf"): 1,
        ("request", "application/http"): 1,
        ("metadata", "application/warc-fields"): 1,
        ("resource", "text/dns"): 1,
    }
    assert (account.records_in, account.documents, account.unreadable) == (10, 3, 1)
    assert account.balanced


def test_the_check_fails_when_a_row_goes_missing(crawl_run: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "run"
    shutil.copytree(crawl_run, damaged)
    for shard in (damaged / "stages" / "extract" / "data").glob("*.parquet"):
        shard.unlink()
    with connect(damaged) as con:
        account = archive_funnel(damaged, con)["web"]
    assert account.documents == 0 and not account.balanced


def test_inspect_and_report_list_skipped_records(crawl_run: Path, winnow_cli: WinnowCli) -> None:
    result = winnow_cli("inspect", crawl_run)
    assert result.returncode == 0, result.stderr
    assert "records in = documents + skipped + unreadable" in result.stdout
    for line in ("image/jpeg", "application/pdf", "text/dns", "warcinfo", "request"):
        assert line in result.stdout, line
    assert winnow_cli("report", crawl_run).returncode == 0
    page = (crawl_run / "report.html").read_text()
    assert "image/jpeg" in page and "text/dns" in page and "Input records" in page


@pytest.mark.skipif(not SHARED_WARC.is_dir(), reason="shared test data (../shared/data) not present")
def test_real_crawls_are_fully_counted(tmp_path: Path) -> None:
    """Common Crawl 2020 (requests, metadata) and a Heritrix crawl (images, PDFs, DNS): FastWARC's count of
    records is the records in, and its count of non-HTML ones is what was skipped."""
    files = [SHARED_WARC / "resiliparse_warcfile_CC-MAIN-2020-34.warc.gz", SHARED_WARC / HERITRIX]
    run_dir = extract_run(tmp_path / "out", {"cc": files})
    total = html = 0
    for path in files:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, parse_http=True):
                total += 1
                ctype = (rec.http_content_type or "") if rec.record_type == WarcRecordType.response else ""
                html += ctype.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")
    with connect(run_dir) as con:
        account = archive_funnel(run_dir, con)["cc"]
    assert account.records_in == total and account.unreadable == 0
    assert account.documents == html and account.rows_skipped == total - html
    assert account.balanced
