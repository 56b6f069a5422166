"""The heuristics filters: wiring from the manifest, a failing filter turning into error records, and rejects whose
``detail`` gives the measured value against the threshold (checked against the value recomputed here, simply)."""

from __future__ import annotations

import inspect
import math
import pickle
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

from winnow.filters.heuristics import (
    DETAIL_KEY,
    FILTERS,
    GuardedGopherQuality,
    heuristic_filters,
)
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout


class BrokenOnMarker(RegexWordTokenizer):
    """A tokenizer that fails on one document, as a filter can on input nobody foresaw."""

    def word_tokenize(self, text: str) -> list[str]:
        if "EXPLODE" in text:
            raise ValueError("tokenizer failed")
        return super().word_tokenize(text)


def test_exception_in_a_filter_is_an_error_record_and_the_task_goes_on(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "heuristics", 1 << 30)
    prose = "The quick brown fox jumps over the lazy dog and the cat. " * 20
    docs = [
        Document(text=prose, id="good-1", metadata={"source": "s"}),
        Document(text="EXPLODE " + prose, id="bad", metadata={"source": "s"}),
        Document(text=prose, id="good-2", metadata={"source": "s"}),
    ]
    step = GuardedGopherQuality(exclusion_writer=OutcomeWriter(layout, "gopher_quality"), language=BrokenOnMarker())
    kept = [d.id for d in step.run(iter(docs), rank=0)]

    assert kept == ["good-1", "good-2"]
    [errors_file] = (tmp_path / "stages" / "heuristics" / "errors").glob("*.parquet")
    [row] = pq.read_table(errors_file).to_pylist()
    assert row["id"] == "bad" and row["reason"] == "gopher_quality:exception"
    assert "ValueError: tokenizer failed" in row["detail"]
    assert not (tmp_path / "stages" / "heuristics" / "rejects").exists()


def test_filters_follow_the_manifest(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "heuristics", 1 << 30)
    config = HeuristicsConfig.model_validate({"c4": False, "gopher_quality": {"min_doc_words": 7}})
    steps = heuristic_filters(config, LanguageConfig(), layout)
    names = [type(s).__name__ for s in steps]
    assert names == ["LanguageSelector", "GuardedGopherRepetition", "GuardedGopherQuality", "GuardedFineWebQuality"]
    assert steps[2].min_doc_words == 7


WIKIPEDIA_PROSE = (
    "Valkyria Chronicles III is a 2011 tactical role-playing video game developed by Sega and Media.Vision "
    "for the PlayStation Portable. Released in January 2011 in Japan, it is the third game in the series. "
    "The game sold 102,779 copies in its first week (April 27 – May 3, 2011), placing it at No. 2 on the "
    "Media Create chart, behind Monster Hunter Portable 3rd; by the end of 2011 it had sold 164,000 copies. "
    "Its score, composed by Hitoshi Sakimoto (who also scored the first two games), was released on 20 "
    "January 2011, with 34 tracks on two discs."
)
NUMBER_TABLE = (
    "Year Sales Share\n"
    + "\n".join(f"{2000 + i} {1000 * i + 17:,} {10 + i}.{i % 7}% ({i})" for i in range(40))
    + "\nTotal of the sales by year in the table above, for the record."
)


def test_alpha_ratio_counts_words_not_punctuation_by_default() -> None:
    """Encyclopedic prose with dates and figures passes Gopher's 80%-of-words rule; a table of numbers does not.

    Counted over datatrove's tokens (commas, brackets and full stops as words) the same prose falls under 0.8.
    """
    settings = HeuristicsConfig().gopher_quality.kwargs()
    assert settings["alpha_ratio_counts"] == "words"
    by_words = GuardedGopherQuality(language=RegexWordTokenizer(), **settings)
    by_tokens = GuardedGopherQuality(language=RegexWordTokenizer(), **{**settings, "alpha_ratio_counts": "tokens"})
    prose, table = Document(text=WIKIPEDIA_PROSE, id="prose"), Document(text=NUMBER_TABLE, id="table")

    assert by_words.filter(prose) is True
    assert by_words.filter(table) == (False, "gopher_below_alpha_threshold")
    assert by_tokens.filter(prose) == (False, "gopher_below_alpha_threshold")
    assert by_tokens.filter(table) == (False, "gopher_below_alpha_threshold")


# --- rejects that explain themselves -------------------------------------------------------------------------

TOKENIZER = RegexWordTokenizer()
P1 = "The committee met on Tuesday to discuss the new budget for the public library and its branches."
P2 = "Members agreed that opening hours should be extended during the exam period next spring."
P3 = "A final decision on the reading room renovation was postponed until the next meeting in March."
P4 = "Residents can send comments to the council office by email or by post before the end of the month."
DISCLAIMER = (
    "This article is provided for general information only and does not constitute legal, financial or "
    "professional advice. The publisher accepts no liability for any loss arising from reliance on it, and "
    "readers should seek independent advice before acting on anything they have read on this website."
)
LONG_WORDS = [
    "Donaudampfschifffahrtsgesellschaft",
    "Rechtsschutzversicherungsgesellschaften",
    "Kraftfahrzeughaftpflichtversicherung",
    "Grundstücksverkehrsgenehmigungszuständigkeit",
    "Nahrungsmittelunverträglichkeitsbescheinigung",
    "Arbeiterunfallversicherungsgesetzgebung",
]
HASHTAGS = ["sunset", "beach", "travel", "summer", "friends", "ocean", "waves", "goldenhour", "nofilter", "instagood"]
PHONES = [
    "Apple iPhone 15 Pro Max 256GB Natural Titanium Unlocked Smartphone. Free shipping on orders over $50.",
    "Samsung Galaxy S24 Ultra 512GB Titanium Black. Includes charger, case, screen protector.",
    "Google Pixel 8 Pro 128GB Obsidian. Best camera phone this year, great battery life.",
]
NAVIGATION = [
    "Home | News | Sport | Weather",
    "Local news from the county",
    "Opening hours and contact details",
    "Library budget to be discussed on Tuesday",
    "Most read stories this week",
    "Sign in to your account",
    "Subscribe to the weekly newsletter",
    "Privacy settings and cookies",
    "Terms and conditions of use",
]
END_ELLIPSIS = [
    "And then the chair said that the library would have to wait for more funds...",
    "Nobody in the room was surprised to hear that the roof would be fixed first...",
    "So the reading room stays closed for another season of the year...",
]

KEPT = "\n".join([WIKIPEDIA_PROSE, P1, P2, P3, P4])  # passes every filter

# filter -> reason -> (text, manifest settings that differ from the defaults)
CASES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "gopher_repetition": {
        "empty": ("", {}),
        "dup_para_frac": ("\n\n".join(["Accept all cookies to continue."] * 4 + [P1, P2]), {}),
        "dup_para_char_frac": ("\n\n".join([DISCLAIMER, P1, P2, P3, P4, DISCLAIMER]), {}),
        "dup_line_frac": ("\n".join(["Home", "News", "Sport", "Home", "News", "Weather", "Home", P1, P2]), {}),
        "dup_line_char_frac": ("\n".join([DISCLAIMER, P1, P2, P3, P4, DISCLAIMER]), {}),
        "top_2_gram": (" ".join(f"Order {i} ships from the central warehouse." for i in range(30)), {}),
        "duplicated_5_n_grams": (" ".join([P1, P2, P3, P4, P1, P2, DISCLAIMER]), {}),
    },
    "gopher_quality": {
        "gopher_short_doc": ("Subscribe to our newsletter for the latest news.", {}),
        "gopher_long_doc": (" ".join([P1, P2, P3, P4] * 8), {"max_doc_words": 100}),
        "gopher_below_avg_threshold": (
            " ".join(["I am at home. He is in. We go to it, and so do you. Is it on?"] * 5),
            {},
        ),
        "gopher_above_avg_threshold": (", ".join(LONG_WORDS * 10) + ".", {}),
        "gopher_too_many_hashes": ("Sunset walk on the beach tonight " + " ".join(f"#{w}" for w in HASHTAGS * 5), {}),
        "gopher_too_many_ellipsis": (
            " ".join(["Well... I think it was... maybe the best one... we will see..."] * 6),
            {},
        ),
        "gopher_too_many_bullets": (
            "\n".join(f"- Fresh basil leaves, item {i}, washed and dried" for i in range(20)),
            {},
        ),
        "gopher_too_many_end_ellipsis": ("\n".join([P1, P2, P3, *END_ELLIPSIS]), {}),
        "gopher_below_alpha_threshold": (NUMBER_TABLE, {}),
        "gopher_enough_stop_words": (" ".join(PHONES * 3), {}),
    },
    "c4": {
        "lorem_ipsum": ("\n".join(["Welcome", P1, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", P2]), {}),
        "curly_bracket": ("\n".join([P1, P2, "Paste this into the page: function show() { return banner; }", P3]), {}),
        "too_few_sentences": ("\n".join(["Menu", P1, "Share", P2 + " It was agreed.", "Back to top"]), {}),
    },
    "fineweb": {
        "empty": ("\n   \n\t\n", {}),
        "line_punct_ratio": ("\n".join([*NAVIGATION, P1]), {}),
        "short_line_ratio": (
            "\n".join(["Are you coming?", "Yes.", "When?", "Now.", "Really?", "Of course!", P1, P2]),
            {},
        ),
        "char_dup_ratio": (
            "\n".join([P1, "Share this article on social media.", P2, P3, "Share this article on social media.", P4]),
            {},
        ),
        "list_ratio": ("\n".join(f"{w}." for w in LONG_WORDS), {}),
    },
}


def _words(text: str) -> list[str]:
    return [w for w in TOKENIZER.word_tokenize(text) if w.strip("".join(PUNCTUATION_SET))]


def _repeated(items: list[str]) -> list[str]:
    """Every occurrence of an item after its first."""
    seen: set[str] = set()
    repeats = []
    for item in items:
        if item in seen:
            repeats.append(item)
        seen.add(item)
    return repeats


def _top_gram_share(text: str, n: int) -> float:
    """Gopher's top n-gram share: the characters of the most frequent n-gram (first seen on a tie), times its count."""
    tokens = TOKENIZER.word_tokenize(text)
    [(gram, count)] = Counter(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)).most_common(1)
    return len(gram) * count / len(text)


def _dup_gram_share(text: str, n: int) -> float:
    """Gopher's duplicated n-gram share: left to right, a repeated n-gram's characters count and it is skipped."""
    tokens = TOKENIZER.word_tokenize(text)
    seen: set[str] = set()
    repeated = i = 0
    while i + n <= len(tokens):
        gram = "".join(tokens[i : i + n])
        if gram in seen:
            repeated, i = repeated + len(gram), i + n
        else:
            seen.add(gram)
            i += 1
    return repeated / len(text)


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


# reason -> (name in the detail, the measured value recomputed simply)
MEASURED: dict[str, tuple[str, Callable[[str], float]]] = {
    "dup_para_frac": ("dup_para_frac", lambda t: len(_repeated(re.split(r"\n{2,}", t))) / len(t.split("\n\n"))),
    "dup_para_char_frac": ("dup_para_char_frac", lambda t: sum(map(len, _repeated(t.split("\n\n")))) / len(t)),
    "dup_line_frac": ("dup_line_frac", lambda t: len(_repeated(t.split("\n"))) / len(t.split("\n"))),
    "dup_line_char_frac": ("dup_line_char_frac", lambda t: sum(map(len, _repeated(t.split("\n")))) / len(t)),
    "top_2_gram": ("top_2_gram_char_frac", lambda t: _top_gram_share(t, 2)),
    "duplicated_5_n_grams": ("dup_5_gram_char_frac", lambda t: _dup_gram_share(t, 5)),
    "gopher_short_doc": ("n_words", lambda t: len(_words(t))),
    "gopher_long_doc": ("n_words", lambda t: len(_words(t))),
    "gopher_below_avg_threshold": ("mean_word_length", lambda t: sum(map(len, _words(t))) / len(_words(t))),
    "gopher_above_avg_threshold": ("mean_word_length", lambda t: sum(map(len, _words(t))) / len(_words(t))),
    "gopher_too_many_hashes": ("hash_word_ratio", lambda t: t.count("#") / len(TOKENIZER.word_tokenize(t))),
    "gopher_too_many_ellipsis": ("ellipsis_word_ratio", lambda t: t.count("...") / len(TOKENIZER.word_tokenize(t))),
    "gopher_too_many_bullets": (
        "bullet_line_frac",
        lambda t: sum(line.startswith("- ") for line in t.splitlines()) / len(t.splitlines()),
    ),
    "gopher_too_many_end_ellipsis": (
        "end_ellipsis_line_frac",
        lambda t: sum(line.endswith("...") for line in t.splitlines()) / len(t.splitlines()),
    ),
    "gopher_below_alpha_threshold": (
        "alpha_word_frac",
        lambda t: sum(any(c.isalpha() for c in w) for w in _words(t)) / len(_words(t)),
    ),
    "gopher_enough_stop_words": (
        "stop_words",
        lambda t: len(set(TOKENIZER.word_tokenize(t)) & {"the", "be", "to", "of", "and", "that", "have", "with"}),
    ),
    # C4 keeps lines of 3 words or more; each holds one sentence per terminal mark (at least one)
    "too_few_sentences": (
        "n_sentences",
        lambda t: sum(
            max(1, len(re.findall(r"[.!?](?=\s|$)", line))) for line in t.splitlines() if len(line.split()) >= 3
        ),
    ),
    "line_punct_ratio": (
        "line_punct_ratio",
        lambda t: sum(line.endswith(tuple(TERMINAL_PUNCTUATION)) for line in _lines(t)) / len(_lines(t)),
    ),
    "short_line_ratio": ("short_line_ratio", lambda t: sum(len(line) <= 30 for line in _lines(t)) / len(_lines(t))),
    "char_dup_ratio": ("char_dup_ratio", lambda t: sum(map(len, _repeated(_lines(t)))) / len(t.replace("\n", ""))),
    "list_ratio": ("newline_word_ratio", lambda t: t.count("\n") / len(TOKENIZER.word_tokenize(t))),
}
DETAIL = re.compile(r"(?P<name>\w+)=(?P<value>[-+.\de]+)(?P<relation><=|>=|<|>)(?P<threshold>[-+.\de]+)")


def _filter(name: str, **settings: Any) -> Any:
    config = HeuristicsConfig.model_validate({name: settings})
    filter_class = dict(FILTERS)[name]
    return filter_class(language=TOKENIZER, **getattr(config, name).kwargs())


def _explained(step: Any, text: str) -> tuple[Any, str | None]:
    doc = Document(text=text, id="doc", metadata={"source": "s"})
    return step.filter(doc), doc.metadata.get(DETAIL_KEY)


MEASURED_CASES = [(f, r) for f, reasons in CASES.items() for r in reasons if r in MEASURED]


@pytest.mark.parametrize(("filter_name", "reason"), MEASURED_CASES, ids=[f"{f}:{r}" for f, r in MEASURED_CASES])
def test_a_reject_gives_the_value_its_check_measured_and_the_threshold(filter_name: str, reason: str) -> None:
    text, settings = CASES[filter_name][reason]
    step = _filter(filter_name, **settings)
    verdict, detail = _explained(step, text)
    assert verdict == (False, reason)
    assert detail is not None, reason
    found = DETAIL.fullmatch(detail)
    assert found, detail
    name, true_value = MEASURED[reason][0], MEASURED[reason][1](text)
    assert found["name"] == name
    value, threshold = float(found["value"]), float(found["threshold"])
    assert math.isclose(value, true_value, rel_tol=5e-3), (detail, true_value)
    relation = {"<": float.__lt__, ">": float.__gt__}[found["relation"]]
    assert relation(float(true_value), threshold), (detail, true_value)
    configured = dict(HeuristicsConfig.model_validate({filter_name: settings}).model_dump()[filter_name])
    thresholds = [v for v in configured.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    thresholds += [t for pairs in configured.values() if isinstance(pairs, list) for _, t in pairs]
    assert threshold in thresholds


def test_reasons_without_a_threshold_say_what_was_found_and_where() -> None:
    assert _explained(_filter("gopher_repetition"), "") == ((False, "empty"), "chars=0")
    assert _explained(_filter("fineweb"), "\n   \n\t\n") == ((False, "empty"), "non_blank_lines=0")
    text = CASES["c4"]["lorem_ipsum"][0]
    line = next(i for i, line in enumerate(text.splitlines(), 1) if "lorem ipsum" in line.lower())
    quoted = repr(text.splitlines()[line - 1])
    assert _explained(_filter("c4"), text) == ((False, "lorem_ipsum"), f"'lorem ipsum' in line {line}: {quoted}")
    text = CASES["c4"]["curly_bracket"][0]
    line = next(i for i, line in enumerate(text.splitlines(), 1) if "{" in line)
    quoted = repr(text.splitlines()[line - 1])
    assert _explained(_filter("c4"), text) == ((False, "curly_bracket"), f"'{{' in line {line}: {quoted}")
    by_sentence = _filter("c4", split_paragraph=False)
    verdict, detail = _explained(by_sentence, CASES["c4"]["lorem_ipsum"][0])
    assert verdict == (False, "lorem_ipsum") and detail is not None
    assert detail.startswith("'lorem ipsum' in sentence 2: 'Lorem ipsum dolor sit amet")


def test_datatrove_alpha_rule_over_tokens_is_explained_with_its_own_value() -> None:
    step = _filter("gopher_quality", alpha_ratio_counts="tokens")
    verdict, detail = _explained(step, WIKIPEDIA_PROSE)
    tokens = TOKENIZER.word_tokenize(WIKIPEDIA_PROSE)
    share = sum(any(c.isalpha() for c in w) for w in tokens) / len(tokens)
    assert verdict == (False, "gopher_below_alpha_threshold")
    assert detail == f"alpha_word_frac={share:.3g}<0.8"


@pytest.mark.parametrize("filter_name", list(CASES))
def test_every_reason_a_filter_can_give_has_a_case(filter_name: str) -> None:
    """The reasons in datatrove's (and winnow's) source of each filter are all exercised above."""
    classes = [c for c in dict(FILTERS)[filter_name].__mro__ if "filter" in vars(c) and c.__module__ != __name__]
    source = "".join(inspect.getsource(vars(c)["filter"]) for c in classes)
    templates = set(re.findall(r'return False, f?"([^"]+)"', source)) - {"exception"}
    assert templates
    for template in templates:
        pattern = re.sub(r"\\\{[^}]*\\\}", r"\\d+", re.escape(template))
        assert any(re.fullmatch(pattern, reason) for reason in CASES[filter_name]), template


def test_kept_documents_carry_no_detail_and_thresholds_behave_as_numbers() -> None:
    step = _filter("gopher_quality")
    assert _explained(step, KEPT) == (True, None)
    assert step.min_doc_words == 50 and step.min_doc_words + 1 == 51 and isinstance(step.min_doc_words, int)
    again = pickle.loads(pickle.dumps(step))  # executors ship the pipeline to their workers
    assert _explained(again, CASES["gopher_quality"]["gopher_short_doc"][0])[1] == "n_words=8<50"


def test_rejects_in_the_stage_dataset_carry_their_detail(tmp_path: Path) -> None:
    layout = StageLayout(tmp_path, "heuristics", 1 << 30)
    steps = heuristic_filters(HeuristicsConfig(language=False), LanguageConfig(), layout)
    docs = [
        Document(text=text, id=f"{name}:{reason}", metadata={"source": "s"})
        for name, reasons in CASES.items()
        for reason, (text, settings) in reasons.items()
        if not settings
    ] + [Document(text=KEPT, id="kept", metadata={"source": "s"})]
    stream: Any = iter(docs)
    for step in steps:
        stream = step.run(stream, rank=0)
    assert [d.id for d in stream] == ["kept"]
    rows = [
        r
        for f in sorted((tmp_path / "stages" / "heuristics" / "rejects").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    assert len(rows) == len(docs) - 1
    for row in rows:
        assert row["detail"], row["reason"]
    # a document that reached the filter it was written for has the detail that filter gives alone
    reached = [r for r in rows if r["reason"] == r["id"]]
    assert {r["reason"].split(":")[0] for r in reached} == set(CASES)
    for row in reached:
        name, reason = row["reason"].split(":")
        assert row["detail"] == _explained(_filter(name), CASES[name][reason][0])[1]
