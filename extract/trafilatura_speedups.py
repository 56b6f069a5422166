"""Three speedups of trafilatura that leave its output byte for byte the same, installed in the extraction
worker (:mod:`winnow.extract.html_text`).

Owns :func:`install` and :func:`uninstall`. Found by profiling the extraction of the benchmark's 1,133
pages, where a few large listing pages take most of trafilatura's time (docs/DECISIONS.md has the
figures); a test extracts the shared pages with and without them and compares the texts.

1. The guard of ``prune_unwanted_nodes(..., with_backup=True)`` (the pass of ``OVERALL_DISCARD_XPATH``
   in ``main_extractor.prune_unwanted_sections``) keeps only the outermost matches by walking every
   match's ancestors up to the root. On a page with thousands of matches that creates millions of
   element proxies. :func:`outermost` computes the same list, looking at each ancestor once.
2. lxml.html picks each element's Python class (``FormElement``, ``InputElement``...) with a lookup
   written in Python, called for every element proxy trafilatura touches. Its parser gets lxml's C
   default lookup with the same base classes (``HtmlElement``, ``HtmlComment``...) instead; trafilatura
   uses none of the per-tag classes' methods.
3. ``OVERALL_DISCARD_XPATH``'s two expressions test ``@id``, ``@class`` and ``@style`` with EXSLT's
   ``re:test``, which lxml runs as a Python callback, three per element of the tree. :func:`discarded_boxes`
   and :func:`discarded_hidden` select the same elements in the same order by looping over the elements
   once with the same regular expressions (XPath's ``@id|@class`` is the first of the two in the element's
   own attribute order).

All are installed only on the trafilatura release, the function source and the expressions they were
checked against (:data:`CHECKED_VERSION`, :data:`CHECKED_SOURCE_SHA256`, :data:`CHECKED_DISCARD_SHA256`);
on any other, nothing is patched and a warning says so in the task's log
(:class:`~winnow.pipeline.sandbox.WorkerWarning`; extraction stays correct, only slower).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import trafilatura
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlElementClassLookup, HtmlEntity, HtmlProcessingInstruction
from trafilatura import htmlprocessing, main_extractor, utils, xpaths

from winnow.pipeline.sandbox import WorkerWarning

CHECKED_VERSION = "2.3.1"
CHECKED_SOURCE_SHA256 = "4731f8e24ef86449c2714a6257d2ff892ff12a6a3d544d7ca87d6536fab29915"
CHECKED_DISCARD_SHA256 = "90fe7cbe71fb424ac24d9a9fb6f88a6ac257c7d83a8ff01187f5fc19a899bf05"
_original_prune = htmlprocessing.prune_unwanted_nodes
_original_discard = list(xpaths.OVERALL_DISCARD_XPATH)

# The regular expressions of OVERALL_DISCARD_XPATH, built as trafilatura builds them (checked by the digest)
_CONSENT = re.compile(xpaths._alt(xpaths._CONSENT_ID_CLASS_TOKENS))
_BOX_ID = re.compile(xpaths._alt(xpaths._OVERALL_DISCARD_BOTH_TOKENS + xpaths._OVERALL_DISCARD_ID_TOKENS))
_BOX_CLASS = re.compile(xpaths._alt(xpaths._OVERALL_DISCARD_BOTH_TOKENS + xpaths._OVERALL_DISCARD_CLASS_TOKENS))
_HIDDEN = re.compile("hidden")
_HIDDEN_ID = re.compile("reader-comments|akismet")
_HIDDEN_CLASS = re.compile(
    "^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|-hide-|hide-print| hidden| hide|noprint|"
    "notloaded"
)


def outermost(matches: Iterable[Any]) -> list[Any]:
    """The elements of ``matches`` (in their order) that have no ancestor among them; each ancestor of
    any match is looked at once (``covered`` remembers whether it is or lies under a match)."""
    matched = dict.fromkeys(matches)
    covered: dict[Any, bool] = {}
    outer = []
    for element in matched:
        path = []
        node = element.getparent()
        under_match = False
        while node is not None:
            known = covered.get(node)
            if known is not None:
                under_match = known
                break
            if node in matched:
                under_match = True
                break
            path.append(node)
            node = node.getparent()
        for visited in path:
            covered[visited] = under_match
        if not under_match:
            outer.append(element)
    return outer


def prune_unwanted_nodes(tree: HtmlElement, nodelist: Sequence[etree.XPath], with_backup: bool = False) -> HtmlElement:
    """trafilatura's ``prune_unwanted_nodes`` with the guard's outermost matches from :func:`outermost`."""
    if not with_backup:
        return _original_prune(tree, nodelist)
    outer = outermost(element for expression in nodelist for element in expression(tree))
    old_len = len(tree.text_content())
    if old_len - sum(len(element.text_content()) for element in outer) > old_len / 7:
        for element in outer:
            htmlprocessing.delete_element(element)
    return tree


def _first_of(element: HtmlElement, keys: list[str], one: str, other: str) -> str:
    """XPath's string of ``@one|@other``: the value of whichever comes first in the element's attributes."""
    for key in keys:
        if key in (one, other):
            return element.get(key)
    return ""


def discarded_boxes(tree: HtmlElement) -> list[HtmlElement]:
    """``OVERALL_DISCARD_XPATH[0]``: the div, item, list, p, section and span boxes below ``tree`` whose
    attributes name boilerplate (navigation, consent, sharing, ads...), in document order."""
    found = []
    for element in tree.iterdescendants("div", "item", "list", "p", "section", "span"):
        keys = element.keys()
        if not keys:
            continue
        role = element.get("role") or ""
        component = element.get("data-component") or ""
        if (
            "data-lp-replacement-content" in keys
            or "nav" in role.replace("N", "n")
            or "MostPopularStories" in component
            or _CONSENT.search(_first_of(element, keys, "id", "class"))
            or _BOX_ID.search(element.get("id") or "")
            or _BOX_CLASS.search(element.get("class") or "")
        ):
            found.append(element)
    return found


def discarded_hidden(tree: HtmlElement) -> list[HtmlElement]:
    """``OVERALL_DISCARD_XPATH[1]``: the elements below ``tree`` that are hidden or comment furniture, in
    document order."""
    found = []
    for element in tree.iterdescendants(etree.Element):
        keys = element.keys()
        if not keys:
            continue
        style = element.get("style") or ""
        class_ = element.get("class") or ""
        if (
            class_ == "comments-title"
            or _first_of(element, keys, "id", "class").startswith("reply-")
            or _HIDDEN.search(_first_of(element, keys, "id", "style"))
            or "display:none" in style
            or "display: none" in style
            or _HIDDEN_ID.search(element.get("id") or "")
            or _HIDDEN_CLASS.search(class_)
            or element.get("aria-hidden") == "true"
        ):
            found.append(element)
    return found


def discard_digest() -> str:
    """The digest of trafilatura's OVERALL_DISCARD_XPATH expressions (as first imported)."""
    return hashlib.sha256("\n".join(expression.path for expression in _original_discard).encode()).hexdigest()


def _source_digest() -> str:
    return hashlib.sha256(inspect.getsource(_original_prune).encode()).hexdigest()


def install() -> bool:
    """Patch trafilatura (idempotent); False, with a warning, when its release or source is not the checked one."""
    if main_extractor.prune_unwanted_nodes is prune_unwanted_nodes:
        return True
    checked = (
        trafilatura.__version__ == CHECKED_VERSION
        and _source_digest() == CHECKED_SOURCE_SHA256
        and discard_digest() == CHECKED_DISCARD_SHA256
    )
    if not checked or main_extractor.prune_unwanted_nodes is not _original_prune:
        warnings.warn(
            f"trafilatura {trafilatura.__version__} is not the release winnow's extraction speedups were checked "
            f"against ({CHECKED_VERSION}): extracting without them (same output, slower)",
            WorkerWarning,
            stacklevel=2,
        )
        return False
    main_extractor.prune_unwanted_nodes = prune_unwanted_nodes
    xpaths.OVERALL_DISCARD_XPATH[:] = [discarded_boxes, discarded_hidden]  # the list main_extractor and external hold
    utils.HTML_PARSER.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
        )
    )
    return True


def uninstall() -> None:
    """Restore trafilatura's own functions (to compare outputs)."""
    main_extractor.prune_unwanted_nodes = _original_prune
    xpaths.OVERALL_DISCARD_XPATH[:] = _original_discard
    utils.HTML_PARSER.set_element_class_lookup(HtmlElementClassLookup())
