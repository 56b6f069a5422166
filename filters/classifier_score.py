"""Scoring with a quality classifier, and the up-front check that a model file is usable.

A model is a fastText file (``.bin``/``.ftz``), an embedding + head model (``.json``,
:mod:`winnow.filters.classifier_embed`), an ensemble of models (``.json``,
:mod:`winnow.filters.classifier_ensemble`) or a Hugging Face sequence-classification folder
(:mod:`winnow.filters.classifier_hf`): :func:`load_classifier` and :func:`score_texts` take each, so the
quality stage and ``winnow classifier eval`` treat them alike (``label`` only matters to fastText).

:func:`check_model` is what every user of a classifier (``winnow classifier eval``, the quality stage)
calls before any work starts: it reads the file's structure in Python (magic number, format version,
header, dictionary, matrix sizes) so that a missing, truncated or foreign file fails with a
:class:`ModelError` naming the path and the problem (fastText itself loads a truncated model
silently, with garbage weights), then loads it once per process (``winnow.filters.fasttext_models.load_fasttext``)
and checks that it is a supervised model with the positive label. :func:`score_texts` gives each text
the probability of that label, after the same normalisation that training used
(``winnow.filters.classifier_text.normalize``).
"""

from __future__ import annotations

import functools
import json
import mmap
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from winnow.filters.classifier_text import normalize
from winnow.filters.fasttext_models import load_fasttext

if TYPE_CHECKING:
    import numpy as np

POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__lq"
BATCH = 1024  # texts per fastText predict call

_MAGIC = 793712314  # FASTTEXT_FILEFORMAT_MAGIC_INT32
_VERSION = 12  # FASTTEXT_VERSION of 0.9.x: the layout walked below (older files are left to fastText)
_ARGS = struct.Struct("<12id")  # dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, t
_DICT = struct.Struct("<iiiqq")  # size, nwords, nlabels, ntokens, pruneidx_size
_SUPERVISED = 3  # model_name::sup
_KSUB = 256  # product quantizer centroids per sub-quantizer (8 bits)


class ModelError(ValueError):
    """A classifier model file that cannot be used: ``path`` and ``problem`` say which and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"model {path}: {problem}")
        self.path = str(path)
        self.problem = problem


def positive_label(label: str) -> str:
    """``hq`` or ``__label__hq`` -> ``__label__hq``."""
    return label if label.startswith("__label__") else f"__label__{label}"


def check_model(path: str | Path, label: str = POSITIVE_LABEL) -> None:
    """Raise :class:`ModelError` unless ``path`` is a complete supervised fastText model with ``label``.

    Loads the model (once per process, shared with :func:`load_classifier`)."""
    load_classifier(path, label)


def load_classifier(path: str | Path, label: str = POSITIVE_LABEL) -> Any:
    """The model at ``path``, checked as :func:`check_model` describes (cached per process)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(path, "no such file")
    if path.is_dir() and (path / "config.json").is_file():
        return _load_hf_model(str(path.resolve()), label)
    if not path.is_file():
        raise ModelError(path, "not a file (nor a Hugging Face model folder with a config.json)")
    if path.suffix == ".json":
        return _load_head_model(str(path.resolve()))
    check_structure(path)
    try:
        model = load_fasttext(str(path))
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise ModelError(path, f"fastText cannot load it: {exc}") from None
    check_classifier(model, path, label)
    return model


@functools.cache
def _load_hf_model(path: str, label: str) -> Any:
    """A Hugging Face sequence-classification folder, loaded once per process and label."""
    from winnow.filters.classifier_hf import HFClassifier

    try:
        return HFClassifier(Path(path), label)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelError(path, f"not a usable sequence-classification model ({exc})") from None


@functools.cache
def _load_head_model(path: str) -> Any:
    """An embedding + head model or an ensemble, loaded once per process (ModelError naming what is wrong)."""
    from winnow.filters.classifier_embed import EmbeddingClassifier, EncoderError
    from winnow.filters.classifier_ensemble import ENSEMBLE_FORMAT, EnsembleClassifier

    try:
        document = json.loads(Path(path).read_text())
        if isinstance(document, dict) and document.get("format") == ENSEMBLE_FORMAT:
            try:
                return EnsembleClassifier(Path(path), document)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelError(path, f"not a usable ensemble ({exc})") from None
        return EmbeddingClassifier(Path(path))
    except ModelError:
        raise
    except (ValueError, KeyError, TypeError, OSError) as exc:
        problem = str(exc) if isinstance(exc, EncoderError) else f"not an embedding classifier ({exc})"
        raise ModelError(path, problem) from None


def check_classifier(model: Any, path: str | Path, label: str = POSITIVE_LABEL) -> None:
    """Raise :class:`ModelError` unless the loaded ``model`` is supervised and has ``label``."""
    if model.f.getArgs().model.name != "supervised":
        raise ModelError(path, "a word-vector (unsupervised) fastText model, not a classifier")
    label = positive_label(label)
    labels = list(model.get_labels())
    if label not in labels:
        shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
        raise ModelError(path, f"has no label {label} (its labels: {shown}); name the positive label")


def check_structure(path: Path) -> None:
    """Raise :class:`ModelError` unless the file is a fastText model whose size matches its own header.

    Walks fastText's binary layout (``FastText::saveModel``): signature, ``Args``, ``Dictionary``,
    input and output matrices (dense or product-quantised)."""
    size = path.stat().st_size
    if size < 8:
        raise ModelError(path, f"not a fastText model ({size} bytes)")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version = struct.unpack_from("<ii", data, 0)
        if magic != _MAGIC:
            raise ModelError(path, "not a fastText model (wrong magic number at the start of the file)")
        if version > _VERSION or version < 1:
            raise ModelError(path, f"fastText format version {version}; this fastText reads up to {_VERSION}")
        if version < _VERSION:
            return
        try:
            end = _walk(data, path)
        except struct.error:
            raise ModelError(path, f"truncated: the file ends ({size:,} bytes) inside its header") from None
    if end != size:
        what = "truncated" if end > size else "corrupt"
        raise ModelError(path, f"{what}: {size:,} bytes, but its header describes {end:,}")


def _walk(data: mmap.mmap, path: Path) -> int:
    """Offset where a model with this header ends (struct.error if the header itself is cut short)."""
    args = _ARGS.unpack_from(data, 8)
    if args[0] <= 0 or args[7] not in (1, 2, 3):
        raise ModelError(path, "corrupt header (impossible dimension or model type)")
    pos = 8 + _ARGS.size
    entries, _, _, _, prune = _DICT.unpack_from(data, pos)
    if entries < 0:
        raise ModelError(path, "corrupt dictionary header")
    pos += _DICT.size
    for _ in range(entries):
        zero = data.find(b"\0", pos)
        if zero < 0:
            raise struct.error
        pos = zero + 1 + 8 + 1  # word, NUL, count (int64), type (int8)
    pos += 8 * max(prune, 0)
    for _ in range(2):  # input matrix, then output matrix, each after its "quantised" flag
        if pos >= len(data):
            raise ModelError(path, f"truncated: {len(data):,} bytes, but its header describes more than {pos:,}")
        (quantised,) = struct.unpack_from("<?", data, pos)
        pos = _quant_end(data, pos + 1) if quantised else _dense_end(data, pos + 1, path)
    return pos


def _dense_end(data: mmap.mmap, pos: int, path: Path) -> int:
    rows, cols = struct.unpack_from("<qq", data, pos)
    if rows < 0 or cols < 0:
        raise ModelError(path, "corrupt matrix header")
    return pos + 16 + 4 * rows * cols


def _quant_end(data: mmap.mmap, pos: int) -> int:
    qnorm, rows, _, codesize = struct.unpack_from("<?qqi", data, pos)
    pos = _pq_end(data, pos + 21 + codesize)
    return _pq_end(data, pos + rows) if qnorm else pos


def _pq_end(data: mmap.mmap, pos: int) -> int:
    dim = struct.unpack_from("<iiii", data, pos)[0]
    return pos + 16 + 4 * dim * _KSUB


def score_texts(model: Any, texts: Sequence[str], label: str = POSITIVE_LABEL) -> np.ndarray:
    """Probability of ``label`` for each text (float32 in [0, 1], in order), texts normalised as in training.

    A label fastText does not return for a text counts as probability 0."""
    import numpy as np  # imported here: `winnow --help` imports this module (for the classifier's defaults)

    if hasattr(model, "score"):  # an embedding + head model
        return model.score(list(texts))
    label = positive_label(label)
    scores = np.zeros(len(texts), dtype=np.float32)
    for start in range(0, len(texts), BATCH):
        lines = [normalize(text) for text in texts[start : start + BATCH]]
        all_labels, all_probs = model.predict(lines, k=-1)
        for offset, (labels, probs) in enumerate(zip(all_labels, all_probs, strict=True)):
            if label in labels:
                scores[start + offset] = probs[labels.index(label)]
    return np.clip(scores, 0.0, 1.0)
