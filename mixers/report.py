"""``winnow mix report``: plots of a run's mix (PNG, matplotlib) and an HTML page linking them.

Reads ``stages/mix/fit/report.json``, ``fit/predictions.parquet``, the proxy runs' records and
``final/_manifest.json`` when present (a run whose weights were fixed in the manifest has nothing to plot), and
writes into ``stages/mix/report/`` (or a folder given):

- ``predicted_vs_actual.png``: each run's objective against every model's out-of-fold prediction;
- ``weights.png``: weight per source for the prior, the uniform mixture, the best swarm run and the proposal;
- ``loss_curves.png``: the proxies' training curves, coloured by their objective;
- ``index.html``: the figures, held-out Spearman per model, the weights and the final corpus's tokens.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from winnow.mixers.fit import read_report


def _figure(width: float = 7.0, height: float = 4.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=110)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _predicted_vs_actual(predictions: dict[str, list[float]], report: dict[str, Any], path: Path) -> str:
    fig, ax = _figure(5.5, 5.0)
    actual = predictions["actual"]
    for column, values in predictions.items():
        if column.startswith("predicted_"):
            name = column.removeprefix("predicted_")
            rho = report["models"][name]["spearman"]
            ax.scatter(actual, values, s=14, alpha=0.7, label=f"{name} (Spearman {rho:.3f})")
    low, high = min(actual), max(actual)
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.set_xlabel("actual objective (proxy loss)")
    ax.set_ylabel(f"predicted, out of fold ({report['folds']} folds)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _weights(report: dict[str, Any], path: Path) -> str:
    fig, ax = _figure()
    sources = report["sources"]
    kinds = ["prior", "uniform", "best_run", "proposed"]
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        values = [report["weights"][kind][s] for s in sources]
        ax.bar([j + i * width for j in range(len(sources))], values, width, label=kind.replace("_", " "))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sources))], sources, rotation=30, ha="right")
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _loss_curves(runs: list[dict[str, Any]], path: Path) -> str:
    import matplotlib

    fig, ax = _figure()
    finals = [sum(r["losses"].values()) / len(r["losses"]) for r in runs]
    low, high = min(finals), max(finals)
    colours = matplotlib.colormaps["viridis"]
    for run, final in zip(runs, finals, strict=True):
        tokens, loss = zip(*run["curve"], strict=True) if run["curve"] else ((), ())
        ax.plot(tokens, loss, color=colours((final - low) / ((high - low) or 1)), linewidth=0.8, alpha=0.8)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("proxy runs (colour: mean target loss, dark = low)", fontsize=9)
    return _save(fig, path)


def write_report(run_dir: Path, folder: Path | None = None) -> Path:
    """Write the plots and ``index.html`` for ``run_dir``'s mix; returns the HTML path."""
    mix_dir = run_dir / "stages" / "mix"
    final = run_dir / "final" / "_manifest.json"
    if final.exists() and json.loads(final.read_text()).get("weights_from") == "manifest":
        raise FileNotFoundError(
            f"{run_dir} has no fitted mix: its weights were fixed in the manifest (stages.mix.weights), so no proxy "
            f"was trained; final/_manifest.json lists the tokens written per source"
        )
    if not (mix_dir / "fit" / "report.json").exists():
        raise FileNotFoundError(f"{run_dir} has no fitted mix (no stages/mix/fit/report.json): run the mix stage first")
    report = read_report(run_dir)
    folder = folder or mix_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    predictions = pq.read_table(mix_dir / "fit" / "predictions.parquet").to_pydict()
    runs = [json.loads(p.read_text()) for p in sorted((mix_dir / "swarm" / "runs").glob("*.json"))]
    runs = [r for r in runs if r.get("status") == "ok"]
    figures = [
        _predicted_vs_actual(predictions, report, folder / "predicted_vs_actual.png"),
        _weights(report, folder / "weights.png"),
    ]
    if runs:  # imported swarms have no curves
        figures.append(_loss_curves(runs, folder / "loss_curves.png"))
    manifest = json.loads(final.read_text()) if final.exists() else None
    page = folder / "index.html"
    page.write_text(_html(run_dir, report, figures, manifest))
    return page


def _html(run_dir: Path, report: dict[str, Any], figures: list[str], manifest: dict[str, Any] | None) -> str:
    esc = html.escape
    models = "".join(
        f"<tr><td>{esc(name)}{' (chosen)' if name == report['chosen'] else ''}</td><td>{m['spearman']:.4f}</td></tr>"
        for name, m in report["models"].items()
    )
    kinds = ["prior", "uniform", "best_run", "proposed"]
    weights = "".join(
        f"<tr><td>{esc(s)}</td>"
        + "".join(f"<td>{report['weights'][k][s]:.4f}</td>" for k in kinds)
        + (f"<td>{manifest['sources'][s]['tokens']:,}</td>" if manifest else "")
        + "</tr>"
        for s in report["sources"]
    )
    predicted = ", ".join(f"{k} {v:.4f}" for k, v in report["predicted_loss"].items())
    failed = "".join(f"<li>{esc(f['run_id'])}: {esc(str(f['error']))}</li>" for f in report["failed_runs"])
    images = "".join(f'<p><img src="{esc(name)}" alt="{esc(name)}"></p>' for name in figures)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>winnow mix: {esc(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>Mix report: {esc(str(run_dir))}</h1>
<p>{report["runs"]} proxy runs used; objective {esc(json.dumps(report["objective"]))}.
Predicted objective: {esc(predicted)}.</p>
<h2>Regression (held-out Spearman, {report["folds"]}-fold)</h2>
<table><tr><th>model</th><th>Spearman</th></tr>{models}</table>
<h2>Weights</h2><table><tr><th>source</th>{"".join(f"<th>{k}</th>" for k in kinds)}
{"<th>final tokens</th>" if manifest else ""}</tr>{weights}</table>
{f"<h2>Failed runs (excluded)</h2><ul>{failed}</ul>" if failed else ""}
{images}
</body></html>
"""
