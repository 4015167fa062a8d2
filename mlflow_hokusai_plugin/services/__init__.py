"""The PRD's services on top of MLflow's client: registry, performance tracking, experiments.

>>> from mlflow_hokusai_plugin.services import HokusaiModelRegistry, PerformanceTracker, ExperimentManager
"""

from mlflow_hokusai_plugin.services.experiment_manager import ExperimentManager
from mlflow_hokusai_plugin.services.model_registry import HokusaiModelRegistry
from mlflow_hokusai_plugin.services.performance_tracker import PerformanceTracker

__all__ = ["ExperimentManager", "HokusaiModelRegistry", "PerformanceTracker"]
