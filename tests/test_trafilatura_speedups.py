"""trafilatura's speedups (:mod:`winnow.extract.trafilatura_speedups`) leave its output as it was: the
outermost-match computation agrees with its definition on a tree with nested matches, and every fourth
HTML page of the shared archives and ground-truth sets extracts to the same text with and without them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
import trafilatura
from lxml.etree import XPath

from tests.test_extract_prerejection import SHARED_WARC, shared_html_pages
from winnow.extract import trafilatura_speedups
from winnow.extract.evaluation import load_aeb, load_cleaneval
from winnow.extract.stage import decode_html

GOLD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "html_gt"
CHECKED = trafilatura.__version__ == trafilatura_speedups.CHECKED_VERSION


@pytest.fixture
def speedups() -> Iterator[None]:
    """The speedups installed, as the extraction worker has them (and leaves them)."""
    trafilatura_speedups.install()
    yield


def test_outermost_keeps_matches_without_a_matched_ancestor() -> None:
    html = (
        "<div id=a><div id=b><p id=c>x</p></div><p id=d>y</p></div><section><p id=e>z</p><span id=f>w</span></section>"
    )
    tree = lxml.html.fromstring(f"<html><body>{html}</body></html>")
    matches = XPath("//*[@id='e' or @id='c' or @id='b' or @id='f' or @id='d']")(tree)
    naive = [m for m in dict.fromkeys(matches) if not any(a in matches for a in m.iterancestors())]
    assert [m.get("id") for m in trafilatura_speedups.outermost(matches)] == [m.get("id") for m in naive]
    assert [m.get("id") for m in naive] == ["b", "d", "e", "f"]  # c lies under b
    whole = XPath("//*[@id='a' or @id='c']")(tree)
    assert [m.get("id") for m in trafilatura_speedups.outermost(whole)] == ["a"]


@pytest.mark.skipif(not CHECKED, reason="trafilatura is not the release the speedups were checked against")
def test_install_is_idempotent(speedups: None) -> None:
    assert trafilatura_speedups.install() is True
    parsed = trafilatura.utils.load_html("<html><body><form><input name=q></form></body></html>")
    assert type(parsed.find(".//input")) is lxml.html.HtmlElement  # lxml's C lookup, one class for all


@pytest.mark.skipif(not CHECKED, reason="trafilatura is not the release the speedups were checked against")
@pytest.mark.skipif(not SHARED_WARC.is_dir() or not GOLD.is_dir(), reason="../shared/data is absent")
def test_same_texts_with_and_without_the_speedups(speedups: None) -> None:
    pages = shared_html_pages()
    for page in load_aeb(GOLD / "scrapinghub_aeb") + load_cleaneval(GOLD / "cleaneval-dev"):
        pages.append((page.url, decode_html(page.html, None)[0]))
    sample = pages[::4]
    options = {"favor_recall": True, "include_tables": True, "include_comments": False, "deduplicate": False}
    faster = [trafilatura.extract(html, url=url, fast=True, **options) for url, html in sample]
    trafilatura_speedups.uninstall()
    try:
        plain = [trafilatura.extract(html, url=url, fast=True, **options) for url, html in sample]
    finally:
        trafilatura_speedups.install()
    differ = [url for (url, _), a, b in zip(sample, faster, plain, strict=True) if a != b]
    assert len(sample) > 250 and sum(bool(t) for t in plain) > 200
    assert differ == [], f"{len(differ)} of {len(sample)} pages extract differently: {differ[:5]}"
