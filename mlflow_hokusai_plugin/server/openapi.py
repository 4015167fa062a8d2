"""The OpenAPI 3.1 document of the Hokusai routes, and the HTML page that renders it offline.

Schemas come from the Pydantic models in ``schemas`` (the ones that validate the requests), so the
document describes what the server enforces. :data:`OPERATIONS` lists every route of the ``hokusai``
and ``hokusai_api`` blueprints once, under ``/api/2.0/hokusai``; each is also served under
``/ajax-api/2.0/hokusai``, as MLflow does for its own routes.

The docs page (``GET /docs``) is plain HTML with a little inline CSS and JavaScript, built from the
document on the server: it loads nothing from anywhere, so it works with no internet access.
"""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.server import permissions as P
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server import schemas as S

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"
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
_LIMITED = (S.ErrorResponse, "Rate limited: error_code REQUEST_LIMIT_EXCEEDED; see Retry-After.")
_UNAUTHENTICATED = (S.ErrorResponse, "No or bad credentials: error_code UNAUTHENTICATED.")
_FORBIDDEN = (S.ErrorResponse, "The credentials may not do this: error_code PERMISSION_DENIED.")

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

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (or MLFLOW_TRACKING_TOKEN) as a bearer token: what a plain MLflow "
        "client sends.",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "MLflow basic-auth users (HOKUSAI_AUTH=basic): MLFLOW_TRACKING_USERNAME/PASSWORD.",
    },
}

_DESCRIPTION = """\
Hokusai routes of an MLflow server started with `mlflow server --app-name hokusai`: model
registration with lineage, DeltaOne and signed attestations, the unified registry across projects,
contributor impact, and attestation verification.

Every route is served under `/api/2.0/hokusai` (listed here) and under `/ajax-api/2.0/hokusai`
(the MLflow UI's prefix). Errors use MLflow's shape `{"error_code": ..., "message": ...}`; a
validation error is a 400 `INVALID_PARAMETER_VALUE` whose message starts with the field it names.
Every answer carries `X-Request-Id` (echoed when the request gives one).

Authentication (`HOKUSAI_AUTH`): an API key as a bearer token or in `X-API-Key`, or MLflow
basic-auth users; `none` in dev mode only. Routes marked public need no credentials.
"""


def _components(operations: tuple[Operation, ...]) -> tuple[dict, dict]:
    """Component schemas of every model used, and a map (model, mode) -> $ref."""
    wanted: list[tuple[type[BaseModel], str]] = [(S.ErrorResponse, "serialization")]
    for op in operations:
        if op.request is not None:
            wanted.append((op.request, "validation"))
        for model, _ in op.responses.values():
            if model is not None:
                wanted.append((model, "serialization"))
    wanted = list(dict.fromkeys(wanted))
    refs, definitions = models_json_schema(wanted, ref_template="#/components/schemas/{model}")
    return refs, definitions.get("$defs", {})


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        description = model.model_fields[name].description
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _operation(op: Operation, refs: dict) -> dict:
    parameters = []
    for name, spec in op.path_params.items():
        description, schema = spec if isinstance(spec, tuple) else (spec, {"type": "string", "minLength": 1})
        parameters.append(
            {"name": name, "in": "path", "required": True, "description": description, "schema": schema}
        )
    if op.query is not None:
        parameters += _query_parameters(op.query)
    parameters += [dict(header) for header in op.headers]
    responses: dict[str, Any] = {}
    for status, (model, description) in op.responses.items():
        if model is not None:
            content = {"application/json": {"schema": refs[(model, "serialization")]}}
        elif op.media_type != "application/json":
            content = {op.media_type: {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": {"type": "object"}}}
        responses[str(status)] = {"description": description, "content": content}
        if status == 201 and op.headers:
            responses[str(status)]["headers"] = {
                REPLAYED_HEADER: {
                    "description": "true when this is the stored answer to an earlier request with the key.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
    error = {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}
    responses["429"] = {"description": _LIMITED[1], "content": error}
    if not op.public:
        responses["401"] = {"description": _UNAUTHENTICATED[1], "content": error}
        responses["403"] = {"description": _FORBIDDEN[1], "content": error}
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description,
        "tags": [op.tag],
        "responses": dict(sorted(responses.items())),
    }
    if parameters:
        operation["parameters"] = parameters
    if op.request is not None:
        media: dict[str, Any] = {"schema": refs[(op.request, "validation")]}
        if op.request_example is not None:
            media["example"] = op.request_example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    if op.public:
        operation["security"] = []
    return operation


@functools.lru_cache(maxsize=1)
def _cached_document() -> str:
    refs, definitions = _components(OPERATIONS)
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Hokusai API",
            "version": __version__,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This MLflow server."}],
        "tags": [
            {"name": "models", "description": "Registration, lineage and the registry across projects."},
            {"name": "attestations", "description": "Signed improvement attestations."},
            {"name": "contributors", "description": "Data contributors and their attributed DeltaOne."},
            {"name": "keys", "description": "API keys (admin role)."},
            {"name": "health", "description": "Probes."},
            {"name": "meta", "description": "This description."},
        ],
        "paths": paths,
        "components": {"schemas": definitions, "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }
    return json.dumps(document)


def openapi_document() -> dict:
    """The OpenAPI 3.1 document (a fresh copy; built once per process)."""
    return json.loads(_cached_document())


# -- the HTML page --------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#16324f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header a{color:#cfe3ff}main{display:flex}nav{width:260px;padding:16px;flex:none;position:sticky;
top:0;height:100vh;overflow:auto;border-right:1px solid #dde1e6;background:#fff;box-sizing:border-box}
nav a{display:block;color:#16324f;text-decoration:none;padding:2px 0;font-size:13px}
nav h4{margin:12px 0 4px;text-transform:uppercase;font-size:12px;color:#667}
#content{padding:16px 28px;max-width:1000px;min-width:0}section.op{background:#fff;border:1px solid #dde1e6;
border-radius:6px;padding:12px 18px;margin:14px 0}.m{display:inline-block;min-width:52px;text-align:center;
color:#fff;border-radius:4px;padding:1px 6px;font-weight:600;font-size:13px;margin-right:8px}
.get{background:#2f7d32}.post{background:#1f5fbf}code,pre{font:13px ui-monospace,monospace}
pre{background:#f1f3f5;padding:8px;overflow:auto;border-radius:4px;max-height:420px}
table{border-collapse:collapse;width:100%;font-size:14px}td,th{border-top:1px solid #e5e8eb;padding:4px 6px;
text-align:left;vertical-align:top}.pub{color:#2f7d32;font-size:12px}.auth{color:#8a5a00;font-size:12px}
details{margin-top:8px}textarea{width:100%;height:140px;font:13px ui-monospace,monospace}
input[type=text]{width:320px}.out{white-space:pre-wrap}
"""

_JS = """
function hkPath(form){
  var path=form.dataset.path;
  form.querySelectorAll('[data-in=path]').forEach(function(i){
    path=path.replace('{'+i.name+'}',encodeURIComponent(i.value).replace(/%2F/g,'/'));});
  var q=[];form.querySelectorAll('[data-in=query]').forEach(function(i){
    if(i.value!=='')q.push(encodeURIComponent(i.name)+'='+encodeURIComponent(i.value));});
  return path+(q.length?'?'+q.join('&'):'');
}
function hkAuthorization(value){
  value=value.trim();
  // Keys and tokens hold no whitespace: a value with some already names its scheme (Bearer, Basic).
  if(!value||/^\\S+\\s+\\S/.test(value))return value;
  return 'Bearer '+value;
}
function hkSend(event){
  event.preventDefault();var form=event.target,out=form.querySelector('.out');
  var headers={};var auth=hkAuthorization(document.getElementById('hk-auth').value);
  var key=document.getElementById('hk-apikey').value.trim();
  if(auth)headers['Authorization']=auth;if(key)headers['X-API-Key']=key;
  form.querySelectorAll('[data-in=header]').forEach(function(i){if(i.value)headers[i.name]=i.value;});
  var init={method:form.dataset.method.toUpperCase(),headers:headers};
  var body=form.querySelector('textarea');
  if(body){headers['Content-Type']='application/json';init.body=body.value;}
  out.textContent='...';
  fetch(hkPath(form),init).then(function(r){return r.text().then(function(t){
    try{t=JSON.stringify(JSON.parse(t),null,2);}catch(e){}
    out.textContent='HTTP '+r.status+'\\n'+t;});}).catch(function(e){out.textContent=String(e);});
  return false;
}
document.querySelectorAll('form.try').forEach(function(f){f.addEventListener('submit',hkSend);});
"""

# The page loads nothing: scripts and styles are inline, requests go to this server only.
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)

_REF = re.compile(r"&quot;#/components/schemas/([A-Za-z0-9_.-]+)&quot;")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# The Markdown that descriptions use: code spans (`x`, and docstrings' ``x``), **bold**, [links](url)
# and blank-line paragraphs. Everything is HTML-escaped first, so no text of the document becomes
# markup; only these constructs are turned into tags afterwards.
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)
_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
# A link goes to this server (a path or an anchor) or to a web page; never javascript: or data:.
_SAFE_URL = re.compile(r"(?:https?://|/|#|\.{1,2}/|[^:/?#]+(?:[/?#]|$))", re.I)
_PLACEHOLDER = "\x00{}\x00"


def markdown_inline(text: str) -> str:
    """``text`` as HTML with its code spans, bold and links rendered, all else escaped."""
    spans: list[str] = []

    def stash(match: re.Match) -> str:
        content = match.group(2)
        # CommonMark: one space on each side is padding (`` `x` `` shows `x`).
        if len(content) > 2 and content[0] == content[-1] == " " and content.strip():
            content = content[1:-1]
        spans.append(f"<code>{_e(content)}</code>")
        return _PLACEHOLDER.format(len(spans) - 1)

    # Code spans are taken out before anything else: ** or [ inside them is literal.
    out = _e(_CODE_SPAN.sub(stash, str(text).replace("\x00", "")))
    out = _BOLD.sub(r"<strong>\1</strong>", out)

    def link(match: re.Match) -> str:
        label, url = match.groups()
        if not _SAFE_URL.match(html.unescape(url)):
            return match.group(0)
        return f'<a href="{url}">{label}</a>'

    out = _LINK.sub(link, out)
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], out)


def markdown_html(text: str) -> str:
    """``text`` as HTML paragraphs (split at blank lines), each rendered by :func:`markdown_inline`."""
    paragraphs = (p.strip() for p in re.split(r"\n\s*\n", str(text)))
    return "".join(f"<p>{markdown_inline(p)}</p>" for p in paragraphs if p)


def _pretty(value: Any) -> str:
    text = _e(json.dumps(value, indent=2))
    return _REF.sub(
        lambda m: f'&quot;<a href="#schema-{m.group(1)}">#/components/schemas/{m.group(1)}</a>&quot;', text
    )


def _schema_summary(schema: dict) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    parts = [_e(schema.get("type", "any"))]
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "default"):
        if key in schema:
            parts.append(f"{key}: <code>{_e(json.dumps(schema[key]))}</code>")
    if "anyOf" in schema:
        parts = [" | ".join(_schema_summary(s) for s in schema["anyOf"])]
    return ", ".join(parts)


def _operation_html(path: str, method: str, op: dict, security: bool) -> str:
    anchor = f"op-{_e(op['operationId'])}"
    lock = (
        '<span class="pub">public</span>'
        if op.get("security") == [] or not security
        else '<span class="auth">needs credentials when authentication is on</span>'
    )
    out = [
        f'<section class="op" id="{anchor}"><h3><span class="m {_e(method)}">{_e(method.upper())}</span>'
        f"<code>{_e(path)}</code></h3><p><b>{markdown_inline(op['summary'])}</b> {lock}</p>"
        f"{markdown_html(op.get('description', ''))}"
    ]
    parameters = op.get("parameters", [])
    if parameters:
        out.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>schema</th><th></th></tr>")
        for p in parameters:
            required = " <b>required</b>" if p.get("required") else ""
            out.append(
                f"<tr><td><code>{_e(p['name'])}</code>{required}</td><td>{_e(p['in'])}</td>"
                f"<td>{_schema_summary(p['schema'])}</td>"
                f"<td>{markdown_inline(p.get('description', ''))}</td></tr>"
            )
        out.append("</table>")
    body = op.get("requestBody")
    example = ""
    if body:
        media = body["content"]["application/json"]
        example = json.dumps(media.get("example", {}), indent=2)
        out.append(f"<h4>Request body</h4><p>JSON: {_schema_summary(media['schema'])}</p>")
        if "example" in media:
            out.append(f"<pre>{_e(example)}</pre>")
    out.append("<h4>Responses</h4><table>")
    for status, response in op["responses"].items():
        schemas = [_schema_summary(m["schema"]) for m in response.get("content", {}).values()]
        out.append(
            f"<tr><td><b>{_e(status)}</b></td><td>{markdown_inline(response['description'])}</td>"
            f"<td>{', '.join(schemas)}</td></tr>"
        )
    out.append("</table>")
    fields = []
    for p in parameters:
        fields.append(
            f"<label><code>{_e(p['name'])}</code> ({_e(p['in'])}) "
            f'<input type="text" name="{_e(p["name"])}" data-in="{_e(p["in"])}"></label><br>'
        )
    if body:
        fields.append(f"<textarea name=body>{_e(example)}</textarea><br>")
    out.append(
        f'<details><summary>Try it</summary><form class="try" data-method="{_e(method)}" '
        f'data-path="{_e(path)}">{"".join(fields)}<button type="submit">Send</button>'
        f'<pre class="out"></pre></form></details></section>'
    )
    return "".join(out)


def docs_html(document: dict | None = None) -> str:
    """The documentation page of ``document`` (default: this server's), self-contained."""
    document = document or openapi_document()
    info = document["info"]
    security = bool(document.get("security"))
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op.get("tags", ["other"])[0], []).append((path, method, op))
    nav, body = [], []
    for tag in [t["name"] for t in document.get("tags", [])] + sorted(by_tag):
        if tag not in by_tag:
            continue
        ops = by_tag.pop(tag)
        nav.append(f"<h4>{_e(tag)}</h4>")
        body.append(f"<h2>{_e(tag)}</h2>")
        for path, method, op in ops:
            nav.append(
                f'<a href="#op-{_e(op["operationId"])}">{_e(method.upper())} '
                f"{_e(path.removeprefix(routes.API_PREFIX))}</a>"
            )
            body.append(_operation_html(path, method, op, security))
    schemes = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td>{_e(s.get('type'))} "
        f"{_e(s.get('scheme', s.get('name', '')))}</td>"
        f"<td>{markdown_inline(s.get('description', ''))}</td></tr>"
        for name, s in document["components"].get("securitySchemes", {}).items()
    )
    nav.append('<h4>schemas</h4><a href="#schemas">all schemas</a>')
    schemas = "".join(
        f'<h3 id="schema-{_e(name)}">{_e(name)}</h3><pre>{_pretty(schema)}</pre>'
        for name, schema in document["components"]["schemas"].items()
    )
    description = markdown_html(info.get("description", ""))
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(info['title'])} {_e(info['version'])}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(info['title'])} <small>{_e(info['version'])}</small></h1>"
        f'OpenAPI {_e(document["openapi"])}: <a href="openapi.json">openapi.json</a></header>'
        f'<main><nav>{"".join(nav)}</nav><div id="content">{description}'
        "<h2>Authentication</h2><p>For <i>Try it</i>: "
        "<label>API key or token, sent as <code>Authorization: Bearer</code> "
        '<input type="text" id="hk-auth" placeholder="hk_... (Bearer is added)" autocomplete="off">'
        "</label> "
        '<label>or as <code>X-API-Key</code> <input type="text" id="hk-apikey" placeholder="hk_..." '
        'autocomplete="off"></label></p>'
        f"<table>{schemes}</table>{''.join(body)}"
        f'<h2 id="schemas">Schemas</h2>{schemas}</div></main><script>{_JS}</script></body></html>'
    )
