"""``submitMintRequest`` arguments and calldata, checked against eth-abi decoding member by member."""

from __future__ import annotations

import copy
import json

import eth_abi
import pytest
from eth_utils import keccak

from mlflow_hokusai_plugin.core import calldata
from mlflow_hokusai_plugin.core.calldata import (
    ARG_TYPES,
    SELECTOR,
    SUBMIT_MINT_REQUEST,
    decode_submit_mint_request,
    document_mint_request,
    encode_submit_mint_request,
    json_args,
    signers_in_order,
    submit_mint_request_args,
    submit_mint_request_call,
)
from mlflow_hokusai_plugin.core.eip712 import (
    LEGACY_MINT_REQUEST_TYPES,
    MINT_REQUEST_TYPES,
    ordered_signatures,
)
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.runtime.signer import Signer
from tests.unit.test_eip712 import make_typed_data as eip712_typed_data

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
CAROL = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"

# The contract's function, written out by hand (not derived from the module's constants).
EXPECTED_FUNCTION = (
    "submitMintRequest(uint256,(string,uint256,uint256,uint256,uint256,uint256,"
    "(bytes32,bytes32,bytes32,bytes32,string,string),bytes32,bytes32,uint256),"
    "(address,uint256)[],bytes[])"
)


def make_typed_data(**overrides):
    """test_eip712's MintRequest, with checksummed addresses (the ABI encoder's round trip)."""
    contributors = [
        {"address": ALICE, "weight_bps": 6000},
        {"address": BOB, "weight_bps": 3000},
        {"address": CAROL, "weight_bps": 1000},
    ]
    return eip712_typed_data(**{"verifying_contract": CONTRACT, "contributors": contributors, **overrides})


SIGNERS = [Signer.from_private_key("0x" + "a1" * 32), Signer.from_private_key("0x" + "b2" * 32)]


def signed(typed_data, signers=SIGNERS):
    """Both signatures, in the contract's order (ascending signer address)."""
    raw = ["0x" + signer.sign_typed_data(typed_data).hex() for signer in signers]
    return ordered_signatures(typed_data, raw)


def ascending_signers():
    return sorted((signer.address for signer in SIGNERS), key=lambda address: int(address, 16))


def abi_of(type_name: str) -> str:
    """An independent mapping of the EIP-712 member types to ABI types (structs -> tuples)."""
    if type_name.endswith("[]"):
        return abi_of(type_name[:-2]) + "[]"
    if type_name in MINT_REQUEST_TYPES:
        return "(" + ",".join(abi_of(m["type"]) for m in MINT_REQUEST_TYPES[type_name]) + ")"
    return type_name


def test_function_signature_and_selector():
    assert SUBMIT_MINT_REQUEST == EXPECTED_FUNCTION
    assert SELECTOR == keccak(text=EXPECTED_FUNCTION)[:4]
    assert SELECTOR.hex() == "af829f8e"
    assert "submitMintRequest(" + ",".join(ARG_TYPES) + ")" == EXPECTED_FUNCTION


def test_parameter_order_follows_the_mint_request_types():
    members = MINT_REQUEST_TYPES["MintRequest"]
    assert [m["name"] for m in members] == ["modelId", "payload", "contributors"]
    assert list(ARG_TYPES) == [*(abi_of(m["type"]) for m in members), "bytes[]"]
    assert [calldata.abi_type(m["type"]) for m in members] == list(ARG_TYPES[:3])


def test_encoded_calldata_round_trips_every_member_byte_exactly():
    typed = make_typed_data()
    signatures = signed(typed)
    data = encode_submit_mint_request(typed, signatures)
    assert data[:4] == SELECTOR

    model_id, payload, contributors, sigs = eth_abi.decode(list(ARG_TYPES), data[4:])
    message = typed["message"]
    assert model_id == message["modelId"] == 21

    # The payload, member by member in the order of MintRequestPayload.
    payload_members = MINT_REQUEST_TYPES["MintRequestPayload"]
    assert len(payload) == len(payload_members) == 10
    for member, value in zip(payload_members, payload, strict=True):
        expected = message["payload"][member["name"]]
        if member["type"] == "BenchmarkAnchors":
            anchor_members = MINT_REQUEST_TYPES["BenchmarkAnchors"]
            assert len(value) == len(anchor_members) == 6
            for anchor, anchor_value in zip(anchor_members, value, strict=True):
                assert_leaf(anchor["type"], anchor_value, expected[anchor["name"]])
        else:
            assert_leaf(member["type"], value, expected)

    assert [(address.lower(), weight) for address, weight in contributors] == [
        (c["walletAddress"].lower(), c["weight"]) for c in message["contributors"]
    ]
    assert [bytes(s) for s in sigs] == [bytes.fromhex(s[2:]) for s in signatures]
    assert all(len(s) == 65 for s in sigs)

    # Canonical: the decoded values encode to the very same bytes.
    assert SELECTOR + eth_abi.encode(list(ARG_TYPES), [model_id, payload, contributors, sigs]) == data
    # And the module's own decoder gives back the arguments it encoded.
    assert decode_submit_mint_request(data) == submit_mint_request_args(typed, signatures)
    assert decode_submit_mint_request("0x" + data.hex()) == submit_mint_request_args(typed, signatures)


def assert_leaf(type_name: str, decoded, expected) -> None:
    if type_name == "bytes32":
        assert decoded == bytes.fromhex(expected[2:]) and len(decoded) == 32
    elif type_name in ("uint256", "string"):
        assert decoded == expected and type(decoded) is type(expected)
    else:
        raise AssertionError(f"unexpected leaf type {type_name}")


def test_args_are_in_abi_order_with_ints_as_ints():
    typed = make_typed_data()
    signatures = signed(typed)
    args = submit_mint_request_args(typed, signatures)
    assert args == [
        21,
        [
            "run-2024-01",
            8012,
            8234,
            5_000_000,
            1_250_000,
            15_000,
            [
                "0x" + "01" * 32,
                "0x" + "02" * 32,
                "0x" + "03" * 32,
                "0x" + "04" * 32,
                "accuracy",
                "classification",
            ],
            "0x" + "0b" * 32,
            "0x" + "0c" * 32,
            1_767_225_600,
        ],
        [[ALICE, 6000], [BOB, 3000], [CAROL, 1000]],
        signatures,
    ]
    assert signers_in_order(typed, signatures) == ascending_signers()


def test_typed_data_read_back_from_json_gives_the_same_calldata():
    typed = make_typed_data()
    signatures = signed(typed)
    stored = json.loads(json.dumps(typed))
    assert encode_submit_mint_request(stored, signatures) == encode_submit_mint_request(typed, signatures)


def test_json_call_has_every_uint256_as_a_decimal_string():
    big = 2**200 + 1  # far above 2**53, where a JavaScript number loses digits
    typed = make_typed_data(model_id=big, total_samples=2**60)
    signatures = signed(typed)
    call = submit_mint_request_call(typed, signatures)
    assert set(call) == {"function", "selector", "args", "calldata", "deadline"}
    assert call["function"] == EXPECTED_FUNCTION
    assert call["selector"] == "0xaf829f8e"
    assert call["deadline"] == 1_767_225_600
    args = call["args"]
    assert args[0] == str(big)
    assert args[1][:6] == ["run-2024-01", "8012", "8234", "5000000", "1250000", str(2**60)]
    assert args[1][6][4:] == ["accuracy", "classification"]
    assert args[1][9] == "1767225600"
    assert args[2] == [[ALICE, "6000"], [BOB, "3000"], [CAROL, "1000"]]
    assert args[3] == signatures
    assert json.loads(json.dumps(call)) == call
    assert bytes.fromhex(call["calldata"][2:]) == encode_submit_mint_request(typed, signatures)
    decoded = decode_submit_mint_request(call["calldata"])
    assert decoded[0] == big and json_args(decoded) == args


def test_unordered_or_duplicate_signatures_are_refused():
    typed = make_typed_data()
    signatures = signed(typed)
    with pytest.raises(ValidationError, match=r"signatures\[1\].*strictly ascending"):
        encode_submit_mint_request(typed, list(reversed(signatures)))
    with pytest.raises(ValidationError, match=r"signatures\[1\].*strictly ascending"):
        submit_mint_request_args(typed, [signatures[0], signatures[0]])
    with pytest.raises(ValidationError, match="non-empty"):
        submit_mint_request_args(typed, [])
    with pytest.raises(ValidationError, match=r"signatures\[0\]"):
        submit_mint_request_args(typed, ["0x1234"])
    # A single signature is in order by itself.
    assert submit_mint_request_args(typed, signatures[:1])[3] == signatures[:1]


def test_legacy_types_are_refused_with_a_hint_to_renew():
    typed = make_typed_data()
    legacy = copy.deepcopy(typed)
    legacy["types"] = copy.deepcopy(LEGACY_MINT_REQUEST_TYPES)
    for name in ("baselineCommitment", "candidateCommitment", "deadline"):
        del legacy["message"]["payload"][name]
    signature = "0x" + SIGNERS[0].sign_typed_data(legacy).hex()
    with pytest.raises(ValidationError, match="before 2026-06-10.*renew") as refused:
        encode_submit_mint_request(legacy, [signature])
    assert refused.value.field == "typed_data.types"


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda t: t["domain"].update(name="SomethingElse"), "typed_data"),
        (lambda t: t.update(primaryType="Other"), "typed_data"),
        (lambda t: t["types"]["Contributor"].reverse(), "typed_data"),
        (lambda t: t["message"]["payload"].update(extra=1), "typed_data.message.payload.extra"),
        (lambda t: t["message"]["payload"].pop("deadline"), "typed_data.message.payload.deadline"),
        (
            lambda t: t["message"]["payload"]["anchors"].update(datasetHash="0x12"),
            "typed_data.message.payload.anchors.datasetHash",
        ),
        (lambda t: t["message"].update(modelId=-1), "typed_data.message.modelId"),
        (lambda t: t["message"].update(modelId=True), "typed_data.message.modelId"),
        (
            lambda t: t["message"]["contributors"][0].update(walletAddress="0x1234"),
            "typed_data.message.contributors[0]",
        ),
    ],
)
def test_malformed_typed_data_is_refused_naming_the_member(change, field):
    typed = make_typed_data()
    broken = copy.deepcopy(typed)
    change(broken)
    # Signed as broken (where eth-account can), so the refusal is about the content, not the order.
    try:
        signatures = ["0x" + SIGNERS[0].sign_typed_data(broken).hex()]
    except ValidationError:
        signatures = ["0x" + SIGNERS[0].sign_typed_data(typed).hex()]
    with pytest.raises(ValidationError) as refused:
        submit_mint_request_args(broken, signatures)
    assert refused.value.field.startswith(field)


def test_decode_refuses_other_calldata():
    with pytest.raises(ValidationError, match="selector"):
        decode_submit_mint_request(b"\x00\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(ValidationError, match="ABI-encoded"):
        decode_submit_mint_request(SELECTOR + b"\x01\x02")
    with pytest.raises(ValidationError, match="hex"):
        decode_submit_mint_request("0xzz")


def test_document_mint_request():
    typed = make_typed_data()
    signatures = signed(typed)
    document = {"id": "ab" * 32, "eip712": {"typed_data": typed, "signatures": signatures, "expired": False}}
    assert document_mint_request(document) == (typed, signatures)
    with pytest.raises(ValidationError, match=r"no EIP-712 MintRequest \(no on-chain model id\)"):
        document_mint_request({"id": "ab" * 32, "eip712_omitted": "no on-chain model id"})
    with pytest.raises(ValidationError, match="no EIP-712 MintRequest"):
        document_mint_request({"id": "ab" * 32})
    with pytest.raises(ValidationError, match="signatures"):
        document_mint_request({"eip712": {"typed_data": typed}})
