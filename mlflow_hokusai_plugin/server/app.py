"""The ``hokusai`` app factory: ``mlflow server --app-name hokusai``.

Like MLflow's basic-auth app, it configures MLflow's own Flask app and, under uvicorn (the 3.x
default), wraps it in MLflow's FastAPI app: returning the bare Flask app there makes every request
a 500.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from flask import Flask, g, request

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import HokusaiError
from mlflow_hokusai_plugin.db.api_keys import ApiKeyStore
from mlflow_hokusai_plugin.runtime.config import DEV_MODE_BANNER, HokusaiConfig, load_signer
from mlflow_hokusai_plugin.runtime.request_context import REQUEST_ID_HEADER, current_request_id
from mlflow_hokusai_plugin.server import api_views, views
from mlflow_hokusai_plugin.server.auth import (
    ApiKeyAuth,
    AsgiApiKeyMiddleware,
    install_api_key_auth,
    native_route_of,
)
from mlflow_hokusai_plugin.server.basic_auth import install_hokusai_route_permissions
from mlflow_hokusai_plugin.server.body_limits import AsgiBodyLimits, BodyLimits, WsgiBodyLimits
from mlflow_hokusai_plugin.server.errors import error_response
from mlflow_hokusai_plugin.server.launch import StartupError, check_store_uri, refuse_a_bad_launch
from mlflow_hokusai_plugin.server.rate_limits import (
    AuthFailureLimit,
    install_rate_limits,
    rate_limit_storage_check,
    redact_uri,
)
from mlflow_hokusai_plugin.server.request_log import (
    AsgiRequestLogMiddleware,
    install_request_log,
    request_logger,
)
from mlflow_hokusai_plugin.server.request_scope import install_route_rules
from mlflow_hokusai_plugin.server.state import EXTENSION
from mlflow_hokusai_plugin.server.tcp_nodelay import enable_tcp_nodelay_on_listeners

_logger = logging.getLogger(__name__)

# Python frames a request may nest: the interpreter's default is 1000; C parsers recursing this
# deep stay well inside a worker thread's 8 MiB stack (100000 levels overflow it).
RECURSION_LIMIT = 10_000


class HokusaiState:
    """What the routes share in one worker: configuration, attester, stores."""

    dev_mode_banner = DEV_MODE_BANNER

    def __init__(self, config: HokusaiConfig, attester: str, ephemeral_key: bool) -> None:
        self.config = config
        self.attester = attester
        self.ephemeral_key = ephemeral_key
        self._api_keys: ApiKeyStore | None = None
        self.limiter: Any = None

    @staticmethod
    def registry_store() -> Any:
        from mlflow.server.handlers import _get_model_registry_store

        return _get_model_registry_store()

    def hokusai_store(self) -> Any:
        return self.registry_store().hokusai

    def api_keys(self) -> ApiKeyStore:
        if self._api_keys is None:
            self._api_keys = ApiKeyStore(self.registry_store().engine)
        return self._api_keys

    @staticmethod
    def project_of(name: str) -> str | None:
        """The ``hokusai.project`` of a registered model (cached for a couple of seconds)."""
        return _cached_project(name, int(time.monotonic() // 2))

    @staticmethod
    def current_project_of(name: str) -> tuple[bool, str | None]:
        """Whether a registered model exists, and its ``hokusai.project``, read now (for writes)."""
        from mlflow.exceptions import MlflowException

        try:
            return True, HokusaiState.registry_store().registered_model_tag(name, T.PROJECT)
        except MlflowException as exc:
            # Anything but "no such model" (a bad name, the database away) is not a new model:
            # answered as a model of no project, which a scoped key may not write.
            return exc.error_code != "RESOURCE_DOES_NOT_EXIST", None

    def last_backup_time(self) -> float | None:
        """Unix time of the last successful ``hokusai backup create`` on this database, if any."""
        from mlflow_hokusai_plugin.db.backups import last_backup_time

        try:
            return last_backup_time(self.registry_store().engine)
        except Exception:  # noqa: BLE001 - a scrape reports what it can; readiness shows the database
            _logger.warning("could not read the last backup time", exc_info=True)
            return None

    def readiness(self) -> dict[str, dict]:
        checks = {}
        try:
            from sqlalchemy import text

            with self.registry_store().engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["attester_key"] = {"ok": True, "address": self.attester, "ephemeral": self.ephemeral_key}
        checks["artifact_store"] = _artifact_store_check()
        if self.limiter is not None:
            checks["rate_limit_storage"] = rate_limit_storage_check(self.limiter)
        return checks


def _artifact_store_check() -> dict:
    from mlflow_hokusai_plugin.store.artifact_digest import SERVER_ARTIFACT_DESTINATION_ENV

    destination = os.environ.get(SERVER_ARTIFACT_DESTINATION_ENV)
    if not destination:
        return {"ok": True, "detail": "artifacts are not proxied by this server"}
    try:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(destination).list_artifacts("")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": type(exc).__name__}


def _check_store_uris() -> None:
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

    backend = os.environ.get(BACKEND_STORE_URI_ENV_VAR, "")
    check_store_uri(os.environ.get(REGISTRY_STORE_URI_ENV_VAR) or backend)


@functools.lru_cache(maxsize=4096)
def _cached_project(name: str, _time_bucket: int) -> str | None:
    return HokusaiState.current_project_of(name)[1]


def _input_too_deep(_exc: RecursionError) -> Any:
    """A parser gave up on input nested too deep for it: the request's fault, so a 400."""
    return error_response(
        400, "INVALID_PARAMETER_VALUE", "the request holds a value nested too deeply to be read"
    )


def _stop_server(reason: Exception) -> None:
    """Make a refused start stop the whole server.

    ``mlflow server`` runs the checks before any worker starts (launch.py); this is for what only
    a worker can find, and for a server started some other way. A worker that raises is restarted
    forever by uvicorn's multi-worker supervisor, so the server would neither serve nor exit;
    gunicorn halts by itself. Under a uvicorn supervisor, ask it to shut down.
    """
    _logger.error("hokusai: the server cannot start: %s", reason)
    if os.environ.get("_MLFLOW_SGI_NAME") != "uvicorn":
        return
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            parent = handle.read().split(b"\0")
    except OSError:
        return
    if any(part.endswith(b"uvicorn") for part in parent) and b"--workers" in parent:
        os.kill(os.getppid(), signal.SIGTERM)


def _announce_start(state: HokusaiState) -> None:
    """One JSON line per worker, on the request log, saying what this server signs with and uses."""
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

    from mlflow_hokusai_plugin.store.artifact_digest import SERVER_ARTIFACT_DESTINATION_ENV

    store = os.environ.get(REGISTRY_STORE_URI_ENV_VAR) or os.environ.get(BACKEND_STORE_URI_ENV_VAR, "")
    settings = getattr(state.limiter, "settings", None)
    line = {
        "event": "start",
        "pid": os.getpid(),
        "attester": state.attester,
        "ephemeral_key": state.ephemeral_key,
        "auth": state.config.auth,
        "store": redact_uri(store),
        "artifacts": redact_uri(os.environ.get(SERVER_ARTIFACT_DESTINATION_ENV) or "") or None,
        "rate_limits": None if settings is None or not settings.enabled else redact_uri(settings.storage_uri),
        "chain_domain": state.config.has_chain_domain,
    }
    request_logger().info(json.dumps(line))


def _reconcile_in_background() -> None:
    """Complete registrations a crash left pending; in a thread so the worker serves meanwhile."""

    def run() -> None:
        try:
            results = HokusaiState.registry_store().registrar.reconcile()
            if results:
                _logger.warning("hokusai reconcile at start: %s", results)
        except Exception:  # noqa: BLE001 - a failed pass is retried at the next start or by the CLI
            _logger.exception("hokusai reconcile at start failed")

    threading.Thread(target=run, name="hokusai-reconcile", daemon=True).start()


def create_app(app: Flask | None = None) -> Any:
    """Configure MLflow's Flask app with the Hokusai routes and return the app to serve."""
    from mlflow.server import app as mlflow_app

    app = app or mlflow_app
    try:
        config = HokusaiConfig.from_env()
        _check_store_uris()
        signer, ephemeral = load_signer()
    except (HokusaiError, StartupError) as exc:
        _stop_server(exc)
        raise
    # eth-account imports py_ecc, which raises the interpreter's recursion limit to 100000: from
    # then on a parser recursing into hostile input (MLflow's handlers json.loads string fields
    # such as a logged model's model_json) overflows the C stack and kills the worker instead of
    # raising RecursionError, which _input_too_deep answers. Nothing the server runs needs more.
    sys.setrecursionlimit(min(sys.getrecursionlimit(), RECURSION_LIMIT))
    if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
        # Before this worker accepts its first connection (see tcp_nodelay.py: a 40 ms stall).
        enable_tcp_nodelay_on_listeners()
    if ephemeral:
        _logger.warning("!" * 100 + "\n%s\n%s\n" + "!" * 100, DEV_MODE_BANNER, f"attester {signer.address}")
    app.extensions[EXTENSION] = HokusaiState(config, signer.address, ephemeral)
    # Body size and JSON depth limits around everything Flask does (its hooks parse bodies, the
    # API-key check among them), under uvicorn and gunicorn alike.
    body_limits = BodyLimits(config.max_body_bytes, config.max_json_depth)
    app.wsgi_app = WsgiBodyLimits(app.wsgi_app, body_limits)
    # The registry store builds the Hokusai tables on first use; build it now so a broken
    # database stops the server at start rather than at the first request.
    HokusaiState.registry_store()
    app.register_blueprint(views.blueprint)
    app.register_blueprint(api_views.blueprint)
    app.register_error_handler(RecursionError, _input_too_deep)

    @app.before_request
    def _remember_request() -> None:
        g.hokusai_request_id = None
        current_request_id()

    # Every request's declared rule (permissions.py), before the auth and rate-limit hooks read it.
    install_route_rules(app)

    install_request_log(app)

    api_key_auth = None
    if config.auth == "apikey":
        api_key_auth = ApiKeyAuth(
            app.extensions[EXTENSION].api_keys(), HokusaiState.project_of, HokusaiState.current_project_of
        )
        install_api_key_auth(app, api_key_auth)
    elif config.auth == "none":
        _logger.warning("HOKUSAI_AUTH=none: every request is accepted (dev mode)")

    @app.after_request
    def _echo_request_id(response):
        if request.path.startswith(("/api/", "/ajax-api/")):
            response.headers[REQUEST_ID_HEADER] = current_request_id() or ""
        return response

    _reconcile_in_background()
    # Last of our hooks: the limiter counts per principal, which the auth hook sets.
    app.extensions[EXTENSION].limiter = install_rate_limits(app, config)
    if api_key_auth is not None:
        api_key_auth.failures = AuthFailureLimit.from_limiter(app.extensions[EXTENSION].limiter)
    _announce_start(app.extensions[EXTENSION])
    if config.auth == "basic":
        # MLflow's basic-auth app: its users and permissions, its own ASGI wrapping.
        from mlflow.server.auth import bootstrap_admin_user, get_flask_server_secret_key
        from mlflow.server.auth import create_app as create_basic_auth_app

        # What `mlflow server --app-name basic-auth` does before its workers start.
        get_flask_server_secret_key()
        bootstrap_admin_user()
        served = create_basic_auth_app(app)
        # After basic-auth's own hooks, so the user is authenticated when ours runs.
        install_hokusai_route_permissions(app)
        if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
            # Then `served` is MLflow's FastAPI app: the body limits outermost there too.
            native = native_route_of(served)
            served.add_middleware(
                AsgiBodyLimits, limits=body_limits, is_native=lambda scope: native(scope) is not None
            )
        return served
    if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        fastapi_app = create_fastapi_app(app)
        # One matcher (and its cache) for the middlewares.
        route_of = native_route_of(fastapi_app)

        def is_native(scope: dict) -> bool:
            return route_of(scope) is not None

        if api_key_auth is not None:
            fastapi_app.add_middleware(AsgiApiKeyMiddleware, auth=api_key_auth, route_of=route_of)
        # Around the auth middleware: it sees the status (and principal) of every native request.
        fastapi_app.add_middleware(AsgiRequestLogMiddleware, is_native=is_native, route_of=route_of)
        # Added last, so outermost: no body reaches anything, nor fills MLflow's bridge to Flask,
        # before its size (and on native routes its depth) is checked; it logs its own refusals.
        fastapi_app.add_middleware(AsgiBodyLimits, limits=body_limits, is_native=is_native)
        return fastapi_app
    return app


# `mlflow server` imports this module in its own process before it starts any worker (to see
# whether create_app is a factory): a refused configuration ends the command there, exit code 1.
refuse_a_bad_launch()
