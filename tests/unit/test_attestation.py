import base64
import dataclasses
import hashlib
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from mlflow_hokusai_plugin.core.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Verdict,
    add_signature,
    attestation_document,
    build_statement,
    improvement_predicate,
    pae,
    payload_sha256,
    sign_envelope,
    verify_document,
    verify_envelope,
)
from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.core.eip712 import LEGACY_MINT_REQUEST_TYPES
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.mint_request import OnchainTarget, mint_request


class KeySigner:
    """The MessageSigner protocol implemented with eth-account alone."""

    def __init__(self, key: str) -> None:
        self._account = Account.from_key(key)
        self.address = self._account.address

    def sign_message(self, data: bytes) -> bytes:
        return bytes(self._account.sign_message(encode_defunct(primitive=data)).signature)

    def sign_typed_data(self, typed_data: dict) -> bytes:
        return bytes(self._account.sign_message(encode_typed_data(full_message=typed_data)).signature)


ALICE = KeySigner("0x" + "a1" * 32)
BOB = KeySigner("0x" + "b2" * 32)
CAROL = KeySigner("0x" + "c3" * 32)
MALLORY = KeySigner("0x" + "dd" * 32)
MODEL_DIGEST = "5e" * 32
CONTRIBUTOR = "0x" + "77" * 20


def make_predicate(**overrides):
    arguments = {
        "model_id": "churn/2",
        "model_digest": MODEL_DIGEST,
        "baseline_model_id": "churn/1",
        "baseline_digest": "ba" * 32,
        "baseline_run_id": "run-base",
        "run_id": "run-cand",
        "benchmark_metric": "accuracy",
        "dataset_digest": "da" * 32,
        "baseline_metrics": {"accuracy": 0.75},
        "candidate_metrics": {"accuracy": 0.82},
        "metric_deltas": {
            "accuracy": {
                "baseline_value": 0.75,
                "new_value": 0.82,
                "absolute_delta": 0.07,
                "relative_delta": 0.0933,
                "improvement": True,
                "direction": "higher",
            }
        },
        "delta_one_bps": 700,
        "contributors": [{"address": CONTRIBUTOR, "weight_bps": 10_000, "attributed_bps": 700}],
        "pipeline_run_id": "pipe-1",
        "plugin_version": "0.1.0",
        "created_at": "2025-01-02T03:04:05Z",
        "model_type": "classification",
        "project": "churn",
    }
    arguments.update(overrides)
    return improvement_predicate(**arguments)


def make_statement():
    return build_statement("models:/churn/2", MODEL_DIGEST, make_predicate())


def make_envelope(*signers):
    envelope = sign_envelope(make_statement(), signers[0])
    for signer in signers[1:]:
        envelope = add_signature(envelope, signer)
    return envelope


def with_payload(envelope, payload: bytes):
    return {**envelope, "payload": base64.b64encode(payload).decode()}


def decoded_payload(envelope) -> bytes:
    return base64.b64decode(envelope["payload"])


# --- PAE and Statement ----------------------------------------------------------------------------


def test_pae_matches_the_dsse_test_vector():
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters():
    assert pae("é", "ü".encode()) == "DSSEv1 2 é 2 ü".encode()


def test_build_statement():
    statement = build_statement("models:/churn/2", "AB" * 32, {"k": 1})
    assert statement == {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "models:/churn/2", "digest": {"sha256": "ab" * 32}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"k": 1},
    }


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("", MODEL_DIGEST, {}), "subject_name"),
        (("models:/m/1", "ab" * 31, {}), "subject_sha256"),
        (("models:/m/1", "0x" + MODEL_DIGEST, {}), "subject_sha256"),
        (("models:/m/1", MODEL_DIGEST, []), "predicate"),
    ],
)
def test_build_statement_validates(arguments, field):
    with pytest.raises(ValidationError) as info:
        build_statement(*arguments)
    assert info.value.field == field


def test_improvement_predicate_layout():
    predicate = make_predicate(
        contributors=[{"address": CONTRIBUTOR, "weight_bps": 10_000, "attributed_bps": 700, "samples": 3}]
    )
    assert predicate == {
        "model": {
            "id": "churn/2",
            "digest": MODEL_DIGEST,
            "run_id": "run-cand",
            "model_type": "classification",
            "project": "churn",
        },
        "baseline": {"model_id": "churn/1", "digest": "ba" * 32, "run_id": "run-base"},
        "benchmark": {"metric": "accuracy", "dataset_digest": "da" * 32},
        "metrics": {"baseline": {"accuracy": 0.75}, "candidate": {"accuracy": 0.82}},
        "metric_deltas": {
            "accuracy": {
                "baseline_value": 0.75,
                "new_value": 0.82,
                "absolute_delta": 0.07,
                "relative_delta": 0.0933,
                "improvement": True,
                "direction": "higher",
            }
        },
        "delta_one_bps": 700,
        "contributors": [{"address": CONTRIBUTOR, "weight_bps": 10_000, "attributed_bps": 700}],
        "pipeline_run_id": "pipe-1",
        "mlflow_run_ids": {"baseline": "run-base", "candidate": "run-cand"},
        "plugin_version": "0.1.0",
        "created_at": "2025-01-02T03:04:05Z",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"delta_one_bps": 7.0}, "delta_one_bps"),
        ({"delta_one_bps": True}, "delta_one_bps"),
        ({"contributors": "0x77"}, "contributors"),
        ({"contributors": [None]}, "contributors[0]"),
        (
            {"contributors": [{"address": CONTRIBUTOR, "weight_bps": 10_000}]},
            "contributors[0].attributed_bps",
        ),
    ],
)
def test_improvement_predicate_validates(overrides, field):
    with pytest.raises(ValidationError) as info:
        make_predicate(**overrides)
    assert info.value.field == field


# --- Signing --------------------------------------------------------------------------------------


def test_sign_envelope_signs_pae_of_canonical_payload():
    statement = make_statement()
    envelope = sign_envelope(statement, ALICE)
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["payloadType"] == PAYLOAD_TYPE
    payload = decoded_payload(envelope)
    assert payload == canonical_json(statement)
    [entry] = envelope["signatures"]
    assert entry["keyid"] == ALICE.address
    signature = base64.b64decode(entry["sig"])
    assert len(signature) == 65
    # Checked with eth-account alone, as an outsider would.
    signable = encode_defunct(primitive=pae(PAYLOAD_TYPE, payload))
    assert Account.recover_message(signable, signature=signature) == ALICE.address


def test_sign_envelope_refuses_a_statement_the_verifier_would_refuse():
    statement = make_statement()
    statement["predicateType"] = "https://example.com/other"
    with pytest.raises(ValidationError) as info:
        sign_envelope(statement, ALICE)
    assert info.value.field == "statement"


def test_sign_envelope_refuses_a_signer_returning_a_wrong_length():
    class Short:
        address = ALICE.address

        def sign_message(self, data: bytes) -> bytes:
            return b"\x00" * 64

    with pytest.raises(ValidationError):
        sign_envelope(make_statement(), Short())


def test_payload_sha256_is_the_hash_of_the_signed_bytes():
    envelope = make_envelope(ALICE)
    assert payload_sha256(envelope) == hashlib.sha256(canonical_json(make_statement())).hexdigest()
    with pytest.raises(ValidationError):
        payload_sha256({"payload": "***"})
    with pytest.raises(ValidationError):
        payload_sha256(None)


# --- Verification ---------------------------------------------------------------------------------


def test_round_trip_with_expected_attester():
    envelope = make_envelope(ALICE)
    verdict = verify_envelope(envelope, [ALICE.address])
    assert verdict.valid, verdict.message
    assert verdict.failed_check is None
    assert verdict.signers == (ALICE.address,)
    assert verdict.statement == make_statement()


def test_without_expected_attesters_the_verdict_says_it_only_proves_who_signed():
    verdict = verify_envelope(make_envelope(ALICE))
    assert verdict.valid
    assert verdict.signers == (ALICE.address,)
    assert "no expected attester" in verdict.message


def test_expected_attesters_accept_any_case():
    verdict = verify_envelope(make_envelope(ALICE), [ALICE.address.lower()])
    assert verdict.valid


def test_a_different_signer_fails_the_threshold():
    verdict = verify_envelope(make_envelope(MALLORY), [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == "threshold"
    assert verdict.signers == (MALLORY.address,)


def test_keyid_is_only_a_hint():
    envelope = make_envelope(MALLORY)
    envelope["signatures"][0]["keyid"] = ALICE.address  # a lie
    verdict = verify_envelope(envelope, [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == "threshold"


def test_m_of_n_two_of_three():
    attesters = [ALICE.address, BOB.address, CAROL.address]
    two = make_envelope(ALICE, CAROL)
    verdict = verify_envelope(two, attesters, threshold=2)
    assert verdict.valid, verdict.message
    assert verdict.signers == (ALICE.address, CAROL.address)

    one = make_envelope(BOB)
    verdict = verify_envelope(one, attesters, threshold=2)
    assert not verdict.valid
    assert verdict.failed_check == "threshold"

    # An outsider's signature does not make up for a missing attester.
    verdict = verify_envelope(make_envelope(BOB, MALLORY), attesters, threshold=2)
    assert not verdict.valid
    assert verdict.failed_check == "threshold"
    assert verdict.signers == (BOB.address, MALLORY.address)


def test_without_attesters_threshold_counts_distinct_signers():
    assert verify_envelope(make_envelope(ALICE, BOB), threshold=2).valid
    assert verify_envelope(make_envelope(ALICE), threshold=2).failed_check == "threshold"


def test_duplicate_signature_by_the_same_key_counts_once():
    envelope = make_envelope(ALICE)
    envelope["signatures"].append(dict(envelope["signatures"][0]))
    verdict = verify_envelope(envelope, [ALICE.address, BOB.address], threshold=2)
    assert not verdict.valid
    assert verdict.failed_check == "threshold"
    assert verdict.signers == (ALICE.address,)


def test_flipped_payload_bytes_invalidate_the_envelope():
    envelope = make_envelope(ALICE)
    payload = decoded_payload(envelope)
    # A spread of positions over the whole payload (every byte takes ~5 s: recovery is slow).
    positions = [*range(0, len(payload), 17), len(payload) - 1]
    checks = set()
    for position in positions:
        tampered = bytearray(payload)
        tampered[position] ^= 0x01
        verdict = verify_envelope(with_payload(envelope, bytes(tampered)), [ALICE.address])
        assert not verdict.valid, position
        checks.add(verdict.failed_check)
    # Most flips keep a well-formed Statement and are caught only by the signature.
    assert "threshold" in checks


def test_a_changed_value_recovers_another_address():
    envelope = make_envelope(ALICE)
    payload = decoded_payload(envelope)
    assert b'"delta_one_bps":700' in payload
    tampered = with_payload(envelope, payload.replace(b'"delta_one_bps":700', b'"delta_one_bps":900'))
    verdict = verify_envelope(tampered, [ALICE.address])
    assert verdict.failed_check == "threshold"
    assert verdict.statement["predicate"]["delta_one_bps"] == 900
    assert ALICE.address not in verify_envelope(tampered).signers


def test_url_safe_and_unpadded_base64_are_accepted():
    envelope = make_envelope(ALICE)
    envelope["payload"] = base64.urlsafe_b64encode(decoded_payload(envelope)).decode().rstrip("=")
    raw_signature = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = base64.urlsafe_b64encode(raw_signature).decode()
    assert verify_envelope(envelope, [ALICE.address]).valid


def _valid_envelope():
    return make_envelope(ALICE)


def _statement_envelope(mutate):
    statement = make_statement()
    mutate(statement)
    return with_payload(_valid_envelope(), canonical_json(statement))


@pytest.mark.parametrize(
    ("envelope", "failed_check"),
    [
        (None, "envelope_shape"),
        ("text", "envelope_shape"),
        ({}, "envelope_shape"),
        ({**_valid_envelope(), "signatures": []}, "envelope_shape"),
        ({**_valid_envelope(), "signatures": "sig"}, "envelope_shape"),
        ({**_valid_envelope(), "signatures": _valid_envelope()["signatures"] * 101}, "envelope_shape"),
        ({**_valid_envelope(), "payload": 12}, "envelope_shape"),
        ({**_valid_envelope(), "payloadType": "application/json"}, "payload_type"),
        ({**_valid_envelope(), "payload": "not base64 !!"}, "payload_encoding"),
        ({**_valid_envelope(), "payload": "A"}, "payload_encoding"),
        (with_payload(_valid_envelope(), b"\xff\xfe"), "payload_encoding"),
        (with_payload(_valid_envelope(), b"[1, 2]"), "payload_encoding"),
        (with_payload(_valid_envelope(), b'{"_type": 1, "_type": 2}'), "payload_encoding"),
        (with_payload(_valid_envelope(), b'{"x": NaN}'), "payload_encoding"),
        # Must be refused, not crash: eth-account raised the recursion limit to 100000.
        (with_payload(_valid_envelope(), b"[" * 200_000), "payload_encoding"),
        (_statement_envelope(lambda s: s.update(_type="x")), "statement_type"),
        (_statement_envelope(lambda s: s.update(predicateType="x")), "statement_type"),
        (_statement_envelope(lambda s: s["subject"].append(s["subject"][0])), "statement_type"),
        (_statement_envelope(lambda s: s["subject"][0].update(digest={})), "statement_type"),
        (_statement_envelope(lambda s: s.update(predicate=[])), "statement_type"),
        ({**_valid_envelope(), "signatures": ["sig"]}, "signature_format"),
        ({**_valid_envelope(), "signatures": [{"keyid": "x"}]}, "signature_format"),
        ({**_valid_envelope(), "signatures": [{"sig": "%%%"}]}, "signature_format"),
        (
            {**_valid_envelope(), "signatures": [{"sig": base64.b64encode(b"\x01" * 64).decode()}]},
            "signature_format",
        ),
        (
            {
                **_valid_envelope(),
                "signatures": [{"sig": base64.b64encode(b"\x01" * 64 + b"\x05").decode()}],
            },
            "signature_recovery",
        ),
    ],
)
def test_malformed_envelopes_fail_the_right_check_without_raising(envelope, failed_check):
    verdict = verify_envelope(envelope, [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == failed_check
    assert verdict.message


def test_truncated_signature():
    envelope = make_envelope(ALICE)
    raw = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = base64.b64encode(raw[:-1]).decode()
    assert verify_envelope(envelope, [ALICE.address]).failed_check == "signature_format"


def test_invalid_attester_address_is_reported_not_raised():
    verdict = verify_envelope(make_envelope(ALICE), ["0x1234"])
    assert not verdict.valid
    assert verdict.failed_check == "attesters"
    assert verdict.signers == (ALICE.address,)


@pytest.mark.parametrize(
    ("attesters", "threshold"),
    [((), 0), ((), True), ((), "1"), ([ALICE.address], 2), ([ALICE.address] * 2, 2)],
)
def test_impossible_threshold_raises(attesters, threshold):
    with pytest.raises(ValidationError) as info:
        verify_envelope(make_envelope(ALICE), attesters, threshold)
    assert info.value.field == "threshold"


def test_a_single_attester_string_is_one_attester():
    assert verify_envelope(make_envelope(ALICE), ALICE.address).valid


def test_verdict_is_frozen_and_serializable():
    verdict = verify_envelope(make_envelope(ALICE), [ALICE.address])
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.valid = False
    as_dict = json.loads(json.dumps(verdict.to_dict()))
    assert as_dict["valid"] is True
    assert as_dict["signers"] == [ALICE.address]
    assert as_dict["failed_check"] is None
    assert as_dict["statement"]["_type"] == STATEMENT_TYPE


# --- Co-signing -----------------------------------------------------------------------------------


def test_add_signature_returns_a_new_envelope():
    original = make_envelope(ALICE)
    snapshot = json.dumps(original)
    cosigned = add_signature(original, BOB)
    assert json.dumps(original) == snapshot
    assert cosigned["payload"] == original["payload"]
    assert [s["keyid"] for s in cosigned["signatures"]] == [ALICE.address, BOB.address]
    assert payload_sha256(cosigned) == payload_sha256(original)


def test_add_signature_refuses_the_same_signer_twice():
    with pytest.raises(ValidationError) as info:
        add_signature(make_envelope(ALICE, BOB), ALICE)
    assert info.value.field == "signer"


def test_add_signature_refuses_an_invalid_envelope():
    tampered = with_payload(make_envelope(ALICE), b"{}")
    with pytest.raises(ValidationError) as info:
        add_signature(tampered, BOB)
    assert info.value.field == "envelope"


# --- Documents ------------------------------------------------------------------------------------


ONCHAIN = OnchainTarget(31337, "0x" + "cc" * 20, 5)
DEADLINE = 1_767_225_600


def make_eip712(envelope, *signers, attestation_hash=None):
    digest = payload_sha256(envelope)
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    typed_data = mint_request(
        predicate, onchain=ONCHAIN, attestation_hash=digest, deadline=DEADLINE, total_samples=1000
    )
    if attestation_hash:
        typed_data["message"]["payload"]["anchors"]["attestationHash"] = "0x" + attestation_hash
    # The contract's order: ascending signer address.
    ordered = sorted(signers, key=lambda signer: int(signer.address, 16))
    signatures = ["0x" + signer.sign_typed_data(typed_data).hex() for signer in ordered]
    return {"typed_data": typed_data, "signatures": signatures}


def make_document(envelope, eip712=None):
    return attestation_document(
        envelope=envelope,
        model_id="churn/2",
        baseline_model_id="churn/1",
        attester=ALICE.address.lower(),
        created_at="2025-01-02T03:04:05Z",
        eip712=eip712,
    )


def test_attestation_document_fields():
    envelope = make_envelope(ALICE)
    document = make_document(envelope)
    assert document == {
        "id": payload_sha256(envelope),
        "model_id": "churn/2",
        "baseline_model_id": "churn/1",
        "attester": ALICE.address,
        "status": "signed",
        "created_at": "2025-01-02T03:04:05Z",
        "dsse": envelope,
    }
    eip712 = make_eip712(envelope, ALICE)
    assert make_document(envelope, eip712)["eip712"] == eip712
    assert len(eip712["signatures"][0]) == 2 + 130


def test_attestation_document_validates_status_and_attester():
    envelope = make_envelope(ALICE)
    with pytest.raises(ValidationError) as info:
        attestation_document(
            envelope=envelope,
            model_id="m/2",
            baseline_model_id="m/1",
            attester=ALICE.address,
            created_at="now",
            status="done",
        )
    assert info.value.field == "status"
    with pytest.raises(ValidationError) as info:
        attestation_document(
            envelope=envelope, model_id="m/2", baseline_model_id="m/1", attester="0x1", created_at="t"
        )
    assert info.value.field == "attester"


def test_verify_document_round_trip_through_json():
    envelope = make_envelope(ALICE, BOB)
    document = json.loads(json.dumps(make_document(envelope, make_eip712(envelope, ALICE, BOB))))
    verdict = verify_document(document, [ALICE.address, BOB.address], threshold=2)
    assert verdict.valid, verdict.message
    assert verdict.signers == (ALICE.address, BOB.address)
    assert verify_document(make_document(envelope), [ALICE.address]).valid


@pytest.mark.parametrize("document", [None, [], "doc", {"id": "x"}])
def test_verify_document_shape(document):
    verdict = verify_document(document)
    assert not verdict.valid
    assert verdict.failed_check == "document_shape"


def test_verify_document_reports_envelope_failures():
    document = make_document(make_envelope(ALICE))
    document["dsse"] = {**document["dsse"], "payloadType": "text/plain"}
    assert verify_document(document).failed_check == "payload_type"


def test_verify_document_checks_the_id():
    document = make_document(make_envelope(ALICE))
    document["id"] = "00" * 32
    verdict = verify_document(document, [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == "document_id"


def test_eip712_signature_must_come_from_an_accepted_dsse_signer():
    envelope = make_envelope(ALICE)
    verdict = verify_document(make_document(envelope, make_eip712(envelope, MALLORY)))
    assert verdict.failed_check == "eip712"
    # BOB signed the envelope, but is not an expected attester: his EIP-712 signature is refused.
    envelope = make_envelope(ALICE, BOB)
    document = make_document(envelope, make_eip712(envelope, BOB))
    assert verify_document(document).valid
    verdict = verify_document(document, [ALICE.address])
    assert verdict.failed_check == "eip712"


def test_eip712_must_anchor_this_payload():
    envelope = make_envelope(ALICE)
    eip712 = make_eip712(envelope, ALICE, attestation_hash="ee" * 32)
    verdict = verify_document(make_document(envelope, eip712), [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == "eip712"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(signatures=[]),
        lambda e: e.update(signatures=["0x1234"]),
        lambda e: e.update(signatures=["0x" + "01" * 64 + "05"]),
        lambda e: e.update(typed_data=None),
        lambda e: e["typed_data"].update(primaryType="Other"),
        lambda e: e["typed_data"]["types"]["Contributor"].reverse(),
        lambda e: e["typed_data"]["domain"].update(name="Other"),
        lambda e: e["typed_data"]["message"]["payload"].pop("anchors"),
        lambda e: e["typed_data"]["message"].update(modelId=6),  # no longer what was signed
        lambda e: e.update(signatures=e["signatures"] * 2),  # the same signer twice
    ],
)
def test_eip712_malformed_parts(mutate):
    envelope = make_envelope(ALICE)
    eip712 = make_eip712(envelope, ALICE)
    mutate(eip712)
    verdict = verify_document(make_document(envelope, eip712), [ALICE.address])
    assert not verdict.valid
    assert verdict.failed_check == "eip712"
    assert verdict.signers == (ALICE.address,)


def test_verify_document_with_a_null_envelope_returns_a_verdict():
    verdict = verify_document({"dsse": None})
    assert isinstance(verdict, Verdict)
    assert verdict.failed_check == "envelope_shape"


def resign(eip712, *signers):
    ordered = sorted(signers, key=lambda signer: int(signer.address, 16))
    eip712["signatures"] = ["0x" + signer.sign_typed_data(eip712["typed_data"]).hex() for signer in ordered]
    return eip712


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("payload", "candidateCommitment"), "0x" + "ab" * 32),
        (("payload", "baselineCommitment"), "0x" + "ab" * 32),
        (("payload", "anchors", "idempotencyKey"), "0x" + "ab" * 32),
        (("payload", "candidateScoreBps"), 8300),
        (("payload", "baselineScoreBps"), 7400),
        (("payload", "anchors", "metricName"), "f1_score"),
        (("payload", "anchors", "datasetHash"), "0x" + "ab" * 32),
        (("payload", "pipelineRunId"), "another-run"),
        (("contributors",), [{"walletAddress": "0x" + "88" * 20, "weight": 10_000}]),
    ],
)
def test_eip712_that_the_attester_signed_but_the_statement_does_not_state_is_refused(path, value):
    # Signed by the right key, yet claiming what the Statement does not: a submitter would be
    # handed a request that mints something else than what was attested.
    envelope = make_envelope(ALICE)
    eip712 = make_eip712(envelope, ALICE)
    target = eip712["typed_data"]["message"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    verdict = verify_document(make_document(envelope, resign(eip712, ALICE)), [ALICE.address])
    assert not verdict.valid and verdict.failed_check == "eip712"
    assert ".".join(path) in verdict.message


def test_eip712_signatures_must_be_in_ascending_signer_order():
    envelope = make_envelope(ALICE, BOB)
    eip712 = make_eip712(envelope, ALICE, BOB)
    attesters = [ALICE.address, BOB.address]
    verdict = verify_document(make_document(envelope, eip712), attesters, threshold=2)
    assert verdict.valid, verdict.message
    assert verdict.eip712["signers"] == sorted(attesters, key=lambda a: int(a, 16))
    eip712["signatures"].reverse()
    verdict = verify_document(make_document(envelope, eip712), attesters, threshold=2)
    assert verdict.failed_check == "eip712" and "ascending" in verdict.message


def test_the_verdict_summarises_the_mint_request():
    envelope = make_envelope(ALICE)
    eip712 = make_eip712(envelope, ALICE)
    verdict = verify_document(make_document(envelope, eip712), [ALICE.address])
    payload = eip712["typed_data"]["message"]["payload"]
    assert verdict.eip712 == {
        "types": "current",
        "deadline": DEADLINE,
        "idempotency_key": payload["anchors"]["idempotencyKey"],
        "baseline_commitment": "0x" + "ba" * 32,
        "candidate_commitment": "0x" + MODEL_DIGEST,
        "signers": [ALICE.address],
    }
    assert f"deadline {DEADLINE}" in verdict.message
    assert verdict.to_dict()["eip712"] == verdict.eip712


def test_a_legacy_mint_request_verifies_and_says_it_must_be_renewed():
    envelope = make_envelope(ALICE)
    eip712 = make_eip712(envelope, ALICE)
    typed_data = eip712["typed_data"]
    typed_data["types"] = json.loads(json.dumps(LEGACY_MINT_REQUEST_TYPES))
    for key in ("baselineCommitment", "candidateCommitment", "deadline"):
        typed_data["message"]["payload"].pop(key)
    verdict = verify_document(make_document(envelope, resign(eip712, ALICE)), [ALICE.address])
    assert verdict.valid, verdict.message
    assert verdict.eip712["types"] == "legacy" and verdict.eip712["deadline"] is None
    assert "renew it" in verdict.message


def test_a_document_says_why_it_has_no_mint_request():
    document = {**make_document(make_envelope(ALICE)), "eip712_omitted": "log_loss is outside [0, 1]"}
    verdict = verify_document(document, [ALICE.address])
    assert verdict.valid and "no EIP-712 MintRequest: log_loss is outside [0, 1]" in verdict.message
