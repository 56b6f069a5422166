"""The mix's tokenizer sample: the same documents give the same BPE whatever files and tasks they come in."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.mixers.tokens import SampleTokenizerText, TrainTokenizer, sample_dir, sample_hash, sampled_texts
from winnow.pipeline.manifest import MixConfig
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.readers import DocumentFile, stable_id

BUDGET_MB = 1


def _documents(count: int) -> list[dict[str, str]]:
    """Documents of made-up words, so that which documents are sampled changes the BPE's merges."""
    rng = random.Random(7)
    syllables = ["ka", "lo", "mi", "tre", "su", "phon", "ra", "zel", "qui", "dor", "ny", "ash"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    return [{"id": f"doc-{i}", "text": " ".join(rng.choices(words, k=rng.randint(60, 180)))} for i in range(count)]


def _files(folder: Path, docs: list[dict[str, str]], files: int) -> list[DocumentFile]:
    folder.mkdir(parents=True)
    paths = [folder / f"part-{n}.jsonl" for n in range(files)]
    for n, path in enumerate(paths):
        path.write_text("".join(json.dumps(d) + "\n" for d in docs[n::files]))
    return [DocumentFile(str(p), "jsonl", 1, source="made_up") for p in paths]


def _tokenizer(run_dir: Path, files: list[DocumentFile], tasks: int) -> bytes:
    """The tokenizer.json the sample and tokenizer phases write for ``files`` on ``tasks`` tasks."""
    config = MixConfig.model_validate(
        {"token_budget": 1000, "weights": {"made_up": 1.0}, "tokenizer_sample_mb": BUDGET_MB, "vocab_size": 600}
    )
    layout = StageLayout(run_dir, "mix", 1 << 20)
    for rank in range(tasks):
        list(SampleTokenizerText(config, files, layout.for_phase("tokenizer-sample")).run(None, rank, tasks))
    list(TrainTokenizer(config, layout.for_phase("tokenizer")).run(None, 0, 1))
    return (run_dir / "stages" / "mix" / "tokenizer.json").read_bytes()


def test_the_tokenizer_depends_on_the_documents_not_their_files_or_tasks(tmp_path: Path) -> None:
    docs = _documents(2400)
    total = sum(len(d["text"].encode()) for d in docs)
    budget = BUDGET_MB * 1024 * 1024
    assert total > 1.5 * budget  # the sample is a cut, not every document
    two_files = _tokenizer(tmp_path / "a", _files(tmp_path / "in-a", docs, 2), tasks=1)
    shuffled = random.Random(3).sample(docs, len(docs))
    five_files = _tokenizer(tmp_path / "b", _files(tmp_path / "in-b", shuffled, 5), tasks=3)
    assert two_files == five_files
    # an earlier stage's Parquet (read by its columns, not as documents) holding the same documents
    stage = tmp_path / "stage"
    stage.mkdir()
    rows = [{"id": stable_id("made_up", d["id"]), "text": d["text"]} for d in shuffled]
    for n in range(3):
        pq.write_table(pa.Table.from_pylist(rows[n::3]), stage / f"part-{n}.parquet", row_group_size=300)
    stage_files = [DocumentFile.of_stage(p) for p in sorted(stage.glob("*.parquet"))]
    assert _tokenizer(tmp_path / "c", stage_files, tasks=2) == two_files

    # what was trained on: the documents in hash order up to the budget, the one crossing it included
    parts = sorted(sample_dir(StageLayout(tmp_path / "b", "mix", 1 << 20)).glob("*.parquet"))
    assert len(parts) == 3
    layout = StageLayout(tmp_path / "b", "mix", 1 << 20)
    texts = list(sampled_texts(parts, budget, "1GB", layout))
    expected, taken = [], 0
    ids = {d["id"]: stable_id("made_up", d["id"]) for d in docs}  # a source document's id: of its source and record
    for doc in sorted(docs, key=lambda d: (sample_hash(ids[d["id"]]), ids[d["id"]])):
        if taken >= budget:
            break
        expected.append(doc["text"])
        taken += len(doc["text"].encode())
    assert texts == expected


@pytest.mark.parametrize("tasks", [1, 4])
def test_a_run_smaller_than_the_budget_trains_on_every_document(tmp_path: Path, tasks: int) -> None:
    docs = _documents(300)
    files = _files(tmp_path / "in", docs, 2)
    _tokenizer(tmp_path / "run", files, tasks)
    layout = StageLayout(tmp_path / "run", "mix", 1 << 20)
    parts = sorted(sample_dir(layout).glob("*.parquet"))
    texts = list(sampled_texts(parts, BUDGET_MB * 1024 * 1024, "1GB", layout))
    assert sorted(texts) == sorted(d["text"] for d in docs)
