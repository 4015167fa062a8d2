"""API-key authentication and authorization (``HOKUSAI_AUTH=apikey``, the default).

A key is accepted as ``Authorization: Bearer`` (what MLflow clients send from
``MLFLOW_TRACKING_TOKEN``), as ``X-API-Key``, or as the password of HTTP basic auth (so a person can
open the MLflow UI in a browser). It guards MLflow's own routes as well as ours: a Flask
``before_request`` hook for everything Flask serves, and, under uvicorn, an ASGI middleware for the
routes FastAPI serves natively (artifact upload and download, OTLP, jobs...), which Flask hooks
never see.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.api_keys import key_fingerprint, role_allows
from mlflow_hokusai_plugin.db.api_keys import ApiKeyStore, KeyRecord
from mlflow_hokusai_plugin.server.permissions import READ, Rule, Target, rule_for
from mlflow_hokusai_plugin.server.request_scope import UndeterminedTarget, current_rule, registry_target

_logger = logging.getLogger("mlflow_hokusai_plugin.auth")
REALM = 'Basic realm="hokusai", charset="UTF-8"'


@dataclass(frozen=True)
class Principal:
    """Who a request acts as (``flask.g.hokusai_principal``)."""

    name: str
    role: str
    project: str | None = None

    @classmethod
    def of_key(cls, record: KeyRecord) -> Principal:
        return cls(f"key:{record.prefix}", record.role, record.project)


def presented_key(headers: Any) -> str | None:
    """The API key in a request's headers, however it was sent."""
    explicit = headers.get("X-API-Key")
    if explicit:
        return explicit.strip()
    authorization = headers.get("Authorization") or ""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
            return None
        return decoded.partition(":")[2] or None
    return None


def _error(status: int, code: str, message: str) -> Response:
    response = Response(
        json.dumps({"error_code": code, "message": message}), status, mimetype="application/json"
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM
    return response


class ApiKeyAuth:
    """The checks, shared by the Flask hook and the ASGI middleware.

    ``project_of`` may answer from a short cache (reads); ``fresh_project_of`` reads the registry
    now, as (exists, project) (writes: a model deleted and re-created in another project must not
    inherit the old one, and an existing model of no project is not a new one).
    ``failures`` limits failed authentications per client address (set by the rate-limit setup).
    """

    def __init__(
        self,
        keys: ApiKeyStore,
        project_of: Callable[[str], str | None],
        fresh_project_of: Callable[[str], tuple[bool, str | None]],
    ) -> None:
        self.keys = keys
        self.project_of = project_of
        self.fresh_project_of = fresh_project_of
        self.failures: Any = None

    def authenticate(
        self, headers: Any, method: str, path: str, remote: str | None
    ) -> tuple[Principal | None, str]:
        """(principal, "") or (None, why not: "missing", "invalid" or "locked:<retry seconds>")."""
        key = presented_key(headers)
        if not key:
            return None, "missing"
        if self.failures is not None:
            retry_after = self.failures.blocked(remote)
            if retry_after is not None:
                return None, f"locked:{retry_after}"
        record = self.keys.lookup(key)
        if record is None:
            _logger.warning(
                "authentication failed: unknown or revoked API key %s from %s on %s %s",
                key_fingerprint(key),
                remote,
                method,
                path,
            )
            if self.failures is not None:
                self.failures.record(remote)
            return None, "invalid"
        return Principal.of_key(record), ""

    def scope_problem(self, principal: Principal, rule: Rule) -> str | None:
        """Why a project-scoped key may not make the current Flask request, or None.

        Raises UndeterminedTarget when the request's target cannot be read.
        """
        scope = principal.project
        if scope is None or rule.target in (Target.SHARED, Target.VIEW, Target.MODEL_SEARCH):
            return None
        if rule.target == Target.UNSCOPED:
            return f"this key is scoped to project '{scope}'; this route answers across projects"
        target = registry_target(rule)
        if target.declared_project is not None and target.declared_project != scope:
            if not target.declared_project:
                return f"this key is scoped to project '{scope}'; it cannot take a model out of it"
            return f"this key is scoped to project '{scope}', not '{target.declared_project}'"
        if rule.role == READ:
            # No such model, or one of no project: nothing of another project to read.
            project = self.project_of(target.name)
            return None if project in (None, scope) else f"model '{target.name}' is not in this key's project"
        exists, project = self.fresh_project_of(target.name)
        if project is not None:
            return None if project == scope else f"model '{target.name}' is not in this key's project"
        if not exists and rule.target in (Target.MODEL_CREATE, Target.REGISTER) and target.declared_project:
            return None  # a new model, declared in the key's own project (checked above)
        # An existing model of no project is nobody's to claim with a scoped key.
        return f"this key may only write models tagged {T.PROJECT}={scope}"


def _refusal(failure: str) -> tuple[int, str, str, dict]:
    """(status, error code, message, extra headers) of a failed authentication."""
    if failure.startswith("locked:"):
        retry_after = failure.split(":", 1)[1]
        return (
            429,
            "REQUEST_LIMIT_EXCEEDED",
            f"too many failed authentications from this address; retry in {retry_after} s",
            {"Retry-After": retry_after},
        )
    message = "an API key is required" if failure == "missing" else "the API key is not valid"
    return 401, "UNAUTHENTICATED", f"{message} (Authorization: Bearer <key>, or X-API-Key)", {}


def install_api_key_auth(app: Flask, auth: ApiKeyAuth) -> None:
    """The Flask side: authenticate and authorize every request Flask serves."""

    @app.before_request
    def _check_api_key():
        rule = current_rule()
        g.hokusai_principal = None
        if rule.public:
            return None
        principal, failure = auth.authenticate(
            request.headers, request.method, request.path, request.remote_addr
        )
        if principal is None:
            status, code, message, headers = _refusal(failure)
            response = _error(status, code, message)
            response.headers.update(headers)
            return response
        g.hokusai_principal = principal
        g.hokusai_actor = principal.name
        if not role_allows(principal.role, rule.role):
            _logger.warning(
                "permission denied: %s (role %s) needs %s for %s %s",
                principal.name,
                principal.role,
                rule.role,
                request.method,
                request.path,
            )
            return _error(
                403, "PERMISSION_DENIED", f"this key's role '{principal.role}' cannot {rule.role} here"
            )
        try:
            problem = auth.scope_problem(principal, rule)
        except UndeterminedTarget as exc:
            return _error(400, "INVALID_PARAMETER_VALUE", f"{exc.field}: {exc.message}")
        if problem:
            _logger.warning(
                "permission denied: %s on %s %s: %s", principal.name, request.method, request.path, problem
            )
            return _error(403, "PERMISSION_DENIED", problem)
        return None

    @app.after_request
    def _filter_search_results(response: Response) -> Response:
        principal = getattr(g, "hokusai_principal", None)
        rule = getattr(g, "hokusai_rule", None)
        if principal is None or principal.project is None or rule is None:
            return response
        if rule.target != Target.MODEL_SEARCH:
            return response
        if response.status_code != 200 or response.mimetype != "application/json":
            return response
        return _without_other_projects(response, principal.project, auth.project_of)


def _without_other_projects(
    response: Response, project: str, project_of: Callable[[str], str | None]
) -> Response:
    """Drop registered models and versions of other projects from a registry search response."""
    payload = json.loads(response.get_data())
    for key in ("registered_models", "model_versions"):
        if key in payload:
            payload[key] = [
                item for item in payload[key] if project_of(item.get("name", "")) in (project, None)
            ]
    response.set_data(json.dumps(payload))
    return response


class AsgiApiKeyMiddleware:
    """Authenticates the routes FastAPI serves natively; Flask's routes are left to the Flask hook."""

    def __init__(self, app: Any, auth: ApiKeyAuth, route_of: Callable[[dict], str | None]) -> None:
        self.app = app
        self.auth = auth
        self.route_of = route_of

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.route_of(scope) is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope["method"], scope["path"]
        rule = rule_for(method, self.route_of(scope))
        if not rule.public:
            client = scope.get("client") or (None,)
            principal, failure = self.auth.authenticate(_Headers(headers), method, path, client[0])
            status, code, message, extra = 0, "", "", {}
            if principal is None:
                status, code, message, extra = _refusal(failure)
            elif not role_allows(principal.role, rule.role):
                status, code = 403, "PERMISSION_DENIED"
                message = f"this key's role '{principal.role}' cannot {rule.role} here"
            elif principal.project is not None and rule.target != Target.SHARED:
                # Native routes carry no registry target a scope could be checked against.
                status, code = 403, "PERMISSION_DENIED"
                message = f"this key is scoped to project '{principal.project}'; this route is not"
            if principal is not None:
                # For the request log, which wraps this middleware and reads the scope afterwards.
                scope.setdefault("state", {})["hokusai_principal"] = principal.name
            if status:
                body = json.dumps({"error_code": code, "message": message}).encode()
                response_headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                if status == 401:
                    response_headers.append((b"www-authenticate", REALM.encode()))
                response_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _Headers:
    """Case-insensitive header access over the ASGI header list."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers.get(name.lower(), default)


def native_routes(fastapi_app: Any) -> list[tuple[str, Any]]:
    """(prefix, route) of every route FastAPI serves natively, not through the mounted Flask app.

    FastAPI keeps included routers whole (with their prefix), so they are opened here: a route's
    template is ``prefix + route.path``, e.g. ``/ajax-api/3.0/jobs/{job_id}``, which is what the
    permissions table declares.
    """
    from starlette.routing import Mount

    def leaves(routes: list, prefix: str = "") -> list[tuple[str, Any]]:
        found = []
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                found += leaves(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
            elif not (isinstance(route, Mount) and route.path in ("", "/")):
                found.append((prefix, route))
        return found

    return leaves(fastapi_app.router.routes)


def native_route_of(fastapi_app: Any) -> Callable[[dict], str | None]:
    """The path template of the native FastAPI route (not the mounted Flask app) a request goes to."""
    from starlette.routing import Match

    native = native_routes(fastapi_app)

    # Matching a path against every native route costs ~0.1 ms, paid on each request of
    # MLflow's own routes; the answer depends on the path and method only, so it is remembered.
    @functools.lru_cache(maxsize=4096)
    def matching(root_path: str, path: str, method: str) -> str | None:
        for prefix, route in native:
            if prefix and not path.startswith(prefix):
                continue
            scope = {"type": "http", "root_path": root_path, "path": path[len(prefix) :], "method": method}
            if route.matches(scope)[0] == Match.FULL:
                return prefix + (getattr(route, "path", None) or "")
        return None

    def route_of(scope: dict) -> str | None:
        return matching(scope.get("root_path", ""), scope["path"], scope.get("method", "GET"))

    return route_of
