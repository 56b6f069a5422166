"""The function the extraction sandbox runs in its worker: one decoded HTML page through the pre-pass
(:mod:`winnow.extract.prepass`), the language check, the exact word pre-rejection and trafilatura, with
the fallback cascade.

Kept apart from :mod:`winnow.extract.stage` so that the worker imports trafilatura, selectolax,
fastText and datatrove's punctuation set and nothing else of winnow (a small process under the
sandbox's memory cap). Importing it installs :mod:`winnow.extract.trafilatura_speedups`.

The language check reads the visible text the pre-pass's lexbor parse gives (a page that is not
pre-passed is parsed for it alone): a page confidently in a language the run does not keep ends here,
before its words are bounded or trafilatura runs.

The cascade (``fallback: auto``): trafilatura runs in its fast mode; when what it found is under
:data:`FALLBACK_SHARE` of the page's visible text, the main-text heuristics most likely missed (a
page not laid out as an article), and unless the page is mostly links (a navigation or listing page,
:data:`MAX_LINK_SHARE`, where the fallbacks found the same text) trafilatura runs again with its
fallback extractors (readability and jusText compared with its own result), whose answer is kept.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

import trafilatura

from winnow.extract import trafilatura_speedups
from winnow.extract.prepass import link_share, prepass, visible_text
from winnow.filters.fasttext_models import PRECHECK_CHARS, load_fasttext, precheck_language

FALLBACK_SHARE = 0.1  # fast output under this share of the visible text's characters -> run the fallbacks
MAX_LINK_SHARE = 0.5  # ... unless at least this share of the page's text is link text

trafilatura_speedups.install()


class LanguageCheck(TypedDict):
    """The check before extraction: the fastText model's path, the languages kept, the score that is sure."""

    model: str
    keep: list[str]
    min_score: float


class PageOutcome(TypedDict):
    """What became of one page: ``how`` is ``language_precheck`` or ``too_few_words`` (nothing extracted),
    ``trafilatura`` or ``trafilatura-fallback``; ``words`` the word bound (None without a pre-pass);
    ``language`` the (label, score) that rejected it."""

    text: str | None
    how: Literal["language_precheck", "too_few_words", "trafilatura", "trafilatura-fallback"]
    words: int | None
    language: tuple[str, float] | None


def extract_page(html: str, url: str | None, options: dict[str, Any], plan: dict[str, Any]) -> PageOutcome:
    """One page's outcome. ``options`` are trafilatura's; ``plan`` says ``prepass`` (bool), ``language``
    (a :class:`LanguageCheck` or None), ``min_words`` (reject below this bound without extracting; None:
    never) and ``fallback`` (True, False or ``"auto"``, the cascade; auto needs the pre-pass)."""
    words = visible = None
    sample = ""
    check: LanguageCheck | None = plan["language"]
    text_chars = PRECHECK_CHARS if check else 0
    if plan["prepass"]:
        page = prepass(html, count_to=plan["min_words"] or 1, text_chars=text_chars)  # no floor: count no words
        html, words, visible, sample = page.html, page.words, page.visible_chars, page.visible_text
    elif check:
        sample = visible_text(html, text_chars)
    if check:
        other = precheck_language(load_fasttext(check["model"]), sample, check["keep"], check["min_score"])
        if other:
            return PageOutcome(text=None, how="language_precheck", words=words, language=other)
    if words is not None and plan["min_words"] is not None and words < plan["min_words"]:  # words: pre-passed
        return PageOutcome(text=None, how="too_few_words", words=words, language=None)
    fallback = plan["fallback"]
    text = trafilatura.extract(html, url=url, output_format="txt", fast=fallback is not True, **options)
    how: Literal["trafilatura", "trafilatura-fallback"] = "trafilatura-fallback" if fallback is True else "trafilatura"
    short = fallback == "auto" and visible is not None and len(text or "") < FALLBACK_SHARE * visible
    if short and link_share(html) < MAX_LINK_SHARE:
        text = trafilatura.extract(html, url=url, output_format="txt", fast=False, **options)
        how = "trafilatura-fallback"
    return PageOutcome(text=text, how=how, words=words, language=None)
