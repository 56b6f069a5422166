"""Labelled texts for classifier training and evaluation: ``--positive`` / ``--negative`` arguments into texts.

An argument is one of:

- a file: ``.jsonl`` (optionally ``.gz``/``.zst``/``.bz2``/``.xz``) or ``.parquet`` (one document per row,
  text in ``text_field``; a Parquet file in winnow's document schema is read as is), or ``.txt`` (the whole
  file is one document);
- a glob of such files (``data/*.jsonl.gz``; ``**`` recurses);
- a stage folder of an earlier run (``out/demo/stages/dedup``: its ``data/*.parquet``), or a run folder
  (``out/demo``) with ``stage`` naming the stage;
- any other folder: the supported files directly in it.

Arguments are resolved to files first (:func:`resolve_source`, cheap, so a bad argument fails before any
reading), then read with winnow's own document reader (:func:`read_texts`). Rows the reader flags as
unreadable (``bad_json``, ``missing_text``, ``input_unreadable``) are skipped and counted per source, as
are documents whose text is only whitespace. Texts are kept up to ``winnow.filters.classifier_text.MAX_CHARS``
characters (all the classifier ever sees); with ``limit``, a class keeps a uniform random sample of that
many (reservoir sampling), so memory stays bounded however large the sources are.

A labelled file (``--labels``: human judgments, LLM annotations) is read by :func:`read_labelled`: one
document per JSONL line or Parquet row with its text in ``text_field`` and a number (or true/false) in
``label_field``. Rows that are not JSON objects, lack a text, or whose label is missing or not a number
are skipped and counted by reason; nothing is dropped unseen.
"""

from __future__ import annotations

import glob
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from winnow.filters.classifier_text import MAX_CHARS
from winnow.pipeline.readers import DocumentFile, read_document_file

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz")
SUPPORTED = (*JSONL_SUFFIXES, ".parquet", ".txt")


class SourceError(ValueError):
    """A ``--positive`` / ``--negative`` argument that names no readable documents."""


@dataclass(frozen=True)
class ResolvedSource:
    """One argument and the files it names: document files, and ``.txt`` files (one document each)."""

    argument: str
    files: tuple[DocumentFile | Path, ...]


@dataclass
class SourceCount:
    """What reading one argument gave: documents kept, rows skipped as unreadable (by reason) or empty."""

    argument: str
    files: int
    documents: int = 0
    read_errors: int = 0
    empty: int = 0
    error_reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.argument,
            "files": self.files,
            "documents": self.documents,
            "read_errors": self.read_errors,
            "read_error_reasons": dict(self.error_reasons),
            "empty": self.empty,
        }


@dataclass
class ClassTexts:
    """The texts of one class, the source (index into ``sources``) of each, and the per-source counts."""

    texts: list[str]
    origins: list[int]
    sources: list[SourceCount]

    @property
    def documents(self) -> int:
        """Documents read (before any sampling)."""
        return sum(s.documents for s in self.sources)


def resolve_source(argument: str, text_field: str = "text", stage: str | None = None) -> ResolvedSource:
    """The files ``argument`` names; :class:`SourceError` if it names none or an unsupported file."""
    path = Path(argument)
    if glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            raise SourceError(f"{argument!r} matches no file")
        files = [f for m in matches for f in _expand(Path(m), text_field, stage, strict=False)]
    elif path.exists():
        files = _expand(path, text_field, stage, strict=True)
    else:
        raise SourceError(f"{argument}: no such file or folder")
    if not files:
        raise SourceError(f"{argument}: no {', '.join(SUPPORTED)} file and no stage output there")
    return ResolvedSource(argument, tuple(files))


def _expand(path: Path, text_field: str, stage: str | None, strict: bool) -> list[DocumentFile | Path]:
    if path.is_file():
        if path.name.endswith(SUPPORTED):
            return [_file(path, text_field)]
        if strict:
            raise SourceError(f"{path}: unsupported file type (use {', '.join(SUPPORTED)})")
        return []
    if (path / "stages").is_dir():
        stages = sorted(p.name for p in (path / "stages").iterdir() if (p / "data").is_dir())
        if stage is None:
            raise SourceError(f"{path} is a run folder: name the stage to read with --stage ({', '.join(stages)})")
        if stage not in stages:
            raise SourceError(f"{path} has no output of stage {stage!r} (stages: {', '.join(stages) or 'none'})")
        path = path / "stages" / stage
    if (path / "data").is_dir():
        return [DocumentFile(str(p), "stage", 1) for p in sorted((path / "data").glob("*.parquet"))]
    return [_file(p, text_field) for p in sorted(path.iterdir()) if p.is_file() and p.name.endswith(SUPPORTED)]


def _file(path: Path, text_field: str) -> DocumentFile | Path:
    if path.name.endswith(".txt"):
        return path
    kind = "parquet" if path.name.endswith(".parquet") else "jsonl"
    return DocumentFile(str(path), kind, 1, source=path.name, text_field=text_field, id_field=None, url_field=None)


def read_texts(
    sources: Sequence[ResolvedSource],
    limit: int | None = None,
    rng: random.Random | None = None,
    on_document: Callable[[], None] | None = None,
) -> ClassTexts:
    """Texts of every document of ``sources`` (in order), or a uniform sample of ``limit`` of them drawn
    with ``rng``. ``on_document`` is called once per row read (documents, errors and empties alike)."""
    rng = rng or random.Random(0)
    result = ClassTexts([], [], [SourceCount(s.argument, len(s.files)) for s in sources])
    seen = 0
    for index, source in enumerate(sources):
        count = result.sources[index]
        for file in source.files:
            for text, reason in _read_file(file):
                if on_document is not None:
                    on_document()
                if reason is not None:
                    count.read_errors += 1
                    count.error_reasons[reason] += 1
                    continue
                if not text.strip():
                    count.empty += 1
                    continue
                count.documents += 1
                seen += 1
                if limit is None or len(result.texts) < limit:
                    result.texts.append(text[:MAX_CHARS])
                    result.origins.append(index)
                elif (slot := rng.randrange(seen)) < limit:
                    result.texts[slot] = text[:MAX_CHARS]
                    result.origins[slot] = index
    return result


def _read_file(file: DocumentFile | Path) -> Iterator[tuple[str, str | None]]:
    """(text, None) per document, ("", reason) per unreadable row."""
    if isinstance(file, Path):
        try:
            yield file.read_text(encoding="utf-8-sig"), None
        except (OSError, UnicodeDecodeError):
            yield "", "input_unreadable"
        return
    for doc in read_document_file(file):
        if doc.metadata.get("read_error"):
            yield "", str(doc.metadata.get("reason"))
        else:
            yield doc.text, None


@dataclass
class LabelledTexts:
    """The documents of a labelled file: texts, their label values, and the rows skipped (by reason)."""

    path: str
    texts: list[str]
    values: list[float]
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "documents": len(self.texts), "skipped": dict(self.skipped)}


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label") -> LabelledTexts:
    """Every document of a labelled ``.jsonl`` (optionally compressed) or ``.parquet`` file, texts cut to
    ``MAX_CHARS``; :class:`SourceError` when the file is missing, of another type or holds no usable row."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if not path.name.endswith((*JSONL_SUFFIXES, ".parquet")):
        raise SourceError(f"{path}: unsupported labels file (use {', '.join((*JSONL_SUFFIXES, '.parquet'))})")
    result = LabelledTexts(str(path), [], [])
    for row in _labelled_rows(path, result.skipped):
        text, value = row.get(text_field), row.get(label_field)
        if not isinstance(text, str) or not text.strip():
            result.skipped["missing_text"] += 1
            continue
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            result.skipped["bad_label"] += 1
            continue
        result.texts.append(text[:MAX_CHARS])
        result.values.append(float(value))
    if not result.texts:
        raise SourceError(
            f"{path}: no document with a text in {text_field!r} and a number in {label_field!r} "
            f"(skipped: {dict(result.skipped) or 'none'})"
        )
    return result


def _labelled_rows(path: Path, skipped: Counter[str]) -> Iterator[dict[str, Any]]:
    """The file's rows as dicts; lines that are not JSON objects are counted in ``skipped`` as ``bad_json``."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    with fsspec.open(str(path), "rt", compression="infer", encoding="utf-8-sig") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                yield row
            else:
                skipped["bad_json"] += 1
