"""PostgreSQL: ``pg_dump`` of one consistent snapshot, ``pg_restore``, and scratch databases.

The dump is ``pg_dump --format=custom`` of the whole database (MLflow's tables and the plugin's).
It runs on a snapshot exported from our own REPEATABLE READ transaction, in which the row counts
are read too: the counts in the manifest are exactly the rows in the dump, even while the server
keeps writing.

``pg_dump``/``pg_restore`` must be the server's major version or newer. Passwords reach them
through ``PGPASSWORD``, never on their command line, where ``ps`` would show them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from mlflow_hokusai_plugin.backup.connections import CONNECT_TIMEOUT_S, database_errors, engine_for, one_line
from mlflow_hokusai_plugin.backup.database_facts import read_counts, read_revisions
from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.uris import password_of, redact
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.runtime.uris import without_password

DUMP_FILE = "database.dump"
DUMP_FORMAT = "pg_dump custom"
SCRATCH_PREFIX = "hokusai_verify_"
_LOG = logging.getLogger(__name__)

# Relations a restore could collide with: tables, partitions, views, materialized views, sequences,
# foreign tables, in any schema but the system ones.
_USER_RELATIONS = """
    SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""


def dump(store_uri: str, destination: Path) -> tuple[dict, dict]:
    """Dump the database of ``store_uri`` to ``destination``; returns (counts, revisions) of the dump."""
    pg_dump = _tool("pg_dump")
    engine = engine_for(store_uri)
    try:
        with database_errors(store_uri, "back up"), engine.connect() as connection:
            connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                connection.execute(text("SET TRANSACTION READ ONLY"))
                snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                counts, revisions = read_counts(connection), read_revisions(connection)
                # The snapshot lives as long as this transaction: pg_dump runs inside it.
                _run(
                    [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={destination}"],
                    store_uri,
                    "pg_dump",
                )
    finally:
        engine.dispose()
    return counts, revisions


def restore(dump_file: Path, store_uri: str) -> None:
    """``pg_restore`` a dump into the existing database of ``store_uri``, in one transaction.

    Ownership and grants are left to the target (``--no-owner --no-privileges``): the restored
    objects belong to the user restoring, who need not have the source's roles.
    """
    pg_restore = _tool("pg_restore")
    _run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            str(dump_file),
        ],
        store_uri,
        "pg_restore",
    )


def check_source(store_uri: str) -> None:
    """pg_dump is installed and the database answers: checked before anything is written."""
    _tool("pg_dump")
    _connect(store_uri)


def check_target(store_uri: str) -> None:
    """pg_restore is installed and the target database answers: checked before anything is written."""
    _tool("pg_restore")
    _connect(store_uri)


def check_restore_tool() -> None:
    """pg_restore is installed (verify needs it before it creates a scratch database)."""
    _tool("pg_restore")


def _connect(store_uri: str) -> None:
    engine = engine_for(store_uri)
    try:
        with database_errors(store_uri, "connect to"), engine.connect():
            pass
    finally:
        engine.dispose()


def is_empty(store_uri: str) -> bool:
    """True if the database holds no table, view or sequence outside the system schemas."""
    engine = engine_for(store_uri)
    try:
        with database_errors(store_uri, "connect to the target"), engine.connect() as connection:
            return connection.execute(text(_USER_RELATIONS)).scalar_one() == 0
    finally:
        engine.dispose()


def maintenance_uri(store_uri: str) -> str:
    """The same server, user and password, on the ``postgres`` database that every server has.

    >>> maintenance_uri("hokusai+postgresql://u:p@db:5433/mlflow?sslmode=require")
    'postgresql+psycopg2://u:p@db:5433/postgres?sslmode=require'
    """
    url = make_url(database_url(store_uri)).set(database="postgres")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(server_uri: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_uri``, dropped on the way out, even on failure.

    Yields its SQLAlchemy URL (with the password, if any: never print it). The user of
    ``server_uri`` needs the CREATEDB privilege.
    """
    url = make_url(database_url(server_uri))
    if not url.database:
        url = url.set(database="postgres")
    server = url.render_as_string(hide_password=False)
    name = SCRATCH_PREFIX + secrets.token_hex(6)
    admin = engine_for(server, isolation_level="AUTOCOMMIT")
    try:
        with database_errors(server_uri, "create a scratch database on"), admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            _drop(admin, name, server_uri)
    finally:
        admin.dispose()


def _drop(admin, name: str, server_uri: str) -> None:
    try:
        with admin.connect() as connection:
            # WITH (FORCE) (PostgreSQL 13+): a connection left open by a failed check must not
            # keep the scratch database alive.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:  # the verdict already computed matters more than the cleanup
        _LOG.warning(
            "could not drop the scratch database %s on %s (drop it by hand): %s",
            name,
            without_password(server_uri),
            redact(one_line(str(exc)), password_of(server_uri)),
        )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} is not installed or not on PATH: install the PostgreSQL client tools of the "
            f"server's major version or newer (e.g. apt-get install postgresql-client)"
        )
    return found


def _libpq_url(store_uri: str) -> str:
    """The libpq connection URL of a store URI, without its password (that goes in PGPASSWORD)."""
    url = make_url(database_url(store_uri)).set(drivername="postgresql", password=None)
    return url.render_as_string(hide_password=False)


def _run(command: list[str], store_uri: str, what: str) -> None:
    password = password_of(store_uri)
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
    if password is not None:
        env["PGPASSWORD"] = password
    # --no-password: a missing password fails at once instead of waiting for a prompt (cron).
    command = [command[0], "--no-password", f"--dbname={_libpq_url(store_uri)}", *command[1:]]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise BackupError(f"cannot run {what}: {exc.strerror}") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        detail = " ".join(lines[-3:]) or f"exit code {result.returncode}"
        raise BackupError(redact(f"{what} failed on {without_password(store_uri)}: {detail}", password))
