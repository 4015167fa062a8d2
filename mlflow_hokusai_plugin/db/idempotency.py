"""Idempotency keys: a retried request with the same key gets the first answer again.

``claim`` inserts an ``in_progress`` row under the unique (principal, key) constraint before any
work is done, so of two concurrent requests with one key exactly one proceeds; the other waits for
the first to finish and replays its answer (or, if it is still running after ``wait_s``, is told
to retry later). Only successful answers are kept: ``release`` forgets a request that failed, so a
corrected retry with the same key is a new request.

A claim still ``in_progress`` after ``STALE_MS`` belonged to a worker that died and may be taken
over; a stored answer is kept for ``TTL_MS``, after which the key may be used again. Rows past
both are deleted by a claim at most once per ``PURGE_INTERVAL_S`` in each process, so the table
holds about a day of keys however long the server runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from mlflow_hokusai_plugin.core.canonical import canonical_json, sha256_hex
from mlflow_hokusai_plugin.db.models import IdempotencyRecord

_logger = logging.getLogger(__name__)

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
TTL_MS = 24 * 3600 * 1000
STALE_MS = 10 * 60 * 1000
DEFAULT_WAIT_S = 30.0
PURGE_INTERVAL_S = 600.0
_POLL_S = 0.1
_purge_lock = threading.Lock()
_next_purge = 0.0  # time.monotonic() of this process's next purge


def now_ms() -> int:
    return int(time.time() * 1000)


def request_hash(body: object) -> str:
    """sha256 of the canonical JSON of a request body: key order and whitespace do not matter.

    >>> request_hash({"b": 1, "a": 2}) == request_hash({"a": 2, "b": 1})
    True
    """
    return sha256_hex(canonical_json(body))


@dataclass(frozen=True)
class Claim:
    """What to do with a request carrying an idempotency key.

    ``proceed``: do the work, then :meth:`IdempotencyStore.complete` or ``release`` ``record_id``;
    ``replay``: answer ``status_code`` and ``response`` again; ``mismatch``: the key was used for
    another request; ``busy``: the first request with this key is still running.
    """

    outcome: Literal["proceed", "replay", "mismatch", "busy"]
    record_id: int | None = None
    status_code: int | None = None
    response: dict | None = None


class IdempotencyStore:
    """The ``hokusai_idempotency_keys`` table."""

    def __init__(self, engine: Engine, *, ttl_ms: int = TTL_MS, stale_ms: int = STALE_MS) -> None:
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.ttl_ms = ttl_ms
        self.stale_ms = stale_ms

    def claim(
        self, principal: str, key: str, route: str, body_hash: str, *, wait_s: float = DEFAULT_WAIT_S
    ) -> Claim:
        self._purge_now_and_then()
        deadline = time.monotonic() + wait_s
        while True:
            record_id = self._insert(principal, key, route, body_hash)
            if record_id is not None:
                return Claim("proceed", record_id)
            row = self._find(principal, key)
            if row is None:
                continue  # released between our insert and our read: try again
            age = now_ms() - (row.completed_at or row.created_at)
            if (row.state == COMPLETED and age > self.ttl_ms) or (
                row.state == IN_PROGRESS and age > self.stale_ms
            ):
                self._forget(row.id, row.state)
                continue
            if row.route != route or row.request_hash != body_hash:
                return Claim("mismatch")
            if row.state == COMPLETED:
                return Claim("replay", row.id, row.status_code, json.loads(row.response))
            if time.monotonic() >= deadline:
                return Claim("busy", row.id)
            time.sleep(_POLL_S)

    def complete(self, record_id: int, status_code: int, response: dict) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == record_id)
                .values(
                    state=COMPLETED,
                    status_code=status_code,
                    response=canonical_json(response).decode(),
                    completed_at=now_ms(),
                )
            )

    def release(self, record_id: int) -> None:
        """Forget a claimed request that did not succeed, so that the key can be used again."""
        self._forget(record_id, IN_PROGRESS)

    def purge_expired(self) -> int:
        """Delete the answers kept past the TTL and the claims left stale; returns how many.

        Both were created before ``now - ttl`` or ``now - stale``: the indexed ``created_at`` finds
        them, the state and the completion time decide.
        """
        now = now_ms()
        with self.sessions.begin() as session:
            result = session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.created_at < now - min(self.ttl_ms, self.stale_ms),
                    (
                        (IdempotencyRecord.state == COMPLETED)
                        & (IdempotencyRecord.completed_at < now - self.ttl_ms)
                    )
                    | (
                        (IdempotencyRecord.state == IN_PROGRESS)
                        & (IdempotencyRecord.created_at < now - self.stale_ms)
                    ),
                )
            )
            return result.rowcount or 0

    def _purge_now_and_then(self) -> None:
        global _next_purge
        with _purge_lock:
            if time.monotonic() < _next_purge:
                return
            _next_purge = time.monotonic() + PURGE_INTERVAL_S
        try:
            self.purge_expired()
        except SQLAlchemyError:  # housekeeping: the request goes on, the next interval retries
            _logger.warning("could not purge expired idempotency keys", exc_info=True)

    def _insert(self, principal: str, key: str, route: str, body_hash: str) -> int | None:
        record = IdempotencyRecord(
            principal=principal,
            idempotency_key=key,
            route=route,
            request_hash=body_hash,
            state=IN_PROGRESS,
            created_at=now_ms(),
        )
        try:
            with self.sessions.begin() as session:
                session.add(record)
                session.flush()
                return record.id
        except IntegrityError:
            return None

    def _find(self, principal: str, key: str) -> IdempotencyRecord | None:
        with self.sessions() as session:
            return session.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.principal == principal, IdempotencyRecord.idempotency_key == key
                )
            ).scalar_one_or_none()

    def _forget(self, record_id: int, state: str) -> None:
        # Conditional on the state, so that a row completed meanwhile is never lost.
        with self.sessions.begin() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.id == record_id, IdempotencyRecord.state == state
                )
            )
