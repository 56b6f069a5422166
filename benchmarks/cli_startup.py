"""How long the everyday commands take to start and finish, and the URL filter's load per task.

Each command runs as a fresh subprocess, 5 times; the median wall time is reported:
``winnow --help``, ``winnow validate manifests/demo.yaml``, ``winnow sql RUN "SELECT count(*) FROM
dedup"``, ``winnow inspect RUN`` and ``winnow status RUN`` on a demo run this script makes once (in a
temporary folder, or ``--run-dir``). The URL filter is loaded in a fresh process (construct
winnow's filter step and decide one document) with its on-disk cache warm, 5 times; the first, cold
build is timed once and reported beside it (from constructing the step to its first decision: the
imports are paid once per worker process, which runs many tasks). The peer is winnow before this work: importing the CLI
alone took 4.7 s and the URL filter 12-21 s per task (the issue's figures).

Ends with ``RESULT help_s=.. validate_s=.. sql_s=.. inspect_s=.. status_s=.. url_filter_load_s=..
url_filter_cold_s=..``; the target is each of the first five and the warm load under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WINNOW = str(Path(sys.executable).with_name("winnow"))
RUNS = 5

LOAD_URL_FILTER = """
import time
from datatrove.data import Document
from winnow.filters.url_filter import OfflineURLFilter
from winnow.pipeline.manifest import UrlFilterConfig
start = time.perf_counter()
step = OfflineURLFilter(**UrlFilterConfig().kwargs())
assert step.filter(Document(text="", id="1", metadata={"url": "https://example.org/a"})) is True
print(time.perf_counter() - start)
"""


def median_seconds(command: list[str], cwd: Path) -> float:
    """Median wall time of ``RUNS`` runs of ``command``; a failing run stops the benchmark."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return statistics.median(times)


def demo_run(folder: Path) -> Path:
    """A finished demo run under ``folder`` (made once: demo data, then ``winnow run``)."""
    run_dir = folder / "out" / "demo"
    if not (run_dir / "run.json").exists():
        subprocess.run([WINNOW, "make-demo-data", "data/demo"], cwd=folder, check=True, capture_output=True)
        manifest = str(REPO / "manifests" / "demo.yaml")
        subprocess.run([WINNOW, "run", manifest, "--no-progress", "--set", "output=out"], cwd=folder, check=True)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="folder for the demo data and run (default: a temporary one)")
    args = parser.parse_args()
    folder = args.run_dir or Path(tempfile.mkdtemp(prefix="winnow-cli-startup-"))
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = demo_run(folder)

    with tempfile.TemporaryDirectory() as cache:
        env_cache = {"HF_ASSETS_CACHE": cache}
        cold = _load_seconds(env_cache)
        warm = [_load_seconds(env_cache) for _ in range(RUNS)]

    figures = {
        "help_s": median_seconds([WINNOW, "--help"], folder),
        "validate_s": median_seconds([WINNOW, "validate", str(REPO / "manifests" / "demo.yaml")], folder),
        "sql_s": median_seconds([WINNOW, "sql", str(run_dir), "SELECT count(*) FROM dedup"], folder),
        "inspect_s": median_seconds([WINNOW, "inspect", str(run_dir)], folder),
        "status_s": median_seconds([WINNOW, "status", str(run_dir)], folder),
        "url_filter_load_s": statistics.median(warm),
        "url_filter_cold_s": cold,
    }
    for name, seconds in figures.items():
        print(f"{name:>20}: {seconds:.3f} s")
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in figures.items()))


def _load_seconds(env: dict[str, str]) -> float:
    """Seconds a fresh process takes from constructing the URL filter to its first decision (a task's
    wait before its first document; the imports are paid once per worker process, not per task)."""
    done = subprocess.run([sys.executable, "-c", LOAD_URL_FILTER], check=True, env=_env(env), capture_output=True)
    return float(done.stdout.split()[-1])


def _env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``."""
    return {**os.environ, **extra}


if __name__ == "__main__":
    main()
