"""Idempotency keys past their time leave the table (a SQLite file, the same SQL as PostgreSQL's)."""

import pytest
from sqlalchemy import create_engine, func, select

from mlflow_hokusai_plugin.db import idempotency
from mlflow_hokusai_plugin.db.idempotency import COMPLETED, IN_PROGRESS, IdempotencyStore, now_ms
from mlflow_hokusai_plugin.db.models import IdempotencyRecord


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(idempotency, "_next_purge", 0.0)
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    IdempotencyRecord.__table__.create(engine)
    yield IdempotencyStore(engine, ttl_ms=60_000, stale_ms=10_000)
    engine.dispose()


def _row(store, key, state, age_ms, completed_age_ms=None):
    now = now_ms()
    with store.sessions.begin() as session:
        session.add(
            IdempotencyRecord(
                principal="alice",
                idempotency_key=key,
                route="POST /models/register",
                request_hash="0" * 64,
                state=state,
                status_code=200 if state == COMPLETED else None,
                response="{}" if state == COMPLETED else None,
                created_at=now - age_ms,
                completed_at=None if completed_age_ms is None else now - completed_age_ms,
            )
        )


def _keys(store):
    with store.sessions() as session:
        return set(session.scalars(select(IdempotencyRecord.idempotency_key)))


def test_a_claim_purges_expired_answers_and_stale_claims_and_keeps_the_rest(store):
    _row(store, "expired", COMPLETED, 70_000, completed_age_ms=65_000)
    _row(store, "answered-late", COMPLETED, 70_000, completed_age_ms=30_000)  # completed 30 s ago: kept
    _row(store, "fresh", COMPLETED, 1_000, completed_age_ms=500)
    _row(store, "stale-claim", IN_PROGRESS, 20_000)
    _row(store, "running", IN_PROGRESS, 2_000)
    assert store.claim("bob", "new", "POST /models/register", "1" * 64).outcome == "proceed"
    assert _keys(store) == {"answered-late", "fresh", "running", "new"}


def test_the_purge_runs_at_most_once_per_interval_in_a_process(store):
    store.claim("bob", "first", "POST /models/register", "1" * 64)
    _row(store, "expired", COMPLETED, 70_000, completed_age_ms=65_000)
    store.claim("bob", "second", "POST /models/register", "1" * 64)
    assert "expired" in _keys(store)  # within the interval: no second purge
    assert store.purge_expired() == 1
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 2


def test_a_failing_purge_does_not_fail_the_claim(store, monkeypatch, caplog):
    def broken():
        from sqlalchemy.exc import OperationalError

        raise OperationalError("DELETE", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "purge_expired", broken)
    assert store.claim("bob", "k", "POST /models/register", "1" * 64).outcome == "proceed"
    assert "could not purge expired idempotency keys" in caplog.text
