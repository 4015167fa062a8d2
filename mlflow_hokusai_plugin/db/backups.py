"""The ``hokusai_backups`` table: every finished backup, and the time of the last one.

``hokusai backup create`` records a backup only once its directory is complete (renamed into
place), so :func:`last_backup_time` is the time of the last backup that can be restored. The
server exports it as the gauge ``hokusai_backup_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.db.models import Backup

_BACKUPS = Backup.__table__


def record_backup(
    engine: Engine,
    *,
    location: str,
    manifest_sha256: str,
    counts: Mapping[str, int | None],
    created_at: float | None = None,
) -> int:
    """Record a finished backup; returns its id.

    ``created_at`` is in unix seconds (now if omitted); ``counts`` are the manifest's row counts.
    """
    created_ms = int((time.time() if created_at is None else created_at) * 1000)
    with engine.begin() as connection:
        result = connection.execute(
            insert(_BACKUPS).values(
                created_at=created_ms,
                location=location,
                manifest_sha256=manifest_sha256,
                counts=canonical_json(dict(counts)).decode("utf-8"),
            )
        )
        return int(result.inserted_primary_key[0])


def last_backup_time(engine: Engine) -> float | None:
    """Unix seconds of the newest recorded backup, or ``None`` if there is none yet."""
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(_BACKUPS.c.created_at))).scalar()
    return None if newest is None else newest / 1000.0
