"""The function the extraction sandbox runs in its worker: one decoded HTML page through the pre-pass
(:mod:`winnow.extract.prepass`), the exact word pre-rejection and trafilatura, with the fallback cascade.

Kept apart from :mod:`winnow.extract.stage` so that the worker imports trafilatura, selectolax and
datatrove's punctuation set and nothing else of winnow (a small process under the sandbox's memory cap).

The cascade (``fallback: auto``): trafilatura runs in its fast mode; when what it found is under
:data:`FALLBACK_SHARE` of the page's visible text, the main-text heuristics most likely missed (a
page not laid out as an article), and unless the page is mostly links (a navigation or listing page,
:data:`MAX_LINK_SHARE`, where the fallbacks found the same text) trafilatura runs again with its
fallback extractors (readability and jusText compared with its own result), whose answer is kept.
"""

from __future__ import annotations

from typing import Any

import trafilatura

from winnow.extract.prepass import link_share, prepass

FALLBACK_SHARE = 0.1  # fast output under this share of the visible text's characters -> run the fallbacks
MAX_LINK_SHARE = 0.5  # ... unless at least this share of the page's text is link text


def extract_page(
    html: str, url: str | None, options: dict[str, Any], plan: dict[str, Any]
) -> tuple[str | None, str, int | None]:
    """(text or None, how, word bound) for one page. ``options`` are trafilatura's; ``plan`` says
    ``prepass`` (bool), ``min_words`` (reject below this bound without extracting; None: never) and
    ``fallback`` (True, False or ``"auto"``, the cascade; auto needs the pre-pass). ``how`` is
    ``too_few_words`` (nothing extracted), ``trafilatura`` or ``trafilatura-fallback``."""
    words = visible = None
    if plan["prepass"]:
        page = prepass(html, count_to=plan["min_words"] or 1)  # without a floor the word count is not needed
        html, words, visible = page.html, page.words, page.visible_chars
        if plan["min_words"] is not None and words < plan["min_words"]:
            return None, "too_few_words", words
    fallback = plan["fallback"]
    text = trafilatura.extract(html, url=url, output_format="txt", fast=fallback is not True, **options)
    if fallback is True:
        return text, "trafilatura-fallback", words
    short = fallback == "auto" and visible is not None and len(text or "") < FALLBACK_SHARE * visible
    if short and link_share(html) < MAX_LINK_SHARE:
        text = trafilatura.extract(html, url=url, output_format="txt", fast=False, **options)
        return text, "trafilatura-fallback", words
    return text, "trafilatura", words
