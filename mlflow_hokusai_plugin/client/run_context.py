"""Tag MLflow runs with the Hokusai project and the pipeline run that produced them.

MLflow asks every registered run context provider for tags when ``mlflow.start_run()`` creates a
run; this one is registered through the ``mlflow.run_context_provider`` entry point ``hokusai``.
A run gets:

- ``hokusai.project`` from ``HOKUSAI_PROJECT`` (when it is a valid project name);
- ``hokusai.pipeline_run_id`` from ``HOKUSAI_PIPELINE_RUN_ID``, or ``metaflow:<flow>/<run id>``
  inside a Metaflow step;
- inside a Metaflow step, ``hokusai.metaflow.flow``, ``.run_id``, ``.step``, ``.task_id`` (and
  ``.origin_run_id`` for a resumed run).

Example (in a shell with ``HOKUSAI_PROJECT=churn HOKUSAI_PIPELINE_RUN_ID=nightly-42``)::

    with mlflow.start_run() as run:
        ...
    run.data.tags["hokusai.project"]  # 'churn'

Tags passed to ``mlflow.start_run(tags=...)`` still win: MLflow applies them after the providers'.
This module is loaded while ``import mlflow`` runs, so it imports only MLflow's provider base class
and the pure ``core`` layer, and never raises: a failing provider would cost the user their run tags
(MLflow logs and skips it) or, at import time, make MLflow drop the plugin silently.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from mlflow.tracking.context.abstract_context import RunContextProvider

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError

_logger = logging.getLogger(__name__)

PROJECT_ENV = "HOKUSAI_PROJECT"
PIPELINE_RUN_ID_ENV = "HOKUSAI_PIPELINE_RUN_ID"

# Run tags of the Metaflow task a run was started in. Not in contract.md's model-version list:
# they sit on the run, where the MLflow UI shows them next to the run's other context tags.
METAFLOW_FLOW = "hokusai.metaflow.flow"
METAFLOW_RUN_ID = "hokusai.metaflow.run_id"
METAFLOW_STEP = "hokusai.metaflow.step"
METAFLOW_TASK_ID = "hokusai.metaflow.task_id"
METAFLOW_ORIGIN_RUN_ID = "hokusai.metaflow.origin_run_id"


def _env(name: str) -> str | None:
    """The variable's value, with unset and empty treated alike (``VAR= cmd`` clears it)."""
    return os.environ.get(name) or None


def running_metaflow_task() -> Any | None:
    """Metaflow's ``current`` when this process is executing a flow step, else ``None``.

    A step always runs in a process that has imported ``metaflow`` (the flow file does), so looking
    in ``sys.modules`` answers without importing it: no 0.25 s import on every ``start_run()``
    outside Metaflow, and nothing to fail when Metaflow is not installed. Metaflow sets
    ``current.is_running_flow`` only while a task runs (``metaflow.task``), not in the
    ``flow.py run`` scheduler process, whose ``current`` knows the flow but no run or task.
    """
    metaflow = sys.modules.get("metaflow")
    current = getattr(metaflow, "current", None)
    if current is None:
        return None
    running = getattr(current, "is_running_flow", None)
    if running is None:  # a Metaflow without the property: a task is the only place with a run id
        running = getattr(current, "run_id", None) is not None
    return current if running else None


def _metaflow_tags(current: Any) -> dict[str, str]:
    fields = {
        METAFLOW_FLOW: current.flow_name,
        METAFLOW_RUN_ID: current.run_id,
        METAFLOW_STEP: current.step_name,
        METAFLOW_TASK_ID: current.task_id,
        METAFLOW_ORIGIN_RUN_ID: getattr(current, "origin_run_id", None),
    }
    # MLflow tag values are strings; a Metaflow id may be an int depending on the metadata service.
    return {name: str(value) for name, value in fields.items() if value is not None}


def _project_tag() -> dict[str, str]:
    project = _env(PROJECT_ENV)
    if project is None:
        return {}
    try:
        return {T.PROJECT: T.check_project(project, field=PROJECT_ENV)}
    except ValidationError as exc:
        # The user's run matters more than this tag: say what is wrong and carry on without it.
        _logger.warning("Not tagging the run with %s: %s", T.PROJECT, exc)
        return {}


def resolve_hokusai_tags() -> dict[str, str]:
    """The Hokusai tags of a run started now, in this process's environment."""
    tags = _project_tag()
    current = running_metaflow_task()
    if current is not None:
        tags.update(_metaflow_tags(current))
    pipeline_run_id = _env(PIPELINE_RUN_ID_ENV)
    if pipeline_run_id is None and current is not None:
        pipeline_run_id = f"metaflow:{current.flow_name}/{current.run_id}"
    if pipeline_run_id is not None:
        tags[T.PIPELINE_RUN_ID] = pipeline_run_id
    return tags


class HokusaiRunContextProvider(RunContextProvider):
    """MLflow run context provider for Hokusai pipelines (see the module docstring)."""

    def in_context(self) -> bool:
        try:
            return bool(_env(PROJECT_ENV) or _env(PIPELINE_RUN_ID_ENV) or running_metaflow_task())
        except Exception:  # a third-party object misbehaving must not break start_run()
            _logger.warning("Could not tell whether this run is in a Hokusai context", exc_info=True)
            return False

    def tags(self) -> dict[str, str]:
        try:
            return resolve_hokusai_tags()
        except Exception:
            _logger.warning("Could not compute the Hokusai run tags; the run has none", exc_info=True)
            return {}
