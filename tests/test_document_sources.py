"""JSON Lines and Parquet document sources: where they enter the flow, their ids and fields, bad input, validation."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from winnow.pipeline.cli import app
from winnow.pipeline.funnel import SourceFunnel, connect, stage_funnel
from winnow.pipeline.manifest import DocumentSource, Manifest
from winnow.pipeline.outcomes import StageLayout
from winnow.pipeline.readers import DocumentFile, DocumentReader, stable_id
from winnow.pipeline.runner import Runner, RunResult
from winnow.pipeline.schema import document_schema
from winnow.pipeline.sources import InputFile, resolve_inputs
from winnow.pipeline.stages import document_files
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]

# every heuristic filter off: documents pass heuristics untouched, so the counts below follow from the inputs alone
NO_FILTERS: dict[str, Any] = {
    "language": False,
    "gopher_repetition": False,
    "gopher_quality": False,
    "c4": False,
    "fineweb": False,
}


def prose(i: int, topic: str = "rivers") -> str:
    """A distinct sentence per ``i`` (distinct enough that dedup keeps every one)."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    digits = " ".join(words[int(d)] for d in f"{i:04d}")
    return f"Document {i} about {topic}: {digits}. " + " ".join(f"{topic}{i}w{k}" for k in range(12))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str], compress: bool = False) -> Path:
    """JSON Lines: dicts are serialised, strings written as they are (for broken lines)."""
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def make_manifest(output: Path, name: str, sources: list[dict[str, Any]], **stages: Any) -> Manifest:
    """A manifest without extraction (unless ``stages`` says so), heuristics filters off, dedup off."""
    settings: dict[str, Any] = {"extract": None, "heuristics": NO_FILTERS, "dedup": None, **stages}
    return Manifest.model_validate(
        {
            "name": name,
            "output": str(output),
            "executor": {"tasks": 2, "workers": 1},
            "sources": sources,
            "stages": settings,
        }
    )


def rows_in(run_dir: Path, stage: str) -> dict[str, int]:
    """What the stage's readers counted while running (stats.json), per source."""
    return json.loads((run_dir / "stages" / stage / "stats.json").read_text())["rows_in"]


def funnel(run_dir: Path, stage: str) -> dict[str, SourceFunnel]:
    with connect(run_dir) as con:
        return stage_funnel(run_dir, con, stage)


def query(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with connect(run_dir) as con:
        return con.execute(sql).fetchall()


def output_rows(run_dir: Path, view: str, source: str) -> dict[str, dict[str, Any]]:
    """Rows of a view for one source, by id."""
    with connect(run_dir) as con:
        table = con.sql(f"SELECT * FROM \"{view}\" WHERE source = '{source}'").to_arrow_table()
    return {row["id"]: row for row in table.to_pylist()}


def assert_balanced(run_dir: Path, stage: str) -> None:
    """in == out + rejected + errored for every source of the stage, ``in`` as counted by the readers."""
    for source, counts in funnel(run_dir, stage).items():
        assert counts.balanced, (stage, source, vars(counts))


# ---------------------------------------------------------------- where documents enter


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    """Rows with string and integer ids, a URL, and extra fields of several JSON types."""
    return [
        {
            "id": f"doc-{i}" if i % 2 else i,
            "text": prose(i),
            "url": f"https://example.org/page/{i}",
            "lang": "en",
            "tags": ["t", str(i)],
            "score": i / 10,
        }
        for i in range(12)
    ]


@pytest.fixture(scope="module")
def default_entry_run(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> Manifest:
    """JSONL (plain and gzip), Parquet and a JSONL source with custom field names, no extract stage."""
    folder = tmp_path_factory.mktemp("default-entry")
    write_jsonl(folder / "plain.jsonl", records[:5])
    write_jsonl(folder / "more.jsonl.gz", records[5:8], compress=True)
    pq.write_table(pa.Table.from_pylist([{**r, "id": str(r["id"])} for r in records[8:]]), folder / "docs.parquet")
    custom = [
        {"key": "k1", "body": prose(100), "link": "https://example.net/1", "extra": {"a": 1}},
        {"key": "k2", "body": prose(101), "link": 17, "extra": None},  # a URL that is not a string
    ]
    write_jsonl(folder / "custom.jsonl", custom)
    manifest = make_manifest(
        folder / "out",
        "default",
        [
            {"name": "js", "kind": "jsonl", "paths": [str(folder / "plain.jsonl"), str(folder / "more.jsonl.gz")]},
            {"name": "pq", "kind": "parquet", "paths": [str(folder / "docs.parquet")]},
            {
                "name": "custom",
                "kind": "jsonl",
                "paths": [str(folder / "custom.jsonl")],
                "text_field": "body",
                "id_field": "key",
                "url_field": "link",
                "crawl": "batch-7",
            },
        ],
    )
    result = Runner(manifest, progress=False).run()
    assert [s.name for s in result.stages] == ["heuristics"]
    return manifest


def test_jsonl_gzip_and_parquet_sources_enter_heuristics_without_extract(
    default_entry_run: Manifest, records: list[dict[str, Any]]
) -> None:
    """With extract off, .jsonl, .jsonl.gz and Parquet rows are counted `in` by heuristics under their source."""
    run_dir = default_entry_run.run_dir
    assert {s.name: default_entry_run.entry_stage(s) for s in default_entry_run.sources} == {
        "js": "heuristics",
        "pq": "heuristics",
        "custom": "heuristics",
    }
    expected = {"js": len(records[:8]), "pq": len(records[8:]), "custom": 2}  # as the fixture splits them
    assert rows_in(run_dir, "heuristics") == expected
    assert {source: f.rows_out for source, f in funnel(run_dir, "heuristics").items()} == expected
    assert_balanced(run_dir, "heuristics")


def test_ids_are_stable_ids_of_the_id_field(default_entry_run: Manifest, records: list[dict[str, Any]]) -> None:
    """A document's id is stable_id(source name, str(record id)), for string and integer record ids alike."""
    run_dir = default_entry_run.run_dir
    assert set(output_rows(run_dir, "heuristics", "js")) == {stable_id("js", str(r["id"])) for r in records[:8]}
    assert set(output_rows(run_dir, "heuristics", "pq")) == {stable_id("pq", str(r["id"])) for r in records[8:]}
    assert set(output_rows(run_dir, "heuristics", "custom")) == {stable_id("custom", "k1"), stable_id("custom", "k2")}


def test_extra_fields_land_in_meta_and_url_field_fills_url(
    default_entry_run: Manifest, records: list[dict[str, Any]]
) -> None:
    """Text, URL and id come from their configured fields; every other field is kept in the JSON `meta`."""
    run_dir = default_entry_run.run_dir
    written = output_rows(run_dir, "heuristics", "js")
    for record in records[:8]:
        row = written[stable_id("js", str(record["id"]))]
        assert row["text"] == record["text"] and row["url"] == record["url"]
        meta = json.loads(row["meta"])
        assert {k: meta[k] for k in ("lang", "tags", "score")} == {k: record[k] for k in ("lang", "tags", "score")}
        assert not {"id", "text", "url"} & set(meta)
        assert meta["source_file"].endswith(("plain.jsonl", "more.jsonl.gz"))

    custom = output_rows(run_dir, "heuristics", "custom")
    first, second = custom[stable_id("custom", "k1")], custom[stable_id("custom", "k2")]
    assert first["text"] == prose(100) and first["url"] == "https://example.net/1" and first["crawl"] == "batch-7"
    assert json.loads(first["meta"])["extra"] == {"a": 1}
    assert not {"key", "body", "link"} & set(json.loads(first["meta"]))
    assert second["url"] is None  # 17 is not a URL


def test_document_source_without_enter_joins_after_extract(tmp_path: Path) -> None:
    """With archives extracted first, a JSONL source without `enter` skips extract and joins at heuristics."""
    body = (
        "<html><body><article><p>" + "Plain English prose about a quiet garden. " * 8 + "</p></article></body></html>"
    )
    write_warc(
        tmp_path / "pages.warc.gz",
        [warc_record(f"http://example.com/{i}", http_response(f"{body} {i}".encode()), index=i) for i in range(3)],
    )
    write_jsonl(tmp_path / "docs.jsonl", [{"id": i, "text": prose(i)} for i in range(5)])
    manifest = make_manifest(
        tmp_path / "out",
        "mixed",
        [
            {"name": "cc", "kind": "warc", "paths": [str(tmp_path / "pages.warc.gz")]},
            {"name": "js", "kind": "jsonl", "paths": [str(tmp_path / "docs.jsonl")]},
        ],
        extract={},
    )
    assert [manifest.entry_stage(s) for s in manifest.sources] == ["extract", "heuristics"]
    Runner(manifest, progress=False).run()

    run_dir = manifest.run_dir
    assert rows_in(run_dir, "extract") == {"cc": 3}
    extracted = funnel(run_dir, "extract")["cc"].rows_out
    assert extracted > 0
    assert rows_in(run_dir, "heuristics") == {"cc": extracted, "js": 5}
    assert_balanced(run_dir, "extract")
    assert_balanced(run_dir, "heuristics")


@pytest.fixture(scope="module")
def dedup_entry_run(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """Source `early` enters heuristics (the default), source `late` enters dedup; `late` has one broken line."""
    folder = tmp_path_factory.mktemp("dedup-entry")
    early = [{"id": f"e{i}", "text": prose(i, "rivers"), "url": f"https://early.example/{i}"} for i in range(6)]
    late = [{"id": f"l{i}", "text": prose(i, "mountains"), "url": f"https://late.example/{i}"} for i in range(4)]
    write_jsonl(folder / "early.jsonl", early)
    write_jsonl(folder / "late.jsonl", [*late[:2], "{not json", *late[2:]])
    manifest = make_manifest(
        folder / "out",
        "entry",
        [
            {"name": "early", "kind": "jsonl", "paths": [str(folder / "early.jsonl")]},
            {"name": "late", "kind": "jsonl", "paths": [str(folder / "late.jsonl")], "enter": "dedup"},
        ],
        dedup={},
    )
    Runner(manifest, progress=False).run()
    return manifest


def test_enter_dedup_skips_heuristics(dedup_entry_run: Manifest) -> None:
    """Documents of a source with `enter: dedup` appear from dedup on, never in heuristics' counts or datasets."""
    manifest, run_dir = dedup_entry_run, dedup_entry_run.run_dir
    inputs = resolve_inputs(manifest)
    assert [f.source for f in document_files(manifest, manifest.run_dir, "heuristics", inputs, None)] == ["early"]
    assert [f.source for f in document_files(manifest, manifest.run_dir, "dedup", inputs, None)] == ["late"]

    assert rows_in(run_dir, "heuristics") == {"early": 6}
    for view in ("heuristics", "heuristics_rejects", "heuristics_errors"):
        assert query(run_dir, f"SELECT count(*) FROM {view} WHERE source = 'late'") == [(0,)]
    assert rows_in(run_dir, "dedup") == {"early": 6, "late": 5}
    assert set(output_rows(run_dir, "dedup", "late")) == {stable_id("late", f"l{i}") for i in range(4)}
    assert_balanced(run_dir, "heuristics")
    assert_balanced(run_dir, "dedup")


def test_bad_line_entering_dedup_is_one_error_record(dedup_entry_run: Manifest) -> None:
    """Dedup reads its input in two passes, but a broken line is recorded once, as a dedup error."""
    rows = query(dedup_entry_run.run_dir, "SELECT source, reason FROM dedup_errors")
    assert rows == [("late", "bad_json")]


# ---------------------------------------------------------------- ids


def test_ids_without_id_field_are_stable_and_distinct(tmp_path: Path) -> None:
    """With id_field null, ids come from file and row: the same on every run, one per row, even for equal rows."""
    rows = [{"id": "same", "text": prose(i % 3)} for i in range(6)]  # repeated texts and a constant `id` field
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    source = {"name": "js", "kind": "jsonl", "paths": [str(path)], "id_field": None}

    runs = []
    for name in ("first", "second"):
        manifest = make_manifest(tmp_path / "out", name, [source])
        Runner(manifest, progress=False).run()
        runs.append(output_rows(manifest.run_dir, "heuristics", "js"))

    first, second = runs
    assert len(first) == len(rows)  # distinct per row
    assert set(first) == set(second)
    assert {row["text"] for row in first.values()} == {r["text"] for r in rows}
    assert stable_id("js", "same") not in first  # the `id` field is not used...
    assert all(json.loads(row["meta"])["id"] == "same" for row in first.values())  # ...it is kept in meta


# ---------------------------------------------------------------- native Parquet


def test_parquet_from_an_earlier_run_is_read_natively(dedup_entry_run: Manifest, tmp_path: Path) -> None:
    """A previous run's dedup output given as a Parquet source keeps its ids, texts, URLs and meta."""
    earlier_files = sorted((dedup_entry_run.run_dir / "stages" / "dedup" / "data").glob("*.parquet"))
    earlier = pa.concat_tables(pq.read_table(p) for p in earlier_files).to_pylist()
    assert earlier
    manifest = make_manifest(
        tmp_path / "out",
        "again",
        [{"name": "previous", "kind": "parquet", "paths": [str(p) for p in earlier_files]}],
    )
    Runner(manifest, progress=False).run()

    with connect(manifest.run_dir) as con:
        again = con.execute("SELECT id, text, url, meta FROM heuristics").fetchall()
    assert sorted(again) == sorted((r["id"], r["text"], r["url"], r["meta"]) for r in earlier)
    assert sum(rows_in(manifest.run_dir, "heuristics").values()) == len(earlier)
    assert_balanced(manifest.run_dir, "heuristics")


def native_file(path: Path) -> list[dict[str, Any]]:
    """A Parquet file in winnow's document schema with two attribute columns; returns its rows."""
    rows = [
        {
            "id": f"native-{i}",
            "text": prose(i, "lakes"),
            "source": "elsewhere",
            "url": f"https://lakes.example/{i}",
            "crawl": "CC-MAIN-2024-10",
            "language": "en",
            "language_score": 0.75,
            "synthetic_of": None,
            "style": None,
            "meta": json.dumps({"page": i}),
            "dup_count": i + 2,
            "score_quality": 0.5,
        }
        for i in range(3)
    ]
    schema = document_schema({"dup_count": pa.int64(), "score_quality": pa.float32()})
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return rows


def test_reader_keeps_ids_and_attributes_of_a_winnow_schema_file(tmp_path: Path) -> None:
    """The reader takes a winnow-schema Parquet row as it is: own id, language, meta and attribute columns."""
    rows = native_file(tmp_path / "native.parquet")
    source = DocumentSource(name="nat", kind="parquet", paths=[str(tmp_path / "native.parquet")])
    item = InputFile(str(tmp_path / "native.parquet"), "nat", None, (tmp_path / "native.parquet").stat().st_size)
    reader = DocumentReader(
        [DocumentFile.of_source(item, source)], StageLayout(tmp_path / "run", "heuristics", 1 << 20)
    )
    docs = list(reader.run(None, rank=0, world_size=1))

    assert [d.id for d in docs] == [r["id"] for r in rows]
    for doc, row in zip(docs, rows, strict=True):
        assert doc.text == row["text"]
        assert doc.metadata["language"] == "en" and doc.metadata["url"] == row["url"]
        assert doc.metadata["meta"] == json.loads(row["meta"])
        assert doc.metadata["attributes"] == {"dup_count": row["dup_count"], "score_quality": 0.5}


def test_attribute_columns_of_a_native_parquet_source_are_carried_along(tmp_path: Path) -> None:
    """Attribute columns of a winnow-schema source survive the stage it enters, like upstream attributes do."""
    rows = native_file(tmp_path / "native.parquet")
    manifest = make_manifest(
        tmp_path / "out", "carry", [{"name": "nat", "kind": "parquet", "paths": [str(tmp_path / "native.parquet")]}]
    )
    Runner(manifest, progress=False).run()
    written = query(manifest.run_dir, "SELECT id, score_quality FROM heuristics ORDER BY id")
    assert written == [(r["id"], r["score_quality"]) for r in rows]


def test_winnow_schema_rows_with_a_null_source_keep_the_funnel_balanced(tmp_path: Path) -> None:
    """A winnow-schema Parquet source with a null `source` value still satisfies in == out + rejected + errored."""
    rows = native_file(tmp_path / "native.parquet")
    rows[0]["source"] = None
    nullable = pa.schema([f.with_nullable(True) for f in pq.read_schema(tmp_path / "native.parquet")])
    pq.write_table(pa.Table.from_pylist(rows, schema=nullable), tmp_path / "native.parquet")
    manifest = make_manifest(
        tmp_path / "out", "nulls", [{"name": "nat", "kind": "parquet", "paths": [str(tmp_path / "native.parquet")]}]
    )
    Runner(manifest, progress=False).run()
    assert sum(rows_in(manifest.run_dir, "heuristics").values()) == len(rows)
    assert_balanced(manifest.run_dir, "heuristics")


# ---------------------------------------------------------------- bad input


BAD_JSONL = [
    {"id": "ok-1", "text": prose(1)},
    "{this is not json",
    "[1, 2, 3]",  # JSON, but not an object
    "42",
    {"id": "no-text"},
    {"id": "int-text", "text": 123},
    {"id": "null-text", "text": None},
    {"id": "ok-2", "text": prose(2)},
]


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> tuple[Path, Path]:
    """`winnow run` over broken JSONL lines, a corrupt Parquet file and a Parquet file without a text column."""
    folder = tmp_path_factory.mktemp("bad-input")
    write_jsonl(folder / "bad.jsonl", BAD_JSONL)
    pq.write_table(pa.Table.from_pylist([{"id": i, "text": prose(i)} for i in range(3)]), folder / "good.parquet")
    (folder / "corrupt.parquet").write_bytes(b"PAR1 this is not really a parquet file PAR1")
    pq.write_table(pa.Table.from_pylist([{"id": i, "body": prose(i)} for i in range(2)]), folder / "notext.parquet")
    manifest = {
        "name": "bad",
        "output": str(folder / "out"),
        "executor": {"tasks": 2, "workers": 1},
        "sources": [
            {"name": "js", "kind": "jsonl", "paths": [str(folder / "bad.jsonl")]},
            {
                "name": "pq",
                "kind": "parquet",
                "paths": [str(folder / f"{name}.parquet") for name in ("good", "corrupt", "notext")],
            },
        ],
        "stages": {"extract": None, "heuristics": NO_FILTERS, "dedup": None},
    }
    (folder / "bad.yaml").write_text(json.dumps(manifest))  # JSON is YAML
    result = winnow_cli("run", folder / "bad.yaml", "--no-progress", cwd=folder)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, f"expected 'finished with errors' (1):\n{result.stdout}\n{result.stderr}"
    return folder, folder / "out" / "bad"


def test_bad_rows_and_files_become_error_records(bad_input_run: tuple[Path, Path]) -> None:
    """Broken lines, non-objects, missing or non-string texts and unreadable files are errors with their reason."""
    folder, run_dir = bad_input_run
    counts = query(run_dir, "SELECT source, reason, count(*) FROM heuristics_errors GROUP BY 1, 2 ORDER BY 1, 2")
    assert counts == [
        ("js", "bad_json", 3),
        ("js", "missing_text", 3),
        ("pq", "input_unreadable", 1),
        ("pq", "missing_text", 2),
    ]
    files = dict(query(run_dir, "SELECT reason, json_extract_string(meta, '$.source_file') FROM heuristics_errors"))
    assert files["input_unreadable"] == str(folder / "corrupt.parquet")
    assert query(run_dir, "SELECT count(*) FROM heuristics_errors WHERE detail IS NULL OR detail = ''") == [(0,)]
    assert set(output_rows(run_dir, "heuristics", "js")) == {stable_id("js", "ok-1"), stable_id("js", "ok-2")}


def test_funnel_identity_holds_with_bad_input(bad_input_run: tuple[Path, Path]) -> None:
    """Every line and row read is counted `in` once and leaves as exactly one output or error record."""
    folder, run_dir = bad_input_run
    lines = len((folder / "bad.jsonl").read_text().splitlines())
    parquet_rows = (
        pq.read_metadata(folder / "good.parquet").num_rows + pq.read_metadata(folder / "notext.parquet").num_rows
    )
    assert rows_in(run_dir, "heuristics") == {"js": lines, "pq": parquet_rows + 1}  # + 1: the unreadable file
    assert_balanced(run_dir, "heuristics")


def run_single_file(tmp_path: Path, name: str, data: bytes, kind: str = "jsonl") -> RunResult:
    """Run heuristics over one document file holding ``data``."""
    (tmp_path / name).write_bytes(data)
    manifest = make_manifest(tmp_path / "out", "one", [{"name": "src", "kind": kind, "paths": [str(tmp_path / name)]}])
    return Runner(manifest, progress=False).run()


def good_lines(count: int) -> bytes:
    return "".join(json.dumps({"id": i, "text": prose(i)}) + "\n" for i in range(count)).encode()


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_jsonl_is_an_error_record_not_a_failed_stage(tmp_path: Path, damage: str) -> None:
    """A damaged .jsonl.gz ends in an input_unreadable error record; the stage completes and balances."""
    packed = gzip.compress(good_lines(200))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        packed = packed[:40] + bytes(b ^ 0xFF for b in packed[40:200]) + packed[200:]
    result = run_single_file(tmp_path, "docs.jsonl.gz", packed)
    counts = result.stages[0].funnel["src"]
    assert counts.balanced and counts.errored_by_reason == {"input_unreadable": 1}


@pytest.mark.parametrize(
    ("name", "data"), [("docs.jsonl", b""), ("docs.jsonl", b"\n \n"), ("docs.jsonl.gz", gzip.compress(b""))]
)
def test_jsonl_without_a_line_is_an_input_empty_error_record(tmp_path: Path, name: str, data: bytes) -> None:
    """An empty JSON Lines file (0 bytes, blank lines only, an empty gzip stream) is one counted error, not nothing."""
    result = run_single_file(tmp_path, name, data)
    counts = result.stages[0].funnel["src"]
    assert counts.balanced and counts.rows_in == 1 and counts.rows_out == 0
    assert counts.errored_by_reason == {"input_empty": 1}


def test_encoding_problems_stay_on_their_line(tmp_path: Path) -> None:
    """A byte-order mark is not part of line 1, and a line with invalid UTF-8 is one error: other lines are read."""
    lines = good_lines(40).splitlines(keepends=True)
    data = b"\xef\xbb\xbf" + b"".join(lines[:20]) + b'{"id": "bad", "text": "caf\xe9"}\n' + b"".join(lines[20:])
    result = run_single_file(tmp_path, "docs.jsonl", data)
    counts = result.stages[0].funnel["src"]
    assert counts.balanced and counts.rows_out == 40
    assert counts.errored_by_reason == {"bad_json": 1}
    where = query(result.run_dir, "SELECT json_extract_string(meta, '$.where') FROM heuristics_errors")
    assert where == [("line 21",)]


def test_lone_surrogate_escape_is_an_error_record(tmp_path: Path) -> None:
    """A JSON text with an unpaired surrogate escape (not encodable as UTF-8) is one error record, never a crash."""
    data = good_lines(3) + b'{"id": "s", "text": "broken \\ud800 surrogate"}\n' + b'{"id": "t", "text": "ok \\u00e9"}\n'
    result = run_single_file(tmp_path, "docs.jsonl", data)
    counts = result.stages[0].funnel["src"]
    assert counts.balanced and counts.rows_out == 4
    assert counts.errored_by_reason == {"bad_json": 1}


def test_zstd_jsonl_is_read(tmp_path: Path) -> None:
    """A .jsonl.zst file (documented next to .gz) is decompressed and read row by row."""
    packed = pa.Codec("zstd").compress(good_lines(5), asbytes=True)
    result = run_single_file(tmp_path, "docs.jsonl.zst", packed)
    counts = result.stages[0].funnel["src"]
    assert counts.rows_out == 5 and counts.rows_errored == 0


# ---------------------------------------------------------------- validation


def write_manifest(folder: Path, source_extra: dict[str, Any], stages: dict[str, Any], with_warc: bool) -> Path:
    """A manifest file with a JSONL source `js` (plus a WARC source `cc`) whose input files exist."""
    write_jsonl(folder / "docs.jsonl", [{"id": 1, "text": "x"}])
    (folder / "pages.warc.gz").write_bytes(b"")
    sources: list[dict[str, Any]] = [
        {"name": "js", "kind": "jsonl", "paths": [str(folder / "docs.jsonl")], **source_extra}
    ]
    if with_warc:
        sources.insert(0, {"name": "cc", "kind": "warc", "paths": [str(folder / "pages.warc.gz")]})
    path = folder / "m.yaml"
    path.write_text(json.dumps({"name": "v", "output": str(folder / "out"), "sources": sources, "stages": stages}))
    return path


ENTRY_CASES = [
    # (source_extra, stages, with a WARC source, fragments the error message must contain)
    pytest.param({"enter": "extract"}, {}, True, ["sources.js.enter", "stages.extract"], id="enter-extract"),
    pytest.param({"enter": "nosuchstage"}, {}, False, ["sources.js.enter", "nosuchstage"], id="unknown-stage"),
    pytest.param(
        {"enter": "heuristics"}, {"heuristics": None}, False, ["sources.js.enter", "stages.heuristics"], id="disabled"
    ),
    pytest.param({}, {"extract": None}, True, ["stages.extract", "web archive"], id="warc-without-extract"),
    pytest.param(
        {"enter": "dedup"},
        {"extract": None, "heuristics": {}},
        False,
        ["stages.heuristics has no input"],
        id="first-stage-unfed",
    ),
]


@pytest.mark.parametrize(("source_extra", "stages", "with_warc", "expected"), ENTRY_CASES)
def test_invalid_entry_is_a_validation_error(
    source_extra: dict[str, Any], stages: dict[str, Any], with_warc: bool, expected: list[str], tmp_path: Path
) -> None:
    """`winnow validate` exits 2 with a message naming the field when documents have nowhere to enter."""
    path = write_manifest(tmp_path, source_extra, stages, with_warc)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = " ".join(result.stderr.split())  # the console may wrap long messages
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_validate_command_exit_codes(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """The installed `winnow validate`: 2 and one error line for a configured stage nothing feeds; 0 once a source
    enters it, or when the unfed stage was only there by default (it is then not run)."""
    path = write_manifest(tmp_path, {"enter": "dedup"}, {"extract": None, "heuristics": {}}, with_warc=False)
    result = winnow_cli("validate", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "stages.heuristics has no input" in result.stderr

    for stages in ({"extract": None, "heuristics": None}, {}):
        path = write_manifest(tmp_path, {"enter": "dedup"}, stages, with_warc=False)
        result = winnow_cli("validate", path)
        assert result.returncode == 0, result.stderr
        assert "stages: dedup" in result.stdout
