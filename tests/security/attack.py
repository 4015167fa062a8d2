"""What every attack test needs: raw HTTP with any body and content type, a time bound on each
answer, and the PIDs of a server's worker processes (a crashed or restarted worker changes them)."""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# No answer may take longer than this, however hostile the request.
ANSWER_BOUND_S = 15.0


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    @property
    def json(self):
        return json.loads(self.body)

    def error(self) -> tuple[str, str]:
        """(error_code, message) of an error answer in MLflow's shape."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        payload = self.json
        return payload["error_code"], payload["message"]


def send(
    base_url: str,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    *,
    key: str | None = None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = ANSWER_BOUND_S,
) -> Answer:
    """One request exactly as given (``body`` a dict is JSON-encoded once); the answer within bound."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    if isinstance(data, str):
        data = data.encode()
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    if content_type is not None and data is not None:
        sent["Content-Type"] = content_type
    started = time.monotonic()
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    seconds = time.monotonic() - started
    assert seconds < timeout, f"{method} {path} took {seconds:.1f} s"
    return Answer(response.status, payload, {k.lower(): v for k, v in response.getheaders()}, seconds)


def process_tree(root_pid: int) -> set[int]:
    """The PIDs of ``root_pid``'s process group (the server and its workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, [2] the process group
        if int(fields[2]) == root_pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def worker_pids(server) -> set[int]:
    """The PIDs of a running MlflowServerProcess's processes (supervisor and workers)."""
    pids = process_tree(server._process.pid)
    assert len(pids) >= 2, f"server {server.url} has no workers: {pids}"
    return pids


def assert_workers_alive(server, pids: set[int], why: str = "a worker crashed or was restarted") -> None:
    """Every process ``pids`` named is still running: none died, none was replaced.

    A subset, not equality: the server may start helpers of its own (MLflow's job runner) meanwhile.
    """
    gone = pids - worker_pids(server)
    assert not gone, f"{why}: {sorted(gone)} no longer run"
