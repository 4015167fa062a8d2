"""Real services for the tests: a PostgreSQL server, S3 over HTTP (moto), an MLflow server.

PostgreSQL: the machine's own server on 127.0.0.1:5432 when it answers; otherwise a throwaway
cluster started with ``initdb``/``pg_ctl``; otherwise the run stops with a message that says how
to get one. A test that needs PostgreSQL is never skipped silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg2
from psycopg2 import sql

from mlflow_hokusai_plugin.demo.embedded_server import free_port

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class PostgresUnavailable(RuntimeError):
    pass


def _can_connect(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    """The PostgreSQL server the tests use: existing, or a throwaway one owned by the test run."""

    def __init__(self) -> None:
        self.base_url = os.environ.get("HOKUSAI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
        self._datadir: str | None = None

    def start(self) -> PostgresServer:
        if _can_connect(self.base_url + "/postgres"):
            return self
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            raise PostgresUnavailable(
                f"No PostgreSQL server answers at {self.base_url} and initdb/pg_ctl are not installed. "
                "Start PostgreSQL (trust auth, user postgres) or install it (apt-get install postgresql)."
            )
        self._datadir = tempfile.mkdtemp(prefix="hokusai-pg-")
        port = free_port()
        run_as = _unprivileged_prefix(self._datadir)
        subprocess.run(
            [*run_as, initdb, "-D", self._datadir, "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run_as,
                pg_ctl,
                "-D",
                self._datadir,
                "-w",
                "-l",
                f"{self._datadir}/log",
                "-o",
                f"-p {port} -k {self._datadir} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.base_url = f"postgresql://postgres@127.0.0.1:{port}"
        if not _can_connect(self.base_url + "/postgres"):
            raise PostgresUnavailable(f"Started a throwaway PostgreSQL in {self._datadir} but cannot connect")
        return self

    def stop(self) -> None:
        if self._datadir:
            subprocess.run(
                [
                    *_unprivileged_prefix(self._datadir),
                    _pg_bin("pg_ctl"),
                    "-D",
                    self._datadir,
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
            )
            shutil.rmtree(self._datadir, ignore_errors=True)

    def create_database(self, prefix: str = "hokusai_test") -> str:
        """A new empty database; returns its SQLAlchemy URL.

        The URL names the psycopg2 driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3.
        """
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _autocommit(self.base_url + "/postgres") as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"{self.base_url.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with _autocommit(self.base_url + "/postgres") as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _unprivileged_prefix(datadir: str) -> list[str]:
    # initdb refuses to run as root; CI runs as root, so the throwaway cluster runs as 'postgres'.
    if os.geteuid() != 0:
        return []
    shutil.chown(datadir, user="postgres")
    return ["runuser", "-u", "postgres", "--"]


class _autocommit:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __enter__(self):
        self.conn = psycopg2.connect(self.dsn)
        self.conn.autocommit = True
        return self.conn.cursor()

    def __exit__(self, *exc) -> None:
        self.conn.close()


class S3Server:
    """moto's S3 in server mode: real HTTP, a bucket per test run."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.bucket = f"hokusai-test-{uuid.uuid4().hex[:8]}"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url}

    def start(self) -> S3Server:
        import boto3

        self._server.start()
        boto3.client("s3", endpoint_url=self.endpoint_url, **_boto_credentials()).create_bucket(
            Bucket=self.bucket
        )
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, **_boto_credentials())

    def stop(self) -> None:
        self._server.stop()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "hokusai-test-logs"
    path.mkdir(exist_ok=True)
    return path
