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
3. Eight of trafilatura's XPath expressions (the boilerplate and hidden-element discards, comment
   sections, appended articles, three of the body searches, the baseline extractor's cleaning) test
   attributes with EXSLT's ``re:test``, which lxml runs as Python callbacks on every element;
   :mod:`winnow.extract.trafilatura_matchers` selects the same elements looping over the tree once, and
   its matchers take the expressions' places.

All are installed only on the trafilatura release, the function source and the expressions they were
checked against (:data:`CHECKED_VERSION`, :data:`CHECKED_SOURCE_SHA256`, :data:`CHECKED_EXPRESSIONS_SHA256`);
on any other, nothing is patched and a warning says so in the task's log
(:class:`~winnow.pipeline.sandbox.WorkerWarning`; extraction stays correct, only slower).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import trafilatura
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlElementClassLookup, HtmlEntity, HtmlProcessingInstruction
from trafilatura import baseline, htmlprocessing, main_extractor, utils, xpaths

from winnow.pipeline.sandbox import WorkerWarning

CHECKED_VERSION = "2.3.1"
CHECKED_SOURCE_SHA256 = "4731f8e24ef86449c2714a6257d2ff892ff12a6a3d544d7ca87d6536fab29915"
CHECKED_EXPRESSIONS_SHA256 = "00f35de2f52fb94fa33433d9fe264fa16a809951daa2ecfda709a384583c2553"
_original_prune = htmlprocessing.prune_unwanted_nodes


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


def _source_digest() -> str:
    return hashlib.sha256(inspect.getsource(_original_prune).encode()).hexdigest()


def install() -> bool:
    """Patch trafilatura (idempotent); False, with a warning, when its release or source is not the checked one."""
    if main_extractor.prune_unwanted_nodes is prune_unwanted_nodes:
        return True
    checked = trafilatura.__version__ == CHECKED_VERSION and _source_digest() == CHECKED_SOURCE_SHA256
    if checked:  # imported only now: it builds its patterns from this release's private token lists
        from winnow.extract import trafilatura_matchers

        checked = trafilatura_matchers.expressions_digest() == CHECKED_EXPRESSIONS_SHA256
    if not checked or main_extractor.prune_unwanted_nodes is not _original_prune:
        warnings.warn(
            f"trafilatura {trafilatura.__version__} is not the release winnow's extraction speedups were checked "
            f"against ({CHECKED_VERSION}): extracting without them (same output, slower)",
            WorkerWarning,
            stacklevel=2,
        )
        return False
    main_extractor.prune_unwanted_nodes = prune_unwanted_nodes
    for name, entries in trafilatura_matchers.MATCHERS.items():  # in place: the lists trafilatura's modules hold
        expressions = getattr(xpaths, name)
        for index, matcher in entries.items():
            expressions[index] = matcher
    baseline.BASIC_CLEAN_XPATH = trafilatura_matchers.basic_clean_sections
    utils.HTML_PARSER.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
        )
    )
    return True


def uninstall() -> None:
    """Restore trafilatura's own functions (to compare outputs); nothing to do where they were not installed."""
    if main_extractor.prune_unwanted_nodes is not prune_unwanted_nodes:
        return
    from winnow.extract import trafilatura_matchers

    main_extractor.prune_unwanted_nodes = _original_prune
    for name, expressions in trafilatura_matchers.ORIGINAL.items():
        getattr(xpaths, name)[:] = expressions
    baseline.BASIC_CLEAN_XPATH = trafilatura_matchers.ORIGINAL_BASIC_CLEAN
    utils.HTML_PARSER.set_element_class_lookup(HtmlElementClassLookup())
