"""The ``hokusai_api`` blueprint: registration, verification, the unified registry, the API description.

``POST /models/register`` does what MLflow's own create-registered-model and create-model-version
handlers do, through the same registry store, so the Hokusai hook validates and attests exactly as
for a plain MLflow client. Request bodies are validated by the Pydantic models of ``schemas``; the
OpenAPI document (``GET /openapi.json``) is generated from the same models.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from google.protobuf.descriptor import FieldDescriptor
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException
from werkzeug.exceptions import HTTPException

from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document, verify_envelope
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import lineage_graph
from mlflow_hokusai_plugin.db.idempotency import IdempotencyStore, request_hash
from mlflow_hokusai_plugin.db.projects import unified_registry
from mlflow_hokusai_plugin.runtime.request_context import basic_auth_username
from mlflow_hokusai_plugin.server import route_table, routes
from mlflow_hokusai_plugin.server import schemas as S
from mlflow_hokusai_plugin.server.errors import error_response, invalid_parameter, not_found
from mlflow_hokusai_plugin.server.openapi import DOCS_CSP, docs_html, openapi_document
from mlflow_hokusai_plugin.server.request_parsing import NonFinite, body_data, strict_json
from mlflow_hokusai_plugin.server.route_table import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER
from mlflow_hokusai_plugin.server.state import hokusai_state as _state

_logger = logging.getLogger(__name__)

blueprint = Blueprint("hokusai_api", __name__)

_HOKUSAI_PREFIXES = (routes.API_PREFIX + "/", routes.AJAX_API_PREFIX + "/")


route = route_table.serving(blueprint)


class _NotFound(Exception):
    """A resource the request names does not exist: 404 RESOURCE_DOES_NOT_EXIST."""


@blueprint.errorhandler(_NotFound)
def _not_found(exc: _NotFound):
    return not_found(str(exc))


@blueprint.before_app_request
def _refuse_unstorable_text():
    """Path segments, query parameters and JSON bodies of the other Hokusai routes: no NUL, and
    no number that is not finite.

    PostgreSQL cannot compare or store a string with a NUL character (psycopg2 raises before the
    query is sent): without this check such a request is a 500. NaN, Infinity and 1e999 (which
    parses as infinity) cannot be stored either. This blueprint's own routes check their bodies
    field by field (``schemas.Text``, and ``_json``).
    """
    if not request.path.startswith(_HOKUSAI_PREFIXES) or request.blueprint == blueprint.name:
        return None
    values = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype == "application/json":
        try:
            found = S.find_bad_text(strict_json(request.get_data(cache=True)))
        except NonFinite as exc:
            return invalid_parameter(exc)
        except ValidationError:
            found = None  # not JSON: the route says so itself
        if found:
            return invalid_parameter(ValidationError(*found))
    for name, value in values:
        problem = S.text_problem(value) if isinstance(value, str) else None
        if problem:
            return invalid_parameter(ValidationError(name, problem))
    return None


# MLflow's error codes for the HTTP errors Flask and Werkzeug raise themselves.
_HTTP_ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    413: "REQUEST_TOO_LARGE",
    429: "REQUEST_LIMIT_EXCEEDED",
}


def _is_api_path(path: str) -> bool:
    """Whether ``path`` is under ``/api/`` or ``/ajax-api/`` (after MLflow's ``--static-prefix``)."""
    prefix = os.environ.get("_MLFLOW_STATIC_PREFIX", "").rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return path.startswith(("/api/", "/ajax-api/"))


@blueprint.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    """An HTTP error Flask raises itself on an API path (no route, a method the route does not take,
    an unhandled exception): MLflow's shape, not an HTML page. Elsewhere (the UI) left as it is.
    """
    if not _is_api_path(request.path):
        return exc
    status = exc.code or 500
    if status == 404 and request.path.startswith(_HOKUSAI_PREFIXES):
        message = f"no Hokusai route {request.method} {request.path}"
    elif status == 404:
        message = f"no route {request.method} {request.path}"
    elif status == 405:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or ()))
        message = f"{request.path} does not take {request.method}; it takes {allowed}"
    elif status >= 500:
        from mlflow_hokusai_plugin.runtime.request_context import current_request_id

        message = f"internal server error (request id {current_request_id()})"
    else:
        message = exc.description or exc.name
    code = _HTTP_ERROR_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    response = error_response(status, code, message)
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


# -- MLflow's request parsing -----------------------------------------------------------------------
# MLflow's handlers parse the request they are given into a protobuf message (``_get_request_message``)
# or read GraphQL from its body (``_graphql``), assuming a JSON object: anything else (a list, a
# number, ``NaN``, a JSON string that holds no JSON, a GraphQL query that is not a string or does not
# parse) fails inside MLflow with TypeError, AttributeError, JSONDecodeError or GraphQLSyntaxError, a
# 500. So does a string PostgreSQL cannot take (a NUL character, a lone surrogate): psycopg2 refuses
# it and MLflow answers INTERNAL_ERROR. Each such view is wrapped to refuse those requests first with
# a 400, after the authentication hooks (they run before any view), reading the request exactly as
# MLflow does.


# Views that measure the body MLflow parsed before anything else (``len(None)`` for no JSON body).
_JSON_BODY_REQUIRED = frozenset({"_log_batch"})


def _mlflow_request_problem(descriptor: Any) -> tuple[str, str] | None:
    """(field, problem) that keeps ``_get_request_message`` from reading the current request into
    a ``descriptor`` message, or None.

    It reads the query string of a GET that has one; else the body as JSON whatever its content type
    (``get_json(force=True, silent=True)``: not JSON is no body), decoding a JSON string once more.
    """
    for name, value in [*(request.view_args or {}).items(), *request.args.items(multi=True)]:
        problem = S.text_problem(value) if isinstance(value, str) else None
        if problem:
            return name, problem
    if request.method == "GET" and request.args:
        return _field_problem(descriptor, request.args.to_dict()) or _path_problem(request.args.get("path"))
    body = request.get_json(force=True, silent=True)
    if body is None and request.endpoint in _JSON_BODY_REQUIRED:
        return "body", "a JSON object is required"
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return "body", "is a JSON string that does not hold JSON"
    if body is not None and not isinstance(body, dict):
        return "body", f"must be a JSON object, not {_json_type(body)}"
    if not body:
        return None
    return S.find_bad_text(body) or _field_problem(descriptor, body) or _path_problem(body.get("path"))


def _path_problem(path: Any) -> tuple[str, str] | None:
    """MLflow's ``validate_path_is_safe`` percent-decodes an artifact path until it stops changing,
    at most 10 times, then raises ValueError (a 500): ``%25252525...`` or many leading slashes
    (which ``urlunparse`` keeps shortening) never settle."""
    if not isinstance(path, str):
        return None
    from mlflow.utils.uri import _decode

    try:
        _decode(path)
    except ValueError:
        return "path", "is not an artifact path (it does not settle when percent-decoded)"
    return None


_INTEGER_TYPES = frozenset(
    getattr(FieldDescriptor, f"TYPE_{name}")
    for name in ("INT32", "INT64", "UINT32", "UINT64", "SINT32", "SINT64")
    + ("FIXED32", "FIXED64", "SFIXED32", "SFIXED64")
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def _field_problem(descriptor: Any, data: dict) -> tuple[str, str] | None:
    """The (field, problem) of a top-level value that MLflow's handler validators cannot take.

    When protobuf parsing fails, MLflow runs its validators on the raw values, and they assume more
    than they check: ``int(x)`` of an integer or enum field (a string such as ``"1.0"`` or
    ``"1e3"``, which protobuf itself accepts: ValueError; null, an array, an object: TypeError;
    ``Infinity``: OverflowError), ``float(x)`` of a float field (null, an array, an object), and
    ``item.get(...)`` of each item of a list of messages (AttributeError).
    """
    if descriptor is None:
        return None
    for field in descriptor.fields:
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:  # protobuf before 5.28
            repeated = field.label == FieldDescriptor.LABEL_REPEATED
        for key in dict.fromkeys((field.name, field.json_name)):
            if key not in data:
                continue
            problem = _value_problem(field, repeated, data[key])
            if problem:
                return key, f"{problem}, got {json.dumps(data[key])[:40]}"
    return None


def _value_problem(field: Any, repeated: bool, value: Any) -> str | None:
    if repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, list):
            if any(not isinstance(item, dict) for item in value):
                return "must be an array of objects"
        return None
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return None
    if isinstance(value, (list, dict)):
        return "must be a single value"
    if field.type in _INTEGER_TYPES:
        return None if _integer_like(value) else "must be an integer"
    if field.type == FieldDescriptor.TYPE_ENUM:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return f"must be one of {', '.join(v.name for v in field.enum_type.values)}"
    if field.type in _FLOAT_TYPES and value is None:
        return "must be a number"
    return None


def _integer_like(value: Any) -> bool:
    """Whether ``int(value)`` gives the integer a client meant."""
    if isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return False
        return True
    return False


def _model_version_artifact_problem() -> tuple[str, str] | None:
    """(field, problem) that keeps MLflow's ``/model-versions/get-artifact`` view from serving the
    current request, or None: it reads ``name``, ``version`` (``int(None)`` when missing) and
    ``path`` (a KeyError when missing) from the query string."""
    for name, value in request.args.items(multi=True):
        problem = S.text_problem(value)
        if problem:
            return name, problem
    for name in ("name", "version", "path"):
        if not request.args.get(name):
            return name, "is required"
    if not _integer_like(request.args["version"]):
        return "version", f"must be an integer, got {request.args['version'][:40]!r}"
    return _path_problem(request.args["path"])


def _run_artifact_problem() -> tuple[str, str] | None:
    """(field, problem) that keeps MLflow's ``/get-artifact`` view from serving the current request,
    or None: it reads ``run_id`` (or ``run_uuid``) and ``path`` (a KeyError when missing)."""
    for name, value in request.args.items(multi=True):
        problem = S.text_problem(value)
        if problem:
            return name, problem
    if not (request.args.get("run_id") or request.args.get("run_uuid")):
        return "run_id", "is required"
    if not request.args.get("path"):
        return "path", "is required"
    return _path_problem(request.args["path"])


def _graphql_problem() -> tuple[str, str] | None:
    """(field, problem) that keeps MLflow's GraphQL view from running the current request, or None.

    It reads ``query``, ``variables`` and ``operationName`` from a JSON body only, a GET's too.
    """
    from graphql import GraphQLError, parse

    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return "body", "must be a JSON object with a GraphQL query (GraphQL is read from the body only)"
    query, variables, operation = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str):
        return "query", f"must be a string, not {_json_type(query)}"
    if variables is not None and not isinstance(variables, dict):
        return "variables", f"must be an object, not {_json_type(variables)}"
    if operation is not None and not isinstance(operation, str):
        return "operationName", f"must be a string, not {_json_type(operation)}"
    found = S.find_bad_text(body)
    if found:
        return found
    try:
        parse(query)
    except GraphQLError as exc:
        return "query", exc.message
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _guarded(view, problem_of):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        problem = problem_of()
        if problem:
            return invalid_parameter(ValidationError(*problem))
        return view(*args, **kwargs)

    guarded.hokusai_guarded = True
    return guarded


def _mlflow_message_endpoints() -> dict[str, Any]:
    """Flask endpoint -> protobuf request descriptor of MLflow's services (None: several).

    Not the artifact service: its views stream their bodies, which must not be read here.
    """
    from mlflow.protos import databricks_pb2
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.protos.service_pb2 import MlflowService
    from mlflow.protos.webhooks_pb2 import WebhookService
    from mlflow.server.handlers import get_handler

    found: dict[str, Any] = {}
    for service in (MlflowService, ModelRegistryService, WebhookService):
        for method in service.DESCRIPTOR.methods:
            if not method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                continue
            request_class = service().GetRequestClass(method)
            endpoint = get_handler(request_class).__name__
            descriptor = request_class.DESCRIPTOR
            found[endpoint] = descriptor if found.get(endpoint, descriptor) is descriptor else None
    return found


@blueprint.record_once
def _guard_mlflow_views(state) -> None:
    """Wrap MLflow's views (registered when ``mlflow.server`` was imported) with the checks."""
    views = state.app.view_functions
    checks = {
        endpoint: functools.partial(_mlflow_request_problem, descriptor)
        for endpoint, descriptor in _mlflow_message_endpoints().items()
    }
    checks["_graphql"] = _graphql_problem
    checks["serve_model_version_artifact"] = _model_version_artifact_problem
    checks["serve_artifacts"] = _run_artifact_problem
    for endpoint, problem_of in checks.items():
        view = views.get(endpoint)
        if view is not None and not getattr(view, "hokusai_guarded", False):
            views[endpoint] = _guarded(view, problem_of)


def _mlflow_error(exc) -> Response:
    """An MlflowException as MLflow's own handlers answer it: its error code and HTTP status."""
    response = Response(exc.serialize_as_json(), mimetype="application/json")
    response.status_code = exc.get_http_status_code()
    return response


@blueprint.app_errorhandler(MlflowException)
def _mlflow_exception(exc):
    """An MlflowException escaping a Hokusai route keeps MLflow's shape and status (never a 500 page).

    MLflow's own routes catch theirs; anything else is left to Flask as before.
    """
    if not request.path.startswith(_HOKUSAI_PREFIXES):
        raise exc
    return _mlflow_error(exc)


# -- POST /models/register ------------------------------------------------------------------------


def _principal() -> str:
    """Whose idempotency keys these are: the API-key principal, the basic-auth user, else anonymous."""
    principal = getattr(g, "hokusai_principal", None)
    name = getattr(principal, "name", None) or getattr(g, "hokusai_actor", None)
    username = None if name else basic_auth_username(request)
    if username:
        name = f"user:{username}"
    return str(name or "anonymous")[:256]


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not all(" " <= c <= "~" for c in key):
        raise ValidationError(IDEMPOTENCY_KEY_HEADER, "must be 1 to 128 printable ASCII characters")
    return key


@route("registerModel")
def register_model(body: S.RegisterModelRequest):
    key = _idempotency_key()
    if key is None:
        return _answer(*_register(body))
    store = IdempotencyStore(_state().hokusai_store().engine)
    claim = store.claim(_principal(), key, "POST " + routes.REGISTER_MODEL, request_hash(body_data()))
    if claim.outcome == "mismatch":
        return error_response(
            422,
            "INVALID_PARAMETER_VALUE",
            f"{IDEMPOTENCY_KEY_HEADER}: this key was already used for a different request; "
            "use a new key for a new request",
        )
    if claim.outcome == "busy":
        response = error_response(
            409,
            "RESOURCE_CONFLICT",
            f"{IDEMPOTENCY_KEY_HEADER}: a request with this key is still in progress; retry later",
        )
        response.headers["Retry-After"] = "5"
        return response
    if claim.outcome == "replay":
        response = _answer(claim.status_code, claim.response)
        response.headers[REPLAYED_HEADER] = "true"
        return response
    try:
        status, answer = _register(body)
    except BaseException:
        # A refused or failed registration is not remembered: a corrected retry may use the key.
        store.release(claim.record_id)
        raise
    store.complete(claim.record_id, status, answer)
    return _answer(status, answer)


def _answer(status: int, body: dict) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _register(body: S.RegisterModelRequest) -> tuple[int, dict]:
    from mlflow.server.handlers import _get_tracking_store

    registry = _state().registry_store()
    tracking = _get_tracking_store()
    if body.baseline:
        _baseline_version(registry, body.baseline)  # an unknown baseline is a 404, before anything
    registered = _registered_model(registry, body.name)
    existing_project = (registered.tags or {}).get(T.PROJECT) if registered is not None else None
    project, model_type, metric = body.project, body.model_type, body.benchmark_metric
    if existing_project and existing_project != project:
        raise ValidationError(
            "project",
            f"registered model '{body.name}' belongs to project '{existing_project}', not '{project}'",
        )

    source, run_id, logged_model_id = _resolve_source(body.model_uri, registry, tracking)
    if body.baseline is None:
        # A baseline whose run did not log the benchmark metric could never be improved upon.
        if not run_id:
            raise ValidationError("model_uri", "the model has no source run, so no benchmark metric to read")
        if metric not in _run(tracking, run_id).data.metrics:
            raise ValidationError(
                "benchmark_metric", f"the source run {run_id} of the baseline did not log metric '{metric}'"
            )

    tags = {T.PROJECT: project, T.MODEL_TYPE: model_type, T.BENCHMARK_METRIC: metric}
    if body.baseline:
        tags[T.BASELINE] = body.baseline
        tags[T.CONTRIBUTORS] = json.dumps(body.contributors_tag())
    if body.pipeline_run_id:
        tags[T.PIPELINE_RUN_ID] = body.pipeline_run_id
    description = body.description
    if not body.baseline:
        description = summary.replace_summary(
            description,
            summary.baseline_markdown(project=project, model_type=model_type, benchmark_metric=metric),
        )

    registrar = getattr(registry, "registrar", None)
    if body.baseline and registrar is not None:
        # The hook checks this again inside create_model_version; checking first means a refused
        # improvement does not even leave a new, empty registered model behind.
        registrar.validate(tags, run_id)
    if registered is None and not _create_registered_model(registry, body.name, project):
        # A concurrent request created it first: it must be of this project too.
        theirs = (registry.get_registered_model(body.name).tags or {}).get(T.PROJECT)
        if theirs not in (None, project):
            raise ValidationError(
                "project", f"registered model '{body.name}' belongs to project '{theirs}', not '{project}'"
            )
    try:
        version = registry.create_model_version(
            name=body.name,
            source=source,
            run_id=run_id,
            tags=[ModelVersionTag(k, v) for k, v in tags.items()],
            run_link=None,
            description=description,
            model_id=logged_model_id,
        )
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise _NotFound(exc.message) from None
        raise
    if logged_model_id:
        # As MLflow's handler does: the logged model learns which versions it backs.
        tracking.set_model_versions_tags(name=body.name, version=version.version, model_id=logged_model_id)
    if registered is not None and not existing_project:
        registry.set_registered_model_tag(body.name, RegisteredModelTag(T.PROJECT, project))
    _deliver_version_webhook(registry, version, source, run_id, tags, description)
    return 201, _registration_answer(registry.get_model_version(body.name, version.version), logged_model_id)


def _baseline_version(registry, baseline: str):
    name, number = T.parse_model_id(baseline, "baseline")
    try:
        return registry.get_model_version(name, str(number))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise _NotFound(f"baseline: model version '{baseline}' does not exist") from None
        raise


def _registered_model(registry, name: str):
    try:
        model = registry.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise ValidationError("name", exc.message) from None
        raise
    if model._is_prompt():
        raise ValidationError("name", f"'{name}' is a prompt, not a model")
    return model


def _create_registered_model(registry, name: str, project: str) -> bool:
    """Create the registered model, tagged with its project; False if a concurrent request did."""
    try:
        model = registry.create_registered_model(name=name, tags=[RegisteredModelTag(T.PROJECT, project)])
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return False
    # For basic-auth mode: this request created the model, so its user manages it.
    g.hokusai_created_model = name
    try:
        from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
        from mlflow.webhooks.delivery import deliver_webhook
        from mlflow.webhooks.types import RegisteredModelCreatedPayload

        deliver_webhook(
            event=WebhookEvent(WebhookEntity.REGISTERED_MODEL, WebhookAction.CREATED),
            payload=RegisteredModelCreatedPayload(
                name=model.name, tags={T.PROJECT: project}, description=model.description
            ),
            store=registry,
        )
    except Exception:  # noqa: BLE001 - webhooks are best effort, as in MLflow
        _logger.exception("webhook for registered model %s", name)
    return True


def _deliver_version_webhook(registry, version, source, run_id, tags, description) -> None:
    try:
        from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
        from mlflow.webhooks.delivery import deliver_webhook
        from mlflow.webhooks.types import ModelVersionCreatedPayload

        deliver_webhook(
            event=WebhookEvent(WebhookEntity.MODEL_VERSION, WebhookAction.CREATED),
            payload=ModelVersionCreatedPayload(
                name=version.name,
                version=str(version.version),
                source=source,
                run_id=run_id or None,
                tags=dict(tags),
                description=description or None,
            ),
            store=registry,
        )
    except Exception:  # noqa: BLE001
        _logger.exception("webhook for model version %s/%s", version.name, version.version)


def _run(tracking, run_id: str):
    try:
        return tracking.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise _NotFound(f"model_uri: run '{run_id}' does not exist") from None
        raise


def _resolve_source(model_uri: str, registry, tracking) -> tuple[str, str | None, str | None]:
    """(source, run_id, logged model id) of a model URI, as the MLflow client and handler resolve it."""
    if match := S.RUNS_URI.fullmatch(model_uri):
        run_id, path = match["run_id"], match["path"].strip("/")
        run = _run(tracking, run_id)
        # MLflow 3: a model logged in a run lives in a logged model named after its artifact path.
        found, token = [], None
        while True:
            page = tracking.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"name = '{path}'" if "'" not in path else None,
                page_token=token,
            )
            found += [m for m in page if m.source_run_id == run_id and m.name == path]
            token = page.token
            if not token:
                break
        if not found:
            raise _NotFound(f"model_uri: run '{run_id}' has no logged model named '{path}'")
        steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs else [])}
        chosen = max(found, key=lambda m: (steps.get(m.model_id, -1), m.creation_timestamp or 0))
        return f"models:/{chosen.model_id}", run_id, chosen.model_id
    if match := S.LOGGED_MODEL_URI.fullmatch(model_uri):
        model_id = match["model_id"]
        try:
            logged = tracking.get_logged_model(model_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise _NotFound(f"model_uri: logged model '{model_id}' does not exist") from None
            raise
        return f"models:/{model_id}", logged.source_run_id, model_id
    match = S.VERSION_URI.fullmatch(model_uri)
    if match is None:  # the request model already refused it; kept for a direct caller
        raise ValidationError("model_uri", f"expected {S.MODEL_URI_FORMS}")
    name, number = match["name"], match["version"]
    try:
        version = registry.get_model_version(name, number)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise _NotFound(f"model_uri: model version '{name}/{number}' does not exist") from None
        raise
    return f"models:/{name}/{version.version}", version.run_id, getattr(version, "model_id", None)


def _registration_answer(version, logged_model_id: str | None) -> dict:
    store = _state().hokusai_store()
    model_id = T.format_model_id(version.name, version.version)
    tags = dict(version.tags or {})
    edge = store.edge_of(model_id)
    upstream = store.lineage(model_id, direction="upstream")
    graph = lineage_graph(model_id, "upstream", upstream["edges"], truncated=upstream["truncated"])
    answer = {
        "model_id": model_id,
        "model_version": {
            "name": version.name,
            "version": str(version.version),
            "source": version.source,
            "run_id": version.run_id or None,
            # MLflow's SQL registry does not keep it; the version's source names it.
            "model_id": getattr(version, "model_id", None) or logged_model_id,
            "status": version.status,
            "description": version.description,
            "creation_timestamp": version.creation_timestamp,
            "last_updated_timestamp": version.last_updated_timestamp,
            "tags": tags,
            "aliases": list(version.aliases or []),
        },
        "lineage": graph,
        "deltas": edge["metric_deltas"] if edge else None,
        "delta_one_bps": edge["delta_one_bps"] if edge else None,
        "attestation_id": (edge or {}).get("attestation_id") or tags.get(T.ATTESTATION_ID),
        "attestation_status": tags.get(T.ATTESTATION_STATUS),
    }
    # The answer is what the OpenAPI document promises: checked by the same model.
    return S.RegisterModelResponse.model_validate(answer).model_dump(mode="json")


# -- POST /attestations/verify --------------------------------------------------------------------


@route("verifyAttestation")
def verify_attestation(body: S.VerifyAttestationRequest):
    attesters = [_state().attester] if body.attesters is None else body.attesters
    document = body.document
    # A document has "dsse"; anything else is taken for a bare envelope (and judged as one).
    verify = verify_document if "dsse" in document else verify_envelope
    verdict = verify(document, attesters, body.threshold)
    answer = {
        "valid": verdict.valid,
        "signers": list(verdict.signers),
        "failed_check": verdict.failed_check,
        "message": verdict.message,
        "attesters": list(dict.fromkeys(attesters)),
        "threshold": body.threshold,
        "statement": verdict.statement,
        "eip712": _with_expired(verdict.eip712),
    }
    return jsonify(S.VerifyAttestationResponse.model_validate(answer).model_dump(mode="json"))


def _with_expired(summary: dict | None) -> dict | None:
    if summary is None or summary.get("deadline") is None:
        return summary
    return {**summary, "expired": time.time() > summary["deadline"]}


# -- GET /projects --------------------------------------------------------------------------------


@route("listProjects")
def list_projects():
    projects = unified_registry(_state().hokusai_store().engine)
    scope = getattr(getattr(g, "hokusai_principal", None), "project", None)
    if scope is not None:
        # A key limited to one project sees that project only, as on every Hokusai route.
        projects = [project for project in projects if project["project"] == scope]
    return jsonify(S.ProjectsResponse.model_validate({"projects": projects}).model_dump(mode="json"))


# -- GET /openapi.json, GET /docs -----------------------------------------------------------------


@route("getOpenApi")
def openapi_json():
    return jsonify(openapi_document())


@route("getApiDocs")
def api_docs():
    response = Response(docs_html(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
