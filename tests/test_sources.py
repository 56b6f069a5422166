"""Input discovery: globs, Common Crawl listings, and archives read over HTTP through fsspec."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from winnow.pipeline.demo_data import write_demo_warcs
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.runner import Runner
from winnow.pipeline.sources import checksum, resolve_inputs


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_warcs(folder, pages=60, files=2)
    return folder


@pytest.fixture
def http_server(demo_dir: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving the demo folder."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(demo_dir))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _manifest(tmp_path: Path, source: dict[str, object]) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "src",
            "output": str(tmp_path / "out"),
            "executor": {"tasks": 1, "workers": 1},
            "sources": [{"name": "cc", "kind": "warc", **source}],
            "stages": {"heuristics": None},
        }
    )


def _ids(run_dir: Path) -> set[str]:
    ids: set[str] = set()
    for dataset in ("data", "rejects", "errors"):
        for path in (run_dir / "stages" / "extract" / dataset).glob("*.parquet"):
            ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def test_globs_are_sorted_limited_and_checksummed(demo_dir: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"paths": [str(demo_dir / "*.warc.gz")], "limit": 1})
    inputs = resolve_inputs(manifest)
    assert [Path(i.path).name for i in inputs] == ["demo-00.warc.gz"]
    assert inputs[0].size == (demo_dir / "demo-00.warc.gz").stat().st_size
    assert (checksum(inputs[0]) or "").startswith("sha256:")
    assert (inputs[0].version or "").startswith("mtime:")


def test_listing_over_http_gives_same_documents_as_local_files(
    demo_dir: Path, http_server: str, tmp_path: Path
) -> None:
    names = sorted(p.name for p in demo_dir.glob("*.warc.gz"))
    (demo_dir / "warc.paths.gz").write_bytes(gzip.compress("\n".join(names).encode() + b"\n"))

    remote = _manifest(
        tmp_path / "remote", {"listing": f"{http_server}/warc.paths.gz", "listing_base": f"{http_server}/"}
    )
    assert [i.path for i in resolve_inputs(remote)] == [f"{http_server}/{n}" for n in names]
    local = _manifest(tmp_path / "local", {"paths": [str(demo_dir / "*.warc.gz")]})

    remote_result = Runner(remote, progress=False).run()
    Runner(local, progress=False).run()

    unreachable = _manifest(tmp_path / "gone", {"paths": [f"{http_server}/no-such-file.warc.gz"]})
    [gone] = resolve_inputs(unreachable)
    assert gone.size == 0 and checksum(gone) is None  # listed, not fatal: the reader records the error
    gone_result = Runner(unreachable, progress=False).run()
    assert gone_result.rows_errored == 1

    remote_ids = _ids(remote.run_dir)
    assert remote_ids and remote_ids == _ids(local.run_dir)
    assert all(f.balanced for f in remote_result.stages[0].funnel.values())
