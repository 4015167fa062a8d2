"""Rate limits: real ``mlflow server --app-name hokusai`` processes, counters in the machine's Redis.

One 4-worker uvicorn server on Redis serves the exactness, bucket, identity and exemption tests
(each starts from an emptied Redis database); a 1-worker server checks the ``memory://`` default
and one refuses a bad limit string. The Redis-outage behaviour, the key function, the request
classes and the configuration checks run in-process on a bare Flask app (no server start needed).
Every client request opens a new connection, so concurrent requests spread over the workers.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import redis
from flask import Flask, g, jsonify

from mlflow_hokusai_plugin.demo.embedded_server import MlflowServerProcess, ServerStartError, free_port
from mlflow_hokusai_plugin.runtime.config import ConfigError
from mlflow_hokusai_plugin.runtime.uris import redact_uri
from mlflow_hokusai_plugin.server.rate_limits import (
    RateLimitSettings,
    install_rate_limits,
    rate_limit_key,
    rate_limit_storage_check,
    request_class,
)

REDIS = "redis://127.0.0.1:6379"
READ, WRITE, REGISTER = 40, 10, 3
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
REFUSAL_TIMEOUT_S = 30.0
LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def call(server, method: str, path: str, *, source: str = "127.0.0.1", body: dict | None = None) -> Reply:
    """One request on a new connection from ``source`` (any 127.0.0.0/8 address works on Linux)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30, source_address=(source, 0))
    try:
        headers = {"Connection": "close"}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def burst(server, count: int, path: str = SEARCH, *, source: str = "127.0.0.1") -> list[Reply]:
    """``count`` concurrent GETs, each on its own connection."""
    with ThreadPoolExecutor(max_workers=min(count, 60)) as pool:
        return list(pool.map(lambda _: call(server, "GET", path, source=source), range(count)))


def assert_limited_429(reply: Reply, limit: int, kind: str) -> None:
    assert reply.status == 429, reply
    body = reply.json()
    assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED", body
    assert kind in body["message"], body
    assert 1 <= int(reply.headers["retry-after"]) <= 60, reply.headers
    assert reply.headers["x-ratelimit-limit"] == str(limit)
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert int(reply.headers["x-ratelimit-reset"]) > time.time() - 1


def _free_redis_db() -> int:
    """An empty Redis database, so concurrent runs of this file do not share counters."""
    for db in range(15, 7, -1):
        if redis.Redis.from_url(f"{REDIS}/{db}").dbsize() == 0:
            return db
    pytest.fail("no empty Redis database among 8-15 on 127.0.0.1:6379")


@pytest.fixture(scope="module")
def redis_db() -> int:
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is required by the rate-limit tests ({REDIS}): {exc}", returncode=3)
    db = _free_redis_db()
    yield db
    redis.Redis.from_url(f"{REDIS}/{db}").flushdb()


@pytest.fixture(scope="module")
def redis_server(hokusai_servers, redis_db):
    """4 uvicorn workers sharing counters in Redis."""
    return hokusai_servers.start(
        "sqlite",
        workers=4,
        env={
            "HOKUSAI_RATELIMIT_STORAGE_URI": f"{REDIS}/{redis_db}",
            "HOKUSAI_RATELIMIT_READ": f"{READ}/minute",
            "HOKUSAI_RATELIMIT_WRITE": f"{WRITE}/minute",
            "HOKUSAI_RATELIMIT_REGISTER": f"{REGISTER}/minute",
        },
    )


@pytest.fixture()
def fresh(redis_server, redis_db):
    """The shared server with all its counters at zero."""
    redis.Redis.from_url(f"{REDIS}/{redis_db}").flushdb()
    return redis_server


# -- real servers ---------------------------------------------------------------------------------


def test_four_workers_on_redis_admit_exactly_the_limit(fresh):
    replies = burst(fresh, 3 * READ)
    statuses = Counter(reply.status for reply in replies)
    assert statuses == {200: READ, 429: 2 * READ}, statuses
    for reply in replies:
        if reply.status == 200:
            assert reply.headers["x-ratelimit-limit"] == str(READ)
            assert 0 <= int(reply.headers["x-ratelimit-remaining"]) < READ
            assert "retry-after" not in reply.headers
        else:
            assert_limited_429(reply, READ, "read")
    # Still closed: the window is a minute, not a burst.
    assert_limited_429(call(fresh, "GET", SEARCH), READ, "read")


def test_reads_writes_and_registrations_are_separate_buckets(fresh):
    assert Counter(r.status for r in burst(fresh, READ + 1)) == {200: READ, 429: 1}

    created = call(fresh, "POST", "/api/2.0/mlflow/experiments/create", body={"name": f"rl-{time.time_ns()}"})
    assert created.status == 200, created
    assert created.headers["x-ratelimit-limit"] == str(WRITE)
    assert created.headers["x-ratelimit-remaining"] == str(WRITE - 1)

    # Registrations: MLflow's model-version create under both prefixes and the Hokusai route
    # share one bucket. The requests are refused (no such model) but they count.
    register_paths = [
        "/api/2.0/mlflow/model-versions/create",
        "/ajax-api/2.0/mlflow/model-versions/create",
        "/api/2.0/hokusai/models/register",
    ]
    for used, path in enumerate(register_paths, start=1):
        reply = call(fresh, "POST", path, body={"name": "no-such-model", "source": "s3://x/y"})
        assert reply.status != 429, reply
        assert reply.headers["x-ratelimit-limit"] == str(REGISTER), (path, reply.headers)
        assert reply.headers["x-ratelimit-remaining"] == str(REGISTER - used)
    assert_limited_429(
        call(fresh, "POST", "/api/2.0/mlflow/model-versions/create", body={"name": "no-such-model"}),
        REGISTER,
        "register",
    )

    # Writes were not touched by the registrations, reads are still closed.
    updated = call(fresh, "POST", "/api/2.0/mlflow/experiments/create", body={"name": f"rl-{time.time_ns()}"})
    assert updated.status == 200, updated
    assert updated.headers["x-ratelimit-remaining"] == str(WRITE - 2)
    assert_limited_429(call(fresh, "GET", SEARCH), READ, "read")


def test_each_client_address_has_its_own_budget(fresh):
    assert Counter(r.status for r in burst(fresh, READ + 5)) == {200: READ, 429: 5}
    other = call(fresh, "GET", SEARCH, source="127.0.0.2")
    assert other.status == 200, other
    assert other.headers["x-ratelimit-remaining"] == str(READ - 1)
    assert Counter(r.status for r in burst(fresh, READ + 5, source="127.0.0.2")) == {200: READ - 1, 429: 6}
    assert call(fresh, "GET", SEARCH).status == 429
    assert call(fresh, "GET", SEARCH, source="127.0.0.3").status == 200


def test_health_ui_and_preflight_are_never_limited(fresh):
    assert Counter(r.status for r in burst(fresh, READ + 1)) == {200: READ, 429: 1}
    probes = ["/health", "/api/2.0/hokusai/health/live", "/ajax-api/2.0/hokusai/health/live"]
    for path in probes:
        for reply in burst(fresh, 5, path):
            assert reply.status == 200, (path, reply)
            assert not any(h in reply.headers for h in LIMIT_HEADERS), (path, reply.headers)
    for reply in burst(fresh, 3, "/api/2.0/hokusai/health/ready"):
        assert reply.status in (200, 503), reply  # readiness answers; it is never 429
        assert not any(h in reply.headers for h in LIMIT_HEADERS), reply.headers
    index = call(fresh, "GET", "/")
    assert index.status != 429 and "x-ratelimit-limit" not in index.headers, index
    preflight = call(fresh, "OPTIONS", SEARCH)
    assert preflight.status != 429 and "x-ratelimit-limit" not in preflight.headers, preflight


def test_memory_storage_is_the_default_and_limits_one_worker(hokusai_servers):
    limit = 5
    server = hokusai_servers.start("sqlite", workers=1, env={"HOKUSAI_RATELIMIT_READ": f"{limit}/minute"})
    try:
        # MLflow's routes and the Hokusai routes draw from the same read bucket.
        paths = [SEARCH, "/api/2.0/hokusai/attestations?model_id=m/1"] * limit
        replies = [call(server, "GET", path) for path in paths[: limit + 2]]
        assert [r.status for r in replies] == [200] * limit + [429, 429], replies
        assert [r.headers["x-ratelimit-remaining"] for r in replies[:limit]] == [
            str(limit - n) for n in range(1, limit + 1)
        ]
        assert_limited_429(replies[-1], limit, "read")
        written = call(server, "POST", "/api/2.0/mlflow/experiments/create", body={"name": "rl-memory"})
        assert written.status == 200 and written.headers["x-ratelimit-limit"] == "300", written
        assert call(server, "GET", "/health").status == 200
    finally:
        server.stop()


def test_a_bad_limit_string_stops_the_server(hokusai_servers, monkeypatch):
    original = MlflowServerProcess.start
    monkeypatch.setattr(
        MlflowServerProcess, "start", lambda self, timeout=90.0: original(self, REFUSAL_TIMEOUT_S)
    )
    started = time.monotonic()
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start("sqlite", workers=1, env={"HOKUSAI_RATELIMIT_WRITE": "lots/minute"})
    message = str(raised.value)
    assert "HOKUSAI_RATELIMIT_WRITE='lots/minute' is not a rate limit" in message, message[-2000:]
    assert "exited with code 1." in message, message[:300]
    assert time.monotonic() - started < REFUSAL_TIMEOUT_S


# -- in-process: outage, identity, classes, configuration -----------------------------------------


def bare_app(monkeypatch, storage_uri: str, **limits: str) -> tuple[Flask, object]:
    for name in ("READ", "WRITE", "REGISTER", "ENABLED"):
        monkeypatch.delenv(f"HOKUSAI_RATELIMIT_{name}", raising=False)
    for name, value in limits.items():
        monkeypatch.setenv(f"HOKUSAI_RATELIMIT_{name.upper()}", value)
    app = Flask("rate-limit-test")

    @app.route("/api/2.0/mlflow/experiments/search", methods=["GET", "POST"])
    def search():
        return jsonify({"experiments": []})

    @app.before_request
    def authenticate():  # like the auth hook: registered before the limiter's
        from flask import request

        key = request.headers.get("X-Test-Key")
        g.hokusai_principal = SimpleNamespace(name=f"key:{key}") if key else None

    limiter = install_rate_limits(app, SimpleNamespace(ratelimit_storage_uri=storage_uri))
    return app, limiter


def test_redis_outage_degrades_to_per_worker_limits_and_never_500(monkeypatch):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app, limiter = bare_app(monkeypatch, dead, read="3/minute")
    client = app.test_client()
    statuses = [client.get("/api/2.0/mlflow/experiments/search").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = client.get("/api/2.0/mlflow/experiments/search")
    assert refused.get_json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" and refused.headers["Retry-After"]
    check = rate_limit_storage_check(limiter)
    assert check["ok"] is False and check["degraded"] is True and check["shared"] is True, check


def test_storage_check_reports_reachable_redis_memory_and_disabled(monkeypatch, redis_db):
    _, limiter = bare_app(monkeypatch, f"redis://127.0.0.1:6379/{redis_db}")
    check = rate_limit_storage_check(limiter)
    assert check["ok"] is True and check["shared"] is True and "degraded" not in check, check
    assert redact_uri("rediss://app:s3cret@cache:6380/1") == "rediss://app:***@cache:6380/1"
    _, limiter = bare_app(monkeypatch, "memory://")
    assert rate_limit_storage_check(limiter) | {"limits": None} == {
        "ok": True,
        "enabled": True,
        "storage": "memory://",
        "shared": False,
        "strategy": "moving-window",
        "limits": None,
    }
    app, limiter = bare_app(monkeypatch, "memory://", read="1/minute", enabled="0")
    assert rate_limit_storage_check(limiter) == {"ok": True, "enabled": False}
    replies = [app.test_client().get("/api/2.0/mlflow/experiments/search") for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 3 and "X-RateLimit-Limit" not in replies[0].headers


def test_the_key_is_the_principal_when_authenticated_else_the_address(monkeypatch):
    app, _ = bare_app(monkeypatch, "memory://", read="2/minute")
    client = app.test_client()
    for _ in range(2):
        assert client.get("/api/2.0/mlflow/experiments/search").status_code == 200
    assert client.get("/api/2.0/mlflow/experiments/search").status_code == 429
    # Same address, but authenticated: the principal's own bucket.
    assert client.get("/api/2.0/mlflow/experiments/search", headers={"X-Test-Key": "hk_a"}).status_code == 200
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert rate_limit_key() == "ip:10.1.2.3"
        g.hokusai_principal = SimpleNamespace(name="user:alice")
        assert rate_limit_key() == "user:alice"
        g.hokusai_principal = None
        assert rate_limit_key() == "ip:10.1.2.3"


@pytest.fixture(scope="module")
def routed_app():
    """MLflow's Flask app with the Hokusai blueprints: requests are matched to their real rules."""
    from mlflow.server import app

    from mlflow_hokusai_plugin.server import api_views, views

    for blueprint in (views.blueprint, api_views.blueprint):
        if blueprint.name not in app.blueprints:
            app.register_blueprint(blueprint)
    return app


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/api/2.0/mlflow/experiments/search", None, "read"),
        ("HEAD", "/api/2.0/mlflow/runs/get", None, "read"),
        ("GET", "/api/2.0/hokusai/attestations", None, "read"),
        # Declared reads, whatever their method.
        ("POST", "/api/2.0/mlflow/runs/search", {}, "read"),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete", {}, "write"),
        ("PATCH", "/ajax-api/2.0/mlflow/model-versions/update", {}, "write"),
        ("POST", "/api/2.0/mlflow/registered-models/create", {}, "write"),
        ("POST", "/api/2.0/mlflow/model-versions/create", {}, "register"),
        ("POST", "/ajax-api/2.0/mlflow/model-versions/create", {}, "register"),
        ("POST", "/api/2.0/hokusai/models/register", {}, "register"),
        ("POST", "/ajax-api/2.0/hokusai/models/register", {}, "register"),
        # A Hokusai tag on a version may attest it: a registration; another tag is a write.
        (
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": "m", "version": "1", "key": "hokusai.baseline", "value": "m/1"},
            "register",
        ),
        (
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": "m", "version": "1", "key": "Hokusai.Baseline ", "value": "m/1"},
            "register",
        ),
        (
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": "m", "version": "1", "key": "team", "value": "ml"},
            "write",
        ),
        # No route: its method's class.
        ("GET", "/api/2.0/mlflow/model-versions/create", None, "read"),
        ("POST", "/api/2.0/mlflow/no-such-route", {}, "write"),
        ("OPTIONS", "/api/2.0/mlflow/model-versions/create", None, None),
        ("GET", "/health", None, None),
        ("GET", "/api/2.0/hokusai/health/live", None, None),
        ("GET", "/ajax-api/2.0/hokusai/health/ready", None, None),
    ],
)
def test_request_classes(routed_app, method, path, body, expected):
    with routed_app.test_request_context(path, method=method, json=body):
        assert request_class() == expected


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("HOKUSAI_RATELIMIT_READ", "lots", "is not a rate limit"),
        ("HOKUSAI_RATELIMIT_WRITE", "10/fortnight", "is not a rate limit"),
        ("HOKUSAI_RATELIMIT_REGISTER", "0/minute", "at least 1 request"),
        ("HOKUSAI_RATELIMIT_ENABLED", "maybe", "expected 1 or 0"),
    ],
)
def test_bad_settings_name_their_variable(variable, value, complaint):
    with pytest.raises(ConfigError) as raised:
        RateLimitSettings.from_env({variable: value})
    assert str(raised.value).startswith(f"{variable}={value!r}") and complaint in str(raised.value)


def test_settings_defaults_and_bad_storage(monkeypatch):
    settings = RateLimitSettings.from_env({})
    assert settings.enabled and settings.storage_uri == "memory://" and not settings.shared
    assert dict(settings.limits) == {"read": "1200/minute", "write": "300/minute", "register": "60/minute"}
    assert RateLimitSettings.from_env({"HOKUSAI_RATELIMIT_READ": "10/second;100/minute"}).limits["read"]
    with pytest.raises(ConfigError, match="HOKUSAI_RATELIMIT_STORAGE_URI='reddis://h:6379'"):
        bare_app(monkeypatch, "reddis://h:6379")
