"""Apply the plugin's Alembic migrations (``hokusai db upgrade URL``, and at server start).

Several workers start at once, so upgrades take a lock first: a PostgreSQL advisory lock, or a
file lock beside a SQLite database. The loser waits, then finds the schema already at head.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from mlflow_hokusai_plugin.db.urls import database_url

VERSION_TABLE = "alembic_version_hokusai"
_MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary but fixed: the advisory-lock key all plugin processes agree on ("hokusai" in ASCII).
_PG_LOCK_KEY = 0x686F6B75736169


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config(str(_MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(_MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
                connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.hokusai-migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(store_uri: str, revision: str = "head") -> str:
    """Bring the plugin tables of ``store_uri`` to ``revision``; returns the revision reached.

    Safe to run again and from several processes at once.
    """
    from alembic import command

    engine = create_engine(database_url(store_uri))
    try:
        with _migration_lock(engine):
            if revision == "head" and current_revision(engine) == head_revision():
                return head_revision()
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection), revision)
        return current_revision(engine)
    finally:
        engine.dispose()
