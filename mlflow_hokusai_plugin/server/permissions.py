"""What each request needs: public, or a role; and which registered model (hence project) it touches.

Pure request classification, so every rule can be read in one place:

- public: liveness/readiness, metrics, the OpenAPI document and docs page, attestation verification;
- admin: the API-key routes;
- read: GET/HEAD/OPTIONS, and MLflow's POST search/get endpoints;
- write: everything else.

Project scope applies to registry objects (registered models, versions, aliases) and Hokusai
records (lineage, attestations, contributions, projects). Experiments, runs and artifacts are
shared tracking data: a scoped key has its role there, whatever the project.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/version",
        "/api/2.0/hokusai/health/live",
        "/api/2.0/hokusai/health/ready",
        "/ajax-api/2.0/hokusai/health/live",
        "/ajax-api/2.0/hokusai/health/ready",
        "/api/2.0/hokusai/openapi.json",
        "/ajax-api/2.0/hokusai/openapi.json",
        "/api/2.0/hokusai/docs",
        "/ajax-api/2.0/hokusai/docs",
        # Counts only, no secrets; keep it off the public network (nginx denies it) instead.
        "/api/2.0/hokusai/metrics",
        "/ajax-api/2.0/hokusai/metrics",
    }
)
PUBLIC_POSTS = frozenset(
    {"/api/2.0/hokusai/attestations/verify", "/ajax-api/2.0/hokusai/attestations/verify"}
)
_HOKUSAI = ("/api/2.0/hokusai/", "/ajax-api/2.0/hokusai/")
_REGISTRY_MARKERS = ("/mlflow/registered-models/", "/mlflow/model-versions/")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Access:
    """What a request needs."""

    public: bool = False
    role: str = "read"
    # The registered model the request is about (scope check), when it names one.
    model_name: str | None = None
    # Registry search results must be filtered for a project-scoped key.
    filter_results: bool = False
    # Registering a model names its project in the body.
    project: str | None = None
    # Hokusai routes that look their subject up (attestation by id) or filter (impact, projects).
    hokusai_route: str | None = None


def required_access(
    method: str, path: str, args: Mapping[str, Any], body: Mapping[str, Any] | None
) -> Access:
    """Classify one request.

    >>> required_access("GET", "/api/2.0/hokusai/health/live", {}, None).public
    True
    >>> required_access("POST", "/api/2.0/mlflow/runs/search", {}, {}).role
    'read'
    >>> access = required_access("POST", "/api/2.0/mlflow/model-versions/create", {}, {"name": "churn"})
    >>> access.role, access.model_name
    ('write', 'churn')
    """
    method = method.upper()
    body = body if isinstance(body, Mapping) else {}
    if path in PUBLIC_PATHS or (method == "POST" and path in PUBLIC_POSTS):
        return Access(public=True)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    role = (
        "read"
        if method in READ_METHODS or (method == "POST" and last.startswith(("search", "get")))
        else "write"
    )
    if path.startswith(_HOKUSAI):
        route = path.split("/hokusai/", 1)[1]
        if route.startswith("keys"):
            return Access(role="admin", hokusai_route="keys")
        if route.startswith("models/") and route.endswith("/lineage"):
            model_id = route[len("models/") : -len("/lineage")]
            return Access(role=role, model_name=model_id.split("/", 1)[0], hokusai_route="lineage")
        if route == "models/register":
            return Access(role="write", project=_text(body.get("project")), hokusai_route="register")
        if route.startswith("attestations/"):
            return Access(role=role, hokusai_route="attestation")
        if route == "attestations":
            model_id = _text(args.get("model_id")) or ""
            return Access(
                role=role, model_name=model_id.split("/", 1)[0] or None, hokusai_route="attestations"
            )
        return Access(role=role, hokusai_route=route.split("/", 1)[0])
    if any(marker in path for marker in _REGISTRY_MARKERS):
        name = _text(args.get("name")) or _text(body.get("name"))
        searching = last.startswith("search")
        return Access(role=role, model_name=None if searching else name, filter_results=searching)
    return Access(role=role)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
