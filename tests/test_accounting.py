"""Accounting over every real web archive in ../shared/data/warc: nothing read is lost, nothing counted twice.

One run with both stages (extract, heuristics) on two tasks and two workers. The files are split into
sources by group, so the funnel can be checked per group and two groups compared:

- ``warc``: the real WARC files (Common Crawl, Heritrix 2008, wget, British Library gov.uk crawls);
- ``converted``: Common Crawl's 2008/09 ARC records converted to WARC;
- ``malformed_arc``: the original 2008/09 ARCs, whose ``filedesc`` length is wrong;
- ``arc``: the Heritrix 2008 ``.arc.gz``;
- ``serps``: archived search-engine result pages;
- ``wet_wat``: WET/WAT files, which hold no HTML responses (nothing may come out of them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.runner import Runner, RunResult

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"

pytestmark = [
    pytest.mark.skipif(not SHARED_WARC.is_dir(), reason="shared test data (../shared/data) not present"),
    pytest.mark.slow,
]


def source_groups() -> dict[str, list[Path]]:
    """Every file under shared/data/warc, assigned to exactly one source."""
    top = sorted(p for p in SHARED_WARC.iterdir() if p.is_file())
    groups = {
        "converted": [p for p in top if p.name.endswith(".converted.warc.gz")],
        "arc": [p for p in top if p.name.endswith(".arc.gz")],
        "wet_wat": [p for p in top if p.name.endswith((".wet.gz", ".wat.gz"))],
        "malformed_arc": sorted((SHARED_WARC / "malformed_cc_arc").glob("*.arc")),
        "serps": sorted((SHARED_WARC / "serps").glob("*.warc.gz")),
    }
    grouped = {p for files in groups.values() for p in files}
    groups["warc"] = [p for p in top if p.name.endswith(".warc.gz") and p not in grouped]
    return groups


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The one run over all shared web archives (both stages, default settings)."""
    sources = [
        {"name": name, "kind": "warc", "paths": [str(p) for p in files]} for name, files in source_groups().items()
    ]
    manifest = Manifest.model_validate(
        {
            "name": "accounting",
            "output": str(tmp_path_factory.mktemp("accounting")),
            "executor": {"kind": "local", "tasks": 2, "workers": 2},
            "sources": sources,
        }
    )
    return Runner(manifest, progress=False).run()


def outcome_rows(run: RunResult, stage: str, columns: str) -> dict[str, list[tuple]]:
    """Rows (selected ``columns``) of a stage's output, rejects and errors."""
    with connect(run.run_dir) as con:
        return {
            dataset: con.execute(f"SELECT {columns} FROM {stage}{suffix}").fetchall()
            for dataset, suffix in (("data", ""), ("rejects", "_rejects"), ("errors", "_errors"))
        }


def test_every_file_is_an_input() -> None:
    """The grouping covers every file of the shared folder, each once."""
    groups = source_groups()
    listed = [p for files in groups.values() for p in files]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p for p in SHARED_WARC.rglob("*") if p.is_file())
    assert all(groups.values())


def test_run_reads_every_file(run: RunResult) -> None:
    """Both stages ran, and run.json lists every shared file as an input."""
    assert [s.name for s in run.stages] == ["extract", "heuristics", "dedup"]
    record = json.loads((run.run_dir / "run.json").read_text())
    expected = sorted(str(p) for files in source_groups().values() for p in files)
    assert sorted(i["path"] for i in record["inputs"]) == expected


@pytest.mark.parametrize("stage", ["extract", "heuristics"])
def test_funnel_balances_per_stage_and_source(run: RunResult, stage: str) -> None:
    """rows_in == out + rejected + errored for every source of every stage, and the Parquet rows
    (ids unique across output, rejects and errors) are exactly those counts."""
    [result] = [s for s in run.stages if s.name == stage]
    for source, funnel in result.funnel.items():
        assert funnel.balanced, (stage, source, vars(funnel))
    rows = outcome_rows(run, stage, "id, source")
    ids = Counter(row[0] for dataset in rows.values() for row in dataset)
    assert [i for i, n in ids.items() if n > 1] == []
    per_source = Counter(row[1] for dataset in rows.values() for row in dataset)
    assert per_source == {s: f.rows_in for s, f in result.funnel.items() if f.rows_in}


def test_html_sources_have_input_and_wet_wat_has_none(run: RunResult) -> None:
    """Each group with HTML responses feeds the extract stage; WET/WAT files feed nothing."""
    funnel = run.stages[0].funnel
    for source in ("warc", "converted", "malformed_arc", "arc", "serps"):
        assert funnel[source].rows_in > 0, source
    assert funnel.get("wet_wat") is None or funnel["wet_wat"].rows_in == 0


def test_each_stage_reads_what_the_previous_one_wrote(run: RunResult) -> None:
    """Per source, a stage's input is exactly the previous stage's output (extract -> heuristics -> dedup)."""
    for before, after in zip(run.stages, run.stages[1:], strict=False):
        kept = {s: f.rows_out for s, f in before.funnel.items() if f.rows_out}
        assert kept, before.name
        assert {s: f.rows_in for s, f in after.funnel.items() if f.rows_in} == kept, after.name


def test_malformed_arcs_read_leniently(run: RunResult) -> None:
    """The malformed ARCs contribute the same pages as their WARC conversions: same count in, same URLs
    across output, rejects and errors, and some documents or error records (never silence)."""
    funnel = run.stages[0].funnel
    malformed, converted = funnel["malformed_arc"], funnel["converted"]
    assert malformed.rows_in == converted.rows_in
    assert malformed.rows_out + malformed.rows_errored > 0
    rows = outcome_rows(run, "extract", "source, url")
    urls = {
        name: Counter(url for dataset in rows.values() for source, url in dataset if source == name)
        for name in ("malformed_arc", "converted")
    }
    assert urls["malformed_arc"] == urls["converted"]
