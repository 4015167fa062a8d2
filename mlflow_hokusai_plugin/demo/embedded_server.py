"""Start and stop a real ``mlflow server`` process.

The demo runs against one (SQLite and local artifacts), and the integration tests run against one
(PostgreSQL and S3 over HTTP). Both need the same things: a free port, a readiness wait that fails
with the server's own log when it does not come up, and a clean stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar


class ServerStartError(RuntimeError):
    """The server process exited or did not answer ``/health`` in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now.

    >>> 1024 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MlflowServerProcess:
    """One ``mlflow server`` subprocess.

    Example::

        with MlflowServerProcess("sqlite:///mlflow.db", "./artifacts") as server:
            mlflow.set_tracking_uri(server.url)
    """

    # Started and not yet stopped, in this process: what stop_all() ends.
    _running: ClassVar[set[MlflowServerProcess]] = set()

    def __init__(
        self,
        backend_store_uri: str,
        artifacts_destination: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        app_name: str | None = None,
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = artifacts_destination
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.app_name = app_name
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args)
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        return cmd + self.extra_args

    def start(self, timeout: float = 90.0) -> MlflowServerProcess:
        env = {**os.environ, **self.env}
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log_file
        else:
            out = subprocess.DEVNULL
        # A session of its own, so stop() can signal the workers uvicorn/gunicorn fork.
        self._process = subprocess.Popen(
            self.command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        MlflowServerProcess._running.add(self)
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()  # a failed or interrupted start leaves nothing running
            raise
        return self

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"mlflow server exited with code {self._process.returncode}.{self._log_tail()}"
                )
            if self.is_healthy():
                return
            time.sleep(0.25)
        raise ServerStartError(f"mlflow server did not answer /health in {timeout}s.{self._log_tail()}")

    @classmethod
    def stop_all(cls) -> None:
        """Stop every server this process started and has not stopped (a SIGTERM handler's job)."""
        for server in list(cls._running):
            server.stop()

    def is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        MlflowServerProcess._running.discard(self)
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        MlflowServerProcess._running.discard(self)
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\nLast lines of the server log:\n" + "\n".join(tail)

    def __enter__(self) -> MlflowServerProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
