"""The regex word/sentence splitter used by the heuristic filters in place of spaCy."""

from __future__ import annotations

from winnow.filters.word_tokenizer import RegexWordTokenizer

TEXT = 'Dr. Smith paid $3.50 for the U.S. edition. Was it worth it? "Yes!" she said, quite sure.\nNext line'


def test_words_keep_numbers_and_abbreviations_and_split_punctuation() -> None:
    words = RegexWordTokenizer().word_tokenize(TEXT)
    assert "3.50" in words and "U.S." in words and "$" in words and "?" in words
    assert "worth" in words and "worth it" not in words
    assert all(w.strip() == w and w for w in words)


def test_sentences_and_spans_agree() -> None:
    tokenizer = RegexWordTokenizer()
    sentences = tokenizer.sent_tokenize(TEXT)
    spans = tokenizer.span_tokenize(TEXT)
    assert len(sentences) == len(spans) >= 4
    assert [TEXT[a:b].strip() for a, b in spans] == sentences
    assert sentences[1] == "Was it worth it?"
