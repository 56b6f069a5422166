"""trafilatura's speedups (:mod:`winnow.extract.trafilatura_speedups`) leave its output as it was: the
outermost-match computation agrees with its definition on a tree with nested matches, the matchers select
what trafilatura's expressions select, and every fourth HTML page of the shared archives and
ground-truth sets extracts to the same text with and without them (every twelfth with the fallbacks too)."""

from __future__ import annotations

import re
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


# Elements that test each clause of the replaced expressions, and their near misses
DISCARD_CASES = (
    "<div id=main class=share-bar>a</div><section class=cookie id=x>b</section><span id=cookie class=x>c</span>"
    "<p class=x id=cookie>d</p><div data-lp-replacement-content>e</div><div role=Navigation>f</div>"
    "<div role=NAVIGATION>x</div><p data-component=MostPopularStories>g</p><item class=sidebar>h</item>"
    "<list id=ad-top>i</list><b class=sidebar>j</b><div class=comments-title>k</div><em id=reply-3 class=x>l</em>"
    "<em class=x id=reply-4>m</em><i style='display: none'>n</i><i id=x style=hidden>o</i>"
    "<i style=hidden id=x>p</i><u aria-hidden=true>q</u><u aria-hidden=false>r</u><a class='x hidden'>s</a>"
    "<div class=nav>t<p id=nav-inner>u</p></div><div class=article-body><p>v</p></div><div>w</div>"
)
COMMENT_CASES = (
    "<div id=comments>a</div><ul class=commentlist>b</ul><ol id=disqus_thread>c</ol><section id=disqus_thread>d"
    "</section><details class=post-comments>e</details><div class=commentary>f</div><span id=comments>g</span>"
    "<div class=infinite-scroll>h<h1>t</h1></div><aside id=mvp-post-add-box>i<h1>t</h1></aside><div class=x>j</div>"
)
BODY_CASES = (
    "<div class=x><section class=Main-Content>a</section></div><div class=fullText>b</div><div class=articleBody>c"
    "</div><main role=article>d</main><div class=post>e</div>"
)
CLEAN_CASES = (
    "<div id=site-footer class=x>a</div><div class=x id=site-footer>b</div><span class=footer>c</span>"
    "<p class=Cookie-Banner>d</p><template>e</template><footer>f</footer><p class=cookies-not-set>g</p>"
)


@pytest.mark.skipif(not CHECKED, reason="trafilatura is not the release the speedups were checked against")
def test_matchers_select_what_the_expressions_select() -> None:
    """Each matcher of :mod:`winnow.extract.trafilatura_matchers` against the expression it stands for: the same
    elements in the same order (the body searches: the same first element) on every clause, their near misses
    (``@id|@class`` is the first of them as written) and every HTML page of the shared archives and AEB's set
    as trafilatura parses it; no pattern matches an empty string (an absent attribute)."""
    from winnow.extract import trafilatura_matchers  # built from the checked release's private token lists

    patterns = [value for value in vars(trafilatura_matchers).values() if isinstance(value, re.Pattern)]
    assert len(patterns) > 15 and not any(pattern.search("") for pattern in patterns)
    original = trafilatura_matchers.ORIGINAL
    boxes, hidden = original["OVERALL_DISCARD_XPATH"]
    cases = lxml.html.fromstring(f"<html><body>{DISCARD_CASES}{COMMENT_CASES}{BODY_CASES}</body></html>")
    assert [e.text for e in boxes(cases)] == ["a", "b", "c", "e", "f", "g", "h", "i", "t", "u"]
    assert [e.text for e in hidden(cases)] == ["k", "l", "n", "p", "q", "s"]
    assert [e.text for e in original["REMOVE_COMMENTS_AND_LISTS_XPATH"][0](cases)] == ["k", "a", "b", "d", "e"]
    assert [e.text for e in original["RAW_TREE_PRUNE_XPATH"][0](cases)] == ["i"]
    bodies = [original["BODY_XPATH"][i](cases)[0].get("class") for i in (0, 2, 3)]
    assert bodies == ["article-body", "fullText", "Main-Content"]
    cleaned = lxml.html.fromstring(f"<html><body>{CLEAN_CASES}</body></html>")
    assert [e.text for e in trafilatura_matchers.ORIGINAL_BASIC_CLEAN(cleaned)] == ["a", "d", "e", "f"]
    trees = [cases, cleaned]
    if SHARED_WARC.is_dir() and GOLD.is_dir():
        pages = [html for _, html in shared_html_pages()]
        pages += [decode_html(p.html, None)[0] for p in load_aeb(GOLD / "scrapinghub_aeb")]
        trees += [tree for html in pages if (tree := trafilatura.utils.load_html(html)) is not None]
    for name, entries in trafilatura_matchers.MATCHERS.items():
        for index, matcher in entries.items():
            expression = original[name][index]
            first_only = name == "BODY_XPATH"
            for tree in trees:
                expected = expression(tree)
                assert matcher(tree) == (expected[:1] if first_only else expected), (name, index)
    for tree in trees:
        assert trafilatura_matchers.basic_clean_sections(tree) == trafilatura_matchers.ORIGINAL_BASIC_CLEAN(tree)


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
