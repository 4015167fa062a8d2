"""The in-toto Statement v1 of a model improvement: what an attestation says.

Subject: the improved model's artifact digest; predicate: baseline, benchmark, metrics, deltas,
DeltaOne, contributors. Built here, signed by ``envelope``, checked by ``verify``.
Our own code rather than in-toto-attestation's: its Statement is a protobuf with a generic
``Struct`` predicate, and checking our one predicate type is a dozen lines.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from mlflow_hokusai_plugin.core.errors import ValidationError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

PREDICATE_TYPE = "https://hokusai.ai/attestation/model-improvement/v1"

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

_SHA256_HEX_LOWER = re.compile(r"[0-9a-f]{64}")


def build_statement(subject_name: str, subject_sha256: str, predicate: dict) -> dict:
    """An in-toto Statement v1 about one subject, with the Hokusai improvement predicate type.

    >>> build_statement("models:/churn/2", "AB" * 32, {})["subject"][0]["digest"]["sha256"][:4]
    'abab'
    """
    if not isinstance(subject_name, str) or not subject_name:
        raise ValidationError("subject_name", "must be a non-empty string")
    if not isinstance(subject_sha256, str) or not _SHA256_HEX.fullmatch(subject_sha256):
        raise ValidationError("subject_sha256", "must be 64 hex digits")
    if not isinstance(predicate, dict):
        raise ValidationError("predicate", "must be a dict")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": subject_sha256.lower()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def improvement_predicate(
    *,
    model_id: str,
    model_digest: str,
    baseline_model_id: str,
    baseline_digest: str,
    baseline_run_id: str,
    run_id: str,
    benchmark_metric: str,
    dataset_digest: str,
    baseline_metrics: dict,
    candidate_metrics: dict,
    metric_deltas: dict,
    delta_one_bps: int,
    contributors: list[dict],
    pipeline_run_id: str | None,
    plugin_version: str,
    created_at: str,
    model_type: str | None = None,
    project: str | None = None,
) -> dict:
    """The predicate of a model-improvement Statement.

    ``contributors`` are already attributed: each carries ``address``, ``weight_bps`` and
    ``attributed_bps`` (its share of ``delta_one_bps``); only those three keys are kept.
    ``created_at`` is passed in (this module reads no clock).
    """
    if isinstance(delta_one_bps, bool) or not isinstance(delta_one_bps, int):
        raise ValidationError("delta_one_bps", "must be an integer")
    if not isinstance(contributors, (list, tuple)):
        raise ValidationError("contributors", "must be a list")
    copied = []
    for index, contributor in enumerate(contributors):
        if not isinstance(contributor, dict):
            raise ValidationError(f"contributors[{index}]", "must be a dict")
        entry = {}
        for key in ("address", "weight_bps", "attributed_bps"):
            if key not in contributor:
                raise ValidationError(f"contributors[{index}].{key}", "is missing")
            entry[key] = contributor[key]
        copied.append(entry)
    return {
        "model": {
            "id": model_id,
            "digest": model_digest,
            "run_id": run_id,
            "model_type": model_type,
            "project": project,
        },
        "baseline": {
            "model_id": baseline_model_id,
            "digest": baseline_digest,
            "run_id": baseline_run_id,
        },
        "benchmark": {"metric": benchmark_metric, "dataset_digest": dataset_digest},
        "metrics": {"baseline": dict(baseline_metrics), "candidate": dict(candidate_metrics)},
        "metric_deltas": dict(metric_deltas),
        "delta_one_bps": delta_one_bps,
        "contributors": copied,
        "pipeline_run_id": pipeline_run_id,
        "mlflow_run_ids": {"baseline": baseline_run_id, "candidate": run_id},
        "plugin_version": plugin_version,
        "created_at": created_at,
    }


def document_predicate(document: dict) -> dict:
    """The predicate of a stored attestation document (read, not verified: verify before trusting)."""
    return json.loads(base64.b64decode(document["dsse"]["payload"]))["predicate"]


def statement_problem(statement: Any) -> str:
    """Empty when ``statement`` is a Hokusai improvement Statement, else what is wrong with it."""
    if not isinstance(statement, dict):
        return "statement must be a JSON object"
    if statement.get("_type") != STATEMENT_TYPE:
        return f"_type must be {STATEMENT_TYPE!r}"
    if statement.get("predicateType") != PREDICATE_TYPE:
        return f"predicateType must be {PREDICATE_TYPE!r}"
    subjects = statement.get("subject")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)):
        return "subject must list exactly one subject"
    subject = subjects[0]
    digest = subject.get("digest")
    if not isinstance(subject.get("name"), str) or not subject["name"]:
        return "subject[0].name must be a non-empty string"
    sha256 = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(sha256, str) or not _SHA256_HEX_LOWER.fullmatch(sha256):
        return "subject[0].digest.sha256 must be 64 lowercase hex digits"
    if not isinstance(statement.get("predicate"), dict):
        return "predicate must be a JSON object"
    return ""
