"""Signed attestations of a model improvement.

An attestation is an in-toto Statement v1 (subject: the improved model's artifact digest;
predicate: baseline, benchmark, metrics, DeltaOne, contributors) wrapped in a DSSE envelope. Each
signature is an Ethereum personal-message (EIP-191) signature of the DSSE PAE bytes, so anyone
holding only the attester's address can check it with eth-account, and the same key can sign the
DeltaVerifier's EIP-712 ``MintRequest`` that carries ``sha256(payload)`` as ``attestationHash``.

Trust never comes from the envelope's ``keyid`` (anyone can write any string there): it comes from
the address recovered from each signature, compared with the attesters the verifier expects.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import SignableMessage, encode_defunct

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import canonical_json, parse_json, sha256_hex
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

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://hokusai.ai/attestation/model-improvement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
DOCUMENT_STATUSES = ("pending", "signed", "failed", "not_applicable")

SIGNATURE_LENGTH = 65  # r (32) || s (32) || v (1)
MAX_SIGNATURES = 100
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SHA256_HEX_LOWER = re.compile(r"[0-9a-f]{64}")
# Standard or URL-safe alphabet, padding optional: DSSE allows all of them.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


class MessageSigner(Protocol):
    """What signs an envelope: an address and EIP-191 personal-message signatures.

    ``sign_message(data)`` returns the 65-byte ``r || s || v`` signature of
    ``encode_defunct(primitive=data)``; :class:`mlflow_hokusai_plugin.runtime.signer.Signer` is one.
    """

    @property
    def address(self) -> str: ...

    def sign_message(self, data: bytes) -> bytes: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE Pre-Authentication Encoding: the bytes that are actually signed.

    Lengths are byte lengths in ASCII decimal, so the type and the body cannot be shifted into
    each other.

    >>> pae("http://example.com/HelloWorld", b"hello world")
    b'DSSEv1 29 http://example.com/HelloWorld 11 hello world'
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def build_statement(subject_name: str, subject_sha256: str, predicate: dict) -> dict:
    """An in-toto Statement v1 about one subject, with the Hokusai improvement predicate type.

    >>> build_statement("models:/churn/2", "AB" * 32, {})["subject"][0]["digest"]["sha256"][:4]
    'abab'
    """
    if not isinstance(subject_name, str) or not subject_name:
        raise ValidationError("subject_name", "must be a non-empty string")
    if not isinstance(subject_sha256, str) or not _SHA256_HEX.fullmatch(subject_sha256):
        raise ValidationError("subject_sha256", "must be 64 hex digits")
    if not isinstance(predicate, dict):
        raise ValidationError("predicate", "must be a dict")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": subject_sha256.lower()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def improvement_predicate(
    *,
    model_id: str,
    model_digest: str,
    baseline_model_id: str,
    baseline_digest: str,
    baseline_run_id: str,
    run_id: str,
    benchmark_metric: str,
    dataset_digest: str,
    baseline_metrics: dict,
    candidate_metrics: dict,
    metric_deltas: dict,
    delta_one_bps: int,
    contributors: list[dict],
    pipeline_run_id: str | None,
    plugin_version: str,
    created_at: str,
    model_type: str | None = None,
    project: str | None = None,
) -> dict:
    """The predicate of a model-improvement Statement.

    ``contributors`` are already attributed: each carries ``address``, ``weight_bps`` and
    ``attributed_bps`` (its share of ``delta_one_bps``); only those three keys are kept.
    ``created_at`` is passed in (this module reads no clock).
    """
    if isinstance(delta_one_bps, bool) or not isinstance(delta_one_bps, int):
        raise ValidationError("delta_one_bps", "must be an integer")
    if not isinstance(contributors, (list, tuple)):
        raise ValidationError("contributors", "must be a list")
    copied = []
    for index, contributor in enumerate(contributors):
        if not isinstance(contributor, dict):
            raise ValidationError(f"contributors[{index}]", "must be a dict")
        entry = {}
        for key in ("address", "weight_bps", "attributed_bps"):
            if key not in contributor:
                raise ValidationError(f"contributors[{index}].{key}", "is missing")
            entry[key] = contributor[key]
        copied.append(entry)
    return {
        "model": {
            "id": model_id,
            "digest": model_digest,
            "run_id": run_id,
            "model_type": model_type,
            "project": project,
        },
        "baseline": {
            "model_id": baseline_model_id,
            "digest": baseline_digest,
            "run_id": baseline_run_id,
        },
        "benchmark": {"metric": benchmark_metric, "dataset_digest": dataset_digest},
        "metrics": {"baseline": dict(baseline_metrics), "candidate": dict(candidate_metrics)},
        "metric_deltas": dict(metric_deltas),
        "delta_one_bps": delta_one_bps,
        "contributors": copied,
        "pipeline_run_id": pipeline_run_id,
        "mlflow_run_ids": {"baseline": baseline_run_id, "candidate": run_id},
        "plugin_version": plugin_version,
        "created_at": created_at,
    }


def sign_envelope(statement: dict, signer: MessageSigner) -> dict:
    """Serialize ``statement`` canonically and wrap it in a DSSE envelope signed by ``signer``.

    ``keyid`` is the signer's address, a hint for readers; verification ignores it.
    """
    problem = _statement_problem(statement)
    if problem:
        raise ValidationError("statement", problem)
    payload = canonical_json(statement)
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [_signature_entry(payload, signer)],
    }


def add_signature(envelope: dict, signer: MessageSigner) -> dict:
    """A copy of ``envelope`` with one more signature over the same payload (m-of-n co-signing).

    The envelope must verify as it is, and ``signer`` must not have signed it already: a second
    signature by one key would not count twice anyway, and would only hide that a co-signer is
    missing.
    """
    verdict = verify_envelope(envelope)
    if not verdict.valid:
        raise ValidationError("envelope", verdict.message)
    address = to_checksum_address(signer.address, "signer.address")
    if address in verdict.signers:
        raise ValidationError("signer", f"{address} has already signed this envelope")
    payload = _b64decode(envelope["payload"])
    return {
        "payloadType": envelope["payloadType"],
        "payload": envelope["payload"],
        "signatures": [dict(entry) for entry in envelope["signatures"]] + [_signature_entry(payload, signer)],
    }


def document_predicate(document: dict) -> dict:
    """The predicate of a stored attestation document (read, not verified: verify before trusting)."""
    return json.loads(base64.b64decode(document["dsse"]["payload"]))["predicate"]


def payload_sha256(envelope: dict) -> str:
    """Hex SHA-256 of the envelope's decoded payload bytes.

    It is the attestation id and, with ``0x`` in front, the EIP-712 ``attestationHash``. It covers
    the exact signed bytes, so it does not depend on how anyone re-serializes the Statement.
    """
    payload = _b64decode(envelope.get("payload")) if isinstance(envelope, dict) else None
    if payload is None:
        raise ValidationError("dsse.payload", "must be base64")
    return sha256_hex(payload)


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


def attestation_document(
    *,
    envelope: dict,
    model_id: str,
    baseline_model_id: str,
    attester: str,
    created_at: str,
    status: str = "signed",
    eip712: dict | None = None,
) -> dict:
    """The attestation document served by ``GET /attestations/<id>``.

    Only ``dsse`` (and the ``eip712`` signatures) are signed; the other top-level fields are an
    unsigned index for lookups. ``eip712`` is ``{"typed_data": ..., "signatures": ["0x.."]}`` and
    is left out when None (no on-chain model id).
    """
    if status not in DOCUMENT_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(DOCUMENT_STATUSES)}")
    document = {
        "id": payload_sha256(envelope),
        "model_id": model_id,
        "baseline_model_id": baseline_model_id,
        "attester": to_checksum_address(attester, "attester"),
        "status": status,
        "created_at": created_at,
        "dsse": envelope,
    }
    if eip712 is not None:
        document["eip712"] = eip712
    return document


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


def _signature_entry(payload: bytes, signer: MessageSigner) -> dict:
    signature = signer.sign_message(pae(PAYLOAD_TYPE, payload))
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_LENGTH:
        raise ValidationError("signature", "the signer must return 65 bytes (r || s || v)")
    return {
        "keyid": to_checksum_address(signer.address, "signer.address"),
        "sig": base64.b64encode(bytes(signature)).decode("ascii"),
    }


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
    payload = _b64decode(envelope["payload"])
    if payload is None:
        return fail("payload_encoding", "payload is not valid base64")
    statement = _json_object(payload)
    if statement is None:
        return fail("payload_encoding", "payload is not a UTF-8 JSON object")
    problem = _statement_problem(statement)
    if problem:
        return fail("statement_type", problem, statement)

    raw_signatures = []
    for index, entry in enumerate(envelope["signatures"]):
        raw = _b64decode(entry.get("sig")) if isinstance(entry, dict) else None
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


def _statement_problem(statement: Any) -> str:
    # Empty string when the statement is a Hokusai improvement Statement, else what is wrong.
    if not isinstance(statement, dict):
        return "statement must be a JSON object"
    if statement.get("_type") != STATEMENT_TYPE:
        return f"_type must be {STATEMENT_TYPE!r}"
    if statement.get("predicateType") != PREDICATE_TYPE:
        return f"predicateType must be {PREDICATE_TYPE!r}"
    subjects = statement.get("subject")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)):
        return "subject must list exactly one subject"
    subject = subjects[0]
    digest = subject.get("digest")
    if not isinstance(subject.get("name"), str) or not subject["name"]:
        return "subject[0].name must be a non-empty string"
    sha256 = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(sha256, str) or not _SHA256_HEX_LOWER.fullmatch(sha256):
        return "subject[0].digest.sha256 must be 64 lowercase hex digits"
    if not isinstance(statement.get("predicate"), dict):
        return "predicate must be a JSON object"
    return ""


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


def _b64decode(text: Any) -> bytes | None:
    if not isinstance(text, str) or not _BASE64.fullmatch(text):
        return None
    standard = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None


def _json_object(payload: bytes) -> dict | None:
    try:
        value = parse_json(payload, "payload")
    except ValidationError:
        return None
    return value if isinstance(value, dict) else None
