"""The Hokusai routes mounted into the MLflow server: health, metrics, attestations, lineage, impact."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import lineage_graph
from mlflow_hokusai_plugin.core.pagination import decode_page_token, encode_page_token
from mlflow_hokusai_plugin.core.tags import parse_model_id
from mlflow_hokusai_plugin.server import route_table
from mlflow_hokusai_plugin.server import schemas as S
from mlflow_hokusai_plugin.server.errors import invalid_parameter, not_found
from mlflow_hokusai_plugin.server.state import hokusai_state as _state

blueprint = Blueprint("hokusai", __name__)


route = route_table.serving(blueprint)


@route("healthLive")
def health_live():
    return jsonify({"status": "ok"})


@route("healthReady")
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


@route("getMetrics")
def metrics_exposition():
    """Prometheus text format: every worker's counters, readiness and backup age at scrape time."""
    from mlflow_hokusai_plugin.runtime import metrics

    state = _state()
    collector = metrics.ScrapeTimeCollector(
        ready=lambda: all(check["ok"] for check in state.readiness().values()),
        last_backup=state.last_backup_time,
    )
    return current_app.response_class(
        metrics.exposition(collector), mimetype=None, content_type=metrics.CONTENT_TYPE
    )


@route("getAttestation")
def get_attestation(attestation_id: str):
    document = _state().hokusai_store().get_attestation(attestation_id)
    # Another project's attestation does not exist for a key scoped to this one.
    if document is None or not _document_in_scope(document):
        return not_found(f"attestation '{attestation_id}' does not exist")
    return jsonify(with_expiry(document))


@route("listAttestations")
def list_attestations(query: S.ListAttestationsQuery):
    documents = _state().hokusai_store().list_attestations(query.model_id)
    return jsonify({"attestations": [with_expiry(d) for d in documents if _document_in_scope(d)]})


@route("renewAttestation")
def renew_attestation(attestation_id: str):
    missing = f"attestation '{attestation_id}' does not exist"
    registrar = _state().registry_store().registrar
    refusal: list = []

    def may_renew(document: dict, model_id: str) -> bool:
        if not _document_in_scope(document):
            return False
        if _state().config.auth == "basic":
            from mlflow_hokusai_plugin.server.basic_auth import model_permission_problem

            problem = model_permission_problem(model_id.rpartition("/")[0])
            if problem is not None:
                refusal.append(problem)
                return False
        return True

    from mlflow_hokusai_plugin.runtime.request_context import current_actor, current_request_id

    document = registrar.renew(
        attestation_id, may_renew, actor=current_actor(), request_id=current_request_id()
    )
    if refusal:
        return refusal[0]
    if document is None:
        return not_found(missing)
    return jsonify(with_expiry(document))


def with_expiry(document: dict) -> dict:
    """The document as served: its EIP-712 part says whether its deadline has passed."""
    part = document.get("eip712")
    if not isinstance(part, dict):
        return document
    deadline = (((part.get("typed_data") or {}).get("message") or {}).get("payload") or {}).get("deadline")
    if not isinstance(deadline, int):
        return document  # the MintRequest types of before 2026-06-10 had no deadline
    return {**document, "eip712": {**part, "expired": time.time() > deadline}}


@blueprint.app_errorhandler(ValidationError)
def _validation_error(exc: ValidationError):
    return invalid_parameter(exc)


@route("getModelLineage")
def model_lineage(model_id: str, query: S.LineageQuery):
    if not _model_exists(model_id):
        return not_found(f"model '{model_id}' does not exist")
    graph = _state().hokusai_store().lineage(model_id, direction=query.direction, max_depth=query.max_depth)
    return jsonify(lineage_graph(model_id, query.direction, graph["edges"], truncated=graph["truncated"]))


@route("getContributorImpact")
def contributor_impact(address: str, query: S.ContributorImpactQuery):
    checksummed = to_checksum_address(address, "address")
    after = decode_page_token(query.page_token)
    impact = (
        _state()
        .hokusai_store()
        .contributor_impact(checksummed, max_results=query.max_results, after=after, project=_scope())
    )
    following = impact.pop("next")
    if following is not None:
        impact["next_page_token"] = encode_page_token(following)
    return jsonify(impact)


def _model_exists(model_id: str) -> bool:
    if "/" in model_id:
        parse_model_id(model_id)  # a malformed version is a 400 naming model_id, not a 404
    return _state().registry_store().model_exists(model_id)


@route("listApiKeys")
def list_api_keys():
    return jsonify({"keys": [record.to_dict() for record in _state().api_keys().list()]})


@route("createApiKey")
def create_api_key(body: S.CreateApiKeyRequest):
    key, record = _state().api_keys().create(body.name, body.role, body.project)
    _audit("api_key.create", f"api_key:{record.id}", after=record.to_dict())
    response = jsonify({"key": key, "record": record.to_dict()})
    response.status_code = 201
    return response


@route("revokeApiKey")
def revoke_api_key(key_id: int):
    try:
        record = _state().api_keys().revoke(key_id)
    except LookupError as exc:
        return not_found(str(exc))
    _audit("api_key.revoke", f"api_key:{record.id}", after=record.to_dict())
    return jsonify({"record": record.to_dict()})


def _scope() -> str | None:
    """The project a scoped key is limited to, or None."""
    principal = getattr(g, "hokusai_principal", None)
    return principal.project if principal is not None else None


def _document_in_scope(document: dict) -> bool:
    """Whether a scoped key may see an attestation: by the project signed into it, which no rename
    or delete changes (the document's model name is the one it was signed under)."""
    scope = _scope()
    if scope is None:
        return True
    try:
        return document_predicate(document)["model"].get("project") == scope
    except (KeyError, TypeError, ValueError):
        return False


def _audit(action: str, target: str, *, after: dict) -> None:
    from mlflow_hokusai_plugin.runtime.request_context import current_actor, current_request_id

    _state().registry_store().audit.append(
        actor=current_actor(), action=action, target=target, after=after, request_id=current_request_id()
    )
