"""The start checks ``mlflow server --app-name hokusai`` runs before it starts any worker.

``mlflow server`` imports the app's module in its own process, to see whether ``create_app`` is a
factory, after it has built the stores and before it launches uvicorn or gunicorn. That import is
the one moment the command itself can be stopped: a worker that refuses to start is restarted
forever by uvicorn, or ends a server that then exits 0. So the checks run there, and a refused
configuration ends ``mlflow server`` with exit code 1 and one line saying why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mlflow_hokusai_plugin.core.errors import HokusaiError
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.runtime.config import NO_CHAIN_DOMAIN, ConfigError, HokusaiConfig, load_signer
from mlflow_hokusai_plugin.runtime.signer import ENV_KEY, ENV_KEYSTORE, Signer
from mlflow_hokusai_plugin.server.rate_limits import RateLimitSettings
from mlflow_hokusai_plugin.store import WORKSPACES_UNSUPPORTED

_logger = logging.getLogger(__name__)

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


def preflight(environ: Mapping[str, str] | None = None, store_uri: str | None = None) -> None:
    """The start checks, run in the ``mlflow server`` process before it starts any worker.

    A worker that fails them is restarted forever by uvicorn; failing here makes ``mlflow server``
    exit 1 with the reason instead. Dev mode's ephemeral key is made later, by the workers. With
    ``store_uri``, a database that holds on-chain models needs the chain's EIP-712 domain.
    """
    env = os.environ if environ is None else environ
    config = HokusaiConfig.from_env(env)
    if store_uri is not None and not config.has_chain_domain:
        onchain = _onchain_models(store_uri)
        if onchain:
            raise ConfigError(
                f"registered model(s) {', '.join(onchain)} have hokusai.onchain_model_id: {NO_CHAIN_DOMAIN}"
            )
    if env.get(ENV_KEY) or env.get(ENV_KEYSTORE):
        Signer.from_env(env)
    elif env.get("HOKUSAI_DEV_MODE", "") != "1":
        load_signer(env)  # raises the "no attester key" error


def _onchain_models(store_uri: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` registered models tagged ``hokusai.onchain_model_id`` (none in a database
    MLflow has not created yet)."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(database_url(store_uri))
    try:
        connection = engine.connect()
    except OperationalError as exc:
        # Not up yet: MLflow's own start waits and retries; the tag refusal still holds after.
        _logger.warning("could not look for on-chain models before starting: %s", exc.orig)
        engine.dispose()
        return []
    try:
        with connection:
            if not inspect(connection).has_table("registered_model_tags"):
                return []
            rows = connection.execute(
                text("SELECT name FROM registered_model_tags WHERE key = :key ORDER BY name LIMIT :limit"),
                {"key": "hokusai.onchain_model_id", "limit": limit},
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()
