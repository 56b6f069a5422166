"""Web-archive replay URLs: the original URL inside a Wayback Machine address.

Pages fetched through the Internet Archive's Wayback Machine carry its address,
``https://web.archive.org/web/<timestamp>[<mode>_]/<original URL>``: ``<timestamp>`` is 1-14 digits
(``YYYYMMDDhhmmss`` or a prefix of it), ``<mode>`` two letters and an underscore (``id_`` for the
page as captured, ``im_``, ``js_``, ``cs_``, ``if_``, ``fw_``...). Judged as it is, every such page is
on ``web.archive.org`` and passes a domain block list. :func:`original_url` returns the URL the archive
wraps, which the URL filter and URL dedup judge instead; the readers put it in the document's ``url``
and keep the address it was fetched from in ``meta.archive_url``.

Hosts: ``web.archive.org``, ``wayback.archive.org`` and ``archive.org`` (any port, either scheme, or no
scheme). The original keeps its query and fragment; a scheme (``http``, ``https``, ``ftp``) whose slashes
the archive collapsed (``http:/example.com``) gets both back, and an original without one is read as
``http://``. A wrapper around a wrapper is unwrapped to the innermost URL. Wildcard and calendar
addresses (``/web/*/example.com``) are not captures and are left as they are.
"""

from __future__ import annotations

import re

WAYBACK = re.compile(
    r"^(?:https?:/+)?(?:web\.|wayback\.)?archive\.org(?::\d+)?/web/\d{1,14}(?:[a-z]{2}_)?/(?P<original>.+)$",
    re.IGNORECASE,
)
SCHEME = re.compile(r"^(?P<scheme>https?|ftp):/*", re.IGNORECASE)
MAX_DEPTH = 4  # wrappers around wrappers unwrapped at most this many times


def original_url(url: str) -> str:
    """The URL a Wayback Machine address wraps (see the module docstring); any other URL unchanged."""
    for _ in range(MAX_DEPTH):
        match = WAYBACK.match(url)
        if match is None:
            return url
        inner = match["original"]
        scheme = SCHEME.match(inner)
        url = f"{scheme['scheme']}://{inner[scheme.end() :]}" if scheme else f"http://{inner}"
    return url


def unwrap(url: str | None) -> tuple[str | None, str | None]:
    """``(original URL, archive address)``: the address is None when ``url`` is not a Wayback capture."""
    if not url:
        return url, None
    original = original_url(url)
    return (original, url) if original != url else (url, None)
