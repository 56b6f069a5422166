"""trafilatura's speedups (:mod:`winnow.extract.trafilatura_speedups`) leave its output as it was: the
outermost-match computation agrees with its definition on a tree with nested matches, the discard matchers
select what trafilatura's expressions select, and every fourth HTML page of the shared archives and
ground-truth sets extracts to the same text with and without them (every twelfth with the fallbacks too)."""

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


# Elements that test each clause of OVERALL_DISCARD_XPATH, and its near misses
DISCARD_CASES = (
    "<div id=main class=share-bar>a</div><section class=cookie id=x>b</section><span id=cookie class=x>c</span>"
    "<p class=x id=cookie>d</p><div data-lp-replacement-content>e</div><div role=Navigation>f</div>"
    "<div role=NAVIGATION>x</div><p data-component=MostPopularStories>g</p><item class=sidebar>h</item>"
    "<list id=ad-top>i</list><b class=sidebar>j</b><div class=comments-title>k</div><em id=reply-3 class=x>l</em>"
    "<em class=x id=reply-4>m</em><i style='display: none'>n</i><i id=x style=hidden>o</i>"
    "<i style=hidden id=x>p</i><u aria-hidden=true>q</u><u aria-hidden=false>r</u><a class='x hidden'>s</a>"
    "<div class=nav>t<p id=nav-inner>u</p></div><div class=article-body><p>v</p></div><div>w</div>"
)


@pytest.mark.skipif(not CHECKED, reason="trafilatura is not the release the speedups were checked against")
def test_discard_matchers_select_what_the_expressions_select() -> None:
    """:func:`discarded_boxes` and :func:`discarded_hidden` against the XPath expressions they stand for: the
    same elements in the same order on every clause (``@id|@class`` is the first of them as written), their
    near misses, and every HTML page of the shared archives and ground-truth sets as trafilatura parses it."""
    boxes, hidden = trafilatura_speedups._original_discard
    trees = [lxml.html.fromstring(f"<html><body>{DISCARD_CASES}</body></html>")]
    assert [e.text for e in boxes(trees[0])] == ["a", "b", "c", "e", "f", "g", "h", "i", "t", "u"]
    assert [e.text for e in hidden(trees[0])] == ["k", "l", "n", "p", "q", "s"]
    if SHARED_WARC.is_dir() and GOLD.is_dir():
        pages = [html for _, html in shared_html_pages()]
        pages += [decode_html(p.html, None)[0] for p in load_aeb(GOLD / "scrapinghub_aeb")]
        trees += [tree for html in pages if (tree := trafilatura.utils.load_html(html)) is not None]
    for tree in trees:
        assert trafilatura_speedups.discarded_boxes(tree) == boxes(tree)
        assert trafilatura_speedups.discarded_hidden(tree) == hidden(tree)


@pytest.mark.skipif(not CHECKED, reason="trafilatura is not the release the speedups were checked against")
@pytest.mark.skipif(not SHARED_WARC.is_dir() or not GOLD.is_dir(), reason="../shared/data is absent")
def test_same_texts_with_and_without_the_speedups(speedups: None) -> None:
    """Every fourth page through trafilatura's fast pass, every twelfth through its fallbacks as well."""
    pages = shared_html_pages()
    for page in load_aeb(GOLD / "scrapinghub_aeb") + load_cleaneval(GOLD / "cleaneval-dev"):
        pages.append((page.url, decode_html(page.html, None)[0]))
    sample = [(url, html, True) for url, html in pages[::4]] + [(url, html, False) for url, html in pages[::12]]
    options = {"favor_recall": True, "include_tables": True, "include_comments": False, "deduplicate": False}
    faster = [trafilatura.extract(html, url=url, fast=fast, **options) for url, html, fast in sample]
    trafilatura_speedups.uninstall()
    try:
        plain = [trafilatura.extract(html, url=url, fast=fast, **options) for url, html, fast in sample]
    finally:
        trafilatura_speedups.install()
    differ = [(url, fast) for (url, _, fast), a, b in zip(sample, faster, plain, strict=True) if a != b]
    assert len(sample) > 350 and sum(bool(t) for t in plain) > 300
    assert differ == [], f"{len(differ)} of {len(sample)} pages extract differently: {differ[:5]}"
