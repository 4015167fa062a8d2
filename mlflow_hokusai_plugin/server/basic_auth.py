"""The Hokusai routes under ``HOKUSAI_AUTH=basic``: MLflow's basic-auth users and permissions.

MLflow's basic-auth app authenticates every request and authorizes MLflow's own routes; it knows
nothing of ours, and lets any signed-in user call a route it has no validator for. This hook, run
after MLflow's, applies the declared rule of each Hokusai route (``permissions.py``) in MLflow's
terms: ``admin`` routes need an MLflow admin; a route about a registered model needs MLflow's
permission on it (READ to read, EDIT to register a version); the rest need a signed-in user.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, request

from mlflow_hokusai_plugin.server.errors import error_response
from mlflow_hokusai_plugin.server.permissions import ADMIN, READ, Target, route_key
from mlflow_hokusai_plugin.server.request_scope import UndeterminedTarget, current_rule, registry_target
from mlflow_hokusai_plugin.server.state import EXTENSION

_logger = logging.getLogger(__name__)
_HOKUSAI = "hokusai/"
# basic-auth matches markers ending in "/" anywhere in the path: both /api and /ajax-api prefixes.
_MARKER = ".0/hokusai/"


def install_hokusai_route_permissions(app: Flask) -> None:
    """Register the hook; call after MLflow's basic-auth app has installed its own.

    Basic-auth fails closed on routes it has no validator for (``MLFLOW_BASIC_AUTH_FAIL_CLOSED``,
    on by default): it is told that the Hokusai routes are gated, here, by their own rule.
    """
    from mlflow.server import auth as basic

    markers = tuple(getattr(basic, "_KNOWN_UNGATED_ROUTE_MARKERS", ()))
    if _MARKER not in markers:
        basic._KNOWN_UNGATED_ROUTE_MARKERS = (*markers, _MARKER)

    @app.before_request
    def _authorize_hokusai_route():
        if request.url_rule is None or not route_key(request.url_rule.rule).startswith(_HOKUSAI):
            return None
        rule = current_rule()
        if rule.public:
            return None
        from mlflow.server import auth as basic

        username = basic.authenticate_request().username
        if basic.store.get_user(username).is_admin:
            return None
        if rule.role == ADMIN:
            return _denied(username, "this route needs an MLflow admin")
        if rule.target not in (Target.MODEL_ID_PATH, Target.MODEL_ID_ARG, Target.REGISTER):
            return None
        try:
            name = registry_target(rule).name
        except UndeterminedTarget as exc:
            return error_response(400, "INVALID_PARAMETER_VALUE", f"{exc.field}: {exc.message}")
        if not _model_exists(name):
            # Reading nothing; creating a new model is open to every user, as in MLflow.
            return None
        permission = basic._get_registered_model_permission(name)
        allowed = permission.can_read if rule.role == READ else permission.can_update
        if not allowed:
            return _denied(username, f"no {'READ' if rule.role == READ else 'EDIT'} permission on '{name}'")
        return None

    @app.after_request
    def _grant_the_creator(response: Any) -> Any:
        """A model that ``models/register`` created is managed by its creator, as MLflow's create is
        (only then: registering into a model one may EDIT must not make one its manager)."""
        if request.url_rule is None or response.status_code != 201:
            return response
        if current_rule().target != Target.REGISTER:
            return response
        from mlflow.server import auth as basic

        name = getattr(g, "hokusai_created_model", None)
        if not name:
            return response  # the model existed: the user keeps the permission they had
        username = basic.authenticate_request().username
        if basic.store.get_user(username).is_admin:
            return response
        try:
            basic.store.grant_user_permission(username, "registered_model", name, "MANAGE")
        except Exception:  # noqa: BLE001 - already granted (an earlier version): nothing to add
            _logger.debug("MANAGE on %s for %s not granted again", name, username, exc_info=True)
        return response


def _model_exists(name: str) -> bool:
    from flask import current_app

    return current_app.extensions[EXTENSION].registry_store().model_exists(name)


def _denied(username: str, why: str):
    _logger.warning("permission denied: user:%s on %s %s: %s", username, request.method, request.path, why)
    return error_response(403, "PERMISSION_DENIED", why)


def model_permission_problem(name: str, role: str = "write"):
    """None when the signed-in user may EDIT (``role`` write) or READ registered model ``name``,
    else the 403 answer; for Hokusai views whose model is found only once their record is read."""
    from mlflow.server import auth as basic

    username = basic.authenticate_request().username
    if basic.store.get_user(username).is_admin:
        return None
    if not _model_exists(name):
        return _denied(username, f"registered model '{name}' no longer exists")
    permission = basic._get_registered_model_permission(name)
    allowed = permission.can_read if role == READ else permission.can_update
    if not allowed:
        return _denied(username, f"no {'READ' if role == READ else 'EDIT'} permission on '{name}'")
    return None
