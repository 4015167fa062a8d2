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
import binascii
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
from mlflow_hokusai_plugin.server.permissions import Access, required_access

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
        except (binascii.Error, UnicodeDecodeError):
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
    """The checks, shared by the Flask hook and the ASGI middleware."""

    def __init__(self, keys: ApiKeyStore, project_of: Callable[[str], str | None]) -> None:
        self.keys = keys
        self.project_of = project_of

    def authenticate(
        self, headers: Any, method: str, path: str, remote: str | None
    ) -> tuple[Principal | None, str]:
        """(principal, "") or (None, why not)."""
        key = presented_key(headers)
        if not key:
            return None, "missing"
        record = self.keys.lookup(key)
        if record is None:
            _logger.warning(
                "authentication failed: unknown or revoked API key %s from %s on %s %s",
                key_fingerprint(key),
                remote,
                method,
                path,
            )
            return None, "invalid"
        return Principal.of_key(record), ""

    def scope_problem(self, principal: Principal, access: Access, body: dict | None, path: str) -> str | None:
        """Why a project-scoped key may not do this, or None."""
        if principal.project is None:
            return None
        if access.project is not None and access.project != principal.project:
            return f"this key is scoped to project '{principal.project}', not '{access.project}'"
        if access.model_name is None:
            return None
        project = self.project_of(access.model_name)
        if project is not None:
            return (
                None
                if project == principal.project
                else f"model '{access.model_name}' is not in this key's project"
            )
        if access.role == "read":
            return None
        # A write to a model of no project: only creating one in the key's own project.
        tags = (body or {}).get("tags") or []
        declared = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)}
        if path.endswith("registered-models/create") and declared.get(T.PROJECT) == principal.project:
            return None
        return f"this key may only write models tagged {T.PROJECT}={principal.project}"


def install_api_key_auth(app: Flask, auth: ApiKeyAuth) -> None:
    """The Flask side: authenticate and authorize every request Flask serves."""

    @app.before_request
    def _check_api_key():
        body = request.get_json(silent=True) if request.mimetype == "application/json" else None
        access = required_access(request.method, request.path, request.args, body)
        g.hokusai_access = access
        g.hokusai_principal = None
        if access.public:
            return None
        principal, failure = auth.authenticate(
            request.headers, request.method, request.path, request.remote_addr
        )
        if principal is None:
            message = "an API key is required" if failure == "missing" else "the API key is not valid"
            return _error(401, "UNAUTHENTICATED", f"{message} (Authorization: Bearer <key>, or X-API-Key)")
        g.hokusai_principal = principal
        g.hokusai_actor = principal.name
        if not role_allows(principal.role, access.role):
            _logger.warning(
                "permission denied: %s (role %s) needs %s for %s %s",
                principal.name,
                principal.role,
                access.role,
                request.method,
                request.path,
            )
            return _error(
                403, "PERMISSION_DENIED", f"this key's role '{principal.role}' cannot {access.role} here"
            )
        problem = auth.scope_problem(
            principal, access, body if isinstance(body, dict) else None, request.path
        )
        if problem:
            _logger.warning(
                "permission denied: %s on %s %s: %s", principal.name, request.method, request.path, problem
            )
            return _error(403, "PERMISSION_DENIED", problem)
        return None

    @app.after_request
    def _filter_search_results(response: Response) -> Response:
        principal = getattr(g, "hokusai_principal", None)
        access = getattr(g, "hokusai_access", None)
        if principal is None or principal.project is None or access is None or not access.filter_results:
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

    def __init__(self, app: Any, auth: ApiKeyAuth, is_native: Callable[[dict], bool]) -> None:
        self.app = app
        self.auth = auth
        self.is_native = is_native

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.is_native(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope["method"], scope["path"]
        access = required_access(method, path, {}, None)
        if not access.public:
            client = scope.get("client") or (None,)
            principal, failure = self.auth.authenticate(_Headers(headers), method, path, client[0])
            status, code, message = 0, "", ""
            if principal is None:
                status, code = 401, "UNAUTHENTICATED"
                message = "an API key is required" if failure == "missing" else "the API key is not valid"
            elif not role_allows(principal.role, access.role):
                status, code = 403, "PERMISSION_DENIED"
                message = f"this key's role '{principal.role}' cannot {access.role} here"
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


def native_route_of(fastapi_app: Any) -> Callable[[dict], str | None]:
    """The path template of the native FastAPI route (not the mounted Flask app) a request goes to."""
    from starlette.routing import Match, Mount

    native = [
        route
        for route in fastapi_app.router.routes
        if not (isinstance(route, Mount) and route.path in ("", "/"))
    ]

    # Matching a path against every native router costs ~0.1 ms, paid on each request of
    # MLflow's own routes; the answer depends on the path and method only, so it is remembered.
    @functools.lru_cache(maxsize=4096)
    def matching(root_path: str, path: str, method: str) -> str | None:
        scope = {"type": "http", "root_path": root_path, "path": path, "method": method}
        for route in native:
            if route.matches(scope)[0] == Match.FULL:
                return getattr(route, "path", None) or path
        return None

    def route_of(scope: dict) -> str | None:
        return matching(scope.get("root_path", ""), scope["path"], scope.get("method", "GET"))

    return route_of
