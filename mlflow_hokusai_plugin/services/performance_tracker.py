"""``PerformanceTracker``: improvement deltas, their attestation, and contributors' impact.

Each contribution is recorded as one MLflow run in the ``hokusai_contributions`` experiment,
tagged with the contributor's checksummed address and the model id, its attributed basis points
logged as a metric. ``get_contributor_impact`` is then one ``search_runs`` on that tag: the
impact is aggregated from what was really recorded. (The server plugin indexes the same facts in
its own tables.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.client.run_context import resolve_hokusai_tags
from mlflow_hokusai_plugin.core import contributors as contrib
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import canonical_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.issuance import attest_improvement
from mlflow_hokusai_plugin.core.metrics import STANDARD_METRICS
from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.runtime.signer import Signer
from mlflow_hokusai_plugin.services.hokusai_server import hokusai_app_client

CONTRIBUTIONS_EXPERIMENT = "hokusai_contributions"
CONTRIBUTOR_TAG = "hokusai.contributor"
MODEL_ID_TAG = "hokusai.model_id"
_CONTRIBUTION_KEY_TAG = "hokusai.contribution_key"


class PerformanceTracker:
    """Deltas, attestations and contributor impact.

    Example::

        tracker = PerformanceTracker(tracking_uri="http://127.0.0.1:5000")
        delta, att = tracker.track_improvement(
            {"accuracy": 0.75}, {"accuracy": 0.82},
            {"contributor_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "data_hash": "ab" * 32},
        )
        delta["delta_one_bps"]  # 700
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        signer: Signer | None = None,
        experiment_name: str = CONTRIBUTIONS_EXPERIMENT,
    ) -> None:
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_name = experiment_name
        self._signer = signer

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer.from_env()
        return self._signer

    def track_improvement(
        self,
        baseline_metrics: Mapping[str, float],
        improved_metrics: Mapping[str, float],
        data_contribution: Mapping[str, Any],
        *,
        benchmark_metric: str | None = None,
        directions: Mapping[str, str] | None = None,
        created_at: str | None = None,
    ) -> tuple[dict, dict]:
        """Compute the improvement and sign an attestation of it.

        ``data_contribution`` names the contribution: ``contributor_address`` (or ``contributors``,
        as in the ``hokusai.contributors`` tag), ``data_hash`` (sha256 hex of the contributed data,
        the Statement's subject), optionally ``model_id`` and ``baseline_model_id``. The benchmark
        metric defaults to the first standard metric both sides have.

        Returns ``(improvement, attestation document)``.
        """
        benchmark_metric = (
            benchmark_metric
            or data_contribution.get("benchmark_metric")
            or next((m for m in STANDARD_METRICS if m in baseline_metrics and m in improved_metrics), None)
        )
        if not benchmark_metric:
            raise ValidationError("benchmark_metric", "not given and no standard metric is on both sides")
        entries = contrib.parse_contributors(_entries(data_contribution))
        data_hash = data_contribution.get("data_hash") or sha256_hex(canonical_json(dict(data_contribution)))
        if not (isinstance(data_hash, str) and len(data_hash) == 64 and _is_hex(data_hash)):
            raise ValidationError("data_contribution.data_hash", "must be the sha256 hex digest of the data")
        attested = attest_improvement(
            self.signer,
            model_id=data_contribution.get("model_id") or f"contribution:{data_hash}",
            baseline_model_id=data_contribution.get("baseline_model_id") or "unregistered",
            benchmark_metric=benchmark_metric,
            contributors=entries,
            baseline_metrics=baseline_metrics,
            candidate_metrics=improved_metrics,
            baseline_run_id=data_contribution.get("baseline_run_id"),
            run_id=data_contribution.get("run_id"),
            dataset_digest=data_contribution.get("dataset_digest"),
            model_digest=data_contribution.get("model_digest"),
            baseline_digest=data_contribution.get("baseline_digest"),
            created_at=created_at or iso_utc(time.time()),
            plugin_version=__version__,
            pipeline_run_id=data_contribution.get("pipeline_run_id"),
            directions=directions,
            # Without a registered model the contributed data is what the Statement is about.
            subject=(f"hokusai-contribution:{data_hash}", data_hash),
        )
        return attested.improvement, attested.document

    def log_contribution_impact(
        self,
        contributor_address: str,
        model_id: str,
        delta: int | Mapping[str, Any],
        *,
        weight_bps: int = contrib.TOTAL_BPS,
        attributed_bps: int | None = None,
        attestation_id: str | None = None,
        project: str | None = None,
    ) -> dict:
        """Record that a contributor improved ``model_id``; idempotent per (contributor, model).

        ``delta`` is the model's DeltaOne in basis points, or the improvement dict of
        :func:`core.metrics.compute_improvement`. The contributor is attributed ``attributed_bps``
        of it, by default ``delta * weight_bps // 10000``.
        """
        address = to_checksum_address(contributor_address, "contributor_address")
        T.parse_model_id(model_id)
        delta_bps = delta["delta_one_bps"] if isinstance(delta, Mapping) else delta
        if isinstance(delta_bps, bool) or not isinstance(delta_bps, int) or delta_bps < 0:
            raise ValidationError("delta", "must be a non-negative DeltaOne in basis points")
        if (
            isinstance(weight_bps, bool)
            or not isinstance(weight_bps, int)
            or not 0 <= weight_bps <= contrib.TOTAL_BPS
        ):
            raise ValidationError("weight_bps", f"must be an integer from 0 to {contrib.TOTAL_BPS}")
        if attributed_bps is None:
            # Alone, a contributor's share is the floor; with the others, pass the share that
            # core.contributors.attribute computed (it gives the rounding dust to the first one).
            attributed_bps = delta_bps * weight_bps // contrib.TOTAL_BPS
        attributed = attributed_bps
        key = f"{address}:{model_id}"
        experiment_id = self._experiment_id()
        existing = self.client.search_runs(
            [experiment_id], f"tags.`{_CONTRIBUTION_KEY_TAG}` = '{key}'", ViewType.ACTIVE_ONLY, max_results=1
        )
        record = {
            "address": address,
            "model_id": model_id,
            "project": project,
            "weight_bps": weight_bps,
            "attributed_bps": attributed,
            "model_delta_one_bps": delta_bps,
            "attestation_id": attestation_id,
        }
        if existing:
            return {**record, "run_id": existing[0].info.run_id, "recorded_at": existing[0].info.start_time}
        # create_run, unlike mlflow.start_run, asks no run context provider: add their tags here.
        tags = {
            **resolve_hokusai_tags(),
            CONTRIBUTOR_TAG: address,
            MODEL_ID_TAG: model_id,
            _CONTRIBUTION_KEY_TAG: key,
            "mlflow.runName": f"contribution {address[:10]} -> {model_id}",
        }
        if project:
            tags[T.PROJECT] = project
        if attestation_id:
            tags[T.ATTESTATION_ID] = attestation_id
        run = self.client.create_run(experiment_id, tags=tags)
        for metric, value in (
            ("weight_bps", weight_bps),
            ("attributed_bps", attributed),
            ("model_delta_one_bps", delta_bps),
        ):
            self.client.log_metric(run.info.run_id, metric, value)
        self.client.set_terminated(run.info.run_id)
        return {**record, "run_id": run.info.run_id, "recorded_at": run.info.start_time}

    def get_contributor_impact(self, address: str) -> dict:
        """Everything recorded for one contributor, aggregated.

        Keys: ``address`` (checksummed), ``total_models_improved``, ``total_attributed_bps``,
        ``total_improvement_score`` (attributed DeltaOnes, i.e. bps / 100), ``projects``
        (bps per project), ``contributions`` (oldest first), ``first_contribution`` and
        ``last_contribution`` (epoch milliseconds, None when there is none).
        """
        address = to_checksum_address(address, "address")
        server = hokusai_app_client(self.tracking_uri)
        if server is not None:
            return _impact_from_server(server, address)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        runs = []
        if experiment is not None:
            token = None
            while True:
                page = self.client.search_runs(
                    [experiment.experiment_id],
                    f"tags.`{CONTRIBUTOR_TAG}` = '{address}'",
                    ViewType.ACTIVE_ONLY,
                    max_results=1000,
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
                runs.extend(page)
                token = page.token
                if not token:
                    break
        contributions = [
            {
                "model_id": run.data.tags[MODEL_ID_TAG],
                "project": run.data.tags.get(T.PROJECT),
                "weight_bps": int(run.data.metrics.get("weight_bps", 0)),
                "attributed_bps": int(run.data.metrics.get("attributed_bps", 0)),
                "model_delta_one_bps": int(run.data.metrics.get("model_delta_one_bps", 0)),
                "attestation_id": run.data.tags.get(T.ATTESTATION_ID),
                "recorded_at": run.info.start_time,
            }
            for run in runs
        ]
        projects: dict[str, int] = {}
        for item in contributions:
            key = item["project"] or "default"
            projects[key] = projects.get(key, 0) + item["attributed_bps"]
        total_bps = sum(item["attributed_bps"] for item in contributions)
        return {
            "address": address,
            "total_models_improved": len({item["model_id"] for item in contributions}),
            "total_attributed_bps": total_bps,
            "total_improvement_score": total_bps / 100,
            "projects": projects,
            "contributions": contributions,
            "first_contribution": contributions[0]["recorded_at"] if contributions else None,
            "last_contribution": contributions[-1]["recorded_at"] if contributions else None,
        }

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name)
        except mlflow.exceptions.MlflowException:
            # Created concurrently by another tracker.
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id


def _impact_from_server(server: Any, address: str) -> dict:
    """The Hokusai server's record of a contributor, in this class's (older) shape."""
    contributions, token = [], None
    while True:
        page = server.get_contributor_impact(address, max_results=1000, page_token=token)
        contributions += [
            {
                "model_id": item["model_id"],
                "project": item["project"],
                "weight_bps": item["weight_bps"],
                "attributed_bps": item["attributed_bps"],
                "attestation_id": item["attestation_id"],
                "recorded_at": item["created_at"],
            }
            for item in page["contributions"]
        ]
        token = page.get("next_page_token")
        if not token:
            break
    total_bps = page["total_attributed_bps"]
    return {
        "address": page["address"],
        "total_models_improved": page["total_models_improved"],
        "total_attributed_bps": total_bps,
        "total_improvement_score": total_bps / 100,
        "projects": {name: totals["attributed_bps"] for name, totals in page["projects"].items()},
        "contributions": contributions,
        "first_contribution": page["first_contribution"],
        "last_contribution": page["last_contribution"],
    }


def _entries(data_contribution: Mapping[str, Any]) -> Any:
    if "contributors" in data_contribution:
        return data_contribution["contributors"]
    address = data_contribution.get("contributor_address") or data_contribution.get("contributor")
    if not address:
        raise ValidationError("data_contribution.contributor_address", "names no contributor")
    return [{"address": address, "weight_bps": contrib.TOTAL_BPS}]


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
        return True
    except ValueError:
        return False
