"""Releases and scheduled refresh, through the CLI on generated demo WARCs (and the shared WARCs when present).

- `winnow run` publishes a release; an unchanged rerun publishes nothing; a changed run publishes the
  next one and the earlier release stays intact.
- A publish SIGKILLed while it links files, and again between renaming the release into place and
  moving ``latest``, leaves ``latest`` at a complete release; the next publish finishes the job.
- `winnow refresh` on half the inputs, then on all of them plus re-fetches of released pages: release 2
  holds release 1's documents and the batch's new non-duplicates; the re-fetches are rejected as
  duplicates of released documents; a third refresh has nothing to do and says so quickly.
- Two refreshes of one corpus: the second stops at the lock (exit 4).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from tests.conftest import REPO_ROOT, WinnowCli
from winnow.pipeline.demo_data import write_demo_warcs
from winnow.pipeline.releases import latest, read_release, verify, versions
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
SHARED_WARCS = REPO_ROOT.parent / "shared" / "data" / "warc"


def winnow_args(command: str, output: Path, inputs: Path, *overrides: str) -> list[str]:
    """``winnow run|refresh`` of the demo manifest over every file in ``inputs``, integrated URL lists off."""
    sets = [
        f"output={output}",
        f"sources.0.paths=[{inputs}/*]",
        "stages.extract.url_filter.use_integrated_lists=false",
        *overrides,
    ]
    return [command, str(DEMO_MANIFEST), *(a for s in sets for a in ("--set", s)), "--no-progress"]


def release_ids(folder: Path) -> set[str]:
    return {i for f in sorted((folder / "data").glob("*.parquet")) for i in pq.read_table(f).column("id").to_pylist()}


def dataset(run_dir: Path, stage: str, kind: str, columns: list[str]) -> list[dict[str, object]]:
    files = sorted((run_dir / "stages" / stage / kind).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f, columns=columns).to_pylist()]


def refetches(warc: Path, target: Path) -> Path:
    """A WARC with every HTML response of ``warc`` fetched again a year later at a new URL (same page)."""
    records = []
    with open(warc, "rb") as fh:
        for index, record in enumerate(ArchiveIterator(fh, record_types=WarcRecordType.response)):
            url = record.headers.get("WARC-Target-URI")
            body = record.reader.read().split(b"\r\n\r\n", 1)[-1]
            records.append(
                warc_record(f"{url}?mirror=1", http_response(body), date="2025-05-20T12:00:00Z", index=index)
            )
    return write_warc(target, records)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


# ---------------------------------------------------------------- winnow run publishes


@pytest.fixture(scope="module")
def warcs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_demo_warcs(tmp_path_factory.mktemp("release-input"), pages=160, files=4)


def test_run_publishes_releases(warcs: list[Path], tmp_path: Path, winnow_cli: WinnowCli) -> None:
    inputs = warcs[0].parent
    assert_ok(result := winnow_cli(*winnow_args("run", tmp_path, inputs), cwd=tmp_path))
    root = tmp_path / "demo"
    first = latest(root)
    assert first is not None and first.version == "v0001"
    assert "Release: published v0001" in result.stdout
    assert verify(first) == []
    assert release_ids(first.path) == {r["id"] for r in dataset(root, "dedup", "data", ["id"])}
    assert [Path(i["path"]).name for i in first.manifest["inputs"]] == [w.name for w in warcs]
    assert first.manifest["dedup_indexes"] == ["dedup/v0001/index"]

    assert_ok(result := winnow_cli(*winnow_args("run", tmp_path, inputs), cwd=tmp_path))
    assert "Release: unchanged, still v0001" in result.stdout
    assert versions(root) == ["v0001"]

    stricter = "stages.heuristics.gopher_quality.min_doc_words=100000"  # nobody has that many
    assert_ok(winnow_cli(*winnow_args("run", tmp_path, inputs, stricter), cwd=tmp_path))
    second = latest(root)
    assert second is not None and second.version == "v0002" and second.manifest["previous"] == "v0001"
    assert second.manifest["parent"] is None, "a run publishes a full release, not an addition"
    assert release_ids(second.path) == set() and second.manifest["rows"] == 0
    assert verify(read_release(root / "releases" / "v0001")) == [], "the earlier release is untouched"


# ---------------------------------------------------------------- a publish killed halfway


CHILD = """
import sys, time
from pathlib import Path
import winnow.pipeline.releases as releases

link, point = releases.link_or_copy, releases._point_latest
def slow_link(source, target):
    time.sleep(0.15)
    link(source, target)
def slow_point(folder, version):
    print("pointing", flush=True)
    time.sleep(3)
    point(folder, version)
releases.link_or_copy, releases._point_latest = slow_link, slow_point
root = Path(sys.argv[1])
shards = [releases.NewShard(p) for p in sorted(Path(sys.argv[2]).glob("*.parquet"))]
print("start", flush=True)
releases.publish(root, "second-content", shards, None, {"kind": "test"}, parent=releases.latest(root))
print("done", flush=True)
"""


def publish_killed(root: Path, shards: Path, kill_after: str | float) -> None:
    """Run a slowed publish in a child and SIGKILL it ``kill_after`` seconds after it starts (or when it
    prints that word)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(shards)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "start" and not isinstance(kill_after, str):
            time.sleep(kill_after)
            break
        if line.strip() == kill_after:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_during_publish_keeps_the_previous_release(
    warcs: list[Path], tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    inputs = warcs[0].parent
    assert_ok(winnow_cli(*winnow_args("run", tmp_path, inputs), cwd=tmp_path))
    root = tmp_path / "demo"
    first = latest(root)
    assert first is not None and len(first.shards) >= 1
    shards = root / "stages" / "extract" / "data"  # other files to publish: the extract stage's shards
    for kill_after in (0.1, 0.4, "pointing"):
        publish_killed(root, shards, kill_after)
        current = latest(root)
        assert current is not None and current.version == "v0001", f"killed at {kill_after}: latest moved"
        assert verify(current) == [], f"killed at {kill_after}: the previous release is damaged"
    assert (root / "releases" / "v0002").is_dir(), "the last kill came after the rename, before the pointer"

    subprocess.run(
        [sys.executable, "-c", CHILD.replace("time.sleep", "(lambda s: None)"), str(root), str(shards)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    second = latest(root)
    assert second is not None and second.version == "v0002" and verify(second) == []
    assert versions(root) == ["v0001", "v0002"], "the renamed release is reused, not published again"
    assert not list((root / "releases").glob(".tmp-*")) and not list((root / "releases").glob(".latest-*"))
    assert len(second.shards) == len(first.shards) + len(list(shards.glob("*.parquet")))


# ---------------------------------------------------------------- refresh


def refresh_twice(inputs: list[Path], folder: Path, winnow_cli: WinnowCli) -> tuple[Path, float]:
    """Refresh on the first half of ``inputs``, then on all of them plus re-fetches of the first file's
    pages, then once more; checks the releases and returns (corpus root, seconds of the last refresh)."""
    incoming, output = folder / "incoming", folder / "out"
    incoming.mkdir()
    half = len(inputs) // 2
    for path in inputs[:half]:
        (incoming / path.name).symlink_to(path.resolve())
    assert_ok(result := winnow_cli(*winnow_args("refresh", output, incoming), cwd=folder))
    assert f"{half} new input(s) -> published release v0001" in result.stdout
    root = output / "demo"
    first = latest(root)
    assert first is not None and first.manifest["kind"] == "refresh" and verify(first) == []
    released = release_ids(first.path)
    assert released, "release 1 should hold documents"

    for path in inputs[half:]:
        (incoming / path.name).symlink_to(path.resolve())
    refetch_source = next(p for p in inputs[:half] if p.suffix == ".gz" and ".warc" in p.name)
    refetches(refetch_source, incoming / "zz-refetch.warc.gz")
    assert_ok(result := winnow_cli(*winnow_args("refresh", output, incoming), cwd=folder))
    new_count = len(inputs) - half + 1
    assert f"{new_count} new input(s) -> published release v0002" in result.stdout
    second = latest(root)
    assert second is not None and second.manifest["parent"] == "v0001" and verify(second) == []
    batch = root / "batches" / "v0002"
    batch_inputs = json.loads((batch / "run.json").read_text())["inputs"]
    assert sorted(Path(i["path"]).name for i in batch_inputs) == sorted(
        [p.name for p in inputs[half:]] + ["zz-refetch.warc.gz"]
    ), "the batch read only the new inputs"
    batch_kept = {r["id"] for r in dataset(batch, "dedup", "data", ["id"])}
    assert release_ids(second.path) == released | batch_kept
    assert not released & batch_kept
    rejected = dataset(batch, "dedup", "rejects", ["id", "reason", "detail"])
    against_release = [r for r in rejected if r["detail"] in released]
    assert against_release, "re-fetched pages are duplicates of released documents"
    assert {r["reason"] for r in against_release} <= {"exact_duplicate", "near_duplicate"}
    assert len(second.manifest["inputs"]) == len(inputs) + 1, "the ledger covers every input"
    assert second.manifest["dedup_indexes"] == ["dedup/v0001/index", "dedup/v0002/index"]

    started = time.monotonic()
    assert_ok(result := winnow_cli(*winnow_args("refresh", output, incoming), cwd=folder))
    seconds = time.monotonic() - started
    assert "nothing new" in result.stdout and "release v0002" in result.stdout
    assert versions(root) == ["v0001", "v0002"] and sorted(p.name for p in (root / "batches").iterdir()) == [
        "v0001",
        "v0002",
    ]
    return root, seconds


def test_refresh_adds_new_inputs_deduplicated_against_the_release(
    warcs: list[Path], tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    root, seconds = refresh_twice(warcs, tmp_path, winnow_cli)
    assert seconds < 10, f"a refresh with nothing new took {seconds:.1f} s"

    # killed after publishing release 2, before clearing its batch: the rerun resumes the batch (every stage
    # skipped, still deduplicated against release 1 only) and finds its release already published
    inputs = json.loads((root / "batches" / "v0002" / "run.json").read_text())["inputs"]
    pending = {
        "batch": "v0002",
        "base": "v0001",
        "inputs": [{k: v for k, v in i.items() if k != "checksum"} for i in inputs],
    }
    (root / "refresh.json").write_text(json.dumps({"pending": pending}))
    args = winnow_args("refresh", tmp_path / "out", tmp_path / "incoming")
    assert_ok(result := winnow_cli(*args, cwd=tmp_path))
    assert "(resumed batch) -> was already published as release v0002" in result.stdout
    assert versions(root) == ["v0001", "v0002"] and json.loads((root / "refresh.json").read_text())["pending"] is None


@pytest.mark.skipif(not SHARED_WARCS.is_dir(), reason="../shared/data/warc is absent")
def test_refresh_on_the_shared_warcs(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    inputs = sorted(p for p in SHARED_WARCS.iterdir() if p.name.endswith((".warc.gz", ".arc.gz")))
    _, seconds = refresh_twice(inputs, tmp_path, winnow_cli)
    assert seconds < 10, f"a refresh with nothing new took {seconds:.1f} s"


def test_a_second_refresh_stops_at_the_lock(warcs: list[Path], tmp_path: Path, winnow_cli: WinnowCli) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    with open(root / "refresh.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 1 on elsewhere since earlier")
        held.flush()
        result = winnow_cli(*winnow_args("refresh", tmp_path, warcs[0].parent), cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "another refresh" in result.stderr and "pid 1 on elsewhere" in result.stderr
    assert not (root / "batches").exists() and latest(root) is None


def test_refresh_refuses_a_mix_stage(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "some text"}\n')
    manifest = tmp_path / "mix.yaml"
    manifest.write_text(
        "name: m\noutput: out\nsources: [{name: a, kind: jsonl, paths: [a.jsonl]}]\n"
        "stages: {mix: {token_budget: 1000, targets: [{source: a}]}}\n"
    )
    result = winnow_cli("refresh", manifest, "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "stages.mix: a refresh appends" in result.stderr
    assert not (tmp_path / "out" / "m" / "batches").exists()
