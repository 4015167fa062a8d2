"""Guessing keys and attesting through tag writes are rate limited, on a real 2-worker server with
its counters shared in Redis (API-key mode)."""

from __future__ import annotations

import json
import os
import uuid

import mlflow
import pytest
from mlflow import MlflowClient

from tests.integration.test_auth import make_key
from tests.integration.test_server_plugin import log_candidate
from tests.integration.test_services import ALICE
from tests.security.attack import assert_workers_alive, send, worker_pids

FAILURES = 5
REGISTRATIONS = 3


@pytest.fixture(scope="module")
def limited(hokusai_servers, redis_url):
    server = hokusai_servers.start(
        "postgresql",
        workers=2,
        env={
            "HOKUSAI_AUTH": "apikey",
            "HOKUSAI_DEV_MODE": "",
            "HOKUSAI_RATELIMIT_STORAGE_URI": redis_url,
            "HOKUSAI_RATELIMIT_AUTH_FAILURES": f"{FAILURES}/minute",
            "HOKUSAI_RATELIMIT_REGISTER": f"{REGISTRATIONS}/minute",
            "HOKUSAI_RATELIMIT_READ": "10000/minute",
            "HOKUSAI_RATELIMIT_WRITE": "10000/minute",
        },
    )
    pids = worker_pids(server)
    yield server, make_key(server.store_uri, "write")
    assert_workers_alive(server, pids)


def test_failed_authentications_are_limited_per_client_address(limited):
    server, key = limited
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    bystander = {"X-Forwarded-For": "198.51.100.8"}
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    for attempt in range(FAILURES):
        wrong = "hk_live_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
        answer = send(server.url, "GET", path, key=wrong, headers=guesser)
        assert answer.status == 401, (attempt, answer)
    # Over the limit: refused before the key is even looked up, the right key included (its answer
    # must not tell a guesser that it is right), with the time to wait.
    for presented in ("hk_live_" + "z" * 43, key):
        answer = send(server.url, "GET", path, key=presented, headers=guesser)
        assert answer.status == 429, answer
        assert answer.error()[0] == "REQUEST_LIMIT_EXCEEDED"
        assert 1 <= int(answer.headers["retry-after"]) <= 60
    # The same over a route FastAPI serves natively (the ASGI middleware).
    native = send(server.url, "GET", "/api/2.0/mlflow-artifacts/artifacts/x.txt", key=key, headers=guesser)
    assert native.status == 429
    # Another client, and public routes, are not affected.
    assert send(server.url, "GET", path, key=key, headers=bystander).status == 200
    assert send(server.url, "GET", "/api/2.0/hokusai/health/live", headers=guesser).status == 200


def test_attesting_through_tag_writes_counts_against_the_registration_limit(limited):
    server, key = limited
    os.environ["MLFLOW_TRACKING_TOKEN"] = key
    try:
        mlflow.set_tracking_uri(server.url)
        # mlflow.register_model follows the registry URI, which another module may have left set.
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment("abuse-limits")
        client = MlflowClient(server.url, registry_uri=server.url)
        name = f"limits-{uuid.uuid4().hex[:6]}"
        client.create_registered_model(name, tags={"hokusai.project": "limits"})
        candidate = log_candidate({"accuracy": 0.7})
        version = client.create_model_version(
            name, candidate.uri, candidate.run_id, model_id=candidate.model_id
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    # The create above was one registration. Two more Hokusai tags fit; the third does not.
    hokusai_tags = [
        ("hokusai.model_type", "classification"),
        ("hokusai.benchmark.metric", "accuracy"),
        ("hokusai.contributors", json.dumps([{"address": ALICE, "weight_bps": 10000}])),
    ]
    statuses = []
    for tag_key, value in hokusai_tags:
        answer = send(
            server.url,
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": name, "version": version.version, "key": tag_key, "value": value},
            key=key,
        )
        statuses.append(answer.status)
    assert statuses == [200, 200, 429], statuses
    # A tag that is not Hokusai's is an ordinary write, not a registration.
    plain = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/model-versions/set-tag",
        {"name": name, "version": version.version, "key": "team", "value": "ml"},
        key=key,
    )
    assert plain.status == 200, plain
    # The look-alike spelling of a Hokusai key counts as one too.
    lookalike = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/model-versions/set-tag",
        {"name": name, "version": version.version, "key": " HOKUSAI.model_type", "value": "x"},
        key=key,
    )
    assert lookalike.status == 429, lookalike
