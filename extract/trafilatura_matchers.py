"""Python matchers that select what trafilatura's slowest XPath expressions select, without EXSLT callbacks.

Owns :data:`MATCHERS` (for each of trafilatura's expression lists, the matchers that stand in for its
entries), :func:`basic_clean_sections` (for the baseline extractor's cleaning expression) and
:func:`expressions_digest` (what they were checked against). The expressions test ``@id``,
``@class`` and ``@style`` with EXSLT's ``re:test``, which lxml runs as a Python callback for every element
of the tree, several per element; these walk the elements once and apply the same regular expressions,
built from trafilatura's own token lists as its expressions are. XPath semantics kept:

- an absent attribute reads as ``""`` (no pattern here matches an empty string);
- ``@id|@class`` is the first of the two in the element's own attribute order;
- ``translate(@a, 'CM', 'cm')`` lowers those letters only; ``re:test(s, p, 'i')`` ignores case;
- ``.//*`` is the tree's descendants in document order, never the tree itself.

The body expressions (``BODY_XPATH``) end in ``[1]``: trafilatura takes the first element each one gives,
so their matchers give that element alone (the first in document order). ``tests/test_trafilatura_speedups.py``
compares every matcher with its expression on crafted cases and on every shared HTML page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from lxml import etree
from lxml.html import HtmlElement
from trafilatura import settings, xpaths

Matcher = Callable[[HtmlElement], list[HtmlElement]]

_CONSENT = re.compile(xpaths._alt(xpaths._CONSENT_ID_CLASS_TOKENS))
_BOX_ID = re.compile(xpaths._alt(xpaths._OVERALL_DISCARD_BOTH_TOKENS + xpaths._OVERALL_DISCARD_ID_TOKENS))
_BOX_CLASS = re.compile(xpaths._alt(xpaths._OVERALL_DISCARD_BOTH_TOKENS + xpaths._OVERALL_DISCARD_CLASS_TOKENS))
_HIDDEN_ID = re.compile("reader-comments|akismet")
_HIDDEN_CLASS = re.compile(
    "^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|-hide-|hide-print| hidden| hide|noprint|"
    "notloaded"
)
_COMMENTS_ID = re.compile(f"^(?:{xpaths._COMMENTS_ID}|disqus_thread|dsq-comments)")
_COMMENT_LIST_ID = re.compile(f"^(?:{xpaths._COMMENTS_ID})")
_COMMENTS_CLASS = re.compile(xpaths._COMMENTS_CLASS)
_APPENDED = re.compile("mvp-post-add-(?:box|wrap)|infinite-?scroll")
_APPENDED_ARTICLE = re.compile("mvp-post-add-(?:box|wrap)")
_ARTICLE_ID = re.compile(xpaths._alt(xpaths._ARTICLE_CONTENT_ID_TOKENS))
_ARTICLE_CLASS = re.compile(xpaths._alt(xpaths._ARTICLE_CONTENT_CLASS_TOKENS))
_STORY_ID = re.compile(xpaths._alt(xpaths._STORY_ID_TOKENS))
_STORY_CLASS = re.compile(xpaths._alt(xpaths._STORY_CLASS_TOKENS))
_FULLTEXT = re.compile("fulltext", re.IGNORECASE)
_MAIN_ID = re.compile(xpaths._alt(xpaths._MAIN_CONTENT_ID_TOKENS))
_MAIN_CLASS = re.compile(xpaths._alt(xpaths._MAIN_CONTENT_CLASS_TOKENS))
_COOKIE_BANNER = re.compile(settings._COOKIE_CONSENT_RE, re.IGNORECASE)
_BASIC_CLEAN_TAGS = frozenset(("aside", "fencedframe", "footer", "script", "style", "svg", "template"))
_BOX_TAGS = ("div", "item", "list", "p", "section", "span")
_BODY_TAGS = ("article", "div", "main", "section")
_STORY_CLASSES = frozenset(("postarea", "art-postcontent", "text", "cell", "story"))


def _first_of(element: HtmlElement, keys: list[str], one: str, other: str) -> str:
    """XPath's string of ``@one|@other``: the value of whichever comes first in the element's attributes."""
    for key in keys:
        if key in (one, other):
            return element.get(key)
    return ""


def discarded_boxes(tree: HtmlElement) -> list[HtmlElement]:
    """``OVERALL_DISCARD_XPATH[0]``: div, item, list, p, section and span boxes whose attributes name
    boilerplate (navigation, consent, sharing, ads...)."""
    found = []
    for element in tree.iterdescendants(*_BOX_TAGS):
        keys = element.keys()
        if not keys:
            continue
        role = element.get("role") or ""
        component = element.get("data-component") or ""
        id_ = element.get("id") or ""
        class_ = element.get("class") or ""
        if (
            "data-lp-replacement-content" in keys
            or "nav" in role.replace("N", "n")
            or "MostPopularStories" in component
            or _BOX_ID.search(id_)
            or _BOX_CLASS.search(class_)
            or (
                (_CONSENT.search(id_) or _CONSENT.search(class_))
                and _CONSENT.search(_first_of(element, keys, "id", "class"))
            )
        ):
            found.append(element)
    return found


def discarded_hidden(tree: HtmlElement) -> list[HtmlElement]:
    """``OVERALL_DISCARD_XPATH[1]``: elements that are hidden or comment furniture."""
    found = []
    for element in tree.iterdescendants(etree.Element):
        keys = element.keys()
        if not keys:
            continue
        style = element.get("style") or ""
        class_ = element.get("class") or ""
        id_ = element.get("id") or ""
        if (
            class_ == "comments-title"
            or "display:none" in style
            or "display: none" in style
            or _HIDDEN_ID.search(id_)
            or _HIDDEN_CLASS.search(class_)
            or element.get("aria-hidden") == "true"
            or (
                (id_.startswith("reply-") or class_.startswith("reply-"))
                and _first_of(element, keys, "id", "class").startswith("reply-")
            )
            or (("hidden" in id_ or "hidden" in style) and "hidden" in _first_of(element, keys, "id", "style"))
        ):
            found.append(element)
    return found


def comment_sections(tree: HtmlElement) -> list[HtmlElement]:
    """``REMOVE_COMMENTS_AND_LISTS_XPATH[0]``: comment containers, and ol/ul comment lists."""
    found = []
    for element in tree.iterdescendants("div", "list", "section", "details", "ol", "ul"):
        id_ = element.get("id") or ""
        class_ = element.get("class") or ""
        if (_COMMENTS_ID.search(id_) or _COMMENTS_CLASS.search(class_)) and (
            element.tag not in ("ol", "ul") or _COMMENT_LIST_ID.search(id_) or _COMMENTS_CLASS.search(class_)
        ):
            found.append(element)
    return found


def appended_articles(tree: HtmlElement) -> list[HtmlElement]:
    """``RAW_TREE_PRUNE_XPATH[0]``: infinite-scroll containers of follow-up articles (without the page's h1,
    unless named as such)."""
    found = []
    for element in tree.iterdescendants("div", "section", "aside"):
        id_ = element.get("id") or ""
        class_ = element.get("class") or ""
        if (_APPENDED.search(id_) or _APPENDED.search(class_)) and (
            next(element.iterdescendants("h1"), None) is None
            or _APPENDED_ARTICLE.search(id_)
            or _APPENDED_ARTICLE.search(class_)
        ):
            found.append(element)
    return found


def basic_clean_sections(tree: HtmlElement) -> list[HtmlElement]:
    """``settings.BASIC_CLEAN_XPATH`` (the baseline extractor's cleaning): asides, footers, scripts, styles,
    SVG and templates, divs named as footers, and cookie banners (named so in any case)."""
    found = []
    for element in tree.iterdescendants(etree.Element):
        if element.tag in _BASIC_CLEAN_TAGS:
            found.append(element)
            continue
        keys = element.keys()
        if not keys:
            continue
        id_ = element.get("id") or ""
        class_ = element.get("class") or ""
        if (
            element.tag == "div"
            and ("footer" in id_ or "footer" in class_)
            and "footer" in _first_of(element, keys, "class", "id")
        ) or (_COOKIE_BANNER.search(class_) or _COOKIE_BANNER.search(id_)):
            found.append(element)
    return found


def _first_body(tree: HtmlElement, test: Callable[[str, str, HtmlElement], bool]) -> list[HtmlElement]:
    """The first article, div, main or section below ``tree`` for which ``test(id, class, element)`` holds."""
    for element in tree.iterdescendants(*_BODY_TAGS):
        if test(element.get("id") or "", element.get("class") or "", element):
            return [element]
    return []


def _article_body(id_: str, class_: str, element: HtmlElement) -> bool:
    return (
        class_ in ("post", "entry")
        or element.get("itemprop") == "articleBody"
        or id_ == "articleContent"
        or _ARTICLE_ID.search(id_) is not None
        or _ARTICLE_CLASS.search(class_) is not None
    )


def _story_body(id_: str, class_: str, element: HtmlElement) -> bool:
    return (
        element.get("role") == "article"
        or id_ in ("article", "story")
        or class_ in _STORY_CLASSES
        or _STORY_ID.search(id_) is not None
        or _FULLTEXT.search(class_) is not None
        or _STORY_CLASS.search(class_) is not None
    )


def _main_body(id_: str, class_: str, element: HtmlElement) -> bool:
    return (
        id_ == "content"
        or class_ == "content"
        or _MAIN_ID.search(id_) is not None
        or _MAIN_CLASS.search(class_) is not None
        or "main-content" in id_.replace("C", "c").replace("M", "m")
        or "main-content" in class_.replace("C", "c").replace("M", "m")
        or "page-content" in class_.replace("C", "c").replace("P", "p")
    )


def article_body(tree: HtmlElement) -> list[HtmlElement]:
    """``BODY_XPATH[0]``'s first element: a box named as the article's body."""
    return _first_body(tree, _article_body)


def story_body(tree: HtmlElement) -> list[HtmlElement]:
    """``BODY_XPATH[2]``'s element: the first box named as a story or full text."""
    return _first_body(tree, _story_body)


def main_body(tree: HtmlElement) -> list[HtmlElement]:
    """``BODY_XPATH[3]``'s element: the first box named as the main content."""
    return _first_body(tree, _main_body)


# for each of trafilatura's expression lists (by name in trafilatura.xpaths), its entries' stand-ins
MATCHERS: dict[str, dict[int, Matcher]] = {
    "OVERALL_DISCARD_XPATH": {0: discarded_boxes, 1: discarded_hidden},
    "REMOVE_COMMENTS_AND_LISTS_XPATH": {0: comment_sections},
    "RAW_TREE_PRUNE_XPATH": {0: appended_articles},
    "BODY_XPATH": {0: article_body, 2: story_body, 3: main_body},
}
ORIGINAL: dict[str, list[etree.XPath]] = {name: list(getattr(xpaths, name)) for name in MATCHERS}
ORIGINAL_BASIC_CLEAN: etree.XPath = settings.BASIC_CLEAN_XPATH  # the baseline module holds it by this name


def expressions_digest() -> str:
    """The digest of the expressions the matchers stand in for (as trafilatura defined them at import)."""
    paths = [ORIGINAL[name][index].path for name, entries in MATCHERS.items() for index in entries]
    paths.append(ORIGINAL_BASIC_CLEAN.path)
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()
