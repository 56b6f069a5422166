"""``winnow report``: one self-contained HTML page about a run (no network; charts are inline SVG).

Sections, each present when the run has what it shows: the funnel per stage and source (rows, and
characters with ~tokens at 4 characters per token, in and out; rejects and errors by reason), score
histograms with the threshold the selection ended at, dedup cluster sizes, OCR routes and engines per
page, the rephrase stage's templates and LLM tokens, the mix (prior vs proposed weights, predicted vs
actual objective of the swarm runs), seconds per stage, and the Parquet folders with DuckDB queries to
paste. Charts are drawn by matplotlib into ``<figure class="chart">`` elements; a small inline script
marks the page with how many of them the browser laid out (``body[data-charts-rendered]``) and any
script error (``body[data-errors]``), which the browser test reads.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from winnow.pipeline.funnel import (
    SourceFunnel,
    archive_funnel,
    batch_dirs,
    connect,
    final_counts,
    folder_kind,
    latest_release_dir,
    parquet_folders,
    release_counts,
    stage_funnel,
    stage_names,
    token_usage,
)
from winnow.pipeline.json_records import read_json
from winnow.pipeline.store import store_of

CHARS_PER_TOKEN = 4
esc = html.escape


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small files, selectable labels
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg")
    _plt().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _chart(name: str, title: str, fig: Any) -> str:
    return f'<figure class="chart" data-chart="{esc(name)}"><figcaption>{esc(title)}</figcaption>{_svg(fig)}</figure>'


def _barh(labels: list[str], values: list[float], xlabel: str, height: float | None = None) -> Any:
    fig, ax = _plt().subplots(figsize=(7, height or max(1.6, 0.28 * len(labels) + 0.8)))
    ax.barh(range(len(labels)), values, color="#4477aa")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return fig


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(str(value))


# ---------------------------------------------------------------- sections


def _chars(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, int]:
    return {
        s: int(n or 0) for s, n in con.execute(f'SELECT source, sum(length(text)) FROM "{view}" GROUP BY 1').fetchall()
    }


def funnel_section(run_dir: Path, con: duckdb.DuckDBPyConnection, stages: list[str]) -> str:
    rows: list[list[object]] = []
    reasons: Counter[str] = Counter()
    charts = []
    for stage in stages:
        funnel: dict[str, SourceFunnel] = stage_funnel(run_dir, con, stage)
        out_chars, rejected_chars = _chars(con, stage), _chars(con, f"{stage}_rejects")
        for source, f in sorted(funnel.items()):
            chars_out = out_chars.get(source, 0)
            chars_in = chars_out + rejected_chars.get(source, 0)
            rows.append(
                [stage, source, f.rows_in, f.rows_out, f.rows_rejected, f.rows_errored,
                 "yes" if f.balanced else "NO", chars_in // CHARS_PER_TOKEN, chars_out // CHARS_PER_TOKEN]
            )  # fmt: skip
            for reason, n in {
                **f.rejected_by_reason,
                **{f"error:{k}": v for k, v in f.errored_by_reason.items()},
            }.items():
                reasons[f"{stage}: {reason}"] += n
    if reasons:
        top = reasons.most_common(25)
        fig = _barh([r for r, _ in top], [n for _, n in top], "documents")
        charts.append(_chart("rejects", "Rejects and errors by stage and reason (top 25)", fig))
    headers = [
        "stage",
        "source",
        "rows in",
        "out",
        "rejected",
        "errored",
        "in = out+rej+err",
        "~tokens in",
        "~tokens out",
    ]
    note = (
        f"<p class='note'>Tokens are estimated as characters / {CHARS_PER_TOKEN} (in = kept + rejected text); "
        "the mix stage counts exact tokens with its tokenizer.</p>"
    )
    body = _table(headers, rows) + note + _final_table(run_dir, con) + "".join(charts)
    return "<h2 id='funnel'>Funnel</h2>" + _records_tables(run_dir, con) + body


def _records_tables(run_dir: Path, con: duckdb.DuckDBPyConnection) -> str:
    """Every entry the archive reader read, per source, and the skipped records by record and content type."""
    accounts = archive_funnel(run_dir, con)
    if not accounts:
        return ""
    headers = ["source", "records in", "documents", "skipped", "unreadable", "in = doc+skip+unr"]
    rows: list[list[object]] = [
        [s, a.records_in, a.documents, a.rows_skipped, a.unreadable, "yes" if a.balanced else "NO"]
        for s, a in sorted(accounts.items())
    ]
    skipped: list[list[object]] = [
        [s, record_type, content_type, n]
        for s, a in sorted(accounts.items())
        for (record_type, content_type), n in sorted(a.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return (
        "<h3>Input records (archives): records in = documents + skipped + unreadable</h3>"
        + _table(headers, rows)
        + (_table(["source", "record type", "content type", "skipped records"], skipped) if skipped else "")
    )


def _final_table(run_dir: Path, con: duckdb.DuckDBPyConnection) -> str:
    """The last row of the funnel: the final corpus's rows, repeated copies and tokens per source."""
    counts = final_counts(run_dir, con)
    if not counts:
        return ""
    rows: list[list[object]] = [
        [s, c.rows, c.documents, c.repeats, c.tokens, "yes" if c.matches_manifest else "NO"]
        for s, c in sorted(counts.items())
    ]
    headers = ["source", "rows", "documents", "repeats", "tokens", "= _manifest.json"]
    return "<h3>Final corpus (final/)</h3>" + _table(headers, rows)


def scores_section(run_dir: Path, con: duckdb.DuckDBPyConnection) -> str:
    if not any((run_dir / "stages" / "quality" / "scored").glob("*.parquet")):
        return ""
    columns = [r[0] for r in con.execute("DESCRIBE quality_scored").fetchall() if str(r[0]).startswith("score_")]
    charts = []
    for column in columns:
        values = [
            r[0] for r in con.execute(f'SELECT "{column}" FROM quality_scored WHERE "{column}" IS NOT NULL').fetchall()
        ]
        kept = con.execute(f'SELECT min("{column}") FROM quality').fetchone()[0]
        fig, ax = _plt().subplots(figsize=(7, 2.8))
        ax.hist(values, bins=40, color="#66aa55")
        if kept is not None:
            ax.axvline(kept, color="#cc3311", linestyle="--", label=f"lowest kept {kept:.3f}")
            ax.legend(fontsize=8)
        ax.set_xlabel(column)
        ax.set_ylabel("documents")
        charts.append(_chart(f"score-{column}", f"{column}: {len(values):,} scored documents", fig))
    config = (read_json(run_dir / "stages" / "quality" / "stage.json") or {}).get("config", {})
    keep = json.dumps({k: v for k, v in (config.get("select") or {}).get("keep", {}).items() if v is not None})
    return f"<h2 id='scores'>Quality scores</h2><p>Selection: <code>{esc(keep)}</code></p>" + "".join(charts)


def dedup_section(con: duckdb.DuckDBPyConnection) -> str:
    try:
        sizes = con.execute(
            "SELECT cluster_size, count(*) FROM (SELECT cluster_id, count(*) AS cluster_size FROM dedup_clusters "
            "GROUP BY 1) GROUP BY 1 ORDER BY 1"
        ).fetchall()
        methods = con.execute(
            "SELECT coalesce(method, 'keeper'), count(*) FROM dedup_clusters GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    except duckdb.CatalogException:
        return ""
    if not sizes:
        return "<h2 id='dedup'>Dedup</h2><p>No duplicate clusters.</p>"
    fig, ax = _plt().subplots(figsize=(7, 2.8))
    ax.bar([str(s) for s, _ in sizes], [n for _, n in sizes], color="#aa7744")
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    table = _table(["member", "documents"], [[m, n] for m, n in methods])
    return "<h2 id='dedup'>Dedup</h2>" + _chart("dedup-clusters", "Cluster sizes", fig) + table


def ocr_section(con: duckdb.DuckDBPyConnection, stages: list[str]) -> str:
    if "ocr" not in stages:
        return ""
    pages: Counter[tuple[str, str]] = Counter()
    for (meta,) in con.execute("SELECT meta FROM ocr").fetchall():
        for page in (json.loads(meta) if meta else {}).get("page_routes", []):
            pages[(page.get("route") or "?", page.get("engine") or "none")] += 1
    if not pages:
        return "<h2 id='ocr'>OCR</h2><p>No pages were converted.</p>"
    labels = [f"{route} / {engine}" for route, engine in pages]
    fig = _barh(labels, list(pages.values()), "pages")
    table = _table(["route", "engine", "pages"], [[r, e, n] for (r, e), n in pages.most_common()])
    return "<h2 id='ocr'>OCR</h2>" + _chart("ocr-routes", "Pages by route and engine", fig) + table


def rephrase_section(run_dir: Path, stages: list[str]) -> str:
    if "rephrase" not in stages:
        return ""
    usage = token_usage(run_dir, "rephrase")
    rows = [[s, t, p, c] for (s, t), (p, c) in sorted(usage.items())]
    if not rows:
        return "<h2 id='rephrase'>Rephrase</h2><p>No requests were made.</p>"
    fig = _barh(
        [f"{s} / {t}" for s, t, _, _ in rows], [p + c for _, _, p, c in rows], "LLM tokens (prompt + completion)"
    )
    table = _table(["source", "template", "prompt tokens", "completion tokens"], rows)
    return "<h2 id='rephrase'>Rephrase</h2>" + _chart("rephrase-tokens", "LLM tokens per template", fig) + table


def _fixed_mix_section(final: dict[str, Any]) -> str:
    """The mix of a run whose weights were fixed in the manifest: the weights against the tokens written."""
    plt = _plt()
    sources = list(final["weights"])
    total = max(final.get("tokens") or 0, 1)
    shares = [final["sources"][s]["tokens"] / total for s in sources]
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.4
    ax.bar(range(len(sources)), [final["weights"][s] for s in sources], width, label="weight (manifest)")
    ax.bar([j + width for j in range(len(sources))], shares, width, label="share of final tokens")
    ax.set_xticks([j + width / 2 for j in range(len(sources))], sources, fontsize=8)
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    return (
        "<h2 id='mix'>Mix</h2><p>Weights fixed in the manifest (stages.mix.weights): no proxy was trained.</p>"
        + _chart("mix-weights", "Mixture weights and the final corpus's token shares", fig)
    )


def mix_section(run_dir: Path) -> str:
    final = read_json(run_dir / "final" / "_manifest.json")
    if final is not None and final.get("weights_from") == "manifest":
        return _fixed_mix_section(final)  # a fit left by an earlier run with fitted weights is not this run's
    report = read_json(run_dir / "stages" / "mix" / "fit" / "report.json")
    if report is None:
        return ""
    plt = _plt()
    sources = report["sources"]
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.4
    for i, kind in enumerate(("prior", "proposed")):
        ax.bar(
            [j + i * width for j in range(len(sources))],
            [report["weights"][kind][s] for s in sources],
            width,
            label=kind,
        )
    ax.set_xticks([j + width / 2 for j in range(len(sources))], sources, fontsize=8)
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    charts = [_chart("mix-weights", "Mixture weights: prior vs proposed", fig)]
    predictions_path = run_dir / "stages" / "mix" / "fit" / "predictions.parquet"
    if predictions_path.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(predictions_path).to_pydict()
        chosen = f"predicted_{report['chosen']}"
        if chosen in table:
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.scatter(table["actual"], table[chosen], s=16, color="#4477aa")
            low, high = min(table["actual"]), max(table["actual"])
            ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
            ax.set_xlabel("actual objective (proxy loss)")
            ax.set_ylabel(f"predicted ({report['chosen']}, out of fold)")
            spearman = report["models"][report["chosen"]]["spearman"]
            charts.append(_chart("mix-predicted", f"Swarm runs: predicted vs actual (Spearman {spearman:.3f})", fig))
    predicted = ", ".join(f"{k} {v:.4f}" for k, v in report.get("predicted_loss", {}).items())
    return (
        f"<h2 id='mix'>Mix</h2><p>{report['runs']} proxy runs; regression: {esc(report['chosen'])}. "
        f"Predicted objective: {esc(predicted)}.</p>" + "".join(charts)
    )


def timings_section(run_dir: Path, stages: list[str]) -> str:
    seconds = {s: float((read_json(run_dir / "stages" / s / "stats.json") or {}).get("seconds") or 0) for s in stages}
    fig = _barh(list(seconds), list(seconds.values()), "seconds (the run that did the work)")
    return "<h2 id='timings'>Timings</h2>" + _chart("timings", "Seconds per stage", fig)


def datasets_section(run_dir: Path, stages: list[str]) -> str:
    """The run's Parquet folders that hold committed files, each with a query: DuckDB's ``read_parquet`` over
    the folder of a local run; for a run on an object store (records pulled from it), the folder's URL and the
    ``winnow sql`` command over its view (which reads only the committed objects, through fsspec)."""
    store = store_of(run_dir)
    folders = parquet_folders(run_dir)

    def item(relative: str, view: str, what: str, select: str) -> str:
        if store is not None:
            query = f'winnow sql {store.url} "{select.format(view)}"'
            where = f"<code>{esc(store.url_of(relative))}/</code> ({len(folders[relative])} committed objects)"
        else:
            query = select.format(f"read_parquet('{(run_dir / relative).absolute()}/*.parquet')") + ";"
            where = f"<a href='{relative}/'>{relative}/</a>"
        return f"<li>{where} ({what})<pre>{esc(query)}</pre></li>"

    items = []
    for stage in stages:
        for kind, suffix in (("data", ""), ("rejects", "_rejects"), ("errors", "_errors")):
            view = f"{stage}{suffix}"
            if folders.get(f"stages/{stage}/{kind}"):
                what = f"view <code>{view}</code> in <code>winnow sql</code>"
                items.append(item(f"stages/{stage}/{kind}", view, what, "SELECT * FROM {} LIMIT 10"))
    if folders.get("final"):
        items.append(item("final", "final", "the mixed corpus", "SELECT source, count(*) FROM {} GROUP BY 1"))
    latest = run_dir / "releases" / "latest"
    if store is not None and (run_dir / "releases" / "latest.json").exists():
        pointer = esc(store.url_of("releases/latest.json"))
        items.append(f"<li><code>{pointer}</code> (names the latest release's manifest of objects)</li>")
    elif latest.exists():
        query = f"SELECT count(*) FROM read_parquet('{latest.absolute()}/data/*.parquet');"
        items.append(f"<li><a href='releases/latest/'>releases/latest/</a><pre>{esc(query)}</pre></li>")
    return "<h2 id='datasets'>Parquet folders and DuckDB queries</h2><ul class='datasets'>" + "".join(items) + "</ul>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:62em;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}figure.chart{margin:1em 0}
figure.chart svg{max-width:100%;height:auto}figcaption{font-weight:600}pre{background:#f4f4f4;padding:4px 8px;
overflow-x:auto}.note{color:#666;font-size:90%}nav a{margin-right:1em}"""

CHECK = """<script>
window.addEventListener('error', function (e) {
  document.body.dataset.errors = (document.body.dataset.errors || '') + e.message + ';';
});
window.addEventListener('load', function () {
  var figures = document.querySelectorAll('figure.chart'), rendered = 0;
  figures.forEach(function (f) {
    var svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : null;
    if (box && box.width > 50 && box.height > 50 && svg.querySelectorAll('path, rect, text').length > 0) rendered++;
  });
  document.body.dataset.chartsExpected = figures.length;
  document.body.dataset.chartsRendered = rendered;
});
</script>"""


def _run_sections(run_dir: Path) -> list[str]:
    stages = stage_names(run_dir)
    with connect(run_dir) as con:
        return [
            funnel_section(run_dir, con, stages),
            scores_section(run_dir, con),
            dedup_section(con),
            ocr_section(con, stages),
            rephrase_section(run_dir, stages),
            mix_section(run_dir),
            timings_section(run_dir, stages),
            datasets_section(run_dir, stages),
        ]


def release_section(folder: Path, release: Path) -> str:
    """A release's rows per source, checked against its ``_manifest.json``."""
    with connect(folder) as con:
        rows, recorded = release_counts(release, con)
    table = _table(["source", "rows"], [[s, n] for s, n in rows.items()] + [["all", sum(rows.values())]])
    check = "yes" if sum(rows.values()) == recorded else "NO"
    return (
        f"<h2 id='release'>Release {esc(release.name)}</h2><p>{esc(str(release))}; rows = _manifest.json rows "
        f"({recorded}): {check}</p>{table}"
    )


def render(run_dir: Path) -> str:
    """The report page of ``run_dir`` (a run, a refresh corpus with its batches and latest release, or a
    release folder) as one HTML string."""
    run_dir = Path(run_dir)
    kind = folder_kind(run_dir)
    record = read_json(run_dir / "run.json") or {}
    if kind == "run":
        sections = _run_sections(run_dir)
    else:
        release = run_dir.resolve() if kind == "release" else latest_release_dir(run_dir)
        sections = [release_section(run_dir, release)] if release is not None else []
        for batch in batch_dirs(run_dir) if kind == "corpus" else []:
            sections.append(f"<h2 id='batch-{esc(batch.name)}'>Batch {esc(batch.name)}</h2>")
            sections += [s.replace("<h2 id='", f"<h2 id='{esc(batch.name)}-") for s in _run_sections(batch)]
    body = "".join(s for s in sections if s)
    nav = "".join(
        f"<a href='#{i}'>{i}</a>"
        for i in ("release", "funnel", "scores", "dedup", "ocr", "rephrase", "mix", "timings", "datasets")
        if f"id='{i}'" in body
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = str(record.get("name", run_dir.name))
    store = store_of(run_dir)  # records pulled from a store: the store's URL, not the temporary folder's
    where = store.url if store is not None else str(run_dir.absolute())
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>winnow report: {esc(name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>winnow {kind}: {esc(name)}</h1>"
        f"<p>{esc(where)} — winnow {esc(str(record.get('winnow_version')))}, "
        f"{len(record.get('inputs', []))} input file(s), started {esc(str(record.get('started_at')))}, "
        f"finished {esc(str(record.get('finished_at')))}; report generated {generated}.</p><nav>{nav}</nav>"
        f"{body}{CHECK}</body></html>"
    )


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    """Write the report (default ``<folder>/report.html``; for a release, which is never written into,
    ``releases/report-<version>.html``), atomically; returns its path."""
    folder = Path(run_dir)
    if output is None:
        release = folder.resolve()
        output = (
            release.parent / f"report-{release.name}.html"
            if folder_kind(folder) == "release"
            else folder / "report.html"
        )
    text = render(run_dir)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text)
    tmp.replace(output)
    return output
