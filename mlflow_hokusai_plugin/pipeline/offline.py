"""The improvement and its attestation when the flow runs with ``--disable-services``.

No MLflow server, so no Hokusai server to sign. The deltas, DeltaOne and attribution are computed
the same way (``core``), and the Statement names the contributed data as its subject (there is no
registered model). It is signed only when an attester key is configured in the environment of the
pipeline (that host is then an attester, by the operator's choice); otherwise the document says
``unsigned`` and carries the Statement that a server would have signed, so nobody can mistake it
for a signed one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.core import attestation
from mlflow_hokusai_plugin.core.contributors import parse_contributors
from mlflow_hokusai_plugin.core.issuance import attest_improvement, improvement_statement_parts
from mlflow_hokusai_plugin.runtime.signer import ENV_KEY, ENV_KEYSTORE, Signer

UNSIGNED = "unsigned"
UNREGISTERED = "unregistered"


def offline_improvement(
    *,
    baseline_metrics: Mapping[str, float],
    candidate_metrics: Mapping[str, float],
    benchmark_metric: str,
    contributors: Sequence[Mapping[str, Any]],
    data_hash: str,
    dataset_digest: str,
    model_type: str,
    project: str,
    pipeline_run_id: str,
    created_at: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict, list[dict], dict]:
    """``(improvement, attributed contributors, attestation document)`` without any service."""
    env = os.environ if environ is None else environ
    facts = dict(
        model_id=f"contribution:{data_hash}",
        baseline_model_id=UNREGISTERED,
        benchmark_metric=benchmark_metric,
        contributors=parse_contributors(list(contributors)),
        baseline_metrics=baseline_metrics,
        candidate_metrics=candidate_metrics,
        baseline_run_id=None,
        run_id=None,
        dataset_digest=dataset_digest,
        model_digest=None,
        baseline_digest=None,
        created_at=created_at,
        plugin_version=__version__,
        project=project,
        model_type=model_type,
        pipeline_run_id=pipeline_run_id,
    )
    subject = (f"hokusai-contribution:{data_hash}", data_hash)
    if env.get(ENV_KEY) or env.get(ENV_KEYSTORE):
        attested = attest_improvement(Signer.from_env(env), subject=subject, **facts)
        return attested.improvement, attested.contributors, attested.document
    improvement, attributed, predicate = improvement_statement_parts(**facts)
    document = {
        "status": UNSIGNED,
        "reason": f"services disabled and no attester key ({ENV_KEY} or {ENV_KEYSTORE}) configured",
        "model_id": facts["model_id"],
        "baseline_model_id": UNREGISTERED,
        "created_at": created_at,
        "statement": attestation.build_statement(*subject, predicate),
    }
    return improvement, attributed, document
