"""Benchmark: winnow's decontamination step against datatrove's NGramsDecontFilter, same documents, same run.

What it measures:

1. Evaluation sets (real, from ``--shared-data``; exit 2 when absent): GSM8K test (fields ``question`` and
   ``answer``) and HumanEval (``prompt``), as ``manifests/cc_dump.yaml`` configures them; n = 13.
2. Clean documents: every text of the shared JSONL corpora (``text/**/*.jsonl``) with at least 50 tokens
   (winnow's tokens): 6,370 documents, mean ~410 words (news, Q&A posts, Brown, Wikipedia, web samples).
3. Contaminated documents: for each GSM8K question and HumanEval prompt (1,483), a clean document (seeded
   choice) with the entry inserted whole at a space in its middle half, and another with a random 13-token
   span of it (as written) inserted that way: 2,966 documents. All documents are shuffled (seeded); both
   sides get the same list. ``--quick`` takes a seeded sample (600 clean, 300 contaminated).
4. winnow: ``DecontamFilter(config).filter(doc)`` for every document, the index of both sets built before the
   clock starts (its build time and size are printed). ``docs_per_cpu_s``: documents / CPU-seconds of this
   process (user + sys; no child processes are involved on either side).
5. datatrove: ``NGramsDecontFilter`` with ``n_grams=13`` and its defaults (``TextNormConfig``: lower case, no
   punctuation, numbers normalised...; the English word tokenizer, spaCy). Its index files are written with
   datatrove's own ``NGramsDecontIndexer.compute_hashes`` (each entry as the label): the indexer's ``run``
   fetches tasks through lighteval, which is not installed and not needed for files we already have.
   Loading them is left out of its clock as winnow's build is out of winnow's. Its hash is set to SHA-1
   (``HashConfig(hash_fc="sha1")``, 64 bits), datatrove's other choice: its default, xxhash, is handed
   ``str`` n-grams, which xxhash 4 refuses ("Strings must be encoded before hashing").

``recall``: contaminated documents rejected / contaminated documents (winnow: also under the right set,
printed); ``fpr``: clean documents flagged / clean documents. Ends with one line
``RESULT docs_per_cpu_s=.. recall=.. fpr=.. datatrove_docs_per_cpu_s=.. datatrove_recall=.. datatrove_fpr=.. ratio=..``
(ratio = winnow / datatrove documents per CPU-second).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.data import Document

from winnow.filters.decontam import DecontamFilter, load_index
from winnow.filters.minhash import TOKEN, normalize, tokens
from winnow.pipeline.manifest import DecontamConfig

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
N = 13
MIN_TOKENS = 50


@dataclass(frozen=True)
class Case:
    text: str
    contaminated_by: str | None  # the set whose entry was inserted; None for an unmodified document


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:  # by "\n" only: texts hold other line separators
        return [json.loads(line) for line in lines if line.strip()]


def clean_documents(text_dir: Path) -> list[str]:
    texts = []
    for path in sorted(text_dir.rglob("*.jsonl")):
        for row in read_jsonl(path):
            text = row.get("text")
            if isinstance(text, str) and len(tokens(text)) >= MIN_TOKENS:
                texts.append(text)
    return texts


def inserted(host: str, piece: str, rng: random.Random) -> str:
    """``host`` with ``piece`` put in at a space in its middle half."""
    spaces = [m.start() for m in re.finditer(r"\s", host)]
    middle = [p for p in spaces if len(host) // 4 <= p <= 3 * len(host) // 4] or spaces or [len(host)]
    at = rng.choice(middle)
    return f"{host[:at]} {piece} {host[at:]}"


def span(text: str, rng: random.Random) -> str:
    """A random run of N tokens of ``text`` as written (from the normalised text where normalising moves characters)."""
    source = text if normalize(text) == text.lower() else normalize(text)
    found = list(TOKEN.finditer(normalize(text)))
    first = rng.randrange(len(found) - N + 1)
    return source[found[first].start() : found[first + N - 1].end()]


def build_cases(shared: Path, quick: bool, seed: int) -> tuple[list[Case], dict[str, list[str]], DecontamConfig]:
    gsm8k = shared / "benchmarks" / "gsm8k" / "test.jsonl"
    humaneval = shared / "benchmarks" / "humaneval" / "HumanEval.jsonl.gz"
    config = DecontamConfig.model_validate(
        {
            "n": N,
            "sets": [
                {"name": "gsm8k", "path": str(gsm8k), "fields": ["question", "answer"]},
                {"name": "humaneval", "path": str(humaneval), "fields": ["prompt"]},
            ],
        }
    )
    gsm_rows, he_rows = read_jsonl(gsm8k), read_jsonl(humaneval)
    entries = {
        "gsm8k": [r["question"] for r in gsm_rows] + [r["answer"] for r in gsm_rows],
        "humaneval": [r["prompt"] for r in he_rows],
    }
    inserted_entries = [("gsm8k", r["question"]) for r in gsm_rows] + [("humaneval", r["prompt"]) for r in he_rows]
    rng = random.Random(seed)
    clean = clean_documents(shared / "text")
    cases = [Case(text, None) for text in clean]
    for name, entry in inserted_entries:
        cases.append(Case(inserted(rng.choice(clean), entry, rng), name))
        cases.append(Case(inserted(rng.choice(clean), span(entry, rng), rng), name))
    if quick:
        clean_cases = [c for c in cases if c.contaminated_by is None]
        dirty = [c for c in cases if c.contaminated_by is not None]
        cases = rng.sample(clean_cases, 600) + rng.sample(dirty, 300)
    rng.shuffle(cases)
    return cases, entries, config


@dataclass
class Outcome:
    docs_per_cpu_s: float
    cpu_s: float
    wall_s: float
    recall: float
    fpr: float
    wrong_set: int


def measure(cases: Sequence[Case], judge: Callable[[str], str | None]) -> Outcome:
    """Time ``judge`` (text -> the set it names, or None when the document is kept) over every case."""
    verdicts: list[str | None] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for case in cases:
        verdicts.append(judge(case.text))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    dirty = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.contaminated_by is not None]
    clean = [v for c, v in zip(cases, verdicts, strict=True) if c.contaminated_by is None]
    recall = sum(v is not None for _, v in dirty) / len(dirty)
    fpr = sum(v is not None for v in clean) / len(clean)
    wrong = sum(v is not None and v != c.contaminated_by for c, v in dirty)
    return Outcome(len(cases) / cpu, cpu, wall, recall, fpr, wrong)


def winnow_judge(config: DecontamConfig) -> Callable[[str], str | None]:
    cpu0 = time.process_time()
    index = load_index(config)
    megabytes = (index.hashes.nbytes + index.masks.nbytes) / 1e6
    built = time.process_time() - cpu0
    print(f"winnow index: {len(index.hashes):,} n-gram hashes ({megabytes:.1f} MB), built in {built:.2f} CPU-s")
    for s in index.summaries:
        print(
            f"  {s.name}: {s.rows} rows, {s.entries} entries ({s.short} shorter than {N} tokens), {s.ngrams:,} n-grams"
        )
    step = DecontamFilter(config)

    def judge(text: str) -> str | None:
        verdict = step.filter(Document(text=text, id="x", metadata={}))
        return None if verdict is True else verdict[1]

    return judge


def datatrove_judge(entries: dict[str, list[str]], folder: Path) -> Callable[[str], str | None]:
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import HashConfig, create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=N, hash_config=HashConfig(hash_fc="sha1"))
    cpu0 = time.process_time()
    indexer = types.SimpleNamespace(
        tokenizer=load_word_tokenizer("en"), config=config, hash_func=create_hash_func(config.hash_config)
    )
    for name, texts in entries.items():
        hashes = {h for text in texts for h in NGramsDecontIndexer.compute_hashes(indexer, text)}
        np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(folder / f"{name}.index.hashes")
    print(f"datatrove index built in {time.process_time() - cpu0:.2f} CPU-s")
    step = NGramsDecontFilter(str(folder), config=config)
    step.load_index_hashes()

    def judge(text: str) -> str | None:
        doc = Document(text=text, id="x", metadata={})
        return None if step.filter(doc) is True else doc.metadata["contaminated_task"]

    return judge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: 600 clean and 300 contaminated documents")
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED, help="the shared data folder")
    parser.add_argument("--seed", type=int, default=20, help="host, span and order seed")
    args = parser.parse_args(argv)
    if not (args.shared_data / "benchmarks").is_dir() or not (args.shared_data / "text").is_dir():
        print(f"error: {args.shared_data}/benchmarks and /text are needed", file=sys.stderr)
        return 2
    cases, entries, config = build_cases(args.shared_data, args.quick, args.seed)
    dirty = sum(c.contaminated_by is not None for c in cases)
    words = np.mean([len(tokens(c.text)) for c in cases])
    print(f"documents: {len(cases):,} ({len(cases) - dirty:,} clean, {dirty:,} contaminated), mean {words:.0f} tokens")

    ours = measure(cases, winnow_judge(config))
    with tempfile.TemporaryDirectory(prefix="decontam-bench-") as tmp:
        theirs = measure(cases, datatrove_judge(entries, Path(tmp)))
    for name, o in (("winnow", ours), ("datatrove", theirs)):
        print(
            f"{name:9s} {o.docs_per_cpu_s:10.0f} docs/CPU-s  cpu {o.cpu_s:7.2f} s  wall {o.wall_s:7.2f} s  "
            f"recall {o.recall:.4f}  fpr {o.fpr:.4f}  caught under another set {o.wrong_set}"
        )
    print()
    print(
        f"RESULT docs_per_cpu_s={ours.docs_per_cpu_s:.0f} recall={ours.recall:.4f} fpr={ours.fpr:.4f} "
        f"datatrove_docs_per_cpu_s={theirs.docs_per_cpu_s:.0f} datatrove_recall={theirs.recall:.4f} "
        f"datatrove_fpr={theirs.fpr:.4f} ratio={ours.docs_per_cpu_s / theirs.docs_per_cpu_s:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
