"""The Hokusai evaluation pipeline, on Metaflow.

``flow.HokusaiEvaluationFlow`` is the whole pipeline (``hokusai pipeline run``); the two steps that
talk to the registry are plain functions, so any existing Metaflow flow can call them::

    from mlflow_hokusai_plugin.pipeline import register_baseline, track_improvement

See docs/pipeline.md.
"""

from typing import Any

__all__ = ["register_baseline", "track_improvement"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every Metaflow step is a process that imports the flow module, and
    # MLflow (which registration needs) takes two seconds to import, in steps that never use it.
    if name in __all__:
        from mlflow_hokusai_plugin.pipeline import registration

        return getattr(registration, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
