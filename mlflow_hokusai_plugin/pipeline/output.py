"""The DeltaOne output document, in the shape the earlier Hokusai pipeline wrote it.

Pure: the flow gathers the facts, this module arranges them. With ``--disable-services`` the
document is the same minus the registry ids (``model_id`` and ``mlflow_run_id`` are null); in a
dry run, the ids are those of what a real run would reuse (null for what it would register) and
the attestation's status is ``dry_run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA_VERSION = "1.0"
DRY_RUN = "dry_run"
COMPUTATION_METHOD = (
    "DeltaOne: the benchmark metric's gain in basis points, max(0, candidate - baseline) "
    "(reversed for lower-is-better metrics); 100 bps = 1 DeltaOne"
)


def deltaone_output(
    *,
    improvement: Mapping[str, Any],
    baseline_model: Mapping[str, Any],
    new_model: Mapping[str, Any],
    contributors: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    total_samples: int,
    evaluation: Mapping[str, Any],
    pipeline: Mapping[str, Any],
    attestation: Mapping[str, Any] | None,
    dry_run: bool = False,
) -> dict:
    """Arrange one run's facts into the DeltaOne output document.

    ``baseline_model`` and ``new_model`` carry ``model_id``, ``model_type``, ``metrics`` and
    ``mlflow_run_id``; ``contributors`` are attributed entries (``address``, ``weight_bps``,
    ``attributed_bps``).
    """
    deltas = improvement["metric_deltas"]
    return {
        "schema_version": SCHEMA_VERSION,
        "delta_computation": {
            "delta_one_score": improvement["delta_one"],
            "delta_one_bps": improvement["delta_one_bps"],
            "benchmark_metric": improvement["benchmark_metric"],
            "baseline_score_bps": improvement["baseline_score_bps"],
            "candidate_score_bps": improvement["candidate_score_bps"],
            "metric_deltas": dict(deltas),
            "computation_method": COMPUTATION_METHOD,
            "metrics_included": sorted(deltas),
            "improved_metrics": list(improvement["improved_metrics"]),
            "degraded_metrics": list(improvement["degraded_metrics"]),
            "weighted_score": improvement["weighted_score"],
            "recommendation": improvement["recommendation"],
        },
        "baseline_model": _model(baseline_model),
        "new_model": _model(new_model),
        "contributor_attribution": {
            "data_hash": manifest["data_hash"],
            "contributor_weights": {c["address"]: c["weight_bps"] for c in contributors},
            "attributed_bps": {c["address"]: c["attributed_bps"] for c in contributors},
            "contributed_samples": manifest["row_count"],
            "total_samples": total_samples,
            "data_manifest": dict(manifest),
        },
        "evaluation_metadata": dict(evaluation),
        "pipeline_metadata": dict(pipeline),
        "attestation": _attestation_summary(attestation, dry_run),
    }


def _model(model: Mapping[str, Any]) -> dict:
    return {key: model.get(key) for key in ("model_id", "model_type", "metrics", "mlflow_run_id")}


def _attestation_summary(document: Mapping[str, Any] | None, dry_run: bool = False) -> dict:
    """Where to find the attestation and what state it is in (the document itself is a file)."""
    if document is None:
        return {"status": DRY_RUN if dry_run else "pending", "id": None, "attester": None}
    return {
        "status": document.get("status"),
        "id": document.get("id"),
        "attester": document.get("attester"),
    }
