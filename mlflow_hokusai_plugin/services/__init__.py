"""The PRD's services on top of MLflow's client: registry, performance tracking, experiments.

>>> from mlflow_hokusai_plugin.services import HokusaiModelRegistry, PerformanceTracker, ExperimentManager
"""

import importlib
from typing import Any

_SERVICES = {
    "ExperimentManager": "experiment_manager",
    "HokusaiModelRegistry": "model_registry",
    "PerformanceTracker": "performance_tracker",
}
__all__ = sorted(_SERVICES)


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the light modules here (datasets, evaluation) do not cost an
    # MLflow import (two seconds) in every pipeline step that only needs them.
    if name in _SERVICES:
        return getattr(importlib.import_module(f"{__name__}.{_SERVICES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
