"""The PRD services against a real MLflow server (PostgreSQL + S3 over HTTP).

Attestations are checked the way an outsider would: with eth-account alone, knowing only the
attester's address (see ``verify_like_an_outsider``).
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import mlflow
import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.runtime.signer import Signer
from mlflow_hokusai_plugin.services import ExperimentManager, HokusaiModelRegistry, PerformanceTracker

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DIGEST = "ab" * 32


def verify_like_an_outsider(document: dict) -> str:
    """Recover the DSSE signer with nothing but base64, json and eth-account."""
    envelope = document["dsse"]
    payload = base64.b64decode(envelope["payload"])
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    return Account.recover_message(encode_defunct(primitive=pae), signature=signature)


def log_candidate(metrics: dict, digest: str | None = DIGEST) -> str:
    """A run with a small real model, its benchmark metrics and benchmark digest; returns runs:/ URI."""
    features = np.arange(20, dtype=float).reshape(10, 2)
    labels = np.array([0, 1] * 5)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(DummyClassifier(strategy="prior").fit(features, labels), name="model")
        mlflow.log_metrics(metrics)
        if digest:
            mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, digest)
    return f"runs:/{run.info.run_id}/model"


@pytest.fixture()
def signer():
    return Signer.generate()


@pytest.fixture()
def registry(tracking_uri, signer):
    mlflow.set_experiment("services-tests")
    return HokusaiModelRegistry(tracking_uri, signer=signer)


@pytest.fixture()
def name():
    return f"model-{uuid.uuid4().hex[:8]}"


def test_baseline_then_improvement_is_attested_and_visible_in_tags(registry, signer, name, s3):
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.75, "f1_score": 0.70}),
        "classification",
        {"project": "churn", "benchmark_metric": "accuracy"},
        name=name,
    )
    assert base["model_id"] == f"{name}/1"
    assert base["attestation_status"] == T.STATUS_NOT_APPLICABLE

    improved = registry.register_improved_model(
        log_candidate({"accuracy": 0.82, "f1_score": 0.74}),
        base["model_id"],
        contributors=[{"address": ALICE.lower(), "samples": 1200}, {"address": BOB, "samples": 800}],
        pipeline_run_id="pipe-1",
    )
    assert improved["model_id"] == f"{name}/2"
    assert improved["delta_one_bps"] == 700
    assert improved["delta_metrics"] == {"accuracy": pytest.approx(0.07), "f1_score": pytest.approx(0.04)}
    assert [c["weight_bps"] for c in improved["contributors"]] == [6000, 4000]
    assert [c["attributed_bps"] for c in improved["contributors"]] == [420, 280]

    version = MlflowClient().get_model_version(name, "2")
    assert version.tags[T.BASELINE] == base["model_id"]
    assert version.tags[T.DELTA_ONE_BPS] == "700"
    assert version.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert version.tags[T.ATTESTER] == signer.address
    assert version.tags[T.PIPELINE_RUN_ID] == "pipe-1"
    assert json.loads(version.tags[T.CONTRIBUTORS])[0]["address"] == ALICE
    assert "7 DeltaOne" in version.description and ALICE in version.description

    document = improved["attestation"]
    assert version.tags[T.ATTESTATION_ID] == document["id"]
    assert verify_like_an_outsider(document) == signer.address
    statement = json.loads(base64.b64decode(document["dsse"]["payload"]))
    assert statement["subject"][0]["name"] == f"models:/{name}/2"
    assert statement["subject"][0]["digest"]["sha256"] == version.tags[T.ARTIFACT_DIGEST]
    assert statement["predicate"]["delta_one_bps"] == 700
    assert statement["predicate"]["benchmark"] == {"metric": "accuracy", "dataset_digest": DIGEST}

    # Stored with the run in S3, and readable back through MLflow.
    assert registry.get_attestation(improved["model_id"]) == document
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert any(key.endswith(f"hokusai/attestations/{document['id']}.json") for key in keys)


def test_registering_leaves_the_callers_mlflow_uris_as_they_were(mlflow_server, signer, name, monkeypatch):
    """A client configured by MLFLOW_TRACKING_URI alone keeps it (MLflow's own _use_tracking_uri
    deletes it on the way out, and the next log_model then fails on MLflow's default store)."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    registry = HokusaiModelRegistry(signer=signer)
    registry.register_baseline(log_candidate({"accuracy": 0.7}), "classification", name=name)
    registry.register_baseline(DummyClassifier().fit([[0], [1]], [0, 1]), "classification", name=name)
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_server.url
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert tracking_utils._tracking_uri is None
    log_candidate({"accuracy": 0.8})  # the next run still goes to the server


def test_lineage_runs_root_first_across_model_names(registry, name):
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.70}), "classification", {"benchmark_metric": "accuracy"}, name=name
    )
    second = registry.register_improved_model(
        log_candidate({"accuracy": 0.72}), base["model_id"], contributor=ALICE
    )
    third = registry.register_improved_model(
        log_candidate({"accuracy": 0.75}), second["model_id"], contributor=BOB, name=f"{name}-next"
    )
    chain = registry.get_model_lineage(third["model_id"])
    assert [node["model_id"] for node in chain] == [base["model_id"], second["model_id"], third["model_id"]]
    assert [node.get("delta_one_bps") for node in chain] == [None, 200, 300]
    assert [node["model_id"] for node in registry.get_model_lineage(name)] == [
        base["model_id"],
        second["model_id"],
    ]


def test_contributor_impact_aggregates_what_was_recorded(registry, name):
    address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.60}),
        "classification",
        {"project": "impact", "benchmark_metric": "accuracy"},
        name=name,
    )
    first = registry.register_improved_model(
        log_candidate({"accuracy": 0.65}), base["model_id"], contributor=address
    )
    registry.register_improved_model(
        log_candidate({"accuracy": 0.66}),
        first["model_id"],
        contributors=[{"address": address, "weight_bps": 2500}, {"address": ALICE, "weight_bps": 7500}],
    )
    tracker = PerformanceTracker(registry.tracking_uri)
    impact = tracker.get_contributor_impact(address.upper().replace("0X", "0x"))
    assert impact["address"] == first["contributors"][0]["address"]
    assert impact["total_models_improved"] == 2
    assert impact["total_attributed_bps"] == 500 + 25
    assert impact["total_improvement_score"] == 5.25
    assert impact["projects"] == {"impact": 525}
    assert [c["model_id"] for c in impact["contributions"]] == [first["model_id"], f"{name}/3"]
    assert impact["first_contribution"] <= impact["last_contribution"]
    # Recording the same contribution again changes nothing.
    tracker.log_contribution_impact(address, first["model_id"], 500)
    assert tracker.get_contributor_impact(address)["total_attributed_bps"] == 525
    assert tracker.get_contributor_impact(BOB.lower())["address"] == BOB


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"contributor": "0x0000000000000000000000000000000000000000"}, "contributors[0].address"),
        ({"contributor": ALICE[:-1]}, "contributors[0].address"),
        ({"contributors": [{"address": ALICE, "weight_bps": 9999}]}, "contributors"),
        ({"contributor": ALICE, "candidate_digest": "cd" * 32}, "benchmark.dataset_digest"),
        ({"contributor": ALICE, "candidate_metrics": {"f1_score": 0.9}}, "new_metrics.accuracy"),
    ],
)
def test_bad_improvement_is_refused_and_nothing_is_written(registry, name, kwargs, field):
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.70}), "classification", {"benchmark_metric": "accuracy"}, name=name
    )
    uri = log_candidate(
        kwargs.pop("candidate_metrics", {"accuracy": 0.8}), kwargs.pop("candidate_digest", DIGEST)
    )
    with pytest.raises(ValidationError) as raised:
        registry.register_improved_model(uri, base["model_id"], **kwargs)
    assert raised.value.field.startswith(field)
    assert [v.version for v in MlflowClient().search_model_versions(f"name = '{name}'")] == ["1"]


def test_unknown_baseline_and_missing_benchmark_metric(registry, name):
    with pytest.raises(ValidationError, match="does not exist") as raised:
        registry.register_improved_model(log_candidate({"accuracy": 0.8}), f"{name}/7", contributor=ALICE)
    assert raised.value.field == "baseline_id"
    with pytest.raises(ValidationError, match="did not log metric 'auroc'"):
        registry.register_baseline(
            log_candidate({"accuracy": 0.8}), "classification", {"benchmark_metric": "auroc"}, name=name
        )
    assert MlflowClient().search_model_versions(f"name = '{name}'") == []


def test_python_objects_logged_models_and_declared_deltas(registry, name):
    features, labels = np.arange(8, dtype=float).reshape(4, 2), np.array([0, 1, 0, 1])
    base = registry.register_baseline(
        DummyClassifier().fit(features, labels),
        "classification",
        {"metrics": {"accuracy": 0.5, "auroc": 0.5}, "benchmark_metric": "accuracy"},
        name=name,
    )
    improved = registry.register_improved_model(
        DummyClassifier().fit(features, labels), base["model_id"], {"accuracy": 0.05}, ALICE
    )
    assert improved["delta_one_bps"] == 500
    run = MlflowClient().get_run(improved["run_id"])
    assert run.data.tags["hokusai.metrics_source"] == "declared_delta_metrics"

    # A 3.x LoggedModel entity and a models:/name/version URI are models too.
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(DummyClassifier().fit(features, labels), name="model")
        mlflow.log_metrics({"accuracy": 0.58, "auroc": 0.5})
    logged = mlflow.get_logged_model(info.model_id)
    third = registry.register_improved_model(logged, improved["model_id"], contributor=BOB)
    assert third["delta_one_bps"] == 300
    copy = registry.register_baseline(
        f"models:/{third['model_id']}",
        "classification",
        {"benchmark_metric": "accuracy"},
        name=f"{name}-copy",
    )
    assert copy["run_id"] == third["run_id"]
    # Declared deltas must agree with what the runs measured.
    with pytest.raises(ValidationError, match="declared"):
        registry.register_improved_model(
            log_candidate({"accuracy": 0.9, "auroc": 0.5}, None), third["model_id"], {"accuracy": 0.5}, ALICE
        )


def test_onchain_model_gets_a_signed_eip712_mint_request(registry, signer, name, monkeypatch):
    monkeypatch.setenv("HOKUSAI_CHAIN_ID", "31337")
    monkeypatch.setenv("HOKUSAI_VERIFYING_CONTRACT", "0x" + "11" * 20)
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.8234}), "classification", {"benchmark_metric": "accuracy"}, name=name
    )
    MlflowClient().set_registered_model_tag(name, T.ONCHAIN_MODEL_ID, "42")
    improved = registry.register_improved_model(
        log_candidate({"accuracy": 0.8512}),
        base["model_id"],
        contributors=[{"address": ALICE, "samples": 3}, {"address": BOB, "samples": 1}],
    )
    part = improved["attestation"]["eip712"]
    message = part["typed_data"]["message"]
    assert message["modelId"] == 42
    assert message["payload"]["baselineScoreBps"] == 8234
    assert message["payload"]["candidateScoreBps"] == 8512
    assert message["payload"]["totalSamples"] == 4
    assert message["payload"]["anchors"]["attestationHash"] == "0x" + improved["attestation"]["id"]
    assert message["payload"]["anchors"]["datasetHash"] == "0x" + DIGEST
    assert [c["weight"] for c in message["contributors"]] == [7500, 2500]
    signable = encode_typed_data(full_message=part["typed_data"])
    assert Account.recover_message(signable, signature=part["signatures"][0]) == signer.address


def test_track_improvement_signs_without_a_registered_model(tracking_uri, signer):
    tracker = PerformanceTracker(tracking_uri, signer=signer)
    delta, document = tracker.track_improvement(
        {"accuracy": 0.75, "auroc": 0.80},
        {"accuracy": 0.82, "auroc": 0.83},
        {"contributor_address": ALICE, "data_hash": "cd" * 32},
    )
    assert delta["delta_one_bps"] == 700
    assert delta["recommendation"] == "ACCEPT"
    assert verify_like_an_outsider(document) == signer.address
    with pytest.raises(ValidationError) as raised:
        tracker.track_improvement(
            {"accuracy": 0.75}, {"accuracy": float("nan")}, {"contributor_address": ALICE}
        )
    assert raised.value.field == "new_metrics.accuracy"


def train_and_log(frame, benchmark, benchmark_digest: str, run_name: str) -> tuple[str, dict]:
    """A classifier trained on ``frame`` and measured on the benchmark, logged in a new run."""
    import mlflow.sklearn

    from mlflow_hokusai_plugin.pipeline import training
    from mlflow_hokusai_plugin.pipeline.registration import log_benchmark

    model = training.fit(training.default_estimator("classification"), frame, "label")
    metrics = training.evaluate(model, benchmark, "label", "classification")
    with mlflow.start_run(run_name=run_name):
        info = mlflow.sklearn.log_model(model, name="model")
        mlflow.log_metrics(metrics)
        log_benchmark(benchmark, benchmark_digest)
    return info.model_uri, metrics


def test_experiment_manager_compares_real_models(registry, tracking_uri, name):
    from mlflow_hokusai_plugin.pipeline.sample import load_sample
    from mlflow_hokusai_plugin.services.datasets import dataframe_digest

    data = load_sample()
    digest = dataframe_digest(data.benchmark)
    base_uri, _ = train_and_log(data.baseline, data.benchmark, digest, "base")
    base = registry.register_baseline(base_uri, "classification", {"benchmark_metric": "accuracy"}, name=name)
    manager = ExperimentManager(f"improve-{name}", tracking_uri=tracking_uri)
    run_id = manager.create_improvement_experiment(base["model_id"], data.contributions[0])
    run = MlflowClient().get_run(run_id)
    assert run.data.tags[T.BASELINE] == base["model_id"]
    manifest = mlflow.artifacts.load_dict(f"runs:/{run_id}/hokusai/data_manifest.json")
    assert manifest["row_count"] == len(data.contributions[0])
    assert len(manifest["data_hash"]) == 64

    import pandas as pd

    better_uri, _ = train_and_log(
        pd.concat([data.baseline, *data.contributions]), data.benchmark, digest, "better"
    )
    better = registry.register_improved_model(better_uri, base["model_id"], contributor=ALICE)
    report = manager.compare_models(base["model_id"], better["model_id"], data.benchmark)
    assert set(report["baseline_metrics"]) == {"accuracy", "precision", "recall", "f1_score", "auroc"}
    assert report["improvements"]["accuracy"] == pytest.approx(better["delta_metrics"]["accuracy"])
    assert report["recommendation"] == "ACCEPT"

    other_uri, _ = train_and_log(data.baseline, data.benchmark.iloc[:50], "ef" * 32, "other benchmark")
    other = registry.register_baseline(
        other_uri, "classification", {"benchmark_metric": "accuracy"}, name=f"{name}-other"
    )
    with pytest.raises(ValidationError, match="allow_dataset_mismatch"):
        manager.compare_models(base["model_id"], other["model_id"], data.benchmark)
    assert manager.compare_models(
        base["model_id"], other["model_id"], data.benchmark, allow_dataset_mismatch=True
    )["recommendation"] in {"ACCEPT", "REVIEW", "REJECT"}
