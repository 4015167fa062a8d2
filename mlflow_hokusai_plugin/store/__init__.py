"""MLflow store plugins for the ``hokusai+postgresql://`` and ``hokusai+sqlite://`` schemes.

The builders import MLflow's store modules only when called: importing them while ``import
mlflow`` is still running (which is when entry points are read) fails with a circular import on
MLflow 3.x, and MLflow then silently drops the scheme.
"""

from __future__ import annotations

from typing import Any


def tracking_store_builder(store_uri: str, artifact_uri: str | None = None) -> Any:
    """``mlflow.tracking_store`` entry point: MLflow's SQLAlchemy tracking store plus our tables."""
    import os

    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.tracking._tracking_service.utils import _SERVER_ARTIFACT_ROOT_ENV_VAR

    from mlflow_hokusai_plugin.store.tracking import HokusaiTrackingStore

    if artifact_uri is None:
        # As MLflow's own SQLAlchemy builder: the server's artifact root, else ./mlruns (a client
        # opening the store directly, MlflowClient("hokusai+sqlite:///mlflow.db")).
        artifact_uri = os.environ.get(_SERVER_ARTIFACT_ROOT_ENV_VAR, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    return HokusaiTrackingStore(store_uri, artifact_uri)


def registry_store_builder(store_uri: str, tracking_uri: str | None = None) -> Any:
    """``mlflow.model_registry_store`` entry point: the registry that attests improvements."""
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    return HokusaiRegistryStore(store_uri, tracking_uri)


WORKSPACES_UNSUPPORTED = (
    "the Hokusai stores do not support MLflow workspaces (--enable-workspaces): a Hokusai project "
    "is the hokusai.project tag of its models; start the server without --enable-workspaces"
)


def workspace_store_builder(workspace_uri: str, **_: Any) -> Any:
    """``mlflow.workspace_provider`` entry point: refuses, so a server with ``--enable-workspaces``
    stops at start saying why, rather than MLflow's "unsupported URI" for our scheme."""
    from mlflow.exceptions import MlflowException

    raise MlflowException.invalid_parameter_value(WORKSPACES_UNSUPPORTED)
