"""The DeltaVerifier ``MintRequest``: the EIP-712 message that attesters sign for the chain.

The contract recomputes the EIP-712 digest from its own copy of the type strings, so the types
below are those strings field for field: a renamed or reordered field gives a different digest and
every signature is refused on chain. The builder also applies the contract's checks on the values
themselves (uint256 range; 1 to 100 contributors whose weights sum to 10000, no zero or duplicate
address) so such a request is never signed. Policy checks the contract makes at submission (e.g.
scores at most 10000 bps, a non-empty pipeline run id) are left to the caller.

The typed data is kept JSON-serializable (``bytes32`` as ``0x`` hex strings, integers as ints) so
it can be stored in the attestation document and handed to any wallet or library as is.

Two generations of the types exist. The payload ended at ``anchors`` until 2026-06-10
(:data:`LEGACY_MINT_REQUEST_TYPES`, still recognised so older documents can be read and renewed);
today's contract also signs the weight-lineage commitments and a deadline
(:data:`MINT_REQUEST_TYPES`), and refuses signatures over the older payload.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_keys.constants import SECPK1_N
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
_SECP256K1_HALF_N = SECPK1_N // 2
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
        ("bytes32", "baselineCommitment"),
        ("bytes32", "candidateCommitment"),
        ("uint256", "deadline"),
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

# The payload as the contract hashed it until 2026-06-10: no commitments, no deadline.
LEGACY_MINT_REQUEST_TYPES: dict[str, list[dict[str, str]]] = {
    **MINT_REQUEST_TYPES,
    "MintRequestPayload": MINT_REQUEST_TYPES["MintRequestPayload"][:7],
}
CURRENT_TYPES = "current"
LEGACY_TYPES = "legacy"


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
    baseline_commitment: str,
    candidate_commitment: str,
    deadline: int,
    max_cost_usd_micro: int = 0,
    actual_cost_usd_micro: int = 0,
) -> dict:
    """Build the full EIP-712 ``MintRequest`` message (``types``, ``primaryType``, ``domain``,
    ``message``), ready for ``eth_account.messages.encode_typed_data(full_message=...)``.

    Hashes are ``0x`` + 64 hex digits (a bare 64-hex digest is accepted and prefixed).
    ``contributors`` is ``[{"address": "0x..", "weight_bps": 10000}]``; it becomes the message's
    ``Contributor`` list with checksummed ``walletAddress`` and ``weight``. The commitments are the
    model-weight lineage (the contract refuses a zero ``candidate_commitment``); ``deadline`` is the
    unix time in seconds after which the contract refuses the signatures. Every bad value raises
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
            "baselineCommitment": _bytes32("baseline_commitment", baseline_commitment),
            "candidateCommitment": _nonzero(
                _bytes32("candidate_commitment", candidate_commitment), "candidate_commitment"
            ),
            "deadline": _uint256("deadline", deadline),
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
    # What the contract's ECDSA.recover refuses is refused here too: v other than 27/28, and the
    # high-s twin of a signature (anyone can make it from the low-s one).
    if raw[64] not in (27, 28):
        raise ValidationError("signature", f"v is {raw[64]}, the contract takes only 27 or 28")
    if int.from_bytes(raw[32:64], "big") > _SECP256K1_HALF_N:
        raise ValidationError("signature", "s is in the upper half of the curve order (malleable)")
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


def idempotency_key(
    *,
    chain_id: int,
    verifying_contract: str,
    onchain_model_id: int,
    model_id: str,
    model_digest: str,
    baseline_model_id: str,
    baseline_digest: str,
) -> str:
    """The request's ``idempotencyKey``: one per improvement, however often it is signed.

    ``0x`` + SHA-256 of the canonical JSON of where it mints (chain id, contract, on-chain model id)
    and what it claims (the improved version and its baseline, ``name/version`` as signed in the
    Statement, and their artifact digests). Nothing that changes on re-signing (time, deadline,
    attestation hash) is in it, so the contract burns the key on the first mint and refuses any
    other signing of the same improvement.

    >>> facts = dict(chain_id=8453, verifying_contract="0x" + "c0" * 20, onchain_model_id=21,
    ...              model_id="churn/2", model_digest="ab" * 32,
    ...              baseline_model_id="churn/1", baseline_digest="cd" * 32)
    >>> key = idempotency_key(**facts)
    >>> key == idempotency_key(**{**facts, "model_digest": "0x" + "AB" * 32}), len(key)
    (True, 66)
    """
    payload = {
        "chain_id": _uint256("chain_id", chain_id),
        "verifying_contract": to_checksum_address(verifying_contract, "verifying_contract"),
        # A decimal string: canonical JSON keeps integers exact only up to 2**53.
        "onchain_model_id": str(_uint256("onchain_model_id", onchain_model_id)),
        "model_id": _string("model_id", model_id),
        # Normalized first: "ab..", "0xab.." and "0xAB.." are one digest, hence one key.
        "model_digest": _bytes32("model_digest", model_digest),
        "baseline_model_id": _string("baseline_model_id", baseline_model_id),
        "baseline_digest": _bytes32("baseline_digest", baseline_digest),
    }
    return "0x" + sha256_hex(canonical_json(payload))


def legacy_idempotency_key(model_id: str, baseline_model_id: str, attestation_hash: str) -> str:
    """The ``idempotencyKey`` documents of the MintRequest types of before 2026-06-10 were signed
    with: ``0x`` + SHA-256 of the canonical JSON of the version, its baseline and the attestation
    hash. Kept so a renewal of such a document keeps its key, and a verifier recognises it."""
    payload = {
        "model_id": _string("model_id", model_id),
        "baseline_model_id": _string("baseline_model_id", baseline_model_id),
        "attestation_hash": _bytes32("attestation_hash", attestation_hash),
    }
    return "0x" + sha256_hex(canonical_json(payload))


def commitment(digest: str, field: str = "digest") -> str:
    """A weight-lineage commitment: ``0x`` + a version's ``hokusai.artifact_digest`` (sha256 hex).

    >>> commitment("AB" * 32) == "0x" + "ab" * 32
    True
    """
    return _bytes32(field, digest)


def types_generation(typed_data: Any) -> str | None:
    """``"current"`` or ``"legacy"`` (before 2026-06-10) for a MintRequest's ``types``, else None."""
    types = typed_data.get("types") if isinstance(typed_data, dict) else None
    if types == MINT_REQUEST_TYPES:
        return CURRENT_TYPES
    if types == LEGACY_MINT_REQUEST_TYPES:
        return LEGACY_TYPES
    return None


def ordered_signatures(typed_data: dict, signatures: list[str]) -> list[str]:
    """``signatures`` in the order the contract requires: strictly ascending recovered signer
    address (compared as 160-bit numbers), one per signer. Raises :class:`ValidationError` for a
    signature that does not recover, or two by the same signer."""
    by_signer: dict[int, str] = {}
    for index, signature in enumerate(signatures):
        signer = recover_typed_data_signer(typed_data, signature)
        number = int(signer, 16)
        if number in by_signer:
            raise ValidationError(f"signatures[{index}]", f"{signer} has already signed this request")
        by_signer[number] = "0x" + signature_bytes(signature).hex()
    return [by_signer[number] for number in sorted(by_signer)]


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


def _nonzero(value: str, field: str) -> str:
    if int(value, 16) == 0:
        raise ValidationError(field, "must not be zero (the contract refuses it)")
    return value


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
