"""The Hokusai routes under ``HOKUSAI_AUTH=basic``: MLflow's users and permissions decide, on a real
2-worker server on PostgreSQL."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.security.attack import assert_workers_alive, send, worker_pids


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def basic_server(hokusai_servers):
    server, password = hokusai_servers.start_basic_auth("postgresql", workers=2)
    admin = basic("admin", password)
    user_password = "us3r-" + uuid.uuid4().hex
    created = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/users/create",
        {"username": "reader", "password": user_password},
        headers=admin,
    )
    assert created.status == 200, created
    name = f"basic-{uuid.uuid4().hex[:6]}"
    made = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {"name": name, "tags": [{"key": "hokusai.project", "value": "basic"}]},
        headers=admin,
    )
    assert made.status == 200, made
    pids = worker_pids(server)
    yield server, admin, basic("reader", user_password), name
    assert_workers_alive(server, pids)


def test_admin_routes_need_an_mlflow_admin(basic_server):
    server, admin, reader, _ = basic_server
    answer = send(server.url, "POST", "/api/2.0/hokusai/keys", {"name": "x", "role": "admin"}, headers=reader)
    assert answer.status == 403, answer
    assert answer.error()[0] == "PERMISSION_DENIED"
    assert send(server.url, "GET", "/api/2.0/hokusai/keys", headers=reader).status == 403
    assert send(server.url, "GET", "/api/2.0/hokusai/keys", headers=admin).status == 200


def test_registering_into_a_model_needs_edit_permission_on_it(basic_server):
    server, _, reader, name = basic_server
    body = {
        "name": name,
        "model_uri": "runs:/0123456789abcdef0123456789abcdef/model",
        "project": "basic",
        "model_type": "classification",
        "baseline": None,
        "benchmark_metric": "accuracy",
    }
    for content_type in ("application/json", "text/plain"):
        answer = send(
            server.url,
            "POST",
            "/api/2.0/hokusai/models/register",
            body,
            headers=reader,
            content_type=content_type,
        )
        assert answer.status == 403, answer
        assert "EDIT" in answer.error()[1]


def test_reading_a_models_lineage_needs_read_permission(basic_server):
    server, _, reader, name = basic_server
    # default_permission READ: the reader may read the model's (empty) lineage and attestations.
    assert send(server.url, "GET", f"/api/2.0/hokusai/models/{name}/lineage", headers=reader).status == 200
    listed = send(server.url, "GET", f"/api/2.0/hokusai/attestations?model_id={name}/1", headers=reader)
    assert listed.status == 200
    assert send(server.url, "GET", f"/api/2.0/hokusai/models/{name}/lineage").status == 401


def test_registering_into_a_model_one_may_edit_does_not_make_one_its_manager(basic_server, monkeypatch):
    import mlflow

    from tests.integration.test_server_plugin import log_candidate

    server, admin, _, name = basic_server
    password = "ed1tor-" + uuid.uuid4().hex
    assert (
        send(
            server.url,
            "POST",
            "/api/2.0/mlflow/users/create",
            {"username": "editor", "password": password},
            headers=admin,
        ).status
        == 200
    )
    grant = {
        "username": "editor",
        "resource_type": "registered_model",
        "resource_id": name,
        "permission": "EDIT",
    }
    assert (
        send(server.url, "POST", "/api/3.0/mlflow/users/permissions/grant", grant, headers=admin).status
        == 200
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "editor")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(f"basic-editor-{uuid.uuid4().hex[:6]}")
    candidate = log_candidate({"accuracy": 0.7})
    body = {
        "name": name,
        "model_uri": candidate.uri,
        "project": "basic",
        "model_type": "classification",
        "baseline": None,
        "benchmark_metric": "accuracy",
    }
    registered = send(
        server.url, "POST", "/api/2.0/hokusai/models/register", body, headers=basic("editor", password)
    )
    assert registered.status == 201, registered
    permission = send(
        server.url,
        "GET",
        f"/api/3.0/mlflow/users/permissions/get?username=editor&resource_type=registered_model&resource_id={name}",
        headers=admin,
    )
    assert permission.status == 200, permission
    assert "MANAGE" not in permission.body.decode() and "EDIT" in permission.body.decode()
