"""The ``hokusai.*`` tag names of the external contract, and checks of their plain values.

Clients write the first group on model versions (a plain MLflow client is enough); the server (or,
before the server plugin, the services) writes the second. Names here are the contract: change
them only by adding.
"""

from __future__ import annotations

import re

from mlflow_hokusai_plugin.core.errors import ValidationError

# Written by clients on a model version (``PROJECT`` also on the registered model).
PROJECT = "hokusai.project"
MODEL_TYPE = "hokusai.model_type"
BASELINE = "hokusai.baseline"
BENCHMARK_METRIC = "hokusai.benchmark.metric"
CONTRIBUTORS = "hokusai.contributors"
PIPELINE_RUN_ID = "hokusai.pipeline_run_id"

# On the source run of a version: sha256 hex of the benchmark data.
BENCHMARK_DATASET_DIGEST = "hokusai.benchmark.dataset_digest"
# MLflow dataset-input context that may carry the digest instead of the run tag.
BENCHMARK_INPUT_CONTEXT = "benchmark"

# On the registered model: enables the EIP-712 MintRequest.
ONCHAIN_MODEL_ID = "hokusai.onchain_model_id"

# Written by the server (or by the services when they sign locally).
DELTA_ONE_BPS = "hokusai.delta_one_bps"
ATTESTATION_ID = "hokusai.attestation.id"
ATTESTATION_STATUS = "hokusai.attestation.status"
ATTESTER = "hokusai.attester"
# Not in the contract's first list: the sha256 of the version's artifact manifest, kept so that a
# later attestation naming this version as baseline does not download it again.
ARTIFACT_DIGEST = "hokusai.artifact_digest"

STATUS_PENDING = "pending"
STATUS_SIGNED = "signed"
STATUS_FAILED = "failed"
STATUS_NOT_APPLICABLE = "not_applicable"

MODEL_TYPES = ("lead_scoring", "classification", "regression", "ranking")

_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_project(value: object, field: str = "project") -> str:
    """A project name: lower-case letters, digits, ``_`` and ``-``, at most 64 characters.

    >>> check_project("lead-scoring_v2")
    'lead-scoring_v2'
    """
    if not isinstance(value, str) or not _PROJECT_RE.fullmatch(value):
        raise ValidationError(
            field,
            f"{value!r} is not a project name: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
        )
    return value


def check_model_type(value: object, field: str = "model_type") -> str:
    """One of :data:`MODEL_TYPES`.

    >>> check_model_type("ranking")
    'ranking'
    """
    if value not in MODEL_TYPES:
        raise ValidationError(
            field,
            f"{value!r} is not a model type; expected one of {', '.join(MODEL_TYPES)}",
        )
    return value  # type: ignore[return-value]


def parse_model_id(value: object, field: str = "model_id") -> tuple[str, int]:
    """Split a Hokusai model id ``"<registered model name>/<version>"``.

    MLflow forbids ``/`` in registered model names, so the split is unambiguous.

    >>> parse_model_id("churn/3")
    ('churn', 3)
    """
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValidationError(
            field,
            f"{value!r} is not a model id; expected '<registered model name>/<version>'",
        )
    name, version = value.split("/")
    if not name.strip() or not version.isdigit() or int(version) < 1:
        raise ValidationError(
            field,
            f"{value!r} is not a model id; expected '<registered model name>/<version>'",
        )
    return name, int(version)


def format_model_id(name: str, version: int | str) -> str:
    """The inverse of :func:`parse_model_id`.

    >>> format_model_id("churn", 3)
    'churn/3'
    """
    return f"{name}/{version}"
