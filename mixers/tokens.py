"""Tokens for the mix stage: the tokenizer, each document's token count and its split.

The ``tokenizer`` phase (one task) either copies a given ``tokenizer.json`` into the stage or trains a
byte-level BPE with the ``tokenizers`` package on a sample of the run's documents, and writes
``stages/mix/tokenizer.json``. Every later phase loads that file, so token counts, proxy data and the final
manifest agree. The sample is the documents in the order of a hash ``h`` of their id, up to
``tokenizer_sample_mb`` of text: it depends on the documents, never on how earlier stages' tasks cut them
into files, so the tokenizer (and every count after it) is the same for any task count. The
``tokenizer-sample`` phase (all tasks) finds it without one task reading the corpus: each task keeps its
files' documents whose ``h`` is under a share chosen (once, where the stage is planned) to hold about
:data:`SAMPLE_OVERSAMPLING` times the budget by the files' sizes on disk, which a compressed file's text
exceeds, in ``tokenizer-sample/part-<rank>.parquet``; the tokenizer phase reads those in ``h`` order until
the budget.

The ``count`` phase (all tasks) annotates every document with ``tokens`` (its token count) and
``mix_split``: ``train`` for a mixed source (minus a target's held-out share), ``heldout`` for the
target split (never trained on, never in the final corpus), ``excluded`` for a source neither mixed
nor a target. The split is a hash of the document id, so it is the same on every run. A count task encodes
on the threads the executor gives one task (``tokenizers`` would otherwise run a pool over every core of
the machine in each task).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger
from tokenizers import Tokenizer

from winnow.mixers.phase import OneTaskStep, TaskStep
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.readers import DocumentFile, read_document_file, stable_fraction
from winnow.pipeline.stage_duckdb import sql_paths, stage_duckdb

END_OF_TEXT = "<|endoftext|>"
TOKEN_ATTRIBUTES: dict[str, pa.DataType] = {"tokens": pa.int64(), "mix_split": pa.string()}
BATCH_DOCS = 256
SAMPLE_OVERSAMPLING = 2  # the sample phase keeps documents for about this many times the tokenizer's budget
SAMPLE_BATCH = 8192  # documents per batch of the sample phase's reading
SAMPLE_SCHEMA = pa.schema([("h", pa.float64()), ("id", pa.string()), ("text", pa.string())])


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used; the message says why."""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization) with ``END_OF_TEXT`` as its only special token."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


@cache
def load_tokenizer(path: str) -> Tokenizer:
    """Load a ``tokenizer.json`` (cached per process); raises TokenizerError naming the problem."""
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises a bare Exception for unreadable or malformed files
        raise TokenizerError(f"{path}: not a usable tokenizer.json ({exc})") from None
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer


def tokenizer_path(layout: StageLayout) -> Path:
    return layout.stage_dir / "tokenizer.json"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sample_share(files: Sequence[DocumentFile], budget_bytes: int) -> float:
    """The share of documents (by ``h``) the ``tokenizer-sample`` phase keeps: :data:`SAMPLE_OVERSAMPLING` times
    the budget over the files' bytes on disk, at most 1."""
    on_disk = 0
    for file in files:
        fs, path = fsspec.core.url_to_fs(file.path)
        on_disk += fs.size(path)
    return min(1.0, SAMPLE_OVERSAMPLING * budget_bytes / max(1, on_disk))


def sample_hash(doc_id: str) -> float:
    """``h``: a document's place in the tokenizer sample's order."""
    return stable_fraction(doc_id, "tokenizer-sample")


def sample_dir(layout: StageLayout) -> Path:
    return layout.stage_dir / "tokenizer-sample"


def sampled_texts(parts: Sequence[Path], budget_bytes: int, memory_limit: str, layout: StageLayout) -> Iterator[str]:
    """The sampled documents' texts in (``h``, id) order until ``budget_bytes`` (the one that crosses it included)."""
    if not parts:
        return
    with stage_duckdb(layout.stage_dir, memory_limit, 1) as (con, _):
        query = f"SELECT text FROM read_parquet({sql_paths(parts)}) ORDER BY h, id"
        reader = con.sql(query).to_arrow_reader(BATCH_DOCS)
        taken = 0
        for batch in reader:
            for text in batch.column(0).to_pylist():
                yield text
                taken += len(text.encode())
                if taken >= budget_bytes:
                    return
    share = float(pq.read_schema(parts[0]).metadata[b"share"])
    if share < 1:  # the files held less text than their size said: another layout may sample other documents
        logger.warning(
            f"tokenizer sample: {taken:,} bytes of text under the {budget_bytes:,} budget from a {share:.3g} share "
            f"of the documents (the input files hold much less text than their size); raise tokenizer_sample_mb "
            f"to sample more"
        )


def _id_batches(file: DocumentFile) -> Iterator[tuple[list[str], Callable[[list[int]], list[str | None]]]]:
    """Batches of ``file``'s readable documents: their ids, and a function giving the texts at chosen positions.
    An earlier stage's Parquet is read by its id column, and its text column only where chosen (every row of
    such a file is a document); other files through :func:`read_document_file`."""
    if file.format != "stage":
        readable = (doc for doc in read_document_file(file) if doc.metadata.get("read_error") is None)
        while docs := list(itertools.islice(readable, SAMPLE_BATCH)):
            yield [doc.id for doc in docs], lambda chosen, docs=docs: [docs[k].text for k in chosen]
        return
    with fsspec.open(file.path, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=SAMPLE_BATCH, columns=["id", "text"]):
            text = batch.column(1)
            yield batch.column(0).to_pylist(), lambda chosen, text=text: text.take(chosen).to_pylist()


class SampleTokenizerText(TaskStep):
    """Phase ``tokenizer-sample`` (all tasks): this task's documents whose ``h`` is under :func:`sample_share`."""

    name = "🎲 tokenizer sample"

    def __init__(self, config: MixConfig, files: Sequence[DocumentFile], layout: StageLayout) -> None:
        """The share is computed here, once, where the stage is planned (not by every task over every file)."""
        super().__init__(config, layout)
        self.files = list(files)
        self.share = sample_share(self.files, config.tokenizer_sample_mb * 1024 * 1024)

    def work_task(self, progress: TaskProgress, rank: int, world_size: int) -> None:
        kept: dict[str, list[Any]] = {"h": [], "id": [], "text": []}
        for file in self.files[rank::world_size]:
            for ids, texts in _id_batches(file):
                hashes = [sample_hash(i) for i in ids]
                chosen = [k for k, h in enumerate(hashes) if h < self.share]
                for k, text in zip(chosen, texts(chosen), strict=True):
                    if text:
                        kept["h"].append(hashes[k])
                        kept["id"].append(ids[k])
                        kept["text"].append(text)
            progress.advance(docs=file.units, units=file.units)
        self.stat_update("sampled", value=len(kept["id"]))
        target = sample_dir(self.layout) / f"part-{rank:05d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        table = pa.table(kept, SAMPLE_SCHEMA.with_metadata({"share": repr(self.share)}))
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)


class TrainTokenizer(OneTaskStep):
    """Phase ``tokenizer`` (one task): write ``stages/mix/tokenizer.json`` (copied, or trained on the sample)."""

    name = "🔤 tokenizer"

    def work(self, progress: TaskProgress) -> None:
        target = tokenizer_path(self.layout)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        if self.config.tokenizer:
            load_tokenizer(self.config.tokenizer)  # fails here, before anything is counted, if unusable
            shutil.copyfile(self.config.tokenizer, tmp)
        else:
            parts = sorted(sample_dir(self.layout).glob("part-*.parquet"))
            budget = self.config.tokenizer_sample_mb * 1024 * 1024
            texts = sampled_texts(parts, budget, self.config.final.memory_limit, self.layout)
            train_tokenizer(texts, self.config.vocab_size).save(str(tmp))
        os.replace(tmp, target)


def split_of(doc_id: str, source: str, mixed: frozenset[str], targets: frozenset[str], holdout: float) -> str:
    """``train``, ``heldout`` or ``excluded`` for one document (a hash of its id decides the held-out share)."""
    if source in targets:
        if source not in mixed:
            return "heldout"
        return "heldout" if stable_fraction(doc_id) < holdout else "train"
    return "train" if source in mixed else "excluded"


def limit_encoder_threads(threads: int) -> None:
    """Hold ``encode_batch`` to ``threads`` in this process: one means no pool (``TOKENIZERS_PARALLELISM`` is
    read at every call); more sizes the pool, which only takes effect before its first use in the process."""
    if threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    else:
        os.environ["RAYON_NUM_THREADS"] = str(threads)


class CountTokens(PipelineStep):
    """Phase ``count``: add ``tokens`` and ``mix_split`` to every document."""

    name = "🔢 count tokens"
    type = "MIX"

    def __init__(self, config: MixConfig, mixed: Sequence[str], layout: StageLayout, threads: int) -> None:
        """``threads``: encoder threads of one task."""
        super().__init__()
        self.layout = layout
        self.mixed = frozenset(mixed)
        self.targets = frozenset(t.source for t in config.targets)
        self.holdout = config.holdout
        self.threads = threads

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        limit_encoder_threads(self.threads)
        tokenizer = load_tokenizer(str(tokenizer_path(self.layout)))
        with OutcomeWriter(self.layout, "mix", kind="errors") as errors:
            batch: list[Document] = []
            for doc in data or ():
                batch.append(doc)
                if len(batch) >= BATCH_DOCS:
                    yield from self._count(tokenizer, batch, errors, rank)
                    batch = []
            yield from self._count(tokenizer, batch, errors, rank)

    def _count(
        self, tokenizer: Tokenizer, batch: list[Document], errors: OutcomeWriter, rank: int
    ) -> DocumentsPipeline:
        if not batch:
            return
        with self.track_time("batch"):
            try:
                counts = [len(e.ids) for e in tokenizer.encode_batch([d.text for d in batch])]
            except Exception:  # one document broke the batch: count one by one to find it
                counts = None
        for i, doc in enumerate(batch):
            if counts is None:
                try:
                    count = len(tokenizer.encode(doc.text).ids)
                except Exception as exc:
                    errors.write(doc, rank, reason="tokenize_failed", detail=f"{type(exc).__name__}: {exc}")
                    continue
            else:
                count = counts[i]
            source = doc.metadata["source"]
            split = split_of(doc.id, source, self.mixed, self.targets, self.holdout)
            doc.metadata.setdefault("attributes", {}).update(tokens=count, mix_split=split)
            self.stat_update(f"tokens:{source}:{split}", value=count)
            yield doc
