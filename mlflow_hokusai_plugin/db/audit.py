"""The audit log in the database: append hash-chained links, list them, verify the chain.

The hashing and the verdict live in :mod:`mlflow_hokusai_plugin.core.audit_chain`; this module
is only about getting rows in and out safely while several threads, workers and replicas append
at once.

Appends serialise on the head row (``hokusai_audit_head``, id 1). Each append's *first* statement
is ``UPDATE ... SET seq = seq + 1``: on PostgreSQL that takes the row lock, on SQLite the
database write lock, before anything is read. Reading the head first and writing afterwards would
let two appenders read the same head (a fork in the chain) or, on SQLite, make both hold a read
lock while each waits for the other to drop it (``database is locked`` without waiting).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from mlflow_hokusai_plugin.core.audit_chain import HEAD_MISMATCH, ChainReport, entry_hash, verify_chain
from mlflow_hokusai_plugin.core.canonical import canonical_json, parse_json
from mlflow_hokusai_plugin.core.errors import HokusaiError, ValidationError
from mlflow_hokusai_plugin.db.models import AuditEntry, AuditHead
from mlflow_hokusai_plugin.db.urls import database_url

_LOG = AuditEntry.__table__
_HEAD = AuditHead.__table__
_HEAD_ID = 1

# SQLite waits this long for the write lock before "database is locked"; appends hold it for
# milliseconds, so only a stuck writer should ever exhaust it.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Then a few retries with a growing, jittered pause (for engines whose busy timeout is short).
_ATTEMPTS = 5
_BACKOFF_S = 0.05
# PostgreSQL serialization failure and deadlock: only under REPEATABLE READ/SERIALIZABLE engines.
_RETRYABLE_PGCODES = ("40001", "40P01")

# Column sizes of AuditEntry: PostgreSQL would reject longer values, SQLite would keep them.
_TEXT_LIMITS = {"actor": 256, "action": 64, "target": 600}
_REQUEST_ID_LIMIT = 64

# Rows per keyset page in verify(): memory stays flat whatever the length of the chain.
VERIFY_PAGE_SIZE = 1000


class AuditLog:
    """The ``hokusai_audit_log`` hash chain of one database (tables from ``db.migrate.upgrade``).

    Thread-safe: it holds nothing but the engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._owns_engine = False

    @classmethod
    def from_store_uri(cls, store_uri: str) -> AuditLog:
        """An AuditLog on its own engine for ``store_uri`` (``hokusai+`` prefix optional).

        Call :meth:`close` when done.
        """
        url = database_url(store_uri)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if url.startswith("sqlite") else {}
        log = cls(create_engine(url, connect_args=connect_args))
        log._owns_engine = True
        return log

    def close(self) -> None:
        """Dispose of the engine if :meth:`from_store_uri` created it (a given engine is the caller's)."""
        if self._owns_engine:
            self.engine.dispose()

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        request_id: str | None = None,
        connection: Connection | None = None,
    ) -> dict:
        """Append one link and return it (``before``/``after`` as JSON values).

        ``before``/``after`` are any JSON values (``None`` is stored as NULL), kept as canonical
        JSON text. Without ``connection`` the append is its own transaction, retried a few times
        if SQLite reports ``database is locked``.

        With ``connection`` the link is written inside the caller's transaction and the caller
        commits (so its own writes and the link land together, or neither does). The head row
        stays locked until then, blocking every other appender: keep that transaction short. On
        SQLite, append before the transaction's first read, or after one of its writes: a
        transaction that only read so far cannot wait for the write lock, and fails at once.
        """
        fields = _validated(actor=actor, action=action, target=target, before=before, after=after)
        fields["request_id"] = _validated_request_id(request_id)
        if connection is not None:
            return _append_in(connection, fields)
        attempt = 0
        while True:
            try:
                with self.engine.begin() as own:
                    return _append_in(own, fields)
            except OperationalError as exc:
                attempt += 1
                if attempt >= _ATTEMPTS or not _retryable(exc):
                    raise
            # Jitter, so that appenders that failed together do not retry together.
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1) * (0.5 + random.random()))

    def entries(self, target: str | None = None, limit: int | None = None) -> list[dict]:
        """The links, newest first; only those of ``target`` if given; at most ``limit``.

        ``before``/``after`` come back as JSON values. A stored text that is not JSON any more
        (tampered) comes back as the raw text: judging the rows is :meth:`verify`'s job.
        """
        query = select(_LOG).order_by(_LOG.c.seq.desc())
        if target is not None:
            query = query.where(_LOG.c.target == target)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValidationError("limit", "must be an integer >= 1")
            query = query.limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [_public(row) for row in rows]

    def verify(self) -> ChainReport:
        """Check the whole chain against the head; safe to run while others append.

        Rows are read in keyset pages of :data:`VERIFY_PAGE_SIZE`, each in its own short read, so
        a long chain neither fills memory nor holds SQLite's read lock (which would stall every
        appender) for the whole check.

        No snapshot is needed because rows up to the head's seq never change: an append commits
        its row and the head's new seq together. So the head is read first and the rows up to it
        are checked. Rows beyond it are appends that happened meanwhile, unless the head, read
        again *after* them, still does not reach them: those were added outside :meth:`append`.
        """
        head = self._head()
        if head is None:
            return ChainReport(
                ok=False,
                checked=0,
                problem=HEAD_MISMATCH,
                seq=None,
                message="the head row (hokusai_audit_head id 1) is missing",
            )
        rows = itertools.chain(self._rows_up_to(head["seq"]), self._rows_beyond_head(head["seq"]))
        return verify_chain(rows, head)

    def _head(self) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID)).first()
        return None if row is None else {"seq": row.seq, "hash": row.hash}

    def _rows_up_to(self, last_seq: int) -> Iterator[dict]:
        after = None  # no lower bound at first: a forged seq 0 or below must be seen too
        while True:
            query = select(_LOG).where(_LOG.c.seq <= last_seq)
            if after is not None:
                query = query.where(_LOG.c.seq > after)
            query = query.order_by(_LOG.c.seq).limit(VERIFY_PAGE_SIZE)
            with self.engine.connect() as connection:
                page = connection.execute(query).mappings().all()
            yield from (dict(row) for row in page)
            if len(page) < VERIFY_PAGE_SIZE:
                return
            after = page[-1]["seq"]

    def _rows_beyond_head(self, head_seq: int) -> Iterator[dict]:
        # Runs after the pages above (chain() is lazy), so concurrent appends had time to land.
        with self.engine.connect() as connection:
            seqs = connection.execute(select(_LOG.c.seq).where(_LOG.c.seq > head_seq)).scalars().all()
        if not seqs:
            return
        # Read after the rows: every row appended properly by then is covered by this head.
        head = self._head()
        reach = head_seq if head is None else head["seq"]
        outside = [seq for seq in seqs if seq > reach]
        if not outside:
            return
        with self.engine.connect() as connection:
            row = connection.execute(select(_LOG).where(_LOG.c.seq == min(outside))).mappings().one()
        yield dict(row)


def _append_in(connection: Connection, fields: dict) -> dict:
    """Append under the head lock, inside ``connection``'s transaction (committed by the caller)."""
    if not connection.in_transaction():
        connection.begin()  # what the first execute would do; runs any BEGIN hook before the check
    if _autocommits(connection):
        # Each statement would commit alone: the head lock would end with the UPDATE, and two
        # appenders could then take the same seq.
        raise HokusaiError("audit append needs a transaction, and this connection is in AUTOCOMMIT mode")
    locked = connection.execute(update(_HEAD).where(_HEAD.c.id == _HEAD_ID).values(seq=_HEAD.c.seq + 1))
    if locked.rowcount != 1:
        raise HokusaiError("the audit head row is missing: run `hokusai db upgrade` on this database")
    # Under the lock now: seq is already ours, hash is still the previous link's.
    seq, prev_hash = connection.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID)).one()
    # Taken under the lock, so created_at never decreases along seq (on one clock).
    created_at = int(time.time() * 1000)
    link = {
        "seq": seq,
        "created_at": created_at,
        "actor": fields["actor"],
        "action": fields["action"],
        "target": fields["target"],
        "request_id": fields["request_id"],
        "prev_hash": prev_hash,
    }
    link["hash"] = entry_hash(before=fields["before"], after=fields["after"], **link)
    connection.execute(insert(_LOG).values(before=fields["before_text"], after=fields["after_text"], **link))
    connection.execute(update(_HEAD).where(_HEAD.c.id == _HEAD_ID).values(hash=link["hash"]))
    return {**link, "before": fields["before"], "after": fields["after"]}


def _autocommits(connection: Connection) -> bool:
    dbapi = connection.connection.dbapi_connection
    if getattr(dbapi, "autocommit", False) is True:  # psycopg2, and sqlite3 from Python 3.12
        return True
    # sqlite3 with implicit transactions off (SQLAlchemy's AUTOCOMMIT), unless a BEGIN was sent.
    return hasattr(dbapi, "in_transaction") and dbapi.isolation_level is None and not dbapi.in_transaction


def _validated(*, before: Any, after: Any, **texts: str) -> dict:
    fields: dict[str, Any] = {}
    for name, value in texts.items():
        limit = _TEXT_LIMITS[name]
        if not isinstance(value, str) or not value:
            raise ValidationError(name, "must be a non-empty string")
        if len(value) > limit:
            raise ValidationError(name, f"is longer than {limit} characters")
        fields[name] = value
    for name, value in (("before", before), ("after", after)):
        if value is None:
            fields[name], fields[f"{name}_text"] = None, None
            continue
        try:
            text = canonical_json(value).decode("utf-8")
        except ValidationError as exc:  # its field is "value...": name the argument instead
            raise ValidationError(name + exc.field[len("value") :], exc.message) from None
        # Hash what verify() will read back: parse_json refuses some values canonical_json writes
        # (nesting deeper than its limit), and a tuple comes back as a list.
        fields[name] = parse_json(text, name)
        fields[f"{name}_text"] = text
    return fields


def _validated_request_id(request_id: str | None) -> str | None:
    if request_id is None:
        return None
    if not isinstance(request_id, str) or not request_id or len(request_id) > _REQUEST_ID_LIMIT:
        raise ValidationError(
            "request_id", f"must be a non-empty string of at most {_REQUEST_ID_LIMIT} characters"
        )
    return request_id


def _retryable(exc: OperationalError) -> bool:
    if getattr(exc.orig, "pgcode", None) in _RETRYABLE_PGCODES:
        return True
    return "database is locked" in str(exc.orig)


def _public(row: Any) -> dict:
    entry = dict(row)
    for name in ("before", "after"):
        if entry[name] is not None:
            try:
                entry[name] = parse_json(entry[name], name)
            except ValidationError:
                pass  # tampered text, returned as stored
    return entry
