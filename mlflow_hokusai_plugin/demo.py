"""``hokusai demo``: the whole story on an embedded MLflow server, in about a minute.

An MLflow server with the ``hokusai`` app on SQLite and local artifacts; a baseline classifier
trained on a little of scikit-learn's bundled breast-cancer data; an improved one trained with two
contributors' rows; both measured on the same held-out benchmark; the improvement registered, its
DeltaOne computed and the attestation signed by the server, then verified knowing only the
attester's address.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.embedded_server import MlflowServerProcess
from mlflow_hokusai_plugin.signer import ENV_KEY, ENV_KEYSTORE, Signer

MODEL_NAME = "hokusai-demo-classifier"
PROJECT = "demo"
EXPERIMENT = "hokusai-demo"
DEMO_KEYSTORE_PASSWORD = "hokusai-demo-only"  # protects a throwaway key that never leaves the workdir
# Two well-known EIP-55 test-vector addresses stand in for the data contributors.
CONTRIBUTORS = (
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 160),
    ("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", 120),
)
BASELINE_ROWS = 24


@dataclass
class DemoData:
    baseline: object  # DataFrame with "label"
    contributions: list  # one DataFrame per contributor
    benchmark: object
    benchmark_digest: str


def load_demo_data() -> DemoData:
    """Split scikit-learn's bundled breast-cancer set: benchmark, baseline rows, contributions."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from mlflow_hokusai_plugin.services.datasets import dataframe_digest

    # Floats throughout, so MLflow's signature inference has no integer column to warn about.
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "label"}).astype(float)
    train, benchmark = train_test_split(frame, test_size=0.3, random_state=7, stratify=frame["label"])
    baseline = train.iloc[:BASELINE_ROWS]
    contributions, start = [], BASELINE_ROWS
    for _, rows in CONTRIBUTORS:
        contributions.append(train.iloc[start : start + rows])
        start += rows
    return DemoData(baseline, contributions, benchmark, dataframe_digest(benchmark))


def demo_attester_env(workdir: Path, say: Callable[[str], None]) -> dict[str, str]:
    """The server's attester: the configured one, or a demo key kept in the workdir (said loudly)."""
    if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEYSTORE):
        return {}
    keystore = workdir / "demo-attester-keystore.json"
    if not keystore.exists():
        Signer.generate().write_keystore(keystore, DEMO_KEYSTORE_PASSWORD)
    say(f"!! DEMO attester key in {keystore} (set {ENV_KEY} for a real one)")
    return {ENV_KEYSTORE: str(keystore), "HOKUSAI_ATTESTER_PASSWORD": DEMO_KEYSTORE_PASSWORD}


def train_and_log(frame, benchmark, benchmark_digest: str, run_name: str) -> tuple[str, dict]:
    """Train a classifier on ``frame``, measure it on the benchmark, log both to MLflow."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlflow_hokusai_plugin.services.evaluation import classification_metrics, positive_scores

    features, labels = frame.drop(columns=["label"]), frame["label"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels)
    test_x, test_y = benchmark.drop(columns=["label"]), benchmark["label"]
    metrics = classification_metrics(test_y, model.predict(test_x), positive_scores(model, test_x))
    with mlflow.start_run(run_name=run_name):
        info = mlflow.sklearn.log_model(model, name="model", input_example=test_x.iloc[:2])
        mlflow.log_metrics(metrics)
        mlflow.log_param("training_rows", len(frame))
        mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, benchmark_digest)
        mlflow.log_input(
            mlflow.data.from_pandas(benchmark, name="breast-cancer-benchmark", digest=benchmark_digest[:36]),
            context=T.BENCHMARK_INPUT_CONTEXT,
        )
    return info.model_uri, metrics


def run_demo(workdir: Path, *, keep_serving: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run the demo end to end and return what it printed as data."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient
    from mlflow_hokusai_plugin.services import HokusaiModelRegistry

    _quiet_mlflow()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServerProcess(
        f"hokusai+sqlite:///{workdir / 'mlflow.db'}",
        str(workdir / "artifacts"),
        app_name="hokusai",
        workers=1,
        # Dev mode: a local demo with no API keys. The attester key is the demo's own.
        env={"HOKUSAI_DEV_MODE": "1", "HOKUSAI_AUTH": "none", **demo_attester_env(workdir, say)},
        log_path=workdir / "server.log",
    )
    say(f"Starting an embedded MLflow server with the hokusai app (SQLite, local artifacts in {workdir}) ...")
    server.start()
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(EXPERIMENT)
        say(f"MLflow server: {server.url}")
        # The server signs; the client only needs to know whom to trust.
        attester = HokusaiAppClient(server.url).health_ready()["checks"]["attester_key"]["address"]
        registry = HokusaiModelRegistry(server.url)
        data = load_demo_data()

        baseline = _existing_baseline(MlflowClient(server.url), data.benchmark_digest)
        if baseline:
            say(f"Reusing baseline {baseline} (already registered by an earlier run)")
        else:
            uri, metrics = train_and_log(data.baseline, data.benchmark, data.benchmark_digest, "baseline")
            baseline = registry.register_baseline(
                uri, "classification", {"project": PROJECT, "benchmark_metric": "accuracy"}, name=MODEL_NAME
            )["model_id"]
            say(f"Registered baseline {baseline} (trained on {len(data.baseline)} rows)")

        improved_rows = pd.concat([data.baseline, *data.contributions])
        uri, _ = train_and_log(improved_rows, data.benchmark, data.benchmark_digest, "improved")
        result = registry.register_improved_model(
            uri,
            baseline,
            contributors=[{"address": address, "samples": rows} for address, rows in CONTRIBUTORS],
            pipeline_run_id=f"demo-{os.getpid()}",
        )
        verdict = verify_document(result["attestation"], attesters=[attester])
        lineage = registry.get_model_lineage(result["model_id"])
        _report(say, server.url, result, lineage, verdict)
        if keep_serving:
            say("Serving the MLflow UI until Ctrl-C ...")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        return {"result": result, "verdict": verdict.to_dict(), "lineage": lineage, "url": server.url}
    finally:
        server.stop()


def _quiet_mlflow() -> None:
    """Keep the demo's output to what it has to say: MLflow's own progress lines go."""
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_PRINT_MODEL_URLS_ON_CREATION", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _existing_baseline(client, benchmark_digest: str) -> str | None:
    for version in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        tags = version.tags or {}
        if T.BASELINE in tags or not version.run_id:
            continue
        run = client.get_run(version.run_id)
        if run.data.tags.get(T.BENCHMARK_DATASET_DIGEST) == benchmark_digest:
            return T.format_model_id(version.name, version.version)
    return None


def _report(say, url: str, result: dict, lineage: list[dict], verdict) -> None:
    improvement = result["improvement"]
    say("")
    say("Lineage (root first): " + "  ->  ".join(node["model_id"] for node in lineage))
    say("")
    say(f"{'metric':<10} {'baseline':>9} {'improved':>9} {'delta':>9}")
    for name, delta in improvement["metric_deltas"].items():
        old, new, change = delta["baseline_value"], delta["new_value"], delta["absolute_delta"]
        say(f"{name:<10} {old:>9.4f} {new:>9.4f} {change:>+9.4f}")
    say("")
    say(
        f"DeltaOne on {improvement['benchmark_metric']}: {improvement['delta_one']:g} "
        f"({improvement['baseline_score_bps']} -> {improvement['candidate_score_bps']} bps, "
        f"+{improvement['delta_one_bps']} bps); recommendation {improvement['recommendation']}"
    )
    for contributor in result["contributors"]:
        say(
            f"  contributor {contributor['address']}: weight {contributor['weight_bps']} bps, "
            f"attributed {contributor['attributed_bps']} bps"
        )
    document = result["attestation"]
    say("")
    say(f"Attestation {document['id']} signed by {document['attester']}")
    state = "VALID" if verdict.valid else f"INVALID ({verdict.failed_check})"
    say(f"Verification with the attester address alone: {state}; signers {', '.join(verdict.signers)}")
    say("")
    for node in lineage[-2:]:
        name, version = T.parse_model_id(node["model_id"])
        say(f"MLflow UI: {url}/#/models/{name}/versions/{version}")
