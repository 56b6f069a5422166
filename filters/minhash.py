"""MinHash signatures and LSH band keys for near-duplicate detection, vectorised over batches of documents.

The permutation family is datasketch's ``affine32`` scheme (its default since 2.0): a 32-bit shingle
hash ``h`` is pre-mixed with the MurmurHash3 finaliser and mapped by ``a * h + b mod 2**32`` with
datasketch's own ``(a, b)`` for the seed. :meth:`MinHasher.signatures` returns exactly the values
``datasketch.MinHash(num_perm, seed, hashfunc=<shingle hash>).update_batch(shingles)`` would (a test
checks this), but for a whole batch of documents in a few numpy calls instead of one Python call per
shingle.

Tokens: the text is NFKC-normalised and case-folded; a token is a run of word characters and
combining marks (so Indic vowel signs stay inside their word), except in scripts written without
spaces (Han, kana, Thai, Lao, Khmer, Myanmar), where every letter, digit or mark is a token on its
own; punctuation and symbols are never tokens. Shingles are ``ngram`` consecutive tokens; a document
with fewer tokens than ``ngram`` has one shingle made of all its tokens; a document without tokens
has no signature (it is not compared).
A shingle's hash combines per-token 64-bit xxhash values by position, then keeps 32 bits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import xxhash

# blocks of scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, kana, Han
_UNSPACED_BLOCKS = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x3040, 0x30FF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x3134F),
)


def _char_class(codepoints: Sequence[int]) -> str:
    """The body of a regex character class matching exactly ``codepoints`` (sorted), as ranges."""
    parts, start = [], None
    for previous, current in zip([None, *codepoints], [*codepoints, None], strict=True):
        if start is None:
            start = current
        elif current is None or current != previous + 1:
            parts.append(re.escape(chr(start)) + ("" if previous == start else "-" + re.escape(chr(previous))))
            start = current
    return "".join(parts)


def _token_pattern() -> re.Pattern[str]:
    in_blocks = [c for a, b in _UNSPACED_BLOCKS for c in range(a, b + 1)]
    unspaced = _char_class([c for c in in_blocks if unicodedata.category(chr(c))[0] in "LMN"])
    blocked = {*in_blocks}
    marks = _char_class(
        [c for c in range(0x30000) if c not in blocked and unicodedata.category(chr(c)) in ("Mn", "Mc", "Me")]
    )
    return re.compile(f"[{unspaced}]|(?:[^\\W{_char_class(sorted(blocked))}]|[{marks}])+")


TOKEN = _token_pattern()

_MASK32 = np.uint64(0xFFFFFFFF)
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
SLICE_SHINGLES = 32_768  # shingles per permutation matrix: (32k x 112) uint32 = 14 MB


# ASCII fast path: every byte that is not [A-Za-z0-9_] becomes a space (same tokens as the regex)
_ASCII_NON_WORD = bytes(b if b < 128 and (chr(b).isalnum() or b == 0x5F) else 0x20 for b in range(256))


def normalize(text: str) -> str:
    """NFKC and case folding: the text every dedup key is computed from."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", text).casefold()


def tokens(text: str) -> list[bytes]:
    """UTF-8 tokens of the normalised text (see the module docstring)."""
    if text.isascii():
        return text.lower().encode("ascii").translate(_ASCII_NON_WORD).split()
    return [t.encode("utf-8", "surrogatepass") for t in TOKEN.findall(normalize(text))]


def _fmix64(values: np.ndarray) -> np.ndarray:
    shift, m1, m2 = _FMIX64
    values = values ^ (values >> shift)
    values = values * m1
    values = values ^ (values >> shift)
    values = values * m2
    return values ^ (values >> shift)


def _fmix32(values: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2 = _FMIX32
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s1)


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine32`` permutation parameters ``(a, b)`` for a seed (``MinHash._init_permutations``).

    Generated here rather than by constructing a ``datasketch.MinHash`` because importing datasketch
    imports scipy, about a second in every worker process; a test checks the values are datasketch's.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


class TokenHashes(dict[bytes, int]):
    """Token -> 64-bit xxhash, computed once per process per distinct token (vocabularies are Zipfian)."""

    MAX_ENTRIES = 2_000_000

    def __missing__(self, token: bytes) -> int:
        if len(self) >= self.MAX_ENTRIES:
            self.clear()
        value = self[token] = xxhash.xxh64_intdigest(token)
        return value


class MinHasher:
    """MinHash signatures (``num_perm`` uint32 values per document) and LSH band keys."""

    def __init__(self, ngram: int = 5, bands: int = 14, rows: int = 8, seed: int = 1) -> None:
        if ngram < 1 or bands < 1 or rows < 1:
            raise ValueError("ngram, bands and rows must be >= 1")
        self.ngram = ngram
        self.bands = bands
        self.rows = rows
        self.num_perm = bands * rows
        self.seed = seed
        self._a, self._b = affine32_permutations(self.num_perm, seed)
        rng = np.random.default_rng(seed)
        # odd 64-bit multipliers: one per shingle position, and one per row of a band
        self._position_mult = rng.integers(0, 2**63, size=ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._row_mult = rng.integers(0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._token_hashes = TokenHashes()

    @staticmethod
    def for_threshold(threshold: float, num_perm: int, ngram: int = 5, seed: int = 1) -> MinHasher:
        """Bands and rows chosen by datasketch for a Jaccard ``threshold`` (equal weight on FP and FN)."""
        from datasketch.lsh import _optimal_param  # imports scipy (~1 s): only when a threshold is asked for

        bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        return MinHasher(ngram=ngram, bands=bands, rows=rows, seed=seed)

    def token_hashes(self, text: str) -> np.ndarray:
        """64-bit hashes of the text's tokens, in order."""
        return self.hash_tokens(tokens(text))

    def hash_tokens(self, found: Sequence[bytes]) -> np.ndarray:
        """64-bit hashes of already computed tokens, in order."""
        return np.fromiter(map(self._token_hashes.__getitem__, found), dtype=np.uint64, count=len(found))

    def shingle_hashes(self, token_hashes: np.ndarray) -> np.ndarray:
        """32-bit hashes of the document's shingles (see the module docstring); empty without tokens."""
        count = len(token_hashes)
        if count == 0:
            return np.empty(0, dtype=np.uint32)
        width = min(self.ngram, count)
        combined = np.zeros(count - width + 1, dtype=np.uint64)
        for position in range(width):
            combined += token_hashes[position : count - width + 1 + position] * self._position_mult[position]
        return (_fmix64(combined) >> np.uint64(32)).astype(np.uint32)

    def shingle_hash_set(self, text: str) -> np.ndarray:
        """Distinct shingle hashes of a text (for exact Jaccard)."""
        return np.unique(self.shingle_hashes(self.token_hashes(text)))

    def signatures(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures ``(len(texts), num_perm)`` uint32 and a boolean mask of documents that have one."""
        shingles = [self.shingle_hashes(self.token_hashes(t)) for t in texts]
        return self.signatures_of_shingles(shingles)

    def signatures_of_shingles(self, shingles: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`signatures`, from each document's shingle hashes."""
        counts = np.fromiter((len(s) for s in shingles), dtype=np.int64, count=len(shingles))
        offsets = np.concatenate(([0], np.cumsum(counts)))
        signatures = np.full((len(shingles), self.num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
        if offsets[-1] == 0:
            return signatures, counts > 0
        mixed = _fmix32(np.concatenate(shingles))
        total = int(offsets[-1])
        for start in range(0, total, SLICE_SHINGLES):
            stop = min(start + SLICE_SHINGLES, total)
            # documents with shingles in [start, stop), and where each one's part of the slice begins
            first = int(np.searchsorted(offsets, start, side="right")) - 1
            last = int(np.searchsorted(offsets, stop, side="left"))
            docs = np.arange(first, last)
            docs = docs[counts[docs] > 0]
            begins = np.maximum(offsets[docs], start) - start
            permuted = mixed[start:stop, None] * self._a  # uint32 arithmetic wraps: mod 2**32
            permuted += self._b
            signatures[docs] = np.minimum(signatures[docs], np.minimum.reduceat(permuted, begins, axis=0))
        return signatures, counts > 0

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """LSH bucket keys ``(n, bands)`` uint64: a 64-bit hash of each band's ``rows`` values."""
        n = signatures.shape[0]
        grouped = signatures[:, : self.bands * self.rows].reshape(n, self.bands, self.rows).astype(np.uint64)
        keys = np.zeros((n, self.bands), dtype=np.uint64)
        for row in range(self.rows):
            keys = _fmix64(keys ^ (grouped[:, :, row] * self._row_mult[row]))
        return keys


def estimated_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Share of equal signature values, row by row: the MinHash estimate of Jaccard similarity."""
    return (left == right).mean(axis=-1)


def exact_jaccard(left: np.ndarray, right: np.ndarray) -> float:
    """Jaccard similarity of two sets of distinct shingle hashes (1.0 for two empty sets)."""
    if len(left) == 0 and len(right) == 0:
        return 1.0
    shared = len(np.intersect1d(left, right, assume_unique=True))
    return shared / (len(left) + len(right) - shared)
