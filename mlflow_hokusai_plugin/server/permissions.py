"""Who may call which route: one declared table of every route the server serves, MLflow's and ours.

Each route is declared once, by method and rule (Flask's rule, or the path template of a route that
MLflow 3.x serves natively in FastAPI), with

- the **role** it needs: ``public`` (no credentials), ``read``, ``write`` or ``admin``;
- its **target**: how the project of what it touches is found (see :class:`Target`);
- its **rate class**: which rate-limit bucket it counts against (``read``, ``write``, ``register``).

A route that is not in the table needs the ``admin`` role: what the table cannot classify (MLflow's
AI gateway, secrets, budgets, webhooks, workspaces, judges that spend model calls, and any route a
newer MLflow adds) is denied to every other key, never guessed from the shape of its path.

The Hokusai routes are declared in ``route_table.OPERATIONS`` (their role and target beside their
schema); MLflow's are declared below. The rules are keyed without the ``/api/<n>.0`` or
``/ajax-api/<n>.0`` prefix, which MLflow serves every route under alike.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

PUBLIC, READ, WRITE, ADMIN = "public", "read", "write", "admin"


class Target:
    """How the registered model (hence the project) a request is about is found.

    - ``SHARED``: experiments, runs, artifacts, traces, logged models: tracking data that every
      key shares with its role, whatever its project.
    - ``MODEL``: a registry object of the registered model named by the request's ``name``, read
      exactly as MLflow's handler reads it (query string for a GET with one, else the JSON body
      whatever its content type, a JSON string decoded twice).
    - ``MODEL_CREATE``: creating a registered model: its ``hokusai.project`` tag names its project.
    - ``MODEL_SEARCH``: a registry search: answered, then filtered to the key's project.
    - ``UNSCOPED``: no way to tell which projects the answer covers (GraphQL): refused to a
      project-scoped key.
    - ``MODEL_ID_PATH`` / ``MODEL_ID_ARG``: a Hokusai route naming ``name/version`` in its path /
      its ``model_id`` query parameter.
    - ``REGISTER``: ``POST /hokusai/models/register``: the project and name in its body.
    - ``VIEW``: the Hokusai view applies the scope itself (an attestation by id is a 404 outside
      the key's project; impact and projects are filtered).
    """

    SHARED = "shared"
    MODEL = "model"
    MODEL_CREATE = "model_create"
    MODEL_SEARCH = "model_search"
    UNSCOPED = "unscoped"
    MODEL_ID_PATH = "model_id_path"
    MODEL_ID_ARG = "model_id_arg"
    REGISTER = "register"
    VIEW = "view"


@dataclass(frozen=True)
class Rule:
    """What one route (method + rule) needs."""

    role: str
    target: str = Target.SHARED
    # None: the rate class of the role (read for read and public routes, else write).
    rate_class: str | None = None

    @property
    def public(self) -> bool:
        return self.role == PUBLIC

    @property
    def bucket(self) -> str:
        """The rate-limit bucket: ``read``, ``write`` or ``register``."""
        return self.rate_class or (READ if self.role in (READ, PUBLIC) else WRITE)


# A route missing from the table: administrators only.
UNDECLARED = Rule(ADMIN)
# A path no route serves (Flask answers 404/405 and no handler runs): any valid key.
UNROUTED = Rule(READ)


def _declare(role: str, target: str, routes: str, rate_class: str | None = None) -> dict:
    """``"GET a\\nPOST b"`` -> {("GET", "a"): Rule(...), ("POST", "b"): Rule(...)}."""
    rule = Rule(role, target, rate_class)
    table = {}
    for line in routes.strip().splitlines():
        method, path = line.split()
        table[(method, path)] = rule
    return table


# MLflow 3.17's routes, by what they touch. Rules with <...> are Flask's, rules with {...} are the
# routes MLflow serves natively in FastAPI (artifact streaming, OTLP, jobs, server-info).
MLFLOW_ROUTES: dict[tuple[str, str], Rule] = {
    **_declare(
        PUBLIC,
        Target.SHARED,
        """
        GET /health
        GET /version
        GET mlflow/server-info
        """,
    ),
    **_declare(
        READ,
        Target.SHARED,
        """
        GET /
        GET /static-files/<path:path>
        GET /build/<path:filename>
        GET /get-artifact
        GET mlflow/ui-telemetry
        POST mlflow/ui-telemetry
        GET mlflow-artifacts/artifacts
        GET mlflow-artifacts/artifacts/<path:artifact_path>
        GET mlflow-artifacts/artifacts/{artifact_path:path}
        GET mlflow-artifacts/presigned/<path:artifact_path>
        GET mlflow/artifacts/list
        POST mlflow/artifacts/presigned-download-url
        GET mlflow/experiments/get
        GET mlflow/experiments/get-by-name
        GET mlflow/experiments/search
        POST mlflow/experiments/search
        POST mlflow/experiments/search-datasets
        GET mlflow/get-online-trace-details
        GET mlflow/get-trace-artifact
        GET mlflow/logged-models/<model_id>
        GET mlflow/logged-models/<model_id>/artifacts/directories
        GET mlflow/logged-models/<model_id>/artifacts/files
        POST mlflow/logged-models/search
        GET mlflow/metrics/get-history
        GET mlflow/metrics/get-history-bulk
        GET mlflow/metrics/get-history-bulk-interval
        GET mlflow/runs/get
        POST mlflow/runs/search
        GET mlflow/traces
        GET mlflow/traces/<request_id>/info
        GET mlflow/unified-traces
        GET mlflow/traces/<trace_id>
        GET mlflow/traces/<trace_id>/assessments/<assessment_id>
        GET mlflow/traces/batchGet
        POST mlflow/traces/batchGetInfos
        POST mlflow/traces/calculate-filter-correlation
        GET mlflow/traces/get
        POST mlflow/traces/metrics
        POST mlflow/traces/search
        GET mlflow/datasets/<dataset_id>
        GET mlflow/datasets/<dataset_id>/experiment-ids
        GET mlflow/datasets/<dataset_id>/records
        GET mlflow/datasets/search
        POST mlflow/datasets/search
        GET mlflow/issues/<issue_id>
        POST mlflow/issues/search
        GET mlflow/jobs/<job_id>
        GET jobs/{job_id}
        POST jobs/search
        GET mlflow/label-schemas/get
        GET mlflow/label-schemas/get-by-name
        GET mlflow/label-schemas/list
        GET mlflow/prompt-optimization/jobs/<job_id>
        GET mlflow/prompt-optimization/jobs/search
        POST mlflow/prompt-optimization/jobs/search
        GET mlflow/review-queues/get
        GET mlflow/review-queues/get-by-name
        GET mlflow/review-queues/items/list
        GET mlflow/review-queues/list
        GET mlflow/scorers/get
        GET mlflow/scorers/list
        GET mlflow/scorers/online-configs
        GET mlflow/scorers/versions
        """,
    ),
    **_declare(
        WRITE,
        Target.SHARED,
        """
        PUT mlflow-artifacts/artifacts/<path:artifact_path>
        PUT mlflow-artifacts/artifacts/{artifact_path:path}
        DELETE mlflow-artifacts/artifacts/<path:artifact_path>
        POST mlflow-artifacts/mpu/abort/<path:artifact_path>
        POST mlflow-artifacts/mpu/complete/<path:artifact_path>
        POST mlflow-artifacts/mpu/create/<path:artifact_path>
        POST mlflow/artifacts/presigned-upload-url
        POST mlflow/upload-artifact
        POST mlflow/experiments/create
        POST mlflow/experiments/delete
        POST mlflow/experiments/delete-experiment-tag
        POST mlflow/experiments/restore
        POST mlflow/experiments/set-experiment-tag
        POST mlflow/experiments/update
        POST mlflow/logged-models
        PATCH mlflow/logged-models/<model_id>
        DELETE mlflow/logged-models/<model_id>
        POST mlflow/logged-models/<model_id>/params
        PATCH mlflow/logged-models/<model_id>/tags
        DELETE mlflow/logged-models/<model_id>/tags/<tag_key>
        POST mlflow/runs/create
        POST mlflow/runs/delete
        POST mlflow/runs/delete-tag
        POST mlflow/runs/log-batch
        POST mlflow/runs/log-inputs
        POST mlflow/runs/log-metric
        POST mlflow/runs/log-model
        POST mlflow/runs/log-parameter
        POST mlflow/runs/outputs
        POST mlflow/runs/restore
        POST mlflow/runs/set-tag
        POST mlflow/runs/update
        POST mlflow/traces
        PATCH mlflow/traces/<request_id>
        PATCH mlflow/traces/<request_id>/tags
        DELETE mlflow/traces/<request_id>/tags
        POST mlflow/traces/delete-traces
        POST mlflow/traces/link-prompts
        POST mlflow/traces/link-to-run
        PATCH mlflow/traces/<trace_id>/tags
        DELETE mlflow/traces/<trace_id>/tags
        POST mlflow/traces/<trace_id>/assessments
        PATCH mlflow/traces/<trace_id>/assessments/<assessment_id>
        DELETE mlflow/traces/<trace_id>/assessments/<assessment_id>
        POST /v1/traces
        POST mlflow/datasets/create
        DELETE mlflow/datasets/<dataset_id>
        POST mlflow/datasets/<dataset_id>/add-experiments
        POST mlflow/datasets/<dataset_id>/remove-experiments
        POST mlflow/datasets/<dataset_id>/records
        DELETE mlflow/datasets/<dataset_id>/records
        PATCH mlflow/datasets/<dataset_id>/tags
        DELETE mlflow/datasets/<dataset_id>/tags/<key>
        POST mlflow/issues
        PATCH mlflow/issues/<issue_id>
        PATCH mlflow/jobs/cancel/<job_id>
        POST jobs/
        PATCH jobs/cancel/{job_id}
        POST mlflow/label-schemas/create
        DELETE mlflow/label-schemas/delete
        PATCH mlflow/label-schemas/update
        POST mlflow/prompt-optimization/jobs
        DELETE mlflow/prompt-optimization/jobs/<job_id>
        POST mlflow/prompt-optimization/jobs/<job_id>/cancel
        POST mlflow/review-queues/create
        POST mlflow/review-queues/delete
        POST mlflow/review-queues/get-or-create-user
        POST mlflow/review-queues/items/add
        POST mlflow/review-queues/items/remove
        POST mlflow/review-queues/items/set-status
        POST mlflow/review-queues/update
        DELETE mlflow/scorers/delete
        PUT mlflow/scorers/online-config
        POST mlflow/scorers/register
        """,
    ),
    **_declare(
        READ,
        Target.MODEL,
        """
        GET mlflow/registered-models/get
        GET mlflow/registered-models/get-latest-versions
        POST mlflow/registered-models/get-latest-versions
        GET mlflow/registered-models/alias
        GET mlflow/model-versions/get
        GET mlflow/model-versions/get-download-uri
        GET /model-versions/get-artifact
        """,
    ),
    **_declare(
        WRITE,
        Target.MODEL,
        """
        PATCH mlflow/registered-models/update
        POST mlflow/registered-models/rename
        DELETE mlflow/registered-models/delete
        POST mlflow/registered-models/set-tag
        DELETE mlflow/registered-models/delete-tag
        POST mlflow/registered-models/alias
        DELETE mlflow/registered-models/alias
        PATCH mlflow/model-versions/update
        POST mlflow/model-versions/transition-stage
        DELETE mlflow/model-versions/delete
        DELETE mlflow/model-versions/delete-tag
        """,
    ),
    # Creating a version, or tagging one (the last Hokusai tag of a set attests it), may cause a
    # signature: both count against the registration limit.
    **_declare(
        WRITE,
        Target.MODEL,
        """
        POST mlflow/model-versions/create
        POST mlflow/model-versions/set-tag
        """,
        rate_class="register",
    ),
    **_declare(WRITE, Target.MODEL_CREATE, "POST mlflow/registered-models/create"),
    **_declare(
        READ,
        Target.MODEL_SEARCH,
        """
        GET mlflow/registered-models/search
        GET mlflow/model-versions/search
        """,
    ),
    # Read-only (its "mutations" are searches), but across every project.
    **_declare(
        READ,
        Target.UNSCOPED,
        """
        GET /graphql
        POST /graphql
        """,
    ),
}

_PREFIX = re.compile(r"^/(?:ajax-)?api/\d+\.0/?")


def route_key(rule: str) -> str:
    """A rule without MLflow's static prefix and its ``/api/<n>.0`` / ``/ajax-api/<n>.0`` prefix.

    >>> route_key("/ajax-api/2.0/mlflow/runs/get"), route_key("/api/2.0mlflow/experiments/search-datasets")
    ('mlflow/runs/get', 'mlflow/experiments/search-datasets')
    >>> route_key("/graphql")
    '/graphql'
    """
    prefix = os.environ.get("_MLFLOW_STATIC_PREFIX", "").rstrip("/")
    if prefix and rule.startswith(prefix + "/"):
        rule = rule[len(prefix) :]
    stripped = _PREFIX.sub("", rule, count=1)
    return stripped if stripped != rule else rule


@functools.cache
def route_table() -> dict[tuple[str, str], Rule]:
    """MLflow's routes and the Hokusai routes (from ``route_table.OPERATIONS``), keyed (method, route_key)."""
    from mlflow_hokusai_plugin.server.route_table import OPERATIONS
    from mlflow_hokusai_plugin.server.routes import API_PREFIX

    table = dict(MLFLOW_ROUTES)
    for op in OPERATIONS:
        table[(op.method.upper(), route_key(API_PREFIX + op.rule))] = op.access
    return table


def rule_for(method: str, rule: str | None) -> Rule:
    """The declared rule of a request matched to ``rule`` (None: no route matched).

    >>> rule_for("POST", "/api/2.0/mlflow/runs/search").role
    'read'
    >>> rule_for("POST", "/ajax-api/2.0/mlflow/model-versions/create").bucket
    'register'
    >>> rule_for("POST", "/ajax-api/3.0/mlflow/gateway/secrets/create").role
    'admin'
    """
    if rule is None:
        return UNROUTED
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    table = route_table()
    found = table.get((method, route_key(rule)))
    if found is None and method == "OPTIONS":
        # Flask answers OPTIONS itself (the Allow header); no handler runs.
        return UNROUTED
    return found or UNDECLARED
