"""The Hokusai routes, each declared once: path, method, role, how its project is found, and the
models of its query, body and answers.

Everything else is derived from :data:`OPERATIONS`: the views are registered with :func:`serving`
(rule and method from the declaration, the query and body parsed by its models before the view
runs), the permissions table (``permissions.route_table``), the rate-limit class, the OpenAPI
document and the docs page. A Flask rule under the Hokusai prefixes that no operation declares
fails ``tests/unit/test_route_table.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mlflow_hokusai_plugin.server import permissions as P
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server import schemas as S

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Operation:
    """One route: a Flask rule (as in ``routes``) and a method, with what it takes and answers.

    ``responses`` maps a status to (model or None, description); ``public`` operations need no
    credentials once authentication is on; ``media_type`` is that of the success answer.
    """

    method: str
    rule: str
    operation_id: str
    summary: str
    description: str
    tag: str
    responses: dict[int, tuple[type[BaseModel] | None, str]]
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # name -> description, or (description, schema) when it is not a non-empty string
    path_params: dict[str, str | tuple[str, dict]] = field(default_factory=dict)
    headers: tuple[dict, ...] = ()
    public: bool = False
    media_type: str = "application/json"
    request_example: dict | None = None
    # Who may call it and how its project is found (permissions.Rule); public routes need neither.
    role: str = P.READ
    target: str = P.Target.VIEW
    rate_class: str | None = None

    @property
    def access(self) -> P.Rule:
        """The route's entry in the permissions table."""
        return (
            P.Rule(P.PUBLIC, P.Target.SHARED)
            if self.public
            else P.Rule(self.role, self.target, self.rate_class)
        )

    @property
    def path(self) -> str:
        """The OpenAPI path of the rule: ``<path:model_id>`` becomes ``{model_id}``, under the API prefix."""
        return routes.API_PREFIX + re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", self.rule)


_BAD = (S.ErrorResponse, "Invalid request: error_code INVALID_PARAMETER_VALUE, message names the field.")
_MISSING = (S.ErrorResponse, "Not found: error_code RESOURCE_DOES_NOT_EXIST.")
LIMITED = (S.ErrorResponse, "Rate limited: error_code REQUEST_LIMIT_EXCEEDED; see Retry-After.")
UNAUTHENTICATED = (S.ErrorResponse, "No or bad credentials: error_code UNAUTHENTICATED.")
FORBIDDEN = (S.ErrorResponse, "The credentials may not do this: error_code PERMISSION_DENIED.")

_IDEMPOTENCY_HEADER = {
    "name": IDEMPOTENCY_KEY_HEADER,
    "in": "header",
    "required": False,
    "description": "1-128 printable ASCII characters. A retry with the same key and the same body replays "
    "the first successful answer (no new version, header Idempotent-Replayed: true); the same key with "
    "another body is a 422; while the first request with the key is still running a retry waits for it "
    "(up to 30 s), then gets a 409. Failed requests are not remembered. Keys are scoped to the caller "
    "and kept 24 h.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": S.IDEMPOTENCY_KEY_PATTERN},
}

_ALICE = S.EXAMPLE_ADDRESS

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        routes.HEALTH_LIVE,
        "healthLive",
        "Liveness",
        "Whether the server process answers.",
        "health",
        {200: (S.HealthLiveResponse, "The process is alive.")},
        public=True,
    ),
    Operation(
        "get",
        routes.HEALTH_READY,
        "healthReady",
        "Readiness",
        "Whether the server can serve: database, attester key, artifact store.",
        "health",
        {
            200: (S.HealthReadyResponse, "Ready."),
            503: (S.HealthReadyResponse, "Not ready: checks says which part fails."),
        },
        public=True,
    ),
    Operation(
        "get",
        routes.METRICS,
        "getMetrics",
        "Prometheus metrics",
        "Requests, registrations, attestations, DeltaOne awarded, auth failures and rate-limited requests "
        "(every worker's, when the server runs with --expose-prometheus), readiness and the last backup.",
        "health",
        {200: (None, "Prometheus text exposition format 0.0.4.")},
        public=True,
        media_type="text/plain",
    ),
    Operation(
        "post",
        routes.REGISTER_MODEL,
        "registerModel",
        "Register a model version",
        "Registers a baseline (baseline null) or an improvement of one. The registered model is created "
        "when missing (tagged hokusai.project); the version is created through MLflow's registry with the "
        "Hokusai tags, so the server validates it (benchmark metric and dataset digest of both source runs, "
        "contributors, no cycle) before anything is written, and attests an improvement. Answers the model "
        "id, the upstream lineage, the per-metric deltas, DeltaOne and the attestation.",
        "models",
        {
            201: (
                S.RegisterModelResponse,
                "Registered (or, with a replayed Idempotency-Key, registered before).",
            ),
            400: _BAD,
            404: (S.ErrorResponse, "The run, logged model, model version or baseline named does not exist."),
            409: (
                S.ErrorResponse,
                "RESOURCE_CONFLICT: a request with this Idempotency-Key is still running.",
            ),
            422: (
                S.ErrorResponse,
                "INVALID_PARAMETER_VALUE: the Idempotency-Key was used for another request.",
            ),
        },
        request=S.RegisterModelRequest,
        headers=(_IDEMPOTENCY_HEADER,),
        request_example={
            "name": "churn",
            "model_uri": "runs:/0123456789abcdef0123456789abcdef/model",
            "project": "churn",
            "model_type": "classification",
            "baseline": "churn/1",
            "benchmark_metric": "accuracy",
            "contributors": [{"address": _ALICE, "weight_bps": 10000}],
            "pipeline_run_id": "pipeline-42",
            "description": "trained with the March data",
        },
        role=P.WRITE,
        target=P.Target.REGISTER,
        rate_class="register",
    ),
    Operation(
        "get",
        routes.MODEL_LINEAGE,
        "getModelLineage",
        "Lineage of a model",
        "Baselines up to the root and/or successors of a model version, with each edge's DeltaOne and the "
        "DeltaOne accumulated from the root. A bare registered-model name gives the lineage of all its "
        "versions.",
        "models",
        {200: (S.LineageGraph, "The lineage graph."), 400: _BAD, 404: _MISSING},
        query=S.LineageQuery,
        path_params={
            "model_id": "<name>/<version> (the slash is part of the path) or a registered-model name.",
        },
        target=P.Target.MODEL_ID_PATH,
    ),
    Operation(
        "get",
        routes.PROJECTS,
        "listProjects",
        "The unified registry across projects",
        "Every project with registered models tagged hokusai.project (or attested improvements): its "
        "registered models with their latest version and number of versions, the number of attested "
        "improvements, their total DeltaOne and the time of the last one.",
        "models",
        {200: (S.ProjectsResponse, "The projects, sorted by name.")},
    ),
    Operation(
        "get",
        routes.CONTRIBUTOR_IMPACT,
        "getContributorImpact",
        "Impact of a data contributor",
        "Totals per project and one page of a contributor's attributed improvements, oldest first.",
        "contributors",
        {200: (S.ContributorImpactResponse, "The contributor's impact."), 400: _BAD},
        query=S.ContributorImpactQuery,
        path_params={"address": "Ethereum address, any case (mixed case must be EIP-55)."},
    ),
    Operation(
        "get",
        routes.LIST_ATTESTATIONS,
        "listAttestations",
        "Attestations of a model",
        "Every attestation document about a model version.",
        "attestations",
        {200: (S.AttestationListResponse, "The documents, oldest first."), 400: _BAD},
        query=S.ListAttestationsQuery,
        target=P.Target.MODEL_ID_ARG,
    ),
    Operation(
        "post",
        routes.VERIFY_ATTESTATION,
        "verifyAttestation",
        "Verify an attestation",
        "Checks an attestation document or a bare DSSE envelope: shape, payload, Statement, each "
        "signature's recovered address against the expected attesters and threshold, the document id, "
        "and the EIP-712 part when present. Needs no key: the same check runs offline with "
        "`hokusai attestation verify`. A malformed document is a verdict (valid: false), a malformed "
        "request a 400.",
        "attestations",
        {200: (S.VerifyAttestationResponse, "The verdict."), 400: _BAD},
        request=S.VerifyAttestationRequest,
        public=True,
    ),
    Operation(
        "get",
        routes.GET_ATTESTATION,
        "getAttestation",
        "An attestation document",
        "The signed document (DSSE envelope, and EIP-712 data for an on-chain model) by id.",
        "attestations",
        {200: (S.AttestationDocument, "The document."), 404: _MISSING},
        path_params={"attestation_id": "sha256 hex of the DSSE payload."},
    ),
    Operation(
        "post",
        routes.RENEW_ATTESTATION,
        "renewAttestation",
        "Renew an attestation's EIP-712 signature",
        "Signs the DeltaVerifier MintRequest again with a fresh deadline (HOKUSAI_SIGNATURE_TTL seconds "
        "from now, and always later than the previous one), whether or not the old one has passed. The "
        "DSSE Statement, attestationHash and idempotencyKey stay as they were; the earlier signing moves "
        "to eip712.history. A document signed with the MintRequest types of before 2026-06-10 gets "
        "today's. Write role; a project-scoped key renews only its project's attestations.",
        "attestations",
        {200: (S.AttestationDocument, "The renewed document."), 400: _BAD, 404: _MISSING},
        path_params={"attestation_id": "sha256 hex of the DSSE payload."},
        role=P.WRITE,
    ),
    Operation(
        "get",
        routes.API_KEYS,
        "listApiKeys",
        "List API keys",
        "Every API key (never the keys themselves: a prefix, name, role, project and times). Admin role.",
        "keys",
        {200: (S.ApiKeyListResponse, "The keys, oldest first.")},
        role=P.ADMIN,
        target=P.Target.SHARED,
    ),
    Operation(
        "post",
        routes.API_KEYS,
        "createApiKey",
        "Create an API key",
        "A new key with a role (read, write, admin) and optionally one project it is limited to. The key is "
        "in this answer only; the server keeps its hash. Admin role.",
        "keys",
        {201: (S.CreateApiKeyResponse, "The new key and its record."), 400: _BAD},
        request=S.CreateApiKeyRequest,
        request_example={"name": "ci pipeline", "role": "write", "project": "churn"},
        role=P.ADMIN,
        target=P.Target.SHARED,
    ),
    Operation(
        "post",
        routes.REVOKE_API_KEY,
        "revokeApiKey",
        "Revoke an API key",
        "The key stops working on every worker within seconds. Revoking twice is harmless. Admin role.",
        "keys",
        {200: (S.ApiKeyRecordResponse, "The revoked key's record."), 404: _MISSING},
        path_params={"key_id": ("The key's id.", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1})},
        role=P.ADMIN,
        target=P.Target.SHARED,
    ),
    Operation(
        "get",
        routes.OPENAPI,
        "getOpenApi",
        "This OpenAPI document",
        "OpenAPI 3.1, generated from the models that validate the requests.",
        "meta",
        {200: (None, "The OpenAPI document.")},
        public=True,
    ),
    Operation(
        "get",
        routes.DOCS,
        "getApiDocs",
        "API documentation page",
        "This document rendered as a self-contained HTML page (no external resources).",
        "meta",
        {200: (None, "The HTML page.")},
        public=True,
        media_type="text/html",
    ),
)


_BY_ID = {op.operation_id: op for op in OPERATIONS}


def operation(operation_id: str) -> Operation:
    """The declared operation of that id (``KeyError`` for an undeclared one).

    >>> operation("getModelLineage").rule
    '/models/<path:model_id>/lineage'
    """
    return _BY_ID[operation_id]


def serving(blueprint: Any) -> Callable[[str], Callable]:
    """``@route(operation_id)`` for the views of ``blueprint``: registers the view under both
    prefixes for the operation's rule and method, and calls it with the path parameters, plus
    ``query`` (the operation's query model, from the query string) and ``body`` (its request
    model, from the JSON body) when the operation has them. A bad query or body is a
    ``ValidationError`` naming the field (400) before the view runs.
    """
    from mlflow_hokusai_plugin.server.request_parsing import parsed_body, parsed_query

    route = routes.on_both_prefixes(blueprint)

    def declared(operation_id: str) -> Callable:
        op = operation(operation_id)

        def decorate(view: Callable) -> Callable:
            @functools.wraps(view)
            def parsed(**path_params: Any) -> Any:
                if op.query is not None:
                    path_params["query"] = parsed_query(op.query)
                if op.request is not None:
                    path_params["body"] = parsed_body(op.request)
                return view(**path_params)

            return route(op.rule, methods=[op.method.upper()])(parsed)

        return decorate

    return declared
