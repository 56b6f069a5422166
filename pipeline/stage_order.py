"""The stages' names in flow order, for code that reads run folders without loading the manifest models.

``pipeline/manifest.py`` checks at import that its ``Stages`` fields are these, in this order.
"""

from __future__ import annotations

STAGE_ORDER: tuple[str, ...] = ("ocr", "extract", "heuristics", "dedup", "quality", "rephrase", "mix")
