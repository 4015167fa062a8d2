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
import pandas as pd
import pytest
from eth_account import Account
from mlflow import MlflowClient

from mlflow_hokusai_plugin.client import run_context as RC
from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.pipeline import registration, training
from mlflow_hokusai_plugin.pipeline.runner import FLOW_NAME, run_flow
from mlflow_hokusai_plugin.pipeline.sample import load_sample, write_contribution_files
from mlflow_hokusai_plugin.services.datasets import dataframe_digest
from tests.integration.test_services import verify_like_an_outsider

pytestmark = pytest.mark.slow

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


SAMPLE_ARGS = ("--sample", "--project", "pipeline-tests")


@pytest.fixture(scope="module")
def sample_run(server, model_name, tmp_path_factory):
    """One run of the bundled sample with services: its baseline and its two contributors."""
    workdir = tmp_path_factory.mktemp("sample-run")
    return succeeded(flow(workdir, *SAMPLE_ARGS, "--model-name", model_name, tracking_uri=server.url))


def test_the_flow_registers_the_baseline_and_the_attested_improvement(
    sample_run, server, model_name, attester
):
    report = sample_run.report
    assert report["baseline_id"] == f"{model_name}/1"
    assert report["new_model_id"] == f"{model_name}/2"
    version = MlflowClient(server.url).get_model_version(model_name, "2")
    tags = version.tags
    assert tags[T.BASELINE] == f"{model_name}/1"
    assert tags[T.PROJECT] == "pipeline-tests"
    assert tags[T.PIPELINE_RUN_ID] == f"metaflow:{FLOW_NAME}/{sample_run.run_id}"
    assert json.loads(tags[T.CONTRIBUTORS]) == [
        {"address": ALICE, "samples": 160},
        {"address": BOB, "samples": 120},
    ]
    assert tags[T.ATTESTATION_STATUS] == "signed"
    assert tags[T.ATTESTER] == attester
    assert int(tags[T.DELTA_ONE_BPS]) == report["deltaone_output"]["delta_computation"]["delta_one_bps"] > 0
    assert verify_like_an_outsider(report["attestation"]) == attester


def test_each_run_leads_back_to_the_metaflow_run_and_step(sample_run, server, model_name):
    client = MlflowClient(server.url)
    for version, step_name in (("2", "create_experiment"), ("1", "register_baseline")):
        run = client.get_run(client.get_model_version(model_name, version).run_id)
        assert run.data.tags[RC.METAFLOW_FLOW] == FLOW_NAME
        assert run.data.tags[RC.METAFLOW_RUN_ID] == sample_run.run_id
        assert run.data.tags[RC.METAFLOW_STEP] == step_name
        assert run.data.tags[RC.METAFLOW_TASK_ID].isdigit()
        assert run.data.tags[T.BENCHMARK_DATASET_DIGEST] == dataframe_digest(load_sample().benchmark)
        assert {"accuracy", "auroc", "f1_score"} <= set(run.data.metrics)
        contexts = {d.tags[0].value for d in run.inputs.dataset_inputs}
        assert T.BENCHMARK_INPUT_CONTEXT in contexts


def test_the_output_documents(sample_run, server, tmp_path):
    files = sample_run.report["output_files"]
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
    assert attestation == HokusaiAppClient(server.url).get_attestation(attestation["id"])
    # The same document is an artifact of the candidate's MLflow run.
    run_id = output["new_model"]["mlflow_run_id"]
    logged = MlflowClient(server.url).download_artifacts(
        run_id, "hokusai/deltaone_output.json", str(tmp_path)
    )
    assert json.loads(open(logged).read()) == output


def test_a_rerun_of_the_same_evaluation_reuses_its_improvement(sample_run, server, model_name, tmp_path):
    """The same baseline, rows and contributors again, in a new Metaflow run: the improvement the
    first run registered, not another one crediting the same rows."""
    client, app = MlflowClient(server.url), HokusaiAppClient(server.url)
    registry_before = _registry_state(client, model_name)
    impact_before = _impact(app)
    again = succeeded(flow(tmp_path, *SAMPLE_ARGS, "--model-name", model_name, tracking_uri=server.url))

    first, second = sample_run.report, again.report
    assert second["baseline_id"] == first["baseline_id"] == f"{model_name}/1"
    assert second["new_model_id"] == first["new_model_id"] == f"{model_name}/2"
    assert _registry_state(client, model_name) == registry_before
    assert _impact(app) == impact_before
    assert not _runs_of(client, again.run_id), "the rerun logged an MLflow run of its own"
    before, after = first["deltaone_output"], second["deltaone_output"]
    key = before["pipeline_metadata"]["improvement_key"]
    assert len(key) == 64 and after["pipeline_metadata"]["improvement_key"] == key
    reused = [output["pipeline_metadata"]["improvement_reused"] for output in (before, after)]
    assert reused == [False, True]
    for part in ("delta_computation", "contributor_attribution", "new_model"):
        assert _without_paths(after[part]) == _without_paths(before[part]), part
    assert second["attestation"] == first["attestation"]
    assert "registered before as" in again.log

    # The key is recorded on the improvement's run; one registered before it was (an older plugin)
    # is recognised by the facts the key is made of, under the key older plugins gave it (the
    # sha256 of the rows in file order).
    run_id = before["new_model"]["mlflow_run_id"]
    run_tags = client.get_run(run_id).data.tags
    assert run_tags[registration.IMPROVEMENT_KEY_TAG] == key
    evaluation = {
        "contributors": [{"address": ALICE, "samples": 160}, {"address": BOB, "samples": 120}],
        "benchmark_digest": run_tags[T.BENCHMARK_DATASET_DIGEST],
        "benchmark_metric": before["delta_computation"]["benchmark_metric"],
    }
    older_key = registration.improvement_key(
        baseline_id=f"{model_name}/1", data_hash=run_tags[registration.DATA_HASH_TAG], **evaluation
    )
    assert older_key != key
    client.delete_tag(run_id, registration.IMPROVEMENT_KEY_TAG)
    try:
        found = registration.find_improvement(server.url, f"{model_name}/1", [key, older_key], **evaluation)
        assert registration.find_improvement(server.url, f"{model_name}/1", key, **evaluation) is None
    finally:
        client.set_tag(run_id, registration.IMPROVEMENT_KEY_TAG, key)
    assert found == {"model_id": f"{model_name}/2", "run_id": run_id}
    # Found by its key, but not this evaluation's as attested (other shares, another benchmark
    # metric or digest): not taken up.
    for other in (
        {"contributors": [{"address": ALICE, "samples": 120}, {"address": BOB, "samples": 160}]},
        {"benchmark_metric": "f1" if evaluation["benchmark_metric"] != "f1" else "accuracy"},
        {"benchmark_digest": "ab" * 32},
    ):
        assert (
            registration.find_improvement(server.url, f"{model_name}/1", key, **{**evaluation, **other})
            is None
        )


def test_two_runs_registering_one_evaluation_at_once_register_it_once(sample_run, server, model_name):
    """A run that looked before the other one registered sends the same Idempotency-Key with a
    different request (its own run): the server refuses it, and it takes the first one's version."""
    from mlflow_hokusai_plugin.services import HokusaiModelRegistry

    client = MlflowClient(server.url)
    registry_before = _registry_state(client, model_name)
    output = sample_run.report["deltaone_output"]
    registry = HokusaiModelRegistry(server.url)
    result = registration._register_on_server(
        registry,
        registry.server,
        run_id=output["new_model"]["mlflow_run_id"],
        baseline_id=f"{model_name}/1",
        contributors=[{"address": ALICE, "samples": 160}, {"address": BOB, "samples": 120}],
        model_uri=f"runs:/{output['new_model']['mlflow_run_id']}/{registration.MODEL_PATH}",
        model_name=None,
        pipeline_run_id=f"metaflow:{FLOW_NAME}/another-run",
        key=output["pipeline_metadata"]["improvement_key"],
        benchmark_digest=client.get_run(output["new_model"]["mlflow_run_id"]).data.tags[
            T.BENCHMARK_DATASET_DIGEST
        ],
        benchmark_metric=output["delta_computation"]["benchmark_metric"],
    )
    assert result["reused"] is True and result["model_id"] == f"{model_name}/2"
    assert _registry_state(client, model_name) == registry_before


def test_an_improvement_carrying_a_planted_key_is_not_taken_for_this_evaluation(server, monkeypatch):
    """Run tags are writable by any write key: an attacker registers its own improvement and puts
    the victim's improvement key on its run. The victim's evaluation registers its own improvement,
    crediting its own contributors, and a rerun of it finds that one, not the attacker's."""
    from mlflow_hokusai_plugin.services import ExperimentManager
    from tests.conftest import point_mlflow_at

    point_mlflow_at(server.url, monkeypatch)
    sample, client = load_sample(), MlflowClient(server.url)
    name = f"plant-{uuid.uuid4().hex[:8]}"
    base = training.fit(training.default_estimator("classification"), sample.baseline, "label")
    baseline_id = registration.register_baseline(
        base, sample.benchmark, model_name=name, model_type="classification", tracking_uri=server.url
    )["model_id"]
    metric = client.get_model_version(name, "1").tags[T.BENCHMARK_METRIC]
    digest = dataframe_digest(sample.benchmark)

    def evaluation(rows, address):
        """A candidate run trained with ``rows``, credited to ``address``: its run, model and key."""
        contributors = [{"address": address, "samples": len(rows)}]
        run_id = ExperimentManager("hokusai_pipeline", tracking_uri=server.url).create_improvement_experiment(
            baseline_id, rows
        )
        model = training.fit(base, pd.concat([sample.baseline, rows], ignore_index=True), "label")
        model_uri = registration.log_candidate_model(run_id, model, rows, "label", server.url)
        metrics = training.evaluate(model, sample.benchmark, "label", "classification")
        registration.log_candidate_evaluation(run_id, metrics, sample.benchmark, digest, server.url)
        key = registration.improvement_key(
            baseline_id=baseline_id,
            data_hash=registration.rows_digest(rows),
            contributors=contributors,
            benchmark_digest=digest,
            benchmark_metric=metric,
        )
        return run_id, model_uri, contributors, key

    def track(run_id, model_uri, contributors, key):
        return registration.track_improvement(
            run_id,
            baseline_id,
            contributors,
            model_uri=model_uri,
            tracking_uri=server.url,
            idempotency_key=key,
        )

    facts = {"benchmark_digest": digest, "benchmark_metric": metric}
    attacker = evaluation(sample.contributions[1].reset_index(drop=True), BOB)
    planted = track(*attacker)
    assert planted["reused"] is False and planted["attestation"]["status"] == "signed"
    victim = evaluation(sample.contributions[0].reset_index(drop=True), ALICE)
    client.set_tag(attacker[0], registration.IMPROVEMENT_KEY_TAG, victim[3])  # the plant
    assert (
        registration.find_improvement(server.url, baseline_id, victim[3], contributors=victim[2], **facts)
        is None
    )

    registered = track(*victim)
    assert registered["reused"] is False
    assert registered["model_id"] not in (baseline_id, planted["model_id"])
    assert [c["address"] for c in registered["contributors"]] == [ALICE]
    version = client.get_model_version(*registered["model_id"].split("/"))
    assert version.run_id == victim[0] and json.loads(version.tags[T.CONTRIBUTORS]) == victim[2]
    # A rerun of the victim's evaluation takes up the victim's improvement, still not the attacker's.
    again = registration.find_improvement(server.url, baseline_id, victim[3], contributors=victim[2], **facts)
    assert again == {"model_id": registered["model_id"], "run_id": victim[0]}


def test_a_dry_run_of_a_registered_evaluation_reads_it_and_writes_nothing(
    sample_run, server, model_name, tmp_path
):
    client, app = MlflowClient(server.url), HokusaiAppClient(server.url)
    registry_before, impact_before = _registry_state(client, model_name), _impact(app)
    outcome = succeeded(
        flow(tmp_path, *SAMPLE_ARGS, "--dry-run", "--model-name", model_name, tracking_uri=server.url)
    )
    report = outcome.report
    assert (report["baseline_id"], report["new_model_id"]) == (f"{model_name}/1", f"{model_name}/2")
    assert "a real run would reuse it" in outcome.log
    output, registered = report["deltaone_output"], sample_run.report["deltaone_output"]
    assert output["delta_computation"] == registered["delta_computation"]
    assert output["pipeline_metadata"]["dry_run"] is True
    assert _registry_state(client, model_name) == registry_before
    assert _impact(app) == impact_before
    assert not _runs_of(client, outcome.run_id)


def test_a_dry_run_registers_nothing_and_one_contributor_gets_the_samples_rows(sample_run, server, tmp_path):
    """--sample with one --contributor and no --contributed-data: the sample's rows are theirs."""
    name, experiment = f"dry-{uuid.uuid4().hex[:8]}", f"dry-{uuid.uuid4().hex[:8]}"
    outcome = succeeded(
        flow(
            tmp_path,
            "--sample",
            "--dry-run",
            "--contributor",
            ALICE.lower(),
            "--model-name",
            name,
            "--experiment",
            experiment,
            tracking_uri=server.url,
        )
    )
    client = MlflowClient(server.url)
    assert not client.search_registered_models(f"name = '{name}'")
    assert client.get_experiment_by_name(experiment) is None
    assert not _runs_of(client, outcome.run_id)
    report = outcome.report
    assert report["baseline_id"] is None and report["new_model_id"] is None
    assert report["attestation"] is None
    assert set(report["output_files"]) == {"data_manifest", "deltaone_output"}
    output = report["deltaone_output"]
    assert output["attestation"]["status"] == "dry_run"
    assert output["baseline_model"]["model_id"] is None and output["new_model"]["mlflow_run_id"] is None
    attribution, computation = output["contributor_attribution"], output["delta_computation"]
    assert attribution["contributor_weights"] == {ALICE: 10000}
    assert attribution["contributed_samples"] == 280
    assert attribution["attributed_bps"] == {ALICE: computation["delta_one_bps"]}
    # The same rows as the sample's two contributors', so the same DeltaOne.
    assert computation == sample_run.report["deltaone_output"]["delta_computation"]
    assert f"Dry run: the baseline would be registered as a new version of '{name}'" in outcome.log
    assert "Dry run: would register a new version of" in outcome.log


def _registry_state(client, name):
    """Every version of ``name`` with its tags, and the registered model's tags."""
    versions = {v.version: dict(v.tags) for v in client.search_model_versions(f"name = '{name}'")}
    return versions, dict(client.get_registered_model(name).tags)


def _impact(app):
    return {address: app.get_contributor_impact(address)["total_attributed_bps"] for address in (ALICE, BOB)}


def _runs_of(client, metaflow_run_id):
    """The MLflow runs a Metaflow run started, in any experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{RC.METAFLOW_RUN_ID}` = '{metaflow_run_id}'")


def test_offline_with_the_same_inputs_gives_the_same_documents_minus_registry_ids(
    sample_run, sample_files, tmp_path
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
    online, offline = sample_run.report["deltaone_output"], outcome.report["deltaone_output"]
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
    sample_run, server, model_name, sample_files, tmp_path
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
        "--sample",
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
    result = hokusai_cli("pipeline", "run", "--sample", *args, cwd=tmp_path, env=cli_env(tmp_path))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert "stopped at step start" in result.stderr and message in result.stderr
