"""Load the baseline named by ``--baseline-model``.

It may be:

- a registered model id, ``name/version``: the version is the baseline as registered (it must
  have been measured on this run's benchmark);
- an MLflow model URI (``models:/...``, ``runs:/...``, ``mlflow-artifacts:/...``, ``s3://...``) or
  a local MLflow model directory: the pipeline measures it on the benchmark and registers it;
- nothing, with ``--sample``: a baseline trained on the bundled sample's baseline rows.

The pipeline retrains the baseline's own estimator with the contributed rows, so the baseline
must be a scikit-learn model (MLflow's ``sklearn`` flavor).
"""

from __future__ import annotations

import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline import training

FIELD = "baseline_model"
_MODEL_ID = re.compile(r"[^:/\s]+/\d+")
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:/")


@dataclass
class LoadedBaseline:
    """A fitted baseline, where it came from (its identity for reuse) and its registry id if any."""

    model: Any
    source: str
    description: str
    registered_id: str | None = None


def train_sample_baseline(frame: Any, model_type: str, label_column: str) -> LoadedBaseline:
    """The sample's baseline: the default estimator fitted on the sample's baseline rows."""
    from mlflow_hokusai_plugin.core.canonical import sha256_hex
    from mlflow_hokusai_plugin.services.datasets import dataframe_digest

    estimator = training.default_estimator(model_type)
    model = training.fit(estimator, frame, label_column)
    recipe = f"{dataframe_digest(frame)}:{training.estimator_spec(estimator)}"
    description = f"trained on the sample's {len(frame)} baseline rows"
    return LoadedBaseline(model, f"sample:{sha256_hex(recipe.encode())}", description)


def load_baseline(spec: str, *, services: bool) -> LoadedBaseline:
    """Load a baseline given by registered model id, MLflow model URI or local model directory."""
    spec = (spec or "").strip()
    if not spec:
        raise ValidationError(
            FIELD,
            "give the baseline: a registered model id (name/version), an MLflow model URI or a local "
            "MLflow model directory (or use --sample for the bundled sample)",
        )
    local = Path(spec)
    if _MODEL_ID.fullmatch(spec) and not local.exists():
        if not services:
            raise ValidationError(FIELD, f"{spec} is a registry id, but services are disabled")
        with tempfile.TemporaryDirectory() as directory:
            model, _ = _download_and_load(f"models:/{spec}", directory)
        return LoadedBaseline(model, f"models:/{spec}", f"registered version {spec}", registered_id=spec)
    if _URI.match(spec) and not local.exists():
        if spec.startswith(("models:", "runs:")) and not services:
            raise ValidationError(FIELD, f"{spec} needs the MLflow server, but services are disabled")
        with tempfile.TemporaryDirectory() as directory:
            model, digest = _download_and_load(spec, directory)
        return LoadedBaseline(model, f"files:{digest}", f"{spec} (files sha256 {digest[:12]}...)")
    if not local.exists():
        raise ValidationError(FIELD, f"{spec}: no such model directory, registry id or URI")
    if not (local / "MLmodel").is_file():
        raise ValidationError(
            FIELD,
            f"{spec}: not an MLflow model directory (no MLmodel file); save the model with "
            "mlflow.sklearn.save_model first",
        )
    from mlflow_hokusai_plugin.store.artifact_digest import directory_digest

    digest = directory_digest(local)
    return LoadedBaseline(
        _load_sklearn(str(local), spec), f"files:{digest}", f"{spec} (files sha256 {digest[:12]}...)"
    )


def _download_and_load(uri: str, directory: str) -> tuple[Any, str]:
    """Download the model's files once: their digest names the baseline, then load them."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlflow_hokusai_plugin.store.artifact_digest import directory_digest

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=directory)
    except (MlflowException, OSError) as exc:
        raise ValidationError(FIELD, f"{uri}: cannot be downloaded ({_first_line(exc)})") from None
    return _load_sklearn(local, uri), directory_digest(local)


def _load_sklearn(path: str, spec: str) -> Any:
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.sklearn.load_model(path)
    except (MlflowException, OSError, ImportError, ValueError, pickle.UnpicklingError) as exc:
        raise ValidationError(
            FIELD, f"{spec}: not a scikit-learn MLflow model ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
