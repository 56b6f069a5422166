"""A canned-response OpenAI-compatible server, for what a real server will not do on demand.

``/v1/chat/completions`` answers from a script of ``(status, content, finish_reason)``: 200 with that
content, 500/429 errors (429 with ``Retry-After: 0``), 400 saying the prompt exceeds the context, or
status 0: no answer for 3 seconds (a request that times out). Every request body is kept in
``requests``. ``respond`` (a function of the request body) answers instead of the script, each after
``delay_s``; ``most_in_flight`` is the most requests the server was answering at once. The ``stub_llm``
fixture (tests/conftest.py) starts them and shuts them down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer:
    """An OpenAI-compatible /v1/chat/completions that answers from a script: (status, content, finish_reason);
    status 0 answers nothing for 3 seconds (a request that times out); 400 says the prompt is too long."""

    def __init__(
        self,
        script: list[tuple[int, str, str]],
        respond: Callable[[dict[str, Any]], tuple[int, str, str]] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.most_in_flight = 0
        in_flight = [0]
        lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                with lock:
                    in_flight[0] += 1
                    stub.most_in_flight = max(stub.most_in_flight, in_flight[0])
                time.sleep(delay_s)
                with lock:
                    in_flight[0] -= 1
                if respond is not None:
                    status, content, finish = respond(body)
                else:
                    status, content, finish = stub.script.pop(0) if stub.script else (500, "", "stop")
                if status == 0:
                    time.sleep(3)
                    status = 500
                answer = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }
                message = "the request exceeds the available context size" if status == 400 else "boom"
                data = json.dumps(answer if status == 200 else {"error": {"message": message}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
