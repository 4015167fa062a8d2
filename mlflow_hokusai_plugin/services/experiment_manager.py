"""``ExperimentManager``: improvement experiments and standardized model comparison."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.metrics import (
    compute_metric_deltas,
    recommend,
    signed_improvement,
    weighted_score,
)
from mlflow_hokusai_plugin.services import evaluation
from mlflow_hokusai_plugin.services.datasets import data_manifest, dataframe_digest
from mlflow_hokusai_plugin.store import mlflow_facts

DEFAULT_EXPERIMENT = "hokusai_model_improvements"
CONTRIBUTION_INPUT_CONTEXT = "contribution"


class ExperimentManager:
    """Runs that test a contribution against a baseline, and comparisons of two registered models.

    Example::

        manager = ExperimentManager()
        run_id = manager.create_improvement_experiment("churn/1", contributed_frame)
        report = manager.compare_models("churn/1", "churn/2", (X_test, y_test))
        report["recommendation"]  # "ACCEPT", "REVIEW" or "REJECT"
    """

    def __init__(self, experiment_name: str = DEFAULT_EXPERIMENT, *, tracking_uri: str | None = None) -> None:
        self.experiment_name = experiment_name
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def create_improvement_experiment(self, baseline_model_id: str, contributed_data: Any) -> str:
        """Open a run recording which baseline a contribution is tested against; return its id.

        ``contributed_data`` is a pandas DataFrame (logged as an MLflow dataset input with context
        ``contribution`` and described by a data manifest) or an already-computed manifest dict
        with at least ``data_hash``. Resume the run with ``mlflow.start_run(run_id=...)`` to log
        the training.
        """
        name, version = T.parse_model_id(baseline_model_id, "baseline_model_id")
        baseline = mlflow_facts.get_version(self.client, name, version, "baseline_model_id")
        manifest, frame = _manifest_of(contributed_data)
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.set_experiment(self.experiment_name)
        tags = {
            T.BASELINE: baseline_model_id,
            "hokusai.contribution.data_hash": manifest["data_hash"],
            "mlflow.runName": f"improve {baseline_model_id}",
        }
        for key in (T.PROJECT, T.MODEL_TYPE, T.BENCHMARK_METRIC):
            if key in (baseline.tags or {}):
                tags[key] = baseline.tags[key]
        with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags) as run:
            mlflow.log_dict(manifest, "hokusai/data_manifest.json")
            mlflow.log_params(
                {"contribution_rows": manifest.get("row_count"), "baseline_model_id": baseline_model_id}
            )
            if frame is not None:
                dataset = mlflow.data.from_pandas(
                    frame, name="contribution", digest=manifest["data_hash"][:36]
                )
                mlflow.log_input(dataset, context=CONTRIBUTION_INPUT_CONTEXT)
        return run.info.run_id

    def compare_models(
        self,
        baseline_id: str,
        candidate_id: str,
        test_data: Any,
        *,
        label_column: str = "label",
        metrics: list[str] | None = None,
        directions: Mapping[str, str] | None = None,
        allow_dataset_mismatch: bool = False,
        threshold: float = 0.01,
    ) -> dict:
        """Load both registered models, evaluate them on the same ``test_data``, and decide.

        ``test_data`` is ``(features, labels)`` or a DataFrame holding ``label_column``. Refuses
        (ValidationError) when the two versions were benchmarked on different data, unless
        ``allow_dataset_mismatch``. Returns ``baseline_metrics``, ``candidate_metrics``,
        ``improvements`` (direction-aware: positive is better), ``metric_deltas``,
        ``weighted_score``, ``recommendation`` and the ``test_data_digest``.
        """
        versions = {}
        for field, model_id in (("baseline_id", baseline_id), ("candidate_id", candidate_id)):
            name, version = T.parse_model_id(model_id, field)
            versions[field] = mlflow_facts.get_version(self.client, name, version, field)
        digests = {
            field: mlflow_facts.run_facts(self.client, found.run_id).dataset_digest
            for field, found in versions.items()
        }
        if digests["baseline_id"] != digests["candidate_id"] and not allow_dataset_mismatch:
            raise ValidationError(
                "candidate_id",
                f"{candidate_id} was benchmarked on data {digests['candidate_id']} and {baseline_id} on "
                f"{digests['baseline_id']}; pass allow_dataset_mismatch=True to compare anyway",
            )
        features, labels, digest = _split_test_data(test_data, label_column)
        model_type = (versions["baseline_id"].tags or {}).get(T.MODEL_TYPE)
        measured = {
            field: _evaluate(
                f"models:/{T.format_model_id(found.name, found.version)}", features, labels, model_type
            )
            for field, found in versions.items()
        }
        names = metrics or sorted(set(measured["baseline_id"]) & set(measured["candidate_id"]))
        deltas = compute_metric_deltas(measured["baseline_id"], measured["candidate_id"], names, directions)
        improvements = {name: signed_improvement(delta) for name, delta in deltas.items()}
        report = {
            "baseline_id": baseline_id,
            "candidate_id": candidate_id,
            "baseline_metrics": measured["baseline_id"],
            "candidate_metrics": measured["candidate_id"],
            "metric_deltas": deltas,
            "improvements": improvements,
            "weighted_score": weighted_score(improvements),
            "recommendation": recommend(improvements, threshold),
            "test_data_digest": digest,
        }
        self._log_comparison(report)
        return report

    def _log_comparison(self, report: dict) -> None:
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.set_experiment(self.experiment_name)
        tags = {
            "mlflow.runName": f"compare {report['baseline_id']} vs {report['candidate_id']}",
            "hokusai.comparison.recommendation": report["recommendation"],
            T.BASELINE: report["baseline_id"],
        }
        with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags):
            mlflow.log_metrics({f"baseline_{k}": v for k, v in report["baseline_metrics"].items()})
            mlflow.log_metrics({f"candidate_{k}": v for k, v in report["candidate_metrics"].items()})
            mlflow.log_dict(json.loads(json.dumps(report, default=str)), "hokusai/comparison.json")


def _manifest_of(contributed_data: Any) -> tuple[dict, Any]:
    if hasattr(contributed_data, "to_csv") and hasattr(contributed_data, "columns"):
        return data_manifest(contributed_data), contributed_data
    if isinstance(contributed_data, Mapping) and isinstance(contributed_data.get("data_hash"), str):
        return dict(contributed_data), None
    raise ValidationError(
        "contributed_data", "expected a pandas DataFrame or a data manifest with 'data_hash'"
    )


def _split_test_data(test_data: Any, label_column: str) -> tuple[Any, Any, str]:
    import pandas as pd

    if isinstance(test_data, tuple) and len(test_data) == 2:
        features, labels = test_data
        frame = pd.DataFrame(features).assign(**{label_column: list(labels)})
    elif isinstance(test_data, pd.DataFrame):
        if label_column not in test_data.columns:
            raise ValidationError("test_data", f"has no label column '{label_column}'")
        frame = test_data
        features, labels = test_data.drop(columns=[label_column]), test_data[label_column]
    else:
        raise ValidationError("test_data", "expected (features, labels) or a DataFrame with the label column")
    return features, labels, dataframe_digest(frame)


def _evaluate(model_uri: str, features: Any, labels: Any, model_type: str | None) -> dict[str, float]:
    try:
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(model_uri)
    except (MlflowException, OSError):
        # Not a scikit-learn model: the generic pyfunc gives predictions but no class scores.
        model = mlflow.pyfunc.load_model(model_uri)
    predictions = model.predict(features)
    if model_type == "regression":
        return evaluation.regression_metrics(labels, predictions)
    return evaluation.classification_metrics(labels, predictions, evaluation.positive_scores(model, features))
