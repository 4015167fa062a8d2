"""The ``track_improvement`` step's work: record the improvement and what it earned.

With services, the candidate is registered against its baseline through the MLflow client, and
the Hokusai server computes the deltas from the two runs and signs the attestation; a rerun of the
same evaluation gets the improvement registered the first time. Without (``--disable-services``),
the same numbers are computed here (``offline``). In a dry run (``--dry-run``) they are computed
here too, and nothing is registered or signed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlflow_hokusai_plugin.core.contributors import attribute, parse_contributors
from mlflow_hokusai_plugin.core.metrics import compute_improvement
from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.pipeline import offline, registration


@dataclass
class Recorded:
    """What was recorded: the registry id (None offline), the numbers, and the attestation."""

    model_id: str | None
    improvement: dict
    contributors: list[dict]  # attributed: address, weight_bps, attributed_bps
    attestation: dict | None  # None while the server's signature is pending, and in a dry run
    summary: str
    reused: bool = False  # registered before, by an earlier run of the same evaluation
    # The candidate's metrics as registered, when the improvement was reused: those of the run
    # that registered it, which the numbers above were computed from.
    registered_metrics: dict | None = None


def record_with_services(
    *,
    tracking_uri: str,
    run_id: str,
    model_uri: str | None,
    baseline_id: str,
    contributors: Sequence[dict],
    pipeline_run_id: str,
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
    improvement_key: str | None = None,
    benchmark_digest: str | None = None,
) -> Recorded:
    """Register the candidate as an improvement of the baseline; the server attests it.

    With ``improvement_key``, an improvement registered under it before is reused, not registered
    again, if the server attested it with these contributors and this benchmark (see
    :func:`registration.track_improvement`).
    """
    result = registration.track_improvement(
        run_id,
        baseline_id,
        contributors,
        pipeline_run_id=pipeline_run_id,
        model_uri=model_uri,
        tracking_uri=tracking_uri,
        idempotency_key=improvement_key,
        benchmark_digest=benchmark_digest,
        benchmark_metric=benchmark_metric,
    )
    registered = _registered_metrics(tracking_uri, result) if result["reused"] else None
    improvement, attributed = _numbers(
        result, baseline_metrics, registered or new_metrics, benchmark_metric, contributors
    )
    document = result.get("attestation")
    state = "reused" if result["reused"] else "registered"
    status = document["status"] if document else result.get("attestation_status") or "pending"
    summary = (
        f"{result['model_id']} {state} as an improvement of {baseline_id}: DeltaOne "
        f"{improvement['delta_one']:g}; attestation {status}"
    )
    if result["reused"] and result.get("run_id") != run_id:
        summary += " (this evaluation was registered before: its rows are not credited again)"
    return Recorded(
        result["model_id"], improvement, attributed, document, summary, result["reused"], registered
    )


def record_registered(
    *,
    tracking_uri: str,
    model_id: str,
    contributors: Sequence[dict],
    baseline_metrics: Mapping[str, float],
    benchmark_metric: str,
) -> Recorded:
    """A dry run of an evaluation registered before: what it registered, read back, nothing written."""
    from mlflow_hokusai_plugin.services import HokusaiModelRegistry

    result = HokusaiModelRegistry(tracking_uri).get_improvement(model_id)
    registered = _registered_metrics(tracking_uri, result)
    improvement, attributed = _numbers(result, baseline_metrics, registered, benchmark_metric, contributors)
    summary = (
        f"Dry run: this evaluation is {model_id} already (DeltaOne {improvement['delta_one']:g}): a "
        "real run would reuse it and credit its rows to nobody again; nothing was written to MLflow"
    )
    return Recorded(model_id, improvement, attributed, result.get("attestation"), summary, True, registered)


def record_dry_run(
    *,
    contributors: Sequence[dict],
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
    baseline_id: str | None,
    model_name: str,
    services: bool = True,
) -> Recorded:
    """The numbers a real run would register, computed here; nothing is registered or signed
    (not even offline with an attester key configured: a dry run creates no attestation)."""
    improvement = compute_improvement(baseline_metrics, new_metrics, benchmark_metric)
    attributed = attribute(improvement["delta_one_bps"], parse_contributors(list(contributors)))
    shares = ", ".join(f"{c['address']} {c['attributed_bps']} bps" for c in attributed)
    numbers = f"DeltaOne {improvement['delta_one']:g} (+{improvement['delta_one_bps']} bps: {shares})"
    if not services:
        summary = f"Dry run, services disabled: {numbers}; nothing was signed"
    else:
        summary = (
            f"Dry run: would register a new version of '{model_name}' as an improvement of "
            f"{baseline_id or 'the new baseline'}: {numbers}; nothing was written to MLflow"
        )
    return Recorded(None, improvement, attributed, None, summary)


def _registered_metrics(tracking_uri: str, result: Mapping) -> dict | None:
    """The metrics of the run a registered improvement came from (not necessarily this run's)."""
    from mlflow import MlflowClient

    run_id = result.get("run_id")
    return dict(MlflowClient(tracking_uri).get_run(run_id).data.metrics) if run_id else None


def _numbers(
    result: Mapping,
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
    contributors: Sequence[dict],
) -> tuple[dict, list[dict]]:
    """The server's improvement and attribution; while its signature is pending, the same numbers
    computed here from the metrics the registration was made from."""
    if result.get("improvement") is not None:
        return result["improvement"], result["contributors"]
    improvement = compute_improvement(baseline_metrics, new_metrics, benchmark_metric)
    return improvement, attribute(improvement["delta_one_bps"], parse_contributors(list(contributors)))


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
        created_at=iso_utc(time.time()),
    )
    summary = f"Services disabled: DeltaOne {improvement['delta_one']:g}; attestation {document['status']}"
    return Recorded(None, improvement, attributed, document, summary)
