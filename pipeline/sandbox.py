"""A long-lived worker process that runs one function on one input at a time, with a timeout and a memory cap.

A pathological input (an HTML page with 100k nested tags, a PDF that decompresses to gigabytes, a
regex that backtracks for minutes) must not hang or kill a task. The task therefore sends each input
to a child process over a pipe and waits at most ``timeout_s``; on timeout the child is killed and
replaced, and if the child dies (memory cap ``RLIMIT_AS``, a crash in C code) the input is reported
and the next one gets a fresh child. Extraction runs trafilatura this way, OCR whole PDFs.

The child is started with ``subprocess`` (not ``multiprocessing``) so it works inside datatrove's
daemonic pool workers, Slurm tasks and Ray actors alike. Frames are ``<4-byte length><pickle>``.
Run as ``python -m winnow.pipeline.sandbox MODULE:FUNCTION`` it is the child, calling that function.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

_HEADER = struct.Struct("!I")
STARTUP_TIMEOUT_S = 120.0


class SandboxTimeout(Exception):
    """The input took longer than the timeout; the worker was killed."""


class SandboxCrashed(Exception):
    """The worker process died while handling the input (memory cap, segfault)."""


class WorkerWarning(UserWarning):
    """A note the worker's function gives while it is imported (its stderr is not kept): raised again in
    the parent, so it reaches the task's log."""


class Sandbox:
    """Parent side: ``call(*args)`` returns ``function(*args)`` computed in the worker, or raises.

    ``function`` is ``"package.module:name"``, imported once by the worker; its arguments and result
    must pickle. ``env`` adds variables to the worker's environment (e.g. thread limits)."""

    def __init__(
        self,
        function: str,
        timeout_s: float,
        memory_limit_mb: int,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.function = function
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.command = list(command or [sys.executable, "-m", "winnow.pipeline.sandbox", function])
        self.env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (politely: closing its stdin ends its loop)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def call(self, *args: Any) -> Any:
        """The function's result; raises SandboxTimeout, SandboxCrashed, or RuntimeError with the
        worker's exception as ``Type: message``."""
        self._ensure_started()
        deadline = time.monotonic() + self.timeout_s
        try:
            _write_frame(self._proc.stdin, args)
            status, value = _read_frame(self._proc.stdout.fileno(), deadline)
        except TimeoutError:
            self._kill()
            raise SandboxTimeout(f"{self.function} exceeded {self.timeout_s:g} s") from None
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = self._kill()
            raise SandboxCrashed(f"worker running {self.function} died (exit code {code}): {exc}") from None
        if status == "ok":
            return value
        raise RuntimeError(value)

    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self._kill()
        env = dict(os.environ, **self.env, WINNOW_SANDBOX_MEMORY_MB=str(self.memory_limit_mb))
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.restarts += 1
        try:  # the per-input timeout starts once the child has imported the function and said so
            _, notes = _read_frame(self._proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S)
        except (TimeoutError, EOFError, OSError) as exc:
            code = self._kill()
            raise SandboxCrashed(f"worker for {self.function} died while starting (exit code {code}): {exc}") from None
        for note in notes:
            warnings.warn(f"{self.function}: {note}", WorkerWarning, stacklevel=2)

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.kill()
        return proc.wait()


def _write_frame(stream: Any, obj: Any) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


def _worker(function: str) -> None:
    """Child loop: import ``function``, then read argument frames, answer ("ok", result) or ("error", message)."""
    import gc
    import importlib
    import logging
    import resource

    limit = int(os.environ.get("WINNOW_SANDBOX_MEMORY_MB", "2048")) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the frame stream

    # run as ``python -m`` this module is __main__: the class a worker's function warns with is the package's
    from winnow.pipeline.sandbox import WorkerWarning as NoteClass

    module, _, name = function.partition(":")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoteClass)
        target = getattr(importlib.import_module(module), name)
    logging.disable(logging.CRITICAL)
    # what the import made lives as long as the worker: leave it out of the cyclic collector's passes
    # (on the extraction worker they took ~4% of its CPU, walking trafilatura's and lxml's objects)
    gc.freeze()
    _write_frame(out, ("ready", [str(w.message) for w in caught if issubclass(w.category, NoteClass)]))
    fd = sys.stdin.fileno()
    while True:
        try:
            args = _read_frame(fd, None)
        except EOFError:
            return
        try:
            _write_frame(out, ("ok", target(*args)))
        except MemoryError:
            _write_frame(out, ("error", f"MemoryError: the input exceeds the worker's memory cap of {limit >> 20} MB"))
        except Exception as exc:
            _write_frame(out, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    _worker(sys.argv[1])
