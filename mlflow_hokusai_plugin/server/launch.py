"""The start checks ``mlflow server --app-name hokusai`` runs before it starts any worker.

``mlflow server`` imports the app's module in its own process, to see whether ``create_app`` is a
factory, after it has built the stores and before it launches uvicorn or gunicorn. That import is
the one moment the command itself can be stopped: a worker that refuses to start is restarted
forever by uvicorn, or ends a server that then exits 0. So the checks run there, and a refused
configuration ends ``mlflow server`` with exit code 1 and one line saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow_hokusai_plugin.core.errors import HokusaiError
from mlflow_hokusai_plugin.server.config import preflight
from mlflow_hokusai_plugin.server.rate_limits import RateLimitSettings
from mlflow_hokusai_plugin.store import WORKSPACES_UNSUPPORTED

APP_NAME = "hokusai"
STORE_SCHEMES = ("hokusai+postgresql", "hokusai+sqlite")


class StartupError(RuntimeError):
    """The server must not start (no attester key, a store without the Hokusai scheme...)."""


def mlflow_server_params() -> Mapping[str, Any] | None:
    """The options of the ``mlflow server --app-name hokusai`` command running in this process,
    or None anywhere else (a worker, a client, the ``hokusai`` CLI)."""
    import click

    context = click.get_current_context(silent=True)
    if context is None or context.info_name != "server" or context.params.get("app_name") != APP_NAME:
        return None
    return context.params


def check_store_uri(store_uri: str | None) -> None:
    """Refuse a store the Hokusai app cannot work on (MLflow's own schemes, a file store).

    >>> check_store_uri("hokusai+sqlite:///mlflow.db")
    >>> check_store_uri("sqlite:///mlflow.db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.server.launch.StartupError: the hokusai app needs a Hokusai store: ...
    """
    if not (store_uri or "").startswith(tuple(scheme + "://" for scheme in STORE_SCHEMES)):
        scheme = (store_uri or "").split("://", 1)[0] if "://" in (store_uri or "") else "none"
        raise StartupError(
            "the hokusai app needs a Hokusai store: start the server with "
            "--backend-store-uri hokusai+postgresql://... or hokusai+sqlite:///... "
            f"(got {scheme}://)"
        )


def check_launch(params: Mapping[str, Any]) -> None:
    """Every check that needs no worker: the options, the store, the settings, the attester key."""
    if params.get("enable_workspaces"):
        raise StartupError(WORKSPACES_UNSUPPORTED)
    # MLflow's own default (a plain sqlite:///mlflow.db) when neither URI is given: refused too.
    store_uri = params.get("registry_store_uri") or params.get("backend_store_uri")
    check_store_uri(store_uri)
    RateLimitSettings.from_env()
    preflight(store_uri=store_uri)


def refuse_a_bad_launch() -> None:
    """Inside ``mlflow server --app-name hokusai``: exit 1 with the reason if it must not start."""
    params = mlflow_server_params()
    if params is None:
        return
    try:
        check_launch(params)
    except (HokusaiError, StartupError) as exc:
        raise SystemExit(f"hokusai: the server cannot start: {exc}") from None
