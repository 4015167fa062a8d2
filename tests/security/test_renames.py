"""Records follow models, not names: rename and delete on a real 2-worker server on PostgreSQL.

Before, after a rename a new model with the old name inherited the old lineage, attestations and
"attested" refusals, while the renamed model's attested version could be re-baselined and attested
a second time, crediting the same contributor twice.
"""

from __future__ import annotations

import json
import uuid

import pytest
from mlflow.exceptions import MlflowException

from tests.integration.test_server_plugin import (
    create_version,
    log_candidate,
    register_improvement,
    scalar,
    sql,
)
from tests.integration.test_services import ALICE
from tests.security.attack import assert_workers_alive, send, worker_pids


@pytest.fixture(scope="module")
def server(hokusai_servers):
    started = hokusai_servers.start("postgresql", workers=2)
    pids = worker_pids(started)
    yield started
    assert_workers_alive(started, pids)


def baseline(client, name: str) -> str:
    version = create_version(
        client,
        name,
        log_candidate({"accuracy": 0.7}),
        {
            "hokusai.project": "renames",
            "hokusai.model_type": "classification",
            "hokusai.benchmark.metric": "accuracy",
        },
    )
    return f"{name}/{version.version}"


def improve(client, name: str, parent: str, accuracy: float = 0.8):
    version = register_improvement(client, name, parent, {"accuracy": accuracy}, project="renames")
    assert version.tags["hokusai.attestation.status"] == "signed", version.tags
    return version


def impact_of(server, address: str) -> list[str]:
    answer = send(server.url, "GET", f"/api/2.0/hokusai/contributors/{address}/impact")
    assert answer.status == 200, answer
    return sorted(c["model_id"] for c in answer.json["contributions"])


def test_a_renamed_model_keeps_its_records_and_a_new_model_of_the_old_name_starts_clean(server, point_at):
    client = point_at(server)
    old, new = f"ren-{uuid.uuid4().hex[:6]}", f"ren-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(old, tags={"hokusai.project": "renames"})
    improved = improve(client, old, baseline(client, old))
    attestation_id = improved.tags["hokusai.attestation.id"]
    alice_before = impact_of(server, ALICE)

    client.rename_registered_model(old, new)

    lineage = send(server.url, "GET", f"/api/2.0/hokusai/models/{new}/2/lineage").json
    assert [(e["parent_model_id"], e["child_model_id"]) for e in lineage["edges"]] == [
        (f"{new}/1", f"{new}/2")
    ]
    assert client.get_model_version(new, "2").tags["hokusai.baseline"] == f"{new}/1"
    listed = send(server.url, "GET", f"/api/2.0/hokusai/attestations?model_id={new}/2").json["attestations"]
    assert [document["id"] for document in listed] == [attestation_id]
    # The renamed model's attested version cannot be re-baselined, so not attested twice.
    other_baseline = baseline(client, new)
    with pytest.raises(MlflowException, match="attested"):
        client.set_model_version_tag(new, "2", "hokusai.baseline", other_baseline)
    with pytest.raises(MlflowException, match="attested"):
        client.delete_model_version_tag(new, "2", "hokusai.baseline")
    assert impact_of(server, ALICE) == sorted(
        f"{new}/2" if model_id == f"{old}/2" else model_id for model_id in alice_before
    )

    # A new model of the old name: no lineage, no attestation, no "attested" refusal.
    assert send(server.url, "GET", f"/api/2.0/hokusai/models/{old}/2/lineage").status == 404
    client.create_registered_model(old, tags={"hokusai.project": "renames"})
    improve(client, old, baseline(client, old), accuracy=0.85)
    edges = sql(
        server.store_uri,
        "SELECT parent_model_id, child_model_id FROM hokusai_lineage_edges WHERE child_model_id IN (:a, :b)",
        a=f"{old}/2",
        b=f"{new}/2",
    )
    assert {tuple(row) for row in edges} == {(f"{new}/1", f"{new}/2"), (f"{old}/1", f"{old}/2")}
    assert len(impact_of(server, ALICE)) == len(alice_before) + 1


def test_a_deleted_model_keeps_its_history_under_a_name_no_model_can_take(server, point_at):
    client = point_at(server)
    name = f"del-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name, tags={"hokusai.project": "renames"})
    improved = improve(client, name, baseline(client, name))
    attestation_id = improved.tags["hokusai.attestation.id"]

    client.delete_registered_model(name)

    # The signed document is still served by id; the registry's name is free.
    assert send(server.url, "GET", f"/api/2.0/hokusai/attestations/{attestation_id}").status == 200
    detached = scalar(
        server.store_uri,
        "SELECT child_model_id FROM hokusai_lineage_edges WHERE attestation_id = :id",
        id=attestation_id,
    )
    assert detached.startswith(f"{name}:deleted:") and detached.endswith("/2")
    client.create_registered_model(name, tags={"hokusai.project": "renames"})
    again = improve(client, name, baseline(client, name), accuracy=0.9)
    assert again.tags["hokusai.attestation.id"] != attestation_id


def test_a_failed_rename_moves_nothing(server, point_at):
    client = point_at(server)
    first, second = f"fail-{uuid.uuid4().hex[:6]}", f"fail-{uuid.uuid4().hex[:6]}"
    for name in (first, second):
        client.create_registered_model(name, tags={"hokusai.project": "renames"})
    improve(client, first, baseline(client, first))
    before = sql(
        server.store_uri, "SELECT child_model_id, parent_model_id FROM hokusai_lineage_edges ORDER BY id"
    )
    with pytest.raises(MlflowException):
        client.rename_registered_model(first, second)  # the name is taken
    assert (
        sql(server.store_uri, "SELECT child_model_id, parent_model_id FROM hokusai_lineage_edges ORDER BY id")
        == before
    )
    assert (
        json.loads(json.dumps(client.get_model_version(first, "2").tags))["hokusai.baseline"] == f"{first}/1"
    )
