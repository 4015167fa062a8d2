"""The permissions table against the routes MLflow really serves: nothing stale, nothing unseen.

A newer MLflow that adds a route fails here until someone decides who may call it (until then the
server gives it to administrators only).
"""

from __future__ import annotations

import pytest

from mlflow_hokusai_plugin.server import permissions as P

# Served by MLflow, deliberately left out of the table: administrators only.
ADMIN_ONLY_PREFIXES = (
    "mlflow/gateway",  # AI gateway: endpoints, secrets, budgets, guardrails (spends money, holds keys)
    "/gateway/",
    "mlflow/webhooks",  # subscriptions to every project's registry events
    "mlflow/workspaces",
    "mlflow/demo/",
    "mlflow/genai/evaluate/invoke",  # judges that spend model calls
    "mlflow/issues/invoke",
    "mlflow/scorer/invoke",
    "mlflow/runs/create-promptlab-run",
    "mlflow/assistant",
    "mlflow/mcp-servers",
    "hokusai/keys",
)


@pytest.fixture(scope="module")
def served() -> set[tuple[str, str]]:
    """(method, route key) of every Flask rule and native FastAPI route of MLflow's server."""
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    from mlflow_hokusai_plugin.server.auth import native_routes

    routes = {
        (method, P.route_key(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    for prefix, route in native_routes(create_fastapi_app(app)):
        for method in getattr(route, "methods", None) or ():
            routes.add((method, P.route_key(prefix + route.path)))
    return routes


def test_every_declared_mlflow_route_exists(served):
    stale = sorted(key for key in P.MLFLOW_ROUTES if key not in served)
    assert stale == []


def test_every_served_route_is_declared_or_deliberately_admin_only(served):
    table = P.route_table()
    unseen = sorted(key for key in served if key not in table and not key[1].startswith(ADMIN_ONLY_PREFIXES))
    assert unseen == []


def test_the_hokusai_routes_come_from_their_openapi_declaration():
    from mlflow_hokusai_plugin.server.route_table import OPERATIONS

    for op in OPERATIONS:
        for rule in ("/api/2.0/hokusai" + op.rule, "/ajax-api/2.0/hokusai" + op.rule):
            assert P.rule_for(op.method, rule) == op.access
    assert P.rule_for("POST", "/api/2.0/hokusai/attestations/verify").public
    assert P.rule_for("POST", "/api/2.0/hokusai/keys").role == P.ADMIN
    assert P.rule_for("POST", "/api/2.0/hokusai/models/register").bucket == "register"


@pytest.mark.parametrize(
    "method, rule, role",
    [
        ("GET", "/api/2.0/mlflow/registered-models/get", P.READ),
        ("HEAD", "/api/2.0/mlflow/registered-models/get", P.READ),
        ("POST", "/ajax-api/2.0/mlflow/registered-models/get-latest-versions", P.READ),
        ("POST", "/ajax-api/3.0/mlflow/review-queues/get-or-create-user", P.WRITE),
        ("POST", "/api/2.0/mlflow/traces/search", P.READ),
        ("GET", "/api/3.0/mlflow/gateway/secrets/list", P.ADMIN),
        ("POST", "/api/2.0/mlflow/some-future-route", P.ADMIN),
        ("GET", "/health", P.PUBLIC),
    ],
)
def test_roles(method, rule, role):
    assert P.rule_for(method, rule).role == role


def test_a_path_no_route_serves_needs_a_key_but_reaches_no_handler():
    assert P.rule_for("GET", None) == P.UNROUTED
    assert P.rule_for("OPTIONS", "/api/2.0/mlflow/runs/create") == P.UNROUTED


def test_every_hokusai_flask_rule_is_a_declared_operation():
    """No view is served that the route table (and so the OpenAPI document, the permissions and
    the request parsing) does not describe, and every declared operation is served."""
    from flask import Flask

    from mlflow_hokusai_plugin.server import api_views, views
    from mlflow_hokusai_plugin.server.route_table import OPERATIONS

    app = Flask(__name__)
    app.register_blueprint(views.blueprint)
    app.register_blueprint(api_views.blueprint)
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/2.0/hokusai/", "/ajax-api/2.0/hokusai/"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    declared = {
        (op.method.upper(), prefix + op.rule)
        for op in OPERATIONS
        for prefix in ("/api/2.0/hokusai", "/ajax-api/2.0/hokusai")
    }
    assert served == declared
