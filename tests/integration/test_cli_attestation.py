"""``hokusai attestation genesis|renew|cosign|calldata``: the installed console script, run as a
subprocess the way an operator or a submitter service runs it.

cosign and calldata work on document files and need no server. genesis and renew talk to one
``mlflow server --app-name hokusai`` (SQLite, S3 over HTTP) carrying the DeltaVerifier's EIP-712
domain, started once for the module.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from eth_account import Account
from mlflow import MlflowClient

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.core.calldata import (
    SELECTOR,
    SUBMIT_MINT_REQUEST,
    decode_submit_mint_request,
    encode_submit_mint_request,
)
from mlflow_hokusai_plugin.core.eip712 import LEGACY_MINT_REQUEST_TYPES
from mlflow_hokusai_plugin.core.issuance import OnchainTarget, attest_improvement
from mlflow_hokusai_plugin.runtime.signer import Signer
from tests.integration.test_server_plugin import (
    CHAIN_ID,
    VERIFYING_CONTRACT,
    baseline_tags,
    log_candidate,
    mlflow_env,
    register_improvement,
    unique,
)

HOKUSAI = shutil.which("hokusai", path=str(Path(sys.executable).parent))
ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
KEY_A = "0x" + "a1" * 32
KEY_B = "0x" + "b2" * 32
A = Signer.from_private_key(KEY_A).address
B = Signer.from_private_key(KEY_B).address


def hokusai(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 120):
    """Run the console script with no HOKUSAI_* or MLflow server settings but those in ``env``."""
    assert HOKUSAI, "the hokusai console script is not installed (pip install -e .)"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HOKUSAI_") and k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    return subprocess.run(
        [HOKUSAI, *args],
        env={**inherited, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result, code: int, *mentions: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    for mention in mentions:
        assert mention in result.stderr, (mention, result.stderr)
    return result.stderr


def signed_document(signer_key: str = KEY_A, deadline: int | None = None, onchain: bool = True) -> dict:
    """An attestation document of m/2 over m/1, signed by ``signer_key`` (with a MintRequest)."""
    result = attest_improvement(
        Signer.from_private_key(signer_key),
        onchain=OnchainTarget(int(CHAIN_ID), VERIFYING_CONTRACT, 42) if onchain else None,
        deadline=int(time.time()) + 3600 if deadline is None else deadline,
        total_samples=1200,
        model_id="m/2",
        baseline_model_id="m/1",
        benchmark_metric="accuracy",
        contributors=[{"address": ALICE, "weight_bps": 7000}, {"address": BOB, "weight_bps": 3000}],
        baseline_metrics={"accuracy": 0.75},
        candidate_metrics={"accuracy": 0.82},
        baseline_run_id="run-1",
        run_id="run-2",
        dataset_digest="cc" * 32,
        model_digest="aa" * 32,
        baseline_digest="bb" * 32,
        created_at="2026-11-27T00:00:00Z",
        plugin_version="test",
        model_type="classification",
    )
    return result.document


def write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    return path


def signer_of(signature: str, typed_data: dict) -> str:
    from mlflow_hokusai_plugin.core.eip712 import recover_typed_data_signer

    return recover_typed_data_signer(typed_data, signature)


# -- cosign ---------------------------------------------------------------------------------------


def test_cosign_makes_a_two_of_two_document_that_verifies(tmp_path):
    original = write(tmp_path / "a.json", signed_document(KEY_A))
    # One signature: 2-of-2 is not met yet.
    refused(
        hokusai("attestation", "verify", str(original), "--attester", A, "--attester", B, "--threshold", "2"),
        1,
    )

    cosigned = tmp_path / "ab.json"
    result = hokusai(
        "attestation", "cosign", str(original), "--output", str(cosigned), env={"HOKUSAI_ATTESTER_KEY": KEY_B}
    )
    assert ok(result) == ""  # the document went to --output
    assert B in result.stderr

    verdict = hokusai(
        "attestation", "verify", str(cosigned), "--attester", A, "--attester", B, "--threshold", "2"
    )
    assert ok(verdict).startswith("VALID") and A in verdict.stdout and B in verdict.stdout

    document = json.loads(cosigned.read_text())
    assert verify_document(document, attesters=[A, B], threshold=2).valid
    assert [entry["keyid"] for entry in document["dsse"]["signatures"]] == [A, B]
    typed = document["eip712"]["typed_data"]
    signers = [signer_of(s, typed) for s in document["eip712"]["signatures"]]
    assert signers == sorted([A, B], key=lambda address: int(address, 16))
    # The Statement and the MintRequest did not change: only signatures were added.
    before = json.loads(original.read_text())
    assert document["dsse"]["payload"] == before["dsse"]["payload"] and document["id"] == before["id"]
    assert typed == before["eip712"]["typed_data"]


def test_cosign_from_stdin_to_stdout_with_a_keystore(tmp_path):
    keystore = tmp_path / "b.json"
    Signer.from_private_key(KEY_B).write_keystore(keystore, "pw")
    result = hokusai(
        "attestation",
        "cosign",
        "-",
        "--keystore",
        str(keystore),
        env={"HOKUSAI_ATTESTER_PASSWORD": "pw"},
        input=json.dumps(signed_document(KEY_A)),
    )
    document = json.loads(ok(result))
    assert verify_document(document, attesters=[A, B], threshold=2).valid

    wrong = hokusai(
        "attestation",
        "cosign",
        "-",
        "--keystore",
        str(keystore),
        env={"HOKUSAI_ATTESTER_PASSWORD": "nope"},
        input=json.dumps(signed_document(KEY_A)),
    )
    refused(wrong, 2, "wrong password")
    assert wrong.stdout == ""


def test_cosign_twice_by_the_same_key_is_refused(tmp_path):
    original = write(tmp_path / "a.json", signed_document(KEY_A))
    cosigned = tmp_path / "ab.json"
    ok(
        hokusai(
            "attestation",
            "cosign",
            str(original),
            "--output",
            str(cosigned),
            env={"HOKUSAI_ATTESTER_KEY": KEY_B},
        )
    )
    again = tmp_path / "abb.json"
    result = hokusai(
        "attestation", "cosign", str(cosigned), "--output", str(again), env={"HOKUSAI_ATTESTER_KEY": KEY_B}
    )
    refused(result, 1, B, "already signed")
    assert not again.exists()
    # The original attester cannot co-sign its own document either.
    refused(
        hokusai("attestation", "cosign", str(original), env={"HOKUSAI_ATTESTER_KEY": KEY_A}),
        1,
        "already signed",
    )


def test_cosign_refuses_to_overwrite_without_force_and_needs_a_key(tmp_path):
    original = write(tmp_path / "a.json", signed_document(KEY_A))
    existing = tmp_path / "out.json"
    existing.write_text("keep me")
    result = hokusai(
        "attestation", "cosign", str(original), "--output", str(existing), env={"HOKUSAI_ATTESTER_KEY": KEY_B}
    )
    refused(result, 2, "--output", "--force")
    assert existing.read_text() == "keep me"
    ok(
        hokusai(
            "attestation",
            "cosign",
            str(original),
            "--output",
            str(existing),
            "--force",
            env={"HOKUSAI_ATTESTER_KEY": KEY_B},
        )
    )
    assert verify_document(json.loads(existing.read_text()), attesters=[A, B], threshold=2).valid

    refused(hokusai("attestation", "cosign", str(original)), 2, "HOKUSAI_ATTESTER_KEY")
    (tmp_path / "bad.json").write_text("{not json")
    refused(
        hokusai("attestation", "cosign", str(tmp_path / "bad.json"), env={"HOKUSAI_ATTESTER_KEY": KEY_B}), 2
    )


def test_cosign_refuses_a_document_that_does_not_verify_or_has_legacy_types(tmp_path):
    document = signed_document(KEY_A)
    payload = bytearray(base64.b64decode(document["dsse"]["payload"]))
    payload[payload.index(b"700")] = ord("9")
    tampered = {
        **document,
        "dsse": {**document["dsse"], "payload": base64.b64encode(bytes(payload)).decode()},
    }
    refused(
        hokusai(
            "attestation",
            "cosign",
            str(write(tmp_path / "t.json", tampered)),
            env={"HOKUSAI_ATTESTER_KEY": KEY_B},
        ),
        1,
        "does not verify",
    )
    legacy = write(tmp_path / "legacy.json", legacy_document())
    refused(hokusai("attestation", "cosign", str(legacy), env={"HOKUSAI_ATTESTER_KEY": KEY_B}), 1, "renew")


def legacy_document() -> dict:
    """A document whose MintRequest has the types of before 2026-06-10, signed by A."""
    document = signed_document(KEY_A)
    typed = copy.deepcopy(document["eip712"]["typed_data"])
    typed["types"] = copy.deepcopy(LEGACY_MINT_REQUEST_TYPES)
    for name in ("baselineCommitment", "candidateCommitment", "deadline"):
        del typed["message"]["payload"][name]
    signature = "0x" + Signer.from_private_key(KEY_A).sign_typed_data(typed).hex()
    document["eip712"] = {**document["eip712"], "typed_data": typed, "signatures": [signature]}
    assert verify_document(document).valid  # a legacy document still verifies; it cannot be submitted
    return document


# -- calldata -------------------------------------------------------------------------------------


def cosigned_document() -> dict:
    from mlflow_hokusai_plugin.core.issuance import cosign_document

    return cosign_document(signed_document(KEY_A), Signer.from_private_key(KEY_B))


def test_calldata_from_a_file(tmp_path):
    document = cosigned_document()
    path = write(tmp_path / "ab.json", document)
    result = hokusai("attestation", "calldata", str(path))
    call = json.loads(ok(result))
    assert result.stderr == ""  # the deadline is an hour away: no warning

    typed, signatures = document["eip712"]["typed_data"], document["eip712"]["signatures"]
    message = typed["message"]
    assert set(call) == {"function", "selector", "args", "calldata", "deadline"}
    assert call["function"] == SUBMIT_MINT_REQUEST
    assert call["selector"] == "0x" + SELECTOR.hex() == call["calldata"][:10]
    assert call["deadline"] == message["payload"]["deadline"]
    assert call["calldata"] == "0x" + encode_submit_mint_request(typed, signatures).hex()

    model_id, payload, contributors, sigs = call["args"]
    assert model_id == "42"
    assert payload[:6] == ["run-2", "7500", "8200", "0", "0", "1200"]
    anchors = message["payload"]["anchors"]
    assert payload[6] == [
        anchors["benchmarkSpecHash"],
        anchors["datasetHash"],
        "0x" + document["id"],
        anchors["idempotencyKey"],
        "accuracy",
        "classification",
    ]
    assert payload[7:] == ["0x" + "bb" * 32, "0x" + "aa" * 32, str(message["payload"]["deadline"])]
    assert contributors == [[ALICE, "7000"], [BOB, "3000"]]
    assert sigs == signatures and len(sigs) == 2
    # The calldata decodes to the same arguments, ints as ints.
    decoded = decode_submit_mint_request(call["calldata"])
    assert decoded[0] == 42 and decoded[2] == [[ALICE, 7000], [BOB, 3000]] and decoded[3] == sigs

    from_stdin = hokusai("attestation", "calldata", "-", input=json.dumps(document))
    assert json.loads(ok(from_stdin)) == call


def test_calldata_warns_of_a_passed_deadline(tmp_path):
    expired = write(tmp_path / "old.json", signed_document(KEY_A, deadline=int(time.time()) - 60))
    result = hokusai("attestation", "calldata", str(expired))
    call = json.loads(ok(result))
    assert call["deadline"] < time.time()
    assert (
        "Warning" in result.stderr
        and "deadline" in result.stderr
        and "hokusai attestation renew" in result.stderr
    )


def test_calldata_refusals(tmp_path):
    no_eip712 = write(tmp_path / "plain.json", signed_document(KEY_A, onchain=False))
    refused(hokusai("attestation", "calldata", str(no_eip712)), 1, "no EIP-712 MintRequest")

    omitted = {**signed_document(KEY_A, onchain=False), "eip712_omitted": "metric rmse has no contract score"}
    refused(
        hokusai("attestation", "calldata", str(write(tmp_path / "omitted.json", omitted))),
        1,
        "metric rmse has no contract score",
    )

    refused(
        hokusai("attestation", "calldata", str(write(tmp_path / "legacy.json", legacy_document()))),
        1,
        "renew",
    )

    document = cosigned_document()
    document["eip712"]["signatures"].reverse()
    result = hokusai("attestation", "calldata", str(write(tmp_path / "unordered.json", document)))
    refused(result, 1, "ascending")
    assert result.stdout == ""

    refused(hokusai("attestation", "calldata", str(tmp_path / "missing.json")), 2, "ID_OR_FILE")
    (tmp_path / "bad.json").write_text("[1,")
    refused(hokusai("attestation", "calldata", str(tmp_path / "bad.json")), 2, "ID_OR_FILE")
    # An attestation id needs a server.
    refused(hokusai("attestation", "calldata", "ab" * 32), 2, "MLFLOW_TRACKING_URI")


# -- genesis and renew, against a real server ------------------------------------------------------


@pytest.fixture(scope="module")
def server(hokusai_servers):
    return hokusai_servers.start(
        "sqlite",
        workers=1,
        env={"HOKUSAI_CHAIN_ID": CHAIN_ID, "HOKUSAI_VERIFYING_CONTRACT": VERIFYING_CONTRACT},
    )


@pytest.fixture(scope="module")
def lineage(server):
    """On the server: an on-chain model ``name`` (1 a baseline, 2 improves 1, 3 improves 2) and an
    off-chain one ``plain`` (1 a baseline, 2 improves 1)."""
    with mlflow_env():
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(unique("cli-attestation"))
        client = MlflowClient(server.url, server.url)
        name = unique("chain")
        client.create_registered_model(name, tags={T.PROJECT: "churn", T.ONCHAIN_MODEL_ID: "42"})
        mlflow.register_model(log_candidate({"accuracy": 0.75}).uri, name, tags=baseline_tags())
        second = register_improvement(client, name, f"{name}/1", {"accuracy": 0.80})
        third = register_improvement(client, name, f"{name}/2", {"accuracy": 0.84})
        plain = unique("plain")
        mlflow.register_model(log_candidate({"accuracy": 0.75}).uri, plain, tags=baseline_tags())
        plain_improved = register_improvement(client, plain, f"{plain}/1", {"accuracy": 0.80})
        untagged = unique("untagged")
        mlflow.register_model(log_candidate({"accuracy": 0.75}).uri, untagged)
        for version in (second, third, plain_improved):
            assert version.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED, version.tags
        return {
            "client": client,
            "name": name,
            "ids": {2: second.tags[T.ATTESTATION_ID], 3: third.tags[T.ATTESTATION_ID]},
            "plain": plain,
            "plain_id": plain_improved.tags[T.ATTESTATION_ID],
            "untagged": untagged,
        }


def at(server) -> dict:
    return {"MLFLOW_TRACKING_URI": server.url}


def test_genesis_is_the_first_baselines_artifact_digest(server, lineage):
    client, name = lineage["client"], lineage["name"]
    digest = client.get_model_version(name, "1").tags.get(T.ARTIFACT_DIGEST)
    assert digest, "the server did not tag the baseline with hokusai.artifact_digest"
    genesis = "0x" + digest

    assert ok(hokusai("attestation", "genesis", f"{name}/1", env=at(server))).strip() == genesis
    assert ok(hokusai("attestation", "genesis", name, env=at(server))).strip() == genesis
    as_json = json.loads(ok(hokusai("attestation", "genesis", name, "--json", "--tracking-uri", server.url)))
    assert as_json == {"model_id": f"{name}/1", "genesis": genesis}

    # It is the head the first improvement's MintRequest starts from.
    status, document = http_get(server, f"/attestations/{lineage['ids'][2]}")
    assert status == 200
    assert document["eip712"]["typed_data"]["message"]["payload"]["baselineCommitment"] == genesis


def test_genesis_refusals(server, lineage):
    name = lineage["name"]
    stderr = refused(hokusai("attestation", "genesis", f"{name}/3", env=at(server)), 1, f"improves {name}/2")
    assert f"hokusai attestation genesis {name}/1" in stderr
    refused(hokusai("attestation", "genesis", f"{name}/9", env=at(server)), 1, f"{name}/9", "does not exist")
    refused(hokusai("attestation", "genesis", unique("nothing"), env=at(server)), 1, "has no versions")
    refused(hokusai("attestation", "genesis", lineage["untagged"], env=at(server)), 1, "no Hokusai baseline")
    refused(hokusai("attestation", "genesis", f"{lineage['untagged']}/1", env=at(server)), 1, T.PROJECT)
    refused(hokusai("attestation", "genesis", f"{name}/x", env=at(server)), 2, "MODEL_ID")
    refused(hokusai("attestation", "genesis", name), 2, "MLFLOW_TRACKING_URI")


def test_renew_gives_a_later_deadline_over_the_same_statement(server, lineage, hokusai_servers, tmp_path):
    attestation_id = lineage["ids"][2]
    status, before = http_get(server, f"/attestations/{attestation_id}")
    assert status == 200

    out = tmp_path / "renewed.json"
    result = hokusai("attestation", "renew", attestation_id, "--output", str(out), env=at(server))
    assert ok(result) == ""
    renewed = json.loads(out.read_text())
    old_payload = before["eip712"]["typed_data"]["message"]["payload"]
    new_payload = renewed["eip712"]["typed_data"]["message"]["payload"]
    assert new_payload["deadline"] > old_payload["deadline"]
    assert renewed["id"] == before["id"] and renewed["dsse"] == before["dsse"]
    assert new_payload["anchors"] == old_payload["anchors"]  # attestationHash, idempotencyKey kept
    deadline = new_payload["deadline"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
    assert iso in result.stderr and str(deadline) in result.stderr

    attester = Account.from_key(hokusai_servers.attester_key).address
    ok(hokusai("attestation", "verify", str(out), "--attester", attester))
    # The server now serves the renewed signing, and calldata by id reads it from there.
    call = json.loads(ok(hokusai("attestation", "calldata", attestation_id, env=at(server))))
    assert call["deadline"] == deadline
    assert call["args"][3] == renewed["eip712"]["signatures"]

    to_stdout = hokusai("attestation", "renew", attestation_id, "--tracking-uri", server.url)
    again = json.loads(ok(to_stdout))
    assert again["eip712"]["typed_data"]["message"]["payload"]["deadline"] > deadline


def test_renew_errors_are_the_servers_message(server, lineage):
    nothing = hokusai("attestation", "renew", lineage["plain_id"], env=at(server))
    stderr = refused(nothing, 1, "nothing to renew")
    assert nothing.stdout == ""
    assert "INVALID_PARAMETER_VALUE" not in stderr  # the message, not the exception's repr
    refused(hokusai("attestation", "renew", "0" * 64, env=at(server)), 1, "does not exist")
    refused(hokusai("attestation", "renew", "not-an-id", env=at(server)), 2, "ID")
    refused(hokusai("attestation", "renew", lineage["ids"][2]), 2, "MLFLOW_TRACKING_URI")


def http_get(server, path: str) -> tuple[int, dict]:
    from tests.integration.test_server_plugin import http_get as get

    return get(f"{server.url}/api/2.0/hokusai{path}")
