"""DuckDB over a run, a refresh corpus or a release folder: one view per dataset, and the funnel.

A **run** folder (``run.json``) has a view per stage dataset, named after the stages: ``extract`` (its
output), ``extract_rejects`` and ``extract_errors``; the same for every other stage, plus ``final``
once a mix is written. Other Parquet folders of a stage become ``<stage>_<folder path with _>``
views, e.g. ``dedup_clusters``, ``dedup_decisions``, ``dedup_index_docs``. A dataset with no files
yet is an empty view with the right columns, so queries never fail on a quiet stage. A view reads a
task's shard only once a commit record names it (:mod:`winnow.pipeline.commits`): what a killed task
left behind is not part of the run. Records pulled from an object store (``store.json``) have the same
views over the committed objects, read in place through DuckDB's registered fsspec filesystem.

A **corpus** folder (what ``winnow refresh`` keeps: ``releases/``, ``batches/<id>/``, no ``run.json``)
has ``release`` (the latest release's documents) and the same stage views as a run, each the union
of that view over every batch with a ``batch`` column naming the batch. A **release** folder
(``releases/v0001``, ``releases/latest``) has ``release`` (its ``data/`` shards).

The funnel counts ``out``, ``rejected`` and ``errored`` from the Parquet files themselves and
``in`` from what the stage's readers counted while running (``stats.json``), so the identity
``in == out + rejected + errored`` is a real check, not a tautology. Before it, the archive reader's
own account (:func:`archive_funnel`): every entry it read from a source's archives (``records in``)
is a document, a skipped record (counted where it was skipped, by record and content type) or an
unreadable stretch; the documents are the extract stage's Parquet rows, so this identity can fail
too. After the mix, :func:`final_counts`: the final shards' rows, repeated copies and tokens per
source, checked against ``final/_manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from winnow.pipeline.columns import DUCKDB_TYPES, duckdb_columns
from winnow.pipeline.commits import SINK_SHARD, committed_files
from winnow.pipeline.intermediates import discarded
from winnow.pipeline.stage_order import STAGE_ORDER
from winnow.pipeline.store import committed_objects, store_of


def stage_names(run_dir: Path) -> list[str]:
    """Stages present in a run folder, in flow order (unknown names last, alphabetically)."""
    stages_dir = Path(run_dir) / "stages"
    present = sorted(p.name for p in stages_dir.iterdir() if p.is_dir()) if stages_dir.is_dir() else []
    return [s for s in STAGE_ORDER if s in present] + [s for s in present if s not in STAGE_ORDER]


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []


FolderKind = Literal["run", "corpus", "release"]


def folder_kind(folder: Path) -> FolderKind:
    """What ``folder`` is; FileNotFoundError naming it when it is none of a run, a corpus or a release."""
    folder = Path(folder)
    if (folder / "run.json").exists():
        return "run"
    if (folder / "_manifest.json").exists() and (folder / "data").is_dir():
        return "release"
    if (folder / "releases").is_dir() or (folder / "batches").is_dir():
        return "corpus"
    raise FileNotFoundError(
        f"{folder} is not a winnow run folder (no run.json), nor a refresh corpus (releases/, batches/) "
        "or a release (_manifest.json with data/)"
    )


def batch_dirs(corpus: Path) -> list[Path]:
    """The run folders of a corpus's refresh batches, oldest first."""
    folder = Path(corpus) / "batches"
    found = [p for p in folder.iterdir() if (p / "run.json").exists()] if folder.is_dir() else []
    return sorted(found, key=lambda p: (len(p.name), p.name))


def latest_release_dir(corpus: Path) -> Path | None:
    """The folder ``releases/latest`` names (None before the first release)."""
    link = Path(corpus) / "releases" / "latest"
    return link.resolve() if (link / "_manifest.json").exists() else None


def connect(folder: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``folder`` (a run, a corpus or a release; see the
    module docstring). Raises FileNotFoundError when it is none of them."""
    folder = Path(folder)
    kind = folder_kind(folder)
    con = duckdb.connect()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if (store := store_of(folder)) is not None:  # the views read the store's objects through fsspec
        con.register_filesystem(store.fs)
    if kind == "run":
        for view, (files, is_data, attributes) in _run_views(folder).items():
            _register(con, view, [(None, files)], is_data, attributes)
        return con
    release = folder if kind == "release" else latest_release_dir(folder)
    _register(con, "release", [(None, _files(release / "data") if release else [])], True)
    if kind == "corpus":
        views: dict[str, tuple[list[tuple[str | None, list[str]]], bool, dict[str, str]]] = {}
        for batch in batch_dirs(folder):
            for view, (files, is_data, attributes) in _run_views(batch).items():
                parts, _, known = views.setdefault(view, ([], is_data, {}))
                parts.append((batch.name, files))
                known.update(attributes)
        for view, (parts, is_data, attributes) in views.items():
            _register(con, view, parts, is_data, attributes)
    return con


def parquet_folders(run_dir: Path) -> dict[str, list[str]]:
    """Folder (relative to the run) -> the Parquet files in it that are part of the run, sorted: local paths,
    or for records pulled from an object store (:mod:`winnow.pipeline.store`) the committed objects' URLs."""
    grouped: dict[str, list[str]] = {}
    store = store_of(run_dir)
    if store is not None:
        for relative in committed_objects(run_dir, store):
            grouped.setdefault(relative.rpartition("/")[0], []).append(store.url_of(relative))
        return grouped
    committed = committed_files(run_dir)
    for path in sorted([*run_dir.glob("stages/**/*.parquet"), *run_dir.glob("final/*.parquet")]):
        relative = path.relative_to(run_dir).as_posix()
        if not SINK_SHARD.search(path.name) or relative in committed:
            grouped.setdefault(relative.rpartition("/")[0], []).append(str(path))
    return grouped


def _run_views(run_dir: Path) -> dict[str, tuple[list[str], bool, dict[str, str]]]:
    """View name -> (Parquet files, whether it holds documents, attribute columns) of one run folder."""
    views: dict[str, tuple[list[str], bool, dict[str, str]]] = {}
    folders = parquet_folders(run_dir)
    for stage in stage_names(run_dir):
        attributes = _stage_attributes(run_dir / "stages" / stage)
        for dataset, suffix in (("data", ""), ("rejects", "_rejects"), ("errors", "_errors")):
            views[f"{stage}{suffix}"] = (folders.get(f"stages/{stage}/{dataset}", []), dataset == "data", attributes)
        for folder, files in sorted(folders.items()):
            parts = folder.split("/")[2:] if folder.startswith(f"stages/{stage}/") else []
            if parts and parts[0] not in ("data", "rejects", "errors", "tmp"):
                views[f"{stage}_{'_'.join(parts)}"] = (files, False, {})
    if final := folders.get("final"):
        views["final"] = (final, True, {})
    return views


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The views a user can query, by name (DuckDB's own and winnow's internal ones left out)."""
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
    return [name for (name,) in rows if not name.startswith("_")]


def _stage_attributes(stage_dir: Path) -> dict[str, str]:
    """The attribute columns a stage declared (recorded in stage.json when it completed): name -> type name;
    none when the record is unreadable or names a type the views cannot declare."""
    try:
        recorded = json.loads((stage_dir / "stage.json").read_text()).get("attributes") or {}
    except (OSError, ValueError):
        return {}
    return recorded if all(kind in DUCKDB_TYPES for kind in recorded.values()) else {}


def _register(
    con: duckdb.DuckDBPyConnection,
    view: str,
    parts: list[tuple[str | None, list[str]]],
    is_data: bool,
    attributes: dict[str, str] | None = None,
) -> None:
    """A view over the files of ``parts`` ((batch or None, files) each; a named batch adds a ``batch``
    column); without files, an empty view with the dataset's columns (attributes included)."""
    selects = []
    for batch, files in parts:
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            label = "" if batch is None else ", '" + batch.replace("'", "''") + "' AS batch"
            selects.append(f"SELECT *{label} FROM read_parquet([{listing}], union_by_name = true)")
    if not selects:
        columns = ", ".join(
            f'CAST(NULL AS {dtype}) AS "{name}"' for name, dtype in duckdb_columns(attributes or {}, not is_data)
        )
        selects.append(f"SELECT {columns} WHERE false")  # a plain view: no registered table to list or keep alive
    con.execute(f'CREATE VIEW "{view}" AS ' + " UNION ALL BY NAME ".join(selects))


@dataclass
class SourceFunnel:
    """Counts of one stage for one source."""

    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rows_errored: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    errored_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_rejected + self.rows_errored


def count_outcomes(
    con: duckdb.DuckDBPyConnection, stage: str, rows_in: dict[str, int] | None = None
) -> dict[str, SourceFunnel]:
    """Per source: rows out, rejected and errored (with reasons) of ``stage`` from its Parquet files,
    next to ``rows_in`` as counted by the stage's readers."""
    result: dict[str, SourceFunnel] = {}
    for source, n in (rows_in or {}).items():
        result.setdefault(source, SourceFunnel()).rows_in = n
    for source, n in con.execute(f'SELECT source, count(*) FROM "{stage}" GROUP BY 1').fetchall():
        result.setdefault(source, SourceFunnel()).rows_out = n
    for suffix, attr in (("_rejects", "rejected_by_reason"), ("_errors", "errored_by_reason")):
        query = f'SELECT source, reason, count(*) FROM "{stage}{suffix}" GROUP BY 1, 2 ORDER BY 3 DESC'
        for source, reason, n in con.execute(query).fetchall():
            getattr(result.setdefault(source, SourceFunnel()), attr)[reason] = n
    for funnel in result.values():
        funnel.rows_rejected = sum(funnel.rejected_by_reason.values())
        funnel.rows_errored = sum(funnel.errored_by_reason.values())
    return result


def stage_funnel(run_dir: Path, con: duckdb.DuckDBPyConnection, stage: str) -> dict[str, SourceFunnel]:
    """Per source funnel of one stage: outcomes from Parquet, ``rows_in`` from the stage's stats.json; a
    ``data/`` deleted once read (``intermediates: discard``) counts its rows from that stats.json, written
    when the stage completed and counted from its files then."""
    stage_dir = Path(run_dir) / "stages" / stage
    stats = json.loads((stage_dir / "stats.json").read_text()) if (stage_dir / "stats.json").exists() else {}
    funnel = count_outcomes(con, stage, stats.get("rows_in", {}))
    if "data" in discarded(stage_dir):
        for source, counted in (stats.get("sources") or {}).items():
            funnel.setdefault(source, SourceFunnel()).rows_out = counted.get("rows_out", 0)
    return funnel


def stage_counters(run_dir: Path, stage: str) -> dict[str, int]:
    """The counters a stage's steps kept while running (datatrove's stats, every task merged), by name."""
    stats_path = Path(run_dir) / "stages" / stage / "stats.json"
    counters: dict[str, int] = {}
    if not stats_path.exists():
        return counters
    for step in json.loads(stats_path.read_text()).get("steps", []):
        for key, value in (step.get("stats") or {}).items():
            total = value.get("total", 0) if isinstance(value, dict) else value
            if isinstance(total, int | float):
                counters[key] = counters.get(key, 0) + int(total)
    return counters


PII_COLUMNS = ("pii_emails", "pii_ips", "pii_phones")


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> set[str]:
    return {row[0] for row in con.execute(f'DESCRIBE "{view}"').fetchall()}


def pii_counts(con: duckdb.DuckDBPyConnection, stage: str) -> dict[str, tuple[int, int, int, int]]:
    """Per source of ``stage``'s output: (documents with something replaced, emails, IPs, phone numbers
    replaced), from the ``pii_*`` attributes; {} when the stage's documents have none."""
    if not set(PII_COLUMNS) <= _columns(con, stage):
        return {}
    total = " + ".join(PII_COLUMNS)
    sums = ", ".join(f"coalesce(sum({c}), 0)" for c in PII_COLUMNS)
    query = f'SELECT source, count(*) FILTER (WHERE {total} > 0), {sums} FROM "{stage}" GROUP BY 1 ORDER BY 1'
    return {source: tuple(int(n) for n in counts) for source, *counts in con.execute(query).fetchall()}


def language_config_counts(con: duckdb.DuckDBPyConnection, stage: str) -> dict[str | None, tuple[int, int]]:
    """Per ``language_config`` (the FineWeb-2 settings that judged a document): (kept, rejected) in ``stage``;
    {} when the stage did not set it."""
    if "language_config" not in _columns(con, stage):
        return {}
    counts: dict[str | None, list[int]] = {}
    for position, view in enumerate((stage, f"{stage}_rejects")):
        for code, n in con.execute(f'SELECT language_config, count(*) FROM "{view}" GROUP BY 1').fetchall():
            counts.setdefault(code, [0, 0])[position] = n
    return {code: (kept, rejected) for code, (kept, rejected) in counts.items()}


@dataclass
class ArchiveFunnel:
    """What the archive reader did with every entry of one source's files (see the module docstring)."""

    records_in: int = 0  # every record, unreadable stretch and unopenable file, counted as it was read
    documents: int = 0  # the extract stage's Parquet rows of the source that are not read errors
    unreadable: int = 0  # error records the reader wrote
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)  # (record type, content type) -> records

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def balanced(self) -> bool:
        return self.records_in == self.documents + self.rows_skipped + self.unreadable


def archive_funnel(run_dir: Path, con: duckdb.DuckDBPyConnection) -> dict[str, ArchiveFunnel]:
    """Per archive source: records in, documents, skipped records by (record type, content type) and
    unreadable entries of the extract stage; empty when the run has no extract stage (or predates these
    counters). Documents come from the Parquet files, the rest from the reader's counters."""
    counters = stage_counters(run_dir, "extract")
    if not any(key.startswith("records_in:") for key in counters):
        return {}
    result: dict[str, ArchiveFunnel] = {}
    for key, n in counters.items():
        kind, _, rest = key.partition(":")
        if kind == "records_in":
            result.setdefault(rest, ArchiveFunnel()).records_in += n
        elif kind == "unreadable":
            result.setdefault(rest, ArchiveFunnel()).unreadable += n
        elif kind == "skipped" and rest.count(":") >= 2:
            source, record_type, content_type = rest.split(":", 2)
            skipped = result.setdefault(source, ArchiveFunnel()).skipped
            skipped[(record_type, content_type)] = skipped.get((record_type, content_type), 0) + n
    for source, outcome in stage_funnel(run_dir, con, "extract").items():
        account = result.setdefault(source, ArchiveFunnel())
        account.documents = outcome.rows_out + outcome.rows_rejected + outcome.rows_errored - account.unreadable
    return result


@dataclass
class FinalCounts:
    """One source's rows in the final shards: ``repeats`` are rows that repeat a document already in them."""

    rows: int = 0
    documents: int = 0
    tokens: int = 0
    manifest_rows: int | None = None  # what final/_manifest.json says was written (None: not in it)
    manifest_tokens: int | None = None

    @property
    def repeats(self) -> int:
        return self.rows - self.documents

    @property
    def matches_manifest(self) -> bool:
        return (self.rows, self.tokens) == (self.manifest_rows, self.manifest_tokens)


def final_counts(run_dir: Path, con: duckdb.DuckDBPyConnection) -> dict[str, FinalCounts]:
    """Per source, the final corpus's rows, distinct documents and tokens counted in its Parquet shards, next
    to the rows and tokens ``final/_manifest.json`` records; empty when the run has no final corpus."""
    manifest_path = Path(run_dir) / "final" / "_manifest.json"
    if not manifest_path.exists():
        return {}
    result: dict[str, FinalCounts] = {}
    for source, written in (json.loads(manifest_path.read_text()).get("sources") or {}).items():
        result[source] = FinalCounts(manifest_rows=written.get("rows"), manifest_tokens=written.get("tokens"))
    if not parquet_folders(Path(run_dir)).get("final"):
        return result
    query = 'SELECT source, count(*), count(DISTINCT id), coalesce(sum(tokens), 0) FROM "final" GROUP BY 1'
    for source, rows, documents, tokens in con.execute(query).fetchall():
        counts = result.setdefault(source, FinalCounts())
        counts.rows, counts.documents, counts.tokens = int(rows), int(documents), int(tokens)
    return result


def release_counts(release: Path, con: duckdb.DuckDBPyConnection) -> tuple[dict[str, int], int | None]:
    """(rows per source in the ``release`` view, the rows the release's ``_manifest.json`` records)."""
    manifest = json.loads((Path(release) / "_manifest.json").read_text())
    rows = dict(con.execute('SELECT source, count(*) FROM "release" GROUP BY 1 ORDER BY 1').fetchall())
    return {str(s): int(n) for s, n in rows.items()}, manifest.get("rows")


def token_usage(run_dir: Path, stage: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, template) -> (prompt tokens, completion tokens) a stage spent on an LLM server (rephrase),
    from the ``tokens_in:<source>:<template>`` / ``tokens_out:...`` counters in its stats.json."""
    usage: dict[tuple[str, str], list[int]] = {}
    for key, total in stage_counters(run_dir, stage).items():
        kind, _, rest = key.partition(":")
        if kind not in ("tokens_in", "tokens_out") or ":" not in rest:
            continue
        source, _, template = rest.rpartition(":")
        usage.setdefault((source, template), [0, 0])[kind == "tokens_out"] += total
    return {key: (pair[0], pair[1]) for key, pair in usage.items()}
