"""Read the facts the Hokusai services need from MLflow: models, runs, digests.

Everything here talks to an MLflow tracking/registry server through ``MlflowClient``; the
decisions made from these facts live in ``mlflow_hokusai_plugin.core``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.store.artifact_digest import directory_digest


@dataclass(frozen=True)
class RunFacts:
    """What a model version's source run says about the benchmark."""

    run_id: str | None
    metrics: dict[str, float]
    dataset_digest: str | None
    artifact_uri: str | None = None  # where a runs:/ source's files are, without reading the run again


def get_version(client: MlflowClient, name: str, version: int | str, field: str = "model_id") -> ModelVersion:
    """The model version, or a ValidationError naming ``field`` when it does not exist.

    ``client`` may also be a registry store: it has the same ``get_model_version``.
    """
    try:
        return client.get_model_version(name, str(version))
    except (MlflowException, RestException) as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise ValidationError(field, f"model version '{name}/{version}' does not exist") from None
        raise


def run_facts(client: MlflowClient, run_id: str | None) -> RunFacts:
    """Metrics and benchmark dataset digest of a run (the run tag wins over a dataset input)."""
    if not run_id:
        return RunFacts(None, {}, None)
    run = client.get_run(run_id)
    digest = run.data.tags.get(T.BENCHMARK_DATASET_DIGEST)
    if not digest:
        for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
            contexts = {tag.value for tag in dataset_input.tags if tag.key == "mlflow.data.context"}
            if T.BENCHMARK_INPUT_CONTEXT in contexts:
                digest = dataset_input.dataset.digest
                break
    return RunFacts(run_id, dict(run.data.metrics), digest, run.info.artifact_uri)


def version_artifact_digest(client: MlflowClient, version: ModelVersion) -> str:
    """The artifact digest of a model version; computed once, then read from its tag."""
    known = (version.tags or {}).get(T.ARTIFACT_DIGEST)
    if known:
        return known
    with tempfile.TemporaryDirectory(prefix="hokusai-digest-") as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=version.source, dst_path=tmp, tracking_uri=client._tracking_client.tracking_uri
        )
        digest = directory_digest(path)
    client.set_model_version_tag(version.name, version.version, T.ARTIFACT_DIGEST, digest)
    return digest


def model_uri_of(model: Any) -> str | None:
    """The MLflow model URI a value stands for, or None for a Python model object.

    Accepts a URI string (``runs:/``, ``models:/``, a 3.x logged-model ``models:/m-...``), an
    ``mlflow.models.model.ModelInfo`` and an ``mlflow.entities.LoggedModel``.
    """
    if isinstance(model, str):
        return model
    uri = getattr(model, "model_uri", None)
    if isinstance(uri, str):
        return uri
    model_id = getattr(model, "model_id", None)
    if isinstance(model_id, str) and type(model).__name__ == "LoggedModel":
        return f"models:/{model_id}"
    return None


def log_model_object(model: Any, name: str = "model") -> str:
    """Log a Python model inside the active run and return its URI.

    scikit-learn estimators use the sklearn flavor; ``mlflow.pyfunc.PythonModel`` instances the
    pyfunc flavor. Anything else is refused: the caller should log it and pass the URI.
    """
    from mlflow.pyfunc import PythonModel

    if isinstance(model, PythonModel):
        return mlflow.pyfunc.log_model(name=name, python_model=model).model_uri
    if hasattr(model, "fit") and hasattr(model, "predict") and type(model).__module__.startswith("sklearn"):
        from mlflow import sklearn as mlflow_sklearn

        return mlflow_sklearn.log_model(model, name=name).model_uri
    raise ValidationError(
        "model",
        f"cannot log a {type(model).__name__}: pass an MLflow model URI (runs:/, models:/), a ModelInfo, "
        "a LoggedModel, a scikit-learn estimator or an mlflow.pyfunc.PythonModel",
    )
