"""The extraction sandbox: a slow page times out, a dying worker is replaced, normal pages extract."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from winnow.extract.stage import TRAFILATURA
from winnow.pipeline.sandbox import Sandbox, SandboxCrashed, SandboxTimeout, WorkerWarning

ARTICLE = "<html><body><article>" + "<p>The quick brown fox jumps over the lazy dog again and again.</p>" * 30
ARTICLE += "</article></body></html>"
PLAN = {"prepass": True, "language": None, "min_words": None, "fallback": False}


def extracted(sandbox: Sandbox, options: dict[str, object], url: str | None = None) -> str:
    """The text the worker extracts from ARTICLE (empty when none)."""
    text = sandbox.call(ARTICLE, url, options, PLAN)["text"]
    return text or ""


def test_extracts_and_survives_timeout_and_crash() -> None:
    with Sandbox(TRAFILATURA, timeout_s=10, memory_limit_mb=1024) as sandbox:
        assert "quick brown fox" in extracted(sandbox, {}, "https://example.org/a")

        sandbox.timeout_s = 1e-4  # nothing finishes that fast: the worker is killed
        with pytest.raises(SandboxTimeout):
            extracted(sandbox, {})

        sandbox.timeout_s = 10
        assert "quick brown fox" in extracted(sandbox, {})

        sandbox._proc.kill()  # the worker dies (as under the OOM killer) before the next page
        sandbox._proc.wait()
        assert "quick brown fox" in extracted(sandbox, {})


def test_worker_dying_mid_page_is_reported() -> None:
    # No real page reliably kills trafilatura on demand, so the worker here is a stand-in process
    # that says it is ready, reads the start of the request and exits, as a worker killed mid-page would.
    ready = "import pickle, struct, sys; b = pickle.dumps(('ready', [])); "
    ready += "sys.stdout.buffer.write(struct.pack('!I', len(b)) + b); sys.stdout.flush(); "
    dies = [sys.executable, "-c", ready + "sys.stdin.buffer.read(4); sys.exit(9)"]
    with Sandbox(TRAFILATURA, timeout_s=20, memory_limit_mb=1024, command=dies) as sandbox:
        with pytest.raises(SandboxCrashed, match="exit code 9"):
            extracted(sandbox, {})
        with pytest.raises(SandboxCrashed):  # and the next page gets a fresh worker, which dies again
            extracted(sandbox, {})
        assert sandbox.restarts == 2


def test_bad_option_is_a_clean_error() -> None:
    with Sandbox(TRAFILATURA, timeout_s=20, memory_limit_mb=1024) as sandbox:
        with pytest.raises(RuntimeError, match="TypeError"):
            extracted(sandbox, {"no_such_option": True})
        assert "quick brown fox" in extracted(sandbox, {})


def test_worker_that_cannot_start_is_reported() -> None:
    broken = [sys.executable, "-c", "import sys; sys.exit(7)"]
    sandbox = Sandbox(TRAFILATURA, timeout_s=5, memory_limit_mb=1024, command=broken)
    with sandbox, pytest.raises(SandboxCrashed, match=r"while starting.*exit code 7"):
        extracted(sandbox, {})


def test_a_warning_the_worker_gives_on_import_reaches_the_parent(tmp_path: Path) -> None:
    """The worker's stderr is not kept: a WorkerWarning raised while its function is imported (trafilatura's
    speedups on an unchecked release) is raised again in the task."""
    (tmp_path / "noisy_worker.py").write_text(
        "import warnings\nfrom winnow.pipeline.sandbox import WorkerWarning\n"
        "warnings.warn('checked against another release', WorkerWarning)\n"
        "warnings.warn('a library deprecation', DeprecationWarning)\n"
        "def echo(value):\n    return value\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    sandbox = Sandbox("noisy_worker:echo", timeout_s=20, memory_limit_mb=1024, env={"PYTHONPATH": path})
    with sandbox, pytest.warns(WorkerWarning, match="noisy_worker:echo: checked against another release") as caught:
        assert sandbox.call(42) == 42
    assert len(caught) == 1  # the deprecation stays in the worker
