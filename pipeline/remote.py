"""Remote reads and writes on S3-compatible stores: retries with exponential backoff and jitter, counted.

Every S3 client winnow makes (s3fs, through fsspec: inputs on ``s3://``, the run's store, the
filesystem DuckDB reads the store through) uses botocore's ``standard`` retry mode after
:func:`install`: a throttling answer (``503 SlowDown``, ``429``, ``RequestLimitExceeded``...), another
5xx, or a connection reset or timeout is retried, waiting a random time in ``[0, min(2**attempt, 20))``
seconds (full jitter), up to ``AWS_MAX_ATTEMPTS`` attempts in all (default :data:`MAX_ATTEMPTS`;
``AWS_RETRY_MODE`` picks another botocore mode). What still fails raises: a task's input becomes an
error record (``input_unreadable``), a write to the store stops the run (exit 3).

Each retry is counted in this process (:func:`retries`): the executor adds a unit's count to its
stats as ``remote_retries`` (so stats.json sums every task's), the runner records its own (listing
inputs, syncing the store) in run.json as ``remote_retries``. HTTP(S) inputs are not covered.
"""

from __future__ import annotations

import os
import threading
from typing import Any

MAX_ATTEMPTS = 8
RETRIED_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
    }
)

_lock = threading.Lock()
_count = 0
_installed = False


def retries() -> int:
    """Retries of S3 requests made by this process so far."""
    return _count


def max_attempts() -> int:
    return int(os.environ.get("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)


def _counter(attempts: int = 0, response: Any = None, caught_exception: Any = None, **_: Any) -> None:
    """botocore's ``needs-retry`` event, before its retry handler decides: count an attempt it will retry."""
    global _count
    if attempts >= max_attempts():
        return
    retried = caught_exception is not None
    if response is not None:
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code")
        status = getattr(http, "status_code", 200)
        retried = retried or code in RETRIED_CODES or status == 429 or status >= 500
    if retried:
        with _lock:
            _count += 1


def install() -> None:
    """Make standard retries (and their count) the default of every S3 filesystem this process creates
    through fsspec; nothing to do without s3fs."""
    global _installed
    if _installed:
        return
    try:
        import aiobotocore.session
        import fsspec.config
    except ImportError:  # no s3fs: no S3 clients to configure
        return
    session = aiobotocore.session.AioSession()
    session.register("needs-retry.s3", _counter, unique_id="winnow-retry-count")
    retry = {"mode": os.environ.get("AWS_RETRY_MODE") or "standard", "max_attempts": max_attempts()}
    defaults = fsspec.config.conf.setdefault("s3", {})
    defaults.setdefault("session", session)
    config = defaults.setdefault("config_kwargs", {})
    config.setdefault("retries", retry)
    _installed = True
