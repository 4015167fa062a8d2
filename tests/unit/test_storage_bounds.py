"""The bounds of what the store can hold, and the pure checks that apply them before any write.

The bounds are declared once (``core/storage_bounds.py``); these tests pin them to the columns
they describe (the plugin's SQLAlchemy models, MLflow's own models) and check every value at the
edge: the largest that fits is accepted, one more is refused with a field-naming ValidationError.
"""

from __future__ import annotations

import json
import math

import pytest
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlRegisteredModel
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH
from sqlalchemy import BigInteger, Integer

from mlflow_hokusai_plugin.core import storage_bounds as B
from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.contributors import attribute, parse_contributors, weights_from_samples
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.metrics import compute_improvement, metric_delta
from mlflow_hokusai_plugin.db import models
from mlflow_hokusai_plugin.server import schemas as S

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# 100 distinct checksummed addresses with many letters (the longest rows a summary can get).
ADDRESSES = [f"0x{'fedcba' * 6}{i:04x}" for i in range(100)]


def _column(model, name):
    return model.__table__.columns[name]


# -- the bounds are the columns' ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "column", "length"),
    [
        (models.LineageEdge, "child_model_id", B.MODEL_ID_LENGTH),
        (models.LineageEdge, "parent_model_id", B.MODEL_ID_LENGTH),
        (models.LineageEdge, "project", B.PROJECT_LENGTH),
        (models.LineageEdge, "model_type", B.MODEL_TYPE_LENGTH),
        (models.LineageEdge, "benchmark_metric", B.BENCHMARK_METRIC_LENGTH),
        (models.LineageEdge, "attestation_id", B.ATTESTATION_ID_LENGTH),
        (models.Attestation, "id", B.ATTESTATION_ID_LENGTH),
        (models.Attestation, "model_id", B.MODEL_ID_LENGTH),
        (models.Attestation, "baseline_model_id", B.MODEL_ID_LENGTH),
        (models.Attestation, "attester", B.ADDRESS_LENGTH),
        (models.Attestation, "status", B.ATTESTATION_STATUS_LENGTH),
        (models.Contribution, "address", B.ADDRESS_LENGTH),
        (models.Contribution, "model_id", B.MODEL_ID_LENGTH),
        (models.Contribution, "project", B.PROJECT_LENGTH),
        (models.ContributorTotal, "address", B.ADDRESS_LENGTH),
        (models.ContributorTotal, "project", B.PROJECT_LENGTH),
    ],
)
def test_the_plugin_columns_are_declared_with_the_shared_lengths(model, column, length):
    assert _column(model, column).type.length == length


def test_the_schema_lengths_did_not_change():
    # No migration goes with the shared constants: they are the lengths 0001_initial created.
    assert (B.MODEL_ID_LENGTH, B.PROJECT_LENGTH, B.MODEL_TYPE_LENGTH, B.BENCHMARK_METRIC_LENGTH) == (
        512,
        64,
        32,
        250,
    )
    assert (B.ADDRESS_LENGTH, B.ATTESTATION_ID_LENGTH, B.ATTESTATION_STATUS_LENGTH) == (42, 64, 20)


@pytest.mark.parametrize(
    ("model", "column", "kind", "bound"),
    [
        (models.Contribution, "samples", BigInteger, B.SAMPLES_MAX),
        (models.Contribution, "attributed_bps", BigInteger, B.SCORE_BPS_MAX),
        (models.Contribution, "weight_bps", Integer, B.INTEGER_MAX),
        (models.LineageEdge, "baseline_score_bps", BigInteger, B.SCORE_BPS_MAX),
        (models.LineageEdge, "candidate_score_bps", BigInteger, B.SCORE_BPS_MAX),
        (models.LineageEdge, "delta_one_bps", BigInteger, B.SCORE_BPS_MAX),
        (models.ContributorTotal, "attributed_bps", BigInteger, B.SCORE_BPS_MAX),
    ],
)
def test_the_integer_bounds_are_the_column_types(model, column, kind, bound):
    assert type(_column(model, column).type) is kind
    assert bound == (B.BIGINT_MAX if kind is BigInteger else B.INTEGER_MAX)


def test_mlflows_own_limits_are_its_columns():
    assert SqlModelVersion.__table__.columns["description"].type.length == B.MLFLOW_DESCRIPTION_LENGTH == 5000
    assert SqlModelVersion.__table__.columns["name"].type.length == B.MLFLOW_MODEL_NAME_LENGTH
    assert SqlRegisteredModel.__table__.columns["name"].type.length == B.MLFLOW_MODEL_NAME_LENGTH
    assert type(SqlModelVersion.__table__.columns["version"].type) is Integer
    for model in (SqlMetric, SqlLatestMetric):
        assert model.__table__.columns["key"].type.length == B.MLFLOW_METRIC_KEY_LENGTH
    assert MAX_ENTITY_KEY_LENGTH == B.BENCHMARK_METRIC_LENGTH


def test_the_rest_schema_uses_the_same_bounds():
    fields = S.RegisterModelRequest.model_fields
    assert S.MAX_NAME_LENGTH == B.MLFLOW_MODEL_NAME_LENGTH
    assert S.MAX_METRIC_LENGTH == B.BENCHMARK_METRIC_LENGTH

    def max_length(name):
        return next(m.max_length for m in fields[name].metadata if hasattr(m, "max_length"))

    assert max_length("pipeline_run_id") == B.PIPELINE_RUN_ID_LENGTH
    assert max_length("description") == B.MLFLOW_DESCRIPTION_LENGTH
    schema = S.RegisterModelRequest.model_json_schema()
    assert schema["$defs"]["ContributorEntry"]["properties"]["samples"]["maximum"] == B.SAMPLES_MAX


# -- contributors -------------------------------------------------------------------------------


def test_samples_at_the_bigint_maximum_are_accepted_and_one_more_is_refused():
    edge = [{"address": a, "samples": B.SAMPLES_MAX - i} for i, a in enumerate(ADDRESSES)]
    parsed = parse_contributors(json.dumps(edge))
    assert [c["samples"] for c in parsed] == [B.SAMPLES_MAX - i for i in range(100)]
    assert sum(c["weight_bps"] for c in parsed) == 10000
    with pytest.raises(ValidationError) as raised:
        parse_contributors([{"address": ALICE, "samples": 2**63}])
    assert raised.value.field == "contributors[0].samples"
    assert "9223372036854775807" in raised.value.message and "64-bit" in raised.value.message
    with pytest.raises(ValidationError) as raised:
        weights_from_samples([1, 2**63])
    assert raised.value.field == "samples[1]"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (f'[{{"address": "{ALICE}", "samples": 1e999}}]', "contributors[0].samples"),
        (f'[{{"address": "{ALICE}", "weight_bps": -1e999}}]', "contributors[0].weight_bps"),
        (f'[{{"address": "{ALICE}", "samples": Infinity}}]', "contributors"),
        (f'[{{"address": "{ALICE}", "weight_bps": NaN}}]', "contributors"),
        (f'[{{"address": "{ALICE}", "weight_bps": {2**31}}}]', "contributors[0].weight_bps"),
    ],
)
def test_infinite_or_oversized_contributor_numbers_are_refused(text, field):
    with pytest.raises(ValidationError) as raised:
        parse_contributors(text)
    assert raised.value.field == field


# -- metrics --------------------------------------------------------------------------------------


def test_scores_that_fit_a_bigint_are_accepted_and_larger_ones_refused():
    largest = 9.2e14  # 9.2e18 bps, just below 2**63 - 1
    result = compute_improvement({"accuracy": 0.0}, {"accuracy": largest}, "accuracy")
    assert result["candidate_score_bps"] == 9_200_000_000_000_000_000 <= B.SCORE_BPS_MAX
    for baseline, candidate, field in [
        (0.5, 9.3e14, "new_metrics.accuracy"),
        (-9.3e14, 0.5, "baseline_metrics.accuracy"),
        (0.5, 1.7976931348623157e308, "new_metrics.accuracy"),  # how MLflow stores +inf
    ]:
        with pytest.raises(ValidationError) as raised:
            compute_improvement({"accuracy": baseline}, {"accuracy": candidate}, "accuracy")
        assert raised.value.field == field, raised.value


def test_an_improvement_too_large_for_a_bigint_is_refused_though_both_scores_fit():
    # Each score fits (|9e14| * 10^4 < 2**63), their difference does not.
    with pytest.raises(ValidationError) as raised:
        compute_improvement({"accuracy": -9e14}, {"accuracy": 9e14}, "accuracy")
    assert raised.value.field == "new_metrics.accuracy"
    assert "64-bit" in raised.value.message


def test_a_relative_delta_that_overflows_is_refused_not_left_infinite():
    with pytest.raises(ValidationError) as raised:
        metric_delta("accuracy", 1e-300, 1e10, "higher")
    assert raised.value.field == "new_metrics.accuracy"
    assert metric_delta("accuracy", 0.0, 1e10, "higher")["relative_delta"] is None


# -- tags -----------------------------------------------------------------------------------------


def _tags(**changes):
    tags = {
        T.PROJECT: "churn",
        T.MODEL_TYPE: "classification",
        T.BASELINE: "churn/1",
        T.BENCHMARK_METRIC: "accuracy",
        T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 10000}]),
    }
    tags.update(changes)
    return tags


@pytest.mark.parametrize(
    ("accepted", "refused", "field"),
    [
        ({T.BENCHMARK_METRIC: "m" * 250}, {T.BENCHMARK_METRIC: "m" * 251}, T.BENCHMARK_METRIC),
        ({T.PIPELINE_RUN_ID: "p" * 250}, {T.PIPELINE_RUN_ID: "p" * 251}, T.PIPELINE_RUN_ID),
        ({T.PROJECT: "p" * 64}, {T.PROJECT: "p" * 65}, T.PROJECT),
        ({T.BASELINE: f"churn/{2**31 - 1}"}, {T.BASELINE: f"churn/{2**31}"}, T.BASELINE),
        ({T.BASELINE: "n" * 256 + "/1"}, {T.BASELINE: "n" * 257 + "/1"}, T.BASELINE),
        (
            {T.CONTRIBUTORS: json.dumps([{"address": ALICE, "samples": 2**63 - 1}])},
            {T.CONTRIBUTORS: json.dumps([{"address": ALICE, "samples": 2**63}])},
            f"{T.CONTRIBUTORS}[0].samples",
        ),
        ({T.PIPELINE_RUN_ID: "pipe-1"}, {T.PIPELINE_RUN_ID: "pipe\x00"}, T.PIPELINE_RUN_ID),
        ({T.BENCHMARK_METRIC: "accuracy"}, {T.BENCHMARK_METRIC: "acc\x00"}, T.BENCHMARK_METRIC),
    ],
)
def test_improvement_tags_within_the_columns_pass_and_one_more_is_refused(accepted, refused, field):
    T.parse_improvement_tags(_tags(**accepted))
    with pytest.raises(ValidationError) as raised:
        T.parse_improvement_tags(_tags(**refused))
    assert raised.value.field == field


# -- the summary ----------------------------------------------------------------------------------

DELTAS = {
    "accuracy": {"baseline_value": 0.75, "new_value": 0.82, "absolute_delta": 0.07},
    "f1_score": {"baseline_value": 0.7, "new_value": 0.71, "absolute_delta": 0.01},
}
ATTESTATION_ID = "9f" * 32


def _improvement(count: int, **options):
    contributors = attribute(
        700,
        parse_contributors(
            [{"address": a, "samples": B.SAMPLES_MAX - i} for i, a in enumerate(ADDRESSES[:count])]
        ),
    )
    return summary.improvement_markdown(
        baseline_model_id=options.get("baseline", "churn/1"),
        benchmark_metric=options.get("metric", "accuracy"),
        metric_deltas=options.get("deltas", DELTAS),
        delta_one_bps=700,
        contributors=contributors,
        attestation_id=ATTESTATION_ID,
    )


def test_a_short_summary_is_unchanged():
    text = _improvement(2)
    assert text.count("| `0x") == 2 and "more, see" not in text and "shortened" not in text
    assert text.startswith("**Hokusai improvement**") and text.endswith(f"Attestation `{ATTESTATION_ID}`.")
    assert summary.server_block(text) == text


def test_one_hundred_contributors_fit_mlflows_description_limit_with_the_headline_facts():
    full = "\n".join(f"| `{a}` |" for a in ADDRESSES)
    assert len(full) > 4000  # the full table alone is most of the limit
    text = _improvement(100)
    assert len(text) <= summary.MAX_DESCRIPTION_LENGTH == B.MLFLOW_DESCRIPTION_LENGTH
    assert "over [`churn/1`](#/models/churn/versions/1) on `accuracy`" in text and "7 DeltaOne" in text
    assert "| accuracy | 0.7500 | 0.8200 | +0.0700 |" in text and "| f1_score |" in text
    shown = text.count("| `0x")
    assert 50 < shown < 100
    assert f"... and {100 - shown} more, see the attestation `{ATTESTATION_ID}`" in text
    assert "shortened to fit MLflow's 5000-character description limit" in text
    # The first contributors, in order.
    assert [line.split("`")[1] for line in text.splitlines() if line.startswith("| `0x")] == [
        parse_contributors([{"address": a, "weight_bps": 100} for a in ADDRESSES])[i]["address"]
        for i in range(shown)
    ]


@pytest.mark.parametrize("own", [0, 1, 100, 1000, 3000, 4500, 4700, 4800, 4870, 4950, 4998, 5000])
def test_the_users_text_plus_the_summary_never_exceed_the_limit(own):
    mine = "u" * own
    text = summary.replace_summary(mine, _improvement(100))
    assert len(text) <= summary.MAX_DESCRIPTION_LENGTH
    assert text.startswith(mine)  # the user's own text is never cut
    rest = text[own:]
    if rest:
        assert summary.MARKER in rest and ATTESTATION_ID in rest and "DeltaOne" in rest
    if own <= 4800:
        assert rest, "there was room for a short summary"


def test_the_longest_headline_still_fits_with_every_metric():
    deltas = {
        name: {"baseline_value": -9.2e14, "new_value": 9.2e14, "absolute_delta": 1.84e15}
        for name in ("accuracy", "auroc", "f1_score", "precision", "recall", "loss", "rmse", "mae", "mse")
    }
    text = _improvement(100, baseline="n" * 256 + f"/{2**31 - 1}", metric="m" * 250, deltas=deltas)
    assert len(text) <= summary.MAX_DESCRIPTION_LENGTH
    assert "| rmse | -9.2000e+14 | 9.2000e+14 | +1.8400e+15 |" in text


def test_a_baseline_summary_is_shortened_or_left_out_never_too_long():
    markdown = summary.baseline_markdown(
        project="p" * 64, model_type="classification", benchmark_metric="m" * 250
    )
    for own in (0, 4000, 4700, 4900, 4960, 5000):
        text = summary.replace_summary("u" * own, markdown)
        assert len(text) <= summary.MAX_DESCRIPTION_LENGTH and text.startswith("u" * own)
    assert summary.replace_summary("u" * 4800, markdown).endswith(
        f"**Hokusai baseline** of project `{'p' * 64}`. {summary.MARKER}"
    )


def test_a_plain_string_that_does_not_fit_is_left_out():
    assert summary.replace_summary("u" * 4990, summary.MARKER + "\n" + "x" * 100) == "u" * 4990


# -- REST bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"a": math.inf}, "a"),
        ({"contributors": [{"address": ALICE, "samples": -math.inf}]}, "contributors[0].samples"),
        ({"document": {"dsse": {"signatures": [{"sig": math.nan}]}}}, "document.dsse.signatures[0].sig"),
        (math.inf, "body"),
    ],
)
def test_non_finite_numbers_in_a_body_are_found_with_their_field(data, field):
    assert S.find_non_finite(data)[0] == field


def test_finite_bodies_have_no_non_finite_number():
    assert S.find_non_finite({"a": [1, 2.5, -1e308, {"b": None, "c": "inf"}]}) is None


def test_a_register_body_beyond_the_bounds_is_refused_naming_the_field():
    body = {
        "name": "churn",
        "model_uri": "models:/m-abc",
        "project": "churn",
        "model_type": "classification",
        "baseline": "churn/1",
        "benchmark_metric": "accuracy",
        "contributors": [{"address": ALICE, "samples": 2**63 - 1}],
    }
    S.validate(S.RegisterModelRequest, body)
    for change, field in [
        ({"contributors": [{"address": ALICE, "samples": 2**63}]}, "contributors[0].samples"),
        ({"benchmark_metric": "m" * 251}, "benchmark_metric"),
        ({"pipeline_run_id": "p" * 251}, "pipeline_run_id"),
        ({"description": "d" * 5001}, "description"),
        ({"name": "n" * 257}, "name"),
    ]:
        with pytest.raises(ValidationError) as raised:
            S.validate(S.RegisterModelRequest, {**body, **change})
        assert raised.value.field == field, raised.value
