"""``hokusai migrate`` on versions that plain MLflow registered on PostgreSQL before the plugin."""

from __future__ import annotations

import json
import uuid

import mlflow
import pytest
from eth_account import Account
from mlflow import MlflowClient
from sqlalchemy import create_engine

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.db.records import HokusaiStore
from tests.integration.test_cli import hokusai
from tests.integration.test_services import log_candidate

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DIGEST = "ab" * 32
KEY = "0x" + "7d" * 32


def _legacy_registry(postgres, tmp_path):
    """A registry filled by plain MLflow: runs with metrics but no benchmark digest, no Hokusai tags."""
    url = postgres.create_database()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        experiment = mlflow.create_experiment("legacy", artifact_location=(tmp_path / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        name = f"legacy-{uuid.uuid4().hex[:6]}"
        for accuracy in (0.75, 0.82, 0.85):
            mlflow.register_model(log_candidate({"accuracy": accuracy}, digest=None), name)
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return {
        "url": url,
        "store_uri": "hokusai+postgresql://" + url.split("://", 1)[1],
        "name": name,
        "tmp": tmp_path,
    }


@pytest.fixture()
def legacy(postgres, tmp_path):
    registry = _legacy_registry(postgres, tmp_path)
    yield registry
    postgres.drop_database(registry["url"])


@pytest.fixture(scope="module")
def untouched_legacy(postgres, tmp_path_factory):
    """One legacy registry for the refused mappings: each test checks that nothing was written."""
    registry = _legacy_registry(postgres, tmp_path_factory.mktemp("legacy"))
    yield registry
    postgres.drop_database(registry["url"])


def mapping(tmp, entries) -> str:
    path = tmp / f"mapping-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"models": entries}))
    return str(path)


def versions(url, name) -> dict:
    return {str(v.version): v for v in MlflowClient(url, url).search_model_versions(f"name = '{name}'")}


def test_dry_run_then_apply_then_attest(legacy):
    name, url, store_uri, tmp = legacy["name"], legacy["url"], legacy["store_uri"], legacy["tmp"]
    entries = [
        {
            "model_id": f"{name}/1",
            "project": "legacy",
            "model_type": "classification",
            "benchmark_metric": "accuracy",
            "benchmark_dataset_digest": DIGEST,
        },
        {
            "model_id": f"{name}/2",
            "baseline": f"{name}/1",
            "contributors": [{"address": ALICE, "weight_bps": 6000}, {"address": BOB, "weight_bps": 4000}],
            "benchmark_dataset_digest": DIGEST,
        },
    ]
    plan_file = mapping(tmp, entries)
    dry = hokusai("migrate", "--store-uri", store_uri, "--mapping", plan_file)
    assert dry.returncode == 0, dry.stderr
    assert f"{name}/2: tags" in dry.stdout and "improvement of" in dry.stdout and "+700 bps" in dry.stdout
    assert "nothing written" in dry.stdout
    assert not any(k.startswith("hokusai.") for v in versions(url, name).values() for k in v.tags)

    applied = hokusai("migrate", "--store-uri", store_uri, "--mapping", plan_file, "--apply")
    assert applied.returncode == 0, applied.stderr
    # stderr is a pipe here, as in a log: no progress bar (one is drawn on a terminal only).
    assert "migrating versions" not in applied.stderr and "%|" not in applied.stderr
    found = versions(url, name)
    assert (
        found["1"].tags[T.PROJECT] == "legacy" and found["1"].tags[T.ATTESTATION_STATUS] == "not_applicable"
    )
    assert found["2"].tags[T.BASELINE] == f"{name}/1"
    assert found["2"].tags[T.DELTA_ONE_BPS] == "700"
    assert found["2"].tags[T.ATTESTATION_STATUS] == "not_applicable"
    engine = create_engine(url)
    store = HokusaiStore(engine)
    edge = store.edge_of(f"{name}/2")
    assert edge is not None and edge["attestation_id"] is None and edge["delta_one_bps"] == 700
    impact = store.contributor_impact(ALICE)
    assert impact["total_models_improved"] == 1 and impact["contributions"][0]["attributed_bps"] == 420
    run = MlflowClient(url).get_run(found["2"].run_id)
    assert run.data.tags[T.BENCHMARK_DATASET_DIGEST] == DIGEST

    # Re-running is harmless: what is in the lineage is skipped.
    again = hokusai("migrate", "--store-uri", store_uri, "--mapping", plan_file, "--apply")
    assert again.returncode == 0 and f"{name}/2: skipped (already in the lineage)" in again.stdout

    # The third version, attested as the server would attest it.
    third = mapping(
        tmp,
        [
            {
                "model_id": f"{name}/3",
                "baseline": f"{name}/2",
                "contributors": [{"address": BOB, "samples": 500}],
                "benchmark_dataset_digest": DIGEST,
            }
        ],
    )
    signed = hokusai(
        "migrate",
        "--store-uri",
        store_uri,
        "--mapping",
        third,
        "--apply",
        "--attest",
        env={"HOKUSAI_ATTESTER_KEY": KEY},
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    tags = versions(url, name)["3"].tags
    assert tags[T.ATTESTATION_STATUS] == "signed" and tags[T.DELTA_ONE_BPS] == "300"
    document = store.get_attestation(tags[T.ATTESTATION_ID])
    assert verify_document(document, attesters=[Account.from_key(KEY).address]).valid
    audit = hokusai("audit", "verify", "--store-uri", store_uri)
    assert audit.returncode == 0, audit.stdout
    engine.dispose()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"model_id": "{name}/9", "project": "legacy", "model_type": "classification"}], "does not exist"),
        (
            [
                {
                    "model_id": "{name}/1",
                    "project": "legacy",
                    "model_type": "classification",
                    "benchmark_metric": "accuracy",
                    "benchmark_dataset_digest": DIGEST,
                },
                {
                    "model_id": "{name}/2",
                    "baseline": "{name}/1",
                    "contributors": [{"address": ALICE, "weight_bps": 10000}],
                    "benchmark_dataset_digest": "cd" * 32,
                },
            ],
            "models[1].benchmark_dataset_digest",
        ),
        (
            [
                {
                    "model_id": "{name}/1",
                    "project": "legacy",
                    "model_type": "classification",
                    "benchmark_metric": "accuracy",
                    "benchmark_dataset_digest": DIGEST,
                },
                {
                    "model_id": "{name}/2",
                    "baseline": "{name}/1",
                    "contributors": [{"address": ALICE, "weight_bps": 10000}],
                },
            ],
            "names no benchmark digest",
        ),
        ([{"model_id": "{name}/1", "projetc": "x"}], "models[0].projetc: unknown field"),
    ],
)
def test_a_bad_mapping_writes_nothing(untouched_legacy, entries, message):
    legacy = untouched_legacy
    name = legacy["name"]
    text = json.loads(json.dumps(entries).replace("{name}", name))
    path = mapping(legacy["tmp"], text)
    result = hokusai("migrate", "--store-uri", legacy["store_uri"], "--mapping", path, "--apply")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not any(k.startswith("hokusai.") for v in versions(legacy["url"], name).values() for k in v.tags)
    run = MlflowClient(legacy["url"]).get_run(versions(legacy["url"], name)["1"].run_id)
    assert T.BENCHMARK_DATASET_DIGEST not in run.data.tags
