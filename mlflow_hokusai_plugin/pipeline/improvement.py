"""The ``track_improvement`` step's work: record the improvement and what it earned.

With services, the candidate is registered against its baseline through the MLflow client, and
the Hokusai server computes the deltas from the two runs and signs the attestation. Without
(``--disable-services``), the same numbers are computed here (``offline``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow_hokusai_plugin.core.contributors import attribute, parse_contributors
from mlflow_hokusai_plugin.core.metrics import compute_improvement
from mlflow_hokusai_plugin.pipeline import offline, registration


@dataclass
class Recorded:
    """What was recorded: the registry id (None offline), the numbers, and the attestation."""

    model_id: str | None
    improvement: dict
    contributors: list[dict]  # attributed: address, weight_bps, attributed_bps
    attestation: dict | None  # None while the server's signature is pending
    summary: str


def record_with_services(
    *,
    tracking_uri: str,
    run_id: str,
    model_uri: str,
    baseline_id: str,
    contributors: Sequence[dict],
    pipeline_run_id: str,
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
) -> Recorded:
    """Register the candidate as an improvement of the baseline; the server attests it."""
    result = registration.track_improvement(
        run_id,
        baseline_id,
        contributors,
        pipeline_run_id=pipeline_run_id,
        model_uri=model_uri,
        tracking_uri=tracking_uri,
    )
    improvement = result.get("improvement")
    attributed = result.get("contributors")
    if improvement is None:  # signature pending on the server: the numbers are still known here
        improvement = compute_improvement(baseline_metrics, new_metrics, benchmark_metric)
        attributed = attribute(improvement["delta_one_bps"], parse_contributors(list(contributors)))
    document = result.get("attestation")
    state = "reused" if result["reused"] else "registered"
    status = document["status"] if document else result.get("attestation_status") or "pending"
    summary = (
        f"{result['model_id']} {state} as an improvement of {baseline_id}: DeltaOne "
        f"{improvement['delta_one']:g}; attestation {status}"
    )
    return Recorded(result["model_id"], improvement, attributed, document, summary)


def record_offline(
    *,
    contributors: Sequence[dict],
    pipeline_run_id: str,
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
    data_hash: str,
    benchmark_digest: str,
    model_type: str,
    project: str,
) -> Recorded:
    """The same numbers with no server; the attestation is signed only if a key is configured."""
    improvement, attributed, document = offline.offline_improvement(
        baseline_metrics=baseline_metrics,
        candidate_metrics=new_metrics,
        benchmark_metric=benchmark_metric,
        contributors=contributors,
        data_hash=data_hash,
        dataset_digest=benchmark_digest,
        model_type=model_type,
        project=project,
        pipeline_run_id=pipeline_run_id,
        created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    summary = f"Services disabled: DeltaOne {improvement['delta_one']:g}; attestation {document['status']}"
    return Recorded(None, improvement, attributed, document, summary)
