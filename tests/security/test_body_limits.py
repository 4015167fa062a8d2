"""Request body limits under attack, on real servers: size and JSON depth, before any parsing.

Before the limits, one unauthenticated request killed a worker: ``[`` * 100000 overflowed the C
stack of the JSON parser in the API-key hook or in MLflow's handlers (a segfault), and a body of
hundreds of MB was held whole in memory. Each test sends the attack to real servers (uvicorn,
where Flask sits behind MLflow's FastAPI app, and gunicorn, where Flask is served alone), checks
the answer (status and MLflow's error shape, within a time bound), and that the same worker
processes still serve afterwards: a crashed worker is restarted under a new PID.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import select
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient

from mlflow_hokusai_plugin.demo.embedded_server import ServerStartError
from tests.integration.test_auth import make_key
from tests.security.attack import Answer, assert_workers_alive, send, worker_pids

MiB = 1024 * 1024
SMALL_LIMIT = MiB
# Every answer, however hostile the request, comes within this.
BOUND_S = 10.0
DEPTH = 100_000

# A deep body, raw and wrapped in a JSON string (MLflow decodes a string body a second time),
# and in UTF-16 (json.loads, and so Flask, reads that too, lone surrogates included).
DEEP_BODIES = {
    "brackets": b"[" * DEPTH,
    "objects": b'{"a":' * DEPTH,
    "brackets-in-a-string": json.dumps("[" * DEPTH).encode(),
    "objects-in-a-string": json.dumps('{"a":' * DEPTH).encode(),
    "brackets-utf16": ("[" * DEPTH).encode("utf-16-le"),
    # A lone surrogate (json.loads decodes it) then U+2200, whose bytes hold a quote.
    "brackets-utf16-surrogate": ('["\ud800\u2200", ' + "[" * DEPTH).encode("utf-16-le", "surrogatepass"),
}
CONTENT_TYPES = ["application/json", "text/plain", None]
# Flask's routes (MLflow's and a public Hokusai one) for each method; the limits apply before
# routing, so an unknown path is as good a target as a real one.
FLASK_TARGETS = [
    ("POST", "/api/2.0/hokusai/attestations/verify"),
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("PATCH", "/api/2.0/mlflow/traces/tr-1/tags"),
    ("DELETE", "/api/2.0/mlflow/traces/tr-1/tags"),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/0/x.bin"),
]
# Routes FastAPI serves itself under uvicorn: Flask's limits never see them.
NATIVE_TARGETS = [
    ("POST", "/ajax-api/3.0/jobs/search"),
    ("PATCH", "/api/3.0/mlflow/mcp-servers/x"),
    ("DELETE", "/api/3.0/mlflow/mcp-servers/x"),
    ("GET", "/ajax-api/3.0/jobs/1"),
]


# -- helpers --------------------------------------------------------------------------------------


def bounded_send(server, method: str, path: str, body: bytes | None = None, **kwargs) -> Answer:
    return send(server.url, method, path, body, timeout=BOUND_S, **kwargs)


def assert_refused(answer: Answer, status: int, setting: str) -> None:
    """Our refusal: the status, MLflow's error shape, the setting named in the message."""
    assert answer.status == status, (answer.status, answer.body[:300])
    code, message = answer.error()
    assert code == ("REQUEST_TOO_LARGE" if status == 413 else "INVALID_PARAMETER_VALUE"), code
    assert setting in message, message


def assert_not_refused_by_limits(answer: Answer) -> None:
    assert answer.status != 413, answer.body[:300]
    assert b"HOKUSAI_MAX_" not in answer.body, answer.body[:300]


def raw_request(server, head: str, chunks=(), poll_between: bool = True) -> tuple[int, bytes, float]:
    """Send ``head`` (request line and headers) then ``chunks``; return (status, body, seconds).

    Between chunks it checks whether the server has answered already, and stops sending if so:
    a server that refuses early closes a connection the client is still writing to.
    """
    parts = urlsplit(server.url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=BOUND_S) as sock:
        sock.sendall(head.encode("latin-1"))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in chunks:
                if poll_between and select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(chunk)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in received or len(received) < _expected_length(received):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
    seconds = time.monotonic() - started
    assert seconds < BOUND_S, f"answered in {seconds:.1f} s"
    head_part, _, body = received.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), body, seconds


def _expected_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(received) + 1  # no length: read until the server closes


def chunked(body: bytes, size: int = 64 * 1024):
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def head(server, method: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@contextlib.contextmanager
def as_key(key: str):
    previous = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = previous


def new_run(server, key: str) -> str:
    with as_key(key):
        client = MlflowClient(server.url)
        experiment = client.create_experiment(f"limits-{uuid.uuid4().hex[:8]}")
        return client.create_run(experiment).info.run_id


def log_batch_of_size(run_id: str, size: int, char: str = "v") -> bytes:
    """A runs/log-batch at MLflow's own maximums, padded to exactly ``size`` bytes.

    100 params of 6000 characters, up to 100 tags of 8000, and 800 metrics with 250-character keys
    make MLflow's largest log-batch (1000 entities). Tags are dropped (then the last is shortened)
    until the body is exactly ``size`` bytes.
    """
    params = [{"key": f"p{i}", "value": char * 6000} for i in range(100)]
    metrics = [
        {"key": f"m{i:04d}".ljust(250, "k"), "value": i / 7, "timestamp": 1700000000000 + i, "step": i}
        for i in range(800)
    ]
    tags = [{"key": f"t{i}", "value": char * 8000} for i in range(100)]

    def encoded(tags_now):
        return json.dumps({"run_id": run_id, "params": params, "metrics": metrics, "tags": tags_now}).encode()

    while len(encoded(tags)) > size:
        tags.pop()
    tags.append({"key": "pad", "value": ""})
    short = size - len(encoded(tags))
    per_char = len(json.dumps(char)) - 2  # "é" is 6 bytes once escaped
    tags[-1]["value"] = char * (short // per_char) + "x" * (short % per_char)
    body = encoded(tags)
    assert len(body) == size, (len(body), size)
    return body


def settled_pids(server, workers: int = 2, timeout: float = 90.0) -> set[int]:
    """The server's PIDs once ``workers`` workers have started and are alive.

    A worker can still be starting when /health first answers, or die while starting and be
    replaced (in basic-auth mode on SQLite, MLflow's two workers race to create its auth tables):
    the baseline is taken after that, so a changed PID later means a crash under attack.
    """
    started_lines = ("Started server process [", "Booting worker with pid: ")
    deadline = time.monotonic() + timeout
    previous: set[int] = set()
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        log = server.log_path.read_text(errors="replace")
        started = {
            int(line.split(marker, 1)[1].split("]", 1)[0].strip())
            for line in log.splitlines()
            for marker in started_lines
            if marker in line
        }
        if len(started & pids) >= workers and pids == previous:
            return pids
        previous = pids
        time.sleep(1.0)
    raise AssertionError(f"{server.url}: {workers} workers did not settle in {timeout} s")


# -- servers --------------------------------------------------------------------------------------


class Target:
    """A server under attack, with a write key, and the PIDs of its processes when it started."""

    def __init__(self, server, name: str, gunicorn: bool, limit: int) -> None:
        self.server, self.name, self.gunicorn, self.limit = server, name, gunicorn, limit
        self.key = make_key(server.store_uri, "write")
        self.pids = settled_pids(server)

    @property
    def url(self) -> str:
        return self.server.url

    def assert_workers_unchanged(self) -> None:
        assert_workers_alive(self.server, self.pids, "a worker died or was restarted")


def _start(hokusai_servers, name: str, gunicorn: bool, limit: int | None) -> Target:
    env = {"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": ""}
    if limit is not None:
        env["HOKUSAI_MAX_BODY_BYTES"] = str(limit)
    server = hokusai_servers.start("postgresql", workers=2, gunicorn=gunicorn, env=env)
    return Target(server, name, gunicorn, limit or 16 * MiB)


@pytest.fixture(scope="module")
def uvicorn_default(hokusai_servers):
    """uvicorn, 2 workers, the default limits (16 MiB, depth 64)."""
    return _start(hokusai_servers, "uvicorn", gunicorn=False, limit=None)


@pytest.fixture(scope="module")
def uvicorn_small(hokusai_servers):
    """uvicorn, 2 workers, HOKUSAI_MAX_BODY_BYTES=1 MiB."""
    return _start(hokusai_servers, "uvicorn-1MiB", gunicorn=False, limit=SMALL_LIMIT)


@pytest.fixture(scope="module")
def gunicorn_small(hokusai_servers):
    """gunicorn (Flask alone), 2 workers, HOKUSAI_MAX_BODY_BYTES=1 MiB."""
    return _start(hokusai_servers, "gunicorn-1MiB", gunicorn=True, limit=SMALL_LIMIT)


# Servers are started only when a test asks for them (getfixturevalue), so that running one
# parameter does not start the other's server.
@pytest.fixture(params=["uvicorn", "gunicorn"])
def any_small(request):
    """Each 1 MiB server in turn."""
    return request.getfixturevalue("uvicorn_small" if request.param == "uvicorn" else "gunicorn_small")


@pytest.fixture(params=["uvicorn", "gunicorn"])
def any_server(request):
    """The default-limits uvicorn server, then the gunicorn one."""
    return request.getfixturevalue("uvicorn_default" if request.param == "uvicorn" else "gunicorn_small")


# -- depth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "with-key"])
def test_deep_json_is_refused_on_every_method_and_content_type(any_server, authenticated):
    """100000 levels, raw, in a JSON string or in UTF-16, as JSON, text or untyped, on POST,
    PATCH, DELETE and GET, to MLflow's and Hokusai's Flask routes (and FastAPI's own under
    uvicorn): a 400 naming HOKUSAI_MAX_JSON_DEPTH each time, and no worker dies."""
    targets = FLASK_TARGETS + ([] if any_server.gunicorn else NATIVE_TARGETS)
    key = any_server.key if authenticated else None
    for (method, path), (shape, body), content_type in [
        (t, b, c) for t in targets for b in DEEP_BODIES.items() for c in CONTENT_TYPES
    ]:
        answer = bounded_send(any_server, method, path, body, key=key, content_type=content_type)
        try:
            assert_refused(answer, 400, "HOKUSAI_MAX_JSON_DEPTH")
        except AssertionError as failure:
            raise AssertionError(f"{method} {path} {shape} {content_type}: {failure}") from None
    any_server.assert_workers_unchanged()


def test_json_within_the_depth_limit_is_served(any_server):
    """64 levels (the default) pass the limits on a route whose body may hold any JSON value."""
    run_id = new_run(any_server, any_server.key)
    # A log-batch of depth 3 logs; a value nested 64 deep passes the limits (MLflow refuses the
    # shape itself), 65 levels do not.
    batch = {"run_id": run_id, "params": [{"key": "nested", "value": "[" * 200}]}
    assert (
        bounded_send(
            any_server, "POST", "/api/2.0/mlflow/runs/log-batch", json.dumps(batch), key=any_server.key
        ).status
        == 200
    )
    fits = {
        "run_id": run_id,
        "params": [{"key": "x", "value": "1"}],
        "extra": json.loads("[" * 62 + "]" * 62),
    }
    assert_not_refused_by_limits(
        bounded_send(
            any_server, "POST", "/api/2.0/mlflow/runs/log-batch", json.dumps(fits), key=any_server.key
        )
    )
    too_deep = json.dumps({"run_id": run_id, "extra": json.loads("[" * 64 + "]" * 64)})
    assert_refused(
        bounded_send(any_server, "POST", "/api/2.0/mlflow/runs/log-batch", too_deep, key=any_server.key),
        400,
        "HOKUSAI_MAX_JSON_DEPTH",
    )
    with as_key(any_server.key):
        assert MlflowClient(any_server.url).get_run(run_id).data.params["nested"] == "[" * 200
    any_server.assert_workers_unchanged()


# -- size -----------------------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(any_small):
    """Only the headers are sent: the 413 comes without the server waiting for a byte of body,
    on MLflow's routes, the public verify route, and (uvicorn) FastAPI's own routes."""
    paths = ["/api/2.0/mlflow/runs/log-batch", "/api/2.0/hokusai/attestations/verify"]
    if not any_small.gunicorn:
        paths += ["/ajax-api/3.0/jobs/search", "/v1/traces"]
    for path in paths:
        for key in (None, any_small.key):
            headers = {"Content-Type": "application/json", "Content-Length": str(500 * MiB)}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            status, body, _ = raw_request(any_small, head(any_small, "POST", path, headers))
            assert status == 413, (path, body[:200])
            payload = json.loads(body)
            assert payload["error_code"] == "REQUEST_TOO_LARGE"
            assert "HOKUSAI_MAX_BODY_BYTES" in payload["message"] and str(SMALL_LIMIT) in payload["message"]
    any_small.assert_workers_unchanged()


def test_a_chunked_body_is_counted_as_it_arrives(any_small):
    """No Content-Length to trust: the server counts what it reads and stops past the limit."""
    for key in (None, any_small.key):
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        endless = chunked(b'{"run_id": "' + b"x" * (40 * MiB) + b'"}')
        status, body, _ = raw_request(
            any_small, head(any_small, "POST", "/api/2.0/mlflow/runs/log-batch", headers), endless
        )
        assert status == 413, body[:200]
        assert json.loads(body)["error_code"] == "REQUEST_TOO_LARGE"
    any_small.assert_workers_unchanged()


def test_a_chunked_body_under_the_limit_still_reaches_mlflow(gunicorn_small):
    """The bytes counted are the bytes Flask reads (gunicorn de-chunks for Flask; MLflow's
    bridge under uvicorn hands Flask no chunked body at all, limits or not)."""
    run_id = new_run(gunicorn_small, gunicorn_small.key)
    batch = json.dumps({"run_id": run_id, "params": [{"key": "chunked", "value": "yes"}]}).encode()
    headers = {
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
        "Authorization": f"Bearer {gunicorn_small.key}",
        "Connection": "close",
    }
    status, body, _ = raw_request(
        gunicorn_small,
        head(gunicorn_small, "POST", "/api/2.0/mlflow/runs/log-batch", headers),
        chunked(batch, 7),
    )
    assert status == 200, body
    with as_key(gunicorn_small.key):
        assert MlflowClient(gunicorn_small.url).get_run(run_id).data.params["chunked"] == "yes"


def test_a_log_batch_of_exactly_the_limit_is_logged(any_small):
    """1 MiB exactly (a real log-batch: 100 long params, tags, 800 metrics) passes; one byte
    more, declared, is refused."""
    run_id = new_run(any_small, any_small.key)
    body = log_batch_of_size(run_id, SMALL_LIMIT)
    answer = bounded_send(any_small, "POST", "/api/2.0/mlflow/runs/log-batch", body, key=any_small.key)
    assert answer.status == 200, answer.body[:300]
    with as_key(any_small.key):
        data = MlflowClient(any_small.url).get_run(run_id).data
    assert len(data.params) == 100 and len(data.metrics) == 800 and "pad" in data.tags
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(SMALL_LIMIT + 1),
        "Authorization": f"Bearer {any_small.key}",
    }
    status, _, _ = raw_request(any_small, head(any_small, "POST", "/api/2.0/mlflow/runs/log-batch", headers))
    assert status == 413
    any_small.assert_workers_unchanged()


def test_the_default_limit_fits_mlflows_largest_log_batch_fully_escaped(uvicorn_default):
    """MLflow's largest log-batch (1000 entities at their maximum lengths) with every character
    escaped as \\uXXXX is about 9 MB: under the default 16 MiB, it is logged."""
    run_id = new_run(uvicorn_default, uvicorn_default.key)
    params = [{"key": f"p{i}", "value": "é" * 6000} for i in range(100)]
    tags = [{"key": f"t{i}", "value": "é" * 8000} for i in range(100)]
    metrics = [
        {"key": f"m{i:04d}".ljust(250, "k"), "value": 1.0, "timestamp": 1, "step": i} for i in range(800)
    ]
    body = json.dumps({"run_id": run_id, "params": params, "tags": tags, "metrics": metrics}).encode()
    assert 8 * MiB < len(body) < 16 * MiB
    answer = bounded_send(
        uvicorn_default, "POST", "/api/2.0/mlflow/runs/log-batch", body, key=uvicorn_default.key
    )
    assert answer.status == 200, answer.body[:300]
    with as_key(uvicorn_default.key):
        assert MlflowClient(uvicorn_default.url).get_run(run_id).data.tags["t99"] == "é" * 8000
    uvicorn_default.assert_workers_unchanged()


# -- what is not JSON -----------------------------------------------------------------------------


def test_an_artifact_larger_than_the_limit_still_uploads_and_streams(any_small, tmp_path):
    """3 MiB through mlflow.log_artifact, with a 1 MiB body limit: artifact uploads stream to the
    store and are not subject to it (FastAPI's route under uvicorn, Flask's under gunicorn)."""
    run_id = new_run(any_small, any_small.key)
    payload = os.urandom(3 * MiB)
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    with as_key(any_small.key):
        client = MlflowClient(any_small.url)
        client.log_artifact(run_id, str(source))
        fetched = client.download_artifacts(run_id, "weights.bin", str(tmp_path / "back"))
    assert hashlib.sha256(open(fetched, "rb").read()).digest() == hashlib.sha256(payload).digest()
    # A raw PUT too, anonymous: refused by the API-key check, not by the limits.
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(payload))}
    put = head(any_small, "PUT", "/api/2.0/mlflow-artifacts/artifacts/0/anon.bin", headers)
    status, body, _ = raw_request(any_small, put, [payload[i : i + MiB] for i in range(0, len(payload), MiB)])
    assert status == 401, body[:200]
    any_small.assert_workers_unchanged()


def test_otlp_protobuf_gets_the_size_limit_but_not_the_depth_scan(uvicorn_default):
    """/v1/traces carries protobuf, whose bytes may be anything: no depth scan unless it says it
    is JSON; the size limit applies, to what a gzip body inflates to as well."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    target, key = uvicorn_default, uvicorn_default.key
    with as_key(key):
        experiment_id = MlflowClient(target.url).create_experiment(f"otlp-{uuid.uuid4().hex[:8]}")
    headers = {"x-mlflow-experiment-id": experiment_id}
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    # Random ids, but without a "[" byte of their own, so the count below is exactly the name's.
    span.trace_id, span.span_id = (os.urandom(n).replace(b"[", b"]") for n in (16, 8))
    span.name = "[" * 5000
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
    protobuf = request.SerializeToString()
    assert protobuf.count(b"[") == 5000
    answer = bounded_send(
        target,
        "POST",
        "/v1/traces",
        protobuf,
        key=key,
        content_type="application/x-protobuf",
        headers=headers,
    )
    assert answer.status == 200, answer.body[:300]
    # The same, gzipped: inflated within the limit, and served.
    answer = bounded_send(
        target,
        "POST",
        "/v1/traces",
        gzip.compress(protobuf),
        key=key,
        content_type="application/x-protobuf",
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert answer.status == 200, answer.body[:300]
    # OTLP/JSON is JSON: scanned.
    deep = bounded_send(target, "POST", "/v1/traces", DEEP_BODIES["objects"], key=key, headers=headers)
    assert_refused(deep, 400, "HOKUSAI_MAX_JSON_DEPTH")
    deep_gzipped = bounded_send(
        target,
        "POST",
        "/v1/traces",
        gzip.compress(DEEP_BODIES["brackets"]),
        key=key,
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert_refused(deep_gzipped, 400, "HOKUSAI_MAX_JSON_DEPTH")
    # A gzip bomb: 40 KiB that inflate to 40 MiB. Anonymous, so refused before any key check.
    bomb = gzip.compress(b"\0" * (40 * MiB), compresslevel=9)
    assert len(bomb) < MiB
    answer = bounded_send(
        target,
        "POST",
        "/v1/traces",
        bomb,
        content_type="application/x-protobuf",
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert_refused(answer, 413, "HOKUSAI_MAX_BODY_BYTES")
    assert "decompressed" in answer.error()[1]
    target.assert_workers_unchanged()


# -- HOKUSAI_AUTH=basic ---------------------------------------------------------------------------


def test_basic_auth_mode_has_the_limits_too(hokusai_servers):
    """MLflow's basic-auth app (its own hooks parse bodies too, and under uvicorn its own FastAPI
    app is served): deep bodies are a 400 and long ones a 413 there as well."""
    server, _ = hokusai_servers.start_basic_auth("sqlite", workers=2)
    pids = settled_pids(server)
    for method, path in FLASK_TARGETS[:3] + NATIVE_TARGETS[:2]:
        for body in (DEEP_BODIES["brackets"], DEEP_BODIES["objects-in-a-string"]):
            assert_refused(
                send(server.url, method, path, body, timeout=BOUND_S), 400, "HOKUSAI_MAX_JSON_DEPTH"
            )
        headers = {"Content-Type": "application/json", "Content-Length": str(500 * MiB)}
        status, body, _ = raw_request(server, head(server, method, path, headers))
        assert status == 413, (path, body[:200])
    assert_workers_alive(server, pids)


# -- settings -------------------------------------------------------------------------------------


def test_a_refused_setting_stops_the_server(hokusai_servers):
    """``HOKUSAI_MAX_BODY_BYTES=abc``: ``mlflow server`` exits non-zero, naming the setting (the
    other refused values are in tests/unit/test_body_limits.py)."""
    started = time.monotonic()
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start(
            "sqlite",
            workers=2,
            env={"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": "", "HOKUSAI_MAX_BODY_BYTES": "abc"},
        )
    message = str(raised.value)
    assert "exited with code" in message and "exited with code 0." not in message, message[:300]
    assert "HOKUSAI_MAX_BODY_BYTES='abc'" in message and "positive whole number" in message
    # Refused in the `mlflow server` process, before any worker starts.
    assert time.monotonic() - started < 60


def test_a_string_field_a_handler_parses_cannot_crash_a_worker(uvicorn_default):
    """MLflow's log-model handler json.loads ``model_json``: 100000 levels inside the string pass
    the body's own depth scan (a string nests nothing), and used to overflow the C stack."""
    target = uvicorn_default
    run_id = new_run(target, target.key)
    attacks = [
        ("POST", "/api/2.0/mlflow/runs/log-model", {"run_id": run_id, "model_json": "[" * 100_000}),
        ("POST", "/api/2.0/mlflow/runs/log-model", {"run_id": run_id, "model_json": '{"a":' * 100_000}),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-model",
            # Closing brackets in an inner string first, which a bracket count would net out.
            {"run_id": run_id, "model_json": '["' + "]" * 1000 + '", ' + "[" * 100_000},
        ),
    ]
    for method, path, body in attacks:
        answer = bounded_send(target, method, path, json.dumps(body).encode(), key=target.key)
        assert answer.status == 400, answer
        assert answer.json["error_code"] == "INVALID_PARAMETER_VALUE", answer
    target.assert_workers_unchanged()
