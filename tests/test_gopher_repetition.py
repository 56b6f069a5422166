"""The fast Gopher repetition filter against datatrove's own: the same statistics, verdicts and reasons.

- on real text (``../shared/data/text``: Common Crawl, Wikipedia, Brown, StackExchange);
- on random word lists over a tiny alphabet, where n-grams repeat and distinct n-grams join to equal
  strings (``"ab" + "c"`` and ``"a" + "bc"``), as datatrove's joins make them;
- with the hash made weak on purpose, so that distinct n-grams collide and the exact fallbacks decide.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams

from winnow.filters import gopher_repetition
from winnow.filters.gopher_repetition import GopherRepetitionFast, NgramSpans, repeated_ngram_chars, top_ngram_chars
from winnow.filters.word_tokenizer import RegexWordTokenizer

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "text"
SAMPLES = {  # file -> every n-th record
    "dolma_cc_en_head/cc_en_head-0091.jsonl": 1,
    "dolma_cc_en_head/cc_en_head-0174.jsonl": 1,
    "wikipedia_wikitext2.jsonl": 1,
    "nltk_brown_mixed_genres.jsonl": 2,
    "stackexchange_beer_coffee.jsonl": 10,
    "nltk_webtext_forum_ads_reviews_scripts.jsonl": 100,
}
TOP_N, REPEATED_N = (2, 3, 4), (5, 6, 7, 8, 9, 10)


def datatrove_statistics(words: list[str]) -> list[int | None]:
    top = [find_top_duplicate(get_n_grams(words, n)) if len(words) >= n else None for n in TOP_N]
    return top + [find_all_duplicate(words, n) for n in REPEATED_N]


def fast_statistics(words: list[str]) -> list[int | None]:
    spaced, joined = NgramSpans(words, " "), NgramSpans(words, "")
    return [top_ngram_chars(spaced, n) for n in TOP_N] + [repeated_ngram_chars(joined, n) for n in REPEATED_N]


def random_word_lists(count: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    alphabet = ["a", "b", "ab", "ba", "", "é", "a b", "ab c", "\ud800"]  # a lone surrogate: a str, not UTF-8
    lists = []
    for _ in range(count):
        letters = alphabet[: rng.randint(1, len(alphabet))]
        lists.append([rng.choice(letters) for _ in range(rng.randint(0, 80))])
    return lists


def shared_texts() -> list[str]:
    if not SHARED_TEXT.is_dir():
        pytest.skip(f"shared text corpora not found at {SHARED_TEXT}")
    texts = []
    for name, step in SAMPLES.items():
        lines = (SHARED_TEXT / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines[::step]]
    return texts


def test_statistics_equal_datatrove_on_word_lists_built_to_repeat_and_collide() -> None:
    for words in random_word_lists(2000):
        assert fast_statistics(words) == datatrove_statistics(words), words


def test_statistics_equal_datatrove_when_every_hash_collides(monkeypatch: pytest.MonkeyPatch) -> None:
    # base 1: a span's hash is the sum of its code points, so "ab" and "ba" (and much else) collide
    monkeypatch.setattr(gopher_repetition, "_BASE", np.uint64(1))
    monkeypatch.setattr(gopher_repetition, "_BASE_INVERSE", np.uint64(1))
    assert top_ngram_chars(NgramSpans(["ab", "ba", "ba", "ab", "ab", "ba"], " "), 1) == 2 * 3
    for words in random_word_lists(500, seed=11):
        assert fast_statistics(words) == datatrove_statistics(words), words


def test_statistics_equal_datatrove_on_real_text() -> None:
    tokenizer = RegexWordTokenizer("en")
    texts = shared_texts()
    assert len(texts) > 500
    for text in texts:
        words = tokenizer.word_tokenize(text)
        assert fast_statistics(words) == datatrove_statistics(words)


def test_verdicts_equal_datatrove_on_real_text_and_repeats() -> None:
    tokenizer = RegexWordTokenizer("en")
    texts = shared_texts()
    texts += [" ".join(words) for words in random_word_lists(300, seed=3)]
    texts += ["\n".join([text[:200]] * 3) for text in texts[:50]]  # repeated lines and paragraphs
    texts += ["", "\n\n"]
    ours, theirs = GopherRepetitionFast(language=tokenizer), GopherRepetitionFilter(language=tokenizer)
    reasons = set()
    for i, text in enumerate(texts):
        verdict = ours.filter(Document(text=text, id=str(i)))
        assert verdict == theirs.filter(Document(text=text, id=str(i))), text[:200]
        reasons.add(verdict if verdict is True else verdict[1])
    # the comparison covered keeping and several of the reasons, n-gram ones among them
    assert True in reasons and {"top_2_gram", "dup_line_frac"} & reasons and len(reasons) >= 5, reasons
