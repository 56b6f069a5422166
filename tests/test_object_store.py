"""Run folders on an S3-compatible object store, against moto's standalone server (tests/s3_server.py).

The demo manifest runs once into a local folder and once with ``output: s3://winnow/runs`` (the
store; its working copy in a temporary folder); the store's views, read by ``winnow sql`` through
DuckDB's registered fsspec filesystem, hold the same ids as the local run's. An object the tasks did
not commit is never read; the credentials appear in no object, record or output. A server killed
mid-run stops the run with exit 3, and the rerun after its restart ends with the same ids. Behind a
proxy throttling 20% of requests (tests/throttle_proxy.py) the run completes, its retries counted. The
refresh lock is a lease object that a second refresher respects until it lapses.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from tests.s3_server import ACCESS_KEY, SECRET_KEY, MotoServer, moto_available
from tests.throttle_proxy import ThrottleProxy
from winnow.pipeline.commits import committed_files
from winnow.pipeline.funnel import connect, stage_counters
from winnow.pipeline.refresh import LEASE
from winnow.pipeline.store import LeaseHeld, RunStore, StoreError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "manifests" / "demo.yaml"
STORE = "s3://winnow/runs"
VIEWS = ("extract", "extract_rejects", "extract_errors", "heuristics", "heuristics_rejects", "dedup", "dedup_rejects")
ALL_IDS = " UNION ALL ".join(f"SELECT '{v}' AS view, id FROM {v}" for v in VIEWS) + " ORDER BY 1, 2"

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]


def demo_run(winnow_cli: WinnowCli, warcs: Path, output: str, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [
        f"output={output}",
        f"sources.0.paths=[{warcs}/*.warc.gz]",
        "stages.extract.url_filter.use_integrated_lists=false",
    ]
    return winnow_cli("run", DEMO, *(a for s in [*args, *sets] for a in ("--set", s)), "--no-progress")


def sql_rows(winnow_cli: WinnowCli, where: str, query: str) -> list[list[str]]:
    result = winnow_cli("sql", where, query, "--format", "csv")
    assert result.returncode == 0, result.stdout + result.stderr
    return list(csv.reader(io.StringIO(result.stdout)))[1:]


@pytest.fixture(scope="module")
def store_run(
    tmp_path_factory: pytest.TempPathFactory, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> Iterator[tuple[MotoServer, Path, Path, list[subprocess.CompletedProcess[str]]]]:
    """(server, the local run folder, the store run's working copy, the CLI results of the store run)."""
    if not moto_available():
        pytest.skip("moto[server] and s3fs are not installed (pip install -e '.[dev]')")
    work = tmp_path_factory.mktemp("store")
    server = MotoServer()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env().items():
            patch.setenv(name, value)
        server.make_bucket("winnow")
        local = demo_run(winnow_cli, cli_demo_warcs, str(work / "local"))
        assert local.returncode in (0, 1), local.stdout + local.stderr
        stored = demo_run(winnow_cli, cli_demo_warcs, STORE, f"work_dir={work / 'copy'}")
        assert stored.returncode in (0, 1), stored.stdout + stored.stderr
        yield server, work / "local" / "demo", work / "copy", [stored]
    server.stop()


def test_moto_server_takes_objects_and_duckdb_reads_them_through_fsspec(s3_server: MotoServer) -> None:
    """The fixture's server, reached through the standard AWS variables only; DuckDB reads its objects through
    a registered fsspec filesystem (no httpfs extension, which would be downloaded at run time)."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    with fs.open("winnow/smoke/x.parquet", "wb") as fh:
        pq.write_table(pa.table({"n": [1, 2, 3]}), fh)
    con = duckdb.connect()
    con.register_filesystem(fs)
    assert con.execute("SELECT sum(n) FROM read_parquet('s3://winnow/smoke/x.parquet')").fetchone() == (6,)
    assert SECRET_KEY not in repr(fs)


def test_demo_on_the_store_gives_the_local_runs_ids(store_run: tuple, winnow_cli: WinnowCli) -> None:
    _, local, _, _ = store_run
    with connect(local) as con:
        expected = [[view, doc_id] for view, doc_id in con.execute(ALL_IDS).fetchall()]
    assert len(expected) > 100
    assert sql_rows(winnow_cli, f"{STORE}/demo", ALL_IDS) == expected
    status = winnow_cli("status", f"{STORE}/demo")
    assert status.returncode == 0 and "The run finished." in status.stdout, status.stdout + status.stderr
    inspect = winnow_cli("inspect", f"{STORE}/demo")
    assert inspect.returncode == 0 and "stage: dedup" in inspect.stdout, inspect.stdout + inspect.stderr
    page = store_run[2].parent / "store-report.html"
    report = winnow_cli("report", f"{STORE}/demo", "-o", page)
    assert report.returncode == 0, report.stdout + report.stderr
    html = page.read_text()
    assert "<title>winnow report: demo</title>" in html and f"<p>{STORE}/demo — " in html
    assert "near_duplicate" in html  # the dedup funnel, counted from the store's objects
    for folder in ("stages/extract/data/", "stages/extract/rejects/", "stages/dedup/data/", "stages/dedup/rejects/"):
        assert f"{STORE}/demo/{folder}" in html, folder  # the run's Parquet folders, listed from the store
    assert f"winnow sql {STORE}/demo &quot;SELECT * FROM dedup LIMIT 10&quot;" in html


def test_every_parquet_object_is_committed_and_an_uncommitted_one_is_not_read(
    store_run: tuple, winnow_cli: WinnowCli
) -> None:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # the module's fixture keeps the AWS variables set
    objects = [p.split("winnow/runs/demo/", 1)[1] for p in fs.find("winnow/runs/demo") if p.endswith(".parquet")]
    committed = committed_files(store_run[2])
    assert objects and sorted(objects) == sorted(committed)
    before = sql_rows(winnow_cli, f"{STORE}/demo", "SELECT count(*) FROM dedup")
    # what a task killed before its commit leaves: a shard object no commit record names
    stray = "winnow/runs/demo/stages/dedup/data/part-00000-f00007-0000.parquet"
    with fs.open(f"winnow/runs/demo/{objects[0]}", "rb") as fh:
        table = pq.read_table(fh)
    with fs.open(stray, "wb") as fh:
        pq.write_table(table, fh)
    try:
        assert sql_rows(winnow_cli, f"{STORE}/demo", "SELECT count(*) FROM dedup") == before
    finally:
        fs.rm(stray)


def test_credentials_are_in_no_object_record_or_output(store_run: tuple, winnow_cli: WinnowCli) -> None:
    _, _, copy, results = store_run
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    blobs = [fs.cat_file(path) for path in fs.find("winnow/runs/demo")]
    blobs += [p.read_bytes() for p in copy.rglob("*") if p.is_file()]
    for secret in (SECRET_KEY.encode(), ACCESS_KEY.encode()):
        assert not [b for b in blobs if secret in b]
        for result in results:
            assert secret.decode() not in result.stdout + result.stderr


def test_store_killed_mid_run_stops_with_exit_3_and_the_rerun_ends_identical(
    store_run: tuple, cli_demo_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    """The S3 server is SIGKILLed once the first commit record is stored: the run stops cleanly (exit 3);
    restarted (empty: moto keeps objects in memory), the rerun resumes from its working copy, uploads the
    whole run again and its views hold the same ids as the local run."""
    _, local, _, _ = store_run
    server = MotoServer()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.env().items():
                patch.setenv(name, value)
            server.make_bucket("winnow")
            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            sets = [f"output={STORE}", f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]", f"work_dir={tmp_path / 'copy'}"]
            sets.append("stages.extract.url_filter.use_integrated_lists=false")
            args = ["run", str(DEMO), *(a for s in sets for a in ("--set", s)), "--no-progress"]
            proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("winnow")), *args],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 300
            while not fs.glob("winnow/runs/demo/logs/extract/commits/*/*.json"):
                assert proc.poll() is None, f"the run ended before a commit was stored: {proc.communicate()}"
                assert time.monotonic() < deadline, "no commit record stored within 300 s"
                time.sleep(0.05)
                fs.invalidate_cache()
            server.kill()
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 3, stdout + stderr
            assert "object store" in stderr and "winnow run" in stderr, stderr

            server.start()
            server.make_bucket("winnow")
            rerun = winnow_cli(*args, cwd=tmp_path)
            assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
            with connect(local) as con:
                expected = [[view, doc_id] for view, doc_id in con.execute(ALL_IDS).fetchall()]
            assert sql_rows(winnow_cli, f"{STORE}/demo", ALL_IDS) == expected
            for stage in ("extract", "heuristics", "dedup"):  # nothing counted twice across the two attempts
                resumed, whole = stage_counters(tmp_path / "copy", stage), stage_counters(local, stage)
                assert resumed["in:cc"] == whole["in:cc"], stage
    finally:
        server.stop()


def test_throttled_store_run_completes_with_the_same_ids_and_counts_its_retries(
    store_run: tuple, cli_demo_warcs: Path, tmp_path: Path, winnow_cli: WinnowCli
) -> None:
    """Inputs and output on the store behind a proxy that answers 503 SlowDown to a seeded 20% of requests:
    the run completes, its views hold the local run's ids, and its retries are in stats.json and run.json."""
    _, local, _, _ = store_run
    server = MotoServer()
    proxy = ThrottleProxy(server.port, share=0.2, seed=19)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.env().items():
                patch.setenv(name, value)
            server.make_bucket("winnow")
            direct = s3fs.S3FileSystem(skip_instance_cache=True)
            for warc in sorted(cli_demo_warcs.glob("*.warc.gz")):
                direct.put_file(str(warc), f"winnow/inputs/{warc.name}")
            patch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
            sets = [
                f"output={STORE}",
                "sources.0.paths=[s3://winnow/inputs/*.warc.gz]",
                f"work_dir={tmp_path / 'copy'}",
            ]
            sets.append("stages.extract.url_filter.use_integrated_lists=false")
            throttled = proxy.throttled
            result = winnow_cli("run", DEMO, *(a for s in sets for a in ("--set", s)), "--no-progress", cwd=tmp_path)
            assert result.returncode in (0, 1), result.stdout + result.stderr
            throttled = proxy.throttled - throttled
            copy = tmp_path / "copy"
            retried = sum(
                stage_counters(copy, stage).get("remote_retries", 0) for stage in ("extract", "heuristics", "dedup")
            )
            retried += json.loads((copy / "run.json").read_text())["remote_retries"]
            assert throttled > 20 and 0 < retried <= throttled, (retried, throttled)
            assert stage_counters(copy, "extract").get("remote_retries", 0) > 0, "the tasks' reads of the inputs"
            with connect(local) as con:
                expected = [[view, doc_id] for view, doc_id in con.execute(ALL_IDS).fetchall()]
            assert sql_rows(winnow_cli, f"{STORE}/demo", ALL_IDS) == expected
    finally:
        proxy.close()
        server.stop()


def test_release_on_the_store_is_a_manifest_of_committed_objects_and_latest_moves_conditionally(
    store_run: tuple, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """The run's release on the store names the run's own shard objects (size and SHA-256 checked here); a
    rerun and a refresh with nothing new leave ``latest`` as it is (the refresh decides from the working
    copy's ledger); a publisher holding a stale ``latest`` loses."""
    _, _, copy, _ = store_run
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = "winnow/runs/demo"
    latest = json.loads(fs.cat_file(f"{root}/releases/latest.json"))
    assert latest == {"version": "v0001", "manifest": "releases/v0001/_manifest.json"}
    manifest = json.loads(fs.cat_file(f"{root}/{latest['manifest']}"))
    assert manifest["shards"] and all(s["path"].startswith("stages/dedup/data/") for s in manifest["shards"])
    assert sum(s["rows"] for s in manifest["shards"]) == manifest["rows"]
    for shard in manifest["shards"]:
        data = fs.cat_file(f"{root}/{shard['path']}")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"])
    assert manifest["dedup_index"], "the dedup index a later run can dedup against"

    etag = fs.info(f"{root}/releases/latest.json")["ETag"]
    rerun = demo_run(winnow_cli, cli_demo_warcs, STORE, f"work_dir={copy}")
    assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    sets = [f"output={STORE}", f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]", f"work_dir={copy}"]
    refresh = winnow_cli("refresh", DEMO, *(a for s in sets for a in ("--set", s)), "--no-progress")
    assert refresh.returncode == 0 and "nothing new" in refresh.stdout, refresh.stdout + refresh.stderr
    fs.invalidate_cache()
    assert fs.info(f"{root}/releases/latest.json")["ETag"] == etag, "nothing new: latest not rewritten"

    store = RunStore(f"{STORE}/demo")
    stale = store._read_latest()
    assert store.publish_release(copy, "v0002", {"version": "v0002", "shards": []}, [])
    store._read_latest = lambda: stale  # a second publisher that read latest before the first moved it
    with pytest.raises(StoreError, match="another publisher"):
        store.publish_release(copy, "v0003", {"version": "v0003", "shards": []}, [])
    assert json.loads(fs.cat_file(f"{root}/releases/latest.json"))["version"] == "v0002"


def test_refresh_lease_on_the_store_stops_a_second_refresher_until_it_lapses(
    store_run: tuple, cli_demo_warcs: Path, winnow_cli: WinnowCli
) -> None:
    """The store has no flock: the refresh lock is the lease object ``refresh.lease``. A refresher that took it
    and was killed (never renewed, never released) stops the next one (exit 4, the holder named) until the lease
    lapses; then the next one takes it over, refreshes, and releases it; the dead holder's ETag renews nothing."""
    _, _, copy, _ = store_run
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    store = RunStore(f"{STORE}/demo")
    sets = [f"output={STORE}", f"sources.0.paths=[{cli_demo_warcs}/*.warc.gz]", f"work_dir={copy}"]
    args = ["refresh", str(DEMO), *(a for s in sets for a in ("--set", s)), "--no-progress"]
    ttl = 12.0
    dead = store.take_lease(LEASE, "a refresher killed mid-refresh", ttl)
    lapses = time.time() + ttl
    busy = winnow_cli(*args)
    assert time.time() < lapses, "the second refresher must have asked while the lease was live"
    assert busy.returncode == 4, busy.stdout + busy.stderr
    assert "a refresher killed mid-refresh" in busy.stderr and "until" in busy.stderr, busy.stderr
    with pytest.raises(LeaseHeld):
        store.take_lease(LEASE, "a third refresher", ttl)

    time.sleep(max(0.0, lapses - time.time()) + 0.5)
    after = winnow_cli(*args)
    assert after.returncode == 0 and "nothing new" in after.stdout, after.stdout + after.stderr
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(f"winnow/runs/demo/{LEASE}"))["expires_at"] == 0, "released at its end"
    with pytest.raises(LeaseHeld):  # taken over: the killed holder's conditional renewal is refused
        store.renew_lease(LEASE, dead, "a refresher killed mid-refresh", ttl)
    taken = store.take_lease(LEASE, "the next refresher", ttl)  # released: no wait
    store.release_lease(LEASE, taken)


def test_a_publisher_that_read_latest_while_another_moved_it_loses(store_run: tuple) -> None:
    """Another publisher moves ``latest`` between this one's reads of it: the move is never overwritten unseen."""
    _, _, copy, _ = store_run
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    store = RunStore(f"{STORE}/demo")
    latest = "winnow/runs/demo/releases/latest.json"
    real_cat = store.fs.cat_file

    def cat_then_moved(path: str, *args: object, **kwargs: object) -> bytes:
        data = real_cat(path, *args, **kwargs)
        if path.endswith("releases/latest.json"):
            store.fs.cat_file = real_cat  # once
            fs.pipe_file(latest, json.dumps({"version": "v0100", "manifest": "elsewhere"}).encode())
        return data

    store.fs.cat_file = cat_then_moved
    try:
        with pytest.raises(StoreError, match="another publisher"):
            store.publish_release(copy, "v0101", {"version": "v0101", "shards": []}, [])
    finally:
        store.fs.cat_file = real_cat
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(latest))["version"] == "v0100", "the other publisher's move stands"
