"""The demo run on local disk and with its output on an S3-compatible server (moto), in one process tree.

Makes the demo data once (``winnow make-demo-data``, 200 pages; ``--quick``: 120), then runs
``winnow run manifests/demo.yaml`` twice, alternating (``--repeat`` pairs, default 1): into a local
folder, and with ``output: s3://bench/runs`` against moto's standalone server on 127.0.0.1 (started
here, as in the tests; the working copy in a temporary folder). Wall time, and CPU-seconds of the
``winnow`` process and the descendants waited for (``RUSAGE_CHILDREN`` deltas: datatrove's pool
workers, the sandbox children), plus for the store run the server's own CPU (``/proc/<pid>/stat``),
are medians over the repeats. datatrove's integrated URL block lists are off
in both runs (seconds of loading that do not depend on where the output goes).

What the ratio measures: the store run does the same work in its working copy, plus the uploads of
every committed shard and record and the syncs after each phase; moto is an in-memory Python server on
the same cores, so its CPU is reported apart.

Ends with ``RESULT local_wall_s=.. store_wall_s=.. wall_ratio=.. local_cpu_s=.. store_cpu_s=..
cpu_ratio=.. server_cpu_s=.. objects=..``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/s3_server.py: the same moto server the tests start

from tests.s3_server import MotoServer  # noqa: E402

WINNOW = str(Path(sys.executable).with_name("winnow"))
DEMO = str(REPO / "manifests" / "demo.yaml")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU-seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_run(output: str, data: Path, cwd: Path, env: dict[str, str], *sets: str) -> tuple[float, float]:
    """(wall s, CPU s of the process tree) of one ``winnow run`` of the demo into ``output``."""
    args = [f"output={output}", f"sources.0.paths=[{data}/*.warc.gz]"]
    args.append("stages.extract.url_filter.use_integrated_lists=false")
    command = [WINNOW, "run", DEMO, *(a for s in [*args, *sets] for a in ("--set", s)), "--no-progress"]
    cpu0, wall0 = children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    if done.returncode not in (0, 1):
        sys.exit(f"winnow run into {output} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="120 demo pages instead of 200")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (local, store); medians are reported")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="winnow-object-store-") as tmp:
        folder = Path(tmp)
        data = folder / "demo"
        pages = "120" if options.quick else "200"
        subprocess.run([WINNOW, "make-demo-data", str(data), "--pages", pages], check=True, capture_output=True)
        server = MotoServer()
        try:
            env = {**os.environ, **server.env(), "NO_COLOR": "1"}
            os.environ.update(server.env())  # for boto3 in make_bucket and the object count below
            local: list[tuple[float, float]] = []
            stored: list[tuple[float, float]] = []
            server_cpu: list[float] = []
            for i in range(options.repeat):
                local.append(timed_run(str(folder / f"local-{i}"), data, folder, env))
                server.make_bucket(f"bench{i}")
                before = process_cpu(server.process.pid)
                stored.append(timed_run(f"s3://bench{i}/runs", data, folder, env, f"work_dir={folder / f'copy-{i}'}"))
                server_cpu.append(process_cpu(server.process.pid) - before)
                print(f"pair {i + 1}: local {local[-1][0]:.1f} s wall, store {stored[-1][0]:.1f} s wall", flush=True)
            import s3fs

            objects = len(s3fs.S3FileSystem(skip_instance_cache=True).find("bench0/runs/demo"))
        finally:
            server.stop()
    figures = {
        "local_wall_s": statistics.median(w for w, _ in local),
        "store_wall_s": statistics.median(w for w, _ in stored),
        "local_cpu_s": statistics.median(c for _, c in local),
        "store_cpu_s": statistics.median(c for _, c in stored),
        "server_cpu_s": statistics.median(server_cpu),
    }
    figures["wall_ratio"] = figures["store_wall_s"] / figures["local_wall_s"]
    figures["cpu_ratio"] = figures["store_cpu_s"] / figures["local_cpu_s"]
    order = ("local_wall_s", "store_wall_s", "wall_ratio", "local_cpu_s", "store_cpu_s", "cpu_ratio", "server_cpu_s")
    print("RESULT " + " ".join(f"{k}={figures[k]:.2f}" for k in order) + f" objects={objects}")


if __name__ == "__main__":
    main()
