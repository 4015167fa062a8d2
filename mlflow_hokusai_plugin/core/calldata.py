"""The DeltaVerifier's ``submitMintRequest`` call for a signed MintRequest: arguments and calldata.

A submitter service (the account holding the contract's submitter role) sends
``submitMintRequest(uint256 modelId, MintRequestPayload payload, Contributor[] contributors,
bytes[] signatures)``. Its arguments are the members of the EIP-712 ``MintRequest`` the attesters
signed, in the order of :data:`~mlflow_hokusai_plugin.core.eip712.MINT_REQUEST_TYPES` (structs as
ABI tuples), followed by the signatures in the order the contract checks them: strictly ascending
signer address. This module builds them, ABI-encodes them with the 4-byte selector, and decodes
such calldata again. Pure: no I/O, no clock, no MLflow.

Values keep the typed data's JSON form: integers as ints, ``bytes32`` and ``bytes`` as lowercase
``0x`` hex, addresses EIP-55 checksummed. :func:`submit_mint_request_call` is the JSON a submitter
reads, with every ``uint256`` as a decimal string (JavaScript numbers are exact only up to 2**53).

>>> from mlflow_hokusai_plugin.core.eip712 import mint_request_typed_data
>>> from mlflow_hokusai_plugin.runtime.signer import Signer
>>> typed = mint_request_typed_data(
...     chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3", model_id=42,
...     pipeline_run_id="run-1", baseline_score_bps=8234, candidate_score_bps=8512, total_samples=4,
...     benchmark_spec_hash="0x" + "01" * 32, dataset_hash="0x" + "02" * 32,
...     attestation_hash="0x" + "03" * 32, idempotency_key="0x" + "04" * 32,
...     metric_name="accuracy", metric_family="classification",
...     contributors=[{"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "weight_bps": 10000}],
...     baseline_commitment="0x" + "0b" * 32, candidate_commitment="0x" + "0c" * 32, deadline=1767225600)
>>> signatures = [Signer.from_private_key("0x" + "11" * 32).sign_typed_data(typed)]
>>> args = submit_mint_request_args(typed, signatures)
>>> args[0], args[1][:3], args[2]
(42, ['run-1', 8234, 8512], [['0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', 10000]])
>>> calldata = encode_submit_mint_request(typed, signatures)
>>> calldata[:4].hex(), decode_submit_mint_request(calldata) == args
('af829f8e', True)
>>> call = submit_mint_request_call(typed, signatures)
>>> call["selector"], call["args"][0], call["args"][1][1], call["deadline"]
('0xaf829f8e', '42', '8234', 1767225600)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import eth_abi
from eth_utils import keccak

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.eip712 import (
    CURRENT_TYPES,
    DOMAIN_NAME,
    DOMAIN_VERSION,
    LEGACY_TYPES,
    MINT_REQUEST_TYPES,
    PRIMARY_TYPE,
    recover_typed_data_signer,
    signature_bytes,
    types_generation,
)
from mlflow_hokusai_plugin.core.errors import ValidationError

__all__ = [
    "ARG_TYPES",
    "SELECTOR",
    "SUBMIT_MINT_REQUEST",
    "abi_type",
    "decode_submit_mint_request",
    "document_mint_request",
    "encode_submit_mint_request",
    "json_args",
    "signers_in_order",
    "submit_mint_request_args",
    "submit_mint_request_call",
]

# The ABI types of the four parameters, as the contract declares them.
ARG_TYPES: tuple[str, ...] = (
    "uint256",
    "(string,uint256,uint256,uint256,uint256,uint256,"
    "(bytes32,bytes32,bytes32,bytes32,string,string),bytes32,bytes32,uint256)",
    "(address,uint256)[]",
    "bytes[]",
)
SUBMIT_MINT_REQUEST = f"submitMintRequest({','.join(ARG_TYPES)})"
SELECTOR: bytes = keccak(text=SUBMIT_MINT_REQUEST)[:4]

# The argument types in EIP-712 terms (struct names), walked to build and convert the values.
_SIGNATURES = "bytes[]"
_PARAMETERS: tuple[str, ...] = (*(m["type"] for m in MINT_REQUEST_TYPES[PRIMARY_TYPE]), _SIGNATURES)
_UINT256_LIMIT = 2**256
_BYTES32_HEX = re.compile(r"0[xX][0-9a-fA-F]{64}")
_HEX = re.compile(r"0[xX](?:[0-9a-fA-F]{2})*")

Leaf = Callable[[str, Any], Any]


def abi_type(type_name: str) -> str:
    """The ABI type of an EIP-712 member type of the MintRequest: structs become tuples.

    >>> abi_type("Contributor[]")
    '(address,uint256)[]'
    >>> abi_type("bytes32")
    'bytes32'
    """
    if type_name.endswith("[]"):
        return abi_type(type_name[:-2]) + "[]"
    members = MINT_REQUEST_TYPES.get(type_name)
    if members is None or type_name == "EIP712Domain":
        return type_name
    return "(" + ",".join(abi_type(member["type"]) for member in members) + ")"


def document_mint_request(document: Any) -> tuple[dict, list]:
    """The typed data and signatures of an attestation document's EIP-712 part.

    Raises :class:`ValidationError` (field ``eip712``) for a document without one, saying why
    when the document does (``eip712_omitted``).

    >>> document_mint_request({"id": "ab", "eip712_omitted": "metric rmse is above 1"})
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.core.errors.ValidationError: eip712: the document has no EIP-712 \
MintRequest (metric rmse is above 1): there is nothing to submit on chain
    """
    if not isinstance(document, dict):
        raise ValidationError("document", "must be a JSON object (an attestation document)")
    part = document.get("eip712")
    if part is None:
        reason = document.get("eip712_omitted")
        why = f" ({reason})" if reason else ""
        raise ValidationError(
            "eip712", f"the document has no EIP-712 MintRequest{why}: there is nothing to submit on chain"
        )
    if not isinstance(part, dict) or not isinstance(part.get("typed_data"), dict):
        raise ValidationError("eip712", "must be an object with typed_data and signatures")
    signatures = part.get("signatures")
    if not isinstance(signatures, list):
        raise ValidationError("eip712.signatures", "must be a list of 0x hex signatures")
    return part["typed_data"], signatures


def signers_in_order(typed_data: dict, signatures: Sequence[str | bytes]) -> list[str]:
    """The signers of ``signatures``, checked to be in the contract's order.

    The contract recovers each signature over the EIP-712 digest and wants the signers strictly
    ascending (as 160-bit numbers), so no signer counts twice. Raises :class:`ValidationError`
    naming the first signature that does not recover or is out of order; for a wrong order
    :func:`~mlflow_hokusai_plugin.core.eip712.ordered_signatures` gives the right one.
    """
    if not isinstance(signatures, (list, tuple)) or not signatures:
        raise ValidationError(
            "signatures", "must be a non-empty list: the contract needs attester signatures"
        )
    signers: list[str] = []
    for index, signature in enumerate(signatures):
        try:
            signer = recover_typed_data_signer(typed_data, signature)
        except ValidationError as exc:
            raise ValidationError(f"signatures[{index}]", exc.message) from None
        if signers and int(signer, 16) <= int(signers[-1], 16):
            raise ValidationError(
                f"signatures[{index}]",
                f"is by {signer}, which is not after {signers[-1]}: the contract takes one signature "
                "per signer, in strictly ascending signer address order",
            )
        signers.append(signer)
    return signers


def submit_mint_request_args(typed_data: dict, signatures: Sequence[str | bytes]) -> list:
    """The four arguments of ``submitMintRequest`` in ABI order, structs as lists.

    ``typed_data`` is a full EIP-712 MintRequest of today's types (see
    :func:`~mlflow_hokusai_plugin.core.eip712.mint_request_typed_data`), ``signatures`` its 65-byte
    signatures (``0x`` hex or bytes), which must already be in strictly ascending signer order.
    Integers stay ints. Raises :class:`ValidationError` for typed data of the older types (renew
    it), of another domain, with a missing, extra or malformed member, or signatures the contract
    would refuse for their order.

    The module's docstring has a worked example.
    """
    return _arguments(typed_data, signatures, _normalized)


def encode_submit_mint_request(typed_data: dict, signatures: Sequence[str | bytes]) -> bytes:
    """The calldata of ``submitMintRequest``: :data:`SELECTOR` followed by the ABI-encoded
    :func:`submit_mint_request_args` (``eth_abi.encode``).

    >>> SELECTOR.hex()  # keccak256 of SUBMIT_MINT_REQUEST, first 4 bytes
    'af829f8e'
    """
    values = _arguments(typed_data, signatures, _abi_value)
    return SELECTOR + eth_abi.encode(list(ARG_TYPES), values)


def decode_submit_mint_request(calldata: bytes | str) -> list:
    """The arguments of ``submitMintRequest`` calldata (bytes or ``0x`` hex), in the form of
    :func:`submit_mint_request_args`: structs as lists, ints, lowercase ``0x`` hex for ``bytes32``
    and ``bytes``, checksummed addresses. Raises :class:`ValidationError` for calldata of another
    function or that does not decode.
    """
    if isinstance(calldata, str):
        if not _HEX.fullmatch(calldata):
            raise ValidationError("calldata", "must be bytes or 0x followed by an even number of hex digits")
        calldata = bytes.fromhex(calldata[2:])
    if not isinstance(calldata, (bytes, bytearray)) or bytes(calldata[:4]) != SELECTOR:
        raise ValidationError(
            "calldata", f"does not start with the selector 0x{SELECTOR.hex()} of submitMintRequest"
        )
    try:
        decoded = eth_abi.decode(list(ARG_TYPES), bytes(calldata[4:]))
    except Exception as exc:  # eth-abi's decoding errors have no common documented base
        raise ValidationError("calldata", f"is not ABI-encoded submitMintRequest arguments: {exc}") from None
    return [_from_abi(type_name, value) for type_name, value in zip(_PARAMETERS, decoded, strict=True)]


def json_args(args: list) -> list:
    """``args`` of :func:`submit_mint_request_args` with every ``uint256`` as a decimal string, for
    JSON readers whose numbers are IEEE doubles (exact only up to 2**53).

    >>> json_args([2**64, ["run", 1, 2, 3, 4, 5, ["0x" + "00" * 32] * 4 + ["m", "f"],
    ...            "0x" + "00" * 32, "0x" + "00" * 32, 6], [["0x" + "11" * 20, 10000]], []])[0]
    '18446744073709551616'
    """
    return [
        _walk_values(type_name, value, _decimal_uint)
        for type_name, value in zip(_PARAMETERS, args, strict=True)
    ]


def submit_mint_request_call(typed_data: dict, signatures: Sequence[str | bytes]) -> dict:
    """Everything a submitter needs, JSON-ready: ``function`` (:data:`SUBMIT_MINT_REQUEST`),
    ``selector``, ``args`` (:func:`json_args`: uint256 as decimal strings), ``calldata`` (``0x``
    hex of :func:`encode_submit_mint_request`) and ``deadline`` (unix seconds, an int).
    """
    args = submit_mint_request_args(typed_data, signatures)
    return {
        "function": SUBMIT_MINT_REQUEST,
        "selector": "0x" + SELECTOR.hex(),
        "args": json_args(args),
        "calldata": "0x" + encode_submit_mint_request(typed_data, signatures).hex(),
        "deadline": args[1][-1],
    }


# -- internals ------------------------------------------------------------------------------------


def _arguments(typed_data: dict, signatures: Sequence[str | bytes], leaf: Leaf) -> list:
    _check_typed_data(typed_data)
    # The members first, so a malformed one is named rather than reported as a bad signature.
    values = _walk(PRIMARY_TYPE, typed_data.get("message"), "typed_data.message", leaf)
    signers_in_order(typed_data, signatures)
    values.append([leaf("bytes", "0x" + signature_bytes(signature).hex()) for signature in signatures])
    return values


def _check_typed_data(typed_data: Any) -> None:
    if not isinstance(typed_data, dict):
        raise ValidationError("typed_data", "must be a dict with types, primaryType, domain, message")
    generation = types_generation(typed_data)
    if generation == LEGACY_TYPES:
        raise ValidationError(
            "typed_data.types",
            "are the MintRequest types of before 2026-06-10, which today's DeltaVerifier refuses: "
            "renew the attestation (hokusai attestation renew ID) to have it signed with today's types",
        )
    domain = typed_data.get("domain")
    if (
        generation != CURRENT_TYPES
        or typed_data.get("primaryType") != PRIMARY_TYPE
        or not isinstance(domain, dict)
        or domain.get("name") != DOMAIN_NAME
        or domain.get("version") != DOMAIN_VERSION
    ):
        raise ValidationError(
            "typed_data", "is not a HokusaiDeltaVerifier MintRequest (types, domain or primaryType)"
        )


def _walk(type_name: str, value: Any, path: str, leaf: Leaf) -> Any:
    # The value of an EIP-712 member of type ``type_name`` in ABI form: struct -> list of members.
    if type_name.endswith("[]"):
        if not isinstance(value, list):
            raise ValidationError(path, f"must be a list ({type_name})")
        return [_walk(type_name[:-2], item, f"{path}[{index}]", leaf) for index, item in enumerate(value)]
    members = MINT_REQUEST_TYPES.get(type_name)
    if members is None:
        return _checked_leaf(type_name, value, path, leaf)
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be an object ({type_name})")
    names = [member["name"] for member in members]
    extra = sorted(set(value) - set(names))
    if extra:
        # Not signed (the digest covers the declared members only) and not sent: a mistake upstream.
        raise ValidationError(f"{path}.{extra[0]}", f"is not a member of {type_name}")
    result = []
    for member in members:
        if member["name"] not in value:
            raise ValidationError(f"{path}.{member['name']}", f"is missing ({member['type']})")
        result.append(_walk(member["type"], value[member["name"]], f"{path}.{member['name']}", leaf))
    return result


def _checked_leaf(type_name: str, value: Any, path: str, leaf: Leaf) -> Any:
    if type_name == "uint256":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256_LIMIT:
            raise ValidationError(path, "must be an integer >= 0 and < 2**256 (uint256)")
    elif type_name == "bytes32":
        if not isinstance(value, str) or not _BYTES32_HEX.fullmatch(value):
            raise ValidationError(path, "must be 0x followed by 64 hex digits (bytes32)")
        value = value.lower()
    elif type_name == "address":
        value = to_checksum_address(value, path)
    elif type_name == "string":
        if not isinstance(value, str):
            raise ValidationError(path, "must be a string")
    else:  # pragma: no cover - MINT_REQUEST_TYPES uses no other leaf type
        raise ValidationError(path, f"has the unsupported type {type_name}")
    return leaf(type_name, value)


def _walk_values(type_name: str, value: Any, leaf: Leaf) -> Any:
    # Like _walk, over values already in ABI form (lists), for conversions of checked values.
    if type_name.endswith("[]"):
        return [_walk_values(type_name[:-2], item, leaf) for item in value]
    members = MINT_REQUEST_TYPES.get(type_name)
    if members is None:
        return leaf(type_name, value)
    return [_walk_values(member["type"], item, leaf) for member, item in zip(members, value, strict=True)]


def _normalized(type_name: str, value: Any) -> Any:
    return value


def _abi_value(type_name: str, value: Any) -> Any:
    return bytes.fromhex(value[2:]) if type_name in ("bytes32", "bytes") else value


def _decimal_uint(type_name: str, value: Any) -> Any:
    return str(value) if type_name == "uint256" else value


def _from_abi(type_name: str, value: Any) -> Any:
    # eth-abi gives tuples for structs and arrays, bytes for bytes32/bytes, lowercase addresses.
    def leaf(leaf_type: str, item: Any) -> Any:
        if leaf_type in ("bytes32", "bytes"):
            return "0x" + bytes(item).hex()
        if leaf_type == "address":
            return to_checksum_address(item, "address")
        return item

    return _walk_values(type_name, value, leaf)
