"""FineWeb-2's per-language filtering (winnow.filters.multilingual) on real shared pages in German, Japanese and
Chinese, with FineWeb-2's own settings files (../shared/data/multilingual/fineweb2/configs).

Each document is judged by the settings of its own language: the thresholds in a reject's detail are the
file's, and the words are the language's (Sudachi's for Japanese), so Japanese articles that English word
rules drop (one "word" per run of kana and kanji) are kept. Then the recipe through the CLI, the mapping of
lid.176 labels to codes, and settings files that do not parse (exit 2 naming the file and the field).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document
from fastwarc.warc import ArchiveIterator, WarcRecordType

from tests.conftest import WinnowCli
from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext
from winnow.filters.heuristics import DETAIL_KEY
from winnow.filters.multilingual import (
    CODE,
    FiltersByLanguage,
    LanguageCodeSelector,
    config_files,
    language_code,
    read_settings,
)
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig, MultilingualConfig
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONFIGS = SHARED / "multilingual" / "fineweb2" / "configs"
AEB = SHARED / "html_gt" / "scrapinghub_aeb"
SERPS = SHARED / "warc" / "serps"
needs_shared = pytest.mark.skipif(
    not (CONFIGS.is_dir() and AEB.is_dir() and SERPS.is_dir()),
    reason="../shared/data (FineWeb-2 configs, pages) absent",
)
needs_japanese = pytest.mark.skipif(
    importlib.util.find_spec("sudachipy") is None or importlib.util.find_spec("sudachidict_core") is None,
    reason="Japanese word tokenizer not installed (pip install 'winnow-curate[multilingual]')",
)
# human-extracted article text of the scrapinghub benchmark: two Japanese blog posts, two German ones
JAPANESE_ARTICLES = (
    "85439e26c41c75901820d01a13e8cea7836abb58635ea3986f71a163ab0311d3",
    "f105de6e63ca91ea482f60193f6252092557f969f2fd128ff68c0d4d6b90dd7d",
)
GERMAN_ARTICLES = (
    "57b4dafd18cfd0531b69f81e87158648227c673ef159f8d8c87d34e34bdb21f2",
    "ba07d1e64775f4090e39116c382111f5a2cfe9528dd179673f4e9bfcea370c15",
)
WORD_RULES = {
    "gopher_short_doc",
    "gopher_above_avg_threshold",
    "gopher_below_avg_threshold",
    "gopher_enough_stop_words",
}
DETAIL = re.compile(
    r"(?P<measure>\w+)=(?P<value>[-\d.e]+)(?P<relation>[<>]=?)(?P<threshold>[-\d.e]+) \((?P<code>\w+)\)"
)


def mean_word_length(tokens: list[str]) -> float:
    """Over the tokens that are not punctuation alone, as Gopher's rule counts them."""
    words = [t for t in tokens if any(c.isalnum() for c in t)]
    return sum(map(len, words)) / len(words)


def stage(**multilingual: object) -> FiltersByLanguage:
    """The per-language filters as the recipe configures them, on the shared settings files."""
    config = HeuristicsConfig.model_validate({"multilingual": {"configs": str(CONFIGS), **multilingual}})
    return FiltersByLanguage(config, layout=None)  # type: ignore[arg-type]  # judge() writes nothing


def identified(text: str) -> tuple[str, float, str | None]:
    """lid.176's label and score for ``text``, and the code it maps to."""
    label, score = identify(load_fasttext(str(default_lid_model())), text)
    return label, score, language_code(label, text, set(config_files(str(CONFIGS))) | {"eng_Latn"})


def verdict(step: FiltersByLanguage, text: str, code: str) -> tuple[tuple[str, str] | None, str | None]:
    """(filter, reason) dropping ``text`` under ``code``'s chain (None: kept) and the reject's detail."""
    doc = Document(text=text, id="d", metadata={})
    return step.judge(doc, code, step.chain(code)), doc.metadata.get(DETAIL_KEY)


def article(key: str) -> str:
    return json.loads((AEB / "ground-truth.json").read_text())[key]["articleBody"]


def serp_pages(name: str) -> list[tuple[str, str, bytes]]:
    """(original URL, content type, HTML) of every HTML response in one shared SERP WARC."""
    pages = []
    with open(SERPS / f"{name}.warc.gz", "rb") as stream:
        for record in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
            content_type = record.http_headers.get("Content-Type") or ""
            if "html" in content_type:
                url = record.headers.get("WARC-Target-URI").split("id_/", 1)[-1]
                pages.append((url, content_type, record.reader.read()))
    return pages


# ------------------------------------------------------------------------------ judged by their own settings


@needs_shared
@needs_japanese
def test_japanese_articles_are_kept_by_jpn_settings_where_english_word_rules_drop_them() -> None:
    """Real Japanese text, words from Sudachi: jpn_Jpan's filters keep both articles; FineWeb English's, with
    English regex words (a whole clause is one "word"), drop them by a word rule."""
    step = stage()
    chain = dict(step.chain("jpn_Jpan"))
    settings = read_settings(CONFIGS / "jpn_Jpan.yml")
    quality = chain["gopher_quality"]
    assert (quality.max_avg_word_length, quality.min_avg_word_length) == (6, 1)  # the file's, not English 10/3
    assert quality.stop_words == set(settings.stopwords) and quality.max_non_alpha_words_ratio == 0.759
    assert type(quality.language).__name__ == "SpaCyTokenizer" and quality.language.language == "ja"
    for key in JAPANESE_ARTICLES:
        text = article(key)
        label, score, code = identified(text)
        assert (label, code) == ("ja", "jpn_Jpan") and score >= settings.language_score
        assert verdict(step, text, "jpn_Jpan") == (None, None)
        english, detail = verdict(step, text, "eng_Latn")
        assert english is not None and english[0] == "gopher_quality" and english[1] in WORD_RULES, (english, detail)
        sudachi, regex = quality.language.word_tokenize(text), RegexWordTokenizer().word_tokenize(text)
        assert 1 <= mean_word_length(sudachi) <= 6 < 10 < mean_word_length(regex)  # clauses are no words


@needs_shared
def test_german_articles_are_judged_by_deu_settings() -> None:
    """German text: deu_Latn's stop words (der, und, die...) and thresholds; the article English stop words
    drop (one English stop word in German prose) is kept."""
    step = stage()
    quality = dict(step.chain("deu_Latn"))["gopher_quality"]
    assert {"der", "und", "die"} <= quality.stop_words and "the" not in quality.stop_words
    assert isinstance(quality.language, RegexWordTokenizer)  # spaces delimit German words
    for key in GERMAN_ARTICLES:
        text = article(key)
        assert identified(text)[::2] == ("de", "deu_Latn")
        assert verdict(step, text, "deu_Latn") == (None, None)
    assert verdict(step, article(GERMAN_ARTICLES[1]), "eng_Latn")[0] == ("gopher_quality", "gopher_enough_stop_words")


@needs_shared
def test_shared_serp_pages_are_rejected_with_their_own_languages_thresholds() -> None:
    """German chefkoch pages, Japanese Amazon/Google pages and Chinese Baidu/JD pages (trafilatura's text):
    each reject's detail names its code, and its threshold is that code's file's value for that measure."""
    import trafilatura

    step = stage()
    thresholds = {
        "dup_line_frac": "dup_line_frac",
        "line_punct_ratio": "line_punct_thr",
        "newline_word_ratio": "new_line_ratio",
        "alpha_word_frac": "max_non_alpha_words_ratio",
        "mean_word_length": "max_avg_word_length",
    }
    judged: dict[str, int] = {}
    for name in ("chefkoch", "amazon", "google", "baidu", "jd"):
        for url, _, html in serp_pages(name):
            text = trafilatura.extract(html.decode("utf-8", "replace"), favor_recall=True) or ""
            code = identified(text)[2] if text else None
            if code not in ("deu_Latn", "jpn_Jpan", "cmn_Hani"):
                continue
            dropped, detail = verdict(step, text, code)
            judged[code] = judged.get(code, 0) + 1
            if dropped is None:
                continue
            found = DETAIL.fullmatch(detail or "")
            assert found and found["code"] == code, (url, detail)
            settings = read_settings(CONFIGS / f"{code}.yml")
            measure = found["measure"]
            if measure in thresholds:
                assert float(found["threshold"]) == getattr(settings, thresholds[measure]), (url, detail)
            elif gram := re.fullmatch(r"(top|dup)_(\d+)_gram_char_frac", measure):
                pairs = dict(settings.top_n_grams if gram[1] == "top" else settings.dup_n_grams)
                assert float(found["threshold"]) == pairs[int(gram[2])], (url, detail)
    assert judged.get("deu_Latn", 0) >= 20 and judged.get("jpn_Jpan", 0) >= 2 and judged.get("cmn_Hani", 0) >= 20


# ------------------------------------------------------------------------------------------ language codes


@needs_shared
def test_lid176_labels_map_to_fineweb2_codes_and_scripts_decide_between_files() -> None:
    available = set(config_files(str(CONFIGS)))
    assert language_code("de", "Guten Tag", available) == "deu_Latn"
    assert language_code("ja", "こんにちは", available) == "jpn_Jpan"
    assert language_code("zh", "你好", available) == "cmn_Hani"
    assert language_code("no", "Hei", available) == "nob_Latn"
    assert language_code("sr", "Добар дан, како сте?", available) == "srp_Cyrl"
    assert language_code("sr", "Dobar dan, kako ste?", available) == "srp_Latn"
    assert language_code("hi", "नमस्ते, आप कैसे हैं", available) == "hin_Deva"
    assert language_code("deu_Latn", "", available) == "deu_Latn"  # a GlotLID label is the code
    assert language_code("xx", "", available) is None and language_code(None, "", available) is None


def selected(config: MultilingualConfig, language: str | None, score: float, text: str = "Text") -> tuple[object, dict]:
    step = LanguageCodeSelector(config, LanguageConfig(), select=True, exclusion_writer=None)
    doc = Document(text=text, id="d", metadata={"language": language, "language_score": score})
    return step.filter(doc), doc.metadata


@needs_shared
def test_selection_keeps_listed_codes_above_each_files_language_score() -> None:
    listed = MultilingualConfig(configs=str(CONFIGS), languages=["deu_Latn", "eng_Latn"])
    assert selected(listed, "de", 0.9)[0] is True  # deu_Latn's language_score is 0.821
    verdict_, meta = selected(listed, "de", 0.8)
    assert verdict_ == (False, "low_language_score") and meta[DETAIL_KEY] == "language_score=0.800<0.821 (deu_Latn)"
    assert selected(listed, "en", 0.7)[0] is True  # English: the stage's own min_score (0.65)
    verdict_, meta = selected(listed, "fr", 0.99)
    assert verdict_ == (False, "other_language") and meta["attributes"][CODE] == "fra_Latn"
    everything = MultilingualConfig(configs=str(CONFIGS))
    assert selected(everything, "fr", 0.99)[0] is True
    assert selected(everything, "xx", 0.99)[0] == (False, "no_language_config")
    # a document no stage identified (a JSONL source entering here) is identified first
    verdict_, meta = selected(listed, None, 0.0, article(GERMAN_ARTICLES[0]))
    assert verdict_ is True and (meta["language"], meta["attributes"][CODE]) == ("de", "deu_Latn")


# ------------------------------------------------------------------------------------------ through the CLI


def recipe_run(tmp_path: Path, warc: Path, configs: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(ROOT / "manifests" / "multilingual.yaml"),
        "--set", f"output={tmp_path / 'out'}",
        "--set", f"sources.0.paths=[{warc}]",
        "--set", f"stages.heuristics.multilingual.configs={configs}",
        "--set", "stages.heuristics.multilingual.languages=[deu_Latn, jpn_Jpan, cmn_Hani, eng_Latn]",
        "--set", "stages.dedup=null",
        "--set", "executor.tasks=1",
        "--set", "executor.workers=1",
        *extra,
    ]  # fmt: skip


@needs_shared
@needs_japanese
def test_the_recipe_judges_each_page_by_its_language(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """manifests/multilingual.yaml on real pages (the benchmark's Japanese and German articles as archived, and
    German, Japanese and Chinese SERP pages): every document carries its code, the Japanese articles are in the
    output, each reject names its code, and `winnow inspect` counts documents per code."""
    truth = json.loads((AEB / "ground-truth.json").read_text())
    records = []
    for key in (*JAPANESE_ARTICLES, *GERMAN_ARTICLES):
        html = gzip.decompress((AEB / "html" / f"{key}.html.gz").read_bytes())
        records.append(warc_record(truth[key]["url"], http_response(html), index=len(records)))
    for name, count in (("chefkoch", 8), ("amazon", 60), ("jd", 12), ("baidu", 6)):
        for url, content_type, html in serp_pages(name)[:count]:
            if name != "amazon" or ".co.jp" in url:
                records.append(warc_record(url, http_response(html, content_type), index=len(records)))
    warc = write_warc(tmp_path / "pages.warc.gz", records)
    result = winnow_cli(*recipe_run(tmp_path, warc, CONFIGS), "--no-progress", "--no-publish", timeout=600)
    assert result.returncode == 0, result.stderr
    heuristics = tmp_path / "out" / "multilingual" / "stages" / "heuristics"
    kept = pq.read_table(heuristics / "data").to_pylist()
    rejected = pq.read_table(heuristics / "rejects").to_pylist()
    urls = {truth[k]["url"]: k for k in truth}
    assert {urls.get(r["url"]) for r in kept if r[CODE] == "jpn_Jpan"} >= set(JAPANESE_ARTICLES)
    assert all(r[CODE] for r in kept)
    assert {r[CODE] for r in kept + rejected} >= {"deu_Latn", "jpn_Jpan", "cmn_Hani"}
    for row in rejected:
        if not row["reason"].startswith("language:"):
            assert row["detail"].endswith(f"({row[CODE]})"), row
    assert any(r[CODE] == "deu_Latn" and "chefkoch" in r["url"] for r in kept + rejected)
    inspect = winnow_cli("inspect", tmp_path / "out" / "multilingual", "--stage", "heuristics")
    assert inspect.returncode == 0, inspect.stderr
    assert "language_config" in inspect.stdout and "jpn_Jpan" in inspect.stdout


# ------------------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    ("problem", "content", "expected"),
    [
        ("yaml", "dup_line_frac: [0.3\n", "does not parse"),
        ("not_mapping", "- 1\n- 2\n", "expected a mapping of settings, got list"),
        ("missing", None, "field stopwords: missing"),
        ("unknown", "extra_setting: 1\n", "field extra_setting: not a FineWeb-2 setting"),
        ("fraction", "language_score: 1.5\n", "field language_score: expected between 0 and 1, got 1.5"),
        ("text", "line_punct_thr: high\n", "field line_punct_thr: expected a number >= -1, got 'high'"),
        ("ngrams", "top_n_grams: [[2, 0.2], [3]]\n", "field top_n_grams: expected [n, fraction] pairs"),
    ],
)
@needs_shared
def test_a_settings_file_that_does_not_parse_is_exit_2_naming_file_and_field(
    tmp_path: Path, winnow_cli: WinnowCli, problem: str, content: str | None, expected: str
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(CONFIGS / "deu_Latn.yml", configs / "deu_Latn.yml")  # a test copy in tmp, not in the project
    broken = configs / "jpn_Jpan.yml"
    settings = yaml.safe_load((CONFIGS / "jpn_Jpan.yml").read_text())
    if problem == "missing":
        del settings["stopwords"]
        broken.write_text(yaml.safe_dump(settings))
    elif problem in ("yaml", "not_mapping"):
        broken.write_text(content or "")
    else:
        key, _, value = (content or "").partition(": ")
        settings[key] = yaml.safe_load(value)
        broken.write_text(yaml.safe_dump(settings))
    warc = write_warc(tmp_path / "w.warc.gz", [warc_record("http://example.com/", http_response(b"<p>x</p>"))])
    args = recipe_run(tmp_path, warc, configs, "--set", "stages.heuristics.multilingual.languages=[deu_Latn, jpn_Jpan]")
    result = winnow_cli("validate", *args[1:])
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"stages.heuristics.multilingual.configs: {broken}: {expected}" in message, message


@needs_shared
def test_every_shared_settings_file_parses() -> None:
    """All 1,929 of FineWeb-2's files are read (1,613 switch the punctuation rule off with line_punct_thr -1)."""
    files = config_files(str(CONFIGS))
    settings = [read_settings(path) for path in files.values()]
    assert len(settings) == 1929
    assert sum(s.line_punct_thr == -1 for s in settings) == 1613


@needs_shared
def test_a_listed_language_without_a_file_is_exit_2_naming_it(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    warc = write_warc(tmp_path / "w.warc.gz", [warc_record("http://example.com/", http_response(b"<p>x</p>"))])
    args = recipe_run(tmp_path, warc, CONFIGS, "--set", "stages.heuristics.multilingual.languages=[deu_Latn, deu_Cyrl]")
    result = winnow_cli("validate", *args[1:])
    assert result.returncode == 2
    assert f"stages.heuristics.multilingual.languages[1]: deu_Cyrl: no deu_Cyrl.yml in {CONFIGS}" in result.stderr


def test_a_missing_settings_folder_is_exit_2(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    warc = write_warc(tmp_path / "w.warc.gz", [warc_record("http://example.com/", http_response(b"<p>x</p>"))])
    result = winnow_cli("validate", *recipe_run(tmp_path, warc, tmp_path / "nowhere")[1:])
    assert result.returncode == 2
    assert f"stages.heuristics.multilingual.configs: {tmp_path / 'nowhere'}: no such folder" in result.stderr
