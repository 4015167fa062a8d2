"""API keys in the plugin tables: create, list, revoke, and the lookup every request makes.

Lookups are cached per process for :data:`CACHE_SECONDS`, so a revoked key stops working on every
worker and replica within that time without a database query per request.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from mlflow_hokusai_plugin.core.api_keys import (
    KEY_PREFIX,
    check_role,
    display_prefix,
    key_hash,
    looks_like_key,
)
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.tags import check_project
from mlflow_hokusai_plugin.db.models import ApiKey

CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    role: str
    project: str | None
    created_at: int
    revoked_at: int | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.prefix, row.role, row.project, row.created_at, row.revoked_at)


class ApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, role: str, project: str | None = None) -> tuple[str, KeyRecord]:
        """A new key. The plaintext is returned here once and never stored."""
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise ValidationError("name", "must be 1-256 characters")
        check_role(role)
        if project is not None:
            check_project(project)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            key_hash=key_hash(key),
            prefix=display_prefix(key),
            name=name.strip(),
            role=role,
            project=project,
            created_at=int(time.time() * 1000),
        )
        with self.sessions.begin() as session:
            session.add(row)
        return key, _record(row)

    def list(self) -> list[KeyRecord]:
        with self.sessions() as session:
            return [_record(row) for row in session.execute(select(ApiKey).order_by(ApiKey.id)).scalars()]

    def revoke(self, key_id: int) -> KeyRecord:
        with self.sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise LookupError(f"API key {key_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at = int(time.time() * 1000)
            return _record(row)

    def lookup(self, key: str) -> KeyRecord | None:
        """The live (not revoked) key record for a presented key, or None."""
        if not looks_like_key(key):
            return None
        digest = key_hash(key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self.sessions() as session:
            row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
            record = _record(row) if row is not None and row.revoked_at is None else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, record)
        return record
