"""The URL filter's compact block lists (datatrove's decisions, a cache reused) and rejects that name the match."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import URLFilter
from tldextract import TLDExtract

from winnow.filters.url_filter import CompactSet, OfflineURLFilter, URLRejects, _unpacked_lists, integrated_list
from winnow.pipeline.outcomes import StageLayout

WARCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"


def test_compact_set_answers_like_a_set_and_a_damaged_file_is_refused(tmp_path: Path) -> None:
    entries = {"example.com", "a.b.example.org", "ünïcode.de", "x" * 300, ""}
    path = tmp_path / "s.set"
    CompactSet.write(entries, path)
    compact = CompactSet(path)
    assert len(compact) == len(entries)
    for probe in [*entries, "example.co", "example.comm", "b.example.org", "nope", "x" * 299]:
        assert (probe in compact) == (probe in entries), probe
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a complete CompactSet"):
        CompactSet(path)


def test_rejects_name_what_matched(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "extract", 1 << 30)
    step = OfflineURLFilter(
        exclusion_writer=URLRejects(layout, "url_filter"),
        use_integrated_lists=False,
        extra_domains=["spam-farm.com", "ads.example.net"],
        extra_urls=["https://example.com/exact"],
        banned_words=["casino"],
        soft_banned_words=["cheap", "pills"],
        banned_subwords=["viagra"],
    )
    urls = {
        "domain": "https://www.spam-farm.com/x",
        "subdomain": "https://ads.example.net/",
        "url": "https://example.com/exact",
        "word": "https://example.com/best-casino-online",
        "soft": "https://example.com/cheap/pills",
        "sub": "https://example.com/buyviagranow",
        "kept": "https://example.com/cheap-books",
    }
    docs = [Document(text="t", id=key, metadata={"url": url}) for key, url in urls.items()]
    assert [d.id for d in step.run(iter(docs))] == ["kept"]
    [shard] = (tmp_path / "stages" / "extract" / "rejects").glob("*.parquet")
    got = {r["id"]: (r["reason"], r["detail"]) for r in pq.read_table(shard).to_pylist()}
    assert got == {
        "domain": ("url_filter:domain", "domain=spam-farm.com"),
        "subdomain": ("url_filter:subdomain", "subdomain=ads.example.net"),
        "url": ("url_filter:url", "url=https://example.com/exact"),
        "word": ("url_filter:hard_blacklisted", "banned_word=casino"),
        "soft": ("url_filter:soft_blacklisted", "soft_banned_word=cheap,pills"),
        "sub": ("url_filter:blacklisted_subword", "banned_subword=viagra"),
    }


def _warc_urls() -> list[str]:
    urls = []
    for path in sorted(WARCS.glob("*.warc.gz")):
        with gzip.open(path, "rb") as fh:
            urls += [m.decode("utf-8", "replace") for m in re.findall(rb"WARC-Target-URI: <?([^\r\n>]+)", fh.read())]
    return urls


@pytest.mark.slow
def test_same_decisions_as_datatrove_and_the_second_load_uses_the_cache(tmp_path: Path) -> None:
    if not WARCS.is_dir():
        pytest.skip("../shared/data/warc is absent")
    with open(os.path.join(_unpacked_lists(), "domains")) as fh:
        listed = [line.strip() for i, line in enumerate(fh) if i % 50_000 == 0]
    with open(os.path.join(_unpacked_lists(), "urls")) as fh:
        listed_urls = [line.strip() for i, line in enumerate(fh) if i % 2_000 == 0]
    urls = _warc_urls() + listed_urls
    urls += [f"https://{d}/" for d in listed] + [f"http://www.{d}/page?q=1" for d in listed]
    urls += ["https://example.com/free-porn-videos", "https://example.com/sexy-teen", "http://10.0.0.1/"]
    assert len(set(urls)) > 300

    ours = OfflineURLFilter(cache_dir=tmp_path)
    theirs = URLFilter()
    theirs.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)  # the same public-suffix list, offline
    verdicts = []
    for url in urls:
        mine = ours.filter(Document(text="t", id=url, metadata={"url": url}))
        assert mine == theirs.filter(Document(text="t", id=url, metadata={"url": url})), url
        verdicts.append(mine)
    reasons = {v[1] for v in verdicts if v is not True}
    assert {"domain", "subdomain", "hard_blacklisted"} <= reasons
    assert sum(v is True for v in verdicts) > 100

    [built] = tmp_path.glob("domains-*.set")
    before = built.stat()
    integrated_list.cache_clear()
    again = integrated_list("domains", tmp_path)
    assert isinstance(again, CompactSet) and again.path == built and listed[1] in again
    after = built.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
