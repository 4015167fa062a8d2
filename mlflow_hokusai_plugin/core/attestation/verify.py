"""Verification of an envelope or an attestation document; never raises for bad input.

Trust never comes from the envelope's ``keyid`` (anyone can write any string there): it comes from
the address recovered from each signature, compared with the attesters the verifier expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_defunct

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation.envelope import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    SIGNATURE_LENGTH,
    b64decode,
    json_object,
    pae,
    payload_sha256,
)
from mlflow_hokusai_plugin.core.attestation.statement import statement_problem
from mlflow_hokusai_plugin.core.eip712 import (
    CURRENT_TYPES,
    DOMAIN_NAME,
    DOMAIN_VERSION,
    LEGACY_TYPES,
    PRIMARY_TYPE,
    recover_typed_data_signer,
    types_generation,
)
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.mint_request import mint_request_problem


@dataclass(frozen=True)
class Verdict:
    """Result of verifying an envelope or a document.

    ``signers`` are the distinct addresses recovered from the signatures, in order. ``statement``
    is the decoded Statement as soon as it could be decoded: it is only trustworthy when ``valid``.
    ``failed_check`` names the first check that failed (None when valid). ``eip712`` summarises a
    document's checked MintRequest: ``types`` (``current`` or ``legacy``), ``deadline`` (unix
    seconds, None for legacy types), ``idempotency_key``, both commitments and its ``signers``.
    """

    valid: bool
    signers: tuple[str, ...]
    failed_check: str | None
    message: str
    statement: dict | None
    eip712: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (for the REST API and the CLI)."""
        return {
            "valid": self.valid,
            "signers": list(self.signers),
            "failed_check": self.failed_check,
            "message": self.message,
            "statement": self.statement,
            "eip712": self.eip712,
        }


def verify_envelope(envelope: Any, attesters: Iterable[str] = (), threshold: int = 1) -> Verdict:
    """Verify a DSSE envelope; never raises for a malformed envelope.

    Checks, in order (the first that fails is ``failed_check``): ``envelope_shape``,
    ``payload_type``, ``payload_encoding``, ``statement_type``, ``signature_format``,
    ``signature_recovery``, ``attesters``, ``threshold``. The envelope is valid when at least
    ``threshold`` distinct expected ``attesters`` signed it. With no ``attesters`` every recovered
    signer counts, and the verdict only proves who signed, not that the signer is trusted.

    A ``threshold`` below 1, or above the number of attesters given, is a caller's mistake and
    raises :class:`ValidationError`.
    """
    verdict, _ = _verify_envelope(envelope, attesters, threshold)
    return verdict


def verify_document(document: Any, attesters: Iterable[str] = (), threshold: int = 1) -> Verdict:
    """Verify an attestation document; never raises for a malformed document.

    First ``document_shape`` (a dict with ``dsse``), then every check of :func:`verify_envelope`
    on ``dsse``, then, when present, ``document_id`` (``id`` is the payload's SHA-256) and
    ``eip712``: the typed data is a Hokusai ``MintRequest`` whose every field the Statement states
    is the Statement's (``attestationHash`` this payload, the commitments the subject's and the
    baseline's digests, scores, contributors, the deterministic ``idempotencyKey``), and its
    signatures recover, in strictly ascending address order as the contract wants, to signers the
    DSSE check accepted. A MintRequest of the types used before 2026-06-10 is checked for its
    anchor and signers only, and the verdict says that today's contract refuses it.
    """
    if not isinstance(document, dict) or "dsse" not in document:
        return Verdict(False, (), "document_shape", "document must be an object with 'dsse'", None)
    verdict, accepted = _verify_envelope(document["dsse"], attesters, threshold)
    if not verdict.valid:
        return verdict
    digest = payload_sha256(document["dsse"])
    if "id" in document and document["id"] != digest:
        return _failed(verdict, "document_id", f"id is not the payload's sha256 ({digest})")
    if document.get("eip712") is not None:
        problem, summary = _eip712_problem(document["eip712"], digest, accepted, verdict.statement, threshold)
        if problem:
            return _failed(verdict, "eip712", problem)
        if summary["types"] == LEGACY_TYPES:
            message = (
                f"{verdict.message}; EIP-712 MintRequest signatures check out, but it uses the "
                "MintRequest types of before 2026-06-10, which today's DeltaVerifier refuses: renew it"
            )
        else:
            message = (
                f"{verdict.message}; EIP-712 MintRequest matches the Statement and its signatures "
                f"check out (deadline {summary['deadline']})"
            )
        return dataclasses.replace(verdict, message=message, eip712=summary)
    if document.get("eip712_omitted"):
        message = f"{verdict.message}; no EIP-712 MintRequest: {document['eip712_omitted']}"
        return dataclasses.replace(verdict, message=message)
    return verdict


def _verify_envelope(
    envelope: Any, attesters: Iterable[str], threshold: int
) -> tuple[Verdict, tuple[str, ...]]:
    # Returns the verdict and the signers it accepted (expected attesters that signed, or every
    # signer when none is expected), which verify_document needs for the EIP-712 signatures.
    expected, attester_problem = _expected_attesters(attesters, threshold)

    def fail(
        check: str, message: str, statement: dict | None = None, signers: Iterable[str] = ()
    ) -> tuple[Verdict, tuple[str, ...]]:
        return Verdict(False, tuple(signers), check, message, statement), ()

    if not (
        isinstance(envelope, dict)
        and isinstance(envelope.get("payloadType"), str)
        and isinstance(envelope.get("payload"), str)
        and isinstance(envelope.get("signatures"), list)
        and envelope["signatures"]
    ):
        return fail(
            "envelope_shape",
            "envelope must be an object with payloadType, payload and a non-empty signatures list",
        )
    if len(envelope["signatures"]) > MAX_SIGNATURES:
        # Each recovery costs milliseconds: a request body must not buy minutes of CPU.
        return fail("envelope_shape", f"more than {MAX_SIGNATURES} signatures")
    if envelope["payloadType"] != PAYLOAD_TYPE:
        return fail("payload_type", f"payloadType must be {PAYLOAD_TYPE!r}")
    payload = b64decode(envelope["payload"])
    if payload is None:
        return fail("payload_encoding", "payload is not valid base64")
    statement = json_object(payload)
    if statement is None:
        return fail("payload_encoding", "payload is not a UTF-8 JSON object")
    problem = statement_problem(statement)
    if problem:
        return fail("statement_type", problem, statement)

    raw_signatures = []
    for index, entry in enumerate(envelope["signatures"]):
        raw = b64decode(entry.get("sig")) if isinstance(entry, dict) else None
        if raw is None or len(raw) != SIGNATURE_LENGTH:
            return fail(
                "signature_format",
                f"signatures[{index}].sig must be base64 of {SIGNATURE_LENGTH} bytes",
                statement,
            )
        raw_signatures.append(raw)

    signable = encode_defunct(primitive=pae(PAYLOAD_TYPE, payload))
    signers: list[str] = []
    for index, raw in enumerate(raw_signatures):
        address = _recover(signable, raw)
        if address is None:
            return fail(
                "signature_recovery",
                f"signatures[{index}] does not recover to any address",
                statement,
                signers,
            )
        if address not in signers:  # one key signing twice still counts once
            signers.append(address)

    if attester_problem:
        return fail("attesters", attester_problem, statement, signers)
    accepted = tuple(s for s in signers if s in expected) if expected else tuple(signers)
    listed = ", ".join(signers)
    if len(accepted) < threshold:
        if expected:
            message = (
                f"{len(accepted)} of the {len(expected)} expected attesters signed, "
                f"{threshold} required (recovered signers: {listed})"
            )
        else:
            message = f"{len(accepted)} distinct signer(s), {threshold} required ({listed})"
        return fail("threshold", message, statement, signers)
    if expected:
        message = (
            f"valid: signed by {len(accepted)} of the {len(expected)} expected attesters "
            f"(threshold {threshold}): {', '.join(accepted)}"
        )
    else:
        message = (
            f"valid signature(s) by {listed}; no expected attester was given, so this only "
            "proves who signed, not that the signer is a trusted attester"
        )
    return Verdict(True, tuple(signers), None, message, statement), accepted


def _expected_attesters(attesters: Iterable[str], threshold: int) -> tuple[tuple[str, ...], str]:
    # A bad threshold is the caller's bug and raises; a bad attester address is input to report
    # in the verdict (it may come straight from a CLI flag or a request body).
    given = list(attesters) if not isinstance(attesters, str) else [attesters]
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValidationError("threshold", "must be an integer >= 1")
    expected: list[str] = []
    problem = ""
    for index, value in enumerate(given):
        try:
            address = to_checksum_address(value, f"attesters[{index}]")
        except ValidationError as exc:
            problem = str(exc)
            break
        if address not in expected:
            expected.append(address)
    count = len(given) if problem else len(expected)
    if given and threshold > count:
        raise ValidationError("threshold", f"is {threshold} but only {count} distinct attester(s) were given")
    return tuple(expected), problem


def _eip712_problem(
    eip712: Any, payload_digest: str, accepted: tuple[str, ...], statement: dict | None, threshold: int
) -> tuple[str, dict]:
    # ("", summary) when the EIP-712 part is consistent with the verified envelope, else (why, {}).
    if not isinstance(eip712, dict):
        return "eip712 must be an object with typed_data and signatures", {}
    typed_data = eip712.get("typed_data")
    signatures = eip712.get("signatures")
    if not isinstance(typed_data, dict) or not isinstance(signatures, list) or not signatures:
        return "eip712 must have typed_data and a non-empty signatures list", {}
    if len(signatures) > MAX_SIGNATURES:
        return f"eip712 has more than {MAX_SIGNATURES} signatures", {}
    domain = typed_data.get("domain")
    generation = types_generation(typed_data)
    if (
        generation is None
        or typed_data.get("primaryType") != PRIMARY_TYPE
        or not isinstance(domain, dict)
        or domain.get("name") != DOMAIN_NAME
        or domain.get("version") != DOMAIN_VERSION
    ):
        # Other types or another domain would give a digest the DeltaVerifier never computes.
        return "typed_data is not a HokusaiDeltaVerifier MintRequest (types, domain or primaryType)", {}
    message = typed_data.get("message")
    payload = message.get("payload") if isinstance(message, dict) else None
    anchors = payload.get("anchors") if isinstance(payload, dict) else None
    attestation_hash = anchors.get("attestationHash") if isinstance(anchors, dict) else None
    if not isinstance(attestation_hash, str) or attestation_hash.lower() != "0x" + payload_digest:
        return "typed_data attestationHash is not the sha256 of this envelope's payload", {}
    if generation == CURRENT_TYPES:
        problem = mint_request_problem(typed_data, (statement or {}).get("predicate") or {}, payload_digest)
        if problem:
            return problem, {}
    signers = []
    for index, signature in enumerate(signatures):
        try:
            signer = recover_typed_data_signer(typed_data, signature)
        except ValidationError as exc:
            return f"eip712.signatures[{index}]: {exc.message}", {}
        if signer not in accepted:
            return f"eip712.signatures[{index}] is by {signer}, not by an accepted DSSE signer", {}
        if signers and int(signer, 16) <= int(signers[-1], 16):
            return (
                f"eip712.signatures[{index}] (by {signer}) is not after {signers[-1]}: the contract "
                "wants one signature per signer, in strictly ascending address order",
                {},
            )
        signers.append(signer)
    if len(signers) < threshold:
        # The signature list is signed by nobody: co-signatures can be stripped from it.
        return (
            f"eip712 has {len(signers)} accepted signature(s), {threshold} required: the contract's "
            "threshold is counted on the MintRequest's own signatures",
            {},
        )
    summary = {
        "types": generation,
        "deadline": payload.get("deadline") if generation == CURRENT_TYPES else None,
        "idempotency_key": anchors.get("idempotencyKey"),
        "baseline_commitment": payload.get("baselineCommitment"),
        "candidate_commitment": payload.get("candidateCommitment"),
        "signers": signers,
    }
    return "", summary


def _failed(verdict: Verdict, check: str, message: str) -> Verdict:
    return dataclasses.replace(verdict, valid=False, failed_check=check, message=message)


def _recover(signable: SignableMessage, signature: bytes) -> str | None:
    try:
        return Account.recover_message(signable, signature=signature)
    except Exception:  # eth-keys' BadSignature, ValueError for a bad v, ...
        return None
