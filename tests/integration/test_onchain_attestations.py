"""Attestations the current DeltaVerifier accepts, on a real server: weight-lineage commitments from
genesis, one idempotency key per improvement, honest scores, renewal, refusals of a missing chain.

One ``mlflow server --app-name hokusai`` (API keys, PostgreSQL, S3 over HTTP) with the chain's
EIP-712 domain and a three-second signature lifetime, so expiry is seen without waiting days.
"""

from __future__ import annotations

import json
import os
import time

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import create_engine, text

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.demo.embedded_server import ServerStartError
from mlflow_hokusai_plugin.store.artifact_digest import artifact_uri_digest
from tests.integration.test_auth import make_key
from tests.integration.test_cli import hokusai as hokusai_cli
from tests.integration.test_server_plugin import (
    ALICE,
    BOB,
    CHAIN_ID,
    REFUSAL_TIMEOUT_S,
    VERIFYING_CONTRACT,
    baseline_tags,
    log_candidate,
    unique,
)
from tests.security.attack import send

TTL_S = 3
ONCHAIN_ID = "4242"


@pytest.fixture(scope="module")
def chain(hokusai_servers):
    """The server, its keys (admin, write and read of project churn, write of project other) and
    an MLflow client authenticated as admin."""
    server = hokusai_servers.start(
        "postgresql",
        env={
            "HOKUSAI_AUTH": "apikey",
            "HOKUSAI_DEV_MODE": "",
            "HOKUSAI_CHAIN_ID": CHAIN_ID,
            "HOKUSAI_VERIFYING_CONTRACT": VERIFYING_CONTRACT,
            "HOKUSAI_SIGNATURE_TTL": str(TTL_S),
        },
    )
    keys = {
        "admin": make_key(server.store_uri, "admin"),
        "write": make_key(server.store_uri, "write", "churn"),
        "read": make_key(server.store_uri, "read", "churn"),
        "other": make_key(server.store_uri, "write", "other"),
    }
    saved = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = keys["admin"]
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    mlflow.set_experiment(unique("onchain"))
    try:
        yield server, keys, MlflowClient(server.url, registry_uri=server.url)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = saved


def onchain_model(client: MlflowClient, metric: str = "accuracy", value: float = 0.75):
    """A registered model with an on-chain id and its first baseline; (name, baseline version)."""
    name = unique("chain")
    client.create_registered_model(name, tags={T.PROJECT: "churn", T.ONCHAIN_MODEL_ID: ONCHAIN_ID})
    tags = {**baseline_tags(), T.BENCHMARK_METRIC: metric}
    version = mlflow.register_model(log_candidate({metric: value}).uri, name, tags=tags)
    return name, version


def improve(name: str, baseline: str, value: float, metric: str = "accuracy", contributors=None):
    tags = {
        **baseline_tags(),
        T.BENCHMARK_METRIC: metric,
        T.BASELINE: baseline,
        T.CONTRIBUTORS: json.dumps(contributors or [{"address": ALICE, "weight_bps": 10000}]),
    }
    return mlflow.register_model(log_candidate({metric: value}).uri, name, tags=tags)


def document_of(server, keys, version, key="admin") -> dict:
    answer = send(
        server.url, "GET", f"/api/2.0/hokusai/attestations/{version.tags[T.ATTESTATION_ID]}", key=keys[key]
    )
    assert answer.status == 200, answer.body[:500]
    return answer.json


def payload_of(document: dict) -> dict:
    return document["eip712"]["typed_data"]["message"]["payload"]


def renew(server, keys, attestation_id: str, key: str = "write"):
    return send(
        server.url, "POST", f"/api/2.0/hokusai/attestations/{attestation_id}/renew", {}, key=keys[key]
    )


def test_a_baseline_has_its_digest_from_registration_and_it_is_the_genesis(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client)
    # In MLflow's own answer to the registration, and as the server stores it.
    digest = baseline.tags[T.ARTIFACT_DIGEST]
    assert client.get_model_version(name, baseline.version).tags[T.ARTIFACT_DIGEST] == digest
    logged = client.get_logged_model(baseline.source[len("models:/") :].rstrip("/"))
    assert digest == artifact_uri_digest(mlflow.artifacts.download_artifacts(logged.artifact_location))
    improved = improve(name, f"{name}/{baseline.version}", 0.80)
    document = document_of(server, keys, improved)
    assert payload_of(document)["baselineCommitment"] == "0x" + digest
    assert document_predicate(document)["baseline"]["digest"] == digest


def test_each_improvement_of_a_chain_commits_to_its_parents_weights(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client, value=0.70)
    parent, parent_digest = f"{name}/{baseline.version}", baseline.tags[T.ARTIFACT_DIGEST]
    keys_seen = set()
    for value in (0.74, 0.79, 0.85):
        improved = improve(name, parent, value)
        assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
        assert improved.tags[T.ATTESTATION_EIP712] == T.EIP712_SIGNED
        document = document_of(server, keys, improved)
        payload = payload_of(document)
        # Hash-linked from the genesis: each baseline commitment is the parent's candidate one.
        assert payload["baselineCommitment"] == "0x" + parent_digest
        assert payload["candidateCommitment"] == "0x" + improved.tags[T.ARTIFACT_DIGEST]
        assert document["eip712"]["typed_data"]["message"]["modelId"] == int(ONCHAIN_ID)
        keys_seen.add(payload["anchors"]["idempotencyKey"])
        verdict = send(
            server.url,
            "POST",
            "/api/2.0/hokusai/attestations/verify",
            {"document": document},
            key=keys["read"],
        ).json
        assert verdict["valid"], verdict["message"]
        assert verdict["eip712"]["types"] == "current"
        assert verdict["eip712"]["candidate_commitment"] == payload["candidateCommitment"]
        parent, parent_digest = f"{name}/{improved.version}", improved.tags[T.ARTIFACT_DIGEST]
    assert len(keys_seen) == 3


def test_siblings_commit_to_the_same_baseline_and_a_rebase_commits_to_the_winner(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client, value=0.70)
    genesis = "0x" + baseline.tags[T.ARTIFACT_DIGEST]
    first = improve(name, f"{name}/1", 0.76)
    second = improve(name, f"{name}/1", 0.78)
    first_payload, second_payload = (payload_of(document_of(server, keys, v)) for v in (first, second))
    assert first_payload["baselineCommitment"] == second_payload["baselineCommitment"] == genesis
    assert first_payload["anchors"]["idempotencyKey"] != second_payload["anchors"]["idempotencyKey"]
    # Once the first has minted, the chain's head is its candidate commitment: the second's weights
    # registered again as an improvement of the first (re-evaluated on the same benchmark).
    rebased = improve(name, f"{name}/{first.version}", 0.78)
    rebased_payload = payload_of(document_of(server, keys, rebased))
    assert rebased_payload["baselineCommitment"] == first_payload["candidateCommitment"]
    assert rebased_payload["candidateScoreBps"] - rebased_payload["baselineScoreBps"] == 200


def test_a_lower_is_better_metric_is_scored_so_the_contract_pays_the_claimed_delta(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client, metric="log_loss", value=0.30)
    improved = improve(name, f"{name}/{baseline.version}", 0.25, metric="log_loss")
    assert improved.tags[T.DELTA_ONE_BPS] == "500"
    payload = payload_of(document_of(server, keys, improved))
    assert (payload["baselineScoreBps"], payload["candidateScoreBps"]) == (7000, 7500)


def test_a_metric_the_contract_cannot_score_is_attested_without_a_mint_request(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client, metric="rmse", value=2.5)
    improved = improve(name, f"{name}/{baseline.version}", 1.7, metric="rmse")
    assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert improved.tags[T.ATTESTATION_EIP712].startswith("omitted: ")
    assert "outside [0, 1]" in improved.tags[T.ATTESTATION_EIP712]
    document = document_of(server, keys, improved)
    assert "eip712" not in document and "outside [0, 1]" in document["eip712_omitted"]


def test_total_samples_are_the_contributed_rows(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client)
    by_weight = [
        {"address": ALICE, "weight_bps": 6000, "samples": 10},
        {"address": BOB, "weight_bps": 4000, "samples": 30},
    ]
    improved = improve(name, f"{name}/{baseline.version}", 0.80, contributors=by_weight)
    document = document_of(server, keys, improved)
    assert payload_of(document)["totalSamples"] == 40
    # The weights given split the reward, whatever the rows.
    assert [c["weight"] for c in document["eip712"]["typed_data"]["message"]["contributors"]] == [6000, 4000]


def test_renewal_re_signs_a_later_deadline_and_keeps_the_statement_hash_and_key(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client)
    improved = improve(name, f"{name}/{baseline.version}", 0.81)
    original = document_of(server, keys, improved)
    assert original["eip712"]["expired"] is False
    time.sleep(TTL_S + 1.5)
    expired = document_of(server, keys, improved, key="read")
    assert expired["eip712"]["expired"] is True

    answer = renew(server, keys, original["id"])
    assert answer.status == 200, answer.body[:500]
    renewed = answer.json
    assert renewed["dsse"] == original["dsse"] and renewed["id"] == original["id"]
    before, after = payload_of(original), payload_of(renewed)
    assert after["anchors"] == before["anchors"]  # attestationHash and idempotencyKey included
    assert after["deadline"] > before["deadline"] and after["deadline"] >= int(time.time()) + TTL_S - 1
    assert renewed["eip712"]["expired"] is False
    assert [entry["signatures"] for entry in renewed["eip712"]["history"]] == [
        original["eip712"]["signatures"]
    ]
    assert document_of(server, keys, improved) == {
        **renewed,
        "eip712": {**renewed["eip712"], "expired": False},
    }
    # Renewed again at once: still strictly later, and the history keeps both earlier signings.
    again = renew(server, keys, original["id"]).json
    assert payload_of(again)["deadline"] > after["deadline"]
    assert len(again["eip712"]["history"]) == 2
    verdict = send(server.url, "POST", "/api/2.0/hokusai/attestations/verify", {"document": again}).json
    assert verdict["valid"], verdict["message"]


def test_renewal_needs_the_write_role_in_the_attestations_project(chain):
    server, keys, client = chain
    name, baseline = onchain_model(client)
    document = document_of(server, keys, improve(name, f"{name}/{baseline.version}", 0.79))
    assert renew(server, keys, document["id"], key="read").status == 403
    assert renew(server, keys, document["id"], key="other").status == 404  # another project's
    answer = send(server.url, "POST", f"/api/2.0/hokusai/attestations/{document['id']}/renew", {})
    assert answer.status == 401
    assert renew(server, keys, "0" * 64).status == 404
    assert renew(server, keys, "not-an-id").status == 404
    # Nothing changed by the refusals.
    assert document_of(server, keys, client.get_model_version(name, "2")) == document


def test_renewal_of_an_attestation_with_no_chain_says_so(chain):
    server, keys, client = chain
    name = unique("offchain")
    mlflow.register_model(log_candidate({"accuracy": 0.7}).uri, name, tags=baseline_tags())
    improved = improve(name, f"{name}/1", 0.8)
    document = document_of(server, keys, improved)
    assert "eip712" not in document and T.ATTESTATION_EIP712 not in improved.tags
    answer = renew(server, keys, document["id"])
    assert answer.status == 400 and answer.json["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "nothing to renew" in answer.json["message"]


def test_a_server_without_the_chain_domain_refuses_an_onchain_model(hokusai_server):
    client = MlflowClient(hokusai_server.url, registry_uri=hokusai_server.url)
    name = unique("nochain")
    with pytest.raises(MlflowException) as raised:
        client.create_registered_model(name, tags={T.ONCHAIN_MODEL_ID: "7"})
    assert raised.value.get_http_status_code() == 400
    assert T.ONCHAIN_MODEL_ID in raised.value.message and "HOKUSAI_CHAIN_ID" in raised.value.message
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as raised:
        client.set_registered_model_tag(name, T.ONCHAIN_MODEL_ID, "7")
    assert raised.value.get_http_status_code() == 400
    assert T.ONCHAIN_MODEL_ID not in client.get_registered_model(name).tags


def test_a_server_without_the_chain_domain_will_not_start_on_a_database_with_onchain_models(
    chain, hokusai_servers
):
    server, _, client = chain
    onchain_model(client)  # at least one model with an on-chain id in the database
    started = time.monotonic()
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start(
            "postgresql",
            store_uri=server.store_uri,
            workers=1,
            env={"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": ""},
        )
    message = str(raised.value)
    assert "exited with code 1." in message, message[:300]
    assert "hokusai.onchain_model_id" in message and "HOKUSAI_CHAIN_ID" in message
    assert time.monotonic() - started < REFUSAL_TIMEOUT_S


def test_reconcile_gives_an_older_baseline_its_digest_and_genesis_then_prints_it(chain, hokusai_servers):
    server, keys, client = chain
    name, baseline = onchain_model(client)
    digest = baseline.tags[T.ARTIFACT_DIGEST]
    # A baseline registered before digests were written at registration.
    with create_engine(database_url(server.store_uri)).begin() as connection:
        connection.execute(
            text("DELETE FROM model_version_tags WHERE name = :n AND key = :k"),
            {"n": name, "k": T.ARTIFACT_DIGEST},
        )
    env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_TOKEN": keys["read"]}
    missing = hokusai_cli("attestation", "genesis", name, env=env)
    assert missing.returncode == 1 and T.ARTIFACT_DIGEST in missing.stderr

    s3 = hokusai_servers.s3
    reconciled = hokusai_cli(
        "reconcile",
        "--store-uri",
        server.store_uri,
        "--artifacts-destination",
        f"s3://{s3.bucket}/hokusai-artifacts",
        env={"HOKUSAI_ATTESTER_KEY": hokusai_servers.attester_key, **s3.env},
        timeout=180,
    )
    assert reconciled.returncode == 0, (reconciled.stdout, reconciled.stderr[-2000:])
    assert f"{name}/1: digest {digest}" in reconciled.stdout.splitlines()
    genesis = hokusai_cli("attestation", "genesis", name, env=env)
    assert (genesis.returncode, genesis.stdout) == (0, f"0x{digest}\n"), genesis.stderr


def test_weights_the_chain_has_paid_for_get_no_second_mint_request(chain):
    """The reviewer's attack: the baseline's own files registered again as its "improvement" with a
    better run, three times; and the head's weights re-registered as a low-scored new baseline."""
    server, keys, client = chain
    name, baseline = onchain_model(client)
    better = log_candidate({"accuracy": 0.82})
    tags = {
        **baseline_tags(),
        T.BASELINE: f"{name}/1",
        T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 10000}]),
    }

    def again_as(version, run_id, tags):
        logged = version.source[len("models:/") :].rstrip("/")
        return client.create_model_version(name, version.source, run_id, tags=tags, model_id=logged)

    same = again_as(baseline, better.run_id, tags)
    assert same.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert "weights are its baseline's" in same.tags[T.ATTESTATION_EIP712]
    assert "eip712" not in document_of(server, keys, same)

    paid = improve(name, f"{name}/1", 0.82)
    assert paid.tags[T.ATTESTATION_EIP712] == T.EIP712_SIGNED
    again = again_as(paid, better.run_id, tags)
    assert f"those of {name}/{paid.version}" in again.tags[T.ATTESTATION_EIP712]
    # The head's weights as a new, low-scored root baseline, then "improved" on.
    low = log_candidate({"accuracy": 0.10})
    rebased = again_as(paid, low.run_id, baseline_tags())
    improved = improve(name, f"{name}/{rebased.version}", 0.90)
    assert "first baseline" in improved.tags[T.ATTESTATION_EIP712]
    assert "eip712" not in document_of(server, keys, improved)
