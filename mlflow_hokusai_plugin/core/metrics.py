"""Metric deltas between a baseline and a candidate model, and the DeltaOne score.

One DeltaOne is one percentage point (100 basis points) of improvement on the benchmark metric.
Scores travel as integer basis points, computed on the decimal form of the metric, so the number a
human reads in MLflow (0.8234) is the number the on-chain verifier sees (8234), without float fuzz.
The registry stores the scores and the DeltaOne as 64-bit integers of basis points, so
:func:`compute_improvement` refuses a metric whose score (or improvement) would not fit one.
"""

import math
import numbers
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.storage_bounds import SCORE_BPS_MAX, SCORE_BPS_MIN

HIGHER = "higher"
LOWER = "lower"

HIGHER_IS_BETTER = frozenset({"accuracy", "auroc", "f1_score", "precision", "recall"})
LOWER_IS_BETTER = frozenset({"loss", "log_loss", "rmse", "mae", "mse"})
STANDARD_METRICS = ("accuracy", "precision", "recall", "f1_score", "auroc")

# Read-only, because it is the default argument of weighted_score: a caller mutating it would
# silently change every later score.
DEFAULT_SCORE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"accuracy": 1.0, "auroc": 0.8, "f1_score": 0.9, "precision": 0.7, "recall": 0.7}
)

# Float subtraction leaves noise in the last bits (0.82 - 0.75 = 0.06999999999999995); metrics are
# never meaningful to 12 decimals, so rounding there removes the noise and nothing else.
_DELTA_DECIMALS = 12
_BPS_PER_UNIT = Decimal(10000)
_DECIMAL = Context(prec=50)


def metric_direction(name: str, directions: Mapping[str, str] | None = None) -> str:
    """Return ``"higher"`` or ``"lower"``: which way ``name`` gets better.

    ``directions`` (``{"my_metric": "higher"}``) configures metrics not known here and overrides
    the defaults.

    >>> metric_direction("rmse")
    'lower'
    >>> metric_direction("ndcg", {"ndcg": "higher"})
    'higher'
    """
    if not isinstance(name, str) or not name:
        raise ValidationError("metric", f"must be a non-empty metric name, got {name!r}")
    directions = _check_directions(directions)
    if name in directions:
        return directions[name]
    if name in HIGHER_IS_BETTER:
        return HIGHER
    if name in LOWER_IS_BETTER:
        return LOWER
    raise ValidationError(
        f"directions.{name}",
        f"no known direction for metric {name!r}: configure it with "
        f'directions={{"{name}": "higher"}} (or "lower")',
    )


def check_metric_value(name: str, value: object, field: str) -> float:
    """Return ``value`` as a float if it is a finite number, else raise naming ``field``.

    ``name`` is the metric, used in the message. Booleans and numeric strings are refused: they
    are a sign that the wrong thing was logged.

    >>> check_metric_value("accuracy", 1, "new_metrics.accuracy")
    1.0
    """
    return _finite_number(value, field, f"metric {name!r}")


def to_bps(value: float, field: str = "value") -> int:
    """Convert a metric to basis points, rounding half away from zero on its decimal form.

    >>> to_bps(0.8234)
    8234
    >>> to_bps(0.00005)
    1
    >>> to_bps(-0.00005)
    -1
    """
    number = _finite_number(value, field, "the value")
    if isinstance(value, numbers.Integral):
        return int(value) * 10000
    # repr() is the shortest decimal that round-trips, i.e. what the user logged; Decimal(float)
    # would be the binary expansion (0.00005 -> 0.0000500000000000000023...). A private context
    # keeps the caller's decimal settings out, and its precision holds any float repr times 10^4.
    scaled = _DECIMAL.multiply(Decimal(repr(number)), _BPS_PER_UNIT)
    return int(scaled.to_integral_value(rounding=ROUND_HALF_UP, context=_DECIMAL))


def metric_delta(name: str, baseline_value: float, new_value: float, direction: str) -> dict:
    """Compare one metric of the candidate with the baseline.

    ``relative_delta`` is ``None`` when the baseline is 0 (no meaningful ratio). ``improvement``
    is true only when the candidate is strictly better in the metric's direction.

    >>> metric_delta("accuracy", 0.75, 0.82, "higher")["absolute_delta"]
    0.07
    >>> metric_delta("rmse", 0.5, 0.4, "lower")["improvement"]
    True
    """
    baseline = check_metric_value(name, baseline_value, f"baseline_metrics.{name}")
    new = check_metric_value(name, new_value, f"new_metrics.{name}")
    direction = _check_direction(direction, f"directions.{name}")
    absolute = new - baseline
    if not math.isfinite(absolute):
        raise ValidationError(f"new_metrics.{name}", f"metric {name!r}: the difference overflows")
    absolute = _clean(absolute)
    relative = None if baseline == 0 else absolute / abs(baseline)
    if relative is not None and not math.isfinite(relative):
        # A tiny baseline (1e-320, say): the ratio is infinite, which no JSON document can carry.
        raise ValidationError(
            f"new_metrics.{name}",
            f"metric {name!r}: the difference relative to the baseline's {baseline!r} overflows",
        )
    relative = None if relative is None else _clean(relative)
    improvement = absolute > 0 if direction == HIGHER else absolute < 0
    return {
        "baseline_value": baseline,
        "new_value": new,
        "absolute_delta": absolute,
        "relative_delta": relative,
        "improvement": improvement,
        "direction": direction,
    }


def compute_metric_deltas(
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    metrics: Iterable[str] | None = None,
    directions: Mapping[str, str] | None = None,
) -> dict[str, dict]:
    """Compute :func:`metric_delta` for several metrics, ordered by metric name.

    With ``metrics=None`` every baseline metric with a known or configured direction is compared
    (runs log many other things, which are skipped); each of them must also be in
    ``new_metrics``, so a candidate cannot hide a regression by not logging it. An explicit
    ``metrics`` list must be present on both sides and have a direction.

    >>> deltas = compute_metric_deltas({"accuracy": 0.75, "epoch": 3}, {"accuracy": 0.82})
    >>> list(deltas), deltas["accuracy"]["improvement"]
    (['accuracy'], True)
    """
    baseline_metrics = _check_metrics_mapping(baseline_metrics, "baseline_metrics")
    new_metrics = _check_metrics_mapping(new_metrics, "new_metrics")
    directions = _check_directions(directions)
    if metrics is None:
        names = [n for n in baseline_metrics if _has_direction(n, directions)]
    else:
        names = _check_metric_names(metrics)
        for name in names:
            _require_present(baseline_metrics, name, "baseline_metrics")
    for name in names:
        _require_present(new_metrics, name, "new_metrics")
    return {
        name: metric_delta(
            name,
            baseline_metrics[name],
            new_metrics[name],
            metric_direction(name, directions),
        )
        for name in sorted(set(names))
    }


def signed_improvement(delta: Mapping) -> float:
    """Return a delta's ``absolute_delta`` oriented so that positive means better.

    >>> signed_improvement(metric_delta("rmse", 0.5, 0.4, "lower"))
    0.1
    """
    if not isinstance(delta, Mapping):
        raise ValidationError("delta", f"must be a metric delta mapping, got {type(delta).__name__}")
    for key in ("absolute_delta", "direction"):
        if key not in delta:
            raise ValidationError(f"delta.{key}", "missing")
    absolute = check_metric_value("absolute_delta", delta["absolute_delta"], "delta.absolute_delta")
    direction = _check_direction(delta["direction"], "delta.direction")
    # "+ 0.0" turns -0.0 into 0.0, which would otherwise print as a regression.
    return (absolute if direction == HIGHER else -absolute) + 0.0


def delta_one_bps(baseline_value: float, new_value: float, direction: str = HIGHER) -> int:
    """The verifier's ``deltaInBps``: the improvement in basis points, never negative.

    >>> delta_one_bps(0.75, 0.82)  # 7 DeltaOnes
    700
    >>> delta_one_bps(0.82, 0.75)
    0
    >>> delta_one_bps(0.30, 0.25, "lower")
    500
    """
    baseline = to_bps(baseline_value, "baseline_value")
    candidate = to_bps(new_value, "new_value")
    direction = _check_direction(direction, "direction")
    gain = candidate - baseline if direction == HIGHER else baseline - candidate
    return max(0, gain)


def weighted_score(
    deltas: Mapping[str, float], weights: Mapping[str, float] = DEFAULT_SCORE_WEIGHTS
) -> float:
    """The older pipeline's multi-metric score: sum of weight * delta, times 100, at least 0.

    Only metrics present in both ``deltas`` and ``weights`` count.

    >>> weighted_score({"accuracy": 0.04, "auroc": 0.03})
    6.4
    """
    deltas = _check_metrics_mapping(deltas, "deltas")
    weights = _check_metrics_mapping(weights, "weights")
    total = 0.0
    for name in sorted(deltas.keys() & weights.keys()):
        weight = check_metric_value(name, weights[name], f"weights.{name}")
        delta = check_metric_value(name, deltas[name], f"deltas.{name}")
        total += weight * delta
    return round(max(0.0, total * 100), 2) + 0.0


def recommend(improvements: Mapping[str, float], threshold: float = 0.01) -> str:
    """The ``compare_models`` decision over direction-oriented improvements (positive = better).

    Any metric worse by more than ``threshold`` rejects; two or more metrics better by more than
    ``threshold`` accept; exactly one asks for a review; anything else rejects.

    >>> recommend({"accuracy": 0.02, "auroc": 0.015})
    'ACCEPT'
    >>> recommend({"accuracy": 0.02, "auroc": 0.01})
    'REVIEW'
    >>> recommend({"accuracy": 0.05, "auroc": 0.03, "recall": -0.02})
    'REJECT'
    """
    improvements = _check_metrics_mapping(improvements, "improvements")
    limit = check_metric_value("threshold", threshold, "threshold")
    if limit < 0:
        raise ValidationError("threshold", f"must not be negative, got {limit}")
    # Rounded like metric_delta, so that 0.76 - 0.75 counts as exactly 0.01 (not "more than").
    values = [
        _clean(check_metric_value(name, value, f"improvements.{name}"))
        for name, value in improvements.items()
    ]
    if any(v < -limit for v in values):
        return "REJECT"
    better = sum(1 for v in values if v > limit)
    if better >= 2:
        return "ACCEPT"
    if better == 1:
        return "REVIEW"
    return "REJECT"


def compute_improvement(
    baseline_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    benchmark_metric: str,
    metrics: Iterable[str] | None = None,
    directions: Mapping[str, str] | None = None,
) -> dict:
    """Everything the registry and the attestation say about a candidate versus its baseline.

    The benchmark metric drives DeltaOne and is always among ``metric_deltas``; the other metrics
    feed the weighted score and the recommendation.

    >>> result = compute_improvement({"accuracy": 0.75}, {"accuracy": 0.82}, "accuracy")
    >>> result["delta_one_bps"], result["delta_one"], result["recommendation"]
    (700, 7.0, 'REVIEW')
    """
    if not isinstance(benchmark_metric, str) or not benchmark_metric:
        raise ValidationError("benchmark_metric", "must be a non-empty metric name")
    baseline_metrics = _check_metrics_mapping(baseline_metrics, "baseline_metrics")
    new_metrics = _check_metrics_mapping(new_metrics, "new_metrics")
    _require_present(baseline_metrics, benchmark_metric, "baseline_metrics")
    _require_present(new_metrics, benchmark_metric, "new_metrics")
    direction = metric_direction(benchmark_metric, directions)
    if metrics is not None:
        metrics = [*_check_metric_names(metrics), benchmark_metric]
    deltas = compute_metric_deltas(baseline_metrics, new_metrics, metrics, directions)
    baseline_bps = _storable_score(baseline_metrics, benchmark_metric, "baseline_metrics")
    candidate_bps = _storable_score(new_metrics, benchmark_metric, "new_metrics")
    gain_bps = delta_one_bps(baseline_metrics[benchmark_metric], new_metrics[benchmark_metric], direction)
    if gain_bps > SCORE_BPS_MAX:
        raise ValidationError(
            f"new_metrics.{benchmark_metric}",
            f"metric {benchmark_metric!r}: an improvement of {gain_bps} bps does not fit the 64-bit "
            "integer the registry keeps DeltaOne in",
        )
    signed = {name: signed_improvement(delta) for name, delta in deltas.items()}
    return {
        "benchmark_metric": benchmark_metric,
        "direction": direction,
        "baseline_score_bps": baseline_bps,
        "candidate_score_bps": candidate_bps,
        "delta_one_bps": gain_bps,
        "delta_one": gain_bps / 100,
        "metric_deltas": deltas,
        "improved_metrics": sorted(n for n, d in deltas.items() if d["improvement"]),
        "degraded_metrics": sorted(n for n, v in signed.items() if v < 0),
        "weighted_score": weighted_score(signed),
        "recommendation": recommend(signed),
    }


def _storable_score(values: Mapping[str, float], name: str, side: str) -> int:
    """The score of ``values[name]`` in basis points, refused if it does not fit a 64-bit integer."""
    field = f"{side}.{name}"
    score = to_bps(values[name], field)
    if not SCORE_BPS_MIN <= score <= SCORE_BPS_MAX:
        raise ValidationError(
            field,
            f"metric {name!r} is {values[name]!r}: too large to store (scores are kept as 64-bit "
            f"integers of basis points, so a benchmark metric must lie within "
            f"±{SCORE_BPS_MAX // 10000:.3e})",
        )
    return score


def _finite_number(value: object, field: str, label: str) -> float:
    if value is None:
        raise ValidationError(field, f"{label} has no value")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(field, f"{label} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(field, f"{label} is too large to be a metric") from None
    if not math.isfinite(number):
        raise ValidationError(field, f"{label} must be a finite number, got {number}")
    return number


def _clean(value: float) -> float:
    # "+ 0.0" normalises -0.0, which rounding tiny negative noise produces.
    return round(value, _DELTA_DECIMALS) + 0.0


def _check_direction(direction: object, field: str) -> str:
    if direction not in (HIGHER, LOWER):
        raise ValidationError(field, f'must be "higher" or "lower", got {direction!r}')
    return direction


def _check_directions(directions: object) -> Mapping[str, str]:
    if directions is None:
        return {}
    if not isinstance(directions, Mapping):
        raise ValidationError(
            "directions",
            f'must map metric names to "higher" or "lower", got {type(directions).__name__}',
        )
    for name, direction in directions.items():
        if not isinstance(name, str):
            raise ValidationError("directions", f"metric names must be strings, got {name!r}")
        _check_direction(direction, f"directions.{name}")
    return directions


def _has_direction(name: str, directions: Mapping[str, str]) -> bool:
    return name in directions or name in HIGHER_IS_BETTER or name in LOWER_IS_BETTER


def _check_metrics_mapping(value: object, field: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must map metric names to numbers, got {type(value).__name__}")
    for name in value:
        if not isinstance(name, str):
            raise ValidationError(field, f"metric names must be strings, got {name!r}")
    return value


def _check_metric_names(metrics: object) -> list[str]:
    # A bare string is iterable too: "accuracy" would silently become eight one-letter metrics.
    if isinstance(metrics, str | bytes) or not isinstance(metrics, Iterable):
        raise ValidationError("metrics", f"must be a list of metric names, got {type(metrics).__name__}")
    names = list(metrics)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ValidationError(f"metrics[{i}]", f"must be a metric name, got {name!r}")
    return names


def _require_present(values: Mapping, name: str, side: str) -> None:
    if name not in values:
        raise ValidationError(f"{side}.{name}", f"missing: metric {name!r} was not logged")
