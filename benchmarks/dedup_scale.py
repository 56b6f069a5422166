"""Benchmark: winnow's MinHash dedup stage at scale, and its signature step against datatrove and datasketch.

What it measures:

1. Input. ``--docs`` synthetic documents (default 1,000,000; ``--quick``: 20,000), generated
   deterministically from ``--seed`` and written streaming as Parquet shards (``id``, ``text``,
   ``dup_of``; ``--shard-rows`` rows each) in a temporary folder. Texts are 150-400 words drawn from a
   Zipfian (s=1) vocabulary of 50,000 syllable-built words, in sentences with capitals, commas and
   end punctuation. Document ``i`` is a pure function of ``(seed, i)`` (counter-based hashing), so any
   document can be regenerated to plant copies of it anywhere in the corpus without holding it:
   * 10% near duplicates: a uniformly drawn base document with each token replaced (by a uniformly
     drawn word) with probability 0.2%-5% (uniform per document); the Jaccard similarity of the two
     5-word shingle sets is then mostly 0.63-0.95 (median 0.79; about 35% are >= 0.85);
   * 5% exact copies of a base document;
   * 1% low-similarity relatives: 8%-14% of tokens replaced, Jaccard mostly 0.28-0.5 (median 0.39;
     about 90% are <= 0.5); not duplicates;
   * the rest (84%) base documents.
   The exact Jaccard of every planted pair is computed during generation (from the word ranks: the
   words are distinct lower-case letter strings, so they are winnow's tokens) and recorded in a
   ground-truth file; a few pairs are re-checked against ``MinHasher().shingle_hash_set`` +
   ``exact_jaccard`` each run.
2. Signature throughput on the same first ``--sig-docs`` documents of the corpus (default 20,000;
   ``--quick``: 1,000, as datatrove's step signs only about 100 documents per CPU-second), each side in
   its own child process (this script with ``--side``). The figure is documents per CPU-second
   (user+sys) of the timed section, read in the child with ``getrusage(RUSAGE_SELF)``; reading the
   texts, imports and set-up (e.g. loading spaCy) are outside it; the CPU-seconds of each whole child
   are printed too. All sides produce 112 32-bit values per document from 5-word shingles:
   * winnow: ``winnow.filters.minhash.MinHasher(ngram=5, bands=14, rows=8, seed=1).signatures`` on batches of 512;
   * datatrove: ``MinhashDedupSignature`` with ``MinhashConfig(n_grams=5, num_buckets=14,
     hashes_per_bucket=8, seed=1, hash_config=HashConfig(precision=32, hash_fc="xxhash"))``, its
     ``run`` called directly (rank 0 of 1) on ``Document`` objects: spaCy word tokenizer, text
     simplification, hashing, writing and sorting its 14 bucket files in a temporary folder. Two
     adaptations, both to the installed environment rather than to the algorithm: without the
     ``tokenizers`` package, the module is imported without its package ``__init__`` (which needs it
     for unrelated steps); and with xxhash >= 4 (datatrove pins < 4), which refuses ``str``, the
     n-gram strings are hashed as their UTF-8 bytes, the values xxhash 3 computed. Full runs also show,
     not in RESULT, its ``get_shingles`` + ``get_signature`` alone (no files) on the first 5,000 documents.
   * datasketch, on the 5-word shingles (UTF-8 bytes, winnow's tokenizer, counted in the time) with its
     default sha1 hash: a new ``MinHash(num_perm=112, seed=1)`` + ``update_batch`` per document, and
     ``MinHash.bulk`` over all documents.
3. The dedup stage on all documents: ``python -m winnow.pipeline.cli run MANIFEST --no-progress`` with only
   ``stages.dedup`` enabled (``memory_limit: --memory-limit``, local executor with ``--tasks`` tasks and
   ``--workers`` workers) in a child process. Reported: wall time; CPU-seconds of the whole process
   tree (this script makes itself a child subreaper, so descendants orphaned by their parents, e.g.
   a forkserver and its pool workers, are reaped here and counted by ``getrusage(RUSAGE_CHILDREN)``);
   the peak over time of the summed RSS of every process below this script, sampled every
   ``--sample-s`` s (psutil, else /proc). Summed RSS counts pages shared between processes once per
   process: an upper bound of the memory used. Quality, from the stage's ``rejects`` and ``clusters``
   folders (DuckDB): two documents are linked when they share a cluster, or one was rejected as an
   exact/near duplicate with the other (or a member of its cluster) as keeper, or both were rejected
   with the same keeper.
   * recall: share of planted (near duplicate or exact copy, original) pairs with Jaccard >= 0.85 that
     are linked (per-Jaccard-band recall is printed too);
   * fpr: share of planted low-similarity pairs (Jaccard <= 0.5) that are linked; fpr_random (extra):
     the same for ``--random-pairs`` random pairs of unrelated documents; wrong_rejects (extra): rejected
     documents whose keeper is not of their planted family (a document, its near duplicates and exact
     copies; a low-similarity relative is its own family, whatever its Jaccard).
4. Memory growth (``--scaling``; on by default, off with ``--quick``): the stage also runs on a
   100,000-document corpus generated the same way, and the peak RSS of both runs is reported.

Ends with one ``RESULT`` line; with ``--skip-stage`` (steps 1-2 only) it has no stage keys.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from process_tree import cpu_children, reap_orphans, run_benchmark  # noqa: E402

from winnow.filters.minhash import MinHasher, exact_jaccard, tokens  # noqa: E402

NGRAM, BANDS, ROWS, SEED_PERM = 5, 14, 8, 1
NUM_PERM = BANDS * ROWS
SOURCE_NAME = "synthetic"
RUN_NAME = "dedup-scale"
SCALING_DOCS = 100_000

# corpus shape
VOCAB_SIZE = 50_000
ZIPF_S = 1.0
MIN_WORDS, MAX_WORDS = 150, 400
MEAN_SENTENCE_WORDS = 14
ZIPF_BITS = 22
GEN_BATCH = 10_000
# planted documents: kind -> (share of the corpus, token replacement rate range)
BASE, NEAR, EXACT, LOW = 0, 1, 2, 3
KIND_NAMES = {NEAR: "near_duplicate", EXACT: "exact_copy", LOW: "low_similarity"}
SHARES = {NEAR: 0.10, EXACT: 0.05, LOW: 0.01}
EDIT_RATES = {NEAR: (0.002, 0.05), EXACT: (0.0, 0.0), LOW: (0.08, 0.14)}
RECALL_MIN_JACCARD = 0.85
FPR_MAX_JACCARD = 0.5
# salts of the counter-based hash, one per random quantity
S_KIND, S_ORIG, S_RATE, S_LEN, S_TOKEN, S_EDIT = range(6)
PUNCT = ("", ",", ".", "?", "!")  # form code = capitalised * 5 + punctuation index

DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("dup_of", pa.string())])
TRUTH_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("original", pa.string()),
        ("kind", pa.string()),
        ("edit_rate", pa.float64()),
        ("jaccard", pa.float64()),
    ]
)


# -------------------------------------------------------------------------------- the corpus


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def doc_id(index: int) -> str:
    return f"d{index:08d}"


def make_vocabulary(seed: int, size: int) -> list[str]:
    """``size`` distinct word-like strings (2+ letters, 1-4 syllables); shorter words tend to rank first
    (rank 0 is the most frequent), with noise so that the top of the list is not all two-letter words."""
    rng = np.random.default_rng(seed)
    onsets = ["", "b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n"]
    onsets += ["p", "pl", "pr", "qu", "r", "s", "sh", "sl", "st", "t", "th", "tr", "v", "w", "z"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck"]
    syllables = np.array([a + b for a in onsets for b in vowels])
    words: set[str] = set()
    while len(words) < size:
        draw = 2 * size
        counts = rng.choice([1, 2, 3, 4], size=draw, p=[0.2, 0.4, 0.3, 0.1])
        parts = syllables[rng.integers(len(syllables), size=(draw, 4))]
        ends = np.array(codas)[rng.integers(len(codas), size=draw)]
        for count, row, end in zip(counts.tolist(), parts.tolist(), ends.tolist(), strict=True):
            word = "".join(row[:count]) + end
            if len(word) >= 2 and len(words) < size:
                words.add(word)
    ordered = sorted(words)  # a fixed order before the seeded noise
    noise = rng.normal(0.0, 2.0, len(ordered))
    return [ordered[i] for i in np.argsort([len(w) + n for w, n in zip(ordered, noise, strict=True)], kind="stable")]


def shingle_jaccard(before: np.ndarray, after: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the 5-word shingle sets of documents ``rows`` (< 2**14) before and after edits.

    ``before``/``after`` are the batch's word ranks, document ``r`` at ``offsets[r]:offsets[r + 1]``.
    Words are distinct lower-case letter strings, so word ranks are winnow's tokens (case and punctuation
    fold away) and these sets are the ones ``MinHasher.shingle_hash_set`` hashes (checked once per run).
    A shingle is keyed by its row (top 14 bits) and a 50-bit hash of its five ranks.
    """
    counts = offsets[rows + 1] - offsets[rows] - NGRAM + 1
    starts = np.repeat(offsets[rows], counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    row_bits = np.repeat(np.arange(len(rows), dtype=np.uint64), counts) << np.uint64(50)

    def shingle_set(words: np.ndarray) -> np.ndarray:
        h = np.zeros(len(starts), dtype=np.uint64)
        for k in range(NGRAM):
            h = _mix64(h ^ (words[starts + k].astype(np.uint64) + np.uint64((k + 1) << 32)))
        keys = np.sort(row_bits | (h >> np.uint64(14)))
        return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys

    a, b = shingle_set(before), shingle_set(after)
    shared = np.bincount(
        (np.intersect1d(a, b, assume_unique=True) >> np.uint64(50)).astype(np.int64), minlength=len(rows)
    )
    size_a = np.bincount((a >> np.uint64(50)).astype(np.int64), minlength=len(rows))
    size_b = np.bincount((b >> np.uint64(50)).astype(np.int64), minlength=len(rows))
    return shared / (size_a + size_b - shared)


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]
    dup_of: list[str | None]
    truth: list[dict[str, Any]]


class Corpus:
    """Random-access synthetic corpus: document ``i`` is a pure function of ``(seed, i)``."""

    def __init__(self, n_docs: int, seed: int) -> None:
        self.n_docs = n_docs
        words = make_vocabulary(seed, VOCAB_SIZE)
        self.forms = np.array(
            [(w.capitalize() if cap else w) + p for cap in (False, True) for p in PUNCT for w in words], dtype=object
        )
        weights = 1.0 / np.arange(1, VOCAB_SIZE + 1, dtype=np.float64) ** ZIPF_S
        cdf = np.cumsum(weights) / weights.sum()
        # inverse CDF on a grid of 2**ZIPF_BITS quantiles: word rank = table[top bits of a hash]
        grid = (np.arange(2**ZIPF_BITS, dtype=np.float64) + 0.5) / 2**ZIPF_BITS
        self.zipf_table = np.minimum(np.searchsorted(cdf, grid, "right"), VOCAB_SIZE - 1).astype(np.int32)
        self.salts = _mix64((np.arange(1, 7, dtype=np.uint64) + np.uint64(seed) * np.uint64(1000)) * np.uint64(7919))
        self.hasher = MinHasher(NGRAM, BANDS, ROWS, SEED_PERM)

    def _key(self, doc: np.ndarray, pos: np.ndarray | int, salt: int) -> np.ndarray:
        """A 64-bit hash of (document, position < 4096, salt)."""
        x = (doc.astype(np.uint64) << np.uint64(12)) + np.asarray(pos).astype(np.uint64)
        return _mix64(x ^ self.salts[salt])

    def kinds(self, idx: np.ndarray) -> np.ndarray:
        u = _uniform(self._key(idx, 0, S_KIND))
        kind = np.full(len(idx), BASE, dtype=np.int8)
        kind[u < SHARES[NEAR] + SHARES[EXACT] + SHARES[LOW]] = LOW
        kind[u < SHARES[NEAR] + SHARES[EXACT]] = EXACT
        kind[u < SHARES[NEAR]] = NEAR
        return kind

    def originals(self, idx: np.ndarray) -> np.ndarray:
        """For each (planted) document, a uniformly drawn base document of the whole corpus."""
        out = np.full(len(idx), -1, dtype=np.int64)
        todo = np.arange(len(idx))
        attempt = 0
        while len(todo):
            cand = (self._key(idx[todo], attempt, S_ORIG) % np.uint64(self.n_docs)).astype(np.int64)
            ok = (self.kinds(cand) == BASE) & (cand != idx[todo])
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
            attempt += 1
        return out

    def families(self, idx: np.ndarray) -> np.ndarray:
        """The document a near duplicate / exact copy was made from; the document itself otherwise."""
        kind = self.kinds(idx)
        family = idx.astype(np.int64).copy()
        planted = (kind == NEAR) | (kind == EXACT)
        family[planted] = self.originals(idx[planted])
        return family

    def batch(self, start: int, stop: int) -> Batch:
        idx = np.arange(start, stop, dtype=np.int64)
        kind = self.kinds(idx)
        src = idx.copy()
        planted = kind != BASE
        src[planted] = self.originals(idx[planted])
        rate = np.zeros(len(idx))
        for k in (NEAR, LOW):
            lo, hi = EDIT_RATES[k]
            sel = kind == k
            rate[sel] = lo + (hi - lo) * _uniform(self._key(idx[sel], 0, S_RATE))

        # the source document's tokens. One hash per position: its top ZIPF_BITS bits pick the word,
        # bits 0-15 whether a sentence ends there, bits 16-31 the punctuation mark
        lengths = MIN_WORDS + (self._key(src, 0, S_LEN) % np.uint64(MAX_WORDS - MIN_WORDS + 1)).astype(np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        h = self._key(np.repeat(src, lengths), pos, S_TOKEN)
        words = self.zipf_table[(h >> np.uint64(64 - ZIPF_BITS)).astype(np.int64)]
        low = (h & np.uint64(0xFFFFFFFF)).astype(np.int64)
        ends = ((low & 0xFFFF) < 65536 // MEAN_SENTENCE_WORDS) | (pos == np.repeat(lengths - 1, lengths))
        starts = pos == 0
        starts[1:] |= ends[:-1]
        pu = (low >> 16) / 65536
        punct = np.where(ends, np.where(pu < 0.85, 2, np.where(pu < 0.93, 3, 4)), np.where(pu < 0.07, 1, 0))
        codes = starts.astype(np.int64) * len(PUNCT) + punct
        source_strs = self.forms[codes * VOCAB_SIZE + words]

        # edits of planted near duplicates / low-similarity documents, keyed by the document itself:
        # a position is replaced when the top 32 bits of its hash fall under the rate; the low 32 bits
        # pick the replacement word (uniform over the vocabulary)
        strs, edited_words = source_strs, words
        flat_rate = np.repeat(rate, lengths)
        at = np.flatnonzero(flat_rate > 0)
        if len(at):
            h = self._key(np.repeat(idx, lengths)[at], pos[at], S_EDIT)
            hit = (h >> np.uint64(32)).astype(np.float64) < flat_rate[at] * 2.0**32
            edited, h = at[hit], h[hit]
            replacement = ((h & np.uint64(0xFFFFFFFF)) % np.uint64(VOCAB_SIZE)).astype(np.int32)
            strs, edited_words = source_strs.copy(), words.copy()
            strs[edited] = self.forms[codes[edited] * VOCAB_SIZE + replacement]
            edited_words[edited] = replacement

        ids = [doc_id(i) for i in idx.tolist()]
        texts = [" ".join(strs[a:b].tolist()) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
        dup_of: list[str | None] = [None] * len(idx)
        jaccard = np.ones(len(idx))
        changed = np.flatnonzero(rate > 0)
        jaccard[changed] = shingle_jaccard(words, edited_words, offsets, changed)
        truth = []
        for row in np.flatnonzero(planted).tolist():
            k = int(kind[row])
            original = doc_id(int(src[row]))
            if k != LOW:
                dup_of[row] = original
            truth.append(
                {
                    "id": ids[row],
                    "original": original,
                    "kind": KIND_NAMES[k],
                    "edit_rate": float(rate[row]),
                    "jaccard": float(jaccard[row]),
                }
            )
        return Batch(ids, texts, dup_of, truth)


@dataclass
class Generated:
    docs_dir: Path
    truth_path: Path
    n_docs: int
    shards: int
    seconds: float
    bytes_on_disk: int


def generate(n_docs: int, seed: int, shard_rows: int, folder: Path) -> Generated:
    """Write the corpus as Parquet shards (streaming: one batch in memory) and the ground truth."""
    started = time.perf_counter()
    corpus = Corpus(n_docs, seed)
    docs_dir = folder / "docs"
    docs_dir.mkdir(parents=True)
    truth: list[dict[str, Any]] = []
    shards = 0
    for shard_start in range(0, n_docs, shard_rows):
        shard_stop = min(shard_start + shard_rows, n_docs)
        with pq.ParquetWriter(docs_dir / f"part-{shards:05d}.parquet", DOC_SCHEMA, compression="zstd") as writer:
            for start in range(shard_start, shard_stop, GEN_BATCH):
                batch = corpus.batch(start, min(start + GEN_BATCH, shard_stop))
                table = pa.table({"id": batch.ids, "text": batch.texts, "dup_of": batch.dup_of}, schema=DOC_SCHEMA)
                writer.write_table(table)
                truth += batch.truth
        shards += 1
        done = shard_stop
        rate = done / (time.perf_counter() - started)
        print(f"  generated {done:,}/{n_docs:,} documents ({rate:,.0f} docs/s)", flush=True)
    truth_path = folder / "truth.parquet"
    pq.write_table(pa.Table.from_pylist(truth, schema=TRUTH_SCHEMA), truth_path)
    check_regeneration(corpus, truth)
    size = sum(p.stat().st_size for p in docs_dir.glob("*.parquet"))
    return Generated(docs_dir, truth_path, n_docs, shards, time.perf_counter() - started, size)


def check_regeneration(corpus: Corpus, truth: list[dict[str, Any]]) -> None:
    """Documents are regenerated, never stored: an exact copy must equal its original as written, and the
    recorded Jaccard of a few edited pairs must be the one of winnow's own shingle sets."""
    exact = [row for row in truth if row["kind"] == "exact_copy"][:1]
    edited = [row for row in truth if row["kind"] != "exact_copy"][:20]
    for row in exact + edited:
        copy, original = (int(row[key][1:]) for key in ("id", "original"))
        texts = corpus.batch(copy, copy + 1).texts + corpus.batch(original, original + 1).texts
        if row["kind"] == "exact_copy" and texts[0] != texts[1]:
            raise SystemExit("corpus generation is not deterministic: an exact copy differs from its original")
        found = exact_jaccard(*(corpus.hasher.shingle_hash_set(t) for t in texts))
        if abs(found - row["jaccard"]) > 0.01:  # 32-bit shingle hashes may collide, rarely
            raise SystemExit(f"recorded Jaccard {row['jaccard']:.4f} of {row['id']} is not winnow's {found:.4f}")


def describe_truth(truth_path: Path) -> None:
    import duckdb

    rows = duckdb.sql(
        f"""SELECT kind, count(*), min(jaccard), median(jaccard), max(jaccard),
                   avg((jaccard >= {RECALL_MIN_JACCARD})::INT), avg((jaccard <= {FPR_MAX_JACCARD})::INT)
            FROM read_parquet('{truth_path}') GROUP BY kind ORDER BY kind"""
    ).fetchall()
    print(f"  {'planted':<16} {'docs':>8} {'J min':>6} {'J med':>6} {'J max':>6} {'J>=0.85':>8} {'J<=0.5':>7}")
    for kind, n, jmin, jmed, jmax, high, low in rows:
        print(f"  {kind:<16} {n:>8,} {jmin:>6.3f} {jmed:>6.3f} {jmax:>6.3f} {high:>8.1%} {low:>7.1%}")


# ---------------------------------------------------------------------- signature sides (children)


def read_texts(docs_dir: Path, limit: int) -> list[str]:
    texts: list[str] = []
    for path in sorted(docs_dir.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["text"]):
            texts += batch.column("text").to_pylist()
            if len(texts) >= limit:
                return texts[:limit]
    return texts


def shingles_bytes(text: str) -> list[bytes]:
    """5-word shingles as bytes (winnow's tokens; a shorter text is one shingle), for datasketch."""
    toks = tokens(text)
    if len(toks) <= NGRAM:
        return [b" ".join(toks)] if toks else []
    return [b" ".join(toks[i : i + NGRAM]) for i in range(len(toks) - NGRAM + 1)]


def import_datatrove_minhash() -> types.ModuleType:
    """``datatrove.pipeline.dedup.minhash``. The package's ``__init__`` also imports its exact-substring
    steps, which need the ``tokenizers`` package (not a winnow dependency); minhash.py itself does not,
    so without ``tokenizers`` the module is loaded under an empty stand-in for the package."""
    try:
        return importlib.import_module("datatrove.pipeline.dedup.minhash")
    except ImportError:
        import datatrove.pipeline

        package = types.ModuleType("datatrove.pipeline.dedup")
        package.__path__ = [str(Path(datatrove.pipeline.__file__).parent / "dedup")]
        sys.modules["datatrove.pipeline.dedup"] = package
        return importlib.import_module("datatrove.pipeline.dedup.minhash")


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_side(side: str, docs_dir: Path, limit: int, workdir: Path) -> dict[str, Any]:
    """Set up one side, then time only its signature work on the first ``limit`` texts."""
    texts = read_texts(docs_dir, limit)
    work: Any
    if side == "winnow":
        hasher = MinHasher(NGRAM, BANDS, ROWS, SEED_PERM)

        def work() -> int:
            signed = 0
            for i in range(0, len(texts), 512):
                _, mask = hasher.signatures(texts[i : i + 512])
                signed += int(mask.sum())
            return signed

    elif side in ("datatrove", "datatrove-compute"):
        from datatrove.data import Document
        from datatrove.utils.hashing import HashConfig

        dt = import_datatrove_minhash()
        config = dt.MinhashConfig(
            n_grams=NGRAM,
            num_buckets=BANDS,
            hashes_per_bucket=ROWS,
            seed=SEED_PERM,
            hash_config=HashConfig(precision=32, hash_fc="xxhash"),
        )
        step = dt.MinhashDedupSignature(output_folder=str(workdir / "signatures"), config=config)
        try:
            step._hash_func("probe")
        except TypeError:
            # datatrove's processing extra pins xxhash<4, whose functions hashed a str as its UTF-8
            # bytes; xxhash 4 refuses str, so give it the bytes (the same values, one extra encode)
            hash_bytes = step._hash_func
            step._hash_func = lambda text: hash_bytes(text.encode("utf-8"))
        step.word_tokenizer.word_tokenize("Loads the spaCy tokenizer before the clock starts.")
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]

        if side == "datatrove":

            def work() -> int:
                step.run(iter(docs), rank=0, world_size=1)
                return len(docs)

        else:

            def work() -> int:
                signed = 0
                for doc in docs:
                    shingles = step.get_shingles(doc.text)
                    if shingles.size:
                        step.get_signature(shingles)
                        signed += 1
                return signed

    elif side == "datasketch-update":
        from datasketch import MinHash

        def work() -> int:
            for text in texts:
                m = MinHash(num_perm=NUM_PERM, seed=SEED_PERM)
                m.update_batch(shingles_bytes(text))
            return len(texts)

    elif side == "datasketch-bulk":
        from datasketch import MinHash

        def work() -> int:
            return len(MinHash.bulk((shingles_bytes(t) for t in texts), num_perm=NUM_PERM, seed=SEED_PERM))

    else:
        raise ValueError(side)
    cpu0, wall0 = cpu_self(), time.perf_counter()
    signed = work()
    return {"docs": len(texts), "signed": signed, "cpu_s": cpu_self() - cpu0, "wall_s": time.perf_counter() - wall0}


# --------------------------------------------------------------------------- process-tree tools


def _descendants_proc(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def descendants_rss(root: int) -> tuple[int, int]:
    """(summed RSS in bytes, process count) of every process below ``root``."""
    try:
        import psutil
    except ImportError:
        total, count = 0, 0
        for pid in _descendants_proc(root):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        count += 1
        return total, count
    total, count = 0, 0
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                count += 1
    return total, count


@dataclass
class Timed:
    cpu_s: float
    wall_s: float
    peak_rss_mb: float = 0.0
    peak_procs: int = 0
    returncode: int = 0


def run_tree(cmd: Sequence[str], log: Path, sample_s: float | None = None) -> Timed:
    """Run ``cmd`` (cwd: repo root); CPU of its whole tree, and its peak summed RSS if ``sample_s``."""
    reap_orphans(0)
    cpu0, wall0 = cpu_children(), time.perf_counter()
    peak, procs = 0, 0
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        while True:
            if sample_s is not None:
                rss, count = descendants_rss(os.getpid())
                peak, procs = max(peak, rss), max(procs, count)
            try:
                proc.wait(timeout=sample_s)
                break
            except subprocess.TimeoutExpired:
                continue
    wall = time.perf_counter() - wall0
    reap_orphans()
    return Timed(cpu_children() - cpu0, wall, peak / 2**20, procs, proc.returncode)


def log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_bytes()[-chars:].decode("utf-8", "replace")


@dataclass
class SideResult:
    label: str
    docs: int
    cpu_s: float
    wall_s: float
    child_cpu_s: float

    @property
    def docs_per_cpu_s(self) -> float:
        return self.docs / self.cpu_s


def measure_side(side: str, label: str, docs_dir: Path, limit: int, work: Path) -> SideResult:
    folder = work / f"side-{side}"
    folder.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--docs-dir", str(docs_dir)]
    cmd += ["--sig-docs", str(limit), "--workdir", str(folder)]
    log = folder / "log.txt"
    timed = run_tree(cmd, log)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("SIDE_RESULT ")]
    if timed.returncode != 0 or not lines:
        sys.stderr.write(log_tail(log))
        raise SystemExit(f"the {side} signature run failed (exit {timed.returncode}); its output is above")
    found = json.loads(lines[-1].removeprefix("SIDE_RESULT "))
    return SideResult(label, found["docs"], found["cpu_s"], found["wall_s"], timed.cpu_s)


# ---------------------------------------------------------------------------------- the stage


@dataclass
class Quality:
    recall: float
    fpr: float
    fpr_random: float
    wrong_rejects: int
    rejects: dict[str, int]
    bands: list[tuple[str, int, float]]
    pairs: dict[str, int]


@dataclass
class StageResult:
    docs: int
    timed: Timed
    quality: Quality


def write_manifest(work: Path, docs_dir: Path, args: argparse.Namespace) -> Path:
    import yaml

    manifest = {
        "name": RUN_NAME,
        "output": str(work / "out"),
        "executor": {"kind": "local", "tasks": args.tasks, "workers": args.workers},
        "sources": [
            {
                "name": SOURCE_NAME,
                "kind": "parquet",
                "paths": [str(docs_dir / "*.parquet")],
                "text_field": "text",
                "id_field": "id",
            }
        ],
        "stages": {"extract": None, "heuristics": None, "dedup": {"memory_limit": args.memory_limit}},
    }
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def run_stage(gen: Generated, work: Path, args: argparse.Namespace) -> StageResult:
    work.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(work, gen.docs_dir, args)
    log = work / "stage-log.txt"
    cmd = [sys.executable, "-m", "winnow.pipeline.cli", "run", str(manifest), "--no-progress"]
    print(f"running the dedup stage on {gen.n_docs:,} documents (log: {log}) ...", flush=True)
    timed = run_tree(cmd, log, sample_s=args.sample_s)
    if timed.returncode not in (0, 1):
        sys.stderr.write(log_tail(log))
        raise SystemExit(f"the dedup stage failed (exit {timed.returncode}); its output is above")
    if timed.returncode == 1:
        print("warning: the run finished but some inputs errored (exit 1)", file=sys.stderr)
    print(
        f"  wall {timed.wall_s:.1f} s, CPU {timed.cpu_s:.1f} s, peak RSS {timed.peak_rss_mb:,.0f} MB "
        f"({timed.peak_procs} processes at most)",
        flush=True,
    )
    stage_dir = work / "out" / RUN_NAME / "stages" / "dedup"
    return StageResult(gen.n_docs, timed, evaluate(stage_dir, gen, args.seed, args.random_pairs))


def random_pairs(n_docs: int, seed: int, count: int) -> pa.Table:
    """``count`` pairs of documents of different planted families, neither derived from the other."""
    corpus = Corpus(n_docs, seed)
    rng = np.random.default_rng(seed + 1)
    a = rng.integers(0, n_docs, count)
    b = rng.integers(0, n_docs, count)
    fam_a, fam_b = corpus.families(a), corpus.families(b)
    related = (fam_a == fam_b) | (fam_a == b) | (fam_b == a)
    low_a, low_b = corpus.kinds(a) == LOW, corpus.kinds(b) == LOW
    orig_a = np.where(low_a, 0, -1)
    orig_b = np.where(low_b, 0, -1)
    if low_a.any():
        orig_a[low_a] = corpus.originals(a[low_a])
    if low_b.any():
        orig_b[low_b] = corpus.originals(b[low_b])
    related |= (orig_a == b) | (orig_b == a) | (orig_a == fam_b) | (orig_b == fam_a)
    keep = ~related
    return pa.table(
        {
            "a": [doc_id(i) for i in a[keep].tolist()],
            "b": [doc_id(i) for i in b[keep].tolist()],
            "kind": ["random"] * int(keep.sum()),
            "jaccard": [0.0] * int(keep.sum()),
        }
    )


def evaluate(stage_dir: Path, gen: Generated, seed: int, n_random: int) -> Quality:
    """Recall and false-positive rates of the stage's clusters and rejects against the planted truth."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    con.execute("SET threads = 2")
    rejects = sorted(str(p) for p in (stage_dir / "rejects").glob("*.parquet"))
    clusters = sorted(str(p) for p in (stage_dir / "clusters").glob("*.parquet"))
    if not rejects and not clusters:
        raise SystemExit(f"no rejects/ or clusters/ Parquet files under {stage_dir}")
    if clusters:
        con.execute(
            "CREATE TABLE cl AS SELECT id::VARCHAR AS id, any_value(cluster_id)::VARCHAR AS cluster_id "
            "FROM read_parquet(?, union_by_name = true) GROUP BY id",
            [clusters],
        )
    else:
        con.execute("CREATE TABLE cl (id VARCHAR, cluster_id VARCHAR)")
    if rejects:
        con.execute(
            "CREATE TABLE rj_all AS SELECT id::VARCHAR AS id, reason, detail::VARCHAR AS keeper "
            "FROM read_parquet(?, union_by_name = true)",
            [rejects],
        )
    else:
        con.execute("CREATE TABLE rj_all (id VARCHAR, reason VARCHAR, keeper VARCHAR)")
    reject_counts = dict(con.execute("SELECT reason, count(*) FROM rj_all GROUP BY reason ORDER BY 2 DESC").fetchall())
    con.execute(
        "CREATE TABLE rj AS SELECT id, any_value(keeper) AS keeper FROM rj_all "
        "WHERE reason IN ('exact_duplicate', 'near_duplicate') GROUP BY id"
    )
    # winnow's document id of source record R is sha1("synthetic\0R")[:32] (winnow.pipeline.readers.stable_id);
    # if the stage writes the record ids themselves, use them as they are
    sample = con.execute("SELECT id FROM (SELECT id FROM cl UNION ALL SELECT id FROM rj) LIMIT 1").fetchone()
    raw_ids = sample is not None and len(sample[0]) == 9 and sample[0][0] == "d" and sample[0][1:].isdigit()
    wid = "x" if raw_ids else f"sha1('{SOURCE_NAME}' || chr(0) || x)[:32]"
    con.execute(f"CREATE MACRO wid(x) AS {wid}")
    # every linked document's group: its cluster, its keeper's cluster, or its keeper
    con.execute(
        """CREATE TABLE grp AS
           SELECT ids.id, coalesce(c.cluster_id, ck.cluster_id, 'keeper:' || coalesce(r.keeper, ids.id)) AS g,
                  r.keeper
           FROM (SELECT id FROM cl UNION SELECT id FROM rj UNION SELECT keeper FROM rj) ids
           LEFT JOIN cl c ON c.id = ids.id LEFT JOIN rj r ON r.id = ids.id LEFT JOIN cl ck ON ck.id = r.keeper"""
    )
    con.execute("CREATE TABLE truth AS SELECT id, original, kind, jaccard FROM read_parquet(?)", [str(gen.truth_path)])
    pairs_random = random_pairs(gen.n_docs, seed, n_random)
    con.register("pairs_random", pairs_random)
    con.execute(
        """CREATE TABLE pairs AS
           WITH p AS (SELECT id AS a, original AS b, kind, jaccard FROM truth
                      UNION ALL SELECT a, b, kind, jaccard FROM pairs_random),
                w AS (SELECT *, wid(a) AS wa, wid(b) AS wb FROM p)
           SELECT w.kind, w.jaccard,
                  coalesce(ga.g, 'keeper:' || w.wa) = coalesce(gb.g, 'keeper:' || w.wb)
                  OR coalesce(ga.keeper = w.wb, false) OR coalesce(gb.keeper = w.wa, false) AS linked
           FROM w LEFT JOIN grp ga ON ga.id = w.wa LEFT JOIN grp gb ON gb.id = w.wb"""
    )

    def share(where: str) -> tuple[float, int]:
        found = con.execute(f"SELECT avg(linked::INT), count(*) FROM pairs WHERE {where}").fetchone()
        assert found is not None
        return (float("nan") if found[0] is None else float(found[0])), int(found[1])

    recall, n_recall = share(f"kind IN ('near_duplicate', 'exact_copy') AND jaccard >= {RECALL_MIN_JACCARD}")
    fpr, n_fpr = share(f"kind = 'low_similarity' AND jaccard <= {FPR_MAX_JACCARD}")
    fpr_random, n_random_pairs = share("kind = 'random'")
    bands = con.execute(
        """SELECT band, count(*), avg(linked::INT) FROM (
             SELECT CASE WHEN kind = 'exact_copy' THEN 'exact copy (J=1)'
                         WHEN kind = 'random' THEN 'random pair'
                         ELSE kind || ' J ' || printf('%.2f', least(floor(jaccard * 20) / 20, 0.95)) || '-'
                              || printf('%.2f', least(floor(jaccard * 20) / 20, 0.95) + 0.05) END AS band, linked
             FROM pairs) GROUP BY band ORDER BY band"""
    ).fetchall()
    # rejected documents whose keeper is of another planted family
    con.execute(
        f"""CREATE TABLE doc AS
            SELECT wid(raw) AS wid, coalesce(t.original, raw) AS family
            FROM (SELECT 'd' || lpad(i::VARCHAR, 8, '0') AS raw FROM range({gen.n_docs}) r(i)) d
            LEFT JOIN truth t ON t.id = d.raw AND t.kind IN ('near_duplicate', 'exact_copy')"""
    )
    wrong = con.execute(
        "SELECT count(*) FROM rj JOIN doc dx ON dx.wid = rj.id JOIN doc dk ON dk.wid = rj.keeper "
        "WHERE dx.family <> dk.family"
    ).fetchone()
    con.close()
    return Quality(
        recall=recall,
        fpr=fpr,
        fpr_random=fpr_random,
        wrong_rejects=int(wrong[0]) if wrong else 0,
        rejects=reject_counts,
        bands=[(str(b), int(n), float(s)) for b, n, s in bands],
        pairs={"recall": n_recall, "fpr": n_fpr, "random": n_random_pairs},
    )


def print_quality(q: Quality, gen: Generated) -> None:
    planted = pq.read_table(gen.truth_path, columns=["kind"]).column("kind").to_pylist()
    expected = sum(1 for k in planted if k != "low_similarity")
    rejected = ", ".join(f"{reason} {n:,}" for reason, n in q.rejects.items()) or "none"
    print(f"  rejects: {rejected} (planted near duplicates + exact copies: {expected:,})")
    print(f"  {'pairs':<34} {'pairs':>8} {'linked':>7}")
    for band, n, linked in q.bands:
        print(f"  {band:<34} {n:>8,} {linked:>7.1%}")
    print(
        f"  recall (J >= {RECALL_MIN_JACCARD}, {q.pairs['recall']:,} pairs) {q.recall:.4f}; "
        f"fpr (low-similarity J <= {FPR_MAX_JACCARD}, {q.pairs['fpr']:,} pairs) {q.fpr:.4f}; "
        f"random pairs ({q.pairs['random']:,}) {q.fpr_random:.5f}; "
        f"rejects with a keeper of another family: {q.wrong_rejects:,}",
        flush=True,
    )


# ------------------------------------------------------------------------------------- main


SIDES = {
    "winnow": "winnow MinHasher.signatures",
    "datatrove": "datatrove MinhashDedupSignature",
    "datatrove-compute": "  datatrove: shingles+signature only",
    "datasketch-update": "datasketch update_batch",
    "datasketch-bulk": "datasketch MinHash.bulk",
}
COMPUTE_ONLY_DOCS = 5_000  # the datatrove compute-only side (not in RESULT, full runs only) uses fewer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: 20,000 documents, no scaling run")
    parser.add_argument("--docs", type=int, help="documents in the corpus (default 1,000,000; --quick 20,000)")
    parser.add_argument(
        "--sig-docs", type=int, help="documents in the signature comparison (default 20,000; --quick 1,000)"
    )
    parser.add_argument("--shard-rows", type=int, help="rows per Parquet shard (default 50,000; --quick 5,000)")
    parser.add_argument("--seed", type=int, default=1234, help="corpus seed")
    parser.add_argument("--skip-stage", action="store_true", help="only generate and compare signatures")
    parser.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        help=f"also run the stage on {SCALING_DOCS:,} documents (default: on, off with --quick)",
    )
    parser.add_argument("--memory-limit", default="2GB", help="stages.dedup.memory_limit")
    parser.add_argument("--tasks", type=int, default=2, help="executor.tasks")
    parser.add_argument("--workers", type=int, default=2, help="executor.workers")
    parser.add_argument("--sample-s", type=float, default=0.2, help="RSS sampling interval in seconds")
    parser.add_argument("--random-pairs", type=int, default=100_000, help="random unrelated pairs checked")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    parser.add_argument("--side", choices=sorted(SIDES), help="internal: time one signature side (child process)")
    parser.add_argument("--docs-dir", type=Path, help="internal: the corpus folder of --side")
    parser.add_argument("--workdir", type=Path, help="internal: the scratch folder of --side")
    args = parser.parse_args(argv)
    args.docs = args.docs or (20_000 if args.quick else 1_000_000)
    args.shard_rows = args.shard_rows or (5_000 if args.quick else 50_000)
    args.sig_docs = args.sig_docs or (1_000 if args.quick else 20_000)
    if args.scaling is None:
        args.scaling = not args.quick
    return args


def benchmark(args: argparse.Namespace, work: Path) -> str:
    print(f"generating {args.docs:,} documents (seed {args.seed}) ...", flush=True)
    gen = generate(args.docs, args.seed, args.shard_rows, work / "corpus")
    print(
        f"  {gen.n_docs:,} documents in {gen.shards} shards ({gen.bytes_on_disk / 1e6:,.0f} MB) "
        f"in {gen.seconds:.1f} s ({gen.n_docs / gen.seconds:,.0f} docs/s)"
    )
    describe_truth(gen.truth_path)

    sig_docs = min(args.sig_docs, args.docs)
    print(f"\nsignatures of the first {sig_docs:,} documents, each side in its own child process ...", flush=True)
    sides = {}
    for side, label in SIDES.items():
        limit = sig_docs
        if side == "datatrove-compute":
            if args.quick:
                continue
            limit = min(sig_docs, COMPUTE_ONLY_DOCS)
            label += f" ({limit:,} docs)"
        sides[side] = measure_side(side, label, gen.docs_dir, limit, work)
    print(f"  {'side':<48} {'CPU s':>7} {'wall s':>7} {'docs/CPU-s':>11} {'child CPU s':>12}")
    for s in sides.values():
        print(f"  {s.label:<48} {s.cpu_s:>7.2f} {s.wall_s:>7.2f} {s.docs_per_cpu_s:>11,.0f} {s.child_cpu_s:>12.2f}")
    rate = {side: s.docs_per_cpu_s for side, s in sides.items()}
    sig_ratio = rate["winnow"] / rate["datatrove"]
    print(f"  winnow / datatrove signature docs per CPU-second: {sig_ratio:.2f}x", flush=True)

    result = f"RESULT docs={args.docs}"
    stage: StageResult | None = None
    small: StageResult | None = None
    if not args.skip_stage:
        print()
        stage = run_stage(gen, work / "stage", args)
        print_quality(stage.quality, gen)
        if args.scaling and args.docs > SCALING_DOCS:
            print(f"\nscaling: generating {SCALING_DOCS:,} documents ...", flush=True)
            gen_small = generate(SCALING_DOCS, args.seed, args.shard_rows, work / "corpus-100k")
            small = run_stage(gen_small, work / "stage-100k", args)
            print_quality(small.quality, gen_small)
            growth = stage.timed.peak_rss_mb / small.timed.peak_rss_mb
            print(
                f"  peak RSS {small.timed.peak_rss_mb:,.0f} MB at {SCALING_DOCS:,} documents, "
                f"{stage.timed.peak_rss_mb:,.0f} MB at {args.docs:,} ({growth:.2f}x for "
                f"{args.docs / SCALING_DOCS:.1f}x the documents)"
            )
        t, q = stage.timed, stage.quality
        result += f" peak_rss_mb={t.peak_rss_mb:.0f} wall_s={t.wall_s:.1f} cpu_s={t.cpu_s:.1f}"
        if small is not None:
            result += f" peak_rss_100k_mb={small.timed.peak_rss_mb:.0f}"
    result += (
        f" sig_docs_per_cpu_s={rate['winnow']:.0f} datatrove_sig_docs_per_cpu_s={rate['datatrove']:.0f}"
        f" datasketch_update_docs_per_cpu_s={rate['datasketch-update']:.0f}"
        f" datasketch_bulk_docs_per_cpu_s={rate['datasketch-bulk']:.0f} sig_ratio={sig_ratio:.2f}"
    )
    if stage is not None:
        q = stage.quality
        result += (
            f" recall={q.recall:.4f} fpr={q.fpr:.4f} fpr_random={q.fpr_random:.5f} wrong_rejects={q.wrong_rejects}"
        )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        found = run_side(args.side, args.docs_dir, args.sig_docs, args.workdir)
        print("SIDE_RESULT " + json.dumps(found), flush=True)
        return 0
    return run_benchmark(benchmark, args, "winnow-dedup-bench-")


if __name__ == "__main__":
    sys.exit(main())
