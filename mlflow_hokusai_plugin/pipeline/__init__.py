"""The Hokusai evaluation pipeline, on Metaflow.

``flow.HokusaiEvaluationFlow`` is the whole pipeline (``hokusai pipeline run``); the two steps that
talk to the registry are plain functions, so any existing Metaflow flow can call them::

    from mlflow_hokusai_plugin.pipeline import register_baseline, track_improvement

See docs/pipeline.md.
"""

from mlflow_hokusai_plugin.pipeline.registration import register_baseline, track_improvement

__all__ = ["register_baseline", "track_improvement"]
