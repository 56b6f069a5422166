"""Inputs over HTTP, as Common Crawl's https://data.commoncrawl.org is read: retries counted, dead files error records.

The demo's WARC files are served by a real HTTP server on 127.0.0.1 (tests/http_inputs.py) through
fsspec's http filesystem. Undisturbed, the run gives a set of ids; with a seeded 20% of requests
answered 503 / 429 or reset, one more input whose every request is answered 503 and one that opens
(``HEAD``) but whose every ``GET`` is, the run completes with the same ids, its retries are counted
(``remote_retries`` in the extract stage's stats and in run.json), and each dead input is one error
record (``input_unreadable``, the 503 in its detail).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.http_inputs import FlakyFileServer
from winnow.pipeline.funnel import connect, stage_counters

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "manifests" / "demo.yaml"
DEAD = "CC-DEMO-dead.warc.gz"  # no request answered
CUT = "CC-DEMO-cut.warc.gz"  # opens, no byte read
VIEWS = ("extract", "extract_rejects", "extract_errors", "heuristics", "heuristics_rejects", "dedup", "dedup_rejects")
ALL_IDS = " UNION ALL ".join(f"SELECT '{v}' AS view, id FROM {v}" for v in VIEWS) + " ORDER BY 1, 2"

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]


def http_run(winnow_cli: WinnowCli, urls: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    sets = [
        f"output={output}",
        "sources.0.paths=[" + ", ".join(f'"{url}"' for url in urls) + "]",
        "stages.extract.url_filter.use_integrated_lists=false",
    ]
    return winnow_cli("run", DEMO, *(a for s in sets for a in ("--set", s)), "--no-progress")


def ids(run: Path) -> list[tuple[str, str]]:
    with connect(run) as con:
        return [(view, doc_id) for view, doc_id in con.execute(ALL_IDS).fetchall()]


@pytest.fixture
def small_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Range reads of 4 KiB (fsspec's http ``block_size``, from its ``FSSPEC_HTTP`` variable): the two demo files
    take some 60 requests, not 6; 4 attempts a request (waits up to 1 + 2 + 4 s): the dead input gives up in seconds."""
    monkeypatch.setenv("FSSPEC_HTTP", json.dumps({"block_size": 4096, "cache_type": "none"}))
    monkeypatch.setenv("WINNOW_HTTP_MAX_ATTEMPTS", "4")
    yield


def test_flaky_http_inputs_give_the_undisturbed_ids_and_a_dead_input_is_an_error_record(
    cli_demo_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli, small_reads: None
) -> None:
    names = sorted(p.name for p in cli_demo_warcs.glob("*.warc.gz"))
    steady = FlakyFileServer(cli_demo_warcs, share=0.0)
    try:
        calm = http_run(winnow_cli, [steady.url(n) for n in names], tmp_path / "calm")
        assert calm.returncode in (0, 1), calm.stdout + calm.stderr
    finally:
        steady.close()
    assert steady.failed == 0
    undisturbed = tmp_path / "calm" / "demo"
    assert stage_counters(undisturbed, "extract").get("remote_retries", 0) == 0

    served = tmp_path / "served"
    served.mkdir()
    for name in names:
        (served / name).symlink_to(cli_demo_warcs / name)
    (served / CUT).write_bytes((cli_demo_warcs / names[0]).read_bytes())
    dead_inputs = {DEAD: frozenset({DEAD}), CUT: frozenset({CUT})}
    flaky = FlakyFileServer(served, share=0.2, seed=19, always_failing=dead_inputs[DEAD], failing_gets=dead_inputs[CUT])
    try:
        result = http_run(winnow_cli, [flaky.url(n) for n in [*names, DEAD, CUT]], tmp_path / "flaky")
    finally:
        flaky.close()
    assert result.returncode in (0, 1), result.stdout + result.stderr
    run = tmp_path / "flaky" / "demo"

    with connect(run) as con:
        errors = con.execute("SELECT id, reason, detail, meta FROM extract_errors").fetchall()
    dead = [e for e in errors if DEAD in str(e[3])]
    cut = [e for e in errors if CUT in str(e[3])]
    assert len(dead) == 1 and len(cut) == 1, errors
    for error in (dead[0], cut[0]):
        assert error[1] == "input_unreadable" and "503" in error[2], error
    assert "reading stopped at byte 0" in cut[0][2], cut
    assert sorted(set(ids(run)) - {("extract_errors", dead[0][0]), ("extract_errors", cut[0][0])}) == ids(undisturbed)

    # given up: the dead input's HEAD and GET when the inputs are listed and again when opened, the cut one's GET
    given_up = 4 + 1
    dead_failures = given_up * 4  # 4 attempts each
    retried = stage_counters(run, "extract").get("remote_retries", 0)
    retried += json.loads((run / "run.json").read_text())["remote_retries"]
    assert flaky.failed > dead_failures + 3, (flaky.failed, flaky.served)
    assert retried == flaky.failed - given_up, (retried, flaky.failed)  # every failure but each last attempt
    # the tasks' reads: the dead input's HEAD and GET and the cut one's GET (3 retries each), and the good ones'
    assert stage_counters(run, "extract")["remote_retries"] > 3 * 3
    print(f"requests failed {flaky.failed}, served {flaky.served}, retried {retried}")
