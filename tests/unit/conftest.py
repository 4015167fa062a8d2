"""Fixtures shared by the pipeline's unit tests: the bundled sample and its benchmark schema."""

from __future__ import annotations

import pytest

from mlflow_hokusai_plugin.pipeline.contributed_data import BenchmarkSchema
from mlflow_hokusai_plugin.pipeline.sample import load_sample


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def schema(sample):
    return BenchmarkSchema.of(sample.benchmark, "label", "classification")
