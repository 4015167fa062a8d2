"""Signed attestations of a model improvement.

An attestation is an in-toto Statement v1 (subject: the improved model's artifact digest;
predicate: baseline, benchmark, metrics, DeltaOne, contributors) wrapped in a DSSE envelope. Each
signature is an Ethereum personal-message (EIP-191) signature of the DSSE PAE bytes, so anyone
holding only the attester's address can check it with eth-account, and the same key can sign the
DeltaVerifier's EIP-712 ``MintRequest`` that carries ``sha256(payload)`` as ``attestationHash``.

Trust never comes from the envelope's ``keyid`` (anyone can write any string there): it comes from
the address recovered from each signature, compared with the attesters the verifier expects.

The parts, as in sigstore's model-transparency: ``statement`` builds what is claimed,
``envelope`` signs it, ``verify`` checks it. This package's names are the small API the rest of
the code uses.
"""

from mlflow_hokusai_plugin.core.attestation.envelope import (
    DOCUMENT_STATUSES,
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    SIGNATURE_LENGTH,
    MessageSigner,
    add_signature,
    attestation_document,
    pae,
    payload_sha256,
    sign_envelope,
)
from mlflow_hokusai_plugin.core.attestation.statement import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    build_statement,
    document_predicate,
    improvement_predicate,
)
from mlflow_hokusai_plugin.core.attestation.verify import Verdict, verify_document, verify_envelope

__all__ = [
    "DOCUMENT_STATUSES",
    "MAX_SIGNATURES",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "SIGNATURE_LENGTH",
    "STATEMENT_TYPE",
    "MessageSigner",
    "Verdict",
    "add_signature",
    "attestation_document",
    "build_statement",
    "document_predicate",
    "improvement_predicate",
    "pae",
    "payload_sha256",
    "sign_envelope",
    "verify_document",
    "verify_envelope",
]
