"""Engines on store URIs for the backup commands, and database errors as one line without a password."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.uris import password_of, redact
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.runtime.uris import without_password

# Fail in seconds, not after the OS's TCP timeout, when the server is down or firewalled.
CONNECT_TIMEOUT_S = 10


def engine_for(store_uri: str, **options) -> Engine:
    """An engine that holds no idle connections (each command makes few, and may drop databases)."""
    url = database_url(store_uri)
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {"timeout": 30}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args, **options)


def one_line(text: str) -> str:
    """A driver's multi-line message on one line."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


@contextlib.contextmanager
def database_errors(store_uri: str, action: str) -> Iterator[None]:
    """Turn a database failure inside the block into ``BackupError("cannot <action> <uri>: ...")``."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        message = one_line(str(cause)).split(" (Background on this error")[0]
        raise BackupError(
            redact(f"cannot {action} {without_password(store_uri)}: {message}", password_of(store_uri))
        ) from None
