"""A real S3-compatible server for tests: moto's standalone server on a free loopback port.

:class:`MotoServer` starts ``python -m moto.server`` as a child process (as s3fs's own test suite
does), waits until it answers, and can be killed (:meth:`kill`: its buckets are lost) and started
again on the same port (the fault tests).
moto keeps its buckets in memory, so a restarted server is empty unless the test re-creates them;
:meth:`MotoServer.env` gives the standard AWS variables (``AWS_ENDPOINT_URL`` and dummy credentials)
that s3fs, botocore and winnow read, and the only way credentials reach the code under test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.server_process import ServerProcess, free_port

ACCESS_KEY = "winnow-test-access-key"
SECRET_KEY = "winnow-test-secret-NOT-FOR-LOGS-5f3a9c"


def moto_available() -> bool:
    """Whether moto's server (``moto[server]``: flask, werkzeug) and s3fs are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("moto", "flask", "s3fs"))


class MotoServer(ServerProcess):
    """moto's S3 server as a child process on 127.0.0.1:``port`` (a free one unless given)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The AWS variables a client needs to reach this server (or ``endpoint``, e.g. a proxy in front)."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it answers HTTP."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (an error status is an answer)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout_s} s")

    def make_bucket(self, name: str) -> None:
        """Create bucket ``name`` (boto3, with this server's credentials)."""
        import boto3

        env = self.env()
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=name)
