"""Lineage cycles under attack: concurrent baselines that would close a cycle, and cycles put in the
table by hand.

The attack: two versions, each tagged ``hokusai.baseline`` = the other, by concurrent requests.
The early cycle check (``Registrar.validate``) reads the lineage with no lock, so both requests
can pass it; the guarantee is the check ``HokusaiStore.record_improvement`` repeats under the
lineage lock, in the transaction that inserts the edge. A cycle, once in the table, used to make
the recursive lineage SQL run to a million hops (and the Python walk to the root forever), pinning
a worker at 100 % CPU; every walk now stops on a cycle and at ``MAX_LINEAGE_DEPTH`` hops.

Real servers (uvicorn, 2 workers, PostgreSQL, no auth in dev mode) driven over raw HTTP with a time
bound on every answer, and the plugin's store in process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from sqlalchemy import text

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import MAX_LINEAGE_DEPTH, lineage_graph
from mlflow_hokusai_plugin.db.records import (
    LINEAGE_LOCK_KEY,
    HokusaiStore,
    contribution_records,
    edge_record,
)
from mlflow_hokusai_plugin.db.schema import upgrade
from mlflow_hokusai_plugin.store.registrar import FAULT_DELAY_ENV
from tests.integration.test_server_plugin import (  # noqa: F401 - _dispose_engines: autouse fixture
    ALICE,
    Candidate,
    _dispose_engines,
    assert_contributor_totals_match_contributions,
    create_version,
    engine_of,
    improvement_tags,
    log_candidate,
    mlflow_env,
    scalar,
    sql,
    status_in_db,
    unique,
    wait_for,
)
from tests.security.attack import ANSWER_BOUND_S, assert_workers_alive, send, worker_pids

LINEAGE_BOUND_S = 5.0  # a lineage answer on a hand-made cycle comes within this
ROUNDS = 10  # of the race, each with fresh versions
SHAPES = (2, 2, 3)  # the cycles raced at once in each round: two pairs and a 3-cycle
FINAL = {T.STATUS_SIGNED, T.STATUS_FAILED, T.STATUS_NOT_APPLICABLE}  # never pending


# -- helpers --------------------------------------------------------------------------------------


def set_baseline(server, name: str, version: str, baseline: str):
    return send(
        server.url,
        "POST",
        "/api/2.0/mlflow/model-versions/set-tag",
        {"name": name, "version": version, "key": T.BASELINE, "value": baseline},
    )


def get_lineage(server, model_id: str, direction: str = "both"):
    answer = send(
        server.url,
        "GET",
        f"/api/2.0/hokusai/models/{quote(model_id, safe='/')}/lineage?direction={direction}",
        timeout=LINEAGE_BOUND_S,
    )
    assert answer.seconds < LINEAGE_BOUND_S, (model_id, direction, answer.seconds)
    return answer


def assert_a_clear_answer(answer) -> str:
    """200, or MLflow's 400 naming hokusai.baseline; never a 500. Returns which."""
    if answer.status == 200:
        return "accepted"
    assert answer.status == 400, (answer.status, answer.body[:500])
    code, message = answer.error()
    assert code == "INVALID_PARAMETER_VALUE" and message.startswith(f"{T.BASELINE}:"), message
    return "refused"


def cycles_in(parent_of: dict[str, str]) -> list[list[str]]:
    """Every cycle of parent links, found by walking up from each child (each child one parent)."""
    found, done = [], set()
    for start in parent_of:
        path, position, cursor = [], {}, start
        while cursor in parent_of and cursor not in done and cursor not in position:
            position[cursor] = len(path)
            path.append(cursor)
            cursor = parent_of[cursor]
        if cursor in position:
            found.append(path[position[cursor] :])
        done.update(path)
    return found


def lineage_parents(store_uri: str) -> dict[str, str]:
    rows = sql(store_uri, "SELECT child_model_id, parent_model_id FROM hokusai_lineage_edges")
    assert len({child for child, _ in rows}) == len(rows)  # one edge per child
    return dict(rows)


def plain_tags() -> dict:
    """Every client tag of an improvement but its baseline: the last one completes the set."""
    return {key: value for key, value in improvement_tags("unused/1").items() if key != T.BASELINE}


def insert_edges(store_uri: str, pairs: list[tuple[str, str]], project: str = "handmade") -> None:
    """Edges written with raw SQL, as someone with database access could."""
    with engine_of(store_uri).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO hokusai_lineage_edges (child_model_id, parent_model_id, project, model_type,"
                " benchmark_metric, baseline_score_bps, candidate_score_bps, delta_one_bps,"
                " metric_deltas, created_at) VALUES (:c, :p, :project, 'classification', 'accuracy',"
                " 7000, 7100, 100, '{}', 0)"
            ),
            [{"c": child, "p": parent, "project": project} for child, parent in pairs],
        )


@pytest.fixture()
def point_at():
    """``point_at(server)``: an MlflowClient of ``server``, the fluent API pointed at it too."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow_env():

        def point(server) -> MlflowClient:
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            mlflow.set_experiment("lineage-cycles")
            return MlflowClient(tracking_uri=server.url, registry_uri=server.url)

        yield point


_CANDIDATES: dict[str, list[Candidate]] = {}


def candidates_on(server) -> list[Candidate]:
    """Two measured runs with their logged models on ``server`` (the fluent API pointed at it),
    shared by every version this module makes there."""
    if server.url not in _CANDIDATES:
        _CANDIDATES[server.url] = [log_candidate({"accuracy": 0.80}), log_candidate({"accuracy": 0.82})]
    return _CANDIDATES[server.url]


@pytest.fixture(scope="module")
def race_server(hokusai_servers):
    return hokusai_servers.start("postgresql", workers=2)


def race(server, client, shapes: tuple[int, ...]) -> list[dict]:
    """For each shape n, one fresh model with n plain versions; then every baseline that closes
    each cycle v1 -> v2 -> ... -> v1, all written at once, one request (thread) per baseline.

    (One request per version: concurrent writes of the same new tag on one version are a
    different race, in MLflow's own tag insert, not the one this file is about.)
    """
    candidates = candidates_on(server)
    outcomes = []
    for shape in shapes:
        name = unique("cycle")
        client.create_registered_model(name)
        versions = [
            create_version(client, name, candidates[n % len(candidates)], plain_tags()).version
            for n in range(shape)
        ]
        wanted = [(versions[n], versions[(n + 1) % shape]) for n in range(shape)]
        outcomes.append({"name": name, "versions": versions, "wanted": wanted, "answers": []})
    jobs = [(outcome, pair) for outcome in outcomes for pair in outcome["wanted"]]
    barrier = threading.Barrier(len(jobs))

    def write(job):
        outcome, (child, parent) = job
        barrier.wait()
        name = outcome["name"]
        outcome["answers"].append(((child, parent), set_baseline(server, name, child, f"{name}/{parent}")))

    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(write, jobs))
    return outcomes


def assert_race_outcome(server, outcome: dict) -> dict:
    """No cycle, exactly one baseline short of the cycle recorded, every version final, nothing
    half-written for the versions refused. Returns how many answers were accepted and refused,
    and how many versions ended failed (their baseline refused after validation) or untouched."""
    store_uri, name = server.store_uri, outcome["name"]
    kinds = dict.fromkeys(("accepted", "refused", "failed", "untouched"), 0)
    for _pair, answer in outcome["answers"]:
        kinds[assert_a_clear_answer(answer)] += 1
    ours = {f"{name}/{v}" for v in outcome["versions"]}
    parents = {c: p for c, p in lineage_parents(store_uri).items() if c in ours}
    assert cycles_in(parents) == []
    assert len(parents) == len(outcome["versions"]) - 1, parents  # the first writer won, not none
    for version in outcome["versions"]:
        model_id = f"{name}/{version}"
        status = status_in_db(store_uri, name, version)
        assert status in FINAL, (model_id, status)
        attestations = scalar(
            store_uri, "SELECT COUNT(*) FROM hokusai_attestations WHERE model_id = :m", m=model_id
        )
        contributions = scalar(
            store_uri, "SELECT COUNT(*) FROM hokusai_contributions WHERE model_id = :m", m=model_id
        )
        if model_id in parents:
            assert (status, attestations, contributions) == (T.STATUS_SIGNED, 1, 1), model_id
        else:
            assert status != T.STATUS_SIGNED and (attestations, contributions) == (0, 0), model_id
            kinds["failed" if status == T.STATUS_FAILED else "untouched"] += 1
    return kinds


# -- the race, on a real server -------------------------------------------------------------------


def test_concurrent_baselines_never_close_a_cycle(race_server, point_at):
    server = race_server
    client = point_at(server)
    pids = worker_pids(server)
    totals = dict.fromkeys(("accepted", "refused", "failed", "untouched"), 0)
    raced: set[str] = set()
    for _ in range(ROUNDS):
        for outcome in race(server, client, SHAPES):
            raced.add(outcome["name"])
            for kind, count in assert_race_outcome(server, outcome).items():
                totals[kind] += count
    # (Run here, every baseline passed validation and the locked check refused one per cycle:
    # {'accepted': 70, 'refused': 0, 'failed': 30, 'untouched': 0}.)
    print(f"\nrace of {ROUNDS} rounds of cycles of {SHAPES}: {totals}")
    # No cycle anywhere among the raced versions, however the requests interleaved (a hand-made
    # cycle of another test may share the table); the contributor totals kept in step.
    cycles = cycles_in(lineage_parents(server.store_uri))
    assert [cycle for cycle in cycles if cycle[0].split("/")[0] in raced] == []
    assert_contributor_totals_match_contributions(server.store_uri)
    assert send(server.url, "GET", "/health").status == 200
    assert_workers_alive(server, pids)  # no worker crashed or was restarted


@pytest.fixture(scope="module")
def delayed_server(hokusai_servers):
    """A server that waits 3 s between MLflow's write and the Hokusai records: every request of a
    race has passed the early check before any edge is recorded, so only the locked check is left."""
    return hokusai_servers.start("postgresql", workers=2, env={FAULT_DELAY_ENV: "3"})


@pytest.mark.parametrize("shape", [2, 3])
def test_the_locked_check_refuses_what_the_early_check_could_not_see(shape, delayed_server, point_at):
    server = delayed_server
    client = point_at(server)
    pids = worker_pids(server)
    (outcome,) = race(server, client, (shape,))
    kinds = assert_race_outcome(server, outcome)
    # Every request passed validation (none could see the others' edges): the one that lost is a
    # 200 whose version is marked failed (not pending, not a 500), and the server logged why.
    assert (kinds["accepted"], kinds["failed"]) == (shape, 1), kinds
    recorded = lineage_parents(server.store_uri)
    (loser,) = [v for v in outcome["versions"] if f"{outcome['name']}/{v}" not in recorded]
    said = f"Hokusai attestation of {outcome['name']}/{loser} failed: {T.BASELINE}: "
    (line,) = [line for line in server.log_path.read_text().splitlines() if said in line]
    assert line.endswith(": a cycle"), line
    assert_workers_alive(server, pids)


# -- a cycle made by hand -------------------------------------------------------------------------


def test_a_hand_made_cycle_is_answered_promptly_and_the_server_stays_up(race_server, point_at):
    server = race_server
    client = point_at(server)
    candidates = candidates_on(server)
    pids = worker_pids(server)
    name = unique("handmade")
    client.create_registered_model(name)
    versions = [create_version(client, name, candidates[0], plain_tags()).version for _ in range(8)]
    m = {int(v): f"{name}/{v}" for v in versions}
    # 1 <-> 2 (with 7 below 1), 3 its own baseline, 4 -> 5 -> 6 -> 5 (a tail into a cycle).
    insert_edges(
        server.store_uri,
        [(m[1], m[2]), (m[2], m[1]), (m[7], m[1]), (m[3], m[3]), (m[4], m[5]), (m[5], m[6]), (m[6], m[5])],
    )
    expected_cycle = {1: [m[1], m[2]], 2: [m[1], m[2]], 3: [m[3]], 4: [m[5], m[6]], 7: [m[1], m[2]]}
    for number, cycle in expected_cycle.items():
        for direction in ("both", "upstream", "downstream"):
            answer = get_lineage(server, m[number], direction)
            assert answer.status == 200, answer.body[:300]
            graph = answer.json
            if direction != "downstream" or number in (1, 2, 3):
                assert graph["cycle"] == cycle, (number, direction, graph)
            if direction != "downstream":
                assert graph["root"] is None  # the path up loops: no root
    bare = get_lineage(server, name)
    assert bare.status == 200 and bare.json["cycle"] == sorted([m[1], m[2], m[3], m[5], m[6]])
    assert {e["child_model_id"] for e in bare.json["edges"]} == {m[n] for n in (1, 2, 3, 4, 5, 6, 7)}

    # The early check and the locked one walk up through the cycle too, and end: an improvement
    # of a version on it is recorded (it closes no new cycle), and its lineage names the cycle.
    version = create_version(client, name, candidates[1], plain_tags()).version
    started = time.monotonic()
    answer = set_baseline(server, name, version, m[1])
    assert answer.status == 200 and time.monotonic() - started < ANSWER_BOUND_S
    assert status_in_db(server.store_uri, name, version) == T.STATUS_SIGNED
    graph = get_lineage(server, f"{name}/{version}", "upstream").json
    assert graph["root"] is None and graph["cycle"] == [m[1], m[2]]
    # One that would close a new cycle through hand-made edges is refused, naming the tag.
    another = create_version(client, name, candidates[1], plain_tags()).version
    insert_edges(server.store_uri, [(m[8], f"{name}/{another}")])
    refused = set_baseline(server, name, another, m[8])
    assert assert_a_clear_answer(refused) == "refused" and "a cycle" in refused.error()[1]
    assert status_in_db(server.store_uri, name, another) == T.STATUS_NOT_APPLICABLE  # nothing written

    assert send(server.url, "GET", "/health").status == 200
    assert_workers_alive(server, pids)


# -- the store in process, on SQLite and PostgreSQL -----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, hokusai_servers):
    store_uri = hokusai_servers.store_uri(request.param)
    upgrade(store_uri)
    store = HokusaiStore.from_store_uri(store_uri)
    store.uri, store.backend = store_uri, request.param
    yield store
    store.engine.dispose()


def timed_lineage(store, model_id: str, **options) -> dict:
    started = time.monotonic()
    found = store.lineage(model_id, **options)
    assert time.monotonic() - started < LINEAGE_BOUND_S, (model_id, options)
    return found


def shape(found: dict) -> list[tuple[str, int]]:
    return [(e["child_model_id"], e["depth"]) for e in found["edges"]]


def test_store_lineage_ends_on_hand_made_cycles(store):
    insert_edges(
        store.uri,
        [("c/1", "c/2"), ("c/2", "c/1"), ("s/1", "s/1"), ("x/2", "x/1")]
        + [("r/1", "r/2"), ("r/2", "r/3"), ("r/3", "r/4"), ("r/4", "r/2")]
        + [(f"f/{n}", "c/1") for n in range(1, 201)],  # many versions below the cycle
    )
    assert shape(timed_lineage(store, "c/1", direction="upstream")) == [("c/2", -2), ("c/1", -1)]
    down = timed_lineage(store, "c/1", direction="downstream")
    assert shape(down)[:3] == [("c/2", 1), ("f/1", 1), ("f/10", 1)] and len(down["edges"]) == 202
    assert shape(timed_lineage(store, "s/1")) == [("s/1", -1)]
    # A walk up that climbs into a cycle it did not start on.
    assert shape(timed_lineage(store, "r/1", direction="upstream")) == [
        ("r/4", -4),
        ("r/3", -3),
        ("r/2", -2),
        ("r/1", -1),
    ]
    assert shape(timed_lineage(store, "r/3", direction="downstream")) == [
        ("r/2", 1),
        ("r/1", 2),
        ("r/4", 2),
        ("r/3", 3),
    ]
    for bare in ("c", "s", "r", "f"):
        assert timed_lineage(store, bare)["truncated"] is False
    graph = lineage_graph("r/1", "both", timed_lineage(store, "r/1")["edges"])
    assert graph["root"] is None and graph["cycle"] == ["r/2", "r/3", "r/4"]

    assert store.is_ancestor("r/3", "r/1") and not store.is_ancestor("x/1", "r/1")
    # Onto the hand-made cycle: an edge that closes no new cycle is recorded, one that does is not.
    assert record(store, "n/1", "r/1") is True
    for child, parent in (("x/1", "x/2"), ("x/1", "x/1")):
        with pytest.raises(ValidationError, match="a cycle") as refused:
            record(store, child, parent)
        assert refused.value.field == T.BASELINE
    assert_nothing_half_written(store)


def test_store_lineage_stops_at_the_depth_bound_and_says_so(store):
    chain = [(f"d/{n + 1}", f"d/{n}") for n in range(1, MAX_LINEAGE_DEPTH + 2)]  # one edge too many
    insert_edges(store.uri, chain)
    leaf, root = f"d/{MAX_LINEAGE_DEPTH + 2}", "d/1"
    up = timed_lineage(store, leaf, direction="upstream")
    assert up["truncated"] is True and len(up["edges"]) == MAX_LINEAGE_DEPTH
    assert up["edges"][0]["depth"] == -MAX_LINEAGE_DEPTH and up["edges"][0]["child_model_id"] == "d/3"
    down = timed_lineage(store, root, direction="downstream")
    assert down["truncated"] is True and len(down["edges"]) == MAX_LINEAGE_DEPTH
    # A smaller max_depth asked for is not a truncation.
    assert timed_lineage(store, leaf, direction="upstream", max_depth=5)["truncated"] is False
    assert not timed_lineage(store, "d/3", direction="upstream")["truncated"]
    # Nothing may make a chain longer than the bound.
    with pytest.raises(ValidationError, match="at most"):
        record(store, "d/new", leaf)
    assert record(store, "d/ok", "d/3") is True  # 3 deep
    assert_nothing_half_written(store)


def test_store_records_one_of_two_concurrent_edges_that_would_make_a_cycle(store):
    """Every writer waits on the lineage lock, held by the test, then all race for it at once."""
    # 12 writers and the test's own connection: within the store's pool (5 + 10 overflow).
    groups = [[(f"p{n}/1", f"p{n}/2"), (f"p{n}/2", f"p{n}/1")] for n in range(4)]
    groups += [[("t/1", "t/2"), ("t/2", "t/3"), ("t/3", "t/1")], [("self/1", "self/1")]]
    jobs = [edge for group in groups for edge in group]
    results: dict[tuple[str, str], object] = {}
    with HeldLineageLock(store, waiters=len(jobs)) as release:
        threads = [threading.Thread(target=record_into, args=(store, edge, results)) for edge in jobs]
        for thread in threads:
            thread.start()
        release()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    for group in groups:
        won = [edge for edge in group if results[edge] is True]
        lost = [results[edge] for edge in group if results[edge] is not True]
        assert len(won) == len(group) - 1 if len(group) > 1 else won == [], (group, results)
        assert all(isinstance(exc, ValidationError) and exc.field == T.BASELINE for exc in lost), lost
    assert cycles_in(lineage_parents(store.uri)) == []
    assert_nothing_half_written(store)


class HeldLineageLock:
    """Hold the lock every edge writer takes; ``release()`` once ``waiters`` are waiting on it."""

    def __init__(self, store, waiters: int) -> None:
        self.store, self.waiters = store, waiters

    def __enter__(self):
        if self.store.backend == "postgresql":
            self.connection = self.store.engine.connect()
            self.transaction = self.connection.begin()
            self.connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINEAGE_LOCK_KEY})
        else:  # SQLite: the database write lock
            path = self.store.engine.url.database
            self.connection = sqlite3.connect(path, isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")
        return self.release

    def release(self) -> None:
        if self.store.backend == "postgresql":
            wait_for(
                lambda: (
                    scalar(
                        self.store.uri,
                        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                        " AND classid = :high AND objid = :low",
                        high=LINEAGE_LOCK_KEY >> 32,
                        low=LINEAGE_LOCK_KEY & 0xFFFFFFFF,
                    )
                    == self.waiters
                ),
                30,
                f"{self.waiters} writers waiting on the lineage lock",
            )
            self.transaction.commit()
        else:
            time.sleep(1.0)  # SQLite shows no waiters: give every writer time to block
            self.connection.execute("COMMIT")
        self.connection.close()

    def __exit__(self, *exc) -> None:
        if self.store.backend == "postgresql" and self.transaction.is_active:
            self.transaction.rollback()
            self.connection.close()


def record(store, child: str, parent: str) -> bool:
    """record_improvement of a made-up improvement ``child`` over ``parent``: True when stored."""
    improvement = {
        "benchmark_metric": "accuracy",
        "baseline_score_bps": 7000,
        "candidate_score_bps": 7100,
        "delta_one_bps": 100,
        "metric_deltas": {},
    }
    document = {
        "id": hashlib.sha256(f"{child} improves {parent}".encode()).hexdigest(),
        "model_id": child,
        "baseline_model_id": parent,
        "attester": ALICE,
        "status": "signed",
    }
    contributions = contribution_records(
        child, "cycles", [{"address": ALICE, "weight_bps": 10000, "attributed_bps": 100}]
    )
    stored = store.record_improvement(
        edge_record(child, parent, "cycles", "classification", improvement), document, contributions
    )
    return stored is document


def record_into(store, edge: tuple[str, str], results: dict) -> None:
    try:
        results[edge] = record(store, *edge)
    except Exception as exc:  # noqa: BLE001 - checked by the test
        results[edge] = exc


def assert_nothing_half_written(store) -> None:
    """Every recorded improvement has its edge, attestation, contribution and total; no other row."""
    recorded = {
        row[0]
        for row in sql(store.uri, "SELECT child_model_id FROM hokusai_lineage_edges WHERE project = 'cycles'")
    }
    assert {row[0] for row in sql(store.uri, "SELECT model_id FROM hokusai_attestations")} == recorded
    assert {row[0] for row in sql(store.uri, "SELECT model_id FROM hokusai_contributions")} == recorded
    totals = sql(store.uri, "SELECT models_improved, attributed_bps FROM hokusai_contributor_totals")
    assert totals == ([(len(recorded), 100 * len(recorded))] if recorded else [])
