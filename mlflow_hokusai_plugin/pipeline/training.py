"""Train and measure scikit-learn models the way the pipeline compares them.

The improved model is the baseline's own estimator, cloned (same class, same hyperparameters,
no fitted state) and fitted on the training rows plus the contribution, so the only thing that
differs between the two is the data: the improvement is the contribution's.
"""

from __future__ import annotations

from typing import Any

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline.contributed_data import CLASSIFICATION_TYPES
from mlflow_hokusai_plugin.services import evaluation

REGRESSION = "regression"
SUPPORTED_MODEL_TYPES = (*CLASSIFICATION_TYPES, REGRESSION)


def check_supported(model_type: str) -> str:
    """The model types whose models this pipeline can train and score.

    >>> check_supported("ranking")
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.core.errors.ValidationError: model_type: the pipeline trains and scores \
classification, lead_scoring and regression models; for ranking, call register_baseline and \
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
    except (ValueError, TypeError) as exc:
        raise ValidationError("training_data", f"the model could not be fitted: {exc}") from None


def evaluate(model: Any, benchmark: Any, label_column: str, model_type: str) -> dict[str, float]:
    """The standard metrics of ``model`` on the benchmark."""
    features, labels = split(benchmark, label_column)
    try:
        predictions = model.predict(features)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError("benchmark", f"the model cannot score the benchmark: {exc}") from None
    if model_type == REGRESSION:
        return evaluation.regression_metrics(labels, predictions)
    return evaluation.classification_metrics(labels, predictions, evaluation.positive_scores(model, features))
