"""PII replacement (winnow.filters.pii): email and public IP addresses replaced as datatrove's PIIFormatter does
(FineWeb's step), phone numbers on request, the counts per document as attributes and in `winnow inspect`.

Real pages: shared archive pages that contain addresses (Common Crawl's FAQ with its servers' public IPs, a
2008 contact page with email addresses, 2009 course pages with both and with private addresses).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document
from datatrove.pipeline.formatters import PIIFormatter
from fastwarc.warc import ArchiveIterator, WarcRecordType

from tests.conftest import WinnowCli
from winnow.filters.pii import EMAILS, IPS, PHONES, PiiScrubber
from winnow.pipeline.manifest import PiiConfig

WARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
PAGES = {  # archive -> pages in it that hold addresses
    "dolma_sample-0001_wget.warc.gz": ["https://commoncrawl.org/faq"],
    "commoncrawl2008_small-sample-1213893279526_0.converted.warc.gz": ["http://www.kinnairdbagpipes.com/contact.php"],
    "commoncrawl2009_small-sample-1262850551027_8.converted.warc.gz": [
        "http://www.coursehero.com/prefix/32/documents/14501/",
        "http://www.coursehero.com/prefix/32/documents/19501/",
    ],
}
needs_shared = pytest.mark.skipif(not all((WARC / f).exists() for f in PAGES), reason="../shared/data/warc absent")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d)")


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address written, None for what only looks like one (``02.13.06.2``)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def scrubbed(text: str, **settings: object) -> Document:
    doc = Document(text=text, id="d", metadata={})
    PiiScrubber(PiiConfig.model_validate(settings)).scrub(doc)
    return doc


def test_a_written_document_gets_its_addresses_replaced_and_counted() -> None:
    text = (
        "Write to jane.doe@uni-bonn.de or to sales@example-shop.co.uk (cc: jane.doe@uni-bonn.de).\n"
        "Our servers: 8.8.8.8 and 1.1.1.1; the router at 192.168.0.1, localhost 127.0.0.1.\n"
        "Call +49 228 73 1234 or (202) 555-0147. Version 10.2.3, on 2024-05-12."
    )
    doc = scrubbed(text)
    assert doc.metadata["attributes"] == {EMAILS: 3, IPS: 2, PHONES: 0}
    assert doc.text.splitlines()[:2] == [
        "Write to email@example.com or to firstname.lastname@example.org (cc: email@example.com).",
        "Our servers: 22.214.171.124 and 126.96.36.199; the router at 192.168.0.1, localhost 127.0.0.1.",
    ]
    assert doc.text == PIIFormatter().format(text)  # datatrove's own output, replacement for replacement
    phones = scrubbed(text, phones=True)
    assert phones.metadata["attributes"] == {EMAILS: 3, IPS: 2, PHONES: 2}
    assert phones.text.endswith("Call +1-202-555-0100 or +1-202-555-0100. Version 10.2.3, on 2024-05-12.")
    none = scrubbed(text, emails=False, ips=False, only_public_ips=False)
    assert none.text == text and none.metadata["attributes"] == {EMAILS: 0, IPS: 0, PHONES: 0}
    private = scrubbed(text, emails=False, only_public_ips=False)
    assert private.metadata["attributes"][IPS] == 4 and "192.168.0.1" not in private.text


def shared_pages() -> list[tuple[str, str]]:
    """(url, trafilatura's text) of the shared pages listed in PAGES."""
    import trafilatura

    found = []
    for name, urls in PAGES.items():
        with open(WARC / name, "rb") as stream:
            for record in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
                url = record.headers.get("WARC-Target-URI").strip("<>")
                if url in urls:
                    html = record.reader.read().decode("utf-8", "replace")
                    found.append((url, trafilatura.extract(html, favor_recall=True) or ""))
    return found


@needs_shared
def test_real_pages_with_addresses() -> None:
    """Every email and every public IPv4 address on the pages is replaced, and the counts are the replacements
    made (each replacement string's new occurrences); private addresses stay."""
    pages = shared_pages()
    assert len(pages) == 4
    config = PiiConfig()
    totals = {EMAILS: 0, IPS: 0}
    for url, text in pages:
        doc = scrubbed(text)
        assert doc.text == PIIFormatter().format(text), url
        for name, replacements in ((EMAILS, config.email_replacement), (IPS, config.ip_replacement)):
            made = sum(doc.text.count(r) - text.count(r) for r in replacements)
            assert doc.metadata["attributes"][name] == made, (url, name)
            totals[name] += made
        emails = PIIFormatter().emails_replacer.regex.findall(text)
        assert doc.metadata["attributes"][EMAILS] == len(emails) and not any(e in doc.text for e in emails), url
        addresses = [a for a in map(address, IPV4.findall(PIIFormatter(remove_ips=False).format(text))) if a]
        assert not any(str(a) in doc.text for a in addresses if a.is_global), url
        assert all(str(a) in doc.text for a in addresses if not a.is_global), url
    faq = scrubbed(dict(pages)["https://commoncrawl.org/faq"])
    assert faq.metadata["attributes"][IPS] == 2 and "38.107.191.66" not in faq.text
    assert totals[EMAILS] >= 40 and totals[IPS] >= 10, totals


def test_counts_are_attributes_and_in_winnow_inspect(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """`winnow run` with stages.heuristics.pii: the output has the text replaced and the pii_* columns;
    `winnow inspect` prints documents with replacements and the totals per source."""
    texts = ["mail a@b.org and c@d.org from 8.8.8.8", "nothing here", "call +44 20 7946 0958, or x@y.com"]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    off = {name: False for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    manifest = {
        "name": "pii",
        "output": str(tmp_path / "out"),
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "sources": [{"name": "docs", "kind": "jsonl", "paths": [str(source)]}],
        "stages": {"extract": None, "heuristics": {"language": False, **off, "pii": {"phones": True}}, "dedup": None},
    }
    path = tmp_path / "pii.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = winnow_cli("run", path, "--no-progress", "--no-publish")
    assert result.returncode == 0, result.stderr
    rows = sorted(pq.read_table(tmp_path / "out" / "pii" / "stages" / "heuristics" / "data").to_pylist(), key=str)
    assert sorted((r["text"], r[EMAILS], r[IPS], r[PHONES]) for r in rows) == [
        ("call +1-202-555-0100, or email@example.com", 1, 0, 1),
        ("mail email@example.com and firstname.lastname@example.org from 22.214.171.124", 2, 1, 0),
        ("nothing here", 0, 0, 0),
    ]
    inspect = winnow_cli("inspect", tmp_path / "out" / "pii")
    assert inspect.returncode == 0, inspect.stderr
    lines = [line.split() for line in inspect.stdout.splitlines()]
    assert "PII replaced" in inspect.stdout
    assert ["│", "docs", "│", "2", "│", "3", "│", "1", "│", "1", "│"] in lines, inspect.stdout
