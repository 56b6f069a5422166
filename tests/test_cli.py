"""The ``winnow`` command line: help for every command, and run / inspect / sql on a real demo run."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import typer

from winnow.pipeline.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "validate", "inspect", "sql", "make-demo-data")
VIEWS = ("extract", "extract_rejects", "extract_errors", "heuristics", "heuristics_rejects", "heuristics_errors")

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]


def click_commands() -> dict[str, Any]:
    """The CLI's commands by name, as the (typer-vendored) click command objects."""
    return dict(typer.main.get_command(app).commands)


def options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def option_names(command: Any) -> list[str]:
    """Every spelling of every option of a command (``--set``, ``-s``, ``--no-progress``...)."""
    return [name for param in options(command) for name in (*param.opts, *param.secondary_opts)]


def view_files(run_dir: Path, view: str) -> list[Path]:
    stage, _, kind = view.partition("_")
    return sorted((run_dir / "stages" / stage / (kind or "data")).glob("*.parquet"))


def parquet_rows(run_dir: Path, view: str) -> int:
    return sum(pq.read_table(f).num_rows for f in view_files(run_dir, view))


def parquet_column(run_dir: Path, view: str, column: str) -> list[object]:
    return [v for f in view_files(run_dir, view) for v in pq.read_table(f, columns=[column]).column(column).to_pylist()]


def sql_json(winnow_cli: WinnowCli, run_dir: Path, query: str) -> list[dict[str, object]]:
    result = winnow_cli("sql", run_dir, query, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def funnel_rows(inspect_stdout: str) -> dict[str, list[str]]:
    """``{stage: [source, in, out, rejected, errored, balanced]}`` from ``winnow inspect`` (source ``cc``)."""
    rows: dict[str, list[str]] = {}
    stage = None
    for line in inspect_stdout.splitlines():
        if m := re.match(r"\s*stage: (\w+)", line):
            stage = m.group(1)
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if stage and cells and cells[0] == "cc":
            rows[stage] = cells
    return rows


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The demo manifest run to completion on 120 generated pages: (run folder, the run's process)."""
    output = tmp_path_factory.mktemp("cli-run")
    result = winnow_cli(
        "run",
        REPO_ROOT / "manifests" / "demo.yaml",
        "--set",
        f"output={output}",
        "--set",
        f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]",
        "--no-progress",
        cwd=output,
    )
    assert result.returncode in (0, 1), f"run failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return output / "demo", result


# ---------------------------------------------------------------- help


def test_commands_registered() -> None:
    assert set(COMMANDS) <= set(click_commands())


def test_top_level_help(winnow_cli: WinnowCli) -> None:
    result = winnow_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in click_commands():
        assert name in result.stdout, f"`winnow --help` does not list {name}"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_mentions_every_option(command: str, winnow_cli: WinnowCli) -> None:
    result = winnow_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    options = option_names(click_commands()[command])
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout), f"{command} --help lacks {option}"


def test_set_help_shows_a_list_value(winnow_cli: WinnowCli) -> None:
    """The --set help text survives console markup: no example value is swallowed as a style tag."""
    (set_option,) = [p for p in options(click_commands()["run"]) if "--set" in p.opts]
    shown = " ".join(winnow_cli("run", "--help").stdout.replace("│", " ").split())
    for example in re.findall(r"--set (\S+)", set_option.help or ""):
        assert example.replace("\\", "") in shown, f"--set example {example!r} missing from help"


# ---------------------------------------------------------------- run, inspect


def test_run_exit_code_matches_recorded_errors(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Exit 1 exactly when some input errored (and the errors are recorded), otherwise 0."""
    run_dir, result = demo_run
    errored = parquet_rows(run_dir, "extract_errors") + parquet_rows(run_dir, "heuristics_errors")
    assert result.returncode == (1 if errored else 0)
    assert (run_dir / "run.json").is_file()
    assert f"winnow inspect {run_dir}" in result.stdout, "the run should print how to inspect it"


def test_inspect_prints_each_stage_and_balance(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    run_dir, _ = demo_run
    result = winnow_cli("inspect", run_dir)
    assert result.returncode == 0, result.stderr
    assert "in = out+rej+err" in result.stdout
    rows = funnel_rows(result.stdout)
    assert set(rows) == {"extract", "heuristics", "dedup"}, result.stdout
    for stage, (_, rows_in, rows_out, rejected, errored, balanced) in rows.items():
        n_in, n_out, n_rej, n_err = (int(x.replace(",", "")) for x in (rows_in, rows_out, rejected, errored))
        assert balanced == "yes" and n_in == n_out + n_rej + n_err, (stage, rows[stage])
        assert n_out == parquet_rows(run_dir, stage)
        assert n_rej == parquet_rows(run_dir, f"{stage}_rejects")
        assert n_err == parquet_rows(run_dir, f"{stage}_errors")
    assert int(rows["heuristics"][1].replace(",", "")) == parquet_rows(run_dir, "extract"), "heuristics reads extract"
    assert int(rows["dedup"][1].replace(",", "")) == parquet_rows(run_dir, "heuristics"), "dedup reads heuristics"


def test_inspect_one_stage(demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli) -> None:
    run_dir, _ = demo_run
    result = winnow_cli("inspect", run_dir, "--stage", "heuristics")
    assert result.returncode == 0, result.stderr
    assert set(funnel_rows(result.stdout)) == {"heuristics"}
    unknown = winnow_cli("inspect", run_dir, "--stage", "dedupe")
    assert unknown.returncode == 2 and "dedupe" in unknown.stderr and "Traceback" not in unknown.stderr


# ---------------------------------------------------------------- sql


@pytest.mark.parametrize("view", VIEWS)
def test_sql_count_matches_parquet(
    view: str, demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    """Each stage dataset is a view, and counting it in SQL agrees with pyarrow reading its files."""
    run_dir, _ = demo_run
    result = winnow_cli("sql", run_dir, f"SELECT count(*) AS n FROM {view}", "--format", "csv")
    assert result.returncode == 0, result.stderr
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header == ["n"] and len(rows) == 1
    assert int(rows[0][0]) == parquet_rows(run_dir, view)


def test_sql_count_extract_default_format(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    run_dir, _ = demo_run
    result = winnow_cli("sql", run_dir, "SELECT count(*) FROM extract")
    assert result.returncode == 0, result.stderr
    expected = parquet_rows(run_dir, "extract")
    assert expected > 0
    assert re.search(rf"(?<!\d){expected}(?!\d)", result.stdout), result.stdout


def test_sql_csv_and_json_agree(demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli) -> None:
    run_dir, _ = demo_run
    query = "SELECT id, url, language_score FROM heuristics ORDER BY id LIMIT 5"
    as_csv = winnow_cli("sql", run_dir, query, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    header, *csv_rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert header == ["id", "url", "language_score"]
    json_rows = sql_json(winnow_cli, run_dir, query)
    assert [r["id"] for r in json_rows] == [r[0] for r in csv_rows]
    assert [r["url"] for r in json_rows] == [r[1] for r in csv_rows]
    assert all(isinstance(r["language_score"], float) for r in json_rows)
    assert [r["id"] for r in json_rows] == sorted(parquet_column(run_dir, "heuristics", "id"))[:5]


def test_sql_bad_format(demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli) -> None:
    run_dir, _ = demo_run
    result = winnow_cli("sql", run_dir, "SELECT 1", "--format", "xml")
    assert result.returncode == 2 and "--format" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("query", "fragment"), [("SELEC id FROM extract", "SELEC"), ("SELECT * FROM nope", "nope")])
def test_sql_error_is_readable(
    query: str, fragment: str, demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    run_dir, _ = demo_run
    result = winnow_cli("sql", run_dir, query)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "extract_rejects" in lines[0], "the message should list the views to query"


@pytest.mark.parametrize("command", ["sql", "inspect"])
def test_not_a_run_folder(command: str, tmp_path: Path, winnow_cli: WinnowCli) -> None:
    args = [tmp_path, "SELECT 1"] if command == "sql" else [tmp_path]
    result = winnow_cli(command, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(tmp_path) in result.stderr and "not a winnow run folder" in result.stderr


def test_why_was_this_url_dropped(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    """For a URL in heuristics_rejects, SQL over the run names the stage and a reason; it is not in the output."""
    run_dir, _ = demo_run
    urls = [u for u in parquet_column(run_dir, "heuristics_rejects", "url") if u]
    assert urls, "the demo should make the heuristics stage reject something"
    url = urls[len(urls) // 2]
    quoted = "'" + str(url).replace("'", "''") + "'"
    query = " UNION ALL ".join(f"SELECT stage, reason, detail FROM {v} WHERE url = {quoted}" for v in VIEWS if "_" in v)
    answers = sql_json(winnow_cli, run_dir, query)
    assert answers, f"no record of why {url} was dropped"
    assert all(a["stage"] == "heuristics" and a["reason"] for a in answers), answers
    assert not sql_json(winnow_cli, run_dir, f"SELECT id FROM heuristics WHERE url = {quoted}")
    (missing,) = sql_json(
        winnow_cli, run_dir, "SELECT count(*) AS n FROM heuristics_rejects WHERE reason IS NULL OR reason = ''"
    )
    assert missing["n"] == 0


def test_nothing_vanishes_between_stages(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    """Every document extract kept leaves heuristics through exactly one door: data, rejects or errors."""
    run_dir, _ = demo_run
    query = (
        "WITH doors AS (SELECT id FROM heuristics UNION ALL SELECT id FROM heuristics_rejects "
        "UNION ALL SELECT id FROM heuristics_errors) "
        "SELECT (SELECT count(*) FROM extract) AS extracted, (SELECT count(*) FROM doors) AS leaving, "
        "(SELECT count(*) FROM extract e WHERE (SELECT count(*) FROM doors d WHERE d.id = e.id) <> 1) AS not_once"
    )
    (row,) = sql_json(winnow_cli, run_dir, query)
    assert row["extracted"] == row["leaving"] and row["not_once"] == 0, row


def test_schema_prints_the_manifest_reference(winnow_cli: WinnowCli) -> None:
    """`winnow schema --json` is the machine-readable reference: JSON Schema naming every stage and its settings."""
    result = winnow_cli("schema", "--json")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) >= {"name", "output", "executor", "sources", "stages"}
    extract = schema["$defs"]["ExtractConfig"]["properties"]
    assert extract["timeout_s"]["default"] == 5.0 and "description" in extract["timeout_s"]


# ---------------------------------------------------------------- sql formats, corpus and release folders


def test_sql_line_format_reads_wide_rows(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    """One ``column = value`` line per field, a blank line between rows, long texts cut with a note."""
    run_dir, _ = demo_run
    query = "SELECT id, text, language_score FROM extract ORDER BY id LIMIT 2"
    result = winnow_cli("sql", run_dir, query, "--format", "line")
    assert result.returncode == 0, result.stderr
    records = result.stdout.strip("\n").split("\n\n")
    ids = sorted(parquet_column(run_dir, "extract", "id"))[:2]
    assert len(records) == 2
    for record, doc_id in zip(records, ids, strict=True):
        fields = dict(line.split(" = ", 1) for line in record.splitlines())
        assert [k.strip() for k in fields] == ["id", "text", "language_score"]
        assert fields[next(k for k in fields if k.strip() == "id")] == doc_id
        text = fields[next(k for k in fields if k.strip() == "text")]
        assert len(text) < 400 and text.endswith("characters, cut)"), text


def test_internal_empty_views_are_not_listed(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], winnow_cli: WinnowCli
) -> None:
    run_dir, _ = demo_run
    for query in ("SHOW TABLES", "SELECT table_name FROM information_schema.tables"):
        result = winnow_cli("sql", run_dir, query, "--format", "csv")
        assert result.returncode == 0, result.stderr
        names = result.stdout.split()[1:]
        assert "extract_errors" in names and not [n for n in names if n.startswith("_")], names


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, cli_demo_warcs: Path, winnow_cli: WinnowCli) -> Path:
    """A refresh corpus: one `winnow refresh` of the demo manifest (batch v0001, release v0001)."""
    output = tmp_path_factory.mktemp("cli-corpus")
    result = winnow_cli(
        "refresh", REPO_ROOT / "manifests" / "demo.yaml", "--set", f"output={output}",
        "--set", f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]", "--no-progress", cwd=output,
    )  # fmt: skip
    assert result.returncode in (0, 1), f"{result.stdout}\n{result.stderr}"
    return output / "demo"


def test_inspect_sql_and_report_on_a_corpus(corpus: Path, winnow_cli: WinnowCli) -> None:
    released = sum(pq.ParquetFile(p).metadata.num_rows for p in (corpus / "releases" / "v0001" / "data").glob("*"))
    assert released > 0
    result = winnow_cli("inspect", corpus)
    assert result.returncode == 0, result.stderr
    assert "batch v0001" in result.stdout and "release v0001" in result.stdout
    assert re.findall(r"stage: (\w+)", result.stdout) == ["extract", "heuristics", "dedup"]
    assert "NO" not in re.findall(r"│\s+(yes|NO)\s+│", result.stdout) and "rows = _manifest.json rows" in result.stdout
    rows = sql_json(winnow_cli, corpus, "SELECT count(*) AS n FROM release")
    assert rows == [{"n": released}]
    batches = sql_json(winnow_cli, corpus, "SELECT batch, count(*) AS n FROM dedup GROUP BY 1")
    assert batches == [{"batch": "v0001", "n": released}]
    assert winnow_cli("report", corpus).returncode == 0
    page = (corpus / "report.html").read_text()
    assert "Release v0001" in page and "Batch v0001" in page and "v0001-funnel" in page


@pytest.mark.parametrize("name", ["v0001", "latest"])
def test_inspect_sql_and_report_on_a_release(name: str, corpus: Path, winnow_cli: WinnowCli) -> None:
    release = corpus / "releases" / name
    manifest = json.loads((release / "_manifest.json").read_text())
    result = winnow_cli("inspect", release)
    assert result.returncode == 0, result.stderr
    assert f"{manifest['rows']:,}" in result.stdout and "stage:" not in result.stdout
    assert sql_json(winnow_cli, release, "SELECT count(*) AS n FROM release") == [{"n": manifest["rows"]}]
    report = winnow_cli("report", release)
    assert report.returncode == 0, report.stderr
    written = corpus / "releases" / "report-v0001.html"
    assert "Release v0001" in written.read_text() and not (corpus / "releases" / "v0001" / "report.html").exists()


HEAVY_MODULES = ("pyarrow", "torch", "openai", "matplotlib", "huggingface_hub", "fsspec", "datatrove.io")
LOADED_BY_COMMAND = """
import sys
from winnow.pipeline.cli import main
sys.argv = ["winnow", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("LOADED:", *(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("command", ["inspect", "sql", "status", "validate", "--help"])
def test_read_only_commands_load_no_heavy_module(
    command: str, demo_run: tuple[Path, subprocess.CompletedProcess[str]], cli_demo_warcs: Path
) -> None:
    """Start-up under a second rests on this: the everyday commands import none of the heavy libraries."""
    run_dir, _ = demo_run
    args = {
        "inspect": [str(run_dir)],
        "sql": [str(run_dir), "SELECT count(*) FROM heuristics_errors"],
        "status": [str(run_dir)],
        "validate": [
            str(REPO_ROOT / "manifests" / "demo.yaml"),
            "--set",
            f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]",
        ],
        "--help": [],
    }[command]
    script = LOADED_BY_COMMAND.format(heavy=HEAVY_MODULES)
    done = subprocess.run([sys.executable, "-c", script, command, *args], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "LOADED:", done.stdout[-500:]
