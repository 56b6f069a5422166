"""The HTML pre-pass before trafilatura: one lexbor parse (selectolax) that bounds the page's words, gives
the visible text the language check reads, and hands trafilatura a smaller, well-formed document.

Owns: :func:`prepass` and the word bound it computes, and :func:`visible_text` for a page that is not
pre-passed. The page is parsed once by lexbor (an HTML5 parser in C); scripts (except
``application/ld+json``, whose article bodies trafilatura's baseline reads), styles and comments go,
then the text that is left is measured (and its start kept for the language check), then elements trafilatura
deletes unread anyway (``noscript``, ``template``, ``svg``, ``iframe``, ``object``, ``embed``,
``link``, ``meta``) go, then the containers its tree cleaning deletes (``nav``, ``aside``,
``footer``, form controls, media: :data:`CLEANED`, trafilatura's ``MANUALLY_CLEANED`` less ``form``,
``figure``, ``time`` and ``math``, which it treats apart) unless no ``<p>`` would be left (in recall mode
trafilatura then keeps them), and the tree is serialised for trafilatura.

The bound: :func:`max_words` of everything trafilatura could read, that is all text nodes after
scripts, styles and comments are gone, every ``application/ld+json`` script, every ``<template>``'s
content and Discourse's ``data-preloaded`` attribute, each text node apart from its neighbours. A word
the filters count (a token with a character outside datatrove's ``PUNCTUATION_SET``, split at
whitespace by :mod:`winnow.filters.word_tokenizer`) holds a run of ``\\w`` characters or a symbol
outside that set; extraction only drops text, joins neighbouring nodes and adds whitespace or
punctuation between them, so it can never have more such runs and symbols than the page. A page
whose bound is under the shortest document the heuristic filters keep cannot be kept: the extract
stage rejects it (``too_few_words``) without running trafilatura.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datatrove.utils.text import PUNCTUATION_SET
from selectolax.lexbor import LexborHTMLParser

SCRIPTS = "script:not([type='application/ld+json' i]), style"
UNREAD = "noscript, template, svg, iframe, object, embed, link, meta"  # trafilatura deletes these unread
CLEANED = (
    "aside, footer, nav, menu, menuitem, applet, audio, canvas, map, picture, video, source, track, area, blink, "
    "button, datalist, dialog, fieldset, input, ins, label, legend, marquee, optgroup, option, output, param, "
    "progress, rp, rt, rtc, select, textarea, use, frame, frameset"
)
# a run of word characters, or one character that is neither a word character, whitespace nor punctuation
_PUNCT = "".join(sorted(PUNCTUATION_SET))
WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s" + re.escape(_PUNCT) + "]")
TAG = re.compile(r"<[^>]*>")  # on lexbor's own serialisation, where text never holds a raw "<"


@dataclass(frozen=True)
class Prepared:
    """The pruned page for trafilatura, the bound on its words and its visible text (whitespace folded,
    cut to ``text_chars``) with its full length."""

    html: str
    words: int
    visible_text: str
    visible_chars: int


def max_words(text: str, limit: int | None = None) -> int:
    """Runs of word characters plus symbols outside the punctuation set: at least the filters' word count.
    With ``limit`` the count stops there (only whether a page is under a floor matters)."""
    if limit is None:
        return len(WORD_OR_SYMBOL.findall(text))
    count = 0
    for count, _ in enumerate(WORD_OR_SYMBOL.finditer(text), 1):
        if count >= limit:
            break
    return count


def link_share(html: str) -> float:
    """The share of a page's visible body text (whitespace folded) that is link text; 0 for an empty page."""
    tree = LexborHTMLParser(html)
    body = " ".join((tree.body.text(separator=" ") if tree.body else "").split())
    if not body:
        return 0.0
    return min(1.0, sum(len(" ".join(a.text(separator=" ").split())) for a in tree.css("a")) / len(body))


def _parsed_without_scripts(html: str) -> LexborHTMLParser:
    """``html`` parsed, without scripts (but JSON-LD), styles and comments."""
    tree = LexborHTMLParser(html)
    for node in tree.css(SCRIPTS):
        node.decompose()
    for node in [n for n in tree.root.traverse(include_text=False) if n.is_comment_node] if tree.root else []:
        node.decompose()
    return tree


def _drop(tree: LexborHTMLParser, selector: str) -> None:
    for node in tree.css(selector):
        node.decompose()


def _text(tree: LexborHTMLParser) -> str:
    return tree.root.text(separator=" ") if tree.root else ""


def visible_text(html: str, text_chars: int) -> str:
    """The first ``text_chars`` characters of a page's visible text (as :func:`prepass` gives it), whitespace
    folded, for a page that is not pre-passed."""
    return " ".join(_text(_parsed_without_scripts(html)).split())[:text_chars]


def prepass(html: str, count_to: int | None = None, text_chars: int = 0) -> Prepared:
    """Parse ``html`` with lexbor, bound its words, drop what trafilatura never reads; see the module doc.
    ``count_to``: the words are counted up to about this many (exact below it); None: all of them.
    ``text_chars``: how much of the visible text to return (the language check reads it)."""
    tree = _parsed_without_scripts(html)
    text = _text(tree)
    words = max_words(text, count_to)
    for node in tree.css("template"):  # lexbor keeps a template's content out of the tree's text
        words += max_words(TAG.sub(" ", node.html or ""), count_to)
    for node in tree.css("[data-preloaded]"):
        words += max_words(node.attributes.get("data-preloaded") or "", count_to)
    _drop(tree, UNREAD)
    folded = " ".join(text.split())
    if tree.css_first("p") is not None:
        _drop(tree, CLEANED)
        if tree.css_first("p") is None:  # every <p> was in them: trafilatura's recall mode keeps them, so do we
            tree = _parsed_without_scripts(html)
            _drop(tree, UNREAD)
    return Prepared(tree.html or "", words, folded[:text_chars], len(folded))
