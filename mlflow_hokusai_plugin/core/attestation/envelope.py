"""The DSSE envelope: the Statement's canonical bytes, signed with EIP-191 over DSSE's PAE.

Each signature is an Ethereum personal-message signature of the PAE bytes, so anyone holding only
the attester's address can check it with eth-account. Our own code rather than securesystemslib's
``dsse.Envelope``: that one keeps signatures hex-encoded and keyed by ``keyid`` (DSSE's JSON has
base64, and here trust must never come from a ``keyid``), and PAE itself is one line.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Protocol

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation.statement import statement_problem
from mlflow_hokusai_plugin.core.canonical import canonical_json, parse_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError

PAYLOAD_TYPE = "application/vnd.in-toto+json"

DOCUMENT_STATUSES = ("pending", "signed", "failed", "not_applicable")

SIGNATURE_LENGTH = 65  # r (32) || s (32) || v (1)

MAX_SIGNATURES = 100

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


def sign_envelope(statement: dict, signer: MessageSigner) -> dict:
    """Serialize ``statement`` canonically and wrap it in a DSSE envelope signed by ``signer``.

    ``keyid`` is the signer's address, a hint for readers; verification ignores it.
    """
    problem = statement_problem(statement)
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
    # Co-signing starts from a verified envelope: the one import of verify from here, made late
    # because verify builds on this module.
    from mlflow_hokusai_plugin.core.attestation.verify import verify_envelope

    verdict = verify_envelope(envelope)
    if not verdict.valid:
        raise ValidationError("envelope", verdict.message)
    address = to_checksum_address(signer.address, "signer.address")
    if address in verdict.signers:
        raise ValidationError("signer", f"{address} has already signed this envelope")
    payload = b64decode(envelope["payload"])
    return {
        "payloadType": envelope["payloadType"],
        "payload": envelope["payload"],
        "signatures": [dict(entry) for entry in envelope["signatures"]] + [_signature_entry(payload, signer)],
    }


def payload_sha256(envelope: dict) -> str:
    """Hex SHA-256 of the envelope's decoded payload bytes.

    It is the attestation id and, with ``0x`` in front, the EIP-712 ``attestationHash``. It covers
    the exact signed bytes, so it does not depend on how anyone re-serializes the Statement.
    """
    payload = b64decode(envelope.get("payload")) if isinstance(envelope, dict) else None
    if payload is None:
        raise ValidationError("dsse.payload", "must be base64")
    return sha256_hex(payload)


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


def _signature_entry(payload: bytes, signer: MessageSigner) -> dict:
    signature = signer.sign_message(pae(PAYLOAD_TYPE, payload))
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_LENGTH:
        raise ValidationError("signature", "the signer must return 65 bytes (r || s || v)")
    return {
        "keyid": to_checksum_address(signer.address, "signer.address"),
        "sig": base64.b64encode(bytes(signature)).decode("ascii"),
    }


def b64decode(text: Any) -> bytes | None:
    """The bytes of standard or URL-safe base64, padding optional (as DSSE allows); None if not."""
    if not isinstance(text, str) or not _BASE64.fullmatch(text):
        return None
    standard = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None


def json_object(payload: bytes) -> dict | None:
    """The JSON object ``payload`` holds (strict UTF-8 JSON), or None."""
    try:
        value = parse_json(payload, "payload")
    except ValidationError:
        return None
    return value if isinstance(value, dict) else None
