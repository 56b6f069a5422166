"""Wayback Machine addresses are judged, and deduplicated, by the URL they wrap; the address stays in meta.

Unit cases for :func:`winnow.filters.archive_urls.original_url`, the URL filter and ``url_key`` on wrapped
URLs, both readers (web archives and document sources), and the shared SERP WARCs, which were fetched
through the Wayback Machine and include pages of a domain on datatrove's block list.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from winnow.filters.archive_urls import original_url, unwrap
from winnow.filters.dedup_keys import url_key
from winnow.filters.url_filter import OfflineURLFilter, URLRejects
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.readers import DocumentFile, WarcDocumentReader, read_document_file
from winnow.pipeline.sources import InputFile
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

SERPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc" / "serps"
PAGE = "https://blocked-example.com/tags/page?x=1"


@pytest.mark.parametrize(
    ("wrapped", "original"),
    [
        (f"https://web.archive.org/web/20220527083500id_/{PAGE}", PAGE),
        (f"http://web.archive.org/web/20220527083500/{PAGE}", PAGE),
        (f"https://web.archive.org/web/2022im_/{PAGE}", PAGE),
        (
            "https://web.archive.org/web/20120212052716js_/http:/www.imdb.com:80/find?q=1",
            "http://www.imdb.com:80/find?q=1",
        ),
        ("https://wayback.archive.org/web/20100101000000/example.org/a#frag", "http://example.org/a#frag"),
        ("web.archive.org:443/web/20100101if_/ftp://files.example.org/x", "ftp://files.example.org/x"),
        (f"https://web.archive.org/web/2020/https://web.archive.org/web/2019id_/{PAGE}", PAGE),
    ],
)
def test_wayback_addresses_give_the_url_they_wrap(wrapped: str, original: str) -> None:
    """Each form of capture address (timestamp with or without a mode, no scheme, collapsed slashes, nested)."""
    assert original_url(wrapped) == original
    assert unwrap(wrapped) == (original, wrapped)


@pytest.mark.parametrize(
    "url",
    [
        PAGE,
        "https://web.archive.org/web/*/example.org",
        "https://archive.org/details/some-item",
        "https://example.com/web/20200101/http://other.org/",
        "https://notarchive.org/web/20200101/http://other.org/",
    ],
)
def test_other_urls_are_left_alone(url: str) -> None:
    """Plain URLs, wildcard searches, other archive.org pages and look-alike hosts are not unwrapped."""
    assert original_url(url) == url
    assert unwrap(url) == (url, None)


def test_url_filter_judges_the_wrapped_url(tmp_path: Path) -> None:
    """A block-listed domain behind a Wayback address is rejected, naming the domain; other captures are kept."""
    layout = StageLayout(tmp_path, "extract", 1 << 30)
    step = OfflineURLFilter(
        exclusion_writer=URLRejects(layout, "url_filter"),
        use_integrated_lists=False,
        extra_domains=["blocked-example.com"],
    )
    urls = {
        "direct": PAGE,
        "wrapped": f"https://web.archive.org/web/20220527083500id_/{PAGE}",
        "bare": "https://web.archive.org/web/2021/blocked-example.com/other",
        "kept": "https://web.archive.org/web/20220527083500id_/https://fine.example.org/",
    }
    docs = [Document(text="t", id=key, metadata={"url": url}) for key, url in urls.items()]
    assert [d.id for d in step.run(iter(docs))] == ["kept"]
    [shard] = (tmp_path / "stages" / "extract" / "rejects").glob("*.parquet")
    got = {r["id"]: (r["reason"], r["detail"]) for r in pq.read_table(shard).to_pylist()}
    assert got == {key: ("url_filter:domain", "domain=blocked-example.com") for key in ("direct", "wrapped", "bare")}


def test_url_dedup_key_is_the_wrapped_urls() -> None:
    """Two captures of one page and the page fetched directly share one URL key; other pages do not."""
    keys = {
        url_key(PAGE),
        url_key(f"https://web.archive.org/web/20220527083500id_/{PAGE}"),
        url_key(f"https://web.archive.org/web/20190101000000/{PAGE}&utm_source=x"),
    }
    assert keys == {url_key(PAGE)}
    assert url_key(f"https://web.archive.org/web/2022id_/{PAGE.replace('page', 'other')}") != url_key(PAGE)


def test_readers_put_the_original_in_url_and_the_address_in_meta(tmp_path: Path) -> None:
    """Web archives and document sources alike: ``url`` is the wrapped URL, ``meta.archive_url`` the address."""
    address = f"https://web.archive.org/web/20220527083500id_/{PAGE}"
    body = b"<html><body><p>archived</p></body></html>"
    path = write_warc(
        tmp_path / "wb.warc.gz",
        [warc_record(address, http_response(body)), warc_record(PAGE, http_response(body), index=1)],
    )
    reader = WarcDocumentReader(
        [InputFile(str(path), "wb", None, path.stat().st_size)], StageLayout(tmp_path, "x", 1 << 20)
    )
    docs = list(reader.run(None))
    assert [(d.metadata["url"], d.metadata["meta"].get("archive_url")) for d in docs] == [(PAGE, address), (PAGE, None)]

    source = tmp_path / "docs.jsonl"
    source.write_text(
        json.dumps({"id": "1", "text": "t", "url": address})
        + "\n"
        + json.dumps({"id": "2", "text": "t", "url": PAGE})
        + "\n"
    )
    rows = list(read_document_file(DocumentFile(str(source), "jsonl", 1, source="docs")))
    assert [(d.metadata["url"], d.metadata["meta"].get("archive_url")) for d in rows] == [(PAGE, address), (PAGE, None)]


@pytest.mark.skipif(not SERPS.is_dir(), reason="shared SERP WARCs not present (../shared/data/warc/serps)")
def test_shared_serp_pages_of_a_block_listed_domain_are_rejected(tmp_path: Path) -> None:
    """The shared SERP WARCs were fetched through the Wayback Machine: every HTML page gets its original URL
    and its address in meta, and every page whose original domain is on datatrove's block list (bongacams.com
    among them) is rejected by the URL filter with that domain named."""
    files = sorted(SERPS.glob("*.warc.gz"))
    layout = StageLayout(tmp_path, "extract", 1 << 30)
    reader = WarcDocumentReader([InputFile(str(p), "serps", None, p.stat().st_size) for p in files], layout)
    docs = list(reader.run(None))
    assert len(docs) > 500
    assert all(d.metadata["meta"]["archive_url"].startswith("https://web.archive.org/web/") for d in docs)
    assert not any("archive.org" in d.metadata["url"] for d in docs)

    step = OfflineURLFilter(exclusion_writer=URLRejects(layout, "url_filter"))
    kept = {d.id for d in step.run(iter(docs))}
    rejected = [d for d in docs if d.id not in kept]
    adult = [d for d in docs if (urlsplit(d.metadata["url"]).hostname or "").endswith("bongacams.com")]
    assert adult and all(d.id not in kept for d in adult)
    [shard] = (tmp_path / "stages" / "extract" / "rejects").glob("*.parquet")
    details = {r["id"]: r["detail"] for r in pq.read_table(shard).to_pylist()}
    assert {details[d.id] for d in adult} == {"domain=bongacams.com"}
    assert set(details) == {d.id for d in rejected}
    assert all(step.judge(d.metadata["url"]) is None for d in docs if d.id in kept)
