"""The compose topology as processes: PostgreSQL, S3 over HTTP, Redis, and two server replicas.

What docker-compose.yml runs behind nginx, without Docker: two ``mlflow server --app-name
hokusai`` processes on different ports sharing one database, one bucket and one Redis.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow import MlflowClient

from mlflow_hokusai_plugin.core import tags as T

pytestmark = pytest.mark.slow

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="module")
def replicas(hokusai_servers, redis_url):
    store_uri = hokusai_servers.store_uri("postgresql")
    env = {
        "HOKUSAI_RATELIMIT_STORAGE_URI": redis_url,
        "HOKUSAI_RATELIMIT_READ": "10000/minute",
        "HOKUSAI_RATELIMIT_WRITE": "10000/minute",
        "HOKUSAI_RATELIMIT_REGISTER": "10000/minute",
    }
    a = hokusai_servers.start("postgresql", workers=2, env=env, store_uri=store_uri)
    b = hokusai_servers.start("postgresql", workers=2, env=env, store_uri=store_uri)
    return a, b


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def candidates(url: str, accuracies: list[float], monkeypatch) -> list[tuple[str, str]]:
    """(run id, models:/ URI) of one logged candidate per accuracy, on the server at ``url``."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.dummy import DummyClassifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("topology")
    model = DummyClassifier().fit(np.zeros((4, 2)), [0, 1, 0, 1])
    logged = []
    try:
        for accuracy in accuracies:
            with mlflow.start_run() as run:
                info = mlflow.sklearn.log_model(model, name="model")
                mlflow.log_metric("accuracy", accuracy)
                mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, "ab" * 32)
            logged.append((run.info.run_id, info.model_uri))
    finally:
        mlflow.set_tracking_uri(None)
    return logged


def test_a_registration_through_one_replica_is_seen_by_the_other(replicas, monkeypatch):
    a, b = replicas
    name = f"topology-{uuid.uuid4().hex[:6]}"
    (_, base_uri), (_, better_uri) = candidates(a.url, [0.70, 0.78], monkeypatch)
    client_a = MlflowClient(a.url, a.url)
    client_a.create_registered_model(name, tags={T.PROJECT: "topo"})
    common = {T.PROJECT: "topo", T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}
    contributors = json.dumps([{"address": ALICE, "weight_bps": 10000}])
    client_a.create_model_version(name, base_uri, tags=common, model_id=base_uri.split("/")[1])
    client_a.create_model_version(
        name,
        better_uri,
        tags={**common, T.BASELINE: f"{name}/1", T.CONTRIBUTORS: contributors},
        model_id=better_uri.split("/")[1],
    )
    seen = MlflowClient(b.url, b.url).get_model_version(name, "2")
    assert seen.tags[T.ATTESTATION_STATUS] == "signed" and seen.tags[T.DELTA_ONE_BPS] == "800"
    status, lineage = get(f"{b.url}/api/2.0/hokusai/models/{name}/2/lineage")
    assert status == 200 and [n["model_id"] for n in lineage["nodes"]] == [f"{name}/1", f"{name}/2"]
    status, document = get(f"{b.url}/api/2.0/hokusai/attestations/{seen.tags[T.ATTESTATION_ID]}")
    assert status == 200 and document["model_id"] == f"{name}/2"


def test_rate_limits_are_shared_between_replicas(hokusai_servers, redis_url):
    # Two more replicas sharing only Redis, with a low read limit that the other tests' many
    # reads (from the same loopback address) would exhaust.
    env = {"HOKUSAI_RATELIMIT_STORAGE_URI": redis_url.rsplit("/", 1)[0] + "/" + _other_db(redis_url)}
    env["HOKUSAI_RATELIMIT_READ"] = "10/minute"
    a, b = (hokusai_servers.start("sqlite", workers=1, env=env) for _ in range(2))
    statuses = [get(f"{server.url}/api/2.0/hokusai/projects")[0] for server in (a, b) * 7]
    assert statuses.count(200) == 10 and statuses.count(429) == 4, statuses


def _other_db(redis_url: str) -> str:
    """A second Redis database next to the reserved one, emptied first (the limit counts in it)."""
    import redis

    db = str(int(redis_url.rsplit("/", 1)[1]) + 8)
    redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/" + db).flushdb()
    return db


def test_stopping_a_replica_loses_no_acknowledged_registration(replicas, hokusai_servers, monkeypatch):
    a, b = replicas
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a dead replica fails fast, as behind nginx
    name = f"failover-{uuid.uuid4().hex[:6]}"
    count = 16
    logged = candidates(b.url, [0.70] + [0.71 + 0.001 * i for i in range(count)], monkeypatch)
    client_b = MlflowClient(b.url, b.url)
    client_b.create_registered_model(name, tags={T.PROJECT: "topo"})
    common = {T.PROJECT: "topo", T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}
    client_b.create_model_version(
        name, logged[0][1], run_id=logged[0][0], tags=common, model_id=logged[0][1].split("/")[1]
    )
    improved = {
        **common,
        T.BASELINE: f"{name}/1",
        T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 10000}]),
    }
    started = threading.Event()

    def register(i: int):
        server = (a, b)[i % 2]
        if i == 6:
            started.set()
        run_id, source = logged[i + 1]
        try:
            version = MlflowClient(server.url, server.url).create_model_version(
                name, source, run_id=run_id, tags=improved, model_id=source.split("/")[1]
            )
            return server.url, version.version
        except Exception as exc:  # noqa: BLE001 - a refused or cut connection is the point here
            return server.url, exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(register, i) for i in range(count)]
        started.wait(60)
        a.stop()  # SIGTERM while requests are in flight on it
        results = [f.result() for f in futures]
    acknowledged = [version for _, version in results if not isinstance(version, Exception)]
    served_by_b = [r for r in results if r[0] == b.url]
    assert all(not isinstance(version, Exception) for _, version in served_by_b)
    assert len(acknowledged) >= count // 2
    for version in acknowledged:
        found = client_b.get_model_version(name, str(version))
        assert found.tags[T.ATTESTATION_STATUS] == "signed", (version, found.tags)
        assert found.tags[T.BASELINE] == f"{name}/1"
