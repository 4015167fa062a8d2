"""The client-side plugins, loaded the way MLflow loads them and used against real servers.

- the ``hokusai`` run context provider tags runs created on the session's ``mlflow server``, from
  environment variables and from inside a real Metaflow flow run;
- the ``hokusai`` app client talks to real servers: a plain ``mlflow server`` (no Hokusai routes:
  the error path), ``mlflow server --app-name hokusai`` (the routes it serves today), and a small
  stand-in HTTP server that records each request and answers what a test sets, to pin the
  method, path, query and body of every contract route, including those not served yet. It is a
  real server on a socket: the client's whole MLflow HTTP stack runs, nothing is patched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from urllib.parse import parse_qs, urlsplit

import mlflow
import mlflow.server
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking.context.registry import _run_context_provider_registry

from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient
from mlflow_hokusai_plugin.client.run_context import HokusaiRunContextProvider
from mlflow_hokusai_plugin.core import tags as T

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "cls"),
    [("mlflow.run_context_provider", HokusaiRunContextProvider), ("mlflow.app.client", HokusaiAppClient)],
)
def test_declared_entry_points_load_to_the_right_class(group, cls):
    ours = [ep for ep in entry_points(group=group) if ep.value.startswith("mlflow_hokusai_plugin.")]
    assert {ep.name for ep in ours} == {"hokusai"}
    assert all(ep.load() is cls for ep in ours)


def test_mlflow_registered_the_run_context_provider():
    assert any(isinstance(p, HokusaiRunContextProvider) for p in _run_context_provider_registry)


def test_provider_survives_being_imported_before_mlflow():
    # The trap: importing the provider module first makes MLflow load the entry point while the
    # module is half-built, and MLflow then drops it with a warning only. A fresh interpreter is
    # the only place where the import order is really the user's.
    code = textwrap.dedent(
        """
        import mlflow_hokusai_plugin.client.run_context as ours
        from mlflow.tracking.context.registry import _run_context_provider_registry as registry
        assert any(type(p) is ours.HokusaiRunContextProvider for p in registry), list(registry)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Failure attempting to register" not in done.stderr


def test_get_app_client_returns_the_hokusai_client():
    client = mlflow.server.get_app_client("hokusai", tracking_uri="http://127.0.0.1:5000")
    assert isinstance(client, HokusaiAppClient)
    assert client.tracking_uri == "http://127.0.0.1:5000"


# --- run context provider ------------------------------------------------------------------------


@pytest.fixture()
def experiment(tracking_uri):
    return mlflow.set_experiment(f"client-plugins-{uuid.uuid4().hex[:8]}")


def test_start_run_carries_the_environment_tags(experiment, monkeypatch):
    monkeypatch.setenv("HOKUSAI_PROJECT", "churn")
    monkeypatch.setenv("HOKUSAI_PIPELINE_RUN_ID", "nightly-42")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.8)
    with mlflow.start_run(tags={T.PIPELINE_RUN_ID: "by-hand"}) as explicit:
        pass

    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags[T.PROJECT] == "churn"
    assert tags[T.PIPELINE_RUN_ID] == "nightly-42"
    # start_run(tags=...) is applied after every provider: the user always has the last word.
    assert MlflowClient().get_run(explicit.info.run_id).data.tags[T.PIPELINE_RUN_ID] == "by-hand"


def test_invalid_project_does_not_break_the_run(experiment, monkeypatch):
    monkeypatch.setenv("HOKUSAI_PROJECT", "Not A Project")
    monkeypatch.delenv("HOKUSAI_PIPELINE_RUN_ID", raising=False)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.8)
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert T.PROJECT not in got.data.tags


FLOW = """
from metaflow import FlowSpec, step


class HokusaiTagFlow(FlowSpec):
    @step
    def start(self):
        import mlflow

        with mlflow.start_run():
            mlflow.log_metric("accuracy", 0.5)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HokusaiTagFlow()
"""

# Read the flow's run back through Metaflow's own client: the ground truth the tags must match.
METAFLOW_RUN = """
import json
from metaflow import Flow, namespace

namespace(None)
run = Flow("HokusaiTagFlow").latest_run
print(json.dumps({"run_id": run.id, "start_tasks": [task.id for task in run["start"]]}))
"""


def test_metaflow_step_run_is_tagged_with_its_flow_run_step_and_task(tracking_uri, tmp_path):
    experiment_name = f"metaflow-{uuid.uuid4().hex[:8]}"
    (tmp_path / "flow.py").write_text(FLOW)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")},
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "metaflow"),
        "USERNAME": "hokusai-tests",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment_name,
        "HOKUSAI_PROJECT": "churn",
    }
    flow = subprocess.run(
        [sys.executable, "flow.py", "--no-pylint", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert flow.returncode == 0, flow.stdout + flow.stderr
    truth = subprocess.run(
        [sys.executable, "-c", METAFLOW_RUN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert truth.returncode == 0, truth.stderr
    metaflow_run = json.loads(truth.stdout)

    runs = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert runs[0].data.metrics == {"accuracy": 0.5}
    assert tags["hokusai.metaflow.flow"] == "HokusaiTagFlow"
    assert tags["hokusai.metaflow.run_id"] == metaflow_run["run_id"]
    assert tags["hokusai.metaflow.step"] == "start"
    assert [tags["hokusai.metaflow.task_id"]] == metaflow_run["start_tasks"]
    assert tags[T.PIPELINE_RUN_ID] == f"metaflow:HokusaiTagFlow/{metaflow_run['run_id']}"
    assert tags[T.PROJECT] == "churn"


# --- app client against real MLflow servers ------------------------------------------------------


def test_plain_mlflow_server_answers_a_clear_error(mlflow_server):
    client = mlflow.server.get_app_client("hokusai", tracking_uri=mlflow_server.url)
    with pytest.raises(MlflowException) as excinfo:
        client.health_live()
    assert excinfo.value.error_code == "ENDPOINT_NOT_FOUND"
    message = excinfo.value.message
    assert "GET /api/2.0/hokusai/health/live failed with HTTP 404" in message
    assert "mlflow server --app-name hokusai" in message

    # Path segments are percent-encoded; a model id keeps its one "/".
    with pytest.raises(MlflowException, match="GET /api/2.0/hokusai/models/my%20model/3/lineage "):
        client.get_lineage("my model/3")
    with pytest.raises(MlflowException, match="POST /api/2.0/hokusai/attestations/verify "):
        client.verify_attestation({"dsse": {}})


# ``hokusai_server`` is the session's shared server (tests/conftest.py).


def test_health_on_a_hokusai_server(hokusai_server):
    client = mlflow.server.get_app_client("hokusai", tracking_uri=hokusai_server.url)
    assert client.health_live()["status"] == "ok"
    assert client.health_ready()["status"] == "ready"


def test_hokusai_server_errors_raise_rest_exception(hokusai_server):
    client = mlflow.server.get_app_client("hokusai", tracking_uri=hokusai_server.url)
    with pytest.raises(RestException) as excinfo:
        client.get_attestation("no-such-attestation")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "no-such-attestation" in excinfo.value.message


# --- app client against a stand-in for the routes to come ----------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Records each request and answers ``server.reply`` (status, JSON body)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        url = urlsplit(self.path)
        self.server.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                "json": json.loads(self.rfile.read(length)) if length else None,
                "authorization": self.headers.get("Authorization"),
            }
        )
        status, body = self.server.reply
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture()
def stand_in(monkeypatch):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests, server.reply = [], (200, {"ok": True})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.client = HokusaiAppClient(f"http://127.0.0.1:{server.server_port}")
    yield server
    server.shutdown()
    server.server_close()


P = "/api/2.0/hokusai"


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "body"),
    [
        (lambda c: c.health_live(), "GET", f"{P}/health/live", {}, None),
        (lambda c: c.health_ready(), "GET", f"{P}/health/ready", {}, None),
        (
            lambda c: c.get_lineage("churn/3"),
            "GET",
            f"{P}/models/churn/3/lineage",
            {"direction": "both"},
            None,
        ),
        (
            lambda c: c.get_lineage("churn/3", direction="up", max_depth=2),
            "GET",
            f"{P}/models/churn/3/lineage",
            {"direction": "up", "max_depth": "2"},
            None,
        ),
        (
            lambda c: c.get_contributor_impact(ALICE, max_results=10, page_token="abc"),
            "GET",
            f"{P}/contributors/{ALICE}/impact",
            {"max_results": "10", "page_token": "abc"},
            None,
        ),
        (lambda c: c.get_attestation("att-1"), "GET", f"{P}/attestations/att-1", {}, None),
        (lambda c: c.list_attestations("churn/3"), "GET", f"{P}/attestations", {"model_id": "churn/3"}, None),
        (
            lambda c: c.verify_attestation({"dsse": {}}, attesters=[ALICE], threshold=1),
            "POST",
            f"{P}/attestations/verify",
            {},
            {"document": {"dsse": {}}, "attesters": [ALICE], "threshold": 1},
        ),
        (
            lambda c: c.verify_attestation({"dsse": {}}),
            "POST",
            f"{P}/attestations/verify",
            {},
            {"document": {"dsse": {}}, "threshold": 1},
        ),
        (lambda c: c.list_projects(), "GET", f"{P}/projects", {}, None),
        (
            lambda c: c.register_model(model_uri="runs:/r1/model", name="churn"),
            "POST",
            f"{P}/models/register",
            {},
            {"model_uri": "runs:/r1/model", "name": "churn"},
        ),
        (lambda c: c.openapi(), "GET", f"{P}/openapi.json", {}, None),
    ],
)
def test_each_method_sends_the_contract_request(stand_in, call, method, path, query, body):
    assert call(stand_in.client) == {"ok": True}
    [sent] = stand_in.requests
    assert (sent["method"], sent["path"], sent["query"], sent["json"]) == (method, path, query, body)


def test_mlflow_shaped_error_raises_rest_exception(stand_in):
    stand_in.reply = (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No attestation att-9"})
    with pytest.raises(RestException) as excinfo:
        stand_in.client.get_attestation("att-9")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert excinfo.value.message == "RESOURCE_DOES_NOT_EXIST: No attestation att-9"


def test_readiness_failure_is_reported_at_once_with_its_checks(stand_in):
    # The Hokusai server's own answer when its database is down: JSON, but no error_code.
    report = {
        "status": "not_ready",
        "checks": {"database": {"ok": False, "error": "OperationalError"}},
        "message": "not ready: database",
    }
    stand_in.reply = (503, report)
    with pytest.raises(RestException) as excinfo:
        stand_in.client.health_ready()
    assert excinfo.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert excinfo.value.message == "TEMPORARILY_UNAVAILABLE: not ready: database"
    assert excinfo.value.json["checks"] == report["checks"]
    assert len(stand_in.requests) == 1  # MLflow's retry policy would back off for minutes


def test_json_404_without_error_code_still_names_the_missing_app(stand_in):
    stand_in.reply = (404, {"detail": "Not Found"})  # FastAPI's own 404 shape
    with pytest.raises(RestException) as excinfo:
        stand_in.client.list_projects()
    assert excinfo.value.error_code == "ENDPOINT_NOT_FOUND"
    assert "GET /api/2.0/hokusai/projects failed with HTTP 404" in excinfo.value.message
    assert "--app-name hokusai" in excinfo.value.message


def test_standard_mlflow_credentials_are_sent(stand_in, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cr3t")
    stand_in.client.list_projects()
    assert stand_in.requests[-1]["authorization"] == "Bearer s3cr3t"


def test_a_client_opens_a_hokusai_store_as_it_opens_mlflows_own(tmp_path):
    """``MlflowClient("hokusai+sqlite:///...")`` with no artifact root: ./mlruns, as MLflow's own."""
    code = textwrap.dedent(
        """
        import mlflow
        from mlflow import MlflowClient
        locations = []
        for uri in ("sqlite:///plain.db", "hokusai+sqlite:///hokusai.db"):
            client = MlflowClient(tracking_uri=uri)
            experiment = client.create_experiment("e")
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "accuracy", 0.8)
            assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.8}
            locations.append(client.get_experiment(experiment).artifact_location)
        print(locations)
        assert locations[0] == locations[1], locations
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(tmp_path / "mlruns") in done.stdout
