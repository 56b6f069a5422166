"""Language ID: annotation, selection, and the pre-extraction check on a page's visible text."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document

from winnow.extract.prepass import prepass, visible_text
from winnow.extract.stage import HtmlExtractor
from winnow.filters.fasttext_models import (
    PRECHECK_CHARS,
    PRECHECK_FIRST_CHARS,
    default_lid_model,
    identify,
    load_fasttext,
    precheck_language,
)
from winnow.filters.language import LanguageSelector
from winnow.pipeline.demo_data import OTHER_LANGUAGES, page
from winnow.pipeline.manifest import ExtractConfig, LanguageConfig
from winnow.pipeline.outcomes import StageLayout

ENGLISH = [
    "The city library stays open on every weekday during the summer holidays, and anyone who wants to "
    "borrow books needs a valid library card, which can be requested at the information desk.",
    "Besides novels and non-fiction, the library also offers magazines, audio books and films, and the "
    "first floor has quiet desks with power sockets and free internet access for visitors.",
]


def test_visible_text_drops_markup_scripts_and_styles() -> None:
    html = "<html><head><style>p{color:red}</style><script>var x = '<p>no</p>';</script></head>"
    html += "<body><!-- hidden --><p>Hello\n <b>world</b></p></body></html>"
    assert visible_text(html, 100) == "Hello world"
    assert visible_text(html, 3) == "Hel"
    assert prepass(html, text_chars=100).visible_text == "Hello world"  # the pre-pass gives the same text


def test_precheck_rejects_other_languages_but_not_english_with_foreign_frame() -> None:
    model = load_fasttext(str(default_lid_model()))
    german = visible_text(page("Nachrichten", OTHER_LANGUAGES["de"].split("\n"), "news.example.org", "de"), 10_000)
    assert precheck_language(model, german, {"en"}, 0.9) is not None
    assert precheck_language(model, german, {"en", "de"}, 0.9) is None
    # an English article whose site frame (title, nav) is German stays for extraction
    english = visible_text(page("Startseite Nachrichten Kontakt", ENGLISH, "news.example.org", "de"), 10_000)
    assert precheck_language(model, english, {"en"}, 0.9) is None


def test_precheck_reads_the_whole_sample_unless_its_start_is_a_kept_language() -> None:
    model = load_fasttext(str(default_lid_model()))
    english, german = " ".join(ENGLISH * 4), " ".join(OTHER_LANGUAGES["de"].split("\n") * 40)
    assert len(english) > PRECHECK_FIRST_CHARS and identify(model, (english + " " + german)[:PRECHECK_CHARS])[0] == "de"
    # an English start lets the page pass, though the whole sample reads as German ...
    assert precheck_language(model, english + " " + german, {"en"}, 0.9) is None
    # ... and a German start is not enough to reject: the whole sample decides
    assert precheck_language(model, german[:PRECHECK_FIRST_CHARS] + " " + english * 4, {"en"}, 0.9) is None
    assert precheck_language(model, german, {"en"}, 0.9) is not None


def test_selector_keeps_by_language_and_score() -> None:
    model = load_fasttext(str(default_lid_model()))
    language, score = identify(model, " ".join(ENGLISH))
    assert language == "en" and score > 0.9
    selector = LanguageSelector(["en"], 0.65, exclusion_writer=None)  # type: ignore[arg-type]
    doc = Document(text="x", id="1", metadata={"language": "en", "language_score": 0.9})
    assert selector.filter(doc) is True
    doc.metadata["language_score"] = 0.5
    assert selector.filter(doc) == (False, "low_language_score")
    doc.metadata["language"] = "de"
    assert selector.filter(doc) == (False, "other_language")


def test_language_rejects_explain_themselves() -> None:
    """A document dropped by language selection says which language or score failed, and against what."""
    from datatrove.data import Document

    from winnow.filters.language import DETAIL_KEY, LanguageSelector

    selector = LanguageSelector(["en", "fr"], 0.65, None)  # type: ignore[arg-type]
    german = Document(text="Guten Tag", id="de", metadata={"language": "de", "language_score": 0.99})
    unsure = Document(text="Hello there", id="en", metadata={"language": "en", "language_score": 0.4123})
    sure = Document(text="Hello there", id="ok", metadata={"language": "en", "language_score": 0.9})
    assert selector.filter(german) == (False, "other_language")
    assert german.metadata[DETAIL_KEY] == "language=de not in en,fr"
    assert selector.filter(unsure) == (False, "low_language_score")
    assert unsure.metadata[DETAIL_KEY] == "language_score=0.412<0.65"
    assert selector.filter(sure) is True and DETAIL_KEY not in sure.metadata


def test_the_extraction_workers_cap_includes_the_language_model(tmp_path: Path) -> None:
    """The pre-check loads the model in the extraction worker: its address-space cap grows by the file's size."""
    big = tmp_path / "lid.bin"
    big.write_bytes(b"\0" * (3 * (1 << 20) + 1))  # 3 MB and a byte: 4 MB more
    layout = StageLayout(tmp_path, "extract", 1 << 20)
    checked = HtmlExtractor(ExtractConfig(memory_limit_mb=1000, language=LanguageConfig(model=str(big))), layout)
    assert checked.worker_memory_mb == 1004
    every_language = ExtractConfig(memory_limit_mb=1000, language=LanguageConfig(model=str(big), keep=None))
    assert HtmlExtractor(every_language, layout).worker_memory_mb == 1000  # no check, no model in the worker
