"""Errors of the Hokusai routes, in MLflow's shape ``{"error_code": ..., "message": ...}``."""

from __future__ import annotations

from flask import Response, jsonify

from mlflow_hokusai_plugin.core.errors import ValidationError


def error_response(status: int, error_code: str, message: str) -> Response:
    response = jsonify({"error_code": error_code, "message": message})
    response.status_code = status
    return response


def invalid_parameter(exc: ValidationError) -> Response:
    return error_response(400, "INVALID_PARAMETER_VALUE", f"{exc.field}: {exc.message}")


def not_found(message: str) -> Response:
    return error_response(404, "RESOURCE_DOES_NOT_EXIST", message)
