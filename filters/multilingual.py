"""FineWeb-2's per-language quality filtering: each document is judged by the settings of its own language and script.

**Settings.** FineWeb-2 publishes one YAML file per language-script code (``deu_Latn.yml``, ``jpn_Jpan.yml``;
1,929 of them): a least ``language_score``, Gopher repetition thresholds (``dup_line_frac``,
``top_n_grams``, ``dup_n_grams``), FineWeb quality thresholds (``line_punct_thr``, ``new_line_ratio``) and
Gopher quality ones (word length bounds, ``max_non_alpha_words_ratio``, ``stopwords``). :func:`read_settings`
parses one and checks every field; a file that does not parse, lacks a field or holds a wrong value is a
:class:`LanguageConfigError` naming the file and the field.

**Which code.** A GlotLID model (FineWeb-2's) labels documents with the code itself (``deu_Latn``). The
bundled lid.176 gives ISO 639-1 or 639-3 codes (``de``, ``ja``, ``ceb``); they are mapped with datatrove's
language table (``tokenizer_assignment.csv``: the 639-3 code and script that 639-1 code stands for by
default), plus four codes lid.176 uses differently (``no``, ``tl``, ``bh``, ``als``). Where a language has
files for several scripts (``srp_Cyrl``/``srp_Latn``, ``hin_Deva``/``hin_Latn``...) the script of most of the
document's letters decides (:func:`scripts`, from Unicode character names).

**The filters**, as FineWeb-2's pipeline configures datatrove's (in its order): Gopher repetition with
the file's ``dup_line_frac``, ``top_n_grams``, ``dup_n_grams`` (paragraph and character-share checks off);
FineWeb quality with the file's ``line_punct_thr`` and ``new_line_ratio``, ``char_duplicates_ratio`` 0.1,
the short-line check off; Gopher quality with the file's word-length bounds, ``max_non_alpha_words_ratio``
(over every token, as datatrove computes it and as the thresholds were derived) and ``stopwords``
(at least 2). No C4 filter. Codes in ``default_settings`` (English: FineWeb-2 has no file for it) are judged
by the stage's own filters (FineWeb's order and settings). Words: datatrove's tokenizer for the language
(spaCy with SudachiPy for Japanese, with jieba for Chinese, pythainlp for Thai...) where the script writes
no spaces between words; winnow's regex tokenizer for the rest, or datatrove's for every language with
``tokenizer: spacy``.

Rejects keep the filters' reasons (``gopher_quality:gopher_short_doc``); the detail names the code whose
settings decided (``n_words=12<50 (deu_Latn)``), and every document carries it as ``language_config``.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import re
import unicodedata
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer, load_tokenizer_assignments, load_word_tokenizer

from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext
from winnow.filters.heuristics import (
    DETAIL_KEY,
    FILTERS,
    DetailedOutcomeWriter,
    GuardedFineWebQuality,
    GuardedGopherQuality,
    GuardedGopherRepetition,
    word_tokenizer,
)
from winnow.filters.word_tokenizer import RegexWordTokenizer
from winnow.pipeline.manifest import HeuristicsConfig, LanguageConfig, MultilingualConfig
from winnow.pipeline.outcomes import ERROR_KEY, ErrorsAsRecords, OutcomeWriter, StageLayout
from winnow.pipeline.revisits import is_revisit_stub

CODE = "language_config"
ATTRIBUTES: dict[str, pa.DataType] = {CODE: pa.string()}
CODE_PATTERN = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")
# lid.176 labels that datatrove's table does not map to the code FineWeb-2 uses for that language
LID176_CODES = {"no": ["nob_Latn"], "tl": ["fil_Latn"], "bh": ["bho_Deva"], "als": ["gsw_Latn"]}
NO_SPACE_SCRIPTS = frozenset({"Hani", "Jpan", "Thai", "Khmr", "Laoo", "Tibt", "Mymr"})
SCRIPT_NAMES = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARMENIAN": "Armn", "GEORGIAN": "Geor", "HEBREW": "Hebr",
    "ARABIC": "Arab", "SYRIAC": "Syrc", "THAANA": "Thaa", "DEVANAGARI": "Deva", "BENGALI": "Beng",
    "GURMUKHI": "Guru", "GUJARATI": "Gujr", "ORIYA": "Orya", "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda",
    "MALAYALAM": "Mlym", "SINHALA": "Sinh", "THAI": "Thai", "LAO": "Laoo", "TIBETAN": "Tibt", "MYANMAR": "Mymr",
    "KHMER": "Khmr", "HANGUL": "Hang", "HIRAGANA": "Jpan", "KATAKANA": "Jpan", "CJK": "Hani", "ETHIOPIC": "Ethi",
    "MONGOLIAN": "Mong",
}  # fmt: skip
SCRIPT_SAMPLE = 2_000  # letters looked at to find a document's main script
# the Python modules each of datatrove's word tokenizers needs (PyPI names in the error message)
TOKENIZER_MODULES: dict[str, list[tuple[str, str]]] = {
    "SpaCyTokenizer": [("spacy", "spacy")],
    "SpaCyTokenizer:ja": [("spacy", "spacy"), ("sudachipy", "sudachipy"), ("sudachidict_core", "sudachidict-core")],
    "SpaCyTokenizer:zh": [("spacy", "spacy"), ("jieba", "jieba")],
    "SpaCyTokenizer:vi": [("spacy", "spacy"), ("pyvi", "pyvi")],
    "WhitespaceTokenizer": [("spacy", "spacy")],
    "StanzaTokenizer": [("stanza", "stanza")],
    "ThaiTokenizer": [("pythainlp", "pythainlp")],
    "IndicNLPTokenizer": [("indicnlp", "indic-nlp-library")],
    "KiwiTokenizer": [("kiwipiepy", "kiwipiepy")],
    "KhmerTokenizer": [("khmernltk", "khmer-nltk")],
    "LaoTokenizer": [("laonlp", "laonlp")],
    "TibetanTokenizer": [("botok", "botok")],
    "BurmeseTokenizer": [("spacy", "spacy"), ("pyidaungsu", "pyidaungsu-numpy2")],
}


class LanguageConfigError(ValueError):
    """A FineWeb-2 settings file, or the manifest's multilingual section, that cannot be used; ``field`` is the
    manifest field at fault (``configs``, ``languages[1]``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class LanguageSettings:
    """One FineWeb-2 settings file."""

    code: str
    language_score: float
    dup_line_frac: float
    top_n_grams: tuple[tuple[int, float], ...]
    dup_n_grams: tuple[tuple[int, float], ...]
    line_punct_thr: float
    new_line_ratio: float
    min_avg_word_length: float
    max_avg_word_length: float
    max_non_alpha_words_ratio: float
    stopwords: tuple[str, ...]


# bounds as FineWeb-2's files use them: thresholds above 1 (a share that cannot exceed it) and a
# line_punct_thr of -1 (a ratio never below it) switch a rule off
BOUNDS: dict[str, tuple[float, float]] = {
    "language_score": (0, 1),
    "max_non_alpha_words_ratio": (0, 1),
    "dup_line_frac": (0, math.inf),
    "line_punct_thr": (-1, math.inf),
    "new_line_ratio": (0, math.inf),
    "min_avg_word_length": (0, math.inf),
    "max_avg_word_length": (0, math.inf),
}
NGRAMS = ("top_n_grams", "dup_n_grams")
FIELDS = (*BOUNDS, *NGRAMS, "stopwords")


def _number(value: Any, path: Path, name: str, lower: float = 0, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lower <= value <= upper:
        bound = f"between {lower} and {upper}" if upper < math.inf else f"a number >= {lower}"
        raise LanguageConfigError("configs", f"{path}: field {name}: expected {bound}, got {value!r}")
    return value


def _ngrams(value: Any, path: Path, name: str) -> tuple[tuple[int, float], ...]:
    pairs = []
    for item in value if isinstance(value, list) else [None]:
        ok = isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[0], bool)
        if not ok or item[0] < 1:
            raise LanguageConfigError("configs", f"{path}: field {name}: expected [n, fraction] pairs, got {value!r}")
        pairs.append((item[0], _number(item[1], path, f"{name}[{len(pairs)}][1]")))
    return tuple(pairs)


@cache
def read_settings(path: Path) -> LanguageSettings:
    """Parse and check one settings file (cached per process)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LanguageConfigError("configs", f"{path}: does not parse: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise LanguageConfigError("configs", f"{path}: expected a mapping of settings, got {type(data).__name__}")
    if unknown := sorted(set(data) - set(FIELDS)):
        raise LanguageConfigError("configs", f"{path}: field {unknown[0]}: not a FineWeb-2 setting")
    if missing := [f for f in FIELDS if f not in data]:
        raise LanguageConfigError("configs", f"{path}: field {missing[0]}: missing")
    stopwords = data["stopwords"]
    if not isinstance(stopwords, list) or not all(isinstance(w, str) for w in stopwords):
        raise LanguageConfigError("configs", f"{path}: field stopwords: expected a list of words, got {stopwords!r}")
    values: dict[str, Any] = {f: _number(data[f], path, f, *BOUNDS[f]) for f in BOUNDS}
    values |= {f: _ngrams(data[f], path, f) for f in NGRAMS}
    return LanguageSettings(code=path.stem, stopwords=tuple(stopwords), **values)


@cache
def config_files(folder: str) -> dict[str, Path]:
    """The settings files of ``folder`` by code (``deu_Latn`` -> ``deu_Latn.yml``)."""
    root = Path(folder)
    if not root.is_dir():
        raise LanguageConfigError("configs", f"{folder}: no such folder")
    files = {p.stem: p for p in sorted(root.glob("*.yml")) if CODE_PATTERN.fullmatch(p.stem)}
    if not files:
        raise LanguageConfigError("configs", f"{folder}: holds no <lang>_<Script>.yml file")
    return files


def kept_codes(config: MultilingualConfig) -> set[str]:
    """The codes a run keeps: the listed ones, or every file's and ``default_settings``."""
    if config.languages == "all":
        return set(config_files(config.configs)) | set(config.default_settings)
    return set(config.languages)


def used_files(config: MultilingualConfig) -> list[Path]:
    """The settings files the run may read (all of them for ``all``)."""
    files = config_files(config.configs)
    return [files[c] for c in sorted(kept_codes(config)) if c in files and c not in config.default_settings]


def tokenizer_modules(code: str) -> list[tuple[str, str]]:
    """(module, PyPI name) that datatrove's word tokenizer for ``code`` imports; [] when it has none."""
    factory = load_tokenizer_assignments().get(code)
    if factory is None:
        return []
    kind, argument = factory.args
    return TOKENIZER_MODULES.get(f"{kind}:{argument}", TOKENIZER_MODULES.get(kind, []))


def uses_datatrove_tokenizer(code: str, mode: str) -> bool:
    """Whether ``code``'s words come from datatrove's tokenizer (else winnow's regex one)."""
    return (mode == "spacy" or code.split("_")[1] in NO_SPACE_SCRIPTS) and code in load_tokenizer_assignments()


def check(config: MultilingualConfig, mode: str) -> None:
    """What the stage will read, read first: the folder, each listed code's file (or default_settings), every
    file in use parsed, and the packages of the listed languages' word tokenizers importable."""
    files = config_files(config.configs)
    if config.languages != "all":
        for i, code in enumerate(config.languages):
            if code not in files and code not in config.default_settings:
                near = ", ".join(c for c in files if c.startswith(code[:3])) or "none"
                message = f"{code}: no {code}.yml in {config.configs} (files for {code[:3]}: {near})"
                raise LanguageConfigError(f"languages[{i}]", message)
            if code in config.default_settings or not uses_datatrove_tokenizer(code, mode):
                continue
            absent = [pypi for module, pypi in tokenizer_modules(code) if importlib.util.find_spec(module) is None]
            if absent:
                message = f"{code}'s word tokenizer needs the Python packages {', '.join(absent)} (pip install them)"
                raise LanguageConfigError(f"languages[{i}]", message)
    for path in used_files(config):
        read_settings(path)


# ----------------------------------------------------------------------------------------- language codes


@cache
def lid_codes() -> dict[str, list[str]]:
    """ISO 639-1 or 639-3 label -> language-script codes, from datatrove's language table."""
    from datatrove.utils._import_utils import ASSETS_PATH

    by_code_1: dict[str, list[str]] = {}
    by_code_3: dict[str, list[str]] = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), encoding="utf-8") as table:
        for row in csv.DictReader(table):
            code = f"{row['code_3']}_{row['script']}"
            by_code_3.setdefault(row["code_3"], []).append(code)
            if row["code_1"] and row["default_code_1"] == "TRUE":
                by_code_1.setdefault(row["code_1"], []).append(code)
    return by_code_3 | by_code_1 | LID176_CODES


@cache
def script_of(char: str) -> str | None:
    """ISO 15924 code of a letter's script (from its Unicode name), None when unknown."""
    return SCRIPT_NAMES.get(unicodedata.name(char, "").split(" ", 1)[0])


def scripts(text: str, sample: int = SCRIPT_SAMPLE) -> Counter[str]:
    """Letters per script among the first ``sample`` letters of ``text``."""
    counts: Counter[str] = Counter()
    seen = 0
    for char in text:
        if char.isalpha():
            if (script := script_of(char)) is not None:
                counts[script] += 1
            seen += 1
            if seen >= sample:
                break
    return counts


def language_code(label: str | None, text: str, available: set[str]) -> str | None:
    """The language-script code of a document labelled ``label``: the label itself (GlotLID), else lid.176's
    label mapped, choosing among scripts with files by the document's letters; None when unmapped."""
    if not label:
        return None
    if CODE_PATTERN.fullmatch(label):
        return label
    candidates = lid_codes().get(label, [])
    present = [c for c in candidates if c in available] or candidates
    if len(present) <= 1:
        return present[0] if present else None
    counts = scripts(text)
    return max(present, key=lambda code: counts[code.split("_")[1]])  # ties: the table's first


# -------------------------------------------------------------------------------------------------- steps


class LanguageCodeSelector(ErrorsAsRecords, BaseFilter):
    """Sets ``language_config`` on every document (identifying the language first, with the run's LID model,
    where no stage did: documents entering at heuristics); with ``select``, keeps the run's codes whose score
    reaches the file's ``language_score`` (or ``min_score``)."""

    name = "🌍 language selection (FineWeb-2)"

    def __init__(
        self,
        config: MultilingualConfig,
        language: LanguageConfig,
        select: bool,
        exclusion_writer: OutcomeWriter | None,
    ) -> None:
        super().__init__(exclusion_writer)
        self.config = config
        self.fallback_score = language.min_score  # default_settings languages: the stage's own min_score
        self.model_path = str(language.model or default_lid_model())
        self.select = select

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if is_revisit_stub(doc):
            return True
        if doc.metadata.get("language") is None and doc.text:
            label, score = identify(load_fasttext(self.model_path), doc.text)
            doc.metadata["language"], doc.metadata["language_score"] = label, score
        files = config_files(self.config.configs)
        kept = kept_codes(self.config)
        label = doc.metadata.get("language")
        code = language_code(label, doc.text, set(files) | set(self.config.default_settings))
        attributes = doc.metadata.get("attributes") or {}
        doc.metadata["attributes"] = attributes
        attributes[CODE] = code
        if not self.select:
            return True
        if code is None or code not in kept:
            if self.config.languages == "all":
                doc.metadata[DETAIL_KEY] = f"language={label}: no FineWeb-2 settings for {code or 'it'}"
                return False, "no_language_config"
            doc.metadata[DETAIL_KEY] = f"language_config={code} (language={label}) not in {','.join(sorted(kept))}"
            return False, "other_language"
        if self.config.min_score is not None:
            least = self.config.min_score
        elif code in files and code not in self.config.default_settings:
            least = read_settings(files[code]).language_score
        else:
            least = self.fallback_score
        score = doc.metadata.get("language_score") or 0.0
        if score < least:
            doc.metadata[DETAIL_KEY] = f"language_score={score:.3f}<{least} ({code})"
            return False, "low_language_score"
        self.stat_update(f"lang_{code}")
        return True


Chain = list[tuple[str, BaseFilter]]


def fineweb2_chain(settings: LanguageSettings, tokenizer: WordTokenizer | str) -> Chain:
    """datatrove's filters configured as FineWeb-2's pipeline does for one language, in its order."""
    return [
        (
            "gopher_repetition",
            GuardedGopherRepetition(
                language=tokenizer,
                dup_para_frac=0,
                dup_line_char_frac=0,
                dup_para_char_frac=0,
                dup_line_frac=settings.dup_line_frac,
                top_n_grams=settings.top_n_grams,
                dup_n_grams=settings.dup_n_grams,
            ),
        ),
        (
            "fineweb",
            GuardedFineWebQuality(
                language=tokenizer,
                short_line_thr=999,
                char_duplicates_ratio=0.1,
                line_punct_thr=settings.line_punct_thr,
                new_line_ratio=settings.new_line_ratio,
            ),
        ),
        (
            "gopher_quality",
            GuardedGopherQuality(
                language=tokenizer,
                alpha_ratio_counts="tokens",
                max_avg_word_length=settings.max_avg_word_length,
                min_avg_word_length=settings.min_avg_word_length,
                stop_words=list(settings.stopwords),
                max_non_alpha_words_ratio=settings.max_non_alpha_words_ratio,
                min_stop_words=2,
            ),
        ),
    ]


class FiltersByLanguage(PipelineStep):
    """Runs, on each document, the filter chain of its ``language_config``: FineWeb-2's with that code's file, or
    the stage's own for ``default_settings`` codes and codes without a file. Chains are built on a code's
    first document and kept for the task."""

    name = "🌐 filters by language (FineWeb-2)"
    type = "WINNOW"

    def __init__(self, heuristics: HeuristicsConfig, layout: StageLayout) -> None:
        super().__init__()
        assert heuristics.multilingual is not None
        self.heuristics = heuristics
        self.config = heuristics.multilingual
        self.layout = layout
        self._chains: dict[str | None, Chain | Exception] = {}

    def tokenizer(self, code: str) -> WordTokenizer | str:
        """The word tokenizer for ``code`` (see the module docstring)."""
        if uses_datatrove_tokenizer(code, self.heuristics.tokenizer):
            return load_word_tokenizer(code)
        return RegexWordTokenizer(code)

    def build(self, code: str | None) -> Chain:
        """The chain for ``code``."""
        files = config_files(self.config.configs)
        if code is None or code in self.config.default_settings or code not in files:
            tokenizer = word_tokenizer(self.heuristics)
            chain: Chain = []
            for name, filter_class in FILTERS:
                settings = getattr(self.heuristics, name)
                if settings.enabled:
                    chain.append((name, filter_class(language=tokenizer, **settings.kwargs())))
            return chain
        tokenizer = self.tokenizer(code)
        if isinstance(tokenizer, WordTokenizer) and not isinstance(tokenizer, RegexWordTokenizer):
            tokenizer.word_tokenize("a")  # loads its model now: a missing package fails here, once
        return fineweb2_chain(read_settings(files[code]), tokenizer)

    def chain(self, code: str | None) -> Chain:
        """The kept chain for ``code``; raises what building it raised (again for each document)."""
        if code not in self._chains:
            try:
                self._chains[code] = self.build(code)
            except Exception as exc:
                self._chains[code] = exc
        found = self._chains[code]
        if isinstance(found, Exception):
            raise found
        return found

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        names = [name for name, _ in FILTERS]
        with ExitStack() as stack:
            writers = {name: stack.enter_context(DetailedOutcomeWriter(self.layout, name)) for name in names}
            errors = stack.enter_context(OutcomeWriter(self.layout, "multilingual", kind="errors"))
            for doc in data:
                if is_revisit_stub(doc):
                    yield doc
                    continue
                code = (doc.metadata.get("attributes") or {}).get(CODE)
                with self.track_time():
                    try:
                        chain = self.chain(code)
                    except Exception as exc:
                        errors.write(doc, rank, reason="multilingual:settings_failed", detail=f"{code}: {exc!r}")
                        continue
                    dropped = self.judge(doc, code, chain)
                if dropped is None:
                    self.stat_update(f"kept_{code}")
                    yield doc
                    continue
                name, reason = dropped
                self.stat_update(f"dropped_{code}_{name}")
                writers[name].write(doc, rank, reason=f"{name}:{reason}")

    @staticmethod
    def judge(doc: Document, code: str | None, chain: Chain) -> tuple[str, str] | None:
        """(filter, reason) of the first filter in ``chain`` that drops ``doc``, else None; the detail gets ``code``."""
        for name, step in chain:
            verdict = step.filter(doc)
            if isinstance(verdict, tuple) and not verdict[0]:
                if DETAIL_KEY in doc.metadata and ERROR_KEY not in doc.metadata:
                    doc.metadata[DETAIL_KEY] = f"{doc.metadata[DETAIL_KEY]} ({code})"
                return name, verdict[1]
            if verdict is False:
                return name, "filtered"
        return None


def multilingual_steps(config: HeuristicsConfig, language: LanguageConfig, layout: StageLayout) -> list[PipelineStep]:
    """The language selection by code, then each document's chain."""
    assert config.multilingual is not None
    writer = DetailedOutcomeWriter(layout, "language")
    return [
        LanguageCodeSelector(config.multilingual, language, config.language, writer),
        FiltersByLanguage(config, layout),
    ]
