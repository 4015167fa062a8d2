"""Evaluate a model on labelled data with the standard Hokusai metric set."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_hokusai_plugin.core.errors import ValidationError


def classification_metrics(y_true: Any, y_pred: Any, y_score: Any | None = None) -> dict[str, float]:
    """accuracy, precision, recall, f1_score and (with scores) auroc of a binary classifier.

    >>> classification_metrics([0, 1, 1, 0], [0, 1, 0, 0])["accuracy"]
    0.75
    """
    from sklearn import metrics

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValidationError("test_data", f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    binary = len(np.unique(y_true)) <= 2
    average = "binary" if binary else "macro"
    result = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "precision": float(metrics.precision_score(y_true, y_pred, average=average, zero_division=0)),
        "recall": float(metrics.recall_score(y_true, y_pred, average=average, zero_division=0)),
        "f1_score": float(metrics.f1_score(y_true, y_pred, average=average, zero_division=0)),
    }
    if y_score is not None and binary and len(np.unique(y_true)) == 2:
        result["auroc"] = float(metrics.roc_auc_score(y_true, y_score))
    return result


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """rmse, mae and mse of a regressor."""
    from sklearn import metrics

    mse = float(metrics.mean_squared_error(y_true, y_pred))
    return {"mse": mse, "rmse": mse**0.5, "mae": float(metrics.mean_absolute_error(y_true, y_pred))}


def positive_scores(model: Any, features: Any) -> Any | None:
    """Scores of the positive class when the model can give them (for auroc), else None."""
    proba = getattr(model, "predict_proba", None)
    if proba is None:
        return None
    scores = np.asarray(proba(features))
    return scores[:, 1] if scores.ndim == 2 and scores.shape[1] == 2 else None
