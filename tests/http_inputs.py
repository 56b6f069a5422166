"""A flaky HTTP file server for tests: serves a folder with byte ranges, failing a seeded share of requests.

:class:`FlakyFileServer` listens on a free loopback port in a thread of the test process and serves the
files of ``folder`` as an HTTP server of inputs does (``HEAD`` with ``Content-Length``; ``GET`` with
``Range: bytes=a-b`` answered ``206``), the way fsspec's http filesystem reads Common Crawl's
``data.commoncrawl.org``. A request fails with probability ``share``: answered ``503 Slow Down``, ``429``
or, one time in four, its connection closed without an answer (a reset, as the client sees it). Whether a
request fails is a hash of the seed, the method, the path and how many times that method and path were
asked before, so a run sees the same failures whatever order its tasks' requests come in. Every request
for a name in ``always_failing`` is answered 503, every ``GET`` of one in ``failing_gets`` too (its ``HEAD``
is answered: the file opens, then cannot be read). ``failed`` and ``served`` count both kinds.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.server_process import free_port

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FlakyFileServer:
    """Serves ``folder`` on 127.0.0.1, failing ``share`` of requests (seeded) and every one for ``always_failing``."""

    def __init__(
        self,
        folder: Path,
        share: float = 0.2,
        seed: int = 0,
        always_failing: frozenset[str] = frozenset(),
        failing_gets: frozenset[str] = frozenset(),
    ) -> None:
        self.folder = Path(folder)
        self.share = share
        self.seed = seed
        self.always_failing = always_failing
        self.failing_gets = failing_gets
        self.port = free_port()
        self.failed = 0
        self.served = 0
        self._asked: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                name = self.path.lstrip("/")
                failure = server.decide(self.command, name)
                if failure == "reset":
                    self.close_connection = True
                    return
                if failure is not None:
                    self._answer(int(failure), b"Slow Down")
                    return
                path = server.folder / name
                if "/" in name or not path.is_file():
                    self._answer(404, b"not found")
                    return
                data = path.read_bytes()
                match = RANGE.match(self.headers.get("Range") or "")
                if match is None:
                    self._answer(200, data, {"Accept-Ranges": "bytes"})
                    return
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                if start >= len(data):
                    self._answer(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                self._answer(206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})

            do_GET = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def decide(self, method: str, name: str) -> str | None:
        """How this request fails ("503", "429", "reset") or None to serve it; counted."""
        with self._lock:
            nth = self._asked[(method, name)]
            self._asked[(method, name)] += 1
            draw = hashlib.sha256(f"{self.seed}\0{method}\0{name}\0{nth}".encode()).digest()
            failure: str | None = None
            if name in self.always_failing or (method == "GET" and name in self.failing_gets):
                failure = "503"
            elif int.from_bytes(draw[:8], "big") / 2**64 < self.share:
                failure = ("503", "503", "429", "reset")[draw[8] % 4]
            if failure is None:
                self.served += 1
            else:
                self.failed += 1
            return failure

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
