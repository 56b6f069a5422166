"""The proxy corpus: token arrays the swarm trains and evaluates on, and the token totals the mix plans with.

The ``corpus`` phase (one task) reads the counted documents (``stages/mix/data``) with DuckDB and writes

- ``corpus/train/<source>.npy``: for each mixed source, ``train`` documents in a fixed pseudo-random
  order (hash of the id) until ``proxy_data_tokens``, tokenized and joined with an end-of-text token;
- ``corpus/targets/<source>.npy``: the same for each target's ``heldout`` documents, up to what the
  proxies evaluate;
- ``corpus/summary.json``: per source the train documents and tokens of the whole run (what the prior,
  the epoch caps and the final writer use), the sample sizes, the vocabulary size and the tokenizer's hash.

A mixed source without train documents, or a target without held-out ones, stops the stage with a
message saying which source and what to change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from winnow.mixers.phase import OneTaskStep
from winnow.mixers.tokens import END_OF_TEXT, file_sha256, load_tokenizer, tokenizer_path
from winnow.pipeline.json_records import write_json
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.progress import TaskProgress
from winnow.pipeline.stage_duckdb import sql_paths, stage_duckdb

BATCH_ROWS = 1024


class MixDataError(ValueError):
    """The documents that reached the mix cannot support it (a source with nothing to mix or evaluate)."""


def corpus_dir(layout: StageLayout) -> Path:
    return layout.stage_dir / "corpus"


def read_summary(layout: StageLayout) -> dict[str, Any]:
    return json.loads((corpus_dir(layout) / "summary.json").read_text())


def load_arrays(folder: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The token arrays of ``names`` in ``folder``, memory-mapped."""
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class BuildCorpus(OneTaskStep):
    """Phase ``corpus`` (one task): token arrays for proxy training and evaluation, and ``summary.json``."""

    name = "🧱 proxy corpus"

    def __init__(self, config: MixConfig, mixed: Sequence[str], layout: StageLayout, threads: int) -> None:
        super().__init__(config, layout, threads)
        self.mixed = list(mixed)

    def work(self, progress: TaskProgress) -> None:
        path = tokenizer_path(self.layout)
        tokenizer = load_tokenizer(str(path))
        eot = tokenizer.token_to_id(END_OF_TEXT)
        dtype = np.uint16 if tokenizer.get_vocab_size() <= 65535 else np.uint32
        files = sorted(self.layout.dataset_dir("data").glob("*.parquet"))
        documents = f"read_parquet({sql_paths(files)}, union_by_name = true)" if files else None
        targets = [t.source for t in self.config.targets]
        out = corpus_dir(self.layout)
        with stage_duckdb(self.layout.stage_dir, self.config.final.memory_limit, self.threads) as (con, _):
            totals = self._totals(con, documents)
            self._check(totals, targets)
            sources: dict[str, Any] = {}
            for split, names, cap, folder in (
                ("train", self.mixed, self.config.proxy_data_tokens, "train"),
                ("heldout", targets, self.config.proxy.eval_tokens, "targets"),
            ):
                for name in names:
                    query = f"""
                        SELECT text FROM {documents} WHERE source = ? AND mix_split = ? AND tokens > 0
                        QUALIFY sum(tokens) OVER (ORDER BY md5(id) ROWS UNBOUNDED PRECEDING) - tokens < ?
                        ORDER BY md5(id)"""
                    reader = con.sql(query, params=[name, split, cap]).to_arrow_reader(BATCH_ROWS)
                    parts: list[np.ndarray] = []
                    for batch in reader:
                        for encoding in tokenizer.encode_batch(batch.column("text").to_pylist()):
                            parts.append(np.array([*encoding.ids, eot], dtype=dtype))
                    array = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
                    _save_atomic(out / folder / f"{name}.npy", array)
                    sources.setdefault(name, dict(totals.get(name, {})))[f"{folder}_sample_tokens"] = int(array.size)
                    progress.advance(docs=1)
        summary = {
            "mixed": self.mixed,
            "targets": targets,
            "sources": sources,
            "vocab_size": tokenizer.get_vocab_size(),
            "tokenizer_sha256": file_sha256(path),
        }
        write_json(out / "summary.json", summary)

    @staticmethod
    def _totals(con: Any, documents: str | None) -> dict[str, dict[str, int]]:
        """Documents and tokens per source and split over the whole run."""
        if documents is None:
            return {}
        rows = con.execute(
            f"SELECT source, mix_split, count(*), coalesce(sum(tokens), 0) FROM {documents} GROUP BY ALL"
        ).fetchall()
        totals: dict[str, dict[str, int]] = {}
        for source, split, docs, tokens in rows:
            totals.setdefault(source, {})[f"{split}_docs"] = int(docs)
            totals[source][f"{split}_tokens"] = int(tokens)
        return totals

    def _check(self, totals: dict[str, dict[str, int]], targets: list[str]) -> None:
        for name in self.mixed:
            if totals.get(name, {}).get("train_tokens", 0) == 0:
                raise MixDataError(
                    f"stages.mix: source {name!r} has no documents left to mix (none reached the mix stage, or "
                    f"all were held out); remove it from stages.mix.sources or see `winnow inspect` for where its "
                    f"documents went"
                )
        for name in targets:
            if totals.get(name, {}).get("heldout_tokens", 0) == 0:
                raise MixDataError(
                    f"stages.mix.targets: target {name!r} has no held-out documents; raise stages.mix.holdout or "
                    f"give it more documents"
                )
