"""The DeltaVerifier ``MintRequest``: the EIP-712 message that attesters sign for the chain.

The contract recomputes the EIP-712 digest from its own copy of the type strings, so the types
below are those strings field for field: a renamed or reordered field gives a different digest and
every signature is refused on chain. The builder also applies the contract's checks on the values
themselves (uint256 range; 1 to 100 contributors whose weights sum to 10000, no zero or duplicate
address) so such a request is never signed. Policy checks the contract makes at submission (e.g.
scores at most 10000 bps, a non-empty pipeline run id) are left to the caller.

The typed data is kept JSON-serializable (``bytes32`` as ``0x`` hex strings, integers as ints) so
it can be stored in the attestation document and handed to any wallet or library as is.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import canonical_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError

DOMAIN_NAME = "HokusaiDeltaVerifier"
DOMAIN_VERSION = "1"
PRIMARY_TYPE = "MintRequest"
TOTAL_WEIGHT_BPS = 10_000
MAX_CONTRIBUTORS = 100

_UINT256_LIMIT = 2**256
_BYTES32_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{64})")
_SIGNATURE_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{130})")


def _fields(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "type": type_} for type_, name in pairs]


# Order matters: it is the order of the members in the contract's type strings.
MINT_REQUEST_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": _fields(
        ("string", "name"),
        ("string", "version"),
        ("uint256", "chainId"),
        ("address", "verifyingContract"),
    ),
    "MintRequest": _fields(
        ("uint256", "modelId"),
        ("MintRequestPayload", "payload"),
        ("Contributor[]", "contributors"),
    ),
    "MintRequestPayload": _fields(
        ("string", "pipelineRunId"),
        ("uint256", "baselineScoreBps"),
        ("uint256", "candidateScoreBps"),
        ("uint256", "maxCostUsdMicro"),
        ("uint256", "actualCostUsdMicro"),
        ("uint256", "totalSamples"),
        ("BenchmarkAnchors", "anchors"),
    ),
    "BenchmarkAnchors": _fields(
        ("bytes32", "benchmarkSpecHash"),
        ("bytes32", "datasetHash"),
        ("bytes32", "attestationHash"),
        ("bytes32", "idempotencyKey"),
        ("string", "metricName"),
        ("string", "metricFamily"),
    ),
    "Contributor": _fields(("address", "walletAddress"), ("uint256", "weight")),
}


def mint_request_typed_data(
    *,
    chain_id: int,
    verifying_contract: str,
    model_id: int,
    pipeline_run_id: str,
    baseline_score_bps: int,
    candidate_score_bps: int,
    total_samples: int,
    benchmark_spec_hash: str,
    dataset_hash: str,
    attestation_hash: str,
    idempotency_key: str,
    metric_name: str,
    metric_family: str,
    contributors: list[dict],
    max_cost_usd_micro: int = 0,
    actual_cost_usd_micro: int = 0,
) -> dict:
    """Build the full EIP-712 ``MintRequest`` message (``types``, ``primaryType``, ``domain``,
    ``message``), ready for ``eth_account.messages.encode_typed_data(full_message=...)``.

    Hashes are ``0x`` + 64 hex digits (a bare 64-hex digest is accepted and prefixed).
    ``contributors`` is ``[{"address": "0x..", "weight_bps": 10000}]``; it becomes the message's
    ``Contributor`` list with checksummed ``walletAddress`` and ``weight``. Every bad value raises
    :class:`ValidationError` naming the argument.
    """
    message = {
        "modelId": _uint256("model_id", model_id),
        "payload": {
            "pipelineRunId": _string("pipeline_run_id", pipeline_run_id),
            "baselineScoreBps": _uint256("baseline_score_bps", baseline_score_bps),
            "candidateScoreBps": _uint256("candidate_score_bps", candidate_score_bps),
            "maxCostUsdMicro": _uint256("max_cost_usd_micro", max_cost_usd_micro),
            "actualCostUsdMicro": _uint256("actual_cost_usd_micro", actual_cost_usd_micro),
            "totalSamples": _uint256("total_samples", total_samples),
            "anchors": {
                "benchmarkSpecHash": _bytes32("benchmark_spec_hash", benchmark_spec_hash),
                "datasetHash": _bytes32("dataset_hash", dataset_hash),
                "attestationHash": _bytes32("attestation_hash", attestation_hash),
                "idempotencyKey": _bytes32("idempotency_key", idempotency_key),
                "metricName": _string("metric_name", metric_name),
                "metricFamily": _string("metric_family", metric_family),
            },
        },
        "contributors": _contributors(contributors),
    }
    chain_id = _uint256("chain_id", chain_id)
    if chain_id == 0:
        raise ValidationError("chain_id", "must be >= 1")
    return {
        "types": copy.deepcopy(MINT_REQUEST_TYPES),
        "primaryType": PRIMARY_TYPE,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(verifying_contract, "verifying_contract"),
        },
        "message": message,
    }


def signable_message(typed_data: dict) -> SignableMessage:
    """eth-account's EIP-191 version 1 form of ``typed_data``; malformed input raises
    :class:`ValidationError` (field ``typed_data``) instead of eth-account's assorted errors."""
    if not isinstance(typed_data, dict):
        raise ValidationError("typed_data", "must be a dict with types, primaryType, domain, message")
    try:
        return encode_typed_data(full_message=typed_data)
    # eth-account raises KeyError, TypeError, ValueError, eth-abi or eth-utils errors depending on
    # what is malformed; none of them is part of its documented API, so all become one error here.
    except Exception as exc:
        raise ValidationError("typed_data", f"is not valid EIP-712 typed data: {exc}") from None


def typed_data_digest(typed_data: dict) -> bytes:
    """The 32-byte EIP-712 digest ``keccak256(0x19 0x01 || domainSeparator || hashStruct)``: what
    the attesters sign and what the contract recovers signers from."""
    signable = signable_message(typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def recover_typed_data_signer(typed_data: dict, signature: str | bytes) -> str:
    """Checksummed address of whoever signed ``typed_data`` with the 65-byte ``signature``
    (``r || s || v``, as bytes or ``0x`` hex)."""
    signable = signable_message(typed_data)
    raw = signature_bytes(signature)
    try:
        return Account.recover_message(signable, signature=raw)
    except Exception:  # eth-keys' BadSignature, ValueError for a bad v, ...
        raise ValidationError("signature", "does not recover to any address") from None


def signature_bytes(signature: str | bytes) -> bytes:
    """A 65-byte ``r || s || v`` signature from bytes or (``0x``) hex; anything else raises
    :class:`ValidationError`."""
    if isinstance(signature, (bytes, bytearray)):
        raw = bytes(signature)
    elif isinstance(signature, str) and _SIGNATURE_HEX.fullmatch(signature):
        raw = bytes.fromhex(_SIGNATURE_HEX.fullmatch(signature).group(1))
    else:
        raise ValidationError("signature", "must be 65 bytes or 0x followed by 130 hex digits")
    if len(raw) != 65:
        raise ValidationError("signature", f"must be 65 bytes (r || s || v), got {len(raw)}")
    return raw


def idempotency_key(model_id: str, baseline_model_id: str, attestation_hash: str) -> str:
    """The request's ``idempotencyKey``: one per (model version, baseline, attestation).

    ``0x`` + SHA-256 of the canonical JSON of the three values, so signing the same attestation
    twice yields the same key and the contract refuses the second mint.

    >>> key = idempotency_key("churn/2", "churn/1", "ab" * 32)
    >>> key == idempotency_key("churn/2", "churn/1", "0x" + "AB" * 32), len(key)
    (True, 66)
    """
    payload = {
        "model_id": _string("model_id", model_id),
        "baseline_model_id": _string("baseline_model_id", baseline_model_id),
        # Normalized first: "ab..", "0xab.." and "0xAB.." are one attestation, hence one key.
        "attestation_hash": _bytes32("attestation_hash", attestation_hash),
    }
    return "0x" + sha256_hex(canonical_json(payload))


def benchmark_spec_hash(spec: dict) -> str:
    """``benchmarkSpecHash``: ``0x`` + SHA-256 of the canonical JSON of the benchmark spec."""
    if not isinstance(spec, dict):
        raise ValidationError("benchmark_spec", "must be a dict")
    return "0x" + sha256_hex(canonical_json(spec))


def bytes32_from_digest(digest: str) -> str:
    """A ``bytes32`` hex value for a digest string.

    A SHA-256 hex digest (64 hex digits, ``0x`` optional) is used as is. Any other string is
    hashed: MLflow's own dataset digests are short (8 hex digits) and a ``bytes32`` cannot hold
    them unambiguously (left or right padding would be a private convention), whereas
    ``sha256(utf8(digest))`` is a rule anyone holding the recorded digest can recompute.

    >>> bytes32_from_digest("AB" * 32) == "0x" + "ab" * 32
    True
    >>> import hashlib
    >>> bytes32_from_digest("1a2b3c4d") == "0x" + hashlib.sha256(b"1a2b3c4d").hexdigest()
    True
    """
    if not isinstance(digest, str) or not digest:
        raise ValidationError("digest", "must be a non-empty string")
    match = _BYTES32_HEX.fullmatch(digest)
    if match:
        return "0x" + match.group(1).lower()
    return "0x" + sha256_hex(digest.encode("utf-8"))


def _uint256(field: str, value: Any) -> int:
    # bool is an int subclass; True as a score would be a bug upstream, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__}")
    if not 0 <= value < _UINT256_LIMIT:
        raise ValidationError(field, "must be >= 0 and < 2**256 (uint256)")
    return value


def _bytes32(field: str, value: Any) -> str:
    match = _BYTES32_HEX.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValidationError(field, "must be 0x followed by 64 hex digits (bytes32)")
    return "0x" + match.group(1).lower()


def _string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    return value


def _contributors(contributors: Any) -> list[dict]:
    if not isinstance(contributors, (list, tuple)) or not contributors:
        raise ValidationError("contributors", "must be a non-empty list")
    if len(contributors) > MAX_CONTRIBUTORS:
        raise ValidationError(
            "contributors", f"has {len(contributors)} entries, the contract takes at most 100"
        )
    result: list[dict] = []
    seen: set[str] = set()
    for index, item in enumerate(contributors):
        field = f"contributors[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(field, "must be a dict with address and weight_bps")
        # Refuses the zero address too, as the contract does.
        address = to_checksum_address(item.get("address"), f"{field}.address")
        if address in seen:
            raise ValidationError(f"{field}.address", f"duplicate contributor {address}")
        seen.add(address)
        weight = _uint256(f"{field}.weight_bps", item.get("weight_bps"))
        result.append({"walletAddress": address, "weight": weight})
    total = sum(entry["weight"] for entry in result)
    if total != TOTAL_WEIGHT_BPS:
        raise ValidationError("contributors", f"weights sum to {total} bps, must be exactly 10000")
    return result
