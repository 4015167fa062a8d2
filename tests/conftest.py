"""Session-wide real services. See tests/infra.py for how each one is obtained."""

from __future__ import annotations

import os
import signal

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
import uuid

import pytest

from mlflow_hokusai_plugin.demo.embedded_server import MlflowServerProcess
from tests.infra import PostgresServer, PostgresUnavailable, S3Server, log_dir


def pytest_sessionstart(session) -> None:
    """On SIGTERM (a CI timeout, a killed runner), stop every server the session started, then
    end the session as Ctrl-C does, so the fixtures' teardowns run too (PostgreSQL's throwaway
    cluster, the databases, a flow's process group). The servers live in sessions of their own
    and would otherwise outlive pytest."""

    def terminated(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_IGN)  # one clean-up, however many signals follow
        MlflowServerProcess.stop_all()
        raise KeyboardInterrupt(f"pytest received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, terminated)


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

    yield from point_mlflow_at(mlflow_server.url, monkeypatch)


def point_mlflow_at(url: str, monkeypatch):
    """Point MLflow's fluent client at ``url`` for one test, and undo it after.

    ``mlflow.set_registry_uri`` also sets ``MLFLOW_REGISTRY_URI`` and ``set_registry_uri(None)``
    does not unset it: without monkeypatch restoring the variables, one module's server would
    receive the next module's registrations.
    """
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    yield url
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


class HokusaiServers:
    """Starts ``mlflow server --app-name hokusai`` processes; stops them at the end of the session.

    ``start(backend="postgresql"|"sqlite", workers=2, gunicorn=False, env={...})`` returns a running
    MlflowServerProcess with artifacts in S3 (moto). Each call gets a fresh database unless
    ``store_uri`` is given (to restart a server on the same database), and the session's artifact
    prefix unless ``artifacts_destination`` is given.
    """

    # The session's instance, for the module teardown that stops each module's servers.
    current: HokusaiServers | None = None

    def __init__(self, postgres, s3, tmp_path_factory) -> None:
        self.postgres, self.s3, self.tmp = postgres, s3, tmp_path_factory
        self.attester_key = "0x" + "5e" * 32
        self._running: list[MlflowServerProcess] = []
        self._databases: list[str] = []
        self._kept: set[str] = set()  # store URIs of the servers the whole session shares
        HokusaiServers.current = self

    def store_uri(self, backend: str = "postgresql") -> str:
        if backend == "sqlite":
            return f"hokusai+sqlite:///{self.tmp.mktemp('hokusai-sqlite') / 'mlflow.db'}"
        url = self.postgres.create_database()
        self._databases.append(url)
        return "hokusai+postgresql://" + url.split("://", 1)[1]

    def start(
        self,
        backend: str = "postgresql",
        *,
        workers: int = 2,
        gunicorn: bool = False,
        env: dict | None = None,
        store_uri: str | None = None,
        artifacts_destination: str | None = None,
        extra_args: list[str] | None = None,
    ) -> MlflowServerProcess:
        store_uri = store_uri or self.store_uri(backend)
        env = dict(env or {})
        if not any(name.startswith("HOKUSAI_RATELIMIT_") for name in env):
            # Tests share one loopback address, so the per-IP default limits would meter the whole
            # session; the rate-limit tests set their own limits and so keep the limiter on.
            env["HOKUSAI_RATELIMIT_ENABLED"] = "0"
        extra = ["--gunicorn-opts", f"--workers {workers} --timeout 120"] if gunicorn else []
        extra += extra_args or []
        server = MlflowServerProcess(
            store_uri,
            artifacts_destination or f"s3://{self.s3.bucket}/hokusai-artifacts",
            workers=workers,
            app_name="hokusai",
            env={
                **self.s3.env,
                "HOKUSAI_ATTESTER_KEY": self.attester_key,
                "HOKUSAI_AUTH": "none",
                "HOKUSAI_DEV_MODE": "1",
                **env,
            },
            log_path=log_dir() / f"hokusai-{uuid.uuid4().hex[:6]}.log",
            extra_args=extra,
        )
        server.store_uri = store_uri
        server.start(timeout=120)
        self._running.append(server)
        return server

    def start_basic_auth(self, backend: str = "postgresql", *, workers: int = 2, env: dict | None = None):
        """A server in ``HOKUSAI_AUTH=basic`` mode (MLflow's users, ``default_permission = READ``,
        its own auth database): returns (server, the ``admin`` user's password)."""
        folder = self.tmp.mktemp("basic-auth")
        config = folder / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        password = "adm1n-" + uuid.uuid4().hex
        server = self.start(
            backend,
            workers=workers,
            env={
                "HOKUSAI_AUTH": "basic",
                "HOKUSAI_DEV_MODE": "",
                "MLFLOW_AUTH_CONFIG_PATH": str(config),
                "MLFLOW_AUTH_ADMIN_PASSWORD": password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
                **(env or {}),
            },
        )
        return server, password

    def keep(self, server: MlflowServerProcess) -> MlflowServerProcess:
        """Keep ``server`` (and its database) until the end of the session, not of its module."""
        self._kept.add(server.store_uri)
        return server

    def mark(self) -> tuple[int, int]:
        """How many servers and databases there are now, for :meth:`stop_since`."""
        return len(self._running), len(self._databases)

    def stop_since(self, mark: tuple[int, int]) -> None:
        """Stop the servers started, and drop the databases made, since ``mark`` (but kept ones).

        Each server holds database connections in every worker: kept to the end of the session,
        the suite's servers would exhaust PostgreSQL's connections (100 by default).
        """
        servers, databases = mark
        for server in self._running[servers:]:
            if server.store_uri not in self._kept:
                server.stop()
        kept_urls = {uri.split("://", 1)[1] for uri in self._kept}
        for url in self._databases[databases:]:
            if url.split("://", 1)[1] not in kept_urls:
                self.postgres.drop_database(url)
        self._running[servers:] = [s for s in self._running[servers:] if s.store_uri in self._kept]
        self._databases[databases:] = [
            u for u in self._databases[databases:] if u.split("://", 1)[1] in kept_urls
        ]

    def stop_all(self) -> None:
        for server in self._running:
            server.stop()
        for url in self._databases:
            self.postgres.drop_database(url)


@pytest.fixture(scope="session")
def hokusai_servers(postgres, s3, tmp_path_factory):
    servers = HokusaiServers(postgres, s3, tmp_path_factory)
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def hokusai_server(hokusai_servers):
    """One shared hokusai server: uvicorn, 2 workers, PostgreSQL, S3."""
    return hokusai_servers.keep(hokusai_servers.start("postgresql", workers=2))


@pytest.fixture(scope="module", autouse=True)
def _stop_the_modules_servers():
    """At the end of each module, stop the hokusai servers it started (not the shared one).

    Asks for no fixture, so a module without servers (the unit tests) starts no service.
    """
    before = HokusaiServers.current
    mark = before.mark() if before is not None else (0, 0)
    yield
    if HokusaiServers.current is not None:
        HokusaiServers.current.stop_since(mark)


_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module", autouse=True)
def _forget_the_modules_mlflow_uris():
    """At the end of each module, put MLflow's tracking and registry URIs back as they were.

    ``mlflow.set_registry_uri(url)`` also sets ``MLFLOW_REGISTRY_URI``, which
    ``set_registry_uri(None)`` leaves behind: the next module's ``MlflowClient(its_url)`` would
    reach this module's (stopped) server for every registry call.
    """
    import mlflow

    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def redis_url():
    """An empty Redis database of its own (reserved with a marker key), flushed afterwards."""
    import redis

    base = "redis://127.0.0.1:6379"
    try:
        redis.Redis.from_url(base).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is required by the tests ({base}): {exc}", returncode=3)
    for db in range(7, 0, -1):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.set("hokusai-test-reserved", "1", nx=True) and client.dbsize() == 1:
            yield f"{base}/{db}"
            client.flushdb()
            return
    pytest.fail("no empty Redis database among 1-7 on 127.0.0.1:6379")
