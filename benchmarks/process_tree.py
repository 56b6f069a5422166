"""CPU time of a whole process tree, for the benchmarks: adopt orphaned descendants and count what they used.

datatrove's local executor starts task processes from a forkserver; they are not children of the
command a benchmark launches, so ``getrusage(RUSAGE_CHILDREN)`` after ``wait`` misses them. A
benchmark that calls :func:`become_subreaper` first gets those processes re-parented to itself when
their parents exit; :func:`reap_orphans` waits for them, after which :func:`cpu_children` includes
their CPU time. :func:`run_benchmark` does that around a benchmark run in a scratch folder.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so their CPU time reaches us."""
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    return False


def reap_orphans(timeout_s: float = 60.0) -> None:
    """Wait for adopted orphans (their rusage then joins RUSAGE_CHILDREN)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                print("warning: descendants still running; their CPU time is not counted", file=sys.stderr)
                return
            time.sleep(0.05)


def cpu_children() -> float:
    """User + system CPU-seconds of every waited-for descendant so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_benchmark(benchmark: Callable[[argparse.Namespace, Path], str], args: argparse.Namespace, prefix: str) -> int:
    """Become the subreaper, run ``benchmark(args, work)`` in ``args.keep`` or a temporary folder, print its
    RESULT line last."""
    if not become_subreaper():
        print("warning: not a child subreaper: CPU of orphaned descendants may be missed", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = benchmark(args, work)
    print()
    print(result)
    return 0
