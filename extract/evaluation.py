"""Extraction quality against human ground truth: the scrapinghub article-extraction benchmark (AEB) and
CleanEval.

Owns: the bag-of-words F1 of an extracted text against a gold text, loading the AEB pages
(``html/<key>.html.gz`` + ``ground-truth.json``, key = file hash -> ``articleBody``, ``url``) and the
CleanEval pages (``input/<n>.html``, each wrapped in ``<text id="URL" ...>``, and ``GoldStandard/<n>.txt``,
whose ``URL:`` line and ``<p>``/``<h>``/``<l>`` block marks are not text), wrapping pages into a gzip
WARC that winnow's and datatrove's readers both take, running winnow's extract stage alone on such
pages, and the mean F1 of an extraction (url -> text) over pages.

The metric is F1 over the multiset of lowercased ``\\w+`` tokens, per page, averaged over pages. The
AEB's own ``evaluate.py`` counts 4-token shingles (case-sensitive) and averages precision and recall
before combining them, so its figures are close to, not equal to, the ones computed here.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

TOKEN = re.compile(r"\w+")
# Common Crawl sets this header; datatrove's WarcReader sniffs the payload with libmagic without it
PAYLOAD_TYPE_HEADER = b"WARC-Identified-Payload-Type: text/html\r\n"


CLEANEVAL_URL = re.compile(rb'^\s*<text id="([^"]*)"')
CLEANEVAL_WRAPPER = re.compile(rb"^\s*<text [^>]*>\s*|\s*</text>\s*$")
CLEANEVAL_MARKS = re.compile(r"^\s*URL:[^\n]*\n|<[phl]>")


@dataclass(frozen=True)
class GoldPage:
    """One page with human ground truth: its key, URL, raw HTML bytes, gold main text and the content type
    it is archived with (AEB pages are UTF-8; CleanEval's declare no charset)."""

    key: str
    url: str
    html: bytes
    gold: str
    content_type: str = "text/html; charset=utf-8"


def _bag(text: str) -> Counter[str]:
    return Counter(TOKEN.findall(text.lower()))


def bag_of_words_f1(predicted: str, gold: str) -> float:
    """F1 of the token overlap of two texts; 1.0 when both have no token, 0.0 when only one has none."""
    pred, true = _bag(predicted or ""), _bag(gold or "")
    if not pred and not true:
        return 1.0
    if not pred or not true:
        return 0.0
    overlap = sum((pred & true).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(pred.values())
    recall = overlap / sum(true.values())
    return 2 * precision * recall / (precision + recall)


def load_aeb(root: Path) -> list[GoldPage]:
    """The AEB pages under ``root`` (the benchmark's folder), sorted by key."""
    root = Path(root)
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for key in sorted(truth):
        entry = truth[key]
        html = gzip.decompress((root / "html" / f"{key}.html.gz").read_bytes())
        pages.append(GoldPage(key, entry["url"], html, entry.get("articleBody") or ""))
    return pages


def load_cleaneval(root: Path) -> list[GoldPage]:
    """The CleanEval pages under ``root`` (``input/`` and ``GoldStandard/``), sorted by number; the HTML is
    the page without CleanEval's ``<text>`` wrapper, in its own encoding. A URL seen before gets a
    ``#cleaneval-<n>`` suffix, so that every page has its own."""
    root = Path(root)
    pages: list[GoldPage] = []
    seen: set[str] = set()
    for path in sorted((root / "input").glob("*.html"), key=lambda p: (len(p.stem), p.stem)):
        raw = path.read_bytes()
        match = CLEANEVAL_URL.match(raw)
        url = match.group(1).decode("latin-1") if match else f"http://cleaneval.invalid/{path.stem}"
        if url in seen:
            url = f"{url}#cleaneval-{path.stem}"
        seen.add(url)
        gold = (root / "GoldStandard" / f"{path.stem}.txt").read_text(encoding="utf-8", errors="replace")
        html = CLEANEVAL_WRAPPER.sub(b"", raw)
        pages.append(GoldPage(path.stem, url, html, CLEANEVAL_MARKS.sub(" ", gold), "text/html"))
    return pages


def repeat_url(url: str, copy: int) -> str:
    """The URL of the ``copy``-th repeat of a page (copy 0 is the page's own URL)."""
    return url if copy == 0 else f"{url}#repeat-{copy}"


def html_record(url: str, html: bytes, index: int, content_type: str = "text/html; charset=utf-8") -> bytes:
    """A WARC response record holding one HTML page, with ``WARC-Identified-Payload-Type: text/html``."""
    record = warc_record(url, http_response(html, content_type), index=index)
    head, sep, rest = record.partition(b"\r\n")  # after the "WARC/1.1" line; the block length is unchanged
    return head + sep + PAYLOAD_TYPE_HEADER + rest


def write_pages_warc(pages: Sequence[GoldPage], path: Path, repeat: int = 1) -> Path:
    """Write ``pages`` ``repeat`` times to a gzip WARC; each copy has its own URL and record id."""
    records = (
        html_record(repeat_url(page.url, copy), page.html, copy, page.content_type)
        for copy in range(repeat)
        for page in pages
    )
    return write_warc(path, records)


def mean_f1(extracted: Mapping[str, str], pages: Iterable[GoldPage]) -> float:
    """Mean bag-of-words F1 over ``pages``, looking texts up by URL; a missing page scores 0."""
    scores = [bag_of_words_f1(extracted[p.url], p.gold) if p.url in extracted else 0.0 for p in pages]
    return sum(scores) / len(scores) if scores else 0.0


def extract_stage_texts(
    pages: Sequence[GoldPage], workdir: Path, extract: Mapping[str, object] | None = None
) -> dict[str, str]:
    """Run winnow's extract stage alone on ``pages`` (wrapped into a WARC); returns url -> extracted text.

    Language selection and the URL filter are off unless ``extract`` (stage settings) says otherwise:
    this measures extraction, not which pages a run keeps.
    """
    import pyarrow.parquet as pq

    from winnow.pipeline.manifest import Manifest
    from winnow.pipeline.runner import Runner

    warc = write_pages_warc(pages, workdir / "pages.warc.gz")
    settings = {"language": {"keep": None}, "url_filter": False, **(extract or {})}
    manifest = Manifest.model_validate(
        {
            "name": "extraction-quality",
            "output": str(workdir),
            "executor": {"tasks": 1, "workers": 1},
            "sources": [{"name": "pages", "kind": "warc", "paths": [str(warc)]}],
            "stages": {"extract": settings, "heuristics": None},
        }
    )
    Runner(manifest, progress=False).run()
    texts: dict[str, str] = {}
    for path in sorted((manifest.run_dir / "stages" / "extract" / "data").glob("*.parquet")):
        for row in pq.read_table(path, columns=["url", "text"]).to_pylist():
            texts[row["url"]] = row["text"]
    return texts
