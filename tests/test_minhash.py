"""MinHash signatures, tokens, LSH band keys and the exact dedup keys (filters/minhash.py, filters/dedup_keys.py)."""

from __future__ import annotations

import string
import unicodedata

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

import winnow.filters.minhash
from winnow.filters.dedup_keys import text_key, url_key
from winnow.filters.minhash import TOKEN, MinHasher, estimated_jaccard, exact_jaccard, tokens

NO_SIGNATURE = np.uint32(0xFFFFFFFF)


def random_words(rng: np.random.Generator, count: int, vocabulary: int = 3000) -> list[str]:
    """``count`` words drawn from a fixed pseudo-vocabulary of lower-case ASCII words."""
    letters = np.array(list(string.ascii_lowercase))
    vocab = ["".join(rng.choice(letters, size=int(rng.integers(2, 10)))) for _ in range(vocabulary)]
    return [vocab[i] for i in rng.integers(0, vocabulary, size=count)]


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher()  # FineWeb's 14 bands x 8 rows, 5-grams, seed 1


@pytest.fixture(scope="module")
def varied_texts() -> list[str]:
    """Texts of every kind a signature batch meets: long, short, below ngram, token-less, unicode, CJK, Thai."""
    rng = np.random.default_rng(7)
    return [
        " ".join(random_words(rng, 3000)),
        "The quick brown fox jumps over the lazy dog.",
        "",
        "two words",
        "single",
        "Ça va très bien : une naïve façade, ﬁnale à l'œil — ÉTÉ 2024!",
        "我们今天下午去公园散步，天气非常好，然后回家吃饭。",
        "",
        "ภาษาไทยเขียนติดกันโดยไม่มีการเว้นวรรคระหว่างคำ",
        "ひらがなとカタカナと漢字が混ざった日本語の文です",
        "!!! ... --- ???",
        " ".join(random_words(rng, 400)),
        "Mixed 中文 and English, numbers 12345 and under_scores.",
    ]


def datasketch_signature(hasher: MinHasher, text: str) -> np.ndarray:
    """datasketch's own MinHash over the text's shingle hashes (the reference the vectorised code must match)."""
    reference = MinHash(num_perm=hasher.num_perm, seed=hasher.seed, hashfunc=lambda x: int(x))
    reference.update_batch(hasher.shingle_hashes(hasher.token_hashes(text)))
    return np.asarray(reference.hashvalues)


# ---------------------------------------------------------------- signatures


def test_signatures_equal_datasketch_minhash(hasher: MinHasher, varied_texts: list[str]) -> None:
    """Every signature of a mixed batch is exactly datasketch's MinHash(num_perm=112, seed=1) of the same shingles."""
    signatures, mask = hasher.signatures(varied_texts)
    assert signatures.shape == (len(varied_texts), 112) and signatures.dtype == np.uint32
    assert mask.tolist() == [bool(tokens(t)) for t in varied_texts]
    for text, signature, has_one in zip(varied_texts, signatures, mask, strict=True):
        if has_one:
            np.testing.assert_array_equal(signature, datasketch_signature(hasher, text), err_msg=text[:40])


@pytest.mark.parametrize("slice_shingles", [1, 5, 64, 1000])
def test_signatures_independent_of_batch_and_slicing(
    hasher: MinHasher, varied_texts: list[str], slice_shingles: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document's signature does not depend on its neighbours, their order, or how shingles are sliced."""
    together, mask = hasher.signatures(varied_texts)
    alone = [hasher.signatures([t]) for t in varied_texts]
    reversed_batch, reversed_mask = hasher.signatures(varied_texts[::-1])

    monkeypatch.setattr(winnow.filters.minhash, "SLICE_SHINGLES", slice_shingles)
    total = sum(len(hasher.shingle_hashes(hasher.token_hashes(t))) for t in varied_texts)
    assert total > 2 * slice_shingles  # documents really straddle slice boundaries
    sliced, sliced_mask = hasher.signatures(varied_texts)

    np.testing.assert_array_equal(sliced, together)
    np.testing.assert_array_equal(sliced_mask, mask)
    np.testing.assert_array_equal(reversed_batch[::-1], together)
    np.testing.assert_array_equal(reversed_mask[::-1], mask)
    for (one, one_mask), row, row_mask in zip(alone, together, mask, strict=True):
        np.testing.assert_array_equal(one[0], row)
        assert one_mask[0] == row_mask


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "!!! ... --- ???", "«»—…", "\u3000\u3001\u3002"])
def test_text_without_tokens_has_no_signature(hasher: MinHasher, text: str) -> None:
    """Empty, blank and punctuation-only texts have no shingles and a False mask, even inside a batch."""
    assert len(hasher.shingle_hashes(hasher.token_hashes(text))) == 0
    signatures, mask = hasher.signatures(["some real words in a sentence here", text, "more words"])
    assert mask.tolist() == [True, False, True]
    assert (signatures[1] == NO_SIGNATURE).all()


def test_text_shorter_than_ngram_has_one_shingle(hasher: MinHasher) -> None:
    """Fewer tokens than ngram: one shingle of all tokens, a signature, and token order still matters."""
    assert hasher.ngram > 2
    shingles = hasher.shingle_hashes(hasher.token_hashes("alpha beta"))
    assert len(shingles) == 1
    signatures, mask = hasher.signatures(["alpha beta", "beta alpha", "alpha"])
    assert mask.all()
    np.testing.assert_array_equal(signatures[0], datasketch_signature(hasher, "alpha beta"))
    assert estimated_jaccard(signatures[0], signatures[1]) < 0.2
    assert estimated_jaccard(signatures[0], signatures[2]) < 0.2


def test_ten_megabyte_text(hasher: MinHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 MB document gets a signature, the same one when sliced finely and the same as datasketch's."""
    rng = np.random.default_rng(3)
    words = random_words(rng, 200_000, vocabulary=20_000)
    text = " ".join(words)
    text = (text + " ") * (10_000_000 // len(text) + 1)
    assert len(text) >= 10_000_000
    shingles = hasher.shingle_hashes(hasher.token_hashes(text))

    signatures, mask = hasher.signatures([text, "a short neighbour"])
    assert mask.all()
    reference = MinHash(num_perm=hasher.num_perm, seed=hasher.seed, hashfunc=lambda x: int(x))
    for start in range(0, len(shingles), 250_000):
        reference.update_batch(shingles[start : start + 250_000])
    np.testing.assert_array_equal(signatures[0], reference.hashvalues)

    monkeypatch.setattr(winnow.filters.minhash, "SLICE_SHINGLES", 4096)
    sliced, _ = hasher.signatures([text, "a short neighbour"])
    np.testing.assert_array_equal(sliced, signatures)


# ---------------------------------------------------------------- tokens


def test_ascii_fast_path_equals_regex_path() -> None:
    """ASCII text gives the same tokens through the byte-translation path as through NFKC + casefold + TOKEN."""
    rng = np.random.default_rng(11)
    alphabet = np.array(list(string.printable + "\x00\x01\x1b\x1f\x7f" + "_" * 5 + " " * 10))
    for _ in range(500):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 200))))
        assert text.isascii()
        expected = [t.encode() for t in TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())]
        assert tokens(text) == expected, repr(text)
        # one non-ASCII word appended forces the general path for the same text
        assert tokens(text + " é") == [*expected, "é".encode()], repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "我们去公园",
        "漢字かなカナ",
        "ひらがなカタカナ",
        "ภาษาไทย",
        "ພາສາລາວ",
        "ភាសាខ្មែរ",
        "မြန်မာဘာသာ",
        "㐀㐁",  # CJK extension A
    ],
)
def test_unspaced_scripts_give_one_token_per_character(text: str) -> None:
    """Han, kana, Thai, Lao, Khmer and Myanmar: every character is a token of its own."""
    assert tokens(text) == [c.encode() for c in unicodedata.normalize("NFKC", text)]


def test_unspaced_characters_split_latin_runs() -> None:
    """A Han character between Latin letters ends the word; spaced scripts (Hangul) stay whole words."""
    assert tokens("abc中文def123") == [b"abc", "中".encode(), "文".encode(), b"def123"]
    assert tokens("한국어 문장입니다") == ["한국어".encode(), "문장입니다".encode()]


@pytest.mark.parametrize(
    ("folded", "plain"),
    [
        ("ＨＥＬＬＯ Ｗｏｒｌｄ", "hello world"),  # full-width letters
        ("ﬁne ﬂow", "fine flow"),  # ligatures
        ("STRASSE Straße", "strasse strasse"),  # case folding, not just lower()
        ("Ｎｏ．１２３", "no 123"),  # full-width digits and punctuation
        ("ÀÉÎ", "àéî"),
        ("e\u0301te\u0301", "été"),  # decomposed accents compose under NFKC
    ],
)
def test_case_and_compatibility_folding(folded: str, plain: str, hasher: MinHasher) -> None:
    """NFKC and case folding: compatibility forms and case variants give the same tokens, keys and shingles."""
    assert tokens(folded) == tokens(plain)
    assert text_key(folded) == text_key(plain)
    np.testing.assert_array_equal(hasher.shingle_hash_set(folded), hasher.shingle_hash_set(plain))


@pytest.mark.parametrize(
    ("punctuated", "plain"),
    [("カタカナ・ひらがな", "カタカナ ひらがな"), ("ភាសា។", "ភាសា"), ("မြန်မာ။", "မြန်မာ"), ("ไทย๚", "ไทย")],
)
def test_punctuation_in_unspaced_scripts_is_not_a_token(punctuated: str, plain: str) -> None:
    """Sentence punctuation of unspaced scripts is ignored like any other punctuation (text_key contract)."""
    assert text_key(punctuated) == text_key(plain)


def test_combining_vowel_signs_are_part_of_the_word() -> None:
    """Indic words keep their vowel signs: texts that differ in a letter (matra) have different keys."""
    assert tokens("हिन्दी") == ["हिन्दी".encode()]
    assert text_key("दिन") != text_key("दीन")


# ---------------------------------------------------------------- Jaccard


def test_estimated_jaccard_tracks_exact_jaccard() -> None:
    """The share of equal signature values is within 0.1 of the exact shingle-set Jaccard, from 0 to 1."""
    # 512 permutations: the estimate's standard deviation is at most 0.5 / sqrt(512) = 0.022, so 0.1 is 4.5 sigma
    hasher = MinHasher(bands=64, rows=8)
    rng = np.random.default_rng(5)
    base = random_words(rng, 600)
    fresh = random_words(np.random.default_rng(6), 600)
    variants = []
    for share in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4, 1.0):
        changed = rng.choice(len(base), size=int(share * len(base)), replace=False)
        words = list(base)
        for i in changed:
            words[i] = fresh[i]
        variants.append(" ".join(words))
    original = " ".join(base)
    signatures, mask = hasher.signatures([original, *variants])
    assert mask.all()
    exact = [exact_jaccard(hasher.shingle_hash_set(original), hasher.shingle_hash_set(v)) for v in variants]
    estimated = estimated_jaccard(signatures[:1], signatures[1:])
    assert exact[0] == 1.0 and min(exact) < 0.1 and any(0.3 < e < 0.8 for e in exact)  # the levels span the range
    for e, s in zip(exact, estimated, strict=True):
        assert abs(e - s) <= 0.1, (e, s)


def test_exact_jaccard_of_sets() -> None:
    """exact_jaccard is |A∩B| / |A∪B| over distinct hashes, 1.0 for two empty sets."""
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([3, 4, 5], dtype=np.uint32)
    assert exact_jaccard(a, b) == pytest.approx(len({3, 4}) / len({1, 2, 3, 4, 5}))
    assert exact_jaccard(a, a) == 1.0
    assert exact_jaccard(a, np.array([9], dtype=np.uint32)) == 0.0
    assert exact_jaccard(np.empty(0, np.uint32), np.empty(0, np.uint32)) == 1.0


# ---------------------------------------------------------------- LSH bands


def test_band_keys_change_only_for_the_changed_band(hasher: MinHasher) -> None:
    """Equal band values give equal keys; changing one row of one band changes that band's key and no other."""
    rng = np.random.default_rng(13)
    signature = rng.integers(0, 2**32, size=(1, hasher.num_perm), dtype=np.uint64).astype(np.uint32)
    keys = hasher.band_keys(signature)
    assert keys.shape == (1, hasher.bands) and keys.dtype == np.uint64
    np.testing.assert_array_equal(hasher.band_keys(signature.copy()), keys)
    assert len(set(keys[0].tolist())) == hasher.bands  # distinct values, distinct keys
    for band in range(hasher.bands):
        for row in (0, hasher.rows - 1, int(rng.integers(hasher.rows))):
            changed = signature.copy()
            changed[0, band * hasher.rows + row] ^= np.uint32(1 << int(rng.integers(32)))
            changed_keys = hasher.band_keys(changed)[0]
            differs = changed_keys != keys[0]
            assert differs.tolist() == [b == band for b in range(hasher.bands)], (band, row)


def test_band_keys_of_two_documents_agree_on_shared_bands(hasher: MinHasher) -> None:
    """Two signatures that share exactly one band's values collide in that band only."""
    rng = np.random.default_rng(17)
    signatures = rng.integers(0, 2**32, size=(2, hasher.num_perm), dtype=np.uint64).astype(np.uint32)
    shared = 3
    span = slice(shared * hasher.rows, (shared + 1) * hasher.rows)
    signatures[1, span] = signatures[0, span]
    keys = hasher.band_keys(signatures)
    assert (keys[0] == keys[1]).tolist() == [b == shared for b in range(hasher.bands)]


def test_swapping_rows_within_a_band_changes_its_key(hasher: MinHasher) -> None:
    """A band key depends on which row holds which value, not only on the set of values."""
    signature = np.arange(hasher.num_perm, dtype=np.uint32).reshape(1, -1) * np.uint32(2654435761)
    swapped = signature.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    assert hasher.band_keys(signature)[0, 0] != hasher.band_keys(swapped)[0, 0]


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_for_threshold_uses_datasketch_bands_and_rows(threshold: float) -> None:
    """for_threshold picks datasketch's (bands, rows) for the threshold, within the permutation budget."""
    chosen = MinHasher.for_threshold(threshold, 128)
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    assert (chosen.bands, chosen.rows) == (lsh.b, lsh.r) == _optimal_param(threshold, 128, 0.5, 0.5)
    assert chosen.num_perm == chosen.bands * chosen.rows <= 128
    signatures, _ = chosen.signatures(["a few words to hash into a signature"])
    assert signatures.shape == (1, chosen.num_perm)
    assert chosen.band_keys(signatures).shape == (1, chosen.bands)


def test_invalid_lsh_shape_is_rejected() -> None:
    """Zero bands, rows or ngram is a configuration error, not an empty signature."""
    for kwargs in ({"ngram": 0}, {"bands": 0}, {"rows": 0}):
        with pytest.raises(ValueError):
            MinHasher(**kwargs)


# ---------------------------------------------------------------- exact keys


def test_text_key_folds_case_whitespace_and_punctuation() -> None:
    """Texts that differ only in case, whitespace or punctuation share one 16-byte key."""
    variants = ["Hello, World! It's 2024.", "hello world it s 2024", "  HELLO\n\tWORLD...  it-S   2024!!!"]
    keys = {text_key(v) for v in variants}
    assert len(keys) == 1
    (key,) = keys
    assert isinstance(key, bytes) and len(key) == 16


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Room 101", "Room 102"),  # digits
        ("the cat sat", "the cot sat"),  # letters
        ("a b", "b a"),  # order
        ("ab c", "a bc"),  # token boundaries
        ("hello", "hello hello"),  # repetition
    ],
)
def test_text_key_distinguishes_digits_letters_and_order(left: str, right: str) -> None:
    """Texts with different tokens have different keys."""
    assert text_key(left) is not None and text_key(right) is not None
    assert text_key(left) != text_key(right)


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "?!.,;:--", "«»…"])
def test_text_key_is_none_without_tokens(text: str) -> None:
    """A text without tokens has no key (it is never an exact duplicate of anything)."""
    assert text_key(text) is None


URL_CASES = [
    ("HTTP://Example.COM/Path", "http://example.com/Path"),  # scheme and host lower-cased, path kept
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),  # non-default port kept
    ("http://example.com:443/a", "http://example.com:443/a"),  # 443 is not http's default
    ("https://example.com", "https://example.com/"),  # empty path
    ("https://example.com?b=1", "https://example.com/?b=1"),
    ("http://example.com/a#section-2", "http://example.com/a"),  # fragment
    ("http://example.com/a?b=2&a=1&c=3", "http://example.com/a?a=1&b=2&c=3"),  # sorted query
    ("http://example.com/a?utm_source=x&id=7&UTM_Medium=y&fbclid=z&gclid=g", "http://example.com/a?id=7"),
    ("http://example.com/a?utm_campaign=x", "http://example.com/a"),
    ("http://example.com/a/", "http://example.com/a/"),  # trailing slash kept
    ("  http://example.com/a  ", "http://example.com/a"),
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES)
def test_url_key_normalises(url: str, expected: str) -> None:
    """url_key applies the normalisation of its module docstring, and applying it twice changes nothing."""
    assert url_key(url) == expected
    assert url_key(expected) == expected


def test_url_key_keeps_what_distinguishes_pages() -> None:
    """Path case, trailing slashes and non-tracking parameter values still tell URLs apart."""
    distinct = [
        "http://example.com/a",
        "http://example.com/a/",
        "http://example.com/A",
        "http://example.com/a?id=1",
        "http://example.com/a?id=2",
        "https://example.com/a",
        "http://example.com:8080/a",
        "http://www.example.com/a",
    ]
    assert len({url_key(u) for u in distinct}) == len(distinct)


@pytest.mark.parametrize(
    "url", [None, "", "not a url", "http://", "http:///path", "http://:80/", "http://a.com:99999/"]
)
def test_url_key_is_none_for_garbage(url: str | None) -> None:
    """Missing, host-less or unparsable URLs have no key."""
    assert url_key(url) is None


def test_url_key_keeps_ipv6_brackets() -> None:
    """An IPv6 host keeps its brackets, so the key is a valid URL and the port is not confused with the address."""
    assert url_key("http://[::1]:8080/x") == "http://[::1]:8080/x"
    assert url_key("http://[::1:8080]/x") != url_key("http://[::1]:8080/x")
