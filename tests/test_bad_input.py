"""End-to-end: bad input through ``Runner`` never crashes a run and never vanishes from the funnel.

Each case writes one small archive (the bad record, plus good "control" pages around it), runs the
extract stage alone (one task, one worker, URL filter off: it is not under test and costs seconds to
load) and checks, with DuckDB over the run folder, that

- the funnel balances per source (rows in, counted by the reader, == out + rejected + errored, counted
  from the Parquet files) and equals the number of records written plus read errors;
- the bad record or stretch ends up where expected (output / rejects / errors) with its reason;
- the control pages still come out, so one bad record does not take its neighbours down.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.runner import Runner
from winnow.pipeline.warc_writer import http_response, warc_record

SOURCE = "web"
PROSE = (
    "The village library opens every weekday during the summer holidays. Anyone who wants to borrow "
    "books needs a valid card, which can be requested at the front desk. Children and teenagers get "
    "the card for free, while adults pay a small yearly fee. Besides novels and non-fiction the "
    "library also lends magazines, audio books and films. On the first floor there are quiet desks "
    "with power outlets and free internet access, and group rooms can be booked three hours ahead."
)


def url(name: str) -> str:
    return f"http://example.com/{name}"


def article(title: str, body: str = PROSE) -> bytes:
    """A plain, extractable article page (UTF-8)."""
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{body}</p><p>{body}</p></article></body></html>"
    ).encode()


def response(name: str, body: bytes, content_type: str = "text/html; charset=utf-8", index: int = 0) -> bytes:
    """An uncompressed WARC response record for ``url(name)``."""
    return warc_record(url(name), http_response(body, content_type), index=index)


def control(i: int) -> bytes:
    return response(f"control-{i}", article(f"Control page {i}"), index=i)


@dataclass
class Outcome:
    """What one run did: the extract funnel of the source and the rows of each extract dataset."""

    funnel: Any
    data: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    errors: list[dict[str, Any]]

    def where(self, page_url: str) -> list[tuple[str, dict[str, Any]]]:
        """(dataset, row) for every row of ``page_url`` in output, rejects and errors."""
        named = (("data", self.data), ("rejects", self.rejects), ("errors", self.errors))
        return [(name, row) for name, rows in named for row in rows if row["url"] == page_url]


def run_extract(tmp_path: Path, archive: bytes, filename: str = "input.warc.gz", **extract: Any) -> Outcome:
    """Write ``archive`` to ``tmp_path/in/filename``, run the extract stage over it, collect the outcome.

    Language selection is off (pages here are in several languages; this is about reading them)."""
    path = tmp_path / "in" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(archive)
    manifest = Manifest.model_validate(
        {
            "name": "bad-input",
            "output": str(tmp_path / "out"),
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "sources": [{"name": SOURCE, "kind": "warc", "paths": [str(path)]}],
            "stages": {
                "extract": {"timeout_s": 2, "url_filter": False, "language": {"keep": None}, **extract},
                "heuristics": None,
                "dedup": None,
            },
        }
    )
    result = Runner(manifest, progress=False).run()
    assert [s.name for s in result.stages] == ["extract"]
    funnel = result.stages[0].funnel
    assert set(funnel) == {SOURCE}
    with connect(result.run_dir) as con:
        tables = {}
        for view in ("extract", "extract_rejects", "extract_errors"):
            cursor = con.execute(f"SELECT * FROM {view}")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
            for row in rows:
                row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
            tables[view] = rows
    outcome = Outcome(funnel[SOURCE], tables["extract"], tables["extract_rejects"], tables["extract_errors"])
    assert_balanced(outcome)
    return outcome


def assert_balanced(outcome: Outcome) -> None:
    """rows_in == out + rejected + errored, and the Parquet rows are exactly those counts."""
    f = outcome.funnel
    assert f.rows_in > 0
    assert f.balanced, vars(f)
    assert (f.rows_out, f.rows_rejected, f.rows_errored) == (
        len(outcome.data),
        len(outcome.rejects),
        len(outcome.errors),
    )
    assert all(row["source"] == SOURCE for rows in (outcome.data, outcome.rejects, outcome.errors) for row in rows)


def assert_controls_extracted(outcome: Outcome, indices: range) -> None:
    for i in indices:
        [(dataset, row)] = outcome.where(url(f"control-{i}"))
        assert dataset == "data"
        assert "library opens every weekday" in row["text"]


# ---------------------------------------------------------------------------- damaged archives


def test_truncated_gzip_member(tmp_path: Path) -> None:
    """A file cut inside its last gzip member: earlier pages extracted, the cut one is a counted error."""
    members = [gzip.compress(control(i), mtime=0) for i in range(3)]
    last = gzip.compress(response("cut", article("Cut page"), index=9), mtime=0)
    outcome = run_extract(tmp_path, b"".join(members) + last[: len(last) // 2])

    assert outcome.funnel.rows_in == 4
    assert_controls_extracted(outcome, range(3))
    assert outcome.where(url("cut")) == []  # never emitted half-read
    [error] = outcome.errors
    assert error["reason"] == "warc_truncated"
    assert error["stage"] == "extract"
    assert error["meta"]["offset"] == sum(map(len, members))
    assert error["meta"]["warc_file"].endswith("input.warc.gz")


@pytest.mark.parametrize("filename", ["empty.warc.gz", "empty.warc", "empty.arc.gz"])
def test_empty_input_file_is_an_error_record(tmp_path: Path, filename: str) -> None:
    """A file of 0 bytes (a failed download) reads as nothing at all: it is one input_empty error, counted in."""
    outcome = run_extract(tmp_path, b"", filename)

    assert outcome.funnel.rows_in == 1 and not outcome.data and not outcome.rejects
    [error] = outcome.errors
    assert error["reason"] == "input_empty" and "0 bytes" in error["detail"]
    assert error["meta"]["warc_file"].endswith(filename) and error["meta"]["offset"] == 0


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "uncompressed"])
def test_garbage_between_records(tmp_path: Path, compressed: bool) -> None:
    """Garbage between records: every page before and after it extracted, one error where it starts."""
    parts = [control(i) for i in range(4)]
    if compressed:
        parts = [gzip.compress(p, mtime=0) for p in parts]
    garbage = b"\x00\x17 not a WARC record \xff\xfe" * 40
    archive = parts[0] + parts[1] + garbage + parts[2] + parts[3]
    outcome = run_extract(tmp_path, archive, "input.warc.gz" if compressed else "input.warc")

    assert outcome.funnel.rows_in == 5
    assert_controls_extracted(outcome, range(4))
    [error] = outcome.errors
    assert error["reason"] == "warc_unreadable"
    assert error["meta"]["offset"] == len(parts[0]) + len(parts[1])
    # offsets recorded on the documents still point at their records after the resync
    starts = [0, len(parts[0]), len(parts[0]) + len(parts[1]) + len(garbage)]
    starts.append(starts[-1] + len(parts[2]))
    assert sorted(row["meta"]["offset"] for row in outcome.data) == starts


# ---------------------------------------------------------------------------- pages rejected early

FIFTY_MB = 50 * 1024 * 1024


def huge_page() -> bytes:
    row = b"<tr><td>cell</td><td>another cell of a very long table</td></tr>\n"
    return b"<html><body><table>" + row * (FIFTY_MB // len(row)) + b"</table></body></html>"


def binary_payload() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 64


@pytest.mark.parametrize(
    ("make_body", "reason"),
    [(lambda: b"", "empty_payload"), (binary_payload, "not_html"), (huge_page, "too_large")],
    ids=["empty", "binary", "50MB"],
)
def test_page_rejected_before_extraction(tmp_path: Path, make_body: Any, reason: str) -> None:
    """Empty, binary-labelled-as-HTML and oversize (default max_html_bytes) pages are counted rejects."""
    body: bytes = make_body()
    archive = gzip.compress(response("bad", body, index=99), mtime=0, compresslevel=1)
    archive += gzip.compress(control(0), mtime=0)
    outcome = run_extract(tmp_path, archive)

    assert outcome.funnel.rows_in == 2
    [(dataset, row)] = outcome.where(url("bad"))
    assert (dataset, row["reason"]) == ("rejects", reason)
    assert outcome.funnel.rejected_by_reason == {reason: 1}
    if reason == "too_large":
        assert str(len(body)) in row["detail"]
    assert_controls_extracted(outcome, range(1))


def test_deeply_nested_html_is_contained(tmp_path: Path) -> None:
    """100k nested <div>s: the page leaves as output, a reject or an error, and the run goes on."""
    depth = 100_000
    body = b"<html><body>" + b"<div>" * depth + PROSE.encode() + b"</div>" * depth + b"</body></html>"
    archive = b"".join(gzip.compress(r, mtime=0) for r in (response("nested", body, index=5), control(0)))
    outcome = run_extract(tmp_path, archive, timeout_s=2)

    assert outcome.funnel.rows_in == 2
    [(dataset, row)] = outcome.where(url("nested"))
    allowed = {
        "data": {None},
        "rejects": {"extract_timeout", "no_text"},
        "errors": {"extract_worker_died", "extract_failed"},
    }
    assert row.get("reason") in allowed[dataset]
    assert_controls_extracted(outcome, range(1))


# ---------------------------------------------------------------------------- character encodings

UTF8_PROSE = "Naïve café owners in Zürich serve crème brûlée — “the best in town”, they say. " * 6
LEGACY_PROSE = (
    "Le café de la Straße: Müller a dîné à l'hôtel près de la gare, où l'on sert des crêpes "
    "« délicieuses » pour 5 € – “vraiment”. "
) * 6


def test_invalid_utf8_in_a_utf8_page(tmp_path: Path) -> None:
    """Stray invalid bytes in a page declared UTF-8: the valid text (accents included) survives intact,
    instead of the whole page being re-decoded with a guessed legacy charset."""
    body = article("Café", UTF8_PROSE)
    cut = body.index(b"serve")
    body = body[:cut] + b"\x81\xff " + body[cut:]
    archive = gzip.compress(response("invalid-utf8", body), mtime=0) + gzip.compress(control(0), mtime=0)
    outcome = run_extract(tmp_path, archive)

    [(dataset, row)] = outcome.where(url("invalid-utf8"))
    assert dataset == "data"
    assert row["text"].count("Naïve café owners in Zürich") >= 6
    assert "crème brûlée — “the best in town”" in row["text"]
    assert row["meta"]["decode"].startswith("utf-8")
    assert row["meta"]["decode"] != "utf-8 (http)"  # records that the declared charset did not decode cleanly
    assert_controls_extracted(outcome, range(1))


@pytest.mark.parametrize(
    ("content_type", "meta_tag"),
    [
        ("text/html; charset=utf-8", ""),
        ("text/html; charset=us-ascii", ""),
        ("text/html", '<meta charset="utf-8">'),
    ],
    ids=["http-utf8", "http-ascii", "meta-utf8"],
)
def test_legacy_page_with_wrong_declared_charset(tmp_path: Path, content_type: str, meta_tag: str) -> None:
    """A windows-1252 page declared as something else still comes out readable, and ``meta.decode``
    says how it was decoded (not with the wrong declared charset)."""
    html = f"<html><head>{meta_tag}<title>Le café</title></head><body><article><p>{LEGACY_PROSE}</p></article>"
    archive = gzip.compress(response("legacy", html.encode("cp1252"), content_type), mtime=0)
    outcome = run_extract(tmp_path, archive + gzip.compress(control(0), mtime=0))

    [(dataset, row)] = outcome.where(url("legacy"))
    assert dataset == "data"
    assert "Le café de la Straße: Müller a dîné à l'hôtel près de la gare" in row["text"]
    assert "« délicieuses » pour 5 € – “vraiment”" in row["text"]
    assert "\ufffd" not in row["text"]
    decode = row["meta"]["decode"]
    assert decode and not decode.startswith(("utf-8", "ascii"))
    assert_controls_extracted(outcome, range(1))
