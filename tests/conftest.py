"""Session-wide real services. See tests/infra.py for how each one is obtained."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
import uuid

import pytest

from mlflow_hokusai_plugin.embedded_server import MlflowServerProcess
from tests.infra import PostgresServer, PostgresUnavailable, S3Server, log_dir


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.exit(f"PostgreSQL is required by the integration tests: {exc}", returncode=3)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3():
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(postgres, s3):
    """A plain ``mlflow server`` on a fresh PostgreSQL database with artifacts in S3 over HTTP."""
    db_url = postgres.create_database()
    server = MlflowServerProcess(
        db_url,
        f"s3://{s3.bucket}/artifacts",
        env=s3.env,
        log_path=log_dir() / f"mlflow-{uuid.uuid4().hex[:6]}.log",
    )
    server.start()
    yield server
    server.stop()
    postgres.drop_database(db_url)


@pytest.fixture()
def tracking_uri(mlflow_server, monkeypatch):
    """Point the MLflow client of this test at the session's server."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    yield mlflow_server.url
    mlflow.set_tracking_uri(None) if hasattr(mlflow, "set_tracking_uri") else None
    os.environ.pop("MLFLOW_TRACKING_URI", None)
