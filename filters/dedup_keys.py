"""The two exact dedup keys: a hash of the normalised text and the normalised URL.

Text: the document's tokens as :mod:`winnow.filters.minhash` defines them (NFKC, case folded, runs of word
characters, one token per character in scripts written without spaces) joined by one space, hashed
with 128-bit BLAKE2b. So case, whitespace and punctuation differences do not make two texts different;
digits and letters do. A text without tokens has no key (nothing to compare).

URL: scheme and host lower-cased, default ports (80, 443), the fragment and tracking parameters
(``utm_*``, ``fbclid``, ``gclid``, ``mc_eid``...) dropped, remaining query parameters sorted, an empty
path written as ``/``. Everything else, trailing slashes included, is kept as fetched. A Wayback Machine
address is keyed by the URL it wraps (:mod:`winnow.filters.archive_urls`), so captures of one page dedup
with each other and with the page fetched directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from winnow.filters.archive_urls import original_url
from winnow.filters.minhash import tokens

TRACKING_PARAMS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "igshid"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def text_key(text: str) -> bytes | None:
    """16-byte key of the normalised text; None when the text has no tokens."""
    return text_key_of_tokens(tokens(text))


def text_key_of_tokens(found: Sequence[bytes]) -> bytes | None:
    """:func:`text_key` from the text's tokens (computed once, shared with MinHash)."""
    if not found:
        return None
    return hashlib.blake2b(b" ".join(found), digest_size=16).digest()


def url_key(url: str | None) -> str | None:
    """The normalised URL (see the module docstring); None for a missing or unparsable URL."""
    if not url:
        return None
    try:
        parts = urlsplit(original_url(url.strip()))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host or any(c.isspace() for c in host):
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    )
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))
