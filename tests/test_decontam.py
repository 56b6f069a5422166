"""Benchmark decontamination (winnow.filters.decontam) on the shared GSM8K and HumanEval sets and real documents.

Recall: every GSM8K test question and HumanEval prompt, inserted into a real shared document whole and
as a 13-word span inside it, is caught and named. No false positives: none of the unmodified shared
documents is flagged. Then the rules (annotate, min_matches, several sets), the file formats, a run of
the heuristics stage through the CLI, and bad evaluation sets (exit 2 naming the file and field).
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document

from tests.conftest import WinnowCli
from winnow.filters.decontam import MATCHES, SET, DecontamFilter, EvalIndex
from winnow.filters.heuristics import DETAIL_KEY
from winnow.filters.minhash import TOKEN, normalize, tokens
from winnow.pipeline.manifest import DecontamConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K = SHARED / "benchmarks" / "gsm8k" / "test.jsonl"
HUMANEVAL = SHARED / "benchmarks" / "humaneval" / "HumanEval.jsonl.gz"
TEXT = SHARED / "text"
needs_shared = pytest.mark.skipif(
    not (GSM8K.exists() and HUMANEVAL.exists() and TEXT.is_dir()), reason="../shared/data benchmarks or text absent"
)
N = 13


def recipe(**settings: object) -> DecontamConfig:
    """The sets as manifests/cc_dump.yaml configures them, on the shared files."""
    sets = [
        {"name": "gsm8k", "path": str(GSM8K), "fields": ["question", "answer"]},
        {"name": "humaneval", "path": str(HUMANEVAL), "fields": ["prompt"]},
    ]
    return DecontamConfig.model_validate({"sets": sets, **settings})


def shared_documents() -> list[str]:
    """Every text of the shared JSONL corpora with at least ``N`` tokens, in file order."""
    texts = []
    for path in sorted(TEXT.rglob("*.jsonl")):
        with open(path, encoding="utf-8") as lines:  # by "\n" only: texts hold other line separators
            for line in lines:
                text = json.loads(line).get("text") if line.strip() else None
                if isinstance(text, str) and len(tokens(text)) >= N:
                    texts.append(text)
    return texts


def entries() -> list[tuple[str, str]]:
    """(set, text) of every GSM8K test question and HumanEval prompt."""
    with open(GSM8K, encoding="utf-8") as lines:
        questions = [json.loads(line)["question"] for line in lines if line.strip()]
    with gzip.open(HUMANEVAL, "rt") as lines:
        prompts = [json.loads(line)["prompt"] for line in lines if line.strip()]
    return [("gsm8k", q) for q in questions] + [("humaneval", p) for p in prompts]


def span(text: str, rng: random.Random) -> tuple[str, str]:
    """A random run of ``N`` tokens of ``text`` as it is written (from the normalised text if normalising
    moved characters), and those tokens as the detail shows them."""
    source = text if normalize(text) == text.lower() else normalize(text)
    found = list(TOKEN.finditer(normalize(text)))
    first = rng.randrange(len(found) - N + 1)
    piece = source[found[first].start() : found[first + N - 1].end()]
    return piece, " ".join(m.group() for m in found[first : first + N])


def inserted(host: str, piece: str, rng: random.Random) -> str:
    """``host`` with ``piece`` put in at a space somewhere in its middle half."""
    spaces = [m.start() for m in re.finditer(r"\s", host)]
    middle = [p for p in spaces if len(host) // 4 <= p <= 3 * len(host) // 4] or spaces or [len(host)]
    at = rng.choice(middle)
    return f"{host[:at]} {piece} {host[at:]}"


def judge(step: DecontamFilter, text: str) -> tuple[bool | tuple[bool, str], Document]:
    doc = Document(text=text, id="d", metadata={})
    return step.filter(doc), doc


# ------------------------------------------------------------------------------------------ the shared sets


@needs_shared
def test_every_question_and_prompt_inserted_into_a_real_document_is_caught() -> None:
    """Recall 1.0: each entry whole (at a place in a real page) and as a 13-word span inside one is rejected
    under its own set, the detail naming the set and, for the span, its 13 normalised words (or the entry's
    13-gram that starts a few words earlier, where the host's words before the span are the entry's too)."""
    hosts = [t for t in shared_documents() if len(tokens(t)) >= 100]
    step = DecontamFilter(recipe())
    rng = random.Random(20)
    missed = []
    for k, (name, text) in enumerate(entries()):
        host = hosts[(7 * k) % len(hosts)]
        verdict, doc = judge(step, inserted(host, text, rng))
        if verdict != (False, name) or not doc.metadata[DETAIL_KEY].startswith(f"{name}: "):
            missed.append(("whole", name, text[:60]))
        piece, words = span(text, rng)
        verdict, doc = judge(step, inserted(host, piece, rng))
        # the first shared 13-gram is the span's, or one just before it when the host's word there is the entry's
        first = re.fullmatch(rf"{name}: \d+ shared 13-grams, first '([^']*)'", doc.metadata.get(DETAIL_KEY, ""))
        normalised = " ".join(t.decode() for t in tokens(text))
        shifted = first is not None and any(words.startswith(" ".join(first[1].split()[k:]) + " ") for k in range(1, N))
        if (
            verdict != (False, name)
            or first is None
            or first[1] not in normalised
            or not (first[1] == words or shifted)
        ):
            missed.append(("span", name, piece))
        assert doc.metadata["attributes"][SET] == name and doc.metadata["attributes"][MATCHES] >= 1
    assert missed == []


@needs_shared
def test_no_unmodified_shared_document_is_flagged() -> None:
    """False positives 0: at least 5,000 real documents, none shares a 13-gram with GSM8K or HumanEval."""
    step = DecontamFilter(recipe())
    texts = shared_documents()
    assert len(texts) >= 5000
    verdicts = [(text, *judge(step, text)) for text in texts]
    flagged = [(text[:80], doc.metadata.get(DETAIL_KEY)) for text, verdict, doc in verdicts if verdict is not True]
    assert flagged == []


@needs_shared
def test_case_whitespace_and_punctuation_changes_do_not_hide_a_question() -> None:
    """Normalisation: upper case, line breaks for spaces, curly for straight quotes give the same n-grams."""
    step = DecontamFilter(recipe())
    question = entries()[0][1]
    variant = question.upper().replace(" ", "\n").replace("'", "\u2019")
    assert judge(step, f"Recipes.\n\n{variant}\n\nMore.")[0] == (False, "gsm8k")


# ------------------------------------------------------------------------------------------ rules and formats


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


WORDS = [f"w{i}" for i in range(40)]
SENTENCE = " ".join(WORDS[:20])  # 8 distinct 13-grams


def test_annotate_keeps_the_document_with_its_attributes(tmp_path: Path) -> None:
    """``action: annotate``: contaminated documents are kept with the count and set; clean ones get 0 and null."""
    path = write_jsonl(tmp_path / "bench.jsonl", [{"q": SENTENCE}])
    step = DecontamFilter(
        DecontamConfig.model_validate(
            {"sets": [{"name": "b", "path": str(path), "fields": ["q"]}], "action": "annotate"}
        )
    )
    verdict, doc = judge(step, f"intro {SENTENCE} outro")
    assert verdict is True and doc.metadata["attributes"] == {MATCHES: 8, SET: "b"}
    verdict, doc = judge(step, " ".join(reversed(WORDS)))
    assert verdict is True and doc.metadata["attributes"] == {MATCHES: 0, SET: None}


def test_min_matches_counts_distinct_shared_ngrams(tmp_path: Path) -> None:
    """A document is contaminated from ``min_matches`` distinct shared n-grams on; repeats count once."""
    path = write_jsonl(tmp_path / "bench.jsonl", [{"q": SENTENCE}])
    config = DecontamConfig.model_validate(
        {"sets": [{"name": "b", "path": str(path), "fields": ["q"]}], "min_matches": 2}
    )
    step = DecontamFilter(config)
    one = " ".join(WORDS[:13])
    verdict, doc = judge(step, f"{one} and again {one}")
    assert verdict is True and doc.metadata["attributes"][MATCHES] == 1
    assert judge(step, " ".join(WORDS[:14]))[0] == (False, "b")


def test_several_sets_the_one_with_most_matches_is_named_and_the_others_listed(tmp_path: Path) -> None:
    """Parquet, gzip JSON Lines and list-valued fields; the detail names the best set first, then the others."""
    small = " ".join(WORDS[:13])
    pq.write_table(pa.table({"text": [SENTENCE]}), tmp_path / "big.parquet")
    with gzip.open(tmp_path / "small.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"choices": ["unrelated words only", small]}) + "\n")
    sets = [
        {"name": "small", "path": str(tmp_path / "small.jsonl.gz"), "fields": ["choices"]},
        {"name": "big", "path": str(tmp_path / "big.parquet"), "fields": ["text"]},
    ]
    step = DecontamFilter(DecontamConfig.model_validate({"sets": sets}))
    verdict, doc = judge(step, SENTENCE)
    assert verdict == (False, "big")
    assert doc.metadata[DETAIL_KEY] == f"big: 8 shared 13-grams, first {small!r}; small: 1"
    verdict, doc = judge(step, small)
    assert verdict == (False, "small")  # a tie (1 and 1) goes to the set listed first
    assert doc.metadata[DETAIL_KEY] == f"small: 1 shared 13-grams, first {small!r}; big: 1"


def test_entries_shorter_than_n_are_counted_and_never_span_two_entries(tmp_path: Path) -> None:
    """A 12-word entry gives no n-gram (counted as short); two entries side by side give no n-gram across them."""
    path = write_jsonl(tmp_path / "bench.jsonl", [{"q": " ".join(WORDS[:12])}, {"q": " ".join(WORDS[12:26])}])
    index = EvalIndex(DecontamConfig.model_validate({"sets": [{"name": "b", "path": str(path), "fields": ["q"]}]}))
    assert [(s.entries, s.short, s.ngrams) for s in index.summaries] == [(2, 1, 2)]
    assert index.match(" ".join(WORDS[6:19])) is None  # 6 words of one entry, 7 of the next
    assert index.match(" ".join(WORDS[12:25])) is not None


# ------------------------------------------------------------------------------------------ through the CLI


def manifest(tmp_path: Path, decontam: dict[str, object], docs: list[str]) -> Path:
    """A run of the heuristics stage alone on a JSONL source, its other filters off."""
    source = write_jsonl(tmp_path / "docs.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(docs)])
    off = {name: False for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    data = {
        "name": "decontam",
        "output": str(tmp_path / "out"),
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "sources": [{"name": "docs", "kind": "jsonl", "paths": [str(source)]}],
        "stages": {"extract": None, "heuristics": {"language": False, **off, "decontam": decontam}, "dedup": None},
    }
    path = tmp_path / "decontam.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_heuristics_stage_rejects_and_annotates(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """``winnow run``: the contaminated document is in rejects (reason and detail), the others in data with
    the attribute columns."""
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"q": SENTENCE}])
    decontam = {"sets": [{"name": "bench", "path": str(bench), "fields": ["q"]}]}
    path = manifest(tmp_path, decontam, ["a clean document of a few words", f"copied: {SENTENCE}", "another one"])
    result = winnow_cli("run", path, "--no-progress", "--no-publish")
    assert result.returncode == 0, result.stderr
    stage = tmp_path / "out" / "decontam" / "stages" / "heuristics"
    rejects = pq.read_table(stage / "rejects").to_pylist()
    assert [(r["id"], r["reason"], r["detail"], r[MATCHES]) for r in rejects] == [
        (rejects[0]["id"], "decontam:bench", f"bench: 8 shared 13-grams, first {' '.join(WORDS[:13])!r}", 8)
    ]
    data = pq.read_table(stage / "data").to_pylist()
    assert sorted((r["text"], r[MATCHES], r[SET]) for r in data) == [
        ("a clean document of a few words", 0, None),
        ("another one", 0, None),
    ]


@pytest.mark.parametrize("problem", ["missing", "empty", "no_field", "not_text", "all_short"])
def test_a_bad_evaluation_set_is_a_usage_error_naming_file_and_field(
    tmp_path: Path, winnow_cli: WinnowCli, problem: str
) -> None:
    """Exit 2 before anything runs, one line naming the manifest, the field path and the file."""
    bench = tmp_path / "bench.jsonl"
    rows = {
        "empty": [],
        "no_field": [{"q": SENTENCE}, {"question": SENTENCE}],
        "not_text": [{"q": SENTENCE}, {"q": 42}],
        "all_short": [{"q": "too short"}],
    }
    if problem != "missing":
        write_jsonl(bench, rows[problem])
    sets = [{"name": "fine", "path": str(write_jsonl(tmp_path / "fine.jsonl", [{"q": SENTENCE}])), "fields": ["q"]}]
    sets.append({"name": "bench", "path": str(bench), "fields": ["q"]})
    path = manifest(tmp_path, {"sets": sets}, ["a document"])
    result = winnow_cli("validate", path)
    assert result.returncode == 2
    field = "path" if problem in ("missing", "empty") else "fields"
    expected = {
        "missing": f"{bench}: no such file",
        "empty": f"{bench} holds no rows",
        "no_field": f"{bench} line 2 has no field 'q' (fields: question)",
        "not_text": f"{bench} line 2: field 'q' is int, not text",
        "all_short": f"{bench}: no entry of q has 13 tokens",
    }[problem]
    assert f"{path}: stages.heuristics.decontam.sets[1].{field}: {expected}" in " ".join(result.stderr.split())
