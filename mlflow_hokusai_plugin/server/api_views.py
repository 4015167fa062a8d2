"""The ``hokusai_api`` blueprint: registration, verification, the unified registry, the API description.

``POST /models/register`` does what MLflow's own create-registered-model and create-model-version
handlers do, through the same registry store, so the Hokusai hook validates and attests exactly as
for a plain MLflow client. Request bodies are validated by the Pydantic models of ``schemas``; the
OpenAPI document (``GET /openapi.json``) is generated from the same models.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document, verify_envelope
from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import lineage_graph
from mlflow_hokusai_plugin.db.idempotency import IdempotencyStore, request_hash
from mlflow_hokusai_plugin.db.projects import unified_registry
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server import schemas as S
from mlflow_hokusai_plugin.server.errors import error_response, invalid_parameter, not_found
from mlflow_hokusai_plugin.server.openapi import (
    DOCS_CSP,
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    docs_html,
    openapi_document,
)

_logger = logging.getLogger(__name__)

blueprint = Blueprint("hokusai_api", __name__)

_HOKUSAI_PREFIXES = (routes.API_PREFIX + "/", routes.AJAX_API_PREFIX + "/")


_route = routes.on_both_prefixes(blueprint)


def _state():
    return current_app.extensions["hokusai"]


class _NotFound(Exception):
    """A resource the request names does not exist: 404 RESOURCE_DOES_NOT_EXIST."""


def _body(model: type[S.BaseModel]) -> tuple[Any, Any]:
    """The raw JSON body and ``model`` validated from it; bad JSON is a ValidationError (400)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ValidationError("body", "a JSON object is required")
    data = parse_json(raw, "body")
    return data, S.validate(model, data)


@blueprint.errorhandler(ValidationError)
def _validation_error(exc: ValidationError):
    return invalid_parameter(exc)


@blueprint.errorhandler(_NotFound)
def _not_found(exc: _NotFound):
    return not_found(str(exc))


@blueprint.before_app_request
def _refuse_unstorable_text():
    """Path segments, query parameters and JSON bodies of the other Hokusai routes: no NUL.

    PostgreSQL cannot compare or store a string with a NUL character (psycopg2 raises before the
    query is sent): without this check such a request is a 500. This blueprint's own routes check
    their bodies field by field (``schemas.Text``).
    """
    if not request.path.startswith(_HOKUSAI_PREFIXES) or request.blueprint == blueprint.name:
        return None
    values = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype == "application/json":
        try:
            found = S.find_bad_text(parse_json(request.get_data(cache=True), "body"))
        except ValidationError:
            found = None  # not JSON: the route says so itself
        if found:
            return invalid_parameter(ValidationError(*found))
    for name, value in values:
        problem = S.text_problem(value) if isinstance(value, str) else None
        if problem:
            return invalid_parameter(ValidationError(name, problem))
    return None


@blueprint.app_errorhandler(404)
def _no_such_route(exc):
    """A path under the Hokusai prefixes that no route serves: MLflow's shape, not an HTML page."""
    if not request.path.startswith(_HOKUSAI_PREFIXES):
        return exc
    return error_response(404, "ENDPOINT_NOT_FOUND", f"no Hokusai route {request.method} {request.path}")


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
    if not name and request.authorization is not None and request.authorization.username:
        name = f"user:{request.authorization.username}"
    return str(name or "anonymous")[:256]


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not all(" " <= c <= "~" for c in key):
        raise ValidationError(IDEMPOTENCY_KEY_HEADER, "must be 1 to 128 printable ASCII characters")
    return key


@_route(routes.REGISTER_MODEL, methods=["POST"])
def register_model():
    key = _idempotency_key()
    data, body = _body(S.RegisterModelRequest)
    if key is None:
        return _answer(*_register(body))
    store = IdempotencyStore(_state().hokusai_store().engine)
    claim = store.claim(_principal(), key, "POST " + routes.REGISTER_MODEL, request_hash(data))
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
    graph = lineage_graph(model_id, "upstream", store.lineage(model_id, direction="upstream")["edges"])
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


@_route(routes.VERIFY_ATTESTATION, methods=["POST"])
def verify_attestation():
    _, body = _body(S.VerifyAttestationRequest)
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
    }
    return jsonify(S.VerifyAttestationResponse.model_validate(answer).model_dump(mode="json"))


# -- GET /projects --------------------------------------------------------------------------------


@_route(routes.PROJECTS, methods=["GET"])
def list_projects():
    projects = unified_registry(_state().hokusai_store().engine)
    scope = getattr(getattr(g, "hokusai_principal", None), "project", None)
    if scope is not None:
        # A key limited to one project sees that project only, as on every Hokusai route.
        projects = [project for project in projects if project["project"] == scope]
    return jsonify(S.ProjectsResponse.model_validate({"projects": projects}).model_dump(mode="json"))


# -- GET /openapi.json, GET /docs -----------------------------------------------------------------


@_route(routes.OPENAPI, methods=["GET"])
def openapi_json():
    return jsonify(openapi_document())


@_route(routes.DOCS, methods=["GET"])
def api_docs():
    response = Response(docs_html(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
