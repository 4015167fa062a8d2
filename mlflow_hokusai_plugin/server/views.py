"""The Hokusai routes mounted into the MLflow server: health and attestations."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server.errors import invalid_parameter, not_found

blueprint = Blueprint("hokusai", __name__)


def _route(path: str, **options):
    """Register a view under both the /api and /ajax-api prefixes."""

    def decorate(view):
        for prefix, rule in zip(("api", "ajax"), routes.both(path), strict=True):
            blueprint.add_url_rule(rule, endpoint=f"{prefix}_{view.__name__}", view_func=view, **options)
        return view

    return decorate


def _state():
    return current_app.extensions["hokusai"]


@_route(routes.HEALTH_LIVE, methods=["GET"])
def health_live():
    return jsonify({"status": "ok"})


@_route(routes.HEALTH_READY, methods=["GET"])
def health_ready():
    checks = _state().readiness()
    ready = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if _state().ephemeral_key:
        body["warning"] = _state().dev_mode_banner
    failing = [name for name, check in checks.items() if not check["ok"]]
    if failing:
        body["message"] = f"not ready: {', '.join(failing)}"
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response


@_route(routes.GET_ATTESTATION, methods=["GET"])
def get_attestation(attestation_id: str):
    document = _state().hokusai_store().get_attestation(attestation_id)
    if document is None:
        return not_found(f"attestation '{attestation_id}' does not exist")
    return jsonify(document)


@_route(routes.LIST_ATTESTATIONS, methods=["GET"])
def list_attestations():
    model_id = request.args.get("model_id")
    if not model_id:
        return invalid_parameter(ValidationError("model_id", "is required"))
    return jsonify({"attestations": _state().hokusai_store().list_attestations(model_id)})


@blueprint.app_errorhandler(ValidationError)
def _validation_error(exc: ValidationError):
    return invalid_parameter(exc)
