"""A throttling HTTP proxy for tests: answers ``503 SlowDown`` to a seeded share of requests, forwards the rest.

:class:`ThrottleProxy` listens on a free loopback port in a thread of the test process and sits in
front of an S3-compatible server (moto): clients point ``AWS_ENDPOINT_URL`` at it. Each request is
read whole; with probability ``share`` (a seeded ``random.Random``, so a run sees the same sequence of
decisions) it gets S3's throttling answer (status 503, error code ``SlowDown``), otherwise it is
sent on to the server and its answer relayed. ``throttled`` and ``forwarded`` count both kinds.
"""

from __future__ import annotations

import http.client
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.server_process import free_port

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class ThrottleProxy:
    """Proxy on 127.0.0.1 in front of ``upstream`` (host:port), throttling ``share`` of requests (seeded)."""

    def __init__(self, upstream_port: int, share: float = 0.2, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.share = share
        self.port = free_port()
        self.throttled = 0
        self.forwarded = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.decide():
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"expect"}}
                connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():  # a HEAD answer keeps the object's Content-Length
                    if key.lower() not in HOP_BY_HOP | ({"content-length"} if self.command != "HEAD" else set()):
                        self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def decide(self) -> bool:
        """Whether the next request is throttled (and count it)."""
        with self._lock:
            throttle = self._random.random() < self.share
            if throttle:
                self.throttled += 1
            else:
                self.forwarded += 1
            return throttle

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
