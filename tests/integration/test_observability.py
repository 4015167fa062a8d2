"""Metrics and request logs of a real server: two uvicorn workers, PostgreSQL, Redis, API keys.

The server runs with MLflow's ``--expose-prometheus``, so each scrape (whichever worker answers)
must add up every worker's counters; the request log is read from the server's own output.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from mlflow_hokusai_plugin.core import tags as T
from tests.integration.test_auth import make_key
from tests.integration.test_services import log_candidate

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
IMPROVEMENTS = 3


@pytest.fixture(scope="module")
def observed(hokusai_servers, tmp_path_factory, redis_url):
    """A secured server; a baseline and three improvements registered with a write key."""
    metrics_dir = tmp_path_factory.mktemp("prometheus")
    server = hokusai_servers.start(
        "postgresql",
        workers=2,
        env={
            "HOKUSAI_AUTH": "apikey",
            "HOKUSAI_DEV_MODE": "",
            "HOKUSAI_RATELIMIT_STORAGE_URI": redis_url,
            "HOKUSAI_RATELIMIT_READ": "1000/minute",
            "HOKUSAI_RATELIMIT_WRITE": "1000/minute",
            "HOKUSAI_RATELIMIT_REGISTER": "1000/minute",
        },
        extra_args=["--expose-prometheus", str(metrics_dir)],
    )
    key = make_key(server.store_uri, "write", None)
    name = f"observed-{uuid.uuid4().hex[:6]}"
    saved = {
        k: os.environ.get(k) for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    os.environ.update(
        MLFLOW_TRACKING_TOKEN=key, MLFLOW_TRACKING_URI=server.url, MLFLOW_REGISTRY_URI=server.url
    )
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        mlflow.set_experiment("observability")
        client = MlflowClient(server.url)
        client.create_registered_model(name, tags={T.PROJECT: "obs"})
        common = {T.PROJECT: "obs", T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}
        mlflow.register_model(log_candidate({"accuracy": 0.70}), name, tags=common)
        gains = []
        for i in range(IMPROVEMENTS):
            accuracy = 0.71 + 0.01 * i
            contributors = json.dumps([{"address": ALICE, "weight_bps": 10000}])
            mlflow.register_model(
                log_candidate({"accuracy": accuracy}),
                name,
                tags={**common, T.BASELINE: f"{name}/1", T.CONTRIBUTORS: contributors},
            )
            gains.append(round(accuracy * 10000) - 7000)
        versions = {v.version: v for v in client.search_model_versions(f"name = '{name}'")}
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return {"server": server, "key": key, "name": name, "gains": gains, "versions": versions}


def get(url: str, key: str | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, headers=dict(headers or {}))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def scrape(server) -> dict[tuple, float]:
    status, headers, body = get(f"{server.url}/api/2.0/hokusai/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_every_scrape_adds_up_both_workers(observed):
    server, gains = observed["server"], observed["gains"]
    versions = observed["versions"]
    assert all(versions[str(v)].tags[T.ATTESTATION_STATUS] == "signed" for v in range(2, 2 + IMPROVEMENTS))
    # Several scrapes land on both workers; each must report the same totals.
    for _ in range(6):
        samples = scrape(server)
        assert value(samples, "hokusai_registrations_total", project="obs") == IMPROVEMENTS
        assert value(samples, "hokusai_attestations_total", status="signed") == IMPROVEMENTS
        assert value(samples, "hokusai_delta_one_bps_total", project="obs") == sum(gains)
        created = value(
            samples,
            "hokusai_http_requests_total",
            route="/api/2.0/mlflow/model-versions/create",
            method="POST",
            status="200",
        )
        assert created == IMPROVEMENTS + 1
        assert value(samples, "hokusai_ready") == 1, get(f"{server.url}/api/2.0/hokusai/health/ready")
        assert value(samples, "hokusai_backup_last_success_timestamp_seconds") == 0
        assert value(samples, "hokusai_http_request_duration_seconds_count") >= IMPROVEMENTS + 1


def test_auth_failures_and_rate_limits_are_counted(observed, hokusai_servers):
    server = observed["server"]
    before = scrape(server)
    lineage = f"{server.url}/api/2.0/hokusai/models/{observed['name']}/2/lineage"
    for _ in range(3):
        assert get(lineage)[0] == 401
    assert get(lineage, key="hk_live_" + "x" * 43)[0] == 401
    after = scrape(server)
    assert (
        value(after, "hokusai_auth_failures_total", reason="unauthenticated")
        - value(before, "hokusai_auth_failures_total", reason="unauthenticated")
        == 4
    )
    route = "/api/2.0/hokusai/models/<path:model_id>/lineage"
    assert value(after, "hokusai_http_requests_total", route=route, status="401") >= 4
    # A low read limit on a second server shows 429s counted by route.
    limited = hokusai_servers.start(
        "sqlite",
        workers=1,
        env={"HOKUSAI_RATELIMIT_READ": "2/minute", "HOKUSAI_RATELIMIT_STORAGE_URI": "memory://"},
    )
    statuses = [get(f"{limited.url}/api/2.0/hokusai/projects")[0] for _ in range(5)]
    assert statuses.count(429) == 3
    samples = scrape(limited)
    assert value(samples, "hokusai_rate_limited_total", route="/api/2.0/hokusai/projects") == 3


def test_one_json_line_per_request_with_the_request_id_that_the_audit_log_keeps(observed):
    server, key = observed["server"], observed["key"]
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    status, headers, _ = get(
        f"{server.url}/api/2.0/mlflow/registered-models/get?name={observed['name']}",
        key=key,
        headers={"X-Request-Id": request_id},
    )
    assert status == 200 and headers["X-Request-Id"] == request_id
    lines = _log_lines(server, lambda line: line.get("request_id") == request_id)
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request" and line["status"] == 200 and line["method"] == "GET"
    assert line["route"] == "/api/2.0/mlflow/registered-models/get"
    # The key's display prefix (its first 12 characters, as `hokusai keys list` shows): not the key.
    assert line["principal"] == f"key:{key[:12]}" and line["latency_ms"] >= 0
    log_text = open(server.log_path).read()
    assert key not in log_text and key[12:24] not in log_text  # no key, nor the secret part of it
    # Every registration's line carries the request id its audit entry records.
    from sqlalchemy import create_engine, text

    from mlflow_hokusai_plugin.db.urls import database_url

    engine = create_engine(database_url(server.store_uri))
    with engine.connect() as connection:
        audited = connection.execute(
            text("SELECT request_id FROM hokusai_audit_log WHERE action = 'model_version.create'")
        ).scalars()
        audited = {rid for rid in audited if rid}
    engine.dispose()
    created = _log_lines(server, lambda line: line.get("route") == "/api/2.0/mlflow/model-versions/create")
    assert len(created) == IMPROVEMENTS + 1
    assert {line["request_id"] for line in created} <= audited


def _log_lines(server, keep) -> list[dict]:
    deadline = time.time() + 10
    while True:
        lines = []
        for raw in open(server.log_path).read().splitlines():
            if raw.startswith("{"):
                try:
                    parsed = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if keep(parsed):
                    lines.append(parsed)
        if lines or time.time() > deadline:
            return lines
        time.sleep(0.2)
