"""HokusaiEvaluationFlow on Metaflow's local runtime, against a real Hokusai server on PostgreSQL.

Each flow run is a real Metaflow run (a process per step) with its own local datastore in the
test's directory. The server attests; the tests check what an outsider can check: the registry
tags, the source runs' Metaflow tags, the files in --output-dir, and the signature with nothing
but eth-account.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import mlflow
import pytest
from eth_account import Account
from mlflow import MlflowClient

from mlflow_hokusai_plugin.client import run_context as RC
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.pipeline import registration, training
from mlflow_hokusai_plugin.pipeline.runner import FLOW_NAME, run_flow
from mlflow_hokusai_plugin.pipeline.sample import load_sample, write_contribution_files
from mlflow_hokusai_plugin.services.datasets import dataframe_digest
from tests.integration.test_services import verify_like_an_outsider

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
OFFLINE_KEY = "0x" + "4c" * 32


def flow(workdir, *args, tracking_uri: str | None = None, extra_env: dict | None = None):
    """Run the flow in ``workdir`` (its own Metaflow datastore); the log is kept beside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HOKUSAI_"))}
    env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = str(workdir)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra_env or {})
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"flow-{uuid.uuid4().hex[:6]}.log"
    with open(log, "w") as handle:
        outcome = run_flow([*args, "--output-dir", str(workdir / "out")], env=env, cwd=workdir, stdout=handle)
    outcome.log = log.read_text()
    return outcome


def succeeded(outcome):
    assert outcome.ok, f"flow failed at {outcome.failed_step}: {outcome.error}\n{outcome.log[-3000:]}"
    return outcome


@pytest.fixture(scope="module")
def server(hokusai_server):
    return hokusai_server


@pytest.fixture(scope="module")
def attester(hokusai_servers):
    return Account.from_key(hokusai_servers.attester_key).address


@pytest.fixture(scope="module")
def model_name():
    return f"pipeline-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """The bundled sample as a user would bring it: files, and a saved MLflow baseline model."""
    directory = tmp_path_factory.mktemp("sample-files")
    sample = load_sample()
    sample.benchmark.to_csv(directory / "benchmark.csv", index=False)
    sample.baseline.to_csv(directory / "training.csv", index=False)
    model = training.fit(training.default_estimator("classification"), sample.baseline, "label")
    import mlflow.sklearn

    mlflow.sklearn.save_model(model, str(directory / "baseline-model"))
    return {
        "benchmark": directory / "benchmark.csv",
        "training": directory / "training.csv",
        "baseline_model": directory / "baseline-model",
        "contributors": write_contribution_files(directory / "contributions"),
        "sample": sample,
    }


@pytest.fixture(scope="module")
def dry_run(server, model_name, tmp_path_factory):
    """One dry run with services: the sample's baseline and its two contributors."""
    workdir = tmp_path_factory.mktemp("dry-run")
    outcome = flow(
        workdir,
        "--dry-run",
        "--model-name",
        model_name,
        "--project",
        "pipeline-tests",
        tracking_uri=server.url,
    )
    return succeeded(outcome)


def test_the_flow_registers_the_baseline_and_the_attested_improvement(dry_run, server, model_name, attester):
    report = dry_run.report
    assert report["baseline_id"] == f"{model_name}/1"
    assert report["new_model_id"] == f"{model_name}/2"
    version = MlflowClient(server.url).get_model_version(model_name, "2")
    tags = version.tags
    assert tags[T.BASELINE] == f"{model_name}/1"
    assert tags[T.PROJECT] == "pipeline-tests"
    assert tags[T.PIPELINE_RUN_ID] == f"metaflow:{FLOW_NAME}/{dry_run.run_id}"
    assert json.loads(tags[T.CONTRIBUTORS]) == [
        {"address": ALICE, "samples": 160},
        {"address": BOB, "samples": 120},
    ]
    assert tags[T.ATTESTATION_STATUS] == "signed"
    assert tags[T.ATTESTER] == attester
    assert int(tags[T.DELTA_ONE_BPS]) == report["deltaone_output"]["delta_computation"]["delta_one_bps"] > 0
    assert verify_like_an_outsider(report["attestation"]) == attester


def test_each_run_leads_back_to_the_metaflow_run_and_step(dry_run, server, model_name):
    client = MlflowClient(server.url)
    for version, step_name in (("2", "create_experiment"), ("1", "register_baseline")):
        run = client.get_run(client.get_model_version(model_name, version).run_id)
        assert run.data.tags[RC.METAFLOW_FLOW] == FLOW_NAME
        assert run.data.tags[RC.METAFLOW_RUN_ID] == dry_run.run_id
        assert run.data.tags[RC.METAFLOW_STEP] == step_name
        assert run.data.tags[RC.METAFLOW_TASK_ID].isdigit()
        assert run.data.tags[T.BENCHMARK_DATASET_DIGEST] == dataframe_digest(load_sample().benchmark)
        assert {"accuracy", "auroc", "f1_score"} <= set(run.data.metrics)
        contexts = {d.tags[0].value for d in run.inputs.dataset_inputs}
        assert T.BENCHMARK_INPUT_CONTEXT in contexts


def test_the_output_documents(dry_run, server, tmp_path):
    files = dry_run.report["output_files"]
    assert set(files) == {"data_manifest", "deltaone_output", "attestation"}
    output = json.loads(open(files["deltaone_output"]).read())
    assert output["schema_version"] == "1.0"
    assert set(output) >= {
        "delta_computation",
        "baseline_model",
        "new_model",
        "contributor_attribution",
        "evaluation_metadata",
        "pipeline_metadata",
    }
    computation = output["delta_computation"]
    assert computation["metrics_included"] == sorted(computation["metric_deltas"])
    assert computation["delta_one_score"] == computation["delta_one_bps"] / 100
    attribution = output["contributor_attribution"]
    assert attribution["contributed_samples"] == 280 and attribution["total_samples"] == 304
    assert sum(attribution["attributed_bps"].values()) == computation["delta_one_bps"]
    manifest = json.loads(open(files["data_manifest"]).read())
    assert manifest["sha256"] == attribution["data_hash"] == manifest["data_hash"]
    attestation = json.loads(open(files["attestation"]).read())
    from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient

    assert attestation == HokusaiAppClient(server.url).get_attestation(attestation["id"])
    # The same document is an artifact of the candidate's MLflow run.
    run_id = output["new_model"]["mlflow_run_id"]
    logged = MlflowClient(server.url).download_artifacts(
        run_id, "hokusai/deltaone_output.json", str(tmp_path)
    )
    assert json.loads(open(logged).read()) == output


def test_offline_with_the_same_inputs_gives_the_same_documents_minus_registry_ids(
    dry_run, sample_files, tmp_path
):
    outcome = succeeded(
        flow(
            tmp_path,
            "--disable-services",
            "--baseline-model",
            str(sample_files["baseline_model"]),
            "--benchmark-data",
            str(sample_files["benchmark"]),
            "--training-data",
            str(sample_files["training"]),
            "--contributor",
            str(sample_files["contributors"]),
            extra_env={"HOKUSAI_ATTESTER_KEY": OFFLINE_KEY},
        )
    )
    online, offline = dry_run.report["deltaone_output"], outcome.report["deltaone_output"]
    assert offline["delta_computation"] == online["delta_computation"]
    for part in ("contributor_attribution", "evaluation_metadata"):
        assert _without_paths(offline[part]) == _without_paths(online[part])
    for side in ("baseline_model", "new_model"):
        assert offline[side]["metrics"] == online[side]["metrics"]
        assert offline[side]["model_id"] is None and offline[side]["mlflow_run_id"] is None
    assert offline["pipeline_metadata"]["services_enabled"] is False
    # Signed by the key the operator configured on the pipeline host, about the contributed data.
    document = outcome.report["attestation"]
    assert verify_like_an_outsider(document) == Account.from_key(OFFLINE_KEY).address
    assert document["model_id"] == f"contribution:{online['contributor_attribution']['data_hash']}"
    # Nothing of MLflow's was written: no store, no runs.
    assert not {"mlruns", "mlflow.db"} & set(os.listdir(tmp_path))


def _without_paths(value):
    """The same facts, without where the files were read from (the two runs used other folders)."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k not in ("source_path", "sources")}
    return value


def test_a_registered_baseline_is_improved_with_the_users_files(
    dry_run, server, model_name, sample_files, tmp_path
):
    sample = sample_files["sample"]
    rows = tmp_path / "alice.json"
    rows.write_text(sample.contributions[0].to_json(orient="records", double_precision=15))
    outcome = succeeded(
        flow(
            tmp_path,
            "--baseline-model",
            f"{model_name}/1",
            "--benchmark-data",
            str(sample_files["benchmark"]),
            "--training-data",
            str(sample_files["training"]),
            "--contributed-data",
            str(rows),
            "--contributor",
            ALICE.lower(),
            tracking_uri=server.url,
        )
    )
    assert outcome.report["baseline_id"] == f"{model_name}/1"
    new_id = outcome.report["new_model_id"]
    version = MlflowClient(server.url).get_model_version(*new_id.split("/"))
    assert version.tags[T.BASELINE] == f"{model_name}/1"
    assert json.loads(version.tags[T.CONTRIBUTORS]) == [{"address": ALICE, "samples": 160}]
    assert version.tags[T.ATTESTATION_STATUS] == "signed"


def test_a_registered_baseline_measured_on_another_benchmark_is_refused(
    server, model_name, sample_files, tmp_path
):
    other = tmp_path / "other-benchmark.csv"
    sample_files["sample"].benchmark.iloc[:100].to_csv(other, index=False)
    outcome = flow(
        tmp_path,
        "--baseline-model",
        f"{model_name}/1",
        "--benchmark-data",
        str(other),
        "--contributed-data",
        str(sample_files["benchmark"]),
        "--contributor",
        ALICE,
        tracking_uri=server.url,
    )
    assert not outcome.ok and outcome.bad_input
    assert outcome.failed_step == "register_baseline"
    assert f"{model_name}/1 was measured on benchmark data" in outcome.error


def test_register_baseline_is_idempotent_and_recovers_an_unregistered_run(server, monkeypatch):
    from tests.conftest import point_mlflow_at

    point_mlflow_at(server.url, monkeypatch)
    sample = load_sample()
    model = training.fit(training.default_estimator("classification"), sample.baseline, "label")
    name = f"idempotent-{uuid.uuid4().hex[:8]}"
    args = dict(model_name=name, model_type="classification", source="s1", tracking_uri=server.url)
    first = registration.register_baseline(model, sample.benchmark, **args)
    again = registration.register_baseline(model, sample.benchmark, **args)
    assert (first["reused"], again["reused"]) == (False, True)
    assert again["model_id"] == first["model_id"] == f"{name}/1"
    # A run logged by a call that died before registering it is registered, not logged again.
    client = MlflowClient(server.url)
    other = dict(args, source="s2")
    key = registration.baseline_key(
        model_name=name,
        model_type="classification",
        benchmark_digest=first["benchmark_dataset_digest"],
        source="s2",
        benchmark_metric="accuracy",
        project="default",
    )
    experiment = client.get_experiment_by_name(registration.DEFAULT_EXPERIMENT)
    with mlflow.start_run(
        experiment_id=experiment.experiment_id, tags={registration.BASELINE_KEY_TAG: key}
    ) as run:
        mlflow.sklearn.log_model(model, name=registration.MODEL_PATH)
        mlflow.log_metrics(first["metrics"])
        registration.log_benchmark(sample.benchmark, first["benchmark_dataset_digest"])
    recovered = registration.register_baseline(model, sample.benchmark, **other)
    assert recovered["reused"] is False and recovered["run_id"] == run.info.run_id
    assert recovered["model_id"] == f"{name}/2"


def hokusai_cli(*args, cwd, env):
    return subprocess.run(
        [sys.executable, "-m", "mlflow_hokusai_plugin.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def cli_env(workdir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HOKUSAI_"))}
    return {**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workdir)}


def test_bad_contributed_data_stops_the_flow_at_that_step(sample_files, tmp_path):
    rows = sample_files["sample"].contributions[0].astype({"mean radius": object}).reset_index(drop=True)
    rows.loc[6, "mean radius"] = "abc"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    result = hokusai_cli(
        "pipeline",
        "run",
        "--dry-run",
        "--disable-services",
        "--contributed-data",
        "bad.csv",
        "--contributor",
        ALICE,
        cwd=tmp_path,
        env=cli_env(tmp_path),
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert (
        "Error: the pipeline stopped at step integrate_contributed_data: contributed_data: bad.csv: "
        "row 7, column 'mean radius': 'abc' is not a number"
    ) in result.stderr
    # The steps after it never ran: no DeltaOne output was written.
    assert not list(tmp_path.glob("hokusai-output/*/deltaone_output.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--disable-services", "--contributor", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"],
            "contributor: checksum mismatch",
        ),
        ([], "tracking_uri: no MLflow server: set MLFLOW_TRACKING_URI"),
        (["--disable-services", "--model-type", "ranking"], "model_type: the pipeline trains and scores"),
    ],
)
def test_bad_parameters_stop_the_flow_at_start(tmp_path, args, message):
    result = hokusai_cli("pipeline", "run", "--dry-run", *args, cwd=tmp_path, env=cli_env(tmp_path))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert "stopped at step start" in result.stderr and message in result.stderr
