"""Tokens for the mix stage: the tokenizer, each document's token count and its split.

The ``tokenizer`` phase (one task) either copies a given ``tokenizer.json`` into the stage or trains a
byte-level BPE with the ``tokenizers`` package on a sample of the run's documents (the first
``tokenizer_sample_mb`` of text, taken evenly from every file), and writes ``stages/mix/tokenizer.json``.
Every later phase loads that file, so token counts, proxy data and the final manifest agree.

The ``count`` phase (all tasks) annotates every document with ``tokens`` (its token count) and
``mix_split``: ``train`` for a mixed source (minus a target's held-out share), ``heldout`` for the
target split (never trained on, never in the final corpus), ``excluded`` for a source neither mixed
nor a target. The split is a hash of the document id, so it is the same on every run. A count task encodes
on the threads the executor gives one task (``tokenizers`` would otherwise run a pool over every core of
the machine in each task).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from tokenizers import Tokenizer

from winnow.mixers.phase import OneTaskStep
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.readers import DocumentFile, read_document_file, stable_fraction

END_OF_TEXT = "<|endoftext|>"
TOKEN_ATTRIBUTES: dict[str, pa.DataType] = {"tokens": pa.int64(), "mix_split": pa.string()}
BATCH_DOCS = 256


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


def _sample_texts(files: Sequence[DocumentFile], budget_bytes: int) -> Iterable[str]:
    """About ``budget_bytes`` of text, the same share from the head of every file."""
    per_file = max(1, budget_bytes // max(1, len(files)))
    for file in files:
        taken = 0
        for doc in read_document_file(file):
            if doc.metadata.get("read_error") is None and doc.text:
                yield doc.text
                taken += len(doc.text.encode())
                if taken >= per_file:
                    break


class TrainTokenizer(OneTaskStep):
    """Phase ``tokenizer`` (one task): write ``stages/mix/tokenizer.json`` (copied or trained)."""

    name = "🔤 tokenizer"

    def __init__(self, config: MixConfig, files: Sequence[DocumentFile], layout: StageLayout) -> None:
        super().__init__(config, layout)
        self.files = list(files)

    def work(self, progress: TaskProgress) -> None:
        target = tokenizer_path(self.layout)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        if self.config.tokenizer:
            load_tokenizer(self.config.tokenizer)  # fails here, before anything is counted, if unusable
            shutil.copyfile(self.config.tokenizer, tmp)
        else:
            texts = _sample_texts(self.files, self.config.tokenizer_sample_mb * 1024 * 1024)
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
