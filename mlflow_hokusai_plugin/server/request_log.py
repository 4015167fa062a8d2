"""One JSON line per request, and the request metrics, for every route the server answers.

Each line holds the time, the request id (also in the ``X-Request-Id`` response header and in the
audit log), who asked (the principal's name, never a key), the method, the route (the URL rule,
so paths with ids group together), the path, the status and the latency in milliseconds::

    {"ts": "2026-11-27T10:00:00.123Z", "event": "request", "request_id": "9f0c...",
     "principal": "key:ci-pipeline", "method": "POST", "route": "/api/2.0/mlflow/model-versions/create",
     "path": "/api/2.0/mlflow/model-versions/create", "status": 200, "latency_ms": 41.2}

Flask's hooks see MLflow's and our routes; under uvicorn a few routes are served by FastAPI
itself (not the mounted Flask app), and the ASGI middleware below logs those. Health checks and
metric scrapes are counted but not logged: they come every few seconds and say nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request

from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.runtime import metrics
from mlflow_hokusai_plugin.runtime.request_context import current_actor, current_request_id
from mlflow_hokusai_plugin.server import routes

LOGGER_NAME = "mlflow_hokusai_plugin.requests"
_QUIET_PATHS = frozenset(
    {
        "/health",
        *routes.both(routes.HEALTH_LIVE),
        *routes.both(routes.HEALTH_READY),
        *routes.both(routes.METRICS),
    }
)


def request_logger() -> logging.Logger:
    """The request log: JSON lines on stderr, whatever format MLflow gives its own logs."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line, not a second one in MLflow's text format
    return logger


def log_request(
    *,
    request_id: str | None,
    principal: str | None,
    method: str,
    route: str | None,
    path: str,
    status: int,
    seconds: float,
) -> None:
    """Count the request and, unless it is a health check or a scrape, write its line."""
    metrics.observe_request(route, method, status, seconds)
    if path in _QUIET_PATHS:
        return
    line = {
        "ts": iso_utc(time.time()),
        "event": "request",
        "request_id": request_id,
        "principal": principal,
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
    }
    request_logger().info(json.dumps(line))


def install_request_log(app: Flask) -> None:
    """Log and count every request the Flask app answers."""

    @app.before_request
    def _start_clock() -> None:
        g.hokusai_started = time.perf_counter()

    @app.after_request
    def _log(response):
        started = getattr(g, "hokusai_started", None)
        rule = request.url_rule.rule if request.url_rule is not None else None
        log_request(
            request_id=current_request_id(),
            principal=current_actor(),
            method=request.method,
            route=rule,
            path=request.path,
            status=response.status_code,
            seconds=time.perf_counter() - started if started is not None else 0.0,
        )
        return response


class AsgiRequestLogMiddleware:
    """Logs the requests FastAPI answers natively; the Flask hooks log everything else."""

    def __init__(self, app: Any, is_native: Callable[[dict], bool], route_of: Callable[[dict], str | None]):
        self.app = app
        self.is_native = is_native
        self.route_of = route_of

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.is_native(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}  # what the client gets if the app raises before answering

        async def remember_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            headers = dict(scope.get("headers") or [])
            incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
            state = scope.get("state") or {}
            log_request(
                request_id=incoming or None,
                principal=state.get("hokusai_principal"),
                method=scope["method"],
                route=self.route_of(scope),
                path=scope["path"],
                status=status["code"],
                seconds=time.perf_counter() - started,
            )
