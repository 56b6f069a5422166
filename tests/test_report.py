"""The full demo (`make demo`'s commands) and its report: a self-contained HTML page, checked in a real browser.

The full demo runs every stage but rephrase (which needs an LLM server) on generated data: WARC pages,
PDFs (papers, a scan, a broken file), a curated JSONL source; `winnow inspect` shows every stage
balanced. The browser test loads the report from disk in Debian's headless Chromium (no network,
background networking off), reads back the marks the page's own script sets once the browser has laid
out the charts (every ``figure.chart`` has an SVG with a real size and drawn elements; no script error),
checks the browser logged no console error, and saves a screenshot under ``test-artifacts/`` (or
``$WINNOW_TEST_ARTIFACTS``). Without Chromium it skips; CI sets WINNOW_REQUIRE_BROWSER=1 so it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT, WinnowCli

ARTIFACTS = Path(os.environ.get("WINNOW_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--enable-logging=stderr",
    "--v=0",
]
FULL_DEMO_STAGES = ("ocr", "extract", "heuristics", "dedup", "quality", "mix")


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory, winnow_cli: WinnowCli) -> Path:
    """The Makefile's demo commands in a fresh folder; returns the run folder."""
    folder = tmp_path_factory.mktemp("full-demo")
    assert winnow_cli("make-demo-data", "data/demo", "--full", cwd=folder).returncode == 0
    quality = "data/demo/quality"
    trained = winnow_cli(
        "classifier", "train", "--no-progress", "-p", f"{quality}/positive.jsonl", "-n", f"{quality}/negative.jsonl",
        "-o", f"{quality}/model.bin", cwd=folder,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = winnow_cli("run", REPO_ROOT / "manifests" / "full_demo.yaml", "--no-progress", cwd=folder)
    assert result.returncode == 1, f"only the broken PDF errors\n{result.stdout}\n{result.stderr}"
    assert "1 input(s) errored" in result.stderr
    return folder / "out" / "full_demo"


@pytest.fixture(scope="module")
def report(full_demo: Path, winnow_cli: WinnowCli) -> Path:
    result = winnow_cli("report", full_demo)
    assert result.returncode == 0, result.stderr
    return full_demo / "report.html"


def test_full_demo_balances_every_stage(full_demo: Path, winnow_cli: WinnowCli) -> None:
    result = winnow_cli("inspect", full_demo)
    assert result.returncode == 0, result.stderr
    stages = re.findall(r"stage: (\w+)", result.stdout)
    assert stages == list(FULL_DEMO_STAGES)
    balance = re.findall(r"│\s+(yes|NO)\s+│", result.stdout)
    assert balance and set(balance) == {"yes"}, "every row: in == out + rejected + errored"
    final = winnow_cli("sql", full_demo, "SELECT DISTINCT source FROM final ORDER BY 1", "--format", "csv")
    assert final.stdout.split() == ["source", "cc", "docs", "papers"], "the final corpus mixes all three sources"
    errors = winnow_cli("sql", full_demo, "SELECT reason FROM ocr_errors", "--format", "csv")
    assert errors.stdout.split() == ["reason", "pdf_unreadable"]


def test_the_makefile_demo_queries_run(full_demo: Path, winnow_cli: WinnowCli) -> None:
    """Every `winnow sql out/full_demo "..."` query that `make demo` prints works on the demo run and returns rows."""
    queries = re.findall(r'winnow sql out/full_demo "([^"]+)"', (REPO_ROOT / "Makefile").read_text())
    assert len(queries) >= 2
    for query in queries:
        result = winnow_cli("sql", full_demo, query, "--format", "csv")
        assert result.returncode == 0, f"{query}\n{result.stderr}"
        assert len(result.stdout.strip().splitlines()) > 1, f"no rows: {query}"


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    for section in ("funnel", "scores", "dedup", "ocr", "mix", "timings", "datasets"):
        assert f"id='{section}'" in page, section
    assert page.count('<figure class="chart"') >= 7
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", page)
    assert not external, f"the page loads something from the network: {external}"
    assert "<link" not in page and "<script src" not in page
    assert "read_parquet(" in page and "stages/dedup/data/" in page and "final/" in page
    rejects = pq.read_table(report.parent / "stages" / "heuristics" / "rejects", columns=["reason"])
    reasons = set(rejects["reason"].to_pylist())
    assert reasons and all(reason in page for reason in reasons), "rejects by reason are listed"
    assert "top_fraction" in page and "lowest kept" in page, "the quality threshold is drawn"
    assert "text-layer" in page and "tesseract" in page, "OCR routes per page"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("WINNOW_REQUIRE_BROWSER") == "1":
            pytest.fail("WINNOW_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def load(browser: str, flags: list[str], page: Path) -> tuple[dict[str, str], list[str]]:
    """The marks the page's script set on <body> after load, and the console lines the browser logged."""
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", page.absolute().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))), console


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    marks, console = load(browser, flags, report)
    assert "errors" not in marks, f"script errors in the page: {marks['errors']}"
    assert int(marks["charts-expected"]) >= 3
    assert marks["charts-rendered"] == marks["charts-expected"], marks
    assert not console, console

    # the check can fail: a chart whose SVG is gone, and a script error, are both seen
    broken = tmp_path / "broken.html"
    page = report.read_text()
    start = page.index("<svg")
    broken.write_text(page[:start] + page[page.index("</svg>", start) + 6 :] + "<script>undefinedCall()</script>")
    marks, console = load(browser, flags, broken)
    assert int(marks["charts-rendered"]) == int(marks["charts-expected"]) - 1
    assert "undefinedCall" in marks.get("errors", "") and console
    url = report.absolute().as_uri()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    shot = subprocess.run(
        [browser, *flags, "--window-size=1200,2400", f"--screenshot={screenshot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    print(f"screenshot: {screenshot}")


def test_the_final_corpus_is_the_funnels_last_row(full_demo: Path, report: Path, winnow_cli: WinnowCli) -> None:
    """inspect and the report end with the final shards: rows, repeated copies and tokens per source, as
    counted in final/*.parquet and as final/_manifest.json records them."""
    import json

    manifest = json.loads((full_demo / "final" / "_manifest.json").read_text())["sources"]
    result = winnow_cli("inspect", full_demo)
    assert result.returncode == 0, result.stderr
    final = result.stdout[result.stdout.index("final corpus (final/)") :]
    for source, written in manifest.items():
        row = next(line for line in final.splitlines() if re.match(rf"[│|]\s+{source}\s+[│|]", line))
        rows, documents, repeats, tokens = (int(c.strip().replace(",", "")) for c in re.split(r"[│|]", row)[2:6])
        assert (rows, tokens) == (written["rows"], written["tokens"]) and "yes" in row
        assert documents == written["distinct_documents"] and repeats == rows - documents
    assert "input records (archives)" in result.stdout.split("stage: extract")[0]
    page = report.read_text()
    assert "Final corpus (final/)" in page and "Input records (archives)" in page
