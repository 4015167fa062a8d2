"""Issue the attestation of one improvement: Statement, DSSE signature, optional EIP-712 MintRequest.

The callers (the server's registrar, the offline pipeline) gather the facts; this module turns them
into a signed document and nothing else: no I/O, no clock (``created_at`` and the deadline are
passed in). It also renews a document's EIP-712 part with a later deadline and adds a co-signer,
the two ways a signed document changes after it was issued; the DSSE Statement never does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_hokusai_plugin.core import attestation, eip712
from mlflow_hokusai_plugin.core.attestation import MessageSigner
from mlflow_hokusai_plugin.core.contributors import attribute
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.metrics import compute_improvement
from mlflow_hokusai_plugin.core.mint_request import (
    LineageFacts,
    NotMintable,
    OnchainTarget,
    lineage_problem,
    mint_request,
)

__all__ = [
    "LineageFacts",
    "OnchainTarget",
    "issue_attestation",
    "renew_mint_request",
    "cosign_document",
    "attest_improvement",
]

# Earlier EIP-712 signings a document keeps (oldest dropped first): a renewal every five days
# for months, without letting renewals grow a document without bound.
MAX_SIGNING_HISTORY = 32


def issue_attestation(
    signer: MessageSigner,
    *,
    subject_name: str,
    subject_digest: str,
    predicate: Mapping[str, Any],
    model_id: str,
    baseline_model_id: str,
    created_at: str,
    onchain: OnchainTarget | None = None,
    deadline: int | None = None,
    total_samples: int = 0,
    eip712_omitted: str | None = None,
    lineage: LineageFacts | None = None,
) -> dict:
    """Sign the Statement about ``subject_name`` and return the attestation document.

    With ``onchain`` the document also carries the DeltaVerifier MintRequest for the same
    improvement, signed by the same key, anchored to this document's payload hash and valid until
    ``deadline`` (unix seconds). When the improvement cannot be expressed as a MintRequest, or
    ``eip712_omitted`` gives a reason it is not made, the document says why in ``eip712_omitted``:
    the DSSE attestation never depends on the EIP-712 part. ``lineage`` (the registry's facts
    about the weights) lets :func:`core.mint_request.lineage_problem` refuse a MintRequest that
    would pay weights the chain has already paid for.
    """
    statement = attestation.build_statement(subject_name, subject_digest, dict(predicate))
    envelope = attestation.sign_envelope(statement, signer)
    document = attestation.attestation_document(
        envelope=envelope,
        model_id=model_id,
        baseline_model_id=baseline_model_id,
        attester=signer.address,
        created_at=created_at,
    )
    if eip712_omitted:
        return {**document, "eip712_omitted": eip712_omitted}
    if onchain is None:
        return document
    if deadline is None:
        raise ValidationError("deadline", "an on-chain MintRequest needs a deadline")
    return _signed_mint_request(
        document, signer, onchain, deadline, total_samples, created_at, history=[], lineage=lineage
    )


def renew_mint_request(
    document: Mapping[str, Any],
    signer: MessageSigner,
    *,
    onchain: OnchainTarget | None,
    deadline: int,
    total_samples: int,
    renewed_at: str,
) -> dict:
    """``document`` with its EIP-712 part signed again, valid until a later deadline.

    The DSSE Statement, the ``attestationHash`` and the ``idempotencyKey`` stay as they were: the
    request is rebuilt from the Statement, so a document signed with the older MintRequest types
    comes back with today's. It targets the chain and on-chain model its MintRequest already names,
    or ``onchain`` for a document that had none. The deadline is ``deadline``, or one second after
    the current one if that is not earlier, so each renewal's is strictly later. The earlier
    signing moves to ``eip712.history``.
    """
    document = dict(document)
    verdict = attestation.verify_document({k: v for k, v in document.items() if k != "eip712"})
    if not verdict.valid:
        raise ValidationError("attestation", f"the stored document does not verify: {verdict.message}")
    if signer.address not in verdict.signers:
        raise ValidationError(
            "attester",
            f"this server's attester {signer.address} did not sign this attestation "
            f"({', '.join(verdict.signers)} did): its EIP-712 part must be renewed by one of them",
        )
    previous = document.get("eip712")
    key = None
    if previous is not None:
        signed_for = OnchainTarget.of(previous["typed_data"])
        if onchain != signed_for:
            # Removed, changed or moved to another contract since: a renewal would sign for a
            # model the registry no longer says this is, or mint a second time elsewhere.
            raise ValidationError(
                "hokusai.onchain_model_id",
                f"the MintRequest was signed for {_target_text(signed_for)}, but the model is now "
                f"{_target_text(onchain) if onchain else 'not on chain (or gone)'}: not renewed",
            )
        payload = previous["typed_data"]["message"]["payload"]
        deadline = max(deadline, int(payload.get("deadline", 0)) + 1)
        # The key stays the one already signed, whichever way it was derived (documents of the
        # older types derived it from the attestation hash): a request that minted must never
        # come back under a new key.
        key = payload["anchors"]["idempotencyKey"]
    if onchain is None:
        raise ValidationError(
            "attestation",
            "has no EIP-712 part and its model has no hokusai.onchain_model_id: nothing to renew",
        )
    history = list((previous or {}).get("history", []))
    if previous is not None:
        history.append(
            {key: previous[key] for key in ("typed_data", "signatures", "signed_at") if key in previous}
        )
    document.pop("eip712", None)
    document.pop("eip712_omitted", None)
    return _signed_mint_request(
        document,
        signer,
        onchain,
        deadline,
        total_samples,
        renewed_at,
        history=history[-MAX_SIGNING_HISTORY:],
        idempotency_key=key,
    )


def _target_text(target: OnchainTarget) -> str:
    return f"model {target.model_id} of {target.verifying_contract} on chain {target.chain_id}"


def cosign_document(document: Mapping[str, Any], signer: MessageSigner) -> dict:
    """``document`` with ``signer``'s signatures added: on the DSSE envelope and, when there is one,
    on the EIP-712 MintRequest, whose signatures are then in the contract's order (ascending
    signer address). Raises :class:`ValidationError` if ``signer`` has already signed either."""
    document = dict(document)
    part = document.get("eip712")
    if part is not None and eip712.types_generation(part.get("typed_data")) != eip712.CURRENT_TYPES:
        raise ValidationError(
            "eip712", "uses the MintRequest types of before 2026-06-10: renew it before co-signing"
        )
    document["dsse"] = attestation.add_signature(document["dsse"], signer)
    if part is not None:
        typed_data = part["typed_data"]
        signature = "0x" + bytes(signer.sign_typed_data(typed_data)).hex()
        # "expired" is what a server said when it served the document, not part of it.
        document["eip712"] = {
            **{key: value for key, value in part.items() if key != "expired"},
            "signatures": eip712.ordered_signatures(typed_data, [*part["signatures"], signature]),
        }
    return document


def _signed_mint_request(
    document: dict,
    signer: Any,
    onchain: OnchainTarget,
    deadline: int,
    total_samples: int,
    signed_at: str,
    *,
    history: list,
    idempotency_key: str | None = None,
    lineage: LineageFacts | None = None,
) -> dict:
    try:
        typed_data = mint_request(
            attestation.document_predicate(document),
            onchain=onchain,
            attestation_hash=document["id"],
            deadline=deadline,
            total_samples=total_samples,
            idempotency_key=idempotency_key,
        )
        if lineage is not None:
            lineage_problem(typed_data, lineage)
    except NotMintable as exc:
        omitted = {**document, "eip712_omitted": str(exc)}
        return {**omitted, "eip712_history": history} if history else omitted
    signature = "0x" + bytes(signer.sign_typed_data(typed_data)).hex()
    part = {"typed_data": typed_data, "signatures": [signature], "signed_at": signed_at}
    if history:
        part["history"] = history
    return {**document, "eip712": part}


@dataclass(frozen=True)
class AttestedImprovement:
    """Everything one attested improvement produced."""

    improvement: dict  # core.metrics.compute_improvement
    contributors: list[dict]  # normalised, each with attributed_bps
    document: dict  # the attestation document


def attest_improvement(
    signer: MessageSigner,
    *,
    onchain: OnchainTarget | None = None,
    subject: tuple[str, str] | None = None,
    deadline: int | None = None,
    total_samples: int = 0,
    eip712_omitted: str | None = None,
    lineage: LineageFacts | None = None,
    **facts: Any,
) -> AttestedImprovement:
    """Compute the improvement of ``model_id`` over its baseline and sign the attestation.

    The single path from measured facts to a signed document, shared by the services (local
    signing) and the server plugin. ``facts`` are the keyword arguments of
    :func:`improvement_statement_parts` (``model_id``, ``baseline_model_id``, the metrics, runs,
    digests ...). The Statement's subject is the model (``models:/<model_id>``, ``model_digest``)
    unless ``subject`` gives another (name, sha256). ``onchain``, ``deadline``, ``total_samples``
    and ``eip712_omitted`` are those of :func:`issue_attestation`.
    """
    improvement, attributed, predicate = improvement_statement_parts(**facts)
    model_id = facts["model_id"]
    subject_name, subject_digest = subject or (f"models:/{model_id}", facts["model_digest"])
    document = issue_attestation(
        signer,
        subject_name=subject_name,
        subject_digest=subject_digest,
        predicate=predicate,
        model_id=model_id,
        baseline_model_id=facts["baseline_model_id"],
        created_at=facts["created_at"],
        onchain=onchain,
        deadline=deadline,
        total_samples=total_samples,
        eip712_omitted=eip712_omitted,
        lineage=lineage,
    )
    return AttestedImprovement(improvement, attributed, document)


def improvement_statement_parts(
    *,
    model_id: str,
    baseline_model_id: str,
    benchmark_metric: str,
    contributors: Sequence[Mapping[str, Any]],
    baseline_metrics: Mapping[str, float],
    candidate_metrics: Mapping[str, float],
    baseline_run_id: str | None,
    run_id: str | None,
    dataset_digest: str | None,
    model_digest: str | None,
    baseline_digest: str | None,
    created_at: str,
    plugin_version: str,
    project: str | None = None,
    model_type: str | None = None,
    pipeline_run_id: str | None = None,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, str] | None = None,
) -> tuple[dict, list[dict], dict]:
    """The improvement, the attributed contributors and the Statement's predicate, unsigned."""
    improvement = compute_improvement(
        baseline_metrics, candidate_metrics, benchmark_metric, metrics=metrics, directions=directions
    )
    attributed = attribute(improvement["delta_one_bps"], [dict(c) for c in contributors])
    compared = improvement["metric_deltas"]
    predicate = attestation.improvement_predicate(
        model_id=model_id,
        model_digest=model_digest,
        baseline_model_id=baseline_model_id,
        baseline_digest=baseline_digest,
        baseline_run_id=baseline_run_id,
        run_id=run_id,
        benchmark_metric=benchmark_metric,
        dataset_digest=dataset_digest,
        baseline_metrics={name: delta["baseline_value"] for name, delta in compared.items()},
        candidate_metrics={name: delta["new_value"] for name, delta in compared.items()},
        metric_deltas=compared,
        delta_one_bps=improvement["delta_one_bps"],
        contributors=attributed,
        pipeline_run_id=pipeline_run_id,
        plugin_version=plugin_version,
        created_at=created_at,
        model_type=model_type,
        project=project,
    )
    return improvement, attributed, predicate
