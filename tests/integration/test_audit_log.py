"""The audit log on real databases: SQLite (a file) and PostgreSQL.

Concurrent appenders (threads, and separate processes with their own engines) must produce one
gap-free chain; tampering done behind the log's back with raw SQL must be named by ``verify``.
"""

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from mlflow_hokusai_plugin.core.audit_chain import GENESIS_HASH, entry_hash
from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import HokusaiError, ValidationError
from mlflow_hokusai_plugin.db.audit import AuditLog
from mlflow_hokusai_plugin.db.schema import upgrade

THREADS, PER_THREAD = 16, 10
DEEP: list = []
for _ in range(70):
    DEEP = [DEEP]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(request, tmp_path_factory):
    """One migrated database of each kind per module (creating one per test costs seconds)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"
        upgrade(uri)
        yield uri
        return
    postgres = request.getfixturevalue("postgres")
    uri = postgres.create_database("hokusai_audit")
    try:
        upgrade(uri)
        yield uri
    finally:
        postgres.drop_database(uri)


@pytest.fixture()
def store_uri(migrated):
    """The module's database, emptied back to the genesis head the migration leaves."""
    engine = create_engine(migrated)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM hokusai_audit_log"))
        connection.execute(text("DELETE FROM hokusai_audit_head"))
        connection.execute(
            text("INSERT INTO hokusai_audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": GENESIS_HASH}
        )
    engine.dispose()
    return migrated


@pytest.fixture()
def audit(store_uri):
    log = AuditLog.from_store_uri(store_uri)
    yield log
    log.close()


def append_some(log: AuditLog, count: int, actor: str = "alice") -> list[dict]:
    return [
        log.append(
            actor=actor,
            action="model.register",
            target=f"models:/m/{i % 3}",
            before=None if i == 0 else {"version": i},
            after={"version": i + 1, "score": 0.5 + i / 100},
            request_id=f"req-{actor}-{i}",
        )
        for i in range(count)
    ]


def run_threads(worker: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            worker(index)
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_concurrent_threads_append_one_gap_free_chain(audit):
    start = threading.Barrier(THREADS)
    appended: list[int] = []

    def worker(index: int) -> None:
        start.wait(timeout=30)  # all at once, so the head lock is really contended
        appended.extend(link["seq"] for link in append_some(audit, PER_THREAD, actor=f"thread-{index}"))

    run_threads(worker, THREADS)

    total = THREADS * PER_THREAD
    assert sorted(appended) == list(range(1, total + 1))
    rows = audit.entries()
    assert [row["seq"] for row in rows] == list(range(total, 0, -1))
    report = audit.verify()
    assert (report.ok, report.checked) == (True, total), report


def test_verify_is_ok_while_others_append(audit):
    done = threading.Event()
    reports = []

    def verifier() -> None:
        while not done.is_set():
            reports.append(audit.verify())

    checker = threading.Thread(target=verifier)
    checker.start()
    try:
        run_threads(lambda index: append_some(audit, PER_THREAD, actor=f"thread-{index}"), 4)
    finally:
        done.set()
        checker.join(timeout=60)
    reports.append(audit.verify())
    assert reports and all(report.ok for report in reports), [r for r in reports if not r.ok][:1]
    assert reports[-1].checked == 4 * PER_THREAD


def _append_from_process(store_uri: str, start, count: int, name: str) -> None:
    """Runs in a spawned process: its own interpreter, engine and connections."""
    log = AuditLog.from_store_uri(store_uri)
    try:
        start.wait(timeout=60)
        append_some(log, count, actor=name)
    finally:
        log.close()


def test_separate_processes_append_one_chain(store_uri, audit):
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    processes = [
        context.Process(target=_append_from_process, args=(store_uri, start, 40, f"process-{index}"))
        for index in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    rows = audit.entries()
    assert len(rows) == 80 and {row["actor"] for row in rows} == {"process-0", "process-1"}
    report = audit.verify()
    assert (report.ok, report.checked) == (True, 80), report


def test_empty_log_verifies(audit):
    report = audit.verify()
    assert (report.ok, report.checked) == (True, 0)


def test_append_returns_the_stored_link(audit):
    first = audit.append(actor="alice", action="key.create", target="key:1", after={"role": ("admin",)})
    second = audit.append(actor="bob", action="key.revoke", target="key:1", before=first["after"])
    assert first["seq"] == 1 and first["after"] == {"role": ["admin"]}  # as verify reads it back
    assert second["prev_hash"] == first["hash"]
    assert audit.entries() == [second, first]


def test_entries_filter_by_target_newest_first_with_limit(audit):
    append_some(audit, 7)
    assert [row["seq"] for row in audit.entries(target="models:/m/1")] == [5, 2]
    assert [row["seq"] for row in audit.entries(limit=2)] == [7, 6]
    assert audit.entries(target="models:/m/0", limit=1)[0]["after"] == {"version": 7, "score": 0.56}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"actor": ""}, "actor"),
        ({"action": "x" * 65}, "action"),
        ({"after": {"m": float("nan")}}, "after.m"),
        ({"request_id": "r" * 65}, "request_id"),
        # canonical_json writes it, but verify() could not read it back (parse_json's depth limit).
        ({"before": DEEP}, "before"),
    ],
)
def test_bad_input_is_refused_before_touching_the_chain(audit, arguments, field):
    with pytest.raises(ValidationError) as info:
        audit.append(**{"actor": "alice", "action": "x", "target": "t", **arguments})
    assert info.value.field == field
    assert audit.verify().checked == 0 and audit.entries() == []


def test_append_inside_the_callers_transaction_commits_or_rolls_back_with_it(audit):
    with pytest.raises(RuntimeError):
        with audit.engine.begin() as connection:
            audit.append(actor="alice", action="x", target="t", connection=connection)
            raise RuntimeError("the caller's own write failed")
    assert audit.entries() == []
    with audit.engine.begin() as connection:
        audit.append(actor="alice", action="x", target="t", connection=connection)
        audit.append(actor="alice", action="y", target="t", connection=connection)
    assert [row["action"] for row in audit.entries()] == ["y", "x"]
    assert audit.verify().ok


def test_an_autocommit_connection_is_refused(audit):
    # Without a transaction the head lock would not outlive the UPDATE, and seqs could collide.
    with audit.engine.connect() as raw:
        connection = raw.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(HokusaiError, match="AUTOCOMMIT"):
            audit.append(actor="alice", action="x", target="t", connection=connection)
    assert audit.verify().ok and audit.entries() == []
    append_some(audit, 2)
    assert audit.verify().checked == 2


def test_sqlite_database_is_locked_is_retried(tmp_path):
    path = tmp_path / "locked.db"
    upgrade(f"sqlite:///{path}")
    # A busy timeout far shorter than the lock below: only the retries can get the append through.
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.01})
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, holder.rollback)
    release.start()
    try:
        started = time.monotonic()
        AuditLog(engine).append(actor="alice", action="x", target="t")
        assert time.monotonic() - started >= 0.15
    finally:
        release.join()
        holder.close()
    assert AuditLog(engine).verify().checked == 1
    engine.dispose()


# Tampering behind the log's back. Each takes a connection to a chain of 5 links and the links.
def _alter_after(connection, links):
    connection.execute(text("UPDATE hokusai_audit_log SET after = :v WHERE seq = 3"), {"v": '{"version":99}'})


def _delete_middle(connection, links):
    connection.execute(text("DELETE FROM hokusai_audit_log WHERE seq = 3"))


def _delete_last(connection, links):
    connection.execute(text("DELETE FROM hokusai_audit_log WHERE seq = 5"))


def _change_prev_hash(connection, links):
    connection.execute(text("UPDATE hokusai_audit_log SET prev_hash = :h WHERE seq = 3"), {"h": "f" * 64})


def _rechain(connection, links):
    # A forger who knows the scheme rewrites row 3 with a consistent hash: it no longer follows 2.
    forged = {**links[2], "actor": "mallory", "prev_hash": "f" * 64}
    new_hash = entry_hash(**{key: value for key, value in forged.items() if key != "hash"})
    connection.execute(
        text("UPDATE hokusai_audit_log SET actor = 'mallory', prev_hash = :p, hash = :h WHERE seq = 3"),
        {"p": forged["prev_hash"], "h": new_hash},
    )


def _insert_forged(connection, links):
    # Chained correctly onto the last link, but added without going through the head.
    values = {
        "seq": 6,
        "created_at": links[-1]["created_at"] + 1,
        "actor": "mallory",
        "action": "model.register",
        "target": "models:/m/evil",
        "before": None,
        "after": None,
        "request_id": None,
        "prev_hash": links[-1]["hash"],
    }
    values["hash"] = entry_hash(**values)
    connection.execute(
        text(
            "INSERT INTO hokusai_audit_log (seq, created_at, actor, action, target, before, after, "
            "request_id, prev_hash, hash) VALUES (:seq, :created_at, :actor, :action, :target, "
            ":before, :after, :request_id, :prev_hash, :hash)"
        ),
        values,
    )


def _rewrite_head_hash(connection, links):
    connection.execute(text("UPDATE hokusai_audit_head SET hash = :h WHERE id = 1"), {"h": "e" * 64})


def _delete_head(connection, links):
    connection.execute(text("DELETE FROM hokusai_audit_head"))


@pytest.mark.parametrize(
    ("tamper", "problem", "seq"),
    [
        (_alter_after, "altered", 3),
        (_delete_middle, "deleted", 3),
        (_delete_last, "deleted", 5),
        (_change_prev_hash, "altered", 3),
        (_rechain, "inserted", 3),
        (_insert_forged, "inserted", 6),
        (_rewrite_head_hash, "head_mismatch", 5),
        (_delete_head, "head_mismatch", None),
    ],
)
def test_tampering_is_named(audit, tamper, problem, seq):
    links = append_some(audit, 5)
    assert audit.verify().ok
    with audit.engine.begin() as connection:
        tamper(connection, links)
    report = audit.verify()
    assert (report.ok, report.problem, report.seq) == (False, problem, seq), report
    if seq is not None:
        assert f"seq {seq}" in report.message


def test_a_forged_row_beyond_the_head_stops_appends(audit):
    # The next append's seq is taken: it fails loudly rather than chain onto a forgery.
    links = append_some(audit, 5)
    with audit.engine.begin() as connection:
        _insert_forged(connection, links)
    with pytest.raises(IntegrityError):
        audit.append(actor="alice", action="x", target="t")
    assert audit.verify().seq == 6


def test_missing_head_row_refuses_appends(audit):
    with audit.engine.begin() as connection:
        _delete_head(connection, [])
    with pytest.raises(HokusaiError, match="head row is missing"):
        audit.append(actor="alice", action="x", target="t")


def test_stored_json_is_canonical(audit):
    audit.append(actor="alice", action="x", target="t", after={"b": 1, "a": "é"})
    with audit.engine.connect() as connection:
        stored = connection.execute(text("SELECT after, before FROM hokusai_audit_log")).one()
    assert stored == ('{"a":"é","b":1}', None)
    assert parse_json(stored[0]) == {"a": "é", "b": 1}
