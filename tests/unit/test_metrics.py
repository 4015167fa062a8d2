import decimal
import math
from fractions import Fraction

import pytest

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.metrics import (
    DEFAULT_SCORE_WEIGHTS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    STANDARD_METRICS,
    check_metric_value,
    compute_improvement,
    compute_metric_deltas,
    delta_one_bps,
    metric_delta,
    metric_direction,
    recommend,
    signed_improvement,
    to_bps,
    weighted_score,
)

NOT_NUMBERS = [None, "0.8", True, False, [0.8], {"v": 0.8}, decimal.Decimal("0.8")]
NOT_FINITE = [math.nan, math.inf, -math.inf]


# --- directions -------------------------------------------------------------------------------


def test_default_direction_sets():
    assert HIGHER_IS_BETTER == {"accuracy", "auroc", "f1_score", "precision", "recall"}
    assert LOWER_IS_BETTER == {"loss", "log_loss", "rmse", "mae", "mse"}
    assert set(STANDARD_METRICS) <= HIGHER_IS_BETTER
    assert STANDARD_METRICS == ("accuracy", "precision", "recall", "f1_score", "auroc")


@pytest.mark.parametrize("name", sorted(HIGHER_IS_BETTER))
def test_higher_is_better(name):
    assert metric_direction(name) == "higher"


@pytest.mark.parametrize("name", sorted(LOWER_IS_BETTER))
def test_lower_is_better(name):
    assert metric_direction(name) == "lower"


def test_configured_direction_and_override():
    assert metric_direction("ndcg", {"ndcg": "higher"}) == "higher"
    assert metric_direction("accuracy", {"accuracy": "lower"}) == "lower"


def test_unknown_metric_says_how_to_configure_it():
    with pytest.raises(ValidationError) as excinfo:
        metric_direction("ndcg")
    assert excinfo.value.field == "directions.ndcg"
    assert "ndcg" in excinfo.value.message
    assert 'directions={"ndcg": "higher"}' in excinfo.value.message


@pytest.mark.parametrize(
    ("directions", "field"),
    [
        ({"ndcg": "up"}, "directions.ndcg"),
        ({"ndcg": None}, "directions.ndcg"),
        ({1: "higher"}, "directions"),
        (["ndcg", "higher"], "directions"),
    ],
)
def test_bad_directions_mapping(directions, field):
    with pytest.raises(ValidationError) as excinfo:
        metric_direction("ndcg", directions)
    assert excinfo.value.field == field


# --- check_metric_value -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(0.5, 0.5), (1, 1.0), (0, 0.0), (-2.5, -2.5)])
def test_check_metric_value_accepts_numbers(value, expected):
    result = check_metric_value("accuracy", value, "new_metrics.accuracy")
    assert result == expected
    assert type(result) is float


def test_check_metric_value_accepts_other_real_numbers():
    assert check_metric_value("accuracy", Fraction(3, 4), "x") == 0.75


@pytest.mark.parametrize("value", NOT_NUMBERS + NOT_FINITE + [10**400])
def test_check_metric_value_rejects(value):
    with pytest.raises(ValidationError) as excinfo:
        check_metric_value("accuracy", value, "new_metrics.accuracy")
    assert excinfo.value.field == "new_metrics.accuracy"
    assert "accuracy" in excinfo.value.message


# --- to_bps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bps"),
    [
        (0.8234, 8234),
        (0.75, 7500),
        (0.82, 8200),
        (1, 10000),
        (1.0, 10000),
        (0, 0),
        (0.00005, 1),  # exactly half: away from zero
        (0.00004999, 0),
        (0.00015, 2),  # 0.00015 * 10000 == 1.4999999999999998 in floats
        (0.12345, 1235),
        (0.12344999, 1234),
        (-0.00005, -1),  # half away from zero, on the negative side too
        (-0.00015, -2),
        (0.1 + 0.2, 3000),
        (0.57, 5700),  # 0.57 * 10000 == 5699.999999999999 in floats
        (12.5, 125000),
    ],
)
def test_to_bps(value, bps):
    assert to_bps(value) == bps


def test_to_bps_ignores_the_callers_decimal_context():
    with decimal.localcontext() as ctx:
        ctx.prec = 2
        ctx.rounding = decimal.ROUND_FLOOR
        ctx.traps[decimal.Inexact] = True
        assert to_bps(0.8234) == 8234
        assert to_bps(0.00005) == 1


def test_to_bps_of_huge_values_is_exact_integer_arithmetic():
    assert to_bps(1e30) == 10**34
    assert to_bps(10**20) == 10**24


@pytest.mark.parametrize("value", NOT_NUMBERS + NOT_FINITE)
def test_to_bps_rejects(value):
    with pytest.raises(ValidationError) as excinfo:
        to_bps(value, field="new_metrics.accuracy")
    assert excinfo.value.field == "new_metrics.accuracy"


def test_to_bps_default_field():
    with pytest.raises(ValidationError) as excinfo:
        to_bps(math.nan)
    assert excinfo.value.field == "value"


# --- metric_delta -----------------------------------------------------------------------------


def test_metric_delta_keys_and_values():
    delta = metric_delta("accuracy", 0.75, 0.82, "higher")
    assert delta == {
        "baseline_value": 0.75,
        "new_value": 0.82,
        "absolute_delta": 0.07,
        "relative_delta": 0.093333333333,
        "improvement": True,
        "direction": "higher",
    }


def test_metric_delta_removes_float_noise():
    assert 0.82 - 0.75 != 0.07
    assert metric_delta("accuracy", 0.75, 0.82, "higher")["absolute_delta"] == 0.07
    equal = metric_delta("accuracy", 0.1 + 0.2, 0.3, "higher")
    assert equal["absolute_delta"] == 0.0
    assert math.copysign(1, equal["absolute_delta"]) == 1  # no -0.0
    assert equal["improvement"] is False


def test_metric_delta_lower_is_better():
    delta = metric_delta("rmse", 0.5, 0.4, "lower")
    assert delta["absolute_delta"] == -0.1
    assert delta["relative_delta"] == -0.2
    assert delta["improvement"] is True
    assert metric_delta("rmse", 0.4, 0.5, "lower")["improvement"] is False


def test_metric_delta_relative_uses_absolute_baseline():
    delta = metric_delta("r2", -0.5, -0.25, "higher")
    assert delta["relative_delta"] == 0.5
    assert delta["improvement"] is True


def test_metric_delta_zero_baseline_has_no_relative_delta():
    delta = metric_delta("accuracy", 0, 0.5, "higher")
    assert delta["relative_delta"] is None
    assert delta["absolute_delta"] == 0.5


@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_equal_values_are_not_an_improvement(direction):
    assert metric_delta("m", 0.5, 0.5, direction)["improvement"] is False


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("accuracy", math.nan, 0.8, "higher"), "baseline_metrics.accuracy"),
        (("accuracy", 0.8, "0.9", "higher"), "new_metrics.accuracy"),
        (("accuracy", 0.8, None, "higher"), "new_metrics.accuracy"),
        (("accuracy", 0.8, 0.9, "up"), "directions.accuracy"),
        (("m", -1e308, 1e308, "higher"), "new_metrics.m"),
    ],
)
def test_metric_delta_rejects(args, field):
    with pytest.raises(ValidationError) as excinfo:
        metric_delta(*args)
    assert excinfo.value.field == field


# --- compute_metric_deltas --------------------------------------------------------------------

BASELINE = {"accuracy": 0.75, "auroc": 0.80, "loss": 0.5, "epoch": 10, "lr": 0.001}
CANDIDATE = {"accuracy": 0.82, "auroc": 0.79, "loss": 0.4, "epoch": 12, "lr": 0.001}


def test_default_selection_skips_metrics_without_direction_and_sorts():
    deltas = compute_metric_deltas(BASELINE, CANDIDATE)
    assert list(deltas) == ["accuracy", "auroc", "loss"]
    assert deltas["loss"]["direction"] == "lower"
    assert deltas["loss"]["improvement"] is True
    assert deltas["auroc"]["improvement"] is False


def test_default_selection_includes_configured_metrics():
    deltas = compute_metric_deltas(BASELINE, CANDIDATE, directions={"epoch": "lower"})
    assert list(deltas) == ["accuracy", "auroc", "epoch", "loss"]
    assert deltas["epoch"]["improvement"] is False


def test_default_selection_requires_the_candidate_to_log_compared_metrics():
    candidate = {k: v for k, v in CANDIDATE.items() if k != "auroc"}
    with pytest.raises(ValidationError) as excinfo:
        compute_metric_deltas(BASELINE, candidate)
    assert excinfo.value.field == "new_metrics.auroc"
    assert "missing" in excinfo.value.message


def test_default_selection_ignores_bad_values_of_skipped_metrics():
    deltas = compute_metric_deltas({"accuracy": 0.7, "note": "x"}, {"accuracy": 0.8})
    assert list(deltas) == ["accuracy"]


def test_explicit_metrics():
    deltas = compute_metric_deltas(BASELINE, CANDIDATE, metrics=["loss", "accuracy"])
    assert list(deltas) == ["accuracy", "loss"]


def test_explicit_metrics_deduplicated():
    deltas = compute_metric_deltas(BASELINE, CANDIDATE, metrics=("accuracy", "accuracy"))
    assert list(deltas) == ["accuracy"]


@pytest.mark.parametrize(
    ("baseline", "new", "field"),
    [
        ({"accuracy": 0.7}, {"accuracy": 0.8}, "baseline_metrics.auroc"),
        ({"accuracy": 0.7, "auroc": 0.8}, {"accuracy": 0.8}, "new_metrics.auroc"),
    ],
)
def test_explicit_metric_missing_on_one_side(baseline, new, field):
    with pytest.raises(ValidationError) as excinfo:
        compute_metric_deltas(baseline, new, metrics=["accuracy", "auroc"])
    assert excinfo.value.field == field
    assert "missing" in excinfo.value.message


def test_explicit_metric_without_direction():
    with pytest.raises(ValidationError) as excinfo:
        compute_metric_deltas(BASELINE, CANDIDATE, metrics=["epoch"])
    assert excinfo.value.field == "directions.epoch"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline_metrics": [0.7], "new_metrics": {}}, "baseline_metrics"),
        ({"baseline_metrics": {}, "new_metrics": None}, "new_metrics"),
        ({"baseline_metrics": {1: 0.7}, "new_metrics": {}}, "baseline_metrics"),
        (
            {
                "baseline_metrics": BASELINE,
                "new_metrics": CANDIDATE,
                "metrics": "accuracy",
            },
            "metrics",
        ),
        (
            {"baseline_metrics": BASELINE, "new_metrics": CANDIDATE, "metrics": 3},
            "metrics",
        ),
        (
            {"baseline_metrics": BASELINE, "new_metrics": CANDIDATE, "metrics": [None]},
            "metrics[0]",
        ),
        (
            {
                "baseline_metrics": BASELINE,
                "new_metrics": CANDIDATE,
                "directions": {"x": 1},
            },
            "directions.x",
        ),
        (
            {"baseline_metrics": {"accuracy": "0.7"}, "new_metrics": {"accuracy": 0.8}},
            "baseline_metrics.accuracy",
        ),
        (
            {
                "baseline_metrics": {"accuracy": 0.7},
                "new_metrics": {"accuracy": math.inf},
            },
            "new_metrics.accuracy",
        ),
    ],
)
def test_compute_metric_deltas_rejects(kwargs, field):
    with pytest.raises(ValidationError) as excinfo:
        compute_metric_deltas(**kwargs)
    assert excinfo.value.field == field


def test_no_comparable_metric_gives_empty_result():
    assert compute_metric_deltas({"epoch": 1}, {"epoch": 2}) == {}


# --- signed_improvement -----------------------------------------------------------------------


def test_signed_improvement_orients_by_direction():
    assert signed_improvement(metric_delta("accuracy", 0.75, 0.82, "higher")) == 0.07
    assert signed_improvement(metric_delta("accuracy", 0.82, 0.75, "higher")) == -0.07
    assert signed_improvement(metric_delta("rmse", 0.5, 0.4, "lower")) == 0.1
    assert signed_improvement(metric_delta("rmse", 0.4, 0.5, "lower")) == -0.1


def test_signed_improvement_of_no_change_is_positive_zero():
    value = signed_improvement(metric_delta("rmse", 0.5, 0.5, "lower"))
    assert value == 0.0
    assert math.copysign(1, value) == 1


@pytest.mark.parametrize(
    ("delta", "field"),
    [
        (None, "delta"),
        ({"direction": "higher"}, "delta.absolute_delta"),
        ({"absolute_delta": 0.1}, "delta.direction"),
        ({"absolute_delta": "0.1", "direction": "higher"}, "delta.absolute_delta"),
        ({"absolute_delta": 0.1, "direction": "up"}, "delta.direction"),
    ],
)
def test_signed_improvement_rejects(delta, field):
    with pytest.raises(ValidationError) as excinfo:
        signed_improvement(delta)
    assert excinfo.value.field == field


# --- delta_one_bps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "new", "direction", "bps"),
    [
        (0.75, 0.82, "higher", 700),  # 7 DeltaOnes
        (0.82, 0.75, "higher", 0),  # never negative
        (0.8234, 0.8234, "higher", 0),
        (0.8234, 0.8301, "higher", 67),
        (0.30, 0.25, "lower", 500),
        (0.25, 0.30, "lower", 0),
        (0.70, 0.70005, "higher", 1),  # on the rounded bps, like the verifier
        (0.1 + 0.2, 0.31, "higher", 100),
    ],
)
def test_delta_one_bps(baseline, new, direction, bps):
    assert delta_one_bps(baseline, new, direction) == bps


def test_delta_one_bps_defaults_to_higher():
    assert delta_one_bps(0.75, 0.82) == 700


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((math.nan, 0.8), "baseline_value"),
        ((0.7, None), "new_value"),
        ((0.7, 0.8, "better"), "direction"),
    ],
)
def test_delta_one_bps_rejects(args, field):
    with pytest.raises(ValidationError) as excinfo:
        delta_one_bps(*args)
    assert excinfo.value.field == field


# --- weighted_score ---------------------------------------------------------------------------


def test_weighted_score_reference_example():
    assert weighted_score({"accuracy": 0.04, "auroc": 0.03}) == 6.4


def test_default_weights():
    assert dict(DEFAULT_SCORE_WEIGHTS) == {
        "accuracy": 1.0,
        "auroc": 0.8,
        "f1_score": 0.9,
        "precision": 0.7,
        "recall": 0.7,
    }
    with pytest.raises(TypeError):
        DEFAULT_SCORE_WEIGHTS["accuracy"] = 2.0  # read-only: it is a default argument


def test_weighted_score_all_standard_metrics():
    deltas = {
        "accuracy": 0.01,
        "auroc": 0.01,
        "f1_score": 0.01,
        "precision": 0.01,
        "recall": 0.01,
    }
    assert weighted_score(deltas) == 4.1


def test_weighted_score_ignores_metrics_without_weight():
    assert weighted_score({"accuracy": 0.04, "loss": 5.0}) == 4.0


def test_weighted_score_is_clamped_at_zero():
    assert weighted_score({"accuracy": -0.04, "auroc": 0.01}) == 0.0
    assert weighted_score({}) == 0.0


def test_weighted_score_custom_weights():
    assert weighted_score({"ndcg": 0.05}, {"ndcg": 2.0}) == 10.0


def test_weighted_score_rounds_to_two_places():
    assert weighted_score({"accuracy": 0.012345}) == 1.23


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (({"accuracy": "0.04"},), "deltas.accuracy"),
        (({"accuracy": math.nan},), "deltas.accuracy"),
        (({"accuracy": 0.04}, {"accuracy": None}), "weights.accuracy"),
        (([0.04],), "deltas"),
        (({"accuracy": 0.04}, [1.0]), "weights"),
    ],
)
def test_weighted_score_rejects(args, field):
    with pytest.raises(ValidationError) as excinfo:
        weighted_score(*args)
    assert excinfo.value.field == field


# --- recommend --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("improvements", "expected"),
    [
        ({"accuracy": 0.02, "auroc": 0.02}, "ACCEPT"),
        (
            {"accuracy": 0.02, "auroc": 0.02, "recall": -0.01},
            "ACCEPT",
        ),  # -0.01 is not worse by more
        ({"accuracy": 0.02, "auroc": 0.02, "recall": -0.0100001}, "REJECT"),
        (
            {"accuracy": 0.02, "auroc": 0.01},
            "REVIEW",
        ),  # exactly 0.01 is not "more than"
        ({"accuracy": 0.02, "auroc": 0.0100001}, "ACCEPT"),
        ({"accuracy": 0.02}, "REVIEW"),
        ({"accuracy": 0.01, "auroc": 0.01}, "REJECT"),
        ({"accuracy": 0.0, "auroc": 0.005}, "REJECT"),
        ({}, "REJECT"),
        ({"accuracy": 0.5, "auroc": 0.5, "recall": 0.5, "precision": -0.02}, "REJECT"),
    ],
)
def test_recommend(improvements, expected):
    assert recommend(improvements) == expected


def test_recommend_boundary_survives_float_noise():
    noisy = 0.76 - 0.75  # 0.010000000000000009
    assert noisy > 0.01
    assert recommend({"accuracy": noisy, "auroc": noisy}) == "REJECT"
    assert recommend({"accuracy": -noisy, "auroc": 0.5, "recall": 0.5}) == "ACCEPT"


def test_recommend_custom_threshold():
    assert recommend({"accuracy": 0.03, "auroc": 0.03}, threshold=0.05) == "REJECT"
    assert recommend({"accuracy": 0.001, "auroc": 0.001}, threshold=0) == "ACCEPT"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (({"accuracy": None},), "improvements.accuracy"),
        (({"accuracy": math.inf},), "improvements.accuracy"),
        (([0.1],), "improvements"),
        (({"accuracy": 0.1}, -0.01), "threshold"),
        (({"accuracy": 0.1}, "0.01"), "threshold"),
    ],
)
def test_recommend_rejects(args, field):
    with pytest.raises(ValidationError) as excinfo:
        recommend(*args)
    assert excinfo.value.field == field


# --- compute_improvement ----------------------------------------------------------------------


def test_compute_improvement_full_result():
    result = compute_improvement(BASELINE, CANDIDATE, "accuracy")
    assert set(result) == {
        "benchmark_metric",
        "direction",
        "baseline_score_bps",
        "candidate_score_bps",
        "delta_one_bps",
        "delta_one",
        "metric_deltas",
        "improved_metrics",
        "degraded_metrics",
        "weighted_score",
        "recommendation",
    }
    assert result["benchmark_metric"] == "accuracy"
    assert result["direction"] == "higher"
    assert result["baseline_score_bps"] == 7500
    assert result["candidate_score_bps"] == 8200
    assert result["delta_one_bps"] == 700
    assert result["delta_one"] == 7.0
    assert result["metric_deltas"] == compute_metric_deltas(BASELINE, CANDIDATE)
    assert result["improved_metrics"] == ["accuracy", "loss"]
    assert result["degraded_metrics"] == ["auroc"]
    # accuracy +0.07 * 1.0, auroc -0.01 * 0.8; loss has no weight
    assert result["weighted_score"] == 6.2
    # accuracy and loss better by more than 0.01, auroc worse by exactly 0.01 (not more)
    assert result["recommendation"] == "ACCEPT"


def test_benchmark_metric_always_in_deltas():
    result = compute_improvement(BASELINE, CANDIDATE, "accuracy", metrics=["auroc"])
    assert list(result["metric_deltas"]) == ["accuracy", "auroc"]
    assert result["recommendation"] == "REVIEW"


def test_lower_is_better_benchmark():
    result = compute_improvement({"rmse": 0.30}, {"rmse": 0.25}, "rmse")
    assert result["direction"] == "lower"
    assert (result["baseline_score_bps"], result["candidate_score_bps"]) == (3000, 2500)
    assert result["delta_one_bps"] == 500
    assert result["delta_one"] == 5.0
    assert result["improved_metrics"] == ["rmse"]


def test_regression_on_the_benchmark_gives_zero_delta_one():
    result = compute_improvement({"accuracy": 0.82}, {"accuracy": 0.75}, "accuracy")
    assert result["delta_one_bps"] == 0
    assert result["delta_one"] == 0.0
    assert result["degraded_metrics"] == ["accuracy"]
    assert result["weighted_score"] == 0.0
    assert result["recommendation"] == "REJECT"


def test_delta_one_is_a_fraction_of_a_point():
    result = compute_improvement({"accuracy": 0.8234}, {"accuracy": 0.8301}, "accuracy")
    assert result["delta_one_bps"] == 67
    assert result["delta_one"] == 0.67


def test_configured_benchmark_metric():
    result = compute_improvement({"ndcg": 0.4}, {"ndcg": 0.45}, "ndcg", directions={"ndcg": "higher"})
    assert result["delta_one_bps"] == 500
    assert result["weighted_score"] == 0.0  # ndcg has no default weight


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (
            ({"auroc": 0.8}, {"accuracy": 0.8}, "accuracy"),
            {},
            "baseline_metrics.accuracy",
        ),
        (({"accuracy": 0.8}, {"auroc": 0.8}, "accuracy"), {}, "new_metrics.accuracy"),
        (({"ndcg": 0.4}, {"ndcg": 0.5}, "ndcg"), {}, "directions.ndcg"),
        (({"accuracy": 0.8}, {"accuracy": 0.9}, ""), {}, "benchmark_metric"),
        (({"accuracy": 0.8}, {"accuracy": 0.9}, None), {}, "benchmark_metric"),
        (
            ({"accuracy": 0.8}, {"accuracy": math.nan}, "accuracy"),
            {},
            "new_metrics.accuracy",
        ),
        (
            ({"accuracy": 0.8}, {"accuracy": 0.9}, "accuracy"),
            {"metrics": "auroc"},
            "metrics",
        ),
        (
            ({"accuracy": 0.8}, {"accuracy": 0.9}, "accuracy"),
            {"metrics": ["auroc"]},
            "baseline_metrics.auroc",
        ),
        ((None, {"accuracy": 0.9}, "accuracy"), {}, "baseline_metrics"),
    ],
)
def test_compute_improvement_rejects(args, kwargs, field):
    with pytest.raises(ValidationError) as excinfo:
        compute_improvement(*args, **kwargs)
    assert excinfo.value.field == field


@pytest.mark.parametrize("name", [None, "", 3, ["accuracy"]])
def test_metric_direction_rejects_bad_names(name):
    with pytest.raises(ValidationError) as excinfo:
        metric_direction(name)
    assert excinfo.value.field == "metric"
