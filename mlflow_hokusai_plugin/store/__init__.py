"""MLflow store plugins for the ``hokusai+postgresql://`` and ``hokusai+sqlite://`` schemes.

The builders import MLflow's store modules only when called: importing them while ``import
mlflow`` is still running (which is when entry points are read) fails with a circular import on
MLflow 3.x, and MLflow then silently drops the scheme.
"""

from __future__ import annotations

import sys
from typing import Any


def _preflight_if_launching_the_hokusai_app() -> None:
    """``mlflow server --app-name hokusai`` builds the stores before starting workers: check there."""
    argv = sys.argv
    launching = "server" in argv and (
        "--app-name=hokusai" in argv
        or any(arg == "--app-name" and nxt == "hokusai" for arg, nxt in zip(argv, argv[1:], strict=False))
    )
    if launching:
        from mlflow_hokusai_plugin.server.config import preflight

        preflight()


def tracking_store_builder(store_uri: str, artifact_uri: str | None = None) -> Any:
    """``mlflow.tracking_store`` entry point: MLflow's SQLAlchemy tracking store plus our tables."""
    from mlflow_hokusai_plugin.store.tracking import HokusaiTrackingStore

    _preflight_if_launching_the_hokusai_app()
    return HokusaiTrackingStore(store_uri, artifact_uri)


def registry_store_builder(store_uri: str, tracking_uri: str | None = None) -> Any:
    """``mlflow.model_registry_store`` entry point: the registry that attests improvements."""
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    _preflight_if_launching_the_hokusai_app()
    return HokusaiRegistryStore(store_uri, tracking_uri)
