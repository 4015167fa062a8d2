import copy
import hashlib
import json
import re

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.core.eip712 import (
    LEGACY_MINT_REQUEST_TYPES,
    MINT_REQUEST_TYPES,
    benchmark_spec_hash,
    bytes32_from_digest,
    idempotency_key,
    mint_request_typed_data,
    ordered_signatures,
    recover_typed_data_signer,
    typed_data_digest,
    types_generation,
)
from mlflow_hokusai_plugin.core.errors import ValidationError

# The DeltaVerifier's type strings exactly as hokusai-conventions.md writes them (line breaks
# removed). The reference implementation below parses these, not our MINT_REQUEST_TYPES.
CONVENTION_TYPE_STRINGS = [
    "MintRequest(uint256 modelId,MintRequestPayload payload,Contributor[] contributors)",
    "MintRequestPayload(string pipelineRunId,uint256 baselineScoreBps,uint256 candidateScoreBps,"
    "uint256 maxCostUsdMicro,uint256 actualCostUsdMicro,uint256 totalSamples,"
    "BenchmarkAnchors anchors,bytes32 baselineCommitment,bytes32 candidateCommitment,uint256 deadline)",
    "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
    "bytes32 idempotencyKey,string metricName,string metricFamily)",
    "Contributor(address walletAddress,uint256 weight)",
]
DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

KEY = "0x" + "42" * 32
CONTRACT = "0x" + "c0" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20


def make_typed_data(**overrides):
    arguments = {
        "chain_id": 8453,
        "verifying_contract": CONTRACT,
        "model_id": 21,
        "pipeline_run_id": "run-2024-01",
        "baseline_score_bps": 8012,
        "candidate_score_bps": 8234,
        "total_samples": 15_000,
        "benchmark_spec_hash": "0x" + "01" * 32,
        "dataset_hash": "0x" + "02" * 32,
        "attestation_hash": "0x" + "03" * 32,
        "idempotency_key": "0x" + "04" * 32,
        "metric_name": "accuracy",
        "metric_family": "classification",
        "contributors": [
            {"address": ALICE, "weight_bps": 6000},
            {"address": BOB, "weight_bps": 3000},
            {"address": CAROL, "weight_bps": 1000},
        ],
        "max_cost_usd_micro": 5_000_000,
        "actual_cost_usd_micro": 1_250_000,
        "baseline_commitment": "0x" + "0b" * 32,
        "candidate_commitment": "0x" + "0c" * 32,
        "deadline": 1_767_225_600,
    }
    arguments.update(overrides)
    return mint_request_typed_data(**arguments)


# --- An independent EIP-712 implementation, straight from the EIP text ---------------------------


def parse_type_strings(type_strings):
    types = {}
    for text in type_strings:
        name, members = re.fullmatch(r"(\w+)\((.*)\)", text).groups()
        types[name] = [tuple(member.split(" ")) for member in members.split(",")]
    return types  # name -> [(type, member name)]


def referenced_types(primary, types, found=None):
    found = set() if found is None else found
    if primary in found or primary not in types:
        return found
    found.add(primary)
    for member_type, _ in types[primary]:
        referenced_types(member_type.removesuffix("[]"), types, found)
    return found


def encode_type(primary, types):
    dependencies = sorted(referenced_types(primary, types) - {primary})
    return "".join(
        f"{name}({','.join(f'{t} {n}' for t, n in types[name])})" for name in [primary, *dependencies]
    )


def encode_value(member_type, value, types):
    if member_type.endswith("[]"):
        element_type = member_type[:-2]
        return keccak(b"".join(encode_value(element_type, item, types) for item in value))
    if member_type in types:
        return hash_struct(member_type, value, types)
    if member_type == "uint256":
        return value.to_bytes(32, "big")
    if member_type == "address":
        return bytes(12) + bytes.fromhex(value[2:])
    if member_type == "string":
        return keccak(value.encode("utf-8"))
    if member_type == "bytes32":
        assert value.startswith("0x") and len(value) == 66
        return bytes.fromhex(value[2:])
    raise AssertionError(f"type {member_type} not handled by the reference implementation")


def hash_struct(primary, data, types):
    encoded = keccak(encode_type(primary, types).encode())
    for member_type, member_name in types[primary]:
        encoded += encode_value(member_type, data[member_name], types)
    return keccak(encoded)


def reference_digest(domain, message):
    types = parse_type_strings([*CONVENTION_TYPE_STRINGS, DOMAIN_TYPE_STRING])
    separator = hash_struct("EIP712Domain", domain, types)
    return keccak(b"\x19\x01" + separator + hash_struct("MintRequest", message, types))


def eth_account_digest(typed_data):
    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


# --- Digest ---------------------------------------------------------------------------------------


def test_types_are_the_convention_type_strings():
    ours = {name: [(f["type"], f["name"]) for f in fields] for name, fields in MINT_REQUEST_TYPES.items()}
    assert ours == parse_type_strings([*CONVENTION_TYPE_STRINGS, DOMAIN_TYPE_STRING])


def test_reference_encode_type_matches_the_contract_typehash_string():
    types = parse_type_strings(CONVENTION_TYPE_STRINGS)
    assert encode_type("MintRequest", types) == (
        "MintRequest(uint256 modelId,MintRequestPayload payload,Contributor[] contributors)"
        "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
        "bytes32 idempotencyKey,string metricName,string metricFamily)"
        "Contributor(address walletAddress,uint256 weight)"
        "MintRequestPayload(string pipelineRunId,uint256 baselineScoreBps,uint256 candidateScoreBps,"
        "uint256 maxCostUsdMicro,uint256 actualCostUsdMicro,uint256 totalSamples,"
        "BenchmarkAnchors anchors,bytes32 baselineCommitment,bytes32 candidateCommitment,uint256 deadline)"
    )


def test_legacy_types_are_the_payload_before_2026_06_10():
    legacy = {
        name: [(f["type"], f["name"]) for f in fields] for name, fields in LEGACY_MINT_REQUEST_TYPES.items()
    }
    assert encode_type("MintRequestPayload", legacy) == (
        "MintRequestPayload(string pipelineRunId,uint256 baselineScoreBps,uint256 candidateScoreBps,"
        "uint256 maxCostUsdMicro,uint256 actualCostUsdMicro,uint256 totalSamples,BenchmarkAnchors anchors)"
        "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
        "bytes32 idempotencyKey,string metricName,string metricFamily)"
    )
    current = make_typed_data()
    old = json.loads(json.dumps(current))
    old["types"] = json.loads(json.dumps(LEGACY_MINT_REQUEST_TYPES))
    for key in ("baselineCommitment", "candidateCommitment", "deadline"):
        old["message"]["payload"].pop(key)
    assert types_generation(current) == "current" and types_generation(old) == "legacy"
    assert types_generation({"types": {}}) is None
    # A signature over one generation never recovers to the signer over the other.
    assert typed_data_digest(old) != typed_data_digest(current)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"contributors": [{"address": ALICE, "weight_bps": 10_000}], "pipeline_run_id": "π-run"},
        {"chain_id": 1, "total_samples": 2**256 - 1, "max_cost_usd_micro": 0},
    ],
)
def test_digest_equals_eth_account_and_an_independent_implementation(overrides):
    typed_data = make_typed_data(**overrides)
    digest = typed_data_digest(typed_data)
    assert len(digest) == 32
    assert digest == eth_account_digest(typed_data)
    assert digest == reference_digest(typed_data["domain"], typed_data["message"])


def test_digest_depends_on_every_part():
    base = typed_data_digest(make_typed_data())
    for overrides in (
        {"chain_id": 8454},
        {"verifying_contract": "0x" + "c1" * 20},
        {"candidate_score_bps": 8235},
        {"metric_family": "ranking"},
        {"attestation_hash": "0x" + "05" * 32},
        {"baseline_commitment": "0x" + "0d" * 32},
        {"candidate_commitment": "0x" + "0d" * 32},
        {"deadline": 1_767_225_601},
        {
            "contributors": [
                {"address": BOB, "weight_bps": 3000},  # same set, other order
                {"address": ALICE, "weight_bps": 6000},
                {"address": CAROL, "weight_bps": 1000},
            ]
        },
    ):
        assert typed_data_digest(make_typed_data(**overrides)) != base, overrides


def test_typed_data_is_json_safe_and_survives_a_round_trip():
    typed_data = make_typed_data()
    reloaded = json.loads(json.dumps(typed_data))
    assert reloaded == typed_data
    assert typed_data_digest(reloaded) == typed_data_digest(typed_data)


def test_message_layout():
    typed_data = make_typed_data(contributors=[{"address": ALICE, "weight_bps": 10_000}])
    assert typed_data["primaryType"] == "MintRequest"
    assert typed_data["domain"] == {
        "name": "HokusaiDeltaVerifier",
        "version": "1",
        "chainId": 8453,
        "verifyingContract": to_checksum_address(CONTRACT),
    }
    assert typed_data["message"]["contributors"] == [
        {"walletAddress": to_checksum_address(ALICE), "weight": 10_000}
    ]
    assert typed_data["message"]["payload"]["anchors"]["metricName"] == "accuracy"


def test_types_are_a_copy():
    typed_data = make_typed_data()
    typed_data["types"]["Contributor"].append({"name": "x", "type": "uint256"})
    assert len(MINT_REQUEST_TYPES["Contributor"]) == 2


def test_bare_hex_hashes_are_prefixed_and_lowercased():
    typed_data = make_typed_data(dataset_hash="AB" * 32, attestation_hash="0X" + "cd" * 32)
    anchors = typed_data["message"]["payload"]["anchors"]
    assert anchors["datasetHash"] == "0x" + "ab" * 32
    assert anchors["attestationHash"] == "0x" + "cd" * 32


# --- Signing --------------------------------------------------------------------------------------


def test_sign_and_recover_round_trip():
    typed_data = make_typed_data()
    account = Account.from_key(KEY)
    signature = account.sign_message(encode_typed_data(full_message=typed_data)).signature
    assert recover_typed_data_signer(typed_data, bytes(signature)) == account.address
    assert recover_typed_data_signer(typed_data, "0x" + signature.hex()) == account.address
    assert recover_typed_data_signer(typed_data, signature.hex()) == account.address
    other = make_typed_data(candidate_score_bps=9000)
    assert recover_typed_data_signer(other, bytes(signature)) != account.address


@pytest.mark.parametrize(
    "signature",
    [b"\x01" * 64, "0x" + "ab" * 64, "0x" + "zz" * 65, 12345, b"\x01" * 64 + b"\x05"],
)
def test_bad_signatures_raise_validation_error(signature):
    with pytest.raises(ValidationError) as info:
        recover_typed_data_signer(make_typed_data(), signature)
    assert info.value.field == "signature"


@pytest.mark.parametrize(
    "typed_data",
    [None, {}, {"types": {}, "primaryType": "MintRequest", "domain": {}, "message": {}}],
)
def test_malformed_typed_data_raises_validation_error(typed_data):
    with pytest.raises(ValidationError) as info:
        typed_data_digest(typed_data)
    assert info.value.field == "typed_data"


# --- Validation -----------------------------------------------------------------------------------


def contributors(*pairs):
    return [{"address": address, "weight_bps": weight} for address, weight in pairs]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"chain_id": 0}, "chain_id"),
        ({"chain_id": True}, "chain_id"),
        ({"chain_id": "1"}, "chain_id"),
        ({"model_id": -1}, "model_id"),
        ({"model_id": 2**256}, "model_id"),
        ({"model_id": 1.0}, "model_id"),
        ({"total_samples": -5}, "total_samples"),
        ({"max_cost_usd_micro": None}, "max_cost_usd_micro"),
        ({"actual_cost_usd_micro": 2**256}, "actual_cost_usd_micro"),
        ({"candidate_score_bps": -1}, "candidate_score_bps"),
        ({"benchmark_spec_hash": "0x" + "01" * 31}, "benchmark_spec_hash"),
        ({"dataset_hash": "0x" + "zz" * 32}, "dataset_hash"),
        ({"dataset_hash": "1a2b3c4d"}, "dataset_hash"),
        ({"attestation_hash": b"\x03" * 32}, "attestation_hash"),
        ({"idempotency_key": "0x" + "04" * 33}, "idempotency_key"),
        ({"baseline_commitment": "ab" * 31}, "baseline_commitment"),
        ({"candidate_commitment": "0x" + "00" * 32}, "candidate_commitment"),
        ({"candidate_commitment": None}, "candidate_commitment"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": 1.5e9}, "deadline"),
        ({"pipeline_run_id": None}, "pipeline_run_id"),
        ({"metric_family": 3}, "metric_family"),
        ({"verifying_contract": "0x1234"}, "verifying_contract"),
        ({"verifying_contract": "0x" + "00" * 20}, "verifying_contract"),
        ({"contributors": []}, "contributors"),
        ({"contributors": {"address": ALICE, "weight_bps": 10_000}}, "contributors"),
        ({"contributors": contributors((ALICE, 6000), (BOB, 3000))}, "contributors"),
        ({"contributors": contributors((ALICE, 10_000), (BOB, 1))}, "contributors"),
        ({"contributors": ["0x" + "a1" * 20]}, "contributors[0]"),
        (
            {"contributors": contributors((ALICE, 5000), ("0x" + "00" * 20, 5000))},
            "contributors[1].address",
        ),
        (
            {"contributors": contributors((ALICE, 5000), (ALICE.upper().replace("0X", "0x"), 5000))},
            "contributors[1].address",
        ),
        ({"contributors": contributors(("0x123", 10_000))}, "contributors[0].address"),
        ({"contributors": contributors((ALICE, 12_000), (BOB, -2000))}, "contributors[1].weight_bps"),
        ({"contributors": contributors((ALICE, True))}, "contributors[0].weight_bps"),
        ({"contributors": [{"address": ALICE}]}, "contributors[0].weight_bps"),
    ],
)
def test_invalid_arguments_name_their_field(overrides, field):
    with pytest.raises(ValidationError) as info:
        make_typed_data(**overrides)
    assert info.value.field == field


def test_at_most_100_contributors():
    addresses = [f"0x{index + 1:040x}" for index in range(101)]
    hundred = contributors(*[(a, 100) for a in addresses[:100]])
    assert len(make_typed_data(contributors=hundred)["message"]["contributors"]) == 100
    too_many = contributors(*[(a, 100) for a in addresses[:100]], (addresses[100], 0))
    with pytest.raises(ValidationError) as info:
        make_typed_data(contributors=too_many)
    assert info.value.field == "contributors"


def test_zero_weight_contributor_is_accepted_as_the_contract_does():
    typed_data = make_typed_data(contributors=contributors((ALICE, 10_000), (BOB, 0)))
    assert [c["weight"] for c in typed_data["message"]["contributors"]] == [10_000, 0]


# --- Anchors --------------------------------------------------------------------------------------


KEY_FACTS = {
    "chain_id": 8453,
    "verifying_contract": CONTRACT,
    "onchain_model_id": 21,
    "model_id": "churn/3",
    "model_digest": "ef" * 32,
    "baseline_model_id": "churn/1",
    "baseline_digest": "be" * 32,
}


def test_idempotency_key_is_sha256_of_canonical_json():
    expected = hashlib.sha256(
        canonical_json(
            {
                "chain_id": 8453,
                "verifying_contract": to_checksum_address(CONTRACT),
                "onchain_model_id": "21",
                "model_id": "churn/3",
                "model_digest": "0x" + "ef" * 32,
                "baseline_model_id": "churn/1",
                "baseline_digest": "0x" + "be" * 32,
            }
        )
    ).hexdigest()
    assert idempotency_key(**KEY_FACTS) == "0x" + expected
    # The same facts written differently: the same key.
    assert (
        idempotency_key(
            **{
                **KEY_FACTS,
                "model_digest": "0x" + "EF" * 32,
                "verifying_contract": CONTRACT.upper().replace("0X", "0x"),
            }
        )
        == "0x" + expected
    )


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"verifying_contract": "0x" + "c1" * 20},
        {"onchain_model_id": 22},
        {"model_id": "churn/4"},
        {"model_digest": "ee" * 32},
        {"baseline_model_id": "churn/2"},
        {"baseline_digest": "bf" * 32},
    ],
)
def test_idempotency_key_changes_with_each_input(change):
    assert idempotency_key(**{**KEY_FACTS, **change}) != idempotency_key(**KEY_FACTS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_digest": "short"}, "model_digest"),
        ({"model_id": 2}, "model_id"),
        ({"baseline_model_id": None}, "baseline_model_id"),
        ({"onchain_model_id": -1}, "onchain_model_id"),
        ({"verifying_contract": "0x12"}, "verifying_contract"),
    ],
)
def test_idempotency_key_validates(change, field):
    with pytest.raises(ValidationError) as info:
        idempotency_key(**{**KEY_FACTS, **change})
    assert info.value.field == field


def test_ordered_signatures_are_ascending_by_signer_address():
    typed_data = make_typed_data()
    accounts = sorted(
        (Account.from_key("0x" + f"{n:02x}" * 32) for n in range(1, 6)), key=lambda a: a.address
    )
    signatures = [
        "0x" + a.sign_message(encode_typed_data(full_message=typed_data)).signature.hex() for a in accounts
    ]
    ordered = ordered_signatures(typed_data, list(reversed(signatures)))
    signers = [recover_typed_data_signer(typed_data, s) for s in ordered]
    assert [int(a, 16) for a in signers] == sorted(int(a, 16) for a in signers)
    with pytest.raises(ValidationError) as info:
        ordered_signatures(typed_data, [signatures[0], signatures[1], signatures[0]])
    assert info.value.field == "signatures[2]"


def test_benchmark_spec_hash():
    spec = {"metric": "accuracy", "dataset_digest": "ab" * 32}
    expected = "0x" + hashlib.sha256(canonical_json(spec)).hexdigest()
    assert benchmark_spec_hash(spec) == expected
    assert benchmark_spec_hash(dict(reversed(list(spec.items())))) == expected
    with pytest.raises(ValidationError):
        benchmark_spec_hash(["accuracy"])
    with pytest.raises(ValidationError):
        benchmark_spec_hash({"threshold": float("nan")})


def test_bytes32_from_digest():
    assert bytes32_from_digest("AB" * 32) == "0x" + "ab" * 32
    assert bytes32_from_digest("0x" + "ab" * 32) == "0x" + "ab" * 32
    short = "1a2b3c4d"  # an MLflow dataset digest
    assert bytes32_from_digest(short) == "0x" + hashlib.sha256(short.encode()).hexdigest()
    for bad in ("", None, 12):
        with pytest.raises(ValidationError):
            bytes32_from_digest(bad)


def test_dataset_hash_from_a_short_digest_fits_the_typed_data():
    typed_data = make_typed_data(dataset_hash=bytes32_from_digest("1a2b3c4d"))
    assert typed_data_digest(copy.deepcopy(typed_data)) == eth_account_digest(typed_data)
