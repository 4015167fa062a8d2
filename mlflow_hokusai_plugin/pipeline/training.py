"""Train and measure scikit-learn models the way the pipeline compares them.

The improved model is the baseline's own estimator, cloned (same class, same hyperparameters,
no fitted state) and fitted on the training rows plus the contribution, so the only thing that
differs between the two is the data: the improvement is the contribution's.
"""

from __future__ import annotations

from typing import Any

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline.model_types import REGRESSION, SUPPORTED_MODEL_TYPES
from mlflow_hokusai_plugin.services import evaluation


def check_supported(model_type: str) -> str:
    """The model types whose models this pipeline can train and score.

    >>> check_supported("ranking")
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.core.errors.ValidationError: model_type: the pipeline trains and scores \
lead_scoring, classification and regression models; for ranking, call register_baseline and \
track_improvement from your own flow (docs/pipeline.md)
    """
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValidationError(
            "model_type",
            f"the pipeline trains and scores {', '.join(SUPPORTED_MODEL_TYPES[:-1])} and "
            f"{SUPPORTED_MODEL_TYPES[-1]} models; for {model_type}, call register_baseline and "
            "track_improvement from your own flow (docs/pipeline.md)",
        )
    return model_type


def default_benchmark_metric(model_type: str) -> str:
    """``accuracy`` for classifiers, ``rmse`` (lower is better) for regressors.

    >>> default_benchmark_metric("lead_scoring"), default_benchmark_metric("regression")
    ('accuracy', 'rmse')
    """
    return "rmse" if model_type == REGRESSION else "accuracy"


def default_estimator(model_type: str) -> Any:
    """The estimator a baseline is trained with when the pipeline trains it (the bundled sample)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    final = Ridge() if model_type == REGRESSION else LogisticRegression(max_iter=2000)
    return make_pipeline(StandardScaler(), final)


def estimator_spec(estimator: Any) -> str:
    """A stable description of an unfitted estimator (class and hyperparameters), for identities."""
    params = estimator.get_params(deep=True)
    simple = {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool, type(None)))}
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}{sorted(simple.items())}"


def split(frame: Any, label_column: str) -> tuple[Any, Any]:
    """Features and labels of a frame that holds ``label_column``."""
    return frame.drop(columns=[label_column]), frame[label_column]


def fit(estimator: Any, frame: Any, label_column: str) -> Any:
    """A fresh clone of ``estimator`` fitted on ``frame``."""
    from sklearn.base import clone

    features, labels = split(frame, label_column)
    try:
        return clone(estimator).fit(features, labels)
    except (ValueError, TypeError, RuntimeError) as exc:
        # The data does not suit the estimator (a label it cannot learn, a value it refuses).
        raise ValidationError("training_data", f"the model could not be fitted: {_first_line(exc)}") from None


def evaluate(model: Any, benchmark: Any, label_column: str, model_type: str) -> dict[str, float]:
    """The standard metrics of ``model`` on the benchmark."""
    features, labels = split(benchmark, label_column)
    try:
        predictions = model.predict(features)
        if model_type == REGRESSION:
            return evaluation.regression_metrics(labels, predictions)
        scores = evaluation.positive_scores(model, features)
        return evaluation.classification_metrics(labels, predictions, scores)
    except (ValueError, TypeError, KeyError) as exc:
        # A regressor scored as a classifier, columns it was not trained on, labels of another kind.
        raise ValidationError(
            "benchmark", f"the {model_type} model cannot be scored on the benchmark: {_first_line(exc)}"
        ) from None


def require_metric(metrics: dict[str, float], metric: str, whose: str) -> None:
    """The benchmark metric must be among what was measured (auroc needs class scores)."""
    if metric not in metrics:
        raise ValidationError(
            "benchmark_metric", f"'{metric}' could not be measured for {whose}; measured {sorted(metrics)}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
