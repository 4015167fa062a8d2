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


CLIENT_TAGS = (PROJECT, MODEL_TYPE, BASELINE, BENCHMARK_METRIC, CONTRIBUTORS, PIPELINE_RUN_ID)
SERVER_TAGS = (DELTA_ONE_BPS, ATTESTATION_ID, ATTESTATION_STATUS, ATTESTER, ARTIFACT_DIGEST)


def parse_improvement_tags(tags: dict[str, str]) -> dict:
    """Validate the client-written tags of an improved version (one carrying ``hokusai.baseline``).

    Returns ``project``, ``model_type``, ``baseline`` (the model id), ``baseline_name``,
    ``baseline_version``, ``benchmark_metric``, ``contributors`` (normalised, see
    ``core.contributors.parse_contributors``) and ``pipeline_run_id`` (or None). Each problem
    raises a ValidationError whose field is the tag name.
    """
    from mlflow_hokusai_plugin.core.contributors import parse_contributors

    for required in (PROJECT, MODEL_TYPE, BASELINE, BENCHMARK_METRIC, CONTRIBUTORS):
        if not tags.get(required):
            raise ValidationError(required, "is required on a version that names a baseline")
    baseline_name, baseline_version = parse_model_id(tags[BASELINE], BASELINE)
    try:
        contributors = parse_contributors(tags[CONTRIBUTORS])
    except ValidationError as exc:
        raise ValidationError(CONTRIBUTORS + exc.field[len("contributors") :], exc.message) from None
    return {
        "project": check_project(tags[PROJECT], PROJECT),
        "model_type": check_model_type(tags[MODEL_TYPE], MODEL_TYPE),
        "baseline": tags[BASELINE],
        "baseline_name": baseline_name,
        "baseline_version": baseline_version,
        "benchmark_metric": tags[BENCHMARK_METRIC],
        "contributors": contributors,
        "pipeline_run_id": tags.get(PIPELINE_RUN_ID) or None,
    }
