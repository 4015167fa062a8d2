"""The MintRequest of an attested improvement: honest scores, one key per improvement, renewal and
co-signing (core/mint_request.py, core/issuance.py), with real secp256k1 keys."""

import copy
import json

import pytest

from mlflow_hokusai_plugin.core import eip712
from mlflow_hokusai_plugin.core.attestation import document_predicate, verify_document
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.issuance import attest_improvement, cosign_document, renew_mint_request
from mlflow_hokusai_plugin.core.mint_request import (
    LineageFacts,
    NotMintable,
    OnchainTarget,
    contract_score_bps,
    lineage_problem,
)
from mlflow_hokusai_plugin.runtime.signer import Signer

ATTESTER = Signer.from_private_key("0x" + "a7" * 32)
SECOND = Signer.from_private_key("0x" + "b8" * 32)
ONCHAIN = OnchainTarget(31337, "0x" + "cc" * 20, 7)
ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DEADLINE = 1_767_225_600


def facts(**overrides):
    values = {
        "model_id": "churn/2",
        "baseline_model_id": "churn/1",
        "benchmark_metric": "accuracy",
        "contributors": [{"address": ALICE, "weight_bps": 10_000}],
        "baseline_metrics": {"accuracy": 0.75},
        "candidate_metrics": {"accuracy": 0.82},
        "baseline_run_id": "run-1",
        "run_id": "run-2",
        "dataset_digest": "da" * 32,
        "model_digest": "c2" * 32,
        "baseline_digest": "b1" * 32,
        "created_at": "2026-12-03T00:00:00.000Z",
        "plugin_version": "test",
        "project": "churn",
        "model_type": "classification",
    }
    values.update(overrides)
    return values


def attest(signer=ATTESTER, onchain=ONCHAIN, deadline=DEADLINE, total_samples=0, **overrides):
    return attest_improvement(
        signer, onchain=onchain, deadline=deadline, total_samples=total_samples, **facts(**overrides)
    ).document


def payload_of(document):
    return document["eip712"]["typed_data"]["message"]["payload"]


def test_contract_scores_are_higher_is_better_in_0_to_10000():
    assert contract_score_bps(0.8234, "higher") == 8234
    assert contract_score_bps(0.30, "lower") == 7000
    assert contract_score_bps(0.0, "lower") == 10_000
    assert contract_score_bps(1, "higher") == 10_000
    for value, direction in ((1.0001, "higher"), (-0.01, "higher"), (1.7, "lower"), (-0.2, "lower")):
        with pytest.raises(NotMintable):
            contract_score_bps(value, direction)


def test_a_lower_is_better_improvement_is_paid_what_the_statement_claims():
    document = attest(
        benchmark_metric="log_loss", baseline_metrics={"log_loss": 0.30}, candidate_metrics={"log_loss": 0.25}
    )
    payload = payload_of(document)
    claimed = document_predicate(document)["delta_one_bps"]
    assert claimed == 500
    assert (payload["baselineScoreBps"], payload["candidateScoreBps"]) == (7000, 7500)
    # What the contract pays: max(0, candidate - baseline).
    assert payload["candidateScoreBps"] - payload["baselineScoreBps"] == claimed
    assert verify_document(document, [ATTESTER.address]).valid


def test_a_metric_with_no_honest_contract_score_gets_no_mint_request_and_says_why():
    document = attest(
        benchmark_metric="rmse", baseline_metrics={"rmse": 2.5}, candidate_metrics={"rmse": 1.7}
    )
    assert "eip712" not in document
    assert "outside [0, 1]" in document["eip712_omitted"]
    # The DSSE attestation stands on its own.
    verdict = verify_document(document, [ATTESTER.address])
    assert verdict.valid and "no EIP-712 MintRequest" in verdict.message


def test_commitments_are_the_digests_of_baseline_and_candidate():
    payload = payload_of(attest())
    assert payload["baselineCommitment"] == "0x" + "b1" * 32
    assert payload["candidateCommitment"] == "0x" + "c2" * 32
    assert payload["deadline"] == DEADLINE


def test_total_samples_is_what_the_caller_knows():
    assert payload_of(attest(total_samples=1200))["totalSamples"] == 1200
    assert payload_of(attest())["totalSamples"] == 0


def test_one_idempotency_key_per_improvement_whenever_and_however_often_it_is_signed():
    first = attest()
    later = attest(created_at="2027-01-01T00:00:00.000Z", deadline=DEADLINE + 86400, total_samples=5)
    assert first["id"] != later["id"]  # another Statement (its time differs) ...
    key = payload_of(first)["anchors"]["idempotencyKey"]
    assert payload_of(later)["anchors"]["idempotencyKey"] == key  # ... the same improvement
    assert payload_of(attest(model_digest="c3" * 32))["anchors"]["idempotencyKey"] != key
    assert payload_of(attest(baseline_model_id="churn/0"))["anchors"]["idempotencyKey"] != key
    other_chain = attest(onchain=OnchainTarget(1, ONCHAIN.verifying_contract, ONCHAIN.model_id))
    assert payload_of(other_chain)["anchors"]["idempotencyKey"] != key


def renew(document, deadline=DEADLINE + 10, signer=ATTESTER, onchain=ONCHAIN):
    return renew_mint_request(
        document,
        signer,
        onchain=onchain,
        deadline=deadline,
        total_samples=0,
        renewed_at="2026-12-08T00:00:00Z",
    )


def test_renewal_signs_a_later_deadline_over_the_same_statement_and_key():
    document = attest()
    renewed = renew(document, deadline=DEADLINE + 432_000)
    assert renewed["dsse"] == document["dsse"] and renewed["id"] == document["id"]
    before, after = payload_of(document), payload_of(renewed)
    assert after["deadline"] == DEADLINE + 432_000
    assert after["anchors"] == before["anchors"]
    assert {k: v for k, v in after.items() if k != "deadline"} == {
        k: v for k, v in before.items() if k != "deadline"
    }
    assert renewed["eip712"]["signatures"] != document["eip712"]["signatures"]
    assert renewed["eip712"]["history"] == [
        {key: document["eip712"][key] for key in ("typed_data", "signatures", "signed_at")}
    ]
    assert verify_document(renewed, [ATTESTER.address]).valid
    # A renewal asked for an earlier or equal time still moves the deadline strictly later.
    again = renew(renewed, deadline=DEADLINE)
    assert payload_of(again)["deadline"] == DEADLINE + 432_001
    assert len(again["eip712"]["history"]) == 2


def test_renewal_brings_a_legacy_document_to_todays_types():
    document = attest()
    legacy = copy.deepcopy(document)
    typed_data = legacy["eip712"]["typed_data"]
    typed_data["types"] = json.loads(json.dumps(eip712.LEGACY_MINT_REQUEST_TYPES))
    for key in ("baselineCommitment", "candidateCommitment", "deadline"):
        typed_data["message"]["payload"].pop(key)
    legacy["eip712"]["signatures"] = ["0x" + ATTESTER.sign_typed_data(typed_data).hex()]
    assert verify_document(legacy, [ATTESTER.address]).eip712["types"] == "legacy"
    # Signed then with the key of the older derivation, which it keeps: had it minted under the
    # older types, a new key would let it mint again.
    old_key = eip712.legacy_idempotency_key("churn/2", "churn/1", document["id"])
    typed_data["message"]["payload"]["anchors"]["idempotencyKey"] = old_key
    legacy["eip712"]["signatures"] = ["0x" + ATTESTER.sign_typed_data(typed_data).hex()]
    renewed = renew(legacy)
    assert eip712.types_generation(renewed["eip712"]["typed_data"]) == "current"
    assert payload_of(renewed)["anchors"]["idempotencyKey"] == old_key
    verdict = verify_document(renewed, [ATTESTER.address])
    assert verdict.valid and verdict.eip712["types"] == "current", verdict.message


def test_renewal_is_refused_to_a_key_that_did_not_sign_and_when_there_is_no_chain():
    with pytest.raises(ValidationError) as info:
        renew(attest(), signer=SECOND)
    assert info.value.field == "attester"
    with pytest.raises(ValidationError) as info:
        renew(attest(onchain=None), onchain=None)
    assert info.value.field == "attestation"
    # A document made before its model had an on-chain id gets its first MintRequest.
    first = renew(attest(onchain=None), onchain=ONCHAIN)
    assert payload_of(first)["deadline"] == DEADLINE + 10 and "history" not in first["eip712"]


def test_cosigning_gives_a_two_of_two_document_in_the_contracts_order():
    cosigned = cosign_document(attest(), SECOND)
    attesters = [ATTESTER.address, SECOND.address]
    verdict = verify_document(cosigned, attesters, threshold=2)
    assert verdict.valid, verdict.message
    assert verdict.eip712["signers"] == sorted(attesters, key=lambda address: int(address, 16))
    with pytest.raises(ValidationError):
        cosign_document(cosigned, SECOND)
    # Co-signing the other way round gives the same order.
    other_first = cosign_document(attest(signer=SECOND), ATTESTER)
    assert verify_document(other_first, attesters, threshold=2).eip712["signers"] == verdict.eip712["signers"]


def test_an_onchain_model_id_is_ascii_digits():
    from mlflow_hokusai_plugin.core.tags import check_onchain_model_id

    for value in ("²", "①", "٤٢", "4²"):  # digits to str.isdigit(), not to int() or the contract
        with pytest.raises(ValidationError):
            check_onchain_model_id(value)
    assert check_onchain_model_id("42") == 42


@pytest.mark.parametrize(
    "now",
    [
        None,  # the on-chain id removed, or the model deleted
        OnchainTarget(ONCHAIN.chain_id, ONCHAIN.verifying_contract, 99),
        OnchainTarget(1, ONCHAIN.verifying_contract, ONCHAIN.model_id),
        OnchainTarget(ONCHAIN.chain_id, "0x" + "dd" * 20, ONCHAIN.model_id),
    ],
)
def test_renewal_is_refused_once_the_models_onchain_target_changed(now):
    with pytest.raises(ValidationError) as info:
        renew(attest(), onchain=now)
    assert info.value.field == "hokusai.onchain_model_id"


def test_a_stripped_co_signature_fails_the_threshold():
    cosigned = cosign_document(attest(), SECOND)
    attesters = [ATTESTER.address, SECOND.address]
    assert verify_document(cosigned, attesters, threshold=2).valid
    stripped = copy.deepcopy(cosigned)
    stripped["eip712"]["signatures"] = stripped["eip712"]["signatures"][:1]
    verdict = verify_document(stripped, attesters, threshold=2)
    assert not verdict.valid and verdict.failed_check == "eip712" and "2 required" in verdict.message


def test_signatures_the_contract_refuses_do_not_verify():
    document = attest()
    signature = bytes.fromhex(document["eip712"]["signatures"][0][2:])
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(signature[32:64], "big")
    high_s = signature[:32] + (order - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    zero_v = signature[:64] + bytes([signature[64] - 27])
    for bad in (high_s, zero_v):
        tampered = {**document, "eip712": {**document["eip712"], "signatures": ["0x" + bad.hex()]}}
        verdict = verify_document(tampered, [ATTESTER.address])
        assert not verdict.valid and verdict.failed_check == "eip712", verdict.message


def typed(**overrides):
    return attest(**overrides)["eip712"]["typed_data"]


GENESIS = LineageFacts("churn/1", baseline_is_genesis=True, baseline_request=None)
CHILD = {
    "model_id": "churn/3",
    "baseline_model_id": "churn/2",
    "baseline_digest": "c2" * 32,
    "model_digest": "c3" * 32,
}


def test_the_lineage_rules_pay_a_set_of_weights_once_at_one_score():
    lineage_problem(typed(), GENESIS)  # the first improvement of the first baseline
    parent = typed()  # churn/2: 0.82 (8200 bps), committing to c2..
    from_parent = LineageFacts("churn/2", False, parent)
    lineage_problem(
        typed(**CHILD, baseline_metrics={"accuracy": 0.82}, candidate_metrics={"accuracy": 0.9}), from_parent
    )
    refused = [
        ("its baseline's", typed(model_digest="b1" * 32), GENESIS),
        ("registered before", typed(), LineageFacts("churn/1", True, None, same_weights_as="churn/9")),
        ("first baseline", typed(), LineageFacts("churn/1", False, None)),
        (
            "one set of weights has one score",
            typed(**CHILD, baseline_metrics={"accuracy": 0.10}, candidate_metrics={"accuracy": 0.9}),
            from_parent,
        ),
        (
            "another benchmark metric",
            typed(
                **CHILD,
                benchmark_metric="f1_score",
                baseline_metrics={"f1_score": 0.82},
                candidate_metrics={"f1_score": 0.9},
            ),
            from_parent,
        ),
    ]
    for why, request, lineage in refused:
        with pytest.raises(NotMintable) as info:
            lineage_problem(request, lineage)
        assert why in str(info.value)


def test_an_improvement_that_would_be_paid_twice_is_attested_without_a_mint_request():
    document = attest_improvement(
        ATTESTER, onchain=ONCHAIN, deadline=DEADLINE, lineage=LineageFacts("churn/1", False, None), **facts()
    ).document
    assert "eip712" not in document and "first baseline" in document["eip712_omitted"]
    assert verify_document(document, [ATTESTER.address]).valid
