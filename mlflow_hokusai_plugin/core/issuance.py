"""Issue the attestation of one improvement: Statement, DSSE signature, optional EIP-712 MintRequest.

The callers (the services now, the server plugin later) gather the facts; this module turns them
into a signed document and nothing else: no I/O, no clock (``created_at`` is passed in).
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


@dataclass(frozen=True)
class OnchainTarget:
    """Where the EIP-712 MintRequest will be verified: the DeltaVerifier and the model's on-chain id."""

    chain_id: int
    verifying_contract: str
    model_id: int


def issue_attestation(
    signer: MessageSigner,
    *,
    subject_name: str,
    subject_digest: str,
    predicate: Mapping[str, Any],
    model_id: str,
    baseline_model_id: str,
    created_at: str,
    model_type: str | None = None,
    onchain: OnchainTarget | None = None,
    improvement: Mapping[str, Any] | None = None,
    contributors: Sequence[Mapping[str, Any]] = (),
) -> dict:
    """Sign the Statement about ``subject_name`` and return the attestation document.

    With ``onchain`` (and the ``improvement`` of :func:`core.metrics.compute_improvement`), the
    document also carries the DeltaVerifier MintRequest for the same improvement, signed by the
    same key, anchored to this document's payload hash.
    """
    statement = attestation.build_statement(subject_name, subject_digest, dict(predicate))
    envelope = attestation.sign_envelope(statement, signer)
    eip712_part = None
    if onchain is not None:
        typed_data = mint_request_for(
            onchain=onchain,
            predicate=predicate,
            improvement=improvement or {},
            contributors=contributors,
            attestation_hash=attestation.payload_sha256(envelope),
            model_id=model_id,
            baseline_model_id=baseline_model_id,
            model_type=model_type,
        )
        signature = signer.sign_typed_data(typed_data)
        eip712_part = {"typed_data": typed_data, "signatures": ["0x" + bytes(signature).hex()]}
    return attestation.attestation_document(
        envelope=envelope,
        model_id=model_id,
        baseline_model_id=baseline_model_id,
        attester=signer.address,
        created_at=created_at,
        eip712=eip712_part,
    )


def mint_request_for(
    *,
    onchain: OnchainTarget,
    predicate: Mapping[str, Any],
    improvement: Mapping[str, Any],
    contributors: Sequence[Mapping[str, Any]],
    attestation_hash: str,
    model_id: str,
    baseline_model_id: str,
    model_type: str | None,
) -> dict:
    """The EIP-712 MintRequest of one improvement (see docs/attestation.md for each anchor)."""
    benchmark = predicate.get("benchmark") or {}
    dataset_digest = benchmark.get("dataset_digest")
    if not dataset_digest:
        raise ValidationError(
            "benchmark.dataset_digest", "the on-chain MintRequest needs the benchmark dataset digest"
        )
    spec = {"metric": benchmark.get("metric"), "dataset_digest": dataset_digest, "model_type": model_type}
    return eip712.mint_request_typed_data(
        chain_id=onchain.chain_id,
        verifying_contract=onchain.verifying_contract,
        model_id=onchain.model_id,
        # The verifier needs a run id; without a pipeline run, the MLflow run that made the model is it.
        pipeline_run_id=predicate.get("pipeline_run_id")
        or (predicate.get("mlflow_run_ids") or {}).get("candidate"),
        baseline_score_bps=improvement["baseline_score_bps"],
        candidate_score_bps=improvement["candidate_score_bps"],
        total_samples=sum(int(c.get("samples", 0)) for c in contributors),
        benchmark_spec_hash=eip712.benchmark_spec_hash(spec),
        dataset_hash=eip712.bytes32_from_digest(dataset_digest),
        attestation_hash=attestation_hash,
        idempotency_key=eip712.idempotency_key(model_id, baseline_model_id, attestation_hash),
        metric_name=benchmark.get("metric") or "",
        metric_family=model_type or "",
        contributors=[{"address": c["address"], "weight_bps": c["weight_bps"]} for c in contributors],
    )


def _pipeline_run_id(predicate: Mapping[str, Any]) -> str:
    # The verifier refuses an empty run id; without a pipeline run, the MLflow run that made the
    # model is the run that produced it.
    return predicate.get("pipeline_run_id") or (predicate.get("mlflow_run_ids") or {}).get("candidate") or ""


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
    **facts: Any,
) -> AttestedImprovement:
    """Compute the improvement of ``model_id`` over its baseline and sign the attestation.

    The single path from measured facts to a signed document, shared by the services (local
    signing) and the server plugin. ``facts`` are the keyword arguments of
    :func:`improvement_statement_parts` (``model_id``, ``baseline_model_id``, the metrics, runs,
    digests ...). The Statement's subject is the model (``models:/<model_id>``, ``model_digest``)
    unless ``subject`` gives another (name, sha256).
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
        model_type=facts.get("model_type"),
        onchain=onchain,
        improvement=improvement,
        contributors=attributed,
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
