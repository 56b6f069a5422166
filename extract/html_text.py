"""The function the extraction sandbox runs in its worker: trafilatura on one decoded HTML page.

Kept apart from :mod:`winnow.extract.stage` so that the worker imports trafilatura and nothing else of
winnow (a small process under the sandbox's memory cap).
"""

from __future__ import annotations

from typing import Any

import trafilatura


def extract_html(html: str, url: str | None, options: dict[str, Any]) -> str | None:
    """trafilatura's main text of ``html`` as plain text, or None when it finds none."""
    return trafilatura.extract(html, url=url, output_format="txt", **options)
