"""API-key auth on a real server: MLflow's registry and artifact routes and the Hokusai routes.

One uvicorn server with two workers (so revocation is seen across workers) on PostgreSQL with
artifacts in S3; keys are made with the ``hokusai keys`` CLI, as an operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.integration.test_services import ALICE, log_candidate

HOKUSAI = str(Path(sys.executable).parent / "hokusai")


def make_key(store_uri: str, role: str, project: str | None = None) -> str:
    args = [HOKUSAI, "keys", "create", "--store-uri", store_uri, "--name", f"test-{role}", "--role", role]
    if project:
        args += ["--project", project]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def call(
    url: str, method: str = "GET", key: str | None = None, body: dict | None = None, how: str = "bearer"
):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        if how == "bearer":
            request.add_header("Authorization", f"Bearer {key}")
        elif how == "header":
            request.add_header("X-API-Key", key)
        else:
            import base64

            request.add_header(
                "Authorization", "Basic " + base64.b64encode(f"someone:{key}".encode()).decode()
            )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw.startswith(b"{") else raw


@pytest.fixture(scope="module")
def secured(hokusai_servers):
    server = hokusai_servers.start(
        "postgresql", workers=2, env={"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": ""}
    )
    keys = {
        "admin": make_key(server.store_uri, "admin"),
        "write": make_key(server.store_uri, "write"),
        "read": make_key(server.store_uri, "read"),
        "write_a": make_key(server.store_uri, "write", "proj-a"),
        "read_b": make_key(server.store_uri, "read", "proj-b"),
    }
    # Two projects' models with an attested improvement each, registered with the admin key.
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = keys["admin"]
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("auth")
        models = {}
        for project in ("proj-a", "proj-b"):
            name = f"{project}-{uuid.uuid4().hex[:6]}"
            tags = {
                "hokusai.project": project,
                "hokusai.model_type": "classification",
                "hokusai.benchmark.metric": "accuracy",
            }
            client = MlflowClient(server.url)
            client.create_registered_model(name, tags={"hokusai.project": project})
            mlflow.register_model(log_candidate({"accuracy": 0.7}), name, tags=tags)
            improved = mlflow.register_model(
                log_candidate({"accuracy": 0.8}),
                name,
                tags={
                    **tags,
                    "hokusai.baseline": f"{name}/1",
                    "hokusai.contributors": json.dumps([{"address": ALICE, "weight_bps": 10000}]),
                },
            )
            models[project] = (name, improved.tags["hokusai.attestation.id"])
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    return server, keys, models


def test_plain_mlflow_client_needs_a_write_key(secured, monkeypatch):
    server, keys, _ = secured
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    with pytest.raises(MlflowException, match="401|API key"):
        MlflowClient(server.url).create_registered_model(f"anon-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", keys["read"])
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        MlflowClient(server.url).create_registered_model(f"reader-{uuid.uuid4().hex[:6]}")
    assert MlflowClient(server.url).search_experiments(max_results=1) is not None
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", keys["write"])
    assert MlflowClient(server.url).create_registered_model(f"writer-{uuid.uuid4().hex[:6]}").name
    # A person in a browser: basic auth with the key as password.
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", keys["write"])
    assert MlflowClient(server.url).create_registered_model(f"basic-{uuid.uuid4().hex[:6]}").name


@pytest.mark.parametrize("how", ["bearer", "header", "basic"])
def test_every_way_of_presenting_a_key(secured, how):
    server, keys, _ = secured
    status, _ = call(f"{server.url}/api/2.0/mlflow/registered-models/search", key=keys["read"], how=how)
    assert status == 200


def test_the_auth_matrix_on_registry_hokusai_and_artifact_routes(secured):
    server, keys, models = secured
    name_a, attestation_a = models["proj-a"]
    wrong = "hk_live_" + "x" * 43
    routes = [
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={name_a}", None, "read"),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            {"name": name_a, "key": "k", "value": "v"},
            "write",
        ),
        ("GET", f"/api/2.0/hokusai/models/{name_a}/2/lineage", None, "read"),
        ("GET", f"/api/2.0/hokusai/attestations/{attestation_a}", None, "read"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/auth-test.txt", None, "write"),
        ("GET", "/api/2.0/hokusai/keys", None, "admin"),
    ]
    for method, path, body, needed in routes:
        url = server.url + path
        data_body = body if body is not None else ({} if method == "PUT" else None)
        assert call(url, method, None, data_body)[0] == 401, path
        assert call(url, method, wrong, data_body)[0] == 401, path
        for role in ("read", "write", "admin"):
            status, _ = call(url, method, keys[role], data_body)
            allowed = ["read", "write", "admin"].index(role) >= ["read", "write", "admin"].index(needed)
            assert (status < 400) == allowed, (path, role, status)


def test_project_scope(secured):
    server, keys, models = secured
    (name_a, attestation_a), (name_b, attestation_b) = models["proj-a"], models["proj-b"]
    url = server.url + "/api/2.0"
    # Write to its own project, not to another.
    assert (
        call(
            f"{url}/mlflow/registered-models/set-tag",
            "POST",
            keys["write_a"],
            {"name": name_a, "key": "k", "value": "v"},
        )[0]
        == 200
    )
    assert (
        call(
            f"{url}/mlflow/registered-models/set-tag",
            "POST",
            keys["write_a"],
            {"name": name_b, "key": "k", "value": "v"},
        )[0]
        == 403
    )
    assert (
        call(
            f"{url}/mlflow/registered-models/create",
            "POST",
            keys["write_a"],
            {"name": f"x-{uuid.uuid4().hex[:6]}"},
        )[0]
        == 403
    )
    assert (
        call(
            f"{url}/mlflow/registered-models/create",
            "POST",
            keys["write_a"],
            {"name": f"a-{uuid.uuid4().hex[:6]}", "tags": [{"key": "hokusai.project", "value": "proj-a"}]},
        )[0]
        == 200
    )
    # Read nothing protected of another project.
    assert call(f"{url}/mlflow/registered-models/get?name={name_a}", key=keys["read_b"])[0] == 403
    assert call(f"{url}/hokusai/models/{name_a}/2/lineage", key=keys["read_b"])[0] == 403
    assert call(f"{url}/hokusai/attestations/{attestation_a}", key=keys["read_b"])[0] == 404
    assert call(f"{url}/hokusai/attestations/{attestation_b}", key=keys["read_b"])[0] == 200
    status, found = call(f"{url}/mlflow/registered-models/search?max_results=1000", key=keys["read_b"])
    names = {model["name"] for model in found.get("registered_models", [])}
    assert name_b in names and name_a not in names
    status, impact = call(f"{url}/hokusai/contributors/{ALICE}/impact", key=keys["read_b"])
    assert status == 200 and set(impact["projects"]) == {"proj-b"}


def test_revoked_key_stops_working_on_every_worker_within_5_seconds(secured):
    server, keys, _ = secured
    doomed = make_key(server.store_uri, "read")
    url = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert all(call(url, key=doomed)[0] == 200 for _ in range(6))
    status, listed = call(f"{server.url}/api/2.0/hokusai/keys", key=keys["admin"])
    key_id = next(k["id"] for k in listed["keys"] if doomed.startswith(k["prefix"]) and not k["revoked_at"])
    assert call(f"{server.url}/api/2.0/hokusai/keys/{key_id}/revoke", "POST", keys["admin"], {})[0] == 200
    revoked_at = time.monotonic()
    deadline = revoked_at + 5
    # Fresh connections spread over both workers: every one must refuse within 5 s.
    while time.monotonic() < deadline:
        if all(call(url, key=doomed)[0] == 401 for _ in range(8)):
            break
        time.sleep(0.25)
    assert all(call(url, key=doomed)[0] == 401 for _ in range(12))
    assert time.monotonic() - revoked_at < 5 + 1


def test_admin_routes_create_keys_and_failures_are_logged_without_the_key(secured):
    server, keys, _ = secured
    status, made = call(
        f"{server.url}/api/2.0/hokusai/keys", "POST", keys["admin"], {"name": "bot", "role": "read"}
    )
    assert status == 201 and made["key"].startswith("hk_live_") and made["record"]["role"] == "read"
    assert (
        call(f"{server.url}/api/2.0/hokusai/keys", "POST", keys["admin"], {"name": "bot", "role": "god"})[0]
        == 400
    )
    assert (
        call(f"{server.url}/api/2.0/hokusai/keys", "POST", keys["write"], {"name": "x", "role": "read"})[0]
        == 403
    )
    bogus = "hk_live_" + "Q" * 43
    call(f"{server.url}/api/2.0/mlflow/experiments/search", key=bogus)
    log = Path(server.log_path).read_text()
    assert "authentication failed" in log
    assert bogus not in log and "Q" * 20 not in log
    for key in keys.values():
        assert key not in log


def test_basic_mode_reuses_mlflow_basic_auth_users(hokusai_servers, monkeypatch):
    server, password = hokusai_servers.start_basic_auth("sqlite", workers=2)
    assert call(f"{server.url}/api/2.0/mlflow/registered-models/search")[0] == 401
    assert call(f"{server.url}/api/2.0/hokusai/models/x/1/lineage")[0] == 401
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment("basic-auth")
    name = f"basic-{uuid.uuid4().hex[:6]}"
    tags = {
        "hokusai.project": "basic",
        "hokusai.model_type": "classification",
        "hokusai.benchmark.metric": "accuracy",
    }
    mlflow.register_model(log_candidate({"accuracy": 0.6}), name, tags=tags)
    improved = mlflow.register_model(
        log_candidate({"accuracy": 0.65}),
        name,
        tags={
            **tags,
            "hokusai.baseline": f"{name}/1",
            "hokusai.contributors": json.dumps([{"address": ALICE, "weight_bps": 10000}]),
        },
    )
    assert improved.tags["hokusai.attestation.status"] == "signed"
    from mlflow_hokusai_plugin.db.audit import AuditLog

    actors = {entry["actor"] for entry in AuditLog.from_store_uri(server.store_uri).entries()}
    assert "user:admin" in actors
