"""The ``winnow`` command line: run, refresh, validate, status, inspect, report, sql, and make-demo-data.

Exit codes: 0 success; 1 the run finished but some inputs errored (they are recorded in the
stages' ``errors`` datasets); 2 usage or configuration error; 3 a stage failed to complete (rerun
the same command to resume); 4 another refresh of the same corpus is running. Errors go to stderr as
one readable sentence, never a traceback.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winnow.pipeline.classifier_cli import classifier_app
from winnow.pipeline.mix_cli import mix_app

if TYPE_CHECKING:  # the commands import what they use, so `winnow --help` starts in a fraction of a second
    import duckdb

    from winnow.pipeline.funnel import ArchiveFunnel, FinalCounts, SourceFunnel
    from winnow.pipeline.manifest import Manifest

app = typer.Typer(
    name="winnow",
    help="Curate LLM pre-training data: Common Crawl extraction -> filters -> sharded Parquet you can query.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(classifier_app, name="classifier")
app.add_typer(mix_app, name="mix")
out = Console(soft_wrap=True)  # paths and commands stay on one line (copy-paste); tables still fit
err = Console(stderr=True, soft_wrap=True)  # one message per line: no wrapping at 80 columns

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="PATH=VALUE",
        help="Override a manifest field, e.g. --set output=out/x --set executor.tasks=8 "
        "--set sources.0.crawl=CC-MAIN-2024-33 (list items by index). VALUE is parsed as YAML, "
        "so a list is written as a YAML flow list. Repeatable.",
    ),
]


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _located(run_dir: str) -> Path:
    """The run folder a read command works on: ``run_dir`` itself, or for an object store URL a temporary folder
    of the run's records pulled from it (the commands' views then read its committed Parquet objects in place)."""
    from winnow.pipeline import remote
    from winnow.pipeline.store import StoreError, is_url, pull_records

    if not is_url(run_dir):
        return Path(run_dir)
    remote.install()
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="winnow-store-"))
    atexit.register(shutil.rmtree, folder, True)
    try:
        return pull_records(run_dir, folder)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    except StoreError as exc:
        _fail(str(exc), 3)
    raise AssertionError("unreachable")


RunArgument = Annotated[
    str,
    typer.Argument(
        help="Run folder (<output>/<name>) or an object store URL of one (s3://bucket/prefix/<name>), refresh "
        "corpus, or release folder."
    ),
]


def _checked_manifest(verb: str, manifest: Path, set_: list[str] | None) -> tuple[Manifest, str]:
    """The manifest with its overrides, checked before anything runs (exit 2 if it is wrong), and the
    ``winnow <verb> ...`` command line that repeats this invocation (recorded so a run says how to resume)."""
    from winnow.pipeline.manifest import ManifestError, load_manifest
    from winnow.pipeline.preflight import preflight

    try:
        loaded = load_manifest(manifest, set_ or [])
        preflight(loaded, str(manifest))
    except ManifestError as exc:
        _fail(str(exc), 2)
    return loaded, shlex.join(["winnow", verb, str(manifest), *[a for s in set_ or [] for a in ("--set", s)]])


@app.command()
def validate(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML file to check.")],
    set_: SetOption = None,
) -> None:
    """Check a manifest (schema, field types, unknown keys, input paths) without running it."""
    from winnow.pipeline.manifest import ManifestError, load_manifest
    from winnow.pipeline.preflight import preflight

    try:
        loaded = load_manifest(manifest, set_ or [])
        preflight(loaded, str(manifest))
    except ManifestError as exc:
        _fail(str(exc), 2)
    stages = [name for name, cfg in loaded.stages if cfg is not None]
    out.print(f"{manifest}: OK — run '{loaded.name}' -> {loaded.run_dir}, stages: {', '.join(stages)}")


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML file describing the run.")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per stage.")] = True,
    verbose: Annotated[bool, typer.Option(help="Also print datatrove's task logs to the console.")] = False,
    publish: Annotated[
        bool,
        typer.Option(
            help="When the run finishes, publish its output as the next release in <run>/releases/ and point "
            "releases/latest at it (nothing new is published when the output is unchanged)."
        ),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan instead of running: per stage and phase whether it is done, resumes or runs, "
            "its tasks, and the sbatch script or Ray tasks it would submit. Writes nothing.",
        ),
    ] = False,
) -> None:
    """Run a manifest. Rerunning resumes: finished stages and tasks are skipped, changed stages rerun."""
    from winnow.pipeline.logs import quiet_console
    from winnow.pipeline.manifest import ManifestError
    from winnow.pipeline.runner import Runner, StageFailed

    loaded, command = _checked_manifest("run", manifest, set_)
    if dry_run:
        for line in Runner(loaded, progress=False, command=command).dry_run():
            out.print(escape(line), highlight=False)
        return
    try:
        loaded.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create the run folder {loaded.run_dir}: {exc.strerror or exc} (set --set output=...)", 2)
    stored = f" (stored at {loaded.store_url})" if loaded.store_url else ""
    out.print(f"winnow: running '{loaded.name}' into {loaded.run_dir}{stored}")
    if not verbose:
        quiet_console()
    try:
        result = Runner(loaded, progress=progress, verbose=verbose, command=command, publish=publish).run()
    except StageFailed as exc:
        _fail(str(exc), 3)
    except ManifestError as exc:  # a setting that only the data can refute (e.g. a column that is not there)
        _fail(str(exc), 2)
    except Exception as exc:
        if verbose:
            raise
        _fail(f"the run stopped: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", 3)
    for stage in result.stages:
        if stage.skipped:
            out.print(f"  {stage.name}: unchanged since the last run, skipped")
    _print_funnel(result.run_dir)
    last = result.stages[-1].name if result.stages else None
    if last:
        data_dir = result.run_dir / "stages" / last / "data"
        shards = sorted(data_dir.glob("*.parquet"))
        out.print(f"\nOutput: {len(shards)} Parquet shard(s) in {data_dir}")
        final = result.run_dir / "final"
        if last == "mix" and (final / "_manifest.json").exists():
            out.print(
                f"Final corpus: {len(list(final.glob('*.parquet')))} shard(s) in {final} (view `final`); "
                f"plots: winnow mix report {result.run_dir}"
            )
        where = loaded.store_url or result.run_dir
        out.print(f'Inspect: winnow inspect {where}    Query: winnow sql {where} "SELECT ..."')
    if result.release is not None:
        state = "published" if result.released_now else "unchanged, still"
        out.print(f"Release: {state} {result.release.version} ({result.release.path}; releases/latest points at it)")
    if result.rows_errored:
        err.print(f"{result.rows_errored} input(s) errored; see the *_errors views (winnow sql {result.run_dir} ...)")
        raise typer.Exit(1)


@app.command()
def inspect(
    run_dir: RunArgument,
    stage: Annotated[str | None, typer.Option(help="Show only this stage.")] = None,
    reasons: Annotated[int, typer.Option(help="How many reject/error reasons to list per stage.")] = 10,
) -> None:
    """Print the funnel: every archive record (documents, skipped by record and content type, unreadable), rows
    in / out / rejected / errored per stage and source with the top reasons, and the final corpus. A corpus
    shows each refresh batch and its latest release; a release, its rows per source."""
    try:
        _print_funnel(_located(run_dir), stage, reasons)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)


@app.command()
def refresh(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML file of the corpus to refresh.")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per stage.")] = True,
    verbose: Annotated[bool, typer.Option(help="Also print datatrove's task logs to the console.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON object at the end.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the inputs the refresh would process, and nothing else. Writes nothing."),
    ] = False,
) -> None:
    """Process only the inputs no release covers yet, dedup them against the latest release, and publish
    the next release (the latest one's documents plus the new ones). Safe to schedule: a lock keeps one
    refresh per corpus, nothing new exits 0 at once, an interrupted refresh resumes its batch.

    Exit codes: 0 done or nothing new; 1 published, but some inputs errored; 2 configuration error;
    3 the batch did not complete (rerun to resume); 4 another refresh of this corpus is running.
    """
    from winnow.pipeline.logs import quiet_console
    from winnow.pipeline.manifest import ManifestError
    from winnow.pipeline.refresh import RefreshBusy, as_json, describe
    from winnow.pipeline.refresh import refresh as run_refresh
    from winnow.pipeline.runner import StageFailed

    loaded, command = _checked_manifest("refresh", manifest, set_)
    if dry_run:
        from winnow.pipeline.refresh import check_refreshable, next_batch

        try:
            check_refreshable(loaded)
        except ManifestError as exc:
            _fail(str(exc), 2)
        named, batch = next_batch(loaded)
        if batch is None:
            out.print(f"nothing new: all {len(named)} input(s) are covered by the latest release")
            return
        onto = f"release {batch.base}" if batch.base else "nothing (the first release)"
        state = "resumes the interrupted" if batch.resumed else "would run"
        count = len(batch.inputs)
        out.print(f"{len(named)} input(s); the refresh {state} batch {batch.id} of {count}, added to {onto}:")
        for item in batch.inputs:
            out.print(f"  {escape(item.path)}  ({item.size:,} bytes)", highlight=False)
        return
    if not verbose:
        quiet_console()
    try:
        result = run_refresh(loaded, progress=progress, verbose=verbose, command=command)
    except RefreshBusy as exc:
        _fail(str(exc), 4)
    except ManifestError as exc:
        _fail(str(exc), 2)
    except StageFailed as exc:
        _fail(f"the refresh batch did not complete: {exc}", 3)
    except Exception as exc:
        if verbose:
            raise
        _fail(f"the refresh stopped: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", 3)
    out.print(f"winnow refresh: {describe(result)}")
    if json_:
        sys.stdout.write(as_json(result) + "\n")
    if result.run is not None and result.run.rows_errored:
        errored, where = result.run.rows_errored, result.run.run_dir
        err.print(f"{errored} input(s) errored; see the *_errors views (winnow sql {where} ...)")
        raise typer.Exit(1)


@app.command()
def status(
    run_dir: Annotated[
        str, typer.Argument(help="Run folder (<output>/<name>), or an object store URL of one (s3://.../<name>).")
    ],
    json_: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object instead.")] = False,
) -> None:
    """Show per stage and phase how many tasks are done, running, failed or not started, why a task
    failed, and the command that resumes the run."""
    from winnow.pipeline.status import run_status

    try:
        state = run_status(_located(run_dir))
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    if json_:
        import json

        sys.stdout.write(json.dumps(state.as_dict()) + "\n")
        return
    table = Table(title=f"run: {run_dir}", title_justify="left")
    columns = ("stage", "phase", "tasks", "done", "running", "failed", "todo", "retried", "state", "cpu s", "peak MB")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "phase", "state") else "right", no_wrap=True)
    colours = {"done": "green", "running": "cyan", "failed": "red"}
    for p in state.phases:
        colour = colours.get(p.state, "yellow")
        counts = (p.tasks, p.done, len(p.running), len(p.failed), len(p.not_started), len(p.retried))
        cpu = "-" if p.cpu_s is None else f"{p.cpu_s:,.1f}"
        peak = "-" if p.peak_rss_mb is None else f"{p.peak_rss_mb:,.0f}{'' if p.peak_rss_source == 'vmhwm' else '*'}"
        table.add_row(p.stage, p.phase, *(str(n) for n in counts), f"[{colour}]{p.state}", cpu, peak)
    Console(width=max(out.width, 130)).print(table)  # eleven columns: wider than a pipe's default 80
    if any(p.peak_rss_mb is not None and p.peak_rss_source != "vmhwm" for p in state.phases):
        out.print("peak MB*: the task process's lifetime peak (its peak could not be reset at the task's start)")
    for p in state.phases:
        where = f" (Slurm job {p.slurm_job})" if p.slurm_job else ""
        for rank, reason in sorted(p.failed.items()):
            out.print(f"[red]failed[/] {p.stage}:{p.phase} task {rank}{where}: {escape(reason)}")
            out.print(escape(f"  log: {p.logs}/logs/task_{rank:05d}.log"), highlight=False)
    if state.finished:
        out.print("The run finished.")
    elif any(p.running for p in state.phases):
        out.print("The run is in progress.")
    else:
        out.print(f"To resume: {escape(state.command or 'rerun the same `winnow run` command')}", highlight=False)


@app.command()
def report(
    run_dir: RunArgument,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the page (default <run>/report.html; for an object store URL, "
            "<name>-report.html in the current folder).",
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run (no network needed to view it): the funnel with rejects by
    reason, quality score histograms, dedup cluster sizes, OCR routes, rephrase costs, the mix, timings, and
    the Parquet folders with DuckDB queries."""
    from winnow.pipeline.report import write_report
    from winnow.pipeline.store import is_url

    if output is None and is_url(run_dir):
        output = Path(f"{run_dir.rstrip('/').rsplit('/', 1)[-1]}-report.html")
    try:
        path = write_report(_located(run_dir), output)
    except (FileNotFoundError, ValueError) as exc:  # not a run, or a damaged record
        _fail(str(exc), 2)
    out.print(f"Report: {path}  (open it in a browser: file://{path.absolute()})")


@app.command()
def sql(
    run_dir: RunArgument,
    query: Annotated[
        str,
        typer.Argument(help="DuckDB SQL; views: <stage>, <stage>_rejects, <stage>_errors, final; release (corpus)."),
    ],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, csv, json, or line (one 'column = value' line per field, a blank line between rows; "
            "readable for wide rows).",
        ),
    ] = "table",
    max_rows: Annotated[int, typer.Option(help="Rows to print in table or line format (0 = all).")] = 50,
    memory_limit: Annotated[str | None, typer.Option(help="DuckDB memory_limit, e.g. 4GB.")] = None,
) -> None:
    """Run DuckDB SQL over a run.

    Example: winnow sql out/demo "SELECT reason, count(*) FROM extract_rejects GROUP BY 1"
    """
    import duckdb

    from winnow.pipeline.funnel import connect, views

    if format_ not in ("table", "csv", "json", "line"):
        _fail(f"--format must be table, csv, json or line, not {format_!r}", 2)
    try:
        con = connect(_located(run_dir), memory_limit)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    except duckdb.Error as exc:
        _fail(f"cannot open {run_dir} in DuckDB: {str(exc).splitlines()[0]}", 2)
    try:
        relation = con.sql(query)
    except duckdb.Error as exc:
        _fail(f"{str(exc).splitlines()[0]} (views in this run: {', '.join(views(con))})", 2)
    if relation is None:
        return
    if format_ == "csv":
        _print_csv(relation)
    elif format_ == "json":
        _print_json(relation)
    elif format_ == "line":
        _print_lines(relation, max_rows)
    else:
        _print_table(relation, max_rows)


@app.command()
def schema(
    json_: Annotated[
        bool, typer.Option("--json", help="Print the JSON Schema of a manifest instead (for editors and tools).")
    ] = False,
) -> None:
    """Print the manifest reference: for the top level, each source and executor kind, and each stage, a table
    of every field with its type, default and meaning."""
    from winnow.pipeline.manifest import Manifest, schema_text

    if json_:
        import json

        sys.stdout.write(json.dumps(Manifest.model_json_schema(), indent=2) + "\n")
        return
    sys.stdout.write(schema_text())


@app.command("make-demo-data")
def make_demo_data(
    folder: Annotated[Path, typer.Argument(help="Where to write the demo WARC files.")] = Path("data/demo"),
    pages: Annotated[int, typer.Option(help="Number of HTML pages to generate.")] = 400,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Also write what manifests/full_demo.yaml reads: PDFs (papers, a scan, a broken file) in pdf/, "
            "a curated JSONL source in curated/, and quality-classifier training text in quality/.",
        ),
    ] = False,
) -> None:
    """Generate the embedded demo input: WARC files of varied pages, written from text on this machine."""
    from winnow.pipeline.demo_data import write_demo_warcs, write_full_demo

    if full:
        written = write_full_demo(folder, pages)
        out.print(f"wrote {', '.join(f'{len(v)} {k} file(s)' for k, v in written.items())} to {folder}")
        return
    paths = write_demo_warcs(folder, pages)
    out.print(f"wrote {len(paths)} WARC file(s) to {folder}")


@app.command("make-mix-data")
def make_mix_data(
    folder: Annotated[Path, typer.Argument(help="Where to write one JSONL file per source.")] = Path("data/mix"),
    max_chars: Annotated[int, typer.Option(help="Characters of text per source (at most).")] = 3_000_000,
) -> None:
    """Write four real text sources from this machine (Python code and docstrings, C headers, licences)."""
    from winnow.mixers.local_sources import write_local_sources

    paths = write_local_sources(folder, max_chars)
    out.print(f"wrote {', '.join(p.name for p in paths.values())} to {folder}")


def _print_table(relation: duckdb.DuckDBPyRelation, max_rows: int) -> None:
    rows = relation.fetchall() if max_rows == 0 else relation.limit(max_rows + 1).fetchall()
    table = Table(*relation.columns, show_lines=False)
    for row in rows[: max_rows or None]:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)
    if max_rows and len(rows) > max_rows:
        out.print(f"(first {max_rows} rows; use --max-rows 0 for all)")


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


LINE_VALUE_CHARS = 300


def _print_lines(relation: duckdb.DuckDBPyRelation, max_rows: int) -> None:
    """One ``column = value`` line per field, rows separated by a blank line; a long value is cut, with a note."""
    rows = relation.fetchall() if max_rows == 0 else relation.limit(max_rows + 1).fetchall()
    width = max((len(c) for c in relation.columns), default=0)
    for number, row in enumerate(rows[: max_rows or None]):
        if number:
            sys.stdout.write("\n")
        for column, value in zip(relation.columns, row, strict=True):
            text = "NULL" if value is None else str(value).replace("\n", "\\n")
            if len(text) > LINE_VALUE_CHARS:
                text = f"{text[:LINE_VALUE_CHARS]}... ({len(text):,} characters, cut)"
            sys.stdout.write(f"{column.ljust(width)} = {text}\n")
    if max_rows and len(rows) > max_rows:
        sys.stdout.write(f"\n(first {max_rows} rows; use --max-rows 0 for all)\n")


def _print_csv(relation: duckdb.DuckDBPyRelation) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(relation.columns)
    writer.writerows(relation.fetchall())


def _print_json(relation: duckdb.DuckDBPyRelation) -> None:
    import json

    columns = relation.columns
    for row in relation.fetchall():
        sys.stdout.write(json.dumps(dict(zip(columns, row, strict=True)), default=str, ensure_ascii=False) + "\n")


def _print_funnel(run_dir: Path, only: str | None = None, reasons: int = 10) -> None:
    """The funnel of a run folder, of each batch and the latest release of a corpus, or of a release folder."""
    from winnow.pipeline.funnel import batch_dirs, folder_kind, latest_release_dir

    run_dir = Path(run_dir)
    kind = folder_kind(run_dir)
    if kind == "run":
        _print_run_funnel(run_dir, only, reasons)
        return
    if kind == "corpus":
        for batch in batch_dirs(run_dir):
            out.print(f"\n[bold]batch {batch.name}[/] ({batch})")
            _print_run_funnel(batch, only, reasons)
    release = run_dir.resolve() if kind == "release" else latest_release_dir(run_dir)
    if release is not None:
        _print_release(run_dir, release)


def _print_run_funnel(run_dir: Path, only: str | None, reasons: int) -> None:
    from winnow.pipeline.funnel import (
        archive_funnel,
        connect,
        final_counts,
        language_config_counts,
        pii_counts,
        stage_funnel,
        stage_names,
        token_usage,
    )

    with connect(run_dir) as con:
        stages = [s for s in stage_names(run_dir) if only is None or s == only]
        if only and not stages:
            _fail(f"no stage {only!r} in {run_dir} (stages: {', '.join(stage_names(run_dir))})", 2)
        for stage in stages:
            if stage == "extract":
                _print_records(archive_funnel(run_dir, con))
            funnel = stage_funnel(run_dir, con, stage)
            _print_stage(stage, funnel, reasons)
            if stage == "heuristics":  # where languages are judged and personal data replaced
                _print_languages(language_config_counts(con, stage))
                _print_pii(pii_counts(con, stage))
            _print_usage(token_usage(run_dir, stage))
        if only is None:
            _print_final(final_counts(run_dir, con))


def _print_records(accounts: dict[str, ArchiveFunnel]) -> None:
    """Every entry of the archives: documents, skipped records (by record and content type), unreadable."""
    if not accounts:
        return
    out.print("input records (archives): records in = documents + skipped + unreadable")
    table = Table()
    for column in ("source", "records in", "documents", "skipped", "unreadable", "in = doc+skip+unr"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, a in sorted(accounts.items()):
        check = "[green]yes" if a.balanced else "[red]NO"
        table.add_row(source, *(f"{n:,}" for n in (a.records_in, a.documents, a.rows_skipped, a.unreadable)), check)
    out.print(table)
    for source, a in sorted(accounts.items()):
        if a.skipped:
            out.print(f"  skipped records ({source}): record type, content type")
        for (record_type, content_type), n in sorted(a.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            out.print(f"    {n:>8,}  {record_type}  {content_type}", highlight=False)


def _print_final(counts: dict[str, FinalCounts]) -> None:
    """The final corpus after the mix: rows, repeated copies and tokens per source."""
    if not counts:
        return
    table = Table(title="final corpus (final/)", title_justify="left")
    for column in ("source", "rows", "documents", "repeats", "tokens", "= _manifest.json"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, c in sorted(counts.items()):
        check = "[green]yes" if c.matches_manifest else "[red]NO"
        table.add_row(source, *(f"{n:,}" for n in (c.rows, c.documents, c.repeats, c.tokens)), check)
    out.print(table)


def _print_release(folder: Path, release: Path) -> None:
    """A release's rows per source, checked against its ``_manifest.json``."""
    from winnow.pipeline.funnel import connect, release_counts

    with connect(folder) as con:
        rows, recorded = release_counts(release, con)
    table = Table(title=f"release {release.name} ({release})", title_justify="left")
    for column in ("source", "rows"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, n in rows.items():
        table.add_row(source, f"{n:,}")
    check = "[green]yes" if sum(rows.values()) == recorded else "[red]NO"
    table.add_row("[bold]all", f"{sum(rows.values()):,}")
    out.print(table)
    out.print(f"  rows = _manifest.json rows ({recorded if recorded is not None else '?'}): {check}")


def _print_stage(stage: str, funnel: dict[str, SourceFunnel], reasons: int) -> None:
    from winnow.pipeline.funnel import SourceFunnel

    table = Table(title=f"stage: {stage}", title_justify="left")
    for column in ("source", "in", "out", "rejected", "errored", "in = out+rej+err"):
        table.add_column(column, justify="left" if column == "source" else "right")
    total = SourceFunnel()
    for source in sorted(funnel):
        f = funnel[source]
        table.add_row(source, *_counts(f))
        for attr in ("rows_in", "rows_out", "rows_rejected", "rows_errored"):
            setattr(total, attr, getattr(total, attr) + getattr(f, attr))
    if len(funnel) > 1:
        table.add_row("[bold]all", *_counts(total))
    out.print(table)
    for source in sorted(funnel):
        f = funnel[source]
        outcomes = {**f.rejected_by_reason, **{f"error:{k}": v for k, v in f.errored_by_reason.items()}}
        top = sorted(outcomes.items(), key=lambda kv: -kv[1])[:reasons]
        if top:
            out.print(f"  rejected/errored by reason ({source}):")
        for reason, n in top:
            out.print(f"    {n:>8,}  {reason}")


def _print_languages(counts: dict[str | None, tuple[int, int]]) -> None:
    """Documents kept and rejected per FineWeb-2 language settings (``language_config``)."""
    if not counts:
        return
    table = Table(title="  judged by language settings (language_config)", title_justify="left")
    for column in ("settings", "kept", "rejected"):
        table.add_column(column, justify="left" if column == "settings" else "right")
    for code, (kept, rejected) in sorted(counts.items(), key=lambda kv: (-sum(kv[1]), str(kv[0]))):
        table.add_row(code or "(none)", f"{kept:,}", f"{rejected:,}")
    out.print(table)


def _print_pii(counts: dict[str, tuple[int, int, int, int]]) -> None:
    """Personal data replaced in the stage's output, per source."""
    if not counts:
        return
    table = Table(title="  PII replaced (documents in the output)", title_justify="left")
    for column in ("source", "documents", "emails", "IPs", "phones"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, numbers in counts.items():
        table.add_row(source, *(f"{n:,}" for n in numbers))
    out.print(table)


def _print_usage(usage: dict[tuple[str, str], tuple[int, int]]) -> None:
    """LLM tokens per source and template (the rephrase stage's cost)."""
    if not usage:
        return
    table = Table(title="  LLM tokens", title_justify="left")
    for column in ("source", "template", "prompt tokens", "completion tokens"):
        table.add_column(column, justify="left" if column in ("source", "template") else "right")
    for (source, template), (prompt, completion) in sorted(usage.items()):
        table.add_row(source, template, f"{prompt:,}", f"{completion:,}")
    out.print(table)


def _counts(f: SourceFunnel) -> list[str]:
    check = "[green]yes" if f.balanced else "[red]NO"
    return [f"{f.rows_in:,}", f"{f.rows_out:,}", f"{f.rows_rejected:,}", f"{f.rows_errored:,}", check]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
