"""Remote reads and writes (S3-compatible stores, HTTP(S) inputs): retries with exponential backoff and jitter, counted.

Every S3 client winnow makes (s3fs, through fsspec: inputs on ``s3://``, the run's store, the
filesystem DuckDB reads the store through) uses botocore's ``standard`` retry mode after
:func:`install`: a throttling answer (``503 SlowDown``, ``429``, ``RequestLimitExceeded``...), another
5xx, or a connection reset or timeout is retried, waiting a random time in ``[0, min(2**attempt, 20))``
seconds (full jitter), up to ``AWS_MAX_ATTEMPTS`` attempts in all (default :data:`MAX_ATTEMPTS`;
``AWS_RETRY_MODE`` picks another botocore mode). What still fails raises: a task's input becomes an
error record (``input_unreadable``), a write to the store stops the run (exit 3).

Every HTTP(S) client fsspec makes in this process (inputs on ``https://``, e.g. Common Crawl's
``data.commoncrawl.org``, and their ``warc.paths`` listings) gets an aiohttp client middleware after
:func:`install` (:func:`_http_retrying`): a ``GET`` or ``HEAD`` answered 429 or 5xx, or cut by a
connection reset, refusal or timeout, is sent again after the same full-jitter wait, up to
``WINNOW_HTTP_MAX_ATTEMPTS`` attempts (default :data:`MAX_ATTEMPTS`). The last answer is then handed to
fsspec as it came (it raises), or the last connection error re-raised: the reader makes the file an
error record (:func:`remote_errors`).

Each retry is counted in this process (:func:`retries`): the executor adds a unit's count to its
stats as ``remote_retries`` (so stats.json sums every task's), the runner records its own (listing
inputs, syncing the store) in run.json as ``remote_retries``; HTTP(S) retries count in the same counter.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import threading
from typing import Any

MAX_ATTEMPTS = 8
MAX_WAIT_S = 20.0  # botocore's cap on one wait
HTTP_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
HTTP_RETRIED_METHODS = frozenset({"GET", "HEAD"})  # reads only: a retried write could apply twice
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


@functools.cache
def remote_errors() -> tuple[type[BaseException], ...]:
    """What a remote read raises once its retries are spent, besides OSError (aiohttp's errors are not all one)."""
    try:
        import aiohttp
    except ImportError:
        return ()
    return (aiohttp.ClientError, TimeoutError)


def retries() -> int:
    """Retries of S3 and HTTP(S) requests made by this process so far."""
    return _count


def max_attempts() -> int:
    return int(os.environ.get("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)


def http_max_attempts() -> int:
    return max(1, int(os.environ.get("WINNOW_HTTP_MAX_ATTEMPTS") or MAX_ATTEMPTS))


def _count_retry() -> None:
    global _count
    with _lock:
        _count += 1


async def _http_retrying(request: Any, handler: Any) -> Any:
    """aiohttp client middleware: resend a read answered 429/5xx or cut by a connection error, waiting a random
    time in ``[0, min(2**attempt, 20))`` s before retry ``attempt + 1``; the last answer or error goes to the caller."""
    import aiohttp

    if request.method not in HTTP_RETRIED_METHODS:
        return await handler(request)
    for attempt in range(http_max_attempts() - 1):
        try:
            response = await handler(request)
        except (TimeoutError, aiohttp.ClientConnectionError):
            pass
        else:
            if response.status not in HTTP_RETRIED_STATUS:
                return response
            response.release()
        _count_retry()
        await asyncio.sleep(random.uniform(0, min(2.0**attempt, MAX_WAIT_S)))
    return await handler(request)  # the last attempt: its answer or error is the caller's


async def _http_client(**kwargs: Any) -> Any:
    """fsspec's ``get_client`` for http(s): an aiohttp session whose reads retry (:func:`_http_retrying`)."""
    import aiohttp

    return aiohttp.ClientSession(middlewares=(_http_retrying,), **kwargs)


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
    """Make counted retries the default of every HTTP(S) and S3 filesystem this process creates through
    fsspec (S3: botocore's standard mode; HTTP(S): :func:`_http_client`); S3 needs s3fs, HTTP(S) aiohttp."""
    global _installed
    if _installed:
        return
    try:
        import fsspec.config
    except ImportError:
        return
    if remote_errors():  # aiohttp is there: fsspec's http filesystem can be made
        fsspec.config.conf.setdefault("http", {}).setdefault("get_client", _http_client)
    try:
        import aiobotocore.session
    except ImportError:  # no s3fs: no S3 clients to configure
        _installed = True
        return
    session = aiobotocore.session.AioSession()
    session.register("needs-retry.s3", _counter, unique_id="winnow-retry-count")
    retry = {"mode": os.environ.get("AWS_RETRY_MODE") or "standard", "max_attempts": max_attempts()}
    defaults = fsspec.config.conf.setdefault("s3", {})
    defaults.setdefault("session", session)
    config = defaults.setdefault("config_kwargs", {})
    config.setdefault("retries", retry)
    _installed = True
