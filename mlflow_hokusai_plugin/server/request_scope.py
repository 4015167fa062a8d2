"""What the current Flask request is, for authorization and rate limits: its declared rule and the
registered model (hence project) it targets, read exactly as the handler that will serve it reads it.

A scope check that reads a request differently from its handler can be walked around (a model named
in the query string while the body names another; a body MLflow decodes although it is not
``application/json``; a JSON body wrapped in a JSON string). So MLflow's registry requests are
parsed here with MLflow's own ``_get_request_message`` into the handler's own protobuf request
class, and the Hokusai routes with the parsing their views use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from flask import Flask, g, request

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.server.permissions import Rule, Target, route_key, rule_for

# The one registry route MLflow serves from a plain Flask view, reading the query string.
_ARTIFACT_DOWNLOAD = "/model-versions/get-artifact"
_VERSION_SET_TAG = "mlflow/model-versions/set-tag"
_MODEL_SET_TAG = "mlflow/registered-models/set-tag"
_MODEL_TAG_WRITES = (_MODEL_SET_TAG, "mlflow/registered-models/delete-tag")


class UndeterminedTarget(Exception):
    """The request's target cannot be read (MLflow would refuse it too): a 400, never allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RegistryTarget:
    """The registered model a request is about, and the project it declares for it (a creation's
    ``hokusai.project`` tag, the project a tag write moves it to; ``""``: out of every project)."""

    name: str | None
    declared_project: str | None = None


def install_route_rules(app: Flask) -> None:
    """Remember each request's declared rule on ``flask.g`` (first hook: auth and limits read it)."""

    @app.before_request
    def _classify() -> None:
        g.hokusai_rule = current_rule()


def current_rule() -> Rule:
    """The declared rule of the current request (computed once per request)."""
    rule = getattr(g, "hokusai_rule", None)
    if rule is None:
        rule = rule_for(request.method, request.url_rule.rule if request.url_rule is not None else None)
        g.hokusai_rule = rule
    return rule


def rate_bucket() -> str:
    """The rate-limit bucket of the current request.

    Tagging a version counts as a registration only when the tag is a Hokusai one (the last of the
    set attests the version); an unreadable request counts as one too, since MLflow refuses it.
    """
    rule = current_rule()
    if request.url_rule is None:
        return "read" if request.method in ("GET", "HEAD") else "write"
    if rule.bucket != "register":
        return rule.bucket
    if route_key(request.url_rule.rule) != _VERSION_SET_TAG:
        return rule.bucket
    try:
        key = _mlflow_message().key
    except UndeterminedTarget:
        return rule.bucket
    return rule.bucket if T.in_namespace(key) else "write"


def registry_target(rule: Rule) -> RegistryTarget:
    """The registered model the current request targets, for a rule whose target names one.

    Raises UndeterminedTarget when the request cannot be read the way its handler reads it.
    """
    if rule.target == Target.MODEL:
        route = route_key(request.url_rule.rule)
        if route == _ARTIFACT_DOWNLOAD:
            return RegistryTarget(_required(request.args.get("name"), "name"))
        message = _mlflow_message()
        name = _required(message.name, "name")
        # Setting a model's project moves it (with its versions) into that project, and deleting
        # it takes it out of every project: both name the project the model goes to.
        if route in _MODEL_TAG_WRITES and T.hokusai_key_of(message.key) == T.PROJECT:
            return RegistryTarget(name, message.value if route == _MODEL_SET_TAG else "")
        return RegistryTarget(name)
    if rule.target == Target.MODEL_CREATE:
        message = _mlflow_message()
        project = next((tag.value for tag in message.tags if tag.key == T.PROJECT), None)
        return RegistryTarget(_required(message.name, "name"), project or None)
    if rule.target == Target.MODEL_ID_PATH:
        return RegistryTarget(_model_name((request.view_args or {}).get("model_id"), "model_id"))
    if rule.target == Target.MODEL_ID_ARG:
        return RegistryTarget(_model_name(request.args.get("model_id"), "model_id"))
    if rule.target == Target.REGISTER:
        body = _hokusai_body()
        return RegistryTarget(_required(body.get("name"), "name"), _required(body.get("project"), "project"))
    raise ValueError(f"rule target {rule.target!r} names no registered model")


def _required(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise UndeterminedTarget(field, "is required (it names what the request is about)")
    return value


def _model_name(model_id: Any, field: str) -> str:
    """The registered-model name of ``name/version`` or of a bare name, as the Hokusai views split it."""
    model_id = _required(model_id, field)
    return model_id.split("/", 1)[0] or _required(None, field)


def _hokusai_body() -> dict:
    """The body as ``api_views._body`` reads it: the raw bytes, whatever the content type."""
    try:
        body = parse_json(request.get_data(cache=True), "body")
    except ValidationError as exc:
        raise UndeterminedTarget(exc.field, exc.message) from None
    if not isinstance(body, dict):
        raise UndeterminedTarget("body", "must be a JSON object")
    return body


def _mlflow_message() -> Any:
    """The current request parsed by MLflow into its handler's protobuf request (cached per request)."""
    cached = getattr(g, "hokusai_mlflow_message", None)
    if cached is not None:
        return cached
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_request_message

    request_class = _registry_request_classes().get((request.method, request.url_rule.rule))
    if request_class is None:
        raise UndeterminedTarget(
            "path", f"no MLflow registry request is declared for {request.url_rule.rule}"
        )
    try:
        message = _get_request_message(request_class(), flask_request=request)
    except MlflowException as exc:
        raise UndeterminedTarget("body", exc.message) from None
    except (ValueError, TypeError) as exc:
        # A double-encoded body that is not JSON inside its string, for one.
        raise UndeterminedTarget("body", f"cannot be read: {exc}") from None
    g.hokusai_mlflow_message = message
    return message


@functools.cache
def _registry_request_classes() -> dict[tuple[str, str], type]:
    """(method, Flask rule) -> the protobuf request class of every MLflow registry route."""
    from mlflow.protos import databricks_pb2
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.server.handlers import _get_paths

    service = ModelRegistryService()
    classes = {}
    for method in ModelRegistryService.DESCRIPTOR.methods:
        for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
            for path in _get_paths(endpoint.path, version=endpoint.since.major):
                classes[(endpoint.method, path)] = service.GetRequestClass(method)
    return classes
