"""Paths of the Hokusai REST routes.

Like MLflow's own routes, each lives under ``/api/2.0/...`` (clients) and ``/ajax-api/2.0/...``
(the browser UI); :func:`both` gives the pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

API_PREFIX = "/api/2.0/hokusai"
AJAX_API_PREFIX = "/ajax-api/2.0/hokusai"

HEALTH_LIVE = "/health/live"
HEALTH_READY = "/health/ready"
GET_ATTESTATION = "/attestations/<attestation_id>"
LIST_ATTESTATIONS = "/attestations"
MODEL_LINEAGE = "/models/<path:model_id>/lineage"
CONTRIBUTOR_IMPACT = "/contributors/<address>/impact"
REGISTER_MODEL = "/models/register"
VERIFY_ATTESTATION = "/attestations/verify"
RENEW_ATTESTATION = "/attestations/<attestation_id>/renew"
PROJECTS = "/projects"
OPENAPI = "/openapi.json"
DOCS = "/docs"
API_KEYS = "/keys"
REVOKE_API_KEY = "/keys/<int:key_id>/revoke"
METRICS = "/metrics"


def both(path: str) -> tuple[str, str]:
    """The API and AJAX-API forms of a route path.

    >>> both(HEALTH_LIVE)
    ('/api/2.0/hokusai/health/live', '/ajax-api/2.0/hokusai/health/live')
    """
    return API_PREFIX + path, AJAX_API_PREFIX + path


def on_both_prefixes(blueprint: Any) -> Callable[..., Callable]:
    """A ``route(path, **options)`` decorator that registers a view of ``blueprint`` under both prefixes.

    Endpoints are named ``api_<view>`` and ``ajax_<view>`` (Flask forbids dots in them).
    """

    def route(path: str, **options: Any) -> Callable:
        def decorate(view: Callable) -> Callable:
            for prefix, rule in zip(("api", "ajax"), both(path), strict=True):
                blueprint.add_url_rule(rule, endpoint=f"{prefix}_{view.__name__}", view_func=view, **options)
            return view

        return decorate

    return route
