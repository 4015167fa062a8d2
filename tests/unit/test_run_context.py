"""The Hokusai run context provider, from the environment alone (no MLflow server).

Metaflow's ``current`` is stood in for by a plain object here, to pin the mapping to tags; the
integration tests run a real flow.
"""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest

from mlflow_hokusai_plugin.client.run_context import HokusaiRunContextProvider, running_metaflow_task
from mlflow_hokusai_plugin.core import tags as T


@pytest.fixture()
def provider(monkeypatch):
    """A provider in a clean environment: no Hokusai variables, no Metaflow task running."""
    monkeypatch.delenv("HOKUSAI_PROJECT", raising=False)
    monkeypatch.delenv("HOKUSAI_PIPELINE_RUN_ID", raising=False)
    monkeypatch.delitem(sys.modules, "metaflow", raising=False)
    return HokusaiRunContextProvider()


def in_metaflow_task(monkeypatch, **fields):
    current = SimpleNamespace(
        is_running_flow=True,
        flow_name="TrainFlow",
        run_id="1700000000000001",
        step_name="train",
        task_id="3",
        origin_run_id=None,
    )
    for name, value in fields.items():
        setattr(current, name, value)
    monkeypatch.setitem(sys.modules, "metaflow", SimpleNamespace(current=current))


def test_out_of_context_when_nothing_is_set(provider):
    assert provider.in_context() is False
    assert provider.tags() == {}


def test_empty_variables_count_as_unset(provider, monkeypatch):
    monkeypatch.setenv("HOKUSAI_PROJECT", "")
    monkeypatch.setenv("HOKUSAI_PIPELINE_RUN_ID", "")
    assert provider.in_context() is False


def test_tags_from_the_environment(provider, monkeypatch):
    monkeypatch.setenv("HOKUSAI_PROJECT", "lead-scoring_v2")
    monkeypatch.setenv("HOKUSAI_PIPELINE_RUN_ID", "nightly-42")
    assert provider.in_context() is True
    assert provider.tags() == {T.PROJECT: "lead-scoring_v2", T.PIPELINE_RUN_ID: "nightly-42"}


@pytest.mark.parametrize(
    ("variable", "value", "tag"),
    [("HOKUSAI_PROJECT", "churn", T.PROJECT), ("HOKUSAI_PIPELINE_RUN_ID", "pipe-1", T.PIPELINE_RUN_ID)],
)
def test_either_variable_alone_is_a_context(provider, monkeypatch, variable, value, tag):
    monkeypatch.setenv(variable, value)
    assert provider.in_context() is True
    assert provider.tags() == {tag: value}


@pytest.mark.parametrize("value", ["Churn Model", "-churn", "x" * 65, "churn/1"])
def test_invalid_project_is_omitted_with_a_warning(provider, monkeypatch, caplog, value):
    monkeypatch.setenv("HOKUSAI_PROJECT", value)
    monkeypatch.setenv("HOKUSAI_PIPELINE_RUN_ID", "pipe-1")
    with caplog.at_level(logging.WARNING, logger="mlflow_hokusai_plugin.client.run_context"):
        tags = provider.tags()
    assert tags == {T.PIPELINE_RUN_ID: "pipe-1"}
    assert "HOKUSAI_PROJECT" in caplog.text and repr(value) in caplog.text


def test_metaflow_task_tags(provider, monkeypatch):
    in_metaflow_task(monkeypatch)
    assert provider.in_context() is True
    assert provider.tags() == {
        "hokusai.metaflow.flow": "TrainFlow",
        "hokusai.metaflow.run_id": "1700000000000001",
        "hokusai.metaflow.step": "train",
        "hokusai.metaflow.task_id": "3",
        T.PIPELINE_RUN_ID: "metaflow:TrainFlow/1700000000000001",
    }


def test_explicit_pipeline_run_id_wins_over_metaflow_and_resume_is_recorded(provider, monkeypatch):
    in_metaflow_task(monkeypatch, run_id=17, task_id=4, origin_run_id="12")
    monkeypatch.setenv("HOKUSAI_PIPELINE_RUN_ID", "pipe-7")
    tags = provider.tags()
    assert tags[T.PIPELINE_RUN_ID] == "pipe-7"
    # MLflow tag values must be strings, whatever type the metadata service gave the ids.
    assert tags["hokusai.metaflow.run_id"] == "17" and tags["hokusai.metaflow.task_id"] == "4"
    assert tags["hokusai.metaflow.origin_run_id"] == "12"


def test_metaflow_imported_but_no_task_running_is_not_a_context(provider, monkeypatch):
    import metaflow  # the real one: outside a step its ``current`` says it is not running a flow

    monkeypatch.setitem(sys.modules, "metaflow", metaflow)
    assert metaflow.current.is_running_flow is False
    assert running_metaflow_task() is None
    assert provider.in_context() is False


def test_a_misbehaving_current_never_raises(provider, monkeypatch, caplog):
    class Broken:
        @property
        def is_running_flow(self):
            raise RuntimeError("metaflow internals changed")

    monkeypatch.setitem(sys.modules, "metaflow", SimpleNamespace(current=Broken()))
    assert provider.in_context() is False
    assert provider.tags() == {}
    assert "metaflow internals changed" in caplog.text
