"""``hokusai demo``: the whole story on an embedded MLflow server, in about a minute.

An MLflow server with the ``hokusai`` app on SQLite and local artifacts; then the Hokusai
evaluation flow on Metaflow's local runtime with the bundled sample (scikit-learn's breast-cancer
data): a baseline registered (or found, on a second run), two contributors' rows checked and
integrated, the improved model trained, measured on the held-out benchmark and registered; the
server computes the DeltaOne and signs the attestation, which is then verified knowing only the
attester's address. A second run finds the improvement the first one registered (the same
evaluation), so the contributors are credited once, however often the demo runs.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.demo.embedded_server import MlflowServerProcess
from mlflow_hokusai_plugin.runtime.signer import ENV_KEY, ENV_KEYSTORE, Signer

MODEL_NAME = "hokusai-demo-classifier"
PROJECT = "demo"
EXPERIMENT = "hokusai-demo"
DEMO_KEYSTORE_PASSWORD = "hokusai-demo-only"  # protects a throwaway key that never leaves the workdir


class DemoError(RuntimeError):
    """The demo's flow run failed; the message says at which step and why."""


class DemoStopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, or the demo's parent went away: stop as Ctrl-C does, cleaning up."""


@contextmanager
def stopped_cleanly_on_signals(poll: float = 0.5) -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`DemoStopped`, and do the same when the parent process
    goes away: ``make`` killed with SIGTERM does not pass the signal on to its recipe, whose
    ``finally`` blocks would then never stop the embedded server. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise DemoStopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    parent, done = os.getppid(), threading.Event()

    def watch_parent() -> None:
        while not done.wait(poll):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGHUP)
                return

    threading.Thread(target=watch_parent, name="hokusai-demo-parent", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def demo_attester_env(workdir: Path, say: Callable[[str], None]) -> dict[str, str]:
    """The server's attester: the configured one, or a demo key kept in the workdir (said loudly)."""
    if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEYSTORE):
        return {}
    keystore = workdir / "demo-attester-keystore.json"
    if not keystore.exists():
        Signer.generate().write_keystore(keystore, DEMO_KEYSTORE_PASSWORD)
    say(f"!! DEMO attester key in {keystore} (set {ENV_KEY} for a real one)")
    return {ENV_KEYSTORE: str(keystore), "HOKUSAI_ATTESTER_PASSWORD": DEMO_KEYSTORE_PASSWORD}


def run_demo(workdir: Path, *, keep_serving: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run the demo end to end and return what it printed as data."""
    from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient
    from mlflow_hokusai_plugin.pipeline.runner import run_flow
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
        say(f"MLflow server: {server.url}")
        say("Running HokusaiEvaluationFlow on Metaflow's local runtime with the bundled sample ...")
        outcome = run_flow(
            [
                # The bundled sample for every input; registered for real (not --dry-run).
                "--sample",
                "--tracking-uri",
                server.url,
                "--model-name",
                MODEL_NAME,
                "--project",
                PROJECT,
                "--experiment",
                EXPERIMENT,
                "--output-dir",
                str(workdir / "output"),
            ],
            # The demo's server, not whatever MLflow server or credentials this shell points at.
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")},
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workdir),
            },
            cwd=workdir,
        )
        if not outcome.ok:
            raise DemoError(f"the flow stopped at step {outcome.failed_step}: {outcome.error}")
        # The server signed; the demo only needs to know whom to trust.
        attester = HokusaiAppClient(server.url).health_ready()["checks"]["attester_key"]["address"]
        report = outcome.report
        verdict = verify_document(report["attestation"], attesters=[attester])
        lineage = HokusaiModelRegistry(server.url).get_model_lineage(report["new_model_id"])
        _report(say, server.url, report, lineage, verdict)
        if keep_serving:
            say("Serving the MLflow UI until Ctrl-C ...")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                say("Stopping the embedded MLflow server.")
        else:
            say("The embedded MLflow server stops now; `hokusai demo --keep-serving` keeps these pages up.")
        return {"report": report, "verdict": verdict.to_dict(), "lineage": lineage, "url": server.url}
    finally:
        server.stop()


def _quiet_mlflow() -> None:
    """Keep the demo's output to what it has to say: MLflow's own progress lines go."""
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_PRINT_MODEL_URLS_ON_CREATION", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _report(say, url: str, report: dict, lineage: list[dict], verdict) -> None:
    output = report["deltaone_output"]
    computation = output["delta_computation"]
    say("")
    say("Lineage (root first): " + "  ->  ".join(node["model_id"] for node in lineage))
    say("")
    say(f"{'metric':<10} {'baseline':>9} {'improved':>9} {'delta':>9}")
    for name, delta in computation["metric_deltas"].items():
        old, new, change = delta["baseline_value"], delta["new_value"], delta["absolute_delta"]
        say(f"{name:<10} {old:>9.4f} {new:>9.4f} {change:>+9.4f}")
    say("")
    say(
        f"DeltaOne on {computation['benchmark_metric']}: {computation['delta_one_score']:g} "
        f"({computation['baseline_score_bps']} -> {computation['candidate_score_bps']} bps, "
        f"+{computation['delta_one_bps']} bps); recommendation {computation['recommendation']}"
    )
    attribution = output["contributor_attribution"]
    for address, weight in attribution["contributor_weights"].items():
        say(
            f"  contributor {address}: weight {weight} bps, "
            f"attributed {attribution['attributed_bps'][address]} bps"
        )
    document = report["attestation"]
    say("")
    say(f"Attestation {document['id']} signed by {document['attester']}")
    state = "VALID" if verdict.valid else f"INVALID ({verdict.failed_check})"
    say(f"Verification with the attester address alone: {state}; signers {', '.join(verdict.signers)}")
    say("")
    for name, path in sorted(report["output_files"].items()):
        say(f"{name}: {path}")
    for node in lineage[-2:]:
        name, version = T.parse_model_id(node["model_id"])
        say(f"MLflow UI: {url}/#/models/{name}/versions/{version}")
