"""The server plugin: real ``mlflow server --app-name hokusai`` processes, driven by a plain MlflowClient.

uvicorn (2 workers) and gunicorn on PostgreSQL, uvicorn on SQLite. Attestations are fetched from
the server's own address over HTTP and verified with eth-account alone; the plugin tables are read
with plain SQL. Servers are slow to start (~10 s), so the file starts few of them: the shared
``hokusai_server``, a gunicorn and a SQLite one for the matrix (the gunicorn one also carries the
EIP-712 domain), two for the kill -9 drill and one in dev mode; plus the ones that must refuse.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import mlflow
import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as MlflowRegistryStore
from sklearn.dummy import DummyClassifier
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.audit_chain import ALTERED
from mlflow_hokusai_plugin.db.audit import AuditLog
from mlflow_hokusai_plugin.db.models import Base
from mlflow_hokusai_plugin.db.records import HokusaiStore, make_engine
from mlflow_hokusai_plugin.db.schema import VERSION_TABLE, head_revision, upgrade
from mlflow_hokusai_plugin.demo.embedded_server import MlflowServerProcess, ServerStartError
from mlflow_hokusai_plugin.runtime.config import DEV_MODE_BANNER
from mlflow_hokusai_plugin.store import WORKSPACES_UNSUPPORTED
from mlflow_hokusai_plugin.store.artifact_digest import artifact_uri_digest
from mlflow_hokusai_plugin.store.registrar import FAULT_DELAY_ENV
from tests.integration.test_services import verify_like_an_outsider
from tests.unit.test_summary import mlflow_table_cell

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DIGEST = "ab" * 32
CHAIN_ID = "31337"
VERIFYING_CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
# Every table the plugin's models declare (the migrations must create exactly these).
PLUGIN_TABLES = set(Base.metadata.tables)
# A server that refuses to start exits once its workers have failed to load the app: 10-35 s on
# a small, busy machine (gunicorn reaps its workers slowly). One that stays up past this did not
# refuse, it only failed to become healthy.
REFUSAL_TIMEOUT_S = 60.0


# -- helpers --------------------------------------------------------------------------------------


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def attester_address(hokusai_servers) -> str:
    return Account.from_key(hokusai_servers.attester_key).address


def wait_for(probe, timeout: float, what: str, interval: float = 0.2):
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fetch_attestation(server, attestation_id: str) -> dict:
    status, body = http_get(f"{server.url}/api/2.0/hokusai/attestations/{attestation_id}")
    assert status == 200, body
    return body


_ENGINES: dict[str, Engine] = {}


@pytest.fixture(scope="module", autouse=True)
def _dispose_engines():
    yield
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def engine_of(store_uri: str) -> Engine:
    if store_uri not in _ENGINES:
        _ENGINES[store_uri] = make_engine(store_uri)
    return _ENGINES[store_uri]


def sql(store_uri: str, statement: str, **params) -> list:
    with engine_of(store_uri).connect() as connection:
        return list(connection.execute(text(statement), params))


def scalar(store_uri: str, statement: str, **params):
    return sql(store_uri, statement, **params)[0][0]


def plugin_counts(store_uri: str) -> dict[str, int]:
    return {
        table: scalar(store_uri, f"SELECT COUNT(*) FROM {table}")
        for table in ("hokusai_lineage_edges", "hokusai_attestations", "hokusai_contributions")
    } | {"audit_seq": scalar(store_uri, "SELECT seq FROM hokusai_audit_head WHERE id = 1")}


def rows_of(store_uri: str, model_id: str) -> tuple[int, int]:
    """(edges, attestations) recorded for one model version."""
    edges = scalar(
        store_uri, "SELECT COUNT(*) FROM hokusai_lineage_edges WHERE child_model_id = :m", m=model_id
    )
    attestations = scalar(
        store_uri, "SELECT COUNT(*) FROM hokusai_attestations WHERE model_id = :m", m=model_id
    )
    return edges, attestations


def status_in_db(store_uri: str, name: str, version: int | str) -> str | None:
    found = sql(
        store_uri,
        "SELECT value FROM model_version_tags WHERE name = :n AND version = :v AND key = :k",
        n=name,
        v=int(version),
        k=T.ATTESTATION_STATUS,
    )
    return found[0][0] if found else None


def audit_entries(store_uri: str, target: str) -> list[dict]:
    log = AuditLog.from_store_uri(store_uri)
    try:
        return log.entries(target=target)
    finally:
        log.close()


def verify_chain(store_uri: str):
    log = AuditLog.from_store_uri(store_uri)
    try:
        return log.verify()
    finally:
        log.close()


@contextlib.contextmanager
def mlflow_env():
    """Restore MLflow's client globals (and the env vars it sets for subprocesses) afterwards."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")
    saved = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def point_at():
    """``point_at(server)``: the fluent API talks to ``server``, in an experiment of this test."""
    with mlflow_env():

        def point(server) -> MlflowClient:
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            mlflow.set_experiment(unique("server-plugin"))
            return MlflowClient(tracking_uri=server.url, registry_uri=server.url)

        yield point


FEATURES = np.arange(20, dtype=float).reshape(10, 2)
LABELS = np.array([0, 1] * 5)


class Candidate(NamedTuple):
    """A logged model with its source run."""

    uri: str  # models:/m-...
    run_id: str
    model_id: str


def log_candidate(metrics: dict, digest: str | None = DIGEST) -> Candidate:
    """A run with a small real model, its benchmark metrics and benchmark digest."""
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            DummyClassifier(strategy="prior").fit(FEATURES, LABELS),
            name="model",
            pip_requirements=["scikit-learn"],  # no requirement inference: seconds per model
        )
        mlflow.log_metrics(metrics)
        if digest:
            mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, digest)
    return Candidate(info.model_uri, run.info.run_id, info.model_id)


def create_version(client: MlflowClient, name: str, candidate: Candidate, tags: dict | None = None):
    """``MlflowClient.create_model_version`` of a logged model, as ``mlflow.register_model`` calls it."""
    return client.create_model_version(
        name, candidate.uri, candidate.run_id, tags=tags, model_id=candidate.model_id
    )


def baseline_tags(project: str = "churn") -> dict:
    return {T.PROJECT: project, T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}


def improvement_tags(baseline: str, contributors: list | None = None, project: str = "churn") -> dict:
    return {
        **baseline_tags(project),
        T.BASELINE: baseline,
        T.CONTRIBUTORS: json.dumps(contributors or [{"address": ALICE, "weight_bps": 10000}]),
    }


def register_baseline(name: str, metrics: dict | None = None) -> str:
    candidate = log_candidate(metrics or {"accuracy": 0.75, "f1_score": 0.70})
    version = mlflow.register_model(candidate.uri, name, tags=baseline_tags())
    assert version.tags[T.ATTESTATION_STATUS] == T.STATUS_NOT_APPLICABLE
    return f"{name}/{version.version}"


def register_improvement(client: MlflowClient, name: str, baseline: str, metrics: dict, **tag_options):
    return create_version(client, name, log_candidate(metrics), improvement_tags(baseline, **tag_options))


def assert_attested(server, hokusai_servers, client: MlflowClient, name: str, version: str, baseline: str):
    """The version is signed, its server tags match the stored document, and an outsider verifies it.

    Returns the document as served over HTTP.
    """
    model_id = f"{name}/{version}"
    mv = client.get_model_version(name, version)
    assert mv.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert mv.tags[T.ATTESTER] == attester_address(hokusai_servers)
    document = fetch_attestation(server, mv.tags[T.ATTESTATION_ID])
    assert document["id"] == mv.tags[T.ATTESTATION_ID]
    assert document["model_id"] == model_id and document["baseline_model_id"] == baseline
    assert document["attester"] == attester_address(hokusai_servers)
    assert document["dsse"]["signatures"][0]["keyid"] == attester_address(hokusai_servers)
    assert verify_like_an_outsider(document) == attester_address(hokusai_servers)
    payload = base64.b64decode(document["dsse"]["payload"])
    assert document["id"] == hashlib.sha256(payload).hexdigest()
    statement = json.loads(payload)
    assert statement["subject"][0]["name"] == f"models:/{model_id}"
    assert statement["subject"][0]["digest"]["sha256"] == mv.tags[T.ARTIFACT_DIGEST]
    assert str(statement["predicate"]["delta_one_bps"]) == mv.tags[T.DELTA_ONE_BPS]
    assert rows_of(server.store_uri, model_id) == (1, 1)
    return document


# -- the server matrix ----------------------------------------------------------------------------


class _Matrix:
    """The servers of the matrix, started on first use and stopped with the module."""

    def __init__(self, request, hokusai_servers) -> None:
        self.request, self.servers, self.started = request, hokusai_servers, {}

    def get(self, kind: str):
        if kind not in self.started:
            if kind == "uvicorn-postgresql":
                self.started[kind] = self.request.getfixturevalue("hokusai_server")
            elif kind == "gunicorn-postgresql":
                self.started[kind] = self.servers.start(
                    "postgresql",
                    gunicorn=True,
                    workers=2,
                    env={"HOKUSAI_CHAIN_ID": CHAIN_ID, "HOKUSAI_VERIFYING_CONTRACT": VERIFYING_CONTRACT},
                )
            elif kind == "uvicorn-sqlite":
                self.started[kind] = self.servers.start("sqlite", workers=2)
            else:
                raise ValueError(kind)
        return self.started[kind]

    def stop(self) -> None:
        for kind, server in self.started.items():
            if kind != "uvicorn-postgresql":  # the shared one belongs to the session
                server.stop()


@pytest.fixture(scope="module")
def matrix(request, hokusai_servers):
    servers = _Matrix(request, hokusai_servers)
    yield servers
    servers.stop()


@pytest.mark.parametrize("kind", ["uvicorn-postgresql", "gunicorn-postgresql", "uvicorn-sqlite"])
def test_plain_client_registration_is_attested_and_verifies(kind, matrix, hokusai_servers, point_at):
    server = matrix.get(kind)
    client = point_at(server)
    name = unique()

    status, ready = http_get(f"{server.url}/api/2.0/hokusai/health/ready")
    assert status == 200 and ready["status"] == "ready", ready
    assert ready["checks"]["attester_key"] == {
        "ok": True,
        "address": attester_address(hokusai_servers),
        "ephemeral": False,
    }
    assert "warning" not in ready
    assert http_get(f"{server.url}/api/2.0/hokusai/health/live") == (200, {"status": "ok"})

    baseline = register_baseline(name)
    assert baseline == f"{name}/1"
    improved = register_improvement(
        client,
        name,
        baseline,
        {"accuracy": 0.82, "f1_score": 0.74},
        contributors=[{"address": ALICE.lower(), "samples": 1200}, {"address": BOB, "samples": 800}],
    )
    assert improved.version == "2"
    # The client's own answer already carries the server's tags.
    assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert improved.tags[T.DELTA_ONE_BPS] == "700"

    document = assert_attested(server, hokusai_servers, client, name, "2", baseline)
    assert not document.get("eip712")
    mv = client.get_model_version(name, "2")
    assert "7 DeltaOne" in mv.description and ALICE in mv.description
    # The MLflow UI: the versions table shows headlines (not the marker); the improvement links its
    # baseline; the baseline, registered by a plain client without a summary, gains one that
    # links its improvement.
    assert f"over [`{baseline}`](#/models/{name}/versions/1) on `accuracy`" in mv.description
    base_description = client.get_model_version(name, "1").description
    assert base_description == (
        "**Hokusai baseline** of project `churn` (classification), benchmark metric `accuracy`. "
        f"<!-- hokusai -->\n\n**Improved by** [`{name}/2`](#/models/{name}/versions/2) (7 DeltaOne)."
    )
    for cell in (mlflow_table_cell(mv.description), mlflow_table_cell(base_description)):
        assert cell.startswith("**Hokusai ") and "<!--" not in cell, cell
    predicate = json.loads(base64.b64decode(document["dsse"]["payload"]))["predicate"]
    assert predicate["benchmark"] == {"metric": "accuracy", "dataset_digest": DIGEST}
    assert [(c["address"], c["weight_bps"], c["attributed_bps"]) for c in predicate["contributors"]] == [
        (ALICE, 6000, 420),
        (BOB, 4000, 280),
    ]

    # The same document through the listing route; errors in MLflow's shape.
    status, listed = http_get(f"{server.url}/api/2.0/hokusai/attestations?model_id={name}/2")
    assert status == 200 and listed["attestations"] == [document]
    status, listed = http_get(f"{server.url}/ajax-api/2.0/hokusai/attestations?model_id={name}/2")
    assert status == 200 and listed["attestations"] == [document]
    assert http_get(f"{server.url}/api/2.0/hokusai/attestations/{'0' * 64}")[1]["error_code"] == (
        "RESOURCE_DOES_NOT_EXIST"
    )
    status, body = http_get(f"{server.url}/api/2.0/hokusai/attestations")
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"

    # The edge and contributions in the plugin tables.
    edge = HokusaiStore(engine_of(server.store_uri)).edge_of(f"{name}/2")
    assert edge["parent_model_id"] == baseline and edge["delta_one_bps"] == 700
    assert edge["attestation_id"] == document["id"]
    contributions = sql(
        server.store_uri,
        "SELECT address, attributed_bps FROM hokusai_contributions WHERE model_id = :m ORDER BY address",
        m=f"{name}/2",
    )
    assert sorted(map(tuple, contributions)) == sorted([(ALICE, 420), (BOB, 280)])
    assert verify_chain(server.store_uri).ok


def test_onchain_model_gets_an_eip712_part_signed_by_the_attester(matrix, hokusai_servers, point_at):
    server = matrix.get("gunicorn-postgresql")  # started with HOKUSAI_CHAIN_ID/VERIFYING_CONTRACT
    client = point_at(server)
    name = unique()
    baseline = register_baseline(name, {"accuracy": 0.8234})
    client.set_registered_model_tag(name, T.ONCHAIN_MODEL_ID, "42")
    improved = register_improvement(
        client,
        name,
        baseline,
        {"accuracy": 0.8512},
        contributors=[{"address": ALICE, "samples": 3}, {"address": BOB, "samples": 1}],
    )
    document = assert_attested(server, hokusai_servers, client, name, improved.version, baseline)
    part = document["eip712"]
    typed = part["typed_data"]
    assert typed["primaryType"] == "MintRequest"
    assert typed["domain"]["chainId"] == int(CHAIN_ID)
    assert typed["domain"]["verifyingContract"] == VERIFYING_CONTRACT
    message = typed["message"]
    assert message["modelId"] == 42
    assert message["payload"]["baselineScoreBps"] == 8234
    assert message["payload"]["candidateScoreBps"] == 8512
    assert message["payload"]["totalSamples"] == 4
    assert message["payload"]["anchors"]["attestationHash"] == "0x" + document["id"]
    assert message["payload"]["anchors"]["datasetHash"] == "0x" + DIGEST
    assert message["payload"]["anchors"]["metricFamily"] == "classification"
    assert [(c["walletAddress"], c["weight"]) for c in message["contributors"]] == [
        (ALICE, 7500),
        (BOB, 2500),
    ]
    recovered = Account.recover_message(
        encode_typed_data(full_message=typed), signature=part["signatures"][0]
    )
    assert recovered == attester_address(hokusai_servers)


# -- what a client may not do ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def attested_pair(hokusai_server):
    """On the shared server: ``name/1`` a baseline, ``name/2`` an attested improvement of it."""
    with mlflow_env():
        mlflow.set_tracking_uri(hokusai_server.url)
        mlflow.set_registry_uri(hokusai_server.url)
        mlflow.set_experiment(unique("server-plugin"))
        name = unique("pair")
        baseline = register_baseline(name)
        client = MlflowClient(hokusai_server.url, hokusai_server.url)
        improved = register_improvement(client, name, baseline, {"accuracy": 0.80, "f1_score": 0.71})
        assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    return name


def refused(call, *mentions: str) -> MlflowException:
    with pytest.raises(MlflowException) as raised:
        call()
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE", raised.value
    for mention in mentions:
        assert mention in raised.value.message
    return raised.value


def test_bad_tags_are_refused_with_nothing_written(hokusai_server, attested_pair, point_at):
    client = point_at(hokusai_server)
    name = attested_pair
    baseline = f"{name}/1"
    measured = log_candidate({"accuracy": 0.81})
    elsewhere = log_candidate({"accuracy": 0.81}, digest="cd" * 32)
    undigested = log_candidate({"accuracy": 0.81}, digest=None)
    before = plugin_counts(hokusai_server.store_uri)
    versions_before = sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))
    good = improvement_tags(baseline)

    cases = [
        ({**good, T.BASELINE: f"{name}/99"}, measured, [T.BASELINE, "does not exist"]),
        ({**good, T.BASELINE: "no-slash"}, measured, [T.BASELINE]),
        ({**good, T.CONTRIBUTORS: "not json"}, measured, [T.CONTRIBUTORS]),
        (
            {**good, T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 9999}])},
            measured,
            [T.CONTRIBUTORS],
        ),
        (
            {**good, T.CONTRIBUTORS: json.dumps([{"address": ALICE[:-1], "weight_bps": 10000}])},
            measured,
            [T.CONTRIBUTORS],
        ),
        ({**good, T.MODEL_TYPE: "clustering"}, measured, [T.MODEL_TYPE]),
        ({**good, T.PROJECT: "Churn!"}, measured, [T.PROJECT]),
        ({k: v for k, v in good.items() if k != T.CONTRIBUTORS}, measured, [T.CONTRIBUTORS, "required"]),
        ({**good, T.BENCHMARK_METRIC: "auroc"}, measured, [T.BENCHMARK_METRIC, "auroc"]),
        (good, elsewhere, [T.BENCHMARK_DATASET_DIGEST]),
        (good, undigested, [T.BENCHMARK_DATASET_DIGEST]),
        # Server-written tags, on an improvement and on a plain version alike.
        ({**good, T.DELTA_ONE_BPS: "9999"}, measured, [T.DELTA_ONE_BPS]),
        ({**baseline_tags(), T.ATTESTATION_STATUS: T.STATUS_SIGNED}, measured, [T.ATTESTATION_STATUS]),
        ({T.ATTESTATION_ID: "ab" * 32}, measured, [T.ATTESTATION_ID]),
        ({T.ATTESTER: ALICE}, measured, [T.ATTESTER]),
    ]
    for tags, candidate, mentions in cases:
        refused(lambda t=tags, c=candidate: create_version(client, name, c, t), *mentions)

    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == versions_before
    assert plugin_counts(hokusai_server.store_uri) == before
    assert verify_chain(hokusai_server.store_uri).ok


def test_server_tags_and_attested_tags_are_final(hokusai_server, attested_pair, point_at):
    client = point_at(hokusai_server)
    name = attested_pair
    attested = client.get_model_version(name, "2")
    counts = plugin_counts(hokusai_server.store_uri)

    for key in (T.DELTA_ONE_BPS, T.ATTESTATION_ID, T.ATTESTATION_STATUS, T.ATTESTER):
        for version in ("1", "2"):
            refused(lambda k=key, v=version: client.set_model_version_tag(name, v, k, "1"), key)
        refused(lambda k=key: client.delete_model_version_tag(name, "2", k), key)

    for key, value in (
        (T.BASELINE, f"{name}/1-other"),
        (T.CONTRIBUTORS, json.dumps([{"address": BOB, "weight_bps": 10000}])),
        (T.PROJECT, "other"),
        (T.MODEL_TYPE, "ranking"),
        (T.BENCHMARK_METRIC, "f1_score"),
        (T.PIPELINE_RUN_ID, "pipe-late"),
    ):
        refused(lambda k=key, v=value: client.set_model_version_tag(name, "2", k, v), key, "attested")
    refused(lambda: client.delete_model_version_tag(name, "2", T.CONTRIBUTORS), T.CONTRIBUTORS, "attested")

    # Writing a Hokusai tag with the value it already has changes nothing and is allowed.
    client.set_model_version_tag(name, "2", T.PROJECT, attested.tags[T.PROJECT])
    # Other tags stay the user's.
    client.set_model_version_tag(name, "2", "team", "growth")

    after = client.get_model_version(name, "2")
    assert {k: v for k, v in after.tags.items() if k != "team"} == attested.tags
    assert after.tags["team"] == "growth"
    counts_after = plugin_counts(hokusai_server.store_uri)
    assert {k: v for k, v in counts_after.items() if k != "audit_seq"} == {
        k: v for k, v in counts.items() if k != "audit_seq"
    }
    assert counts_after["audit_seq"] == counts["audit_seq"] + 2  # the two accepted set_tag calls


def test_tags_set_one_by_one_attest_when_the_last_required_one_arrives(
    hokusai_server, hokusai_servers, attested_pair, point_at
):
    client = point_at(hokusai_server)
    name = attested_pair
    version = create_version(client, name, log_candidate({"accuracy": 0.84, "f1_score": 0.72})).version
    model_id = f"{name}/{version}"
    assert T.ATTESTATION_STATUS not in client.get_model_version(name, version).tags

    tags = improvement_tags(f"{name}/1")
    order = [T.BASELINE, T.PROJECT, T.MODEL_TYPE, T.BENCHMARK_METRIC, T.CONTRIBUTORS]
    for key in order[:-1]:
        client.set_model_version_tag(name, version, key, tags[key])
        assert T.ATTESTATION_STATUS not in client.get_model_version(name, version).tags
        assert rows_of(hokusai_server.store_uri, model_id) == (0, 0)
    # A bad last tag is refused and leaves nothing behind.
    refused(
        lambda: client.set_model_version_tag(
            name, version, T.CONTRIBUTORS, json.dumps([{"address": ALICE, "weight_bps": 1}])
        ),
        T.CONTRIBUTORS,
    )
    assert T.CONTRIBUTORS not in client.get_model_version(name, version).tags
    assert rows_of(hokusai_server.store_uri, model_id) == (0, 0)
    # A version cannot name itself as its baseline (a cycle) once everything else is there.
    client.delete_model_version_tag(name, version, T.BASELINE)
    client.set_model_version_tag(name, version, T.CONTRIBUTORS, tags[T.CONTRIBUTORS])
    refused(lambda: client.set_model_version_tag(name, version, T.BASELINE, model_id), T.BASELINE, "cycle")
    assert rows_of(hokusai_server.store_uri, model_id) == (0, 0)

    client.set_model_version_tag(name, version, T.BASELINE, f"{name}/1")
    assert_attested(hokusai_server, hokusai_servers, client, name, version, f"{name}/1")
    assert client.get_model_version(name, version).tags[T.DELTA_ONE_BPS] == "900"


# -- migrations and lineage -----------------------------------------------------------------------


@pytest.fixture()
def statements():
    """Every SQL statement any engine of this process executes while the fixture is active."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_migrations_create_the_plugin_tables_from_empty_and_rerun_is_a_noop(
    backend, hokusai_servers, tmp_path, statements
):
    store_uri = hokusai_servers.store_uri(backend)
    engine = engine_of(store_uri)
    assert inspect(engine).get_table_names() == []

    assert upgrade(store_uri) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert tables == PLUGIN_TABLES | {VERSION_TABLE}  # nothing of MLflow's, no alembic_version
    assert {"hokusai_lineage_edges", "hokusai_attestations", "hokusai_audit_log"} <= tables
    assert all(table.startswith("hokusai_") for table in PLUGIN_TABLES)
    assert scalar(store_uri, f"SELECT version_num FROM {VERSION_TABLE}") == head_revision()
    assert sql(store_uri, "SELECT id, seq, hash FROM hokusai_audit_head") == [(1, 0, "0" * 64)]

    # MLflow's own schema beside it, with its own version table.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as MlflowTrackingStore

    from mlflow_hokusai_plugin.db.urls import database_url

    MlflowTrackingStore(database_url(store_uri), tmp_path.as_uri()).engine.dispose()
    mlflow_revision = scalar(store_uri, "SELECT version_num FROM alembic_version")
    tables = set(inspect(engine).get_table_names())
    assert "alembic_version" in tables and "model_versions" in tables

    statements.clear()
    assert upgrade(store_uri) == head_revision()
    writes = [
        s
        for s in statements
        if s.lstrip().split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}
    ]
    assert writes == []
    assert set(inspect(engine).get_table_names()) == tables
    assert scalar(store_uri, "SELECT version_num FROM alembic_version") == mlflow_revision
    assert sql(store_uri, f"SELECT version_num FROM {VERSION_TABLE}") == [(head_revision(),)]
    assert sql(store_uri, "SELECT id, seq, hash FROM hokusai_audit_head") == [(1, 0, "0" * 64)]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_contributor_totals_migration_totals_the_contributions_already_there(backend, hokusai_servers):
    store_uri = hokusai_servers.store_uri(backend)
    assert upgrade(store_uri, "0003_backups") == "0003_backups"
    rows = [  # (address, model_id, project, attributed_bps, created_at)
        (ALICE, "a/2", "churn", 300, 1000),
        (ALICE, "a/3", "churn", 200, 3000),
        (ALICE, "b/2", "fraud", 50, 2000),
        (BOB, "a/2", "churn", 100, 1000),
    ]
    with engine_of(store_uri).begin() as connection:
        for address, model_id, project, bps, created_at in rows:
            connection.execute(
                text(
                    "INSERT INTO hokusai_contributions (address, model_id, project, weight_bps,"
                    " attributed_bps, created_at) VALUES (:a, :m, :p, 5000, :bps, :t)"
                ),
                {"a": address, "m": model_id, "p": project, "bps": bps, "t": created_at},
            )

    assert upgrade(store_uri) == head_revision()
    assert sql(
        store_uri,
        "SELECT address, project, models_improved, attributed_bps, first_contribution, last_contribution"
        " FROM hokusai_contributor_totals ORDER BY address, project",
    ) == sorted(
        [
            (ALICE, "churn", 2, 500, 1000, 3000),
            (ALICE, "fraud", 1, 50, 2000, 2000),
            (BOB, "churn", 1, 100, 1000, 1000),
        ]
    )
    impact = HokusaiStore(engine_of(store_uri)).contributor_impact(ALICE)
    assert (impact["total_models_improved"], impact["total_attributed_bps"]) == (3, 550)
    assert (impact["first_contribution"], impact["last_contribution"]) == (1000, 3000)
    assert [c["model_id"] for c in impact["contributions"]] == ["a/2", "b/2", "a/3"]


def assert_contributor_totals_match_contributions(store_uri: str) -> None:
    """The totals kept as improvements are recorded equal a fresh aggregate of the contributions."""
    kept = sql(
        store_uri,
        "SELECT address, project, models_improved, attributed_bps, first_contribution, last_contribution"
        " FROM hokusai_contributor_totals ORDER BY address, project",
    )
    fresh = sql(
        store_uri,
        "SELECT address, project, COUNT(*), SUM(attributed_bps), MIN(created_at), MAX(created_at)"
        " FROM hokusai_contributions GROUP BY address, project ORDER BY address, project",
    )
    assert kept and kept == fresh


def test_lineage_of_a_three_deep_chain_is_one_recursive_query_per_direction(
    hokusai_server, point_at, statements
):
    client = point_at(hokusai_server)
    first, second = unique("a"), unique("b")
    root = register_baseline(first, {"accuracy": 0.70})
    client.create_registered_model(second)
    a2 = register_improvement(client, first, root, {"accuracy": 0.72})
    mid = f"{first}/{a2.version}"
    b1 = register_improvement(client, second, mid, {"accuracy": 0.75})
    leaf_parent = f"{second}/{b1.version}"
    b2 = register_improvement(client, second, leaf_parent, {"accuracy": 0.79})
    leaf = f"{second}/{b2.version}"
    assert all(v.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED for v in (a2, b1, b2))

    store = HokusaiStore.from_store_uri(hokusai_server.store_uri)
    try:
        store.lineage(root)  # connect first: the pool's own statements are not the query
        statements.clear()
        upstream = store.lineage(leaf_parent, direction="upstream")
        assert len(statements) == 1 and "WITH RECURSIVE" in statements[0]
        assert [(e["child_model_id"], e["parent_model_id"], e["depth"]) for e in upstream["edges"]] == [
            (mid, root, -2),
            (leaf_parent, mid, -1),
        ]
        statements.clear()
        downstream = store.lineage(root, direction="downstream")
        assert len(statements) == 1 and "WITH RECURSIVE" in statements[0]
        assert [(e["child_model_id"], e["depth"]) for e in downstream["edges"]] == [
            (mid, 1),
            (leaf_parent, 2),
            (leaf, 3),
        ]
        assert [e["delta_one_bps"] for e in downstream["edges"]] == [200, 300, 400]

        both = store.lineage(leaf_parent)
        assert [(e["child_model_id"], e["depth"]) for e in both["edges"]] == [
            (mid, -2),
            (leaf_parent, -1),
            (leaf, 1),
        ]
        assert [e["child_model_id"] for e in store.lineage(leaf, direction="upstream")["edges"]] == [
            mid,
            leaf_parent,
            leaf,
        ]
        assert store.lineage(root, direction="upstream")["edges"] == []
        assert [e["child_model_id"] for e in store.lineage(second, direction="upstream")["edges"]] == [
            mid,
            leaf_parent,
            leaf,
        ]
    finally:
        store.engine.dispose()


# -- start-up checks ------------------------------------------------------------------------------


@pytest.fixture()
def quick_refusal(monkeypatch):
    """Server starts wait at most REFUSAL_TIMEOUT_S: a refusing server should exit long before."""
    original = MlflowServerProcess.start

    def start(self, timeout: float = 90.0):
        return original(self, timeout=min(timeout, REFUSAL_TIMEOUT_S))

    monkeypatch.setattr(MlflowServerProcess, "start", start)


@pytest.mark.parametrize("gunicorn", [False, True], ids=["uvicorn", "gunicorn"])
def test_server_refuses_to_start_without_an_attester_key(gunicorn, hokusai_servers, quick_refusal):
    """``mlflow server --app-name hokusai`` without a key exits 1 with the reason in one line.

    Under uvicorn (MLflow's default) a worker whose app factory raises is restarted by the
    supervisor, forever: the refusal happens in the ``mlflow server`` process, before any worker.
    """
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start(
            "sqlite",
            gunicorn=gunicorn,
            # Two uvicorn workers: the supervisor that restarts them is what must stop. One gunicorn
            # worker: gunicorn halts on a worker that fails to boot, and this machine is small.
            workers=1 if gunicorn else 2,
            # HOKUSAI_AUTH=none (the fixture's default) is itself refused outside dev mode.
            env={"HOKUSAI_ATTESTER_KEY": "", "HOKUSAI_DEV_MODE": "", "HOKUSAI_AUTH": "apikey"},
        )
    message = str(raised.value)
    # It refused: the process exited non-zero, it did not merely stay unhealthy until the timeout.
    assert "exited with code 1." in message, message[:200]
    assert "hokusai: the server cannot start: no attester key" in message and "HOKUSAI_DEV_MODE=1" in message


@pytest.mark.parametrize("gunicorn", [False, True], ids=["uvicorn", "gunicorn"])
def test_server_refuses_a_plain_backend_store_uri(gunicorn, hokusai_servers, tmp_path, quick_refusal):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as MlflowTrackingStore

    # An existing plain MLflow database (made here: MLflow's migrations are slow in a server start).
    plain = f"sqlite:///{tmp_path / 'plain.db'}"
    MlflowTrackingStore(plain, tmp_path.as_uri()).engine.dispose()
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start("sqlite", gunicorn=gunicorn, workers=1 if gunicorn else 2, store_uri=plain)
    message = str(raised.value)
    assert "exited with code 1." in message, message[:200]
    assert "hokusai: the server cannot start: the hokusai app needs a Hokusai store" in message
    assert "hokusai+postgresql://" in message and "(got sqlite://)" in message


def test_server_refuses_mlflow_workspaces(hokusai_servers, quick_refusal):
    with pytest.raises(ServerStartError) as raised:
        hokusai_servers.start("sqlite", workers=1, extra_args=["--enable-workspaces"])
    message = str(raised.value)
    assert "exited with code 1." in message, message[:200]
    assert WORKSPACES_UNSUPPORTED in message


def test_each_worker_says_at_start_what_it_signs_with_and_uses(hokusai_server, hokusai_servers):
    def starts():
        lines = hokusai_server.log_path.read_text(errors="replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith('{"event": "start"')]
        return found if len(found) >= 2 else None

    found = wait_for(starts, 30, "a start line from each of the 2 workers")
    assert len({line["pid"] for line in found}) == len(found)
    for line in found:
        assert line["attester"] == attester_address(hokusai_servers) and line["ephemeral_key"] is False
        assert line["auth"] == "none" and line["rate_limits"] is None  # the fixture's settings
        assert line["store"] == hokusai_server.store_uri
        assert line["artifacts"] == f"s3://{hokusai_servers.s3.bucket}/hokusai-artifacts"


def test_dev_mode_without_a_key_signs_with_one_loudly_ephemeral_key(hokusai_servers, point_at):
    server = hokusai_servers.start("sqlite", env={"HOKUSAI_ATTESTER_KEY": "", "HOKUSAI_DEV_MODE": "1"})
    try:
        readiness = [http_get(f"{server.url}/api/2.0/hokusai/health/ready") for _ in range(12)]
        for status, body in readiness:
            assert status == 200, body
            assert body["warning"] == DEV_MODE_BANNER and "DEV MODE" in body["warning"]
            assert body["checks"]["attester_key"]["ephemeral"] is True
        addresses = {body["checks"]["attester_key"]["address"] for _, body in readiness}
        assert len(addresses) == 1  # both workers sign with the same ephemeral key
        (ephemeral,) = addresses
        assert ephemeral != attester_address(hokusai_servers)

        client = point_at(server)
        name = unique()
        baseline = register_baseline(name)
        improved = register_improvement(client, name, baseline, {"accuracy": 0.80, "f1_score": 0.71})
        assert improved.tags[T.ATTESTER] == ephemeral
        document = fetch_attestation(server, improved.tags[T.ATTESTATION_ID])
        assert verify_like_an_outsider(document) == ephemeral
    finally:
        server.stop()


# -- crash and concurrency ------------------------------------------------------------------------


@pytest.fixture()
def server_side_env(monkeypatch, hokusai_servers, s3):
    """This process sees what the servers see: the attester key, S3, the artifacts destination."""
    monkeypatch.setenv("HOKUSAI_ATTESTER_KEY", hokusai_servers.attester_key)
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_DESTINATION", f"s3://{s3.bucket}/hokusai-artifacts")


@pytest.fixture()
def in_process_store(server_side_env):
    """``in_process_store(uri)``: the plugin's registry store in this process, as the CLI builds it."""
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    made = []

    def build(store_uri: str):
        store = HokusaiRegistryStore(store_uri)
        made.append(store)
        return store

    yield build
    for store in made:
        store.engine.dispose()


def test_kill_9_mid_registration_then_restart_completes_it(
    hokusai_servers, point_at, monkeypatch, in_process_store
):
    server = hokusai_servers.start("postgresql", env={FAULT_DELAY_ENV: "4"})
    store_uri = server.store_uri
    client = point_at(server)
    name = unique("crash")
    baseline = register_baseline(name)  # a baseline is not attested: no fault delay
    candidate = log_candidate({"accuracy": 0.83, "f1_score": 0.75})

    outcome: dict = {}

    def register() -> None:
        try:
            outcome["version"] = create_version(
                MlflowClient(server.url, server.url), name, candidate, improvement_tags(baseline)
            )
        except Exception as exc:  # noqa: BLE001 - the connection dies with the server
            outcome["error"] = exc

    # One attempt: the retries of MlflowClient must not outlive the killed server.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    worker = threading.Thread(target=register, daemon=True)
    worker.start()
    wait_for(lambda: status_in_db(store_uri, name, 2) == T.STATUS_PENDING, 30, "version 2 to be pending")
    server.kill()
    worker.join(30)
    assert not worker.is_alive() and "version" not in outcome

    model_id = f"{name}/2"
    assert status_in_db(store_uri, name, 2) == T.STATUS_PENDING
    assert rows_of(store_uri, model_id) == (0, 0)

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    restarted = hokusai_servers.start("postgresql", store_uri=store_uri)
    try:
        client = point_at(restarted)
        wait_for(
            lambda: client.get_model_version(name, "2").tags.get(T.ATTESTATION_STATUS) == T.STATUS_SIGNED,
            60,
            "the reconciler to sign the version left pending",
        )
        document = assert_attested(restarted, hokusai_servers, client, name, "2", baseline)
        assert client.get_model_version(name, "2").tags[T.DELTA_ONE_BPS] == "800"
        attests = [
            e
            for e in audit_entries(store_uri, f"model_version:{model_id}")
            if e["action"] == "hokusai.attest"
        ]
        assert len(attests) == 1 and attests[0]["after"]["attestation_id"] == document["id"]

        # Reconciling again (as `hokusai reconcile` would, in another process) changes nothing.
        counts = plugin_counts(store_uri)
        registrar = in_process_store(store_uri).registrar
        assert registrar.reconcile() == []
        assert registrar.complete(name, "2")["id"] == document["id"]
        assert plugin_counts(store_uri) == counts

        assert verify_chain(store_uri).ok
    finally:
        restarted.stop()


def test_concurrent_reconcilers_record_a_crashed_registration_once(
    hokusai_server, hokusai_servers, point_at, in_process_store
):
    """8 reconcilers (as `hokusai reconcile` beside a restarting server's workers) race on one version.

    The unique constraints keep the records single, and every racer, like the first writer, reports
    the version signed with the one attestation: ``hokusai reconcile`` exits 1 on anything else.
    """
    server = hokusai_server
    store_uri = server.store_uri
    client = point_at(server)
    name = unique("crashed")
    baseline = register_baseline(name)
    crashed = log_candidate({"accuracy": 0.86, "f1_score": 0.76})
    stores = [in_process_store(store_uri) for _ in range(8)]
    # What a crash after MLflow's write leaves: the version, pending, and none of our records.
    pending = MlflowRegistryStore.create_model_version(
        stores[0],
        name,
        crashed.uri,
        crashed.run_id,
        tags=[ModelVersionTag(k, v) for k, v in improvement_tags(baseline).items()]
        + [ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_PENDING)],
        model_id=crashed.model_id,
    )
    crashed_id = f"{name}/{pending.version}"
    assert rows_of(store_uri, crashed_id) == (0, 0)
    barrier = threading.Barrier(len(stores))

    def reconcile(store):
        barrier.wait()
        return [r for r in store.registrar.reconcile() if r["model_id"].startswith(f"{name}/")]

    with ThreadPoolExecutor(len(stores)) as pool:
        results = [entry for found in pool.map(reconcile, stores) for entry in found]

    # The records: one of each, whatever the racers reported.
    document = assert_attested(server, hokusai_servers, client, name, pending.version, baseline)
    assert client.get_model_version(name, pending.version).tags[T.DELTA_ONE_BPS] == "1100"
    attests = [
        e for e in audit_entries(store_uri, f"model_version:{crashed_id}") if e["action"] == "hokusai.attest"
    ]
    assert len(attests) == 1 and attests[0]["actor"] == "hokusai"
    assert verify_chain(store_uri).ok
    # What the racers reported: a racer may lose a race (and say so), never mark it failed.
    assert results, "no reconciler saw the pending version"
    assert {r["model_id"] for r in results} == {crashed_id}
    assert [r for r in results if r["status"] == "failed"] == []
    assert {r["attestation_id"] for r in results if r["status"] == "signed"} == {document["id"]}


def test_a_concurrent_writer_of_the_same_tag_does_not_leave_a_registration_pending(
    hokusai_server, hokusai_servers, point_at, server_side_env
):
    """Two improvements of one baseline with no digest yet, registered at once, both write its digest tag.

    Made deterministic: this test is the other writer. It inserts the baseline's digest tag (the same
    value) in a transaction it holds open until the server's own insert of that tag waits on it,
    then commits. The server must take the fact as written, not leave the registration pending
    until the next restart.
    """
    server = hokusai_server
    store_uri = server.store_uri
    client = point_at(server)
    name = unique("fresh")
    baseline = register_baseline(name)
    baseline_mv = client.get_model_version(name, "1")
    assert baseline_mv.source.startswith("models:/m-")
    location = client.get_logged_model(baseline_mv.source[len("models:/") :]).artifact_location
    digest = artifact_uri_digest(location)
    # Written at registration; taken away to make a baseline registered before that was so (or
    # whose artifact store failed then), whose digest the first improvement naming it computes.
    assert baseline_mv.tags[T.ARTIFACT_DIGEST] == digest
    with engine_of(store_uri).begin() as connection:
        connection.execute(
            text("DELETE FROM model_version_tags WHERE name = :n AND version = 1 AND key = :k"),
            {"n": name, "k": T.ARTIFACT_DIGEST},
        )
    candidate = log_candidate({"accuracy": 0.81, "f1_score": 0.72})

    engine = engine_of(store_uri)
    other_writer = engine.connect()
    transaction = other_writer.begin()
    outcome: dict = {}
    worker = None
    try:
        other_writer.execute(
            text(
                "INSERT INTO model_version_tags (workspace, name, version, key, value) "
                "VALUES ('default', :n, 1, :k, :v)"
            ),
            {"n": name, "k": T.ARTIFACT_DIGEST, "v": digest},
        )

        def register() -> None:
            try:
                outcome["version"] = create_version(
                    MlflowClient(server.url, server.url), name, candidate, improvement_tags(baseline)
                )
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        worker = threading.Thread(target=register, daemon=True)
        worker.start()
        # (A server that does not write the baseline's tag at all finishes without waiting.)
        wait_for(
            lambda: (
                not worker.is_alive()
                or scalar(
                    store_uri,
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO model_version_tags%'",
                )
            ),
            30,
            "the server's insert of the baseline's digest tag to wait for ours",
        )
        transaction.commit()
    finally:
        if transaction.is_active:
            transaction.rollback()
        other_writer.close()
    worker.join(60)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    mv = client.get_model_version(name, outcome["version"].version)
    assert mv.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED, (
        f"left {mv.tags[T.ATTESTATION_STATUS]!r} by a concurrent writer of the same tag"
    )
    assert_attested(server, hokusai_servers, client, name, mv.version, baseline)
    assert client.get_model_version(name, "1").tags[T.ARTIFACT_DIGEST] == digest


def test_sixteen_concurrent_registrations_give_one_edge_and_one_attestation_each(
    hokusai_server, hokusai_servers, point_at
):
    server = hokusai_server
    client = point_at(server)
    name = unique("race")
    baseline = register_baseline(name, {"accuracy": 0.60})
    candidates = [log_candidate({"accuracy": 0.61 + i / 100}) for i in range(16)]
    barrier = threading.Barrier(len(candidates))

    def register(candidate):
        own = MlflowClient(server.url, server.url)
        barrier.wait()
        return create_version(own, name, candidate, improvement_tags(baseline))

    with ThreadPoolExecutor(len(candidates)) as pool:
        versions = list(pool.map(register, candidates))

    numbers = sorted(int(v.version) for v in versions)
    assert numbers == list(range(2, 18))
    by_run = {v.run_id: v for v in versions}
    for i, candidate in enumerate(candidates):
        mv = client.get_model_version(name, by_run[candidate.run_id].version)
        assert mv.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
        assert mv.tags[T.DELTA_ONE_BPS] == str(100 + 100 * i)
    store_uri = server.store_uri
    assert (
        scalar(store_uri, "SELECT COUNT(*) FROM hokusai_lineage_edges WHERE parent_model_id = :p", p=baseline)
        == 16
    )
    assert (
        scalar(
            store_uri,
            "SELECT COUNT(DISTINCT child_model_id) FROM hokusai_lineage_edges WHERE parent_model_id = :p",
            p=baseline,
        )
        == 16
    )
    assert (
        scalar(
            store_uri, "SELECT COUNT(*) FROM hokusai_attestations WHERE baseline_model_id = :p", p=baseline
        )
        == 16
    )
    ids = {
        mv.tags[T.ATTESTATION_ID]
        for mv in client.search_model_versions(f"name = '{name}'")
        if mv.version != "1"
    }
    assert len(ids) == 16
    # The baseline's summary lists the latest and counts them all: no concurrent writer's list
    # was written over by an older one.
    latest = sql(
        store_uri,
        "SELECT child_model_id FROM hokusai_lineage_edges WHERE parent_model_id = :p "
        "ORDER BY created_at DESC, id DESC LIMIT 5",
        p=baseline,
    )
    listing = client.get_model_version(name, "1").description.split("\n\n")[-1]
    assert listing.startswith("**Improved by** 16 versions, the latest 5: "), listing
    assert [part.split("`")[1] for part in listing.split("[")[1:]] == [row[0] for row in latest]
    for attestation_id in list(ids)[:4]:
        assert verify_like_an_outsider(fetch_attestation(server, attestation_id)) == attester_address(
            hokusai_servers
        )

    # 8 clients set the same last tag on one version at once: one edge, one attestation. The tag
    # is there already, empty, so MLflow updates its row rather than racing to insert it.
    candidate = log_candidate({"accuracy": 0.95})
    tags = improvement_tags(baseline)
    last = create_version(client, name, candidate, {k: v for k, v in tags.items() if k != T.BASELINE}).version
    client.set_model_version_tag(name, last, T.BASELINE, "")
    assert client.get_model_version(name, last).tags[T.ATTESTATION_STATUS] == T.STATUS_NOT_APPLICABLE
    gate = threading.Barrier(8)

    def set_baseline(_):
        own = MlflowClient(server.url, server.url)
        gate.wait()
        own.set_model_version_tag(name, last, T.BASELINE, baseline)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(set_baseline, range(8)))
    assert_attested(server, hokusai_servers, client, name, last, baseline)
    attests = [
        e for e in audit_entries(store_uri, f"model_version:{name}/{last}") if e["action"] == "hokusai.attest"
    ]
    assert len(attests) == 1
    assert verify_chain(store_uri).ok
    # Seventeen improvements credited ALICE at once: her totals moved once for each.
    assert_contributor_totals_match_contributions(store_uri)


# -- the audit chain ------------------------------------------------------------------------------


def test_audit_chain_verifies_and_finds_a_row_edited_behind_its_back(hokusai_server, attested_pair):
    store_uri = hokusai_server.store_uri
    name = attested_pair
    report = verify_chain(store_uri)
    assert report.ok, report

    created = [
        e
        for e in audit_entries(store_uri, f"model_version:{name}/2")
        if e["action"] == "model_version.create"
    ]
    assert len(created) == 1
    entry = created[0]
    assert entry["actor"] and entry["actor"] != "system"
    assert entry["request_id"]
    assert entry["after"]["tags"][T.BASELINE] == f"{name}/1"
    actions = {e["action"] for e in audit_entries(store_uri, f"model_version:{name}/2")}
    assert {"model_version.create", "hokusai.attest"} <= actions
    assert {e["action"] for e in audit_entries(store_uri, f"registered_model:{name}")} >= {
        "registered_model.create"
    }

    original = scalar(store_uri, "SELECT after FROM hokusai_audit_log WHERE seq = :s", s=entry["seq"])
    with engine_of(store_uri).begin() as connection:
        connection.execute(
            text("UPDATE hokusai_audit_log SET after = :a WHERE seq = :s"),
            {"a": original.replace(f"{name}/1", f"{name}/9"), "s": entry["seq"]},
        )
    try:
        report = verify_chain(store_uri)
        assert not report.ok
        assert report.problem == ALTERED
        assert report.seq == entry["seq"]
    finally:
        with engine_of(store_uri).begin() as connection:
            connection.execute(
                text("UPDATE hokusai_audit_log SET after = :a WHERE seq = :s"),
                {"a": original, "s": entry["seq"]},
            )
    assert verify_chain(store_uri).ok
