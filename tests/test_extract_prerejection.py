"""The exact pre-rejection (``too_few_words``) never rejects a page that extraction and the filters would keep.

The shared-data test takes every HTML response of every archive under ``../shared/data/warc`` (WARC and
ARC, the damaged ones too) as the extract stage sees it (2xx or no status, a payload, not binary,
decoded as the stage decodes), bounds its words with the pre-pass, and for each page under the default
heuristics' ``min_doc_words`` runs what the stage would have run without the pre-rejection (pre-pass
and trafilatura with the default settings, the fallback cascade included) and then the default
heuristic filters with language selection off (so more pages reach the word counts); none may be kept.
A stage-level test checks that the rejects are counted with their reason and that nothing else moves.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from winnow.extract.html_text import extract_page
from winnow.extract.prepass import max_words, prepass
from winnow.extract.stage import HtmlExtractor, decode_html, looks_binary, min_kept_words, prerejection_floor
from winnow.extract.web_archives import ArchiveRecord, iter_archive
from winnow.filters.heuristics import heuristic_filters
from winnow.pipeline.manifest import ExtractConfig, HeuristicsConfig, LanguageConfig, Manifest
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.readers import is_html
from winnow.pipeline.runner import Runner
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"


def shared_html_pages() -> list[tuple[str, str]]:
    """(url, decoded HTML) of every page of the shared archives that reaches the extract stage's pre-pass."""
    config = ExtractConfig()
    pages = []
    names = sorted(glob.glob(str(SHARED_WARC / "**" / "*.*arc*"), recursive=True))
    for name in names:
        with open(name, "rb") as fh:
            for rec in iter_archive(fh, name):
                if not isinstance(rec, ArchiveRecord) or rec.record_type not in ("response", None):
                    continue
                if not is_html(rec.content_type) or not (rec.http_status is None or 200 <= rec.http_status < 300):
                    continue
                payload = rec.payload or b""
                if not payload.strip() or len(payload) > config.max_html_bytes or looks_binary(payload):
                    continue
                html, _ = decode_html(payload, rec.charset)
                pages.append((rec.url or f"{name}@{rec.offset}", html))
    return pages


def filtered(texts: list[tuple[str, str]], tmp_path: Path) -> list[str]:
    """URLs of the texts the default heuristic filters (language selection off) keep."""
    layout = StageLayout(tmp_path, "heuristics", 1 << 20)
    steps = heuristic_filters(HeuristicsConfig(language=False), LanguageConfig(keep=None), layout)
    docs = iter([Document(text=text, id=url, metadata={"url": url}) for url, text in texts])
    for step in steps:
        docs = step.run(docs)
    return [doc.id for doc in docs]


@pytest.mark.skipif(not SHARED_WARC.is_dir(), reason="../shared/data/warc is absent")
def test_no_prerejected_shared_page_would_be_kept(tmp_path: Path) -> None:
    floor = min_kept_words(HeuristicsConfig())
    assert floor == 50
    pages = shared_html_pages()
    assert len(pages) > 1000  # 16 + 147 + 140 + 37 + 622 HTML pages and the rest, as the data README lists
    below = [(url, html) for url, html in pages if prepass(html).words < floor]
    print(f"{len(below)} of {len(pages)} shared HTML pages have fewer than {floor} words by the bound")
    assert below, "no page of the shared archives is short enough to test the pre-rejection"
    c = ExtractConfig()
    options = HtmlExtractor(c, StageLayout(tmp_path, "extract", 1 << 20)).trafilatura_options
    plan = {"prepass": True, "language": None, "min_words": None, "fallback": c.fallback}
    texts = []
    for url, html in below:
        text = extract_page(html, url, options, plan)["text"]
        if text and text.strip():
            texts.append((url, text.strip()))
    kept = filtered(texts, tmp_path)
    assert kept == [], f"pre-rejected pages that the filters keep: {kept}"


def test_bound_counts_what_extraction_could_read() -> None:
    page = (
        "<html><head><title>Title</title><script>var hidden = 'code words';</script>"
        '<script type="application/ld+json">{"articleBody": "json body"}</script><style>p {}</style></head>'
        "<body><!-- a comment --><p>one two</p><template><p>three</p></template>"
        '<div data-preloaded=\'{"post": "four"}\'></div><p>five&amp;six ©</p></body></html>'
    )
    prepared = prepass(page)
    # Title, articleBody, json, body, one, two, three, post, four, five, six, © (the script, style, comment: not)
    assert prepared.words == 12
    assert "var hidden" not in prepared.html and "a comment" not in prepared.html and "template" not in prepared.html
    assert "articleBody" in prepared.html  # trafilatura's baseline reads JSON-LD article bodies
    assert max_words("don't stop, U.S. 3.5 — ...") == 7  # don t stop U S 3 5; dash and dots are punctuation


def test_min_kept_words_follows_the_filters() -> None:
    assert min_kept_words(None) is None
    assert min_kept_words(HeuristicsConfig(gopher_quality=False)) is None
    assert min_kept_words(HeuristicsConfig(tokenizer="spacy")) is None
    assert min_kept_words(HeuristicsConfig(gopher_quality={"min_doc_words": 80})) == 80


def test_floor_never_moves_up_with_a_filter_threshold() -> None:
    # a higher min_doc_words must not re-extract (the extract stage's fingerprint holds the floor); a lower one must
    extract = ExtractConfig()
    assert prerejection_floor(extract, HeuristicsConfig()) == 50
    assert prerejection_floor(extract, HeuristicsConfig(gopher_quality={"min_doc_words": 10_000})) == 50
    assert prerejection_floor(extract, HeuristicsConfig(gopher_quality={"min_doc_words": 30})) == 30
    assert prerejection_floor(ExtractConfig(min_words=None), HeuristicsConfig()) is None
    assert prerejection_floor(ExtractConfig(prepass=False), HeuristicsConfig()) is None
    assert prerejection_floor(extract, None) is None


def test_stage_counts_too_few_words_rejects(tmp_path: Path) -> None:
    article = "<html><body><article>" + "<p>The quick brown fox jumps over the lazy dog again.</p>" * 20
    article += "</article></body></html>"
    short = "<html><body><nav>Home | About</nav><p>Page not found.</p></body></html>"
    records = [
        warc_record(f"https://example.org/{name}", http_response(html.encode(), "text/html; charset=utf-8"), index=i)
        for i, (name, html) in enumerate([("article", article), ("short", short)])
    ]
    warc = write_warc(tmp_path / "pages.warc.gz", records)

    def run(name: str, stages: dict[str, object]) -> Path:
        manifest = Manifest.model_validate(
            {
                "name": name,
                "output": str(tmp_path),
                "executor": {"tasks": 1, "workers": 1},
                "sources": [{"name": "web", "kind": "warc", "paths": [str(warc)]}],
                "stages": {"extract": {"url_filter": False}, "dedup": None, **stages},
            }
        )
        Runner(manifest, progress=False).run()
        return manifest.run_dir / "stages" / "extract"

    extract = run("with-filters", {})
    rejects = pq.read_table(extract / "rejects").to_pylist()
    assert [(r["url"], r["reason"]) for r in rejects] == [("https://example.org/short", "too_few_words")]
    assert rejects[0]["detail"].startswith("at most 5 words < 50")
    assert pq.read_table(extract / "data", columns=["url"]).column("url").to_pylist() == ["https://example.org/article"]

    # without a heuristics stage there is no floor: the short page is extracted
    extract = run("without-filters", {"heuristics": None})
    urls = pq.read_table(extract / "data", columns=["url"]).column("url").to_pylist()
    assert sorted(urls) == ["https://example.org/article", "https://example.org/short"]
