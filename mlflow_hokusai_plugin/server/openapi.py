"""The OpenAPI 3.1 document of the Hokusai routes, and the HTML page that renders it offline.

Derived from the route table (``route_table.OPERATIONS``, which also registers the views and parses
their requests) and the Pydantic models in ``schemas`` that validate those requests, so the document
describes what the server enforces. Each path is under ``/api/2.0/hokusai`` and also served under
``/ajax-api/2.0/hokusai``, as MLflow does for its own routes.

The docs page (``GET /docs``) is plain HTML with a little inline CSS and JavaScript, built from the
document on the server: it loads nothing from anywhere, so it works with no internet access.
"""

from __future__ import annotations

import functools
import html
import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server import schemas as S
from mlflow_hokusai_plugin.server.route_table import (
    FORBIDDEN,
    LIMITED,
    OPERATIONS,
    REPLAYED_HEADER,
    UNAUTHENTICATED,
    Operation,
)

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"
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
    responses["429"] = {"description": LIMITED[1], "content": error}
    if not op.public:
        responses["401"] = {"description": UNAUTHENTICATED[1], "content": error}
        responses["403"] = {"description": FORBIDDEN[1], "content": error}
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
