"""Benchmark decontamination: documents that share long word n-grams with evaluation sets.

**Normalisation**, the same for documents and evaluation text: the tokens of
:func:`winnow.filters.minhash.tokens` (NFKC, case folded; a token is a run of word characters, one
character per token in scripts written without spaces; punctuation, symbols and whitespace are never
tokens). So ``Janet’s ducks lay 16 eggs`` is ``janet s ducks lay 16 eggs``, and code is its
identifiers, keywords and numbers (``List[float]`` is ``list float``): one tokenisation serves prose
and code sets, and a document is tokenised once whatever the sets. An n-gram is ``n`` consecutive
tokens (default 13, as in GPT-3's and OLMo's decontamination). A document's n-grams run across its
lines and paragraphs; an evaluation set's never cross from one entry (a row's field, or one string of
a list) into the next. An entry with fewer than ``n`` tokens has no n-gram and cannot be found: such
entries are counted (``short``) and logged; a set with no n-gram at all is refused.

**Index**, built once per worker process and shared by its tasks (cached by ``n`` and each set's
path, fields, size and modification time): the sorted, distinct 64-bit hashes of every set's n-grams
(8 bytes each) and, per hash, a bit mask of the sets holding it (8 more), plus a 4 MB table of which
22-bit hash prefixes occur, so that most of a document's n-grams are ruled out by one lookup before the
binary search (GSM8K + HumanEval: 1.9 MB of hashes and masks). A token's hash is xxh64 of its UTF-8
bytes; an n-gram's is the sum over positions of token hash x a fixed odd 64-bit multiplier per
position (mod 2**64), mixed by MurmurHash3's 64-bit finaliser (a bijection).

**False positives** come only from hash collisions; matches are not confirmed against the text. Token
hashes behave as random 64-bit values, so a document n-gram that is in no set has a stored set's hash
with probability about ``N / 2**64`` for ``N`` stored hashes (up to a few times more for n-grams that
repeat each other's tokens in another order, whose difference is a multiple of an even number). For
GSM8K's test questions and answers and HumanEval's prompts (``N`` = 120,749 at n = 13) that is
about 7e-15 per n-gram, 7e-12 per 1,000-word document: one false match in ~150 billion such documents.

**Decision**: per set, the number of distinct document n-grams found in it. The set with the most
(ties: manifest order) is the document's ``decontam_set`` and its count ``decontam_matches`` (0 and
null for a clean document; revisit stubs get neither). A document with ``decontam_matches >=
min_matches`` is contaminated; with ``action: drop`` it is rejected as ``decontam:<set>`` with the
detail ``<set>: <k> shared <n>-grams, first '<normalised n-gram>'`` (then ``; <other set>: <k>`` for
each other set it shares n-grams with).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from loguru import logger

from winnow.filters.heuristics import DETAIL_KEY
from winnow.filters.minhash import TokenHashes, tokens
from winnow.pipeline.manifest import DecontamConfig, DecontamSet
from winnow.pipeline.outcomes import ErrorsAsRecords
from winnow.pipeline.revisits import PassRevisitStubs

MATCHES = "decontam_matches"
SET = "decontam_set"
ATTRIBUTES: dict[str, pa.DataType] = {MATCHES: pa.int64(), SET: pa.string()}
_SEED = 0x5EED_DEC0  # the position multipliers: fixed, so hashes agree across processes and runs
PREFIX_BITS = 22  # a 4 MB table of the hashes' top bits: most document n-grams are ruled out by one lookup
_FMIX = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


class EvalSetError(ValueError):
    """An evaluation set that cannot be used; ``field`` is the DecontamSet field at fault (path or fields),
    ``index`` the set's position in the configuration (set by :class:`EvalIndex`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.index = 0


# ------------------------------------------------------------------------------------------ hashing


class NgramHasher:
    """64-bit hashes of a token sequence's n-grams (see the module docstring)."""

    def __init__(self, n: int) -> None:
        self.n = n
        rng = np.random.default_rng(_SEED)
        self._mult = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._token_hashes = TokenHashes()

    def hashes(self, found: Sequence[bytes]) -> np.ndarray:
        """One uint64 per n-gram, in order (``len(found) - n + 1`` values; none for fewer than ``n`` tokens)."""
        count = len(found) - self.n + 1
        if count <= 0:
            return np.empty(0, dtype=np.uint64)
        values = np.fromiter(map(self._token_hashes.__getitem__, found), dtype=np.uint64, count=len(found))
        combined = values[:count] * self._mult[0]
        for position in range(1, self.n):
            combined += values[position : position + count] * self._mult[position]
        shift, m1, m2 = _FMIX
        combined ^= combined >> shift
        combined *= m1
        combined ^= combined >> shift
        combined *= m2
        combined ^= combined >> shift
        return combined


# ------------------------------------------------------------------------------------- evaluation sets


@dataclass(frozen=True)
class SetSummary:
    """What one evaluation set contributed to the index."""

    name: str
    rows: int
    entries: int
    short: int  # entries with fewer than n tokens (cannot be found)
    ngrams: int  # distinct n-gram hashes


def _rows(path: str, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) of every row of a JSON Lines or Parquet file; EvalSetError when it cannot be read."""
    if not os.path.isfile(path):
        raise EvalSetError("path", f"{path}: no such file")
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            with fsspec.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                missing = [f for f in fields if f not in parquet.schema_arrow.names]
                if missing:
                    names = ", ".join(parquet.schema_arrow.names)
                    raise EvalSetError("fields", f"{path} has no column {missing[0]!r} (columns: {names})")
                number = 0
                for batch in parquet.iter_batches(columns=list(fields), batch_size=4096):
                    for row in batch.to_pylist():
                        number += 1
                        yield f"row {number}", row
            return
        with fsspec.open(path, "rt", compression="infer", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise EvalSetError("path", f"{path} line {number} is not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise EvalSetError("path", f"{path} line {number} is not a JSON object")
                yield f"line {number}", row
    except EvalSetError:
        raise
    except (OSError, EOFError, ValueError, pa.ArrowException) as exc:  # ValueError: bytes that are not UTF-8
        raise EvalSetError("path", f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _entries(path: str, where: str, row: dict[str, Any], field: str) -> list[str]:
    if field not in row:
        raise EvalSetError("fields", f"{path} {where} has no field {field!r} (fields: {', '.join(map(str, row))})")
    value = row[field]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise EvalSetError("fields", f"{path} {where}: field {field!r} is {type(value).__name__}, not text")


def set_ngrams(eval_set: DecontamSet, hasher: NgramHasher) -> tuple[np.ndarray, SetSummary]:
    """The distinct n-gram hashes of one set (sorted) and its summary; EvalSetError for a missing file, no rows,
    a row without a named field (or not text there), or no entry long enough to give an n-gram."""
    parts: list[np.ndarray] = []
    rows = entries = short = 0
    for where, row in _rows(eval_set.path, eval_set.fields):
        rows += 1
        for field in eval_set.fields:
            for text in _entries(eval_set.path, where, row, field):
                entries += 1
                grams = hasher.hashes(tokens(text))
                short += not len(grams)
                parts.append(grams)
    if rows == 0:
        raise EvalSetError("path", f"{eval_set.path} holds no rows")
    hashes = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
    if not len(hashes):
        fields = ", ".join(eval_set.fields)
        raise EvalSetError("fields", f"{eval_set.path}: no entry of {fields} has {hasher.n} tokens (nothing to find)")
    return hashes, SetSummary(eval_set.name, rows, entries, short, len(hashes))


# ---------------------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class Match:
    """A document's overlap with the sets: per set (manifest order) distinct shared n-grams and the first one."""

    names: tuple[str, ...]
    counts: tuple[int, ...]
    firsts: tuple[str | None, ...]

    @property
    def best(self) -> int:
        """Index of the set with the most shared n-grams (the first such in manifest order)."""
        return max(range(len(self.counts)), key=lambda k: (self.counts[k], -k))

    @property
    def name(self) -> str:
        return self.names[self.best]

    @property
    def count(self) -> int:
        return self.counts[self.best]

    def detail(self, n: int) -> str:
        """``<set>: <k> shared <n>-grams, first '<n-gram>'`` and ``; <set>: <k>`` for the other sets that matched."""
        best = self.best
        text = f"{self.names[best]}: {self.counts[best]} shared {n}-grams, first {self.firsts[best]!r}"
        others = [f"{self.names[k]}: {c}" for k, c in enumerate(self.counts) if c and k != best]
        return "; ".join([text, *others])


class EvalIndex:
    """The n-gram hashes of every set, sorted, with a bit mask of the sets holding each."""

    def __init__(self, config: DecontamConfig) -> None:
        """Read every set of ``config`` (EvalSetError naming the file and field when one cannot be used)."""
        self.n = config.n
        self.hasher = NgramHasher(config.n)
        self.names = tuple(s.name for s in config.sets)
        per_set = []
        self.summaries: list[SetSummary] = []
        for position, eval_set in enumerate(config.sets):
            try:
                hashes, summary = set_ngrams(eval_set, self.hasher)
            except EvalSetError as exc:
                exc.index = position
                raise
            per_set.append(hashes)
            self.summaries.append(summary)
        every = np.concatenate(per_set)
        bits = np.concatenate([np.full(len(h), 1 << k, dtype=np.uint64) for k, h in enumerate(per_set)])
        self.hashes, inverse = np.unique(every, return_inverse=True)
        self.masks = np.zeros(len(self.hashes), dtype=np.uint64)
        np.bitwise_or.at(self.masks, inverse, bits)
        self.prefix = np.zeros(1 << PREFIX_BITS, dtype=np.bool_)
        self.prefix[self.hashes >> np.uint64(64 - PREFIX_BITS)] = True

    def match(self, text: str) -> Match | None:
        """The document's overlap with the sets, or None when it shares no n-gram with any."""
        found = tokens(text)
        grams = self.hasher.hashes(found)
        if not len(grams):
            return None
        candidates = np.flatnonzero(self.prefix[grams >> np.uint64(64 - PREFIX_BITS)])
        if not len(candidates):
            return None
        where = np.searchsorted(self.hashes, grams[candidates])
        np.minimum(where, len(self.hashes) - 1, out=where)
        hit = self.hashes[where] == grams[candidates]
        positions = candidates[hit]
        if not len(positions):
            return None
        masks = self.masks[where[hit]]
        counts, firsts = [], []
        for k in range(len(self.names)):
            in_set = positions[(masks >> np.uint64(k)) & np.uint64(1) == 1]
            counts.append(len(np.unique(grams[in_set])))
            first = int(in_set[0]) if len(in_set) else None
            firsts.append(None if first is None else self._text(found, first))
        return Match(self.names, tuple(counts), tuple(firsts))

    def _text(self, found: Sequence[bytes], start: int) -> str:
        """The normalised n-gram at token ``start``: its tokens joined by single spaces."""
        return b" ".join(found[start : start + self.n]).decode("utf-8", "replace")


_INDEXES: dict[tuple[Any, ...], EvalIndex] = {}


def _index_key(config: DecontamConfig) -> tuple[Any, ...]:
    def stamp(path: str) -> tuple[int, int] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns

    return (config.n, tuple((s.name, s.path, tuple(s.fields), stamp(s.path)) for s in config.sets))


def load_index(config: DecontamConfig) -> EvalIndex:
    """The index of ``config``'s sets, built on first use in this process and kept (one per worker)."""
    key = _index_key(config)
    index = _INDEXES.get(key)
    if index is None:
        index = _INDEXES[key] = EvalIndex(config)
        for s in index.summaries:
            note = f", {s.short} shorter than {config.n} tokens (cannot be found)" if s.short else ""
            logger.info(f"decontam: {s.name}: {s.rows} rows, {s.entries} entries{note}, {s.ngrams} distinct n-grams")
    return index


def check_sets(config: DecontamConfig) -> None:
    """Read each set as the stage will (EvalSetError naming the file and field); builds and keeps the index."""
    load_index(config)


# ---------------------------------------------------------------------------------------- the step


class _Decontam(BaseFilter):
    """Annotates every document with its overlap; rejects contaminated ones when the action is ``drop``."""

    name = "🧪 decontam"

    def __init__(self, config: DecontamConfig, exclusion_writer: DiskWriter | None = None) -> None:
        super().__init__(exclusion_writer)
        self.config = config
        self._index: EvalIndex | None = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Load the index before the first document, so a set that changed since the preflight fails the task."""
        self._index = load_index(self.config)
        yield from super().run(data, rank, world_size)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._index is None:
            self._index = load_index(self.config)
        found = self._index.match(doc.text)
        attributes = doc.metadata.get("attributes") or {}
        doc.metadata["attributes"] = attributes
        attributes[MATCHES] = found.count if found else 0
        attributes[SET] = found.name if found else None
        if found is None or found.count < self.config.min_matches:
            return True
        self.stat_update(f"contaminated_{found.name}")
        if self.config.action == "annotate":
            return True
        doc.metadata[DETAIL_KEY] = found.detail(self.config.n)
        return False, found.name


class DecontamFilter(PassRevisitStubs, ErrorsAsRecords, _Decontam):
    """The decontamination step: revisit stubs pass untouched; an exception on one document is an error record."""
