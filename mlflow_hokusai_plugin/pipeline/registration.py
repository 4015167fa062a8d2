"""The two Hokusai steps any Metaflow flow can call: ``register_baseline`` and ``track_improvement``.

Both talk to MLflow only through the standard client, so on a Hokusai server the server validates
the tags and signs the attestation; the flow never holds a key. Both are idempotent, because
Metaflow retries a failed task (``@retry``) and ``resume`` re-runs steps: a second call finds what
the first one registered instead of registering it again.

Inside a step, every run they start carries the Metaflow flow, run id, step and task as run tags
(the plugin's run context provider), so a model version leads back to the run that made it::

    from mlflow_hokusai_plugin.pipeline import register_baseline, track_improvement

    @step
    def register(self):
        self.baseline = register_baseline(self.model, self.benchmark, model_name="churn",
                                          model_type="classification")
        self.next(self.train)
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import mlflow
from mlflow import MlflowClient

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.canonical import canonical_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline import training
from mlflow_hokusai_plugin.services import HokusaiModelRegistry, mlflow_facts
from mlflow_hokusai_plugin.services.datasets import dataframe_digest

DEFAULT_EXPERIMENT = "hokusai_pipeline"
BASELINE_KEY_TAG = "hokusai.pipeline.baseline_key"
MODEL_PATH = "model"
BENCHMARK_NAME = "benchmark"


def baseline_key(
    *,
    model_name: str,
    model_type: str,
    benchmark_digest: str,
    source: str,
    benchmark_metric: str = "",
    project: str = "",
) -> str:
    """What makes two baselines the same one: the model, its type and the benchmark it is measured on.

    >>> len(baseline_key(model_name="m", model_type="classification", benchmark_digest="ab", source="s"))
    64
    """
    identity = {
        "model_name": model_name,
        "model_type": model_type,
        "benchmark_digest": benchmark_digest,
        "source": source,
        "benchmark_metric": benchmark_metric,
        "project": project,
    }
    return sha256_hex(canonical_json(identity))


def log_benchmark(benchmark: Any, digest: str, name: str = BENCHMARK_NAME) -> None:
    """Record on the active run which benchmark its metrics were measured on (tag and dataset input)."""
    mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, digest)
    # MLflow's dataset digests are at most 36 characters; the tag keeps the full sha256.
    dataset = mlflow.data.from_pandas(benchmark, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=T.BENCHMARK_INPUT_CONTEXT)


def register_baseline(
    model: Any,
    benchmark: Any,
    *,
    model_name: str,
    model_type: str,
    label_column: str = "label",
    benchmark_metric: str | None = None,
    project: str = "default",
    source: str | None = None,
    experiment_name: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
) -> dict:
    """Measure a scikit-learn baseline on the benchmark and register it, or reuse the earlier one.

    ``source`` names where the model came from (a file digest, a data digest and trainer); by
    default it is the digest of the pickled model. The same ``model_name``, ``model_type``,
    benchmark and source find the version an earlier call registered. Returns the registry's
    description of the version plus ``metrics``, ``benchmark_dataset_digest`` and ``reused``.
    """
    model_type = T.check_model_type(model_type)
    benchmark_metric = benchmark_metric or training.default_benchmark_metric(model_type)
    metrics = training.evaluate(model, benchmark, label_column, model_type)
    if benchmark_metric not in metrics:
        raise ValidationError("benchmark_metric", f"'{benchmark_metric}' is not among {sorted(metrics)}")
    digest = dataframe_digest(benchmark)
    key = baseline_key(
        model_name=model_name,
        model_type=model_type,
        benchmark_digest=digest,
        source=source or sha256_hex(pickle.dumps(model)),
        benchmark_metric=benchmark_metric,
        project=project,
    )
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    registry = HokusaiModelRegistry(tracking_uri)
    found = _earlier_baseline(registry.client, experiment_name, key)
    extra = {"metrics": metrics, "benchmark_dataset_digest": digest}
    if found is not None and found[1] is not None:
        return {**registry.describe(found[1]), **extra, "reused": True}
    if found is not None:
        # An earlier call logged the run but stopped before registering it: register that run.
        model_uri = f"runs:/{found[0]}/{MODEL_PATH}"
    else:
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment(experiment_name)
        tags = {BASELINE_KEY_TAG: key, T.PROJECT: project, T.MODEL_TYPE: model_type}
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="baseline", tags=tags):
            features, _ = training.split(benchmark, label_column)
            info = mlflow.sklearn.log_model(model, name=MODEL_PATH, input_example=features.iloc[:2])
            mlflow.log_metrics(metrics)
            log_benchmark(benchmark, digest)
        model_uri = info.model_uri
    registered = registry.register_baseline(
        model_uri,
        model_type,
        {"project": project, "benchmark_metric": benchmark_metric},
        name=model_name,
    )
    return {**registered, **extra, "reused": False}


def track_improvement(
    run_id: str,
    baseline_id: str,
    contributors: Sequence[dict],
    *,
    pipeline_run_id: str | None = None,
    model_uri: str | None = None,
    model_name: str | None = None,
    tracking_uri: str | None = None,
) -> dict:
    """Register the model logged in ``run_id`` as an improvement of ``baseline_id``.

    The run must have logged the benchmark metric on the same benchmark as the baseline (see
    :func:`log_benchmark`); ``model_uri`` is the model it logged (default ``runs:/<run_id>/model``);
    ``contributors`` are ``hokusai.contributors`` entries. On a Hokusai
    server the server computes the deltas and signs the attestation. A version already registered
    from this run against this baseline is returned as it is (``reused``). Returns what
    :meth:`HokusaiModelRegistry.register_improved_model` returns, plus ``reused``.
    """
    registry = HokusaiModelRegistry(tracking_uri or mlflow.get_tracking_uri())
    for version in registry.client.search_model_versions(f"run_id = '{_quoted(run_id)}'"):
        tags = version.tags or {}
        if tags.get(T.BASELINE) == baseline_id:
            model_id = T.format_model_id(version.name, version.version)
            if tags.get(T.ATTESTATION_STATUS) == T.STATUS_FAILED:
                # Registered by an earlier attempt whose facts could not be attested: not a result.
                raise ValidationError(
                    "run_id",
                    f"{model_id}, registered from run {run_id}, failed attestation; see the server log",
                )
            return {**registry.get_improvement(model_id), "reused": True}
    result = registry.register_improved_model(
        model_uri or f"runs:/{run_id}/{MODEL_PATH}",
        baseline_id,
        contributors=list(contributors),
        name=model_name,
        pipeline_run_id=pipeline_run_id,
    )
    return {**result, "reused": False}


def log_candidate_model(run_id: str, model: Any, rows: Any, label_column: str, tracking_uri: str) -> str:
    """Log the retrained model into the candidate's run (opened by ``create_experiment``)."""
    mlflow.set_tracking_uri(tracking_uri)
    features, _ = training.split(rows, label_column)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(model, name=MODEL_PATH, input_example=features.iloc[:2])
        mlflow.log_params({"training_rows": len(rows), "estimator": type(model).__name__})
    return info.model_uri


def log_candidate_evaluation(
    run_id: str, metrics: dict[str, float], benchmark: Any, benchmark_digest: str, tracking_uri: str
) -> None:
    """Log the candidate's benchmark metrics, and which benchmark, into its run."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        log_benchmark(benchmark, benchmark_digest)


def check_registered_baseline(
    tracking_uri: str, baseline_id: str, benchmark_digest: str, metric: str, model_type: str
) -> dict:
    """A baseline given by id: measured on this benchmark, with this metric, of this model type."""
    registry = HokusaiModelRegistry(tracking_uri)
    name, version = T.parse_model_id(baseline_id, "baseline_model")
    found = mlflow_facts.get_version(registry.client, name, version, "baseline_model")
    facts = mlflow_facts.run_facts(registry.client, found.run_id)
    if facts.dataset_digest != benchmark_digest:
        raise ValidationError(
            "baseline_model",
            f"{baseline_id} was measured on benchmark data {facts.dataset_digest or '(none recorded)'}, "
            f"this run's benchmark is {benchmark_digest}; pass its model URI (models:/{baseline_id}) "
            "to have the pipeline measure and register it on this benchmark",
        )
    if metric not in facts.metrics:
        raise ValidationError("baseline_model", f"the source run of {baseline_id} did not log '{metric}'")
    tags = found.tags or {}
    # The server measures DeltaOne on the baseline's own metric: a different one here would mislead.
    for tag, wanted, parameter in (
        (T.BENCHMARK_METRIC, metric, "benchmark_metric"),
        (T.MODEL_TYPE, model_type, "model_type"),
    ):
        if tags.get(tag) and tags[tag] != wanted:
            raise ValidationError(parameter, f"{baseline_id} has {tag} '{tags[tag]}', not '{wanted}'")
    return {**registry.describe(baseline_id), "metrics": facts.metrics, "reused": True}


def _earlier_baseline(client: MlflowClient, experiment_name: str, key: str) -> tuple[str, str | None] | None:
    """(run id, model id or None) of the baseline an earlier call logged under ``key``."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        # A run that died half-way (no model logged yet) is not FINISHED: it is not reused.
        f"tags.`{BASELINE_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            return run.info.run_id, T.format_model_id(version.name, version.version)
    return (runs[0].info.run_id, None) if runs else None


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")
