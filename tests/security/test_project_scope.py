"""Project scope and roles under attack, on a real 2-worker server on PostgreSQL (API-key mode).

Each attack says what the request tries, then checks the answer (status and MLflow's error shape),
that nothing changed (read back with an admin key and from the plugin's tables), that every answer
came within a bound, and, at the end of the module, that no worker crashed or restarted.
"""

from __future__ import annotations

import json
import os
import uuid

import mlflow
import pytest
from mlflow import MlflowClient

from tests.integration.test_auth import make_key
from tests.integration.test_server_plugin import log_candidate, plugin_counts
from tests.integration.test_services import ALICE
from tests.security.attack import assert_workers_alive, send, worker_pids

BOB = "0x" + "b0b" * 13 + "b"


@pytest.fixture(scope="module")
def world(hokusai_servers):
    """Two projects, each with a baseline and an attested improvement, and keys of each kind."""
    server = hokusai_servers.start(
        "postgresql", workers=2, env={"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": ""}
    )
    keys = {
        "admin": make_key(server.store_uri, "admin"),
        "read": make_key(server.store_uri, "read"),
        "write_a": make_key(server.store_uri, "write", "proj-a"),
        "read_a": make_key(server.store_uri, "read", "proj-a"),
    }
    os.environ["MLFLOW_TRACKING_TOKEN"] = keys["admin"]
    models = {}
    try:
        mlflow.set_tracking_uri(server.url)
        # mlflow.register_model follows the registry URI, which another module may have left set.
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment("scope-attacks")
        client = MlflowClient(server.url, registry_uri=server.url)
        for project in ("proj-a", "proj-b"):
            name = f"{project}-{uuid.uuid4().hex[:6]}"
            tags = {
                "hokusai.project": project,
                "hokusai.model_type": "classification",
                "hokusai.benchmark.metric": "accuracy",
            }
            client.create_registered_model(name, tags={"hokusai.project": project})
            mlflow.register_model(log_candidate({"accuracy": 0.7}).uri, name, tags=tags)
            mlflow.register_model(
                log_candidate({"accuracy": 0.8}).uri,
                name,
                tags={
                    **tags,
                    "hokusai.baseline": f"{name}/1",
                    "hokusai.contributors": json.dumps([{"address": ALICE, "weight_bps": 10000}]),
                },
            )
            models[project] = name
        # A candidate run of project B an attacker would like to register.
        candidate = log_candidate({"accuracy": 0.95})
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    pids = worker_pids(server)
    yield server, keys, models, candidate
    assert_workers_alive(server, pids, "a worker crashed or was restarted during the attacks")


def snapshot(server, keys, name: str) -> dict:
    """Everything an attack on model ``name`` could change, read with the admin key."""
    model = send(server.url, "GET", f"/api/2.0/mlflow/registered-models/get?name={name}", key=keys["admin"])
    versions = send(
        server.url,
        "GET",
        f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27{name}%27",
        key=keys["admin"],
    )
    return {
        "model": model.status,
        "model_body": model.json.get("registered_model"),
        "versions": sorted(
            (v["version"], json.dumps(v.get("tags"), sort_keys=True), v.get("description"))
            for v in versions.json.get("model_versions", [])
        ),
        "plugin": plugin_counts(server.store_uri),
    }


def strip_times(state: dict) -> dict:
    body = dict(state["model_body"] or {})
    body.pop("last_updated_timestamp", None)
    return {**state, "model_body": body}


# Each attack: a write key of project A aims at project B's model while naming A's model where a
# careless scope check would look.
def attacks(a: str, b: str) -> list[tuple[str, str, str, bytes | str | dict | None, str | None]]:
    """(label, method, path, body, content type) of requests that touch B's model ``b``."""
    tag_b = {"name": b, "key": "owned", "value": "yes"}
    return [
        (
            "query names A, body names B",
            "POST",
            f"/api/2.0/mlflow/registered-models/set-tag?name={a}",
            tag_b,
            "application/json",
        ),
        (
            "body as text/plain",
            "DELETE",
            "/api/2.0/mlflow/registered-models/delete",
            {"name": b},
            "text/plain",
        ),
        (
            "body with no content type",
            "PATCH",
            "/api/2.0/mlflow/registered-models/update",
            {"name": b, "description": "owned"},
            None,
        ),
        (
            "JSON wrapped in a JSON string",
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            json.dumps(json.dumps(tag_b)),
            "application/json",
        ),
        (
            "rename via the body",
            "POST",
            f"/api/2.0/mlflow/registered-models/rename?name={a}",
            {"name": b, "new_name": f"{b}-owned"},
            "application/json",
        ),
        (
            "delete a version as form data",
            "DELETE",
            "/api/2.0/mlflow/model-versions/delete",
            {"name": b, "version": "2"},
            "application/x-www-form-urlencoded",
        ),
        (
            "delete a version tag, ajax prefix",
            "DELETE",
            f"/ajax-api/2.0/mlflow/model-versions/delete-tag?name={a}",
            {"name": b, "version": "1", "key": "hokusai.project"},
            "text/plain",
        ),
        (
            "update a version description",
            "PATCH",
            "/api/2.0/mlflow/model-versions/update",
            {"name": b, "version": "2", "description": "owned"},
            "application/octet-stream",
        ),
        (
            "set an alias",
            "POST",
            f"/api/2.0/mlflow/registered-models/alias?name={a}",
            {"name": b, "alias": "champion", "version": "1"},
            "application/json",
        ),
        (
            "transition a stage",
            "POST",
            "/api/2.0/mlflow/model-versions/transition-stage",
            json.dumps(json.dumps({"name": b, "version": "2", "stage": "Archived"})),
            "application/json",
        ),
    ]


@pytest.mark.parametrize("index", range(10))
def test_a_scoped_write_key_cannot_touch_another_projects_model(world, index):
    server, keys, models, _ = world
    a, b = models["proj-a"], models["proj-b"]
    label, method, path, body, content_type = attacks(a, b)[index]
    before = strip_times(snapshot(server, keys, b))
    answer = send(server.url, method, path, body, key=keys["write_a"], content_type=content_type)
    assert answer.status in (400, 403), (label, answer)
    code, message = answer.error()
    assert code in ("PERMISSION_DENIED", "INVALID_PARAMETER_VALUE"), (label, message)
    assert strip_times(snapshot(server, keys, b)) == before, label


def test_a_scoped_read_key_cannot_read_another_projects_model_through_the_body(world):
    server, keys, models, _ = world
    b = models["proj-b"]
    for path in ("/api/2.0/mlflow/registered-models/get", "/api/2.0/mlflow/model-versions/get"):
        # A GET with no query string: MLflow reads the body.
        answer = send(
            server.url, "GET", path, {"name": b, "version": "1"}, key=keys["read_a"], content_type=None
        )
        assert answer.status == 403, (path, answer)
        assert answer.error()[0] == "PERMISSION_DENIED"
        assert set(answer.json) == {"error_code", "message"}  # nothing of the model itself
    # The query string is what MLflow reads when there is one: the key's own model is readable.
    own = send(
        server.url,
        "GET",
        f"/api/2.0/mlflow/registered-models/get?name={models['proj-a']}",
        key=keys["read_a"],
    )
    assert own.status == 200 and own.json["registered_model"]["name"] == models["proj-a"]


def test_no_signed_improvement_in_another_project_crediting_an_attacker(world):
    server, keys, models, candidate = world
    a, b = models["proj-a"], models["proj-b"]
    improvement = {
        "name": b,
        "source": candidate.uri,
        "run_id": candidate.run_id,
        "model_id": candidate.model_id,
        "tags": [
            {"key": "hokusai.project", "value": "proj-b"},
            {"key": "hokusai.model_type", "value": "classification"},
            {"key": "hokusai.baseline", "value": f"{b}/1"},
            {"key": "hokusai.benchmark.metric", "value": "accuracy"},
            {"key": "hokusai.contributors", "value": json.dumps([{"address": BOB, "weight_bps": 10000}])},
        ],
    }
    before = strip_times(snapshot(server, keys, b))
    tries = [
        ("POST", f"/api/2.0/mlflow/model-versions/create?name={a}", improvement, "application/json"),
        (
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            json.dumps(json.dumps(improvement)),
            "application/json",
        ),
        (
            "POST",
            "/api/2.0/hokusai/models/register",
            {
                "name": b,
                "model_uri": candidate.uri,
                "project": "proj-a",
                "model_type": "classification",
                "baseline": f"{b}/1",
                "benchmark_metric": "accuracy",
                "contributors": [{"address": BOB, "weight_bps": 10000}],
            },
            "text/plain",
        ),
    ]
    for method, path, body, content_type in tries:
        answer = send(server.url, method, path, body, key=keys["write_a"], content_type=content_type)
        assert answer.status in (400, 403), (path, answer)
        answer.error()
    assert strip_times(snapshot(server, keys, b)) == before
    impact = send(server.url, "GET", f"/api/2.0/hokusai/contributors/{BOB}/impact", key=keys["admin"])
    assert impact.status == 200 and impact.json["contributions"] == []


def test_graphql_is_refused_to_a_scoped_key_and_answers_an_unscoped_one(world):
    server, keys, models, _ = world
    query = {
        "query": 'query { mlflowSearchModelVersions(input: {filter: ""}) { modelVersions { name version } } }'
    }
    for key in ("read_a", "write_a"):
        answer = send(server.url, "POST", "/graphql", query, key=keys[key])
        assert answer.status == 403, answer
        assert answer.error()[0] == "PERMISSION_DENIED"
        assert models["proj-b"] not in answer.body.decode()
    answer = send(server.url, "GET", "/graphql?query=" + "%7B__typename%7D", key=keys["read_a"])
    assert answer.status == 403
    unscoped = send(server.url, "POST", "/graphql", query, key=keys["read"])
    assert unscoped.status == 200, unscoped
    names = {v["name"] for v in unscoped.json["data"]["mlflowSearchModelVersions"]["modelVersions"]}
    assert {models["proj-a"], models["proj-b"]} <= names


@pytest.mark.parametrize(
    "method, path, body",
    [
        # Looks like a read by its name, but creates a user.
        ("POST", "/ajax-api/3.0/mlflow/review-queues/get-or-create-user", {"name": "x"}),
        ("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0"}),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag", {"name": "x", "key": "y"}),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/attack.txt", "data"),
    ],
)
def test_a_read_key_reaches_no_write_handler(world, method, path, body):
    server, keys, _, _ = world
    answer = send(server.url, method, path, body, key=keys["read"])
    assert answer.status == 403, answer
    assert answer.error()[0] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/3.0/mlflow/gateway/secrets/list", None),
        ("GET", "/api/2.0/mlflow/webhooks", None),
        ("POST", "/api/3.0/mlflow/workspaces", {}),
        # An empty feature list: the admin's call generates nothing (all of MLflow's demo
        # data takes longer than the client's timeout and fills the shared database).
        ("POST", "/ajax-api/3.0/mlflow/demo/generate", {"features": []}),
        ("GET", "/api/3.0/mlflow/mcp-servers/x", None),
        ("POST", "/gateway/openai/v1/chat/completions", {}),
        ("GET", "/api/2.0/hokusai/keys", None),
    ],
)
def test_routes_the_table_does_not_grant_are_for_admins_only(world, method, path, body):
    server, keys, _, _ = world
    for key in ("read", "write_a"):
        answer = send(server.url, method, path, body, key=keys[key])
        assert answer.status == 403, (key, answer)
        assert answer.error()[0] == "PERMISSION_DENIED"
    assert send(server.url, method, path, body, key=keys["admin"]).status != 403


def test_a_scoped_key_still_does_its_own_projects_work(world):
    server, keys, models, _ = world
    a = models["proj-a"]
    tagged = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/registered-models/set-tag",
        {"name": a, "key": "team", "value": "a"},
        key=keys["write_a"],
    )
    assert tagged.status == 200, tagged
    created = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {
            "name": f"proj-a-new-{uuid.uuid4().hex[:6]}",
            "tags": [{"key": "hokusai.project", "value": "proj-a"}],
        },
        key=keys["write_a"],
    )
    assert created.status == 200, created
    other = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {
            "name": f"proj-b-new-{uuid.uuid4().hex[:6]}",
            "tags": [{"key": "hokusai.project", "value": "proj-b"}],
        },
        key=keys["write_a"],
    )
    assert other.status == 403
    found = send(server.url, "GET", "/api/2.0/mlflow/registered-models/search", key=keys["read_a"])
    names = {model["name"] for model in found.json.get("registered_models", [])}
    assert a in names and models["proj-b"] not in names
    lineage = send(server.url, "GET", f"/api/2.0/hokusai/models/{a}/2/lineage", key=keys["read_a"])
    assert lineage.status == 200
    assert (
        send(
            server.url, "GET", f"/api/2.0/hokusai/models/{models['proj-b']}/2/lineage", key=keys["read_a"]
        ).status
        == 403
    )
    listed = send(
        server.url, "GET", f"/api/2.0/hokusai/attestations?model_id={models['proj-b']}/2", key=keys["read_a"]
    )
    assert listed.status == 403


def test_a_request_whose_target_cannot_be_read_is_refused(world):
    server, keys, _, _ = world
    for body, content_type in (
        ("{not json", "application/json"),
        ('"[1, 2"', "application/json"),
        ("", None),
    ):
        answer = send(
            server.url,
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            body,
            key=keys["write_a"],
            content_type=content_type,
        )
        assert answer.status == 400, (body, answer)
        assert answer.error()[0] == "INVALID_PARAMETER_VALUE"


def test_a_scoped_key_cannot_claim_a_model_of_no_project(world):
    server, keys, _, candidate = world
    victim = f"untagged-{uuid.uuid4().hex[:6]}"
    assert (
        send(
            server.url,
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            {"name": victim},
            key=keys["admin"],
        ).status
        == 200
    )
    claims = [
        (
            "POST",
            "/api/2.0/hokusai/models/register",
            {
                "name": victim,
                "model_uri": candidate.uri,
                "project": "proj-a",
                "model_type": "classification",
                "benchmark_metric": "accuracy",
            },
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            {"name": victim, "key": "hokusai.project", "value": "proj-a"},
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": victim}),
    ]
    for method, path, body in claims:
        answer = send(server.url, method, path, body, key=keys["write_a"])
        assert answer.status == 403, (path, answer)
        assert answer.error()[0] == "PERMISSION_DENIED"
    model = send(
        server.url, "GET", f"/api/2.0/mlflow/registered-models/get?name={victim}", key=keys["admin"]
    ).json
    assert "tags" not in model["registered_model"] and "latest_versions" not in model["registered_model"]


def test_a_scoped_key_cannot_move_its_model_out_of_its_project(world):
    server, keys, _, _ = world
    mine = f"proj-a-own-{uuid.uuid4().hex[:6]}"
    created = send(
        server.url,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {"name": mine, "tags": [{"key": "hokusai.project", "value": "proj-a"}]},
        key=keys["write_a"],
    )
    assert created.status == 200, created
    moves = [
        (
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag",
            {"name": mine, "key": "hokusai.project", "value": "proj-b"},
        ),
        (
            "POST",
            "/ajax-api/2.0/mlflow/registered-models/set-tag",
            json.dumps(json.dumps({"name": mine, "key": "hokusai.project", "value": "proj-b"})),
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag", {"name": mine, "key": "hokusai.project"}),
    ]
    for method, path, body in moves:
        answer = send(server.url, method, path, body, key=keys["write_a"])
        assert answer.status == 403, (path, answer)
    model = send(
        server.url, "GET", f"/api/2.0/mlflow/registered-models/get?name={mine}", key=keys["admin"]
    ).json
    assert {t["key"]: t["value"] for t in model["registered_model"]["tags"]} == {"hokusai.project": "proj-a"}


def test_an_attestation_is_scoped_by_its_signed_project_across_a_rename(world):
    server, keys, _, _ = world
    import mlflow as fluent

    os.environ["MLFLOW_TRACKING_TOKEN"] = keys["admin"]
    try:
        fluent.set_tracking_uri(server.url)
        fluent.set_registry_uri(server.url)
        client = MlflowClient(server.url, registry_uri=server.url)
        old = f"proj-b-{uuid.uuid4().hex[:6]}"
        tags = {
            "hokusai.project": "proj-b",
            "hokusai.model_type": "classification",
            "hokusai.benchmark.metric": "accuracy",
        }
        client.create_registered_model(old, tags={"hokusai.project": "proj-b"})
        fluent.register_model(log_candidate({"accuracy": 0.7}).uri, old, tags=tags)
        improved = fluent.register_model(
            log_candidate({"accuracy": 0.8}).uri,
            old,
            tags={
                **tags,
                "hokusai.baseline": f"{old}/1",
                "hokusai.contributors": json.dumps([{"address": ALICE, "weight_bps": 10000}]),
            },
        )
        attestation_id = improved.tags["hokusai.attestation.id"]
        client.rename_registered_model(old, f"{old}-renamed")
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    # Project A takes the old name; the document still says models:/<old>/2, signed in project B.
    assert (
        send(
            server.url,
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            {"name": old, "tags": [{"key": "hokusai.project", "value": "proj-a"}]},
            key=keys["write_a"],
        ).status
        == 200
    )
    assert (
        send(server.url, "GET", f"/api/2.0/hokusai/attestations/{attestation_id}", key=keys["read_a"]).status
        == 404
    )
    assert (
        send(server.url, "GET", f"/api/2.0/hokusai/attestations/{attestation_id}", key=keys["admin"]).status
        == 200
    )
    listed = send(server.url, "GET", f"/api/2.0/hokusai/attestations?model_id={old}/2", key=keys["read_a"])
    assert listed.status == 200 and listed.json["attestations"] == []
