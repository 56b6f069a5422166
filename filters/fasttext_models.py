"""fastText model files: the language-ID model winnow ships, loading a model once per process, and its
top label for a text.

Kept free of datatrove's pipeline classes so that the extraction sandbox's worker (which checks a
page's language on the pre-pass's visible text before trafilatura) stays a small process; the steps
that annotate and select by language are in :mod:`winnow.filters.language`. The default model is the
quantised ``lid.176.ftz`` (``filters/models/``, CC BY-SA 3.0, see its ``NOTICE.md``): nothing is
downloaded.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any

PREDICT_CHARS = 20_000  # a document's language is read from its first this many characters
PRECHECK_CHARS = 10_000  # a page's, before extraction, from this many characters of its visible text
PRECHECK_FIRST_CHARS = 1_000  # ... unless its first this many read as a kept language (then it passes)


def default_lid_model() -> Path:
    """Path of the lid.176.ftz that ships with winnow (package data of ``winnow.filters``)."""
    return Path(str(importlib.resources.files("winnow.filters") / "models" / "lid.176.ftz"))


@cache
def load_fasttext(path: str) -> Any:
    """Load a fastText model once per process (fastText's stderr warning silenced)."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(path)


def identify(model: Any, text: str) -> tuple[str, float]:
    """Top language label (without ``__label__``) and its probability."""
    sample = text[:PREDICT_CHARS].replace("\n", " ")
    labels, scores = model.predict(sample, k=1)
    if not labels:
        return "und", 0.0
    return labels[0].removeprefix("__label__"), float(min(scores[0], 1.0))


def precheck_language(
    model: Any, visible_text: str, keep: Collection[str], min_score: float
) -> tuple[str, float] | None:
    """(language, score) when a page's visible text is confidently in a language outside ``keep``, else None.

    The start of the text (:data:`PRECHECK_FIRST_CHARS`) is read first: a page whose start reads as a kept
    language passes at once (most pages of a run), for a fraction of the cost of reading all. Only the whole sample
    (:data:`PRECHECK_CHARS`) can reject, so this rejects no page the whole-sample check alone would keep;
    a page it lets pass is judged again by the language filter after extraction."""
    if len(visible_text) > PRECHECK_FIRST_CHARS and identify(model, visible_text[:PRECHECK_FIRST_CHARS])[0] in keep:
        return None
    language, score = identify(model, visible_text[:PRECHECK_CHARS])
    return (language, score) if language not in keep and score >= min_score else None
