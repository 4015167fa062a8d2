"""SQLite: copies through the online backup API, safe while the server writes.

``sqlite3``'s backup API copies the database page by page under SQLite's own locking and starts
over if another connection writes meanwhile, so the copy is one consistent state of the database,
which a plain file copy of a live database is not.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import quote

from mlflow_hokusai_plugin.backup.connections import database_errors, engine_for
from mlflow_hokusai_plugin.backup.database_facts import read_counts, read_revisions
from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.db.urls import database_url

DUMP_FILE = "database.sqlite"
DUMP_FORMAT = "sqlite"
_BUSY_TIMEOUT_S = 30


def database_path(store_uri: str) -> Path:
    """The file of a ``hokusai+sqlite:///...`` store URI."""
    from sqlalchemy.engine import make_url

    database = make_url(database_url(store_uri)).database
    if not database or database == ":memory:":
        raise BackupError(f"{store_uri!r} names no database file")
    return Path(database).expanduser().resolve()


def copy_database(source: Path, destination: Path) -> None:
    """Copy one SQLite file into another (created or overwritten) with the backup API."""
    try:
        with (
            contextlib.closing(
                sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
            ) as src,
            contextlib.closing(sqlite3.connect(destination, timeout=_BUSY_TIMEOUT_S)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database {source} to {destination}: {exc}") from None


def read_facts(path: Path) -> tuple[dict, dict]:
    """(counts, revisions) of a SQLite file."""
    uri = f"sqlite:///{path}"
    engine = engine_for(uri)
    try:
        with database_errors(uri, "read"), engine.connect() as connection:
            return read_counts(connection), read_revisions(connection)
    finally:
        engine.dispose()


def check_source(store_uri: str) -> None:
    """The database file must exist (opening a missing one would create an empty database)."""
    source = database_path(store_uri)
    if not source.is_file():
        raise BackupError(f"the SQLite database {source} does not exist")


def dump(store_uri: str, destination: Path) -> tuple[dict, dict]:
    """Copy the database of ``store_uri`` to ``destination``; returns (counts, revisions) of the copy.

    The counts are read from the copy itself, so they describe exactly what the backup holds.
    """
    check_source(store_uri)
    copy_database(database_path(store_uri), destination)
    return read_facts(destination)


def check_target(store_uri: str) -> None:
    """The target file's directory exists: checked before anything is written."""
    target = database_path(store_uri)
    if not target.parent.is_dir():
        raise BackupError(f"the directory of the target database {target} does not exist")


def restore(backup_file: Path, store_uri: str) -> None:
    """Overwrite (or create) the database file of ``store_uri`` with the backup's copy."""
    check_target(store_uri)
    copy_database(backup_file, database_path(store_uri))


def is_empty(store_uri: str) -> bool:
    """True if the target file does not exist yet or holds no table."""
    target = database_path(store_uri)
    if not target.exists():
        return True
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(str(target))}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
        ) as connection:
            return (
                connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                == 0
            )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the target database {target}: {exc}") from None
