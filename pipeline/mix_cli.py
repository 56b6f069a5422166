"""``winnow mix``: look at a run's data mix (a typer sub-app).

``report`` writes the mix's plots and an HTML page (:mod:`winnow.mixers.report`) and prints the weights
and held-out Spearman per model. Exit code 2 when the run has no fitted mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

mix_app = typer.Typer(
    name="mix",
    help="Inspect the data mix a run chose (proxy swarm, regression, proposal, final corpus).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@mix_app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (<output>/<name>) whose mix stage has run.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the PNGs and index.html (default: stages/mix/report).")
    ] = None,
) -> None:
    """Write PNG plots (predicted vs actual loss, weights per source, loss curves) and an HTML page."""
    from winnow.mixers.fit import read_report
    from winnow.mixers.report import write_report

    try:
        page = write_report(run_dir, out_dir)
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    summary = read_report(run_dir)
    models = Table("model", "held-out Spearman", title=f"regression ({summary['folds']}-fold)")
    for name, score in summary["models"].items():
        models.add_row(name + (" (chosen)" if name == summary["chosen"] else ""), f"{score['spearman']:.4f}")
    weights = Table("source", "prior", "uniform", "proposed", title="weights")
    for source in summary["sources"]:
        weights.add_row(source, *(f"{summary['weights'][k][source]:.4f}" for k in ("prior", "uniform", "proposed")))
    out.print(models, weights)
    if summary["failed_runs"]:
        out.print(f"{len(summary['failed_runs'])} failed proxy run(s) excluded; see the report.")
    out.print(f"Report: {page}")
