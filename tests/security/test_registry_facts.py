"""Server facts and projects tied to what they belong to, under attack, on real 2-worker servers on
PostgreSQL: dev mode (no auth) and MLflow's basic-auth mode with its admin user.

Each attack goes over raw HTTP, as an attacker sends it (MLflow's REST routes), and checks the
answer: 400, MLflow's JSON error shape, INVALID_PARAMETER_VALUE naming the field (never a 500); then
that nothing changed: MLflow's registry rows of the models involved (versions, deleted ones too,
their tags, the registered models' tags), the plugin tables (edges, attestations, contributions,
contributor totals) and the audit head, read with plain SQL; and, through MlflowClient, what a
reader sees. The regression tests check that what must keep working does: the README's plain-client
flow, a first Hokusai version giving a project-less model its project, ``hokusai.onchain_model_id``
on the model, and the pipeline's own registration steps.
"""

from __future__ import annotations

import base64

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from tests.integration.test_server_plugin import (
    ALICE,
    _dispose_engines,  # noqa: F401 - the engines sql() opens are disposed with this module
    audit_entries,
    baseline_tags,
    improvement_tags,
    log_candidate,
    mlflow_env,
    plugin_counts,
    rows_of,
    sql,
    status_in_db,
    unique,
)
from tests.security.attack import send

# Look-alike spellings of our keys: case, surrounding spaces, fullwidth, a Cyrillic "о", spaces
# inside; and keys of our namespace the plugin does not know.
LOOKALIKES = [
    "Hokusai.Attestation.Status",
    "hokusai.attestation.status ",
    " hokusai.baseline",
    "\uff48okusai.baseline",  # fullwidth h
    "HOKUSAI.PROJECT",
    "h\u043ekusai.delta_one_bps",  # Cyrillic o
    "hokusai. project",
]
UNKNOWN = ["hokusai.anything", "Hokusai.Notes"]


# -- helpers --------------------------------------------------------------------------------------


class Api:
    """MLflow's REST routes of one server, as raw requests (with basic-auth credentials if any)."""

    def __init__(self, server, credentials: tuple[str, str] | None = None) -> None:
        self.server = server
        self.headers = {}
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, route: str, body: dict):
        return send(self.server.url, method, f"/api/2.0/mlflow/{route}", body, headers=self.headers)

    def create_version(self, name: str, candidate, tags: dict | None = None):
        body = {
            "name": name,
            "source": candidate.uri,
            "run_id": candidate.run_id,
            "model_id": candidate.model_id,
        }
        return self.call("POST", "model-versions/create", {**body, "tags": _pairs(tags or {})})

    def set_version_tag(self, name: str, version, key: str, value: str):
        return self.call(
            "POST",
            "model-versions/set-tag",
            {"name": name, "version": str(version), "key": key, "value": value},
        )

    def delete_version_tag(self, name: str, version, key: str):
        return self.call(
            "DELETE", "model-versions/delete-tag", {"name": name, "version": str(version), "key": key}
        )

    def update_version(self, name: str, version, description: str):
        return self.call(
            "PATCH",
            "model-versions/update",
            {"name": name, "version": str(version), "description": description},
        )

    def create_model(self, name: str, tags: dict | None = None):
        return self.call("POST", "registered-models/create", {"name": name, "tags": _pairs(tags or {})})

    def set_model_tag(self, name: str, key: str, value: str):
        return self.call("POST", "registered-models/set-tag", {"name": name, "key": key, "value": value})

    def delete_model_tag(self, name: str, key: str):
        return self.call("DELETE", "registered-models/delete-tag", {"name": name, "key": key})


def _pairs(tags: dict) -> list[dict]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def ok(answer):
    assert answer.status == 200, (answer.status, answer.body[:500])
    return answer.json


def refused(answer, field: str, *mentions: str) -> str:
    """A 400 in MLflow's JSON shape, INVALID_PARAMETER_VALUE, its message starting with the field."""
    assert answer.status == 400, (answer.status, answer.body[:500])
    code, message = answer.error()
    assert code == "INVALID_PARAMETER_VALUE", message
    assert message.startswith(f"{field}:"), (field, message)
    for mention in mentions:
        assert mention in message, (mention, message)
    return message


def state(server, *names: str) -> dict:
    """Everything an attack on these registered models could have changed, read with plain SQL."""
    uri = server.store_uri
    found = {
        "plugin": plugin_counts(uri),
        "totals": sorted(
            map(
                tuple,
                sql(
                    uri,
                    "SELECT address, project, models_improved, attributed_bps"
                    " FROM hokusai_contributor_totals",
                ),
            )
        ),
    }
    for name in names:
        found[name] = {
            "model": sql(
                uri, "SELECT description, last_updated_time FROM registered_models WHERE name = :n", n=name
            ),
            "model_tags": sorted(
                map(tuple, sql(uri, "SELECT key, value FROM registered_model_tags WHERE name = :n", n=name))
            ),
            "versions": sorted(
                map(
                    tuple,
                    sql(
                        uri,
                        "SELECT version, current_stage, description, last_updated_time FROM model_versions "
                        "WHERE name = :n",
                        n=name,
                    ),
                )
            ),
            "version_tags": sorted(
                map(
                    tuple,
                    sql(uri, "SELECT version, key, value FROM model_version_tags WHERE name = :n", n=name),
                )
            ),
        }
    return found


def seen(client: MlflowClient, *names: str) -> dict:
    """What a reader sees through MlflowClient."""
    return {
        name: (
            dict(client.get_registered_model(name).tags),
            sorted(
                (v.version, dict(v.tags), v.description)
                for v in client.search_model_versions(f"name = '{name}'")
            ),
        )
        for name in names
    }


class World:
    """Two projects on one server: ``a`` (proj-a) with a baseline a/1 and an attested a/2, ``b``
    (proj-b) with a baseline b/1, all measured on the same benchmark (only the projects differ)."""

    def __init__(self, server, api: Api) -> None:
        self.server, self.api = server, api
        self.client = MlflowClient(server.url, server.url)
        self.a, self.b = unique("proj-a"), unique("proj-b")
        ok(api.create_model(self.a, {T.PROJECT: "proj-a"}))
        ok(api.create_model(self.b, {T.PROJECT: "proj-b"}))
        ok(api.create_version(self.a, log_candidate({"accuracy": 0.70}), baseline_tags("proj-a")))
        ok(api.create_version(self.b, log_candidate({"accuracy": 0.70}), baseline_tags("proj-b")))
        improved = ok(
            api.create_version(
                self.a, log_candidate({"accuracy": 0.75}), improvement_tags(f"{self.a}/1", project="proj-a")
            )
        )["model_version"]
        assert improved["version"] == "2"
        assert {t["key"]: t["value"] for t in improved["tags"]}[T.ATTESTATION_STATUS] == T.STATUS_SIGNED

    def state(self, *more: str) -> dict:
        return state(self.server, self.a, self.b, *more)

    def seen(self, *more: str) -> dict:
        return seen(self.client, self.a, self.b, *more)


@pytest.fixture(scope="module")
def server(hokusai_servers):
    """A dev-mode server (no auth), uvicorn with 2 workers, PostgreSQL."""
    return hokusai_servers.start("postgresql", workers=2)


@pytest.fixture(scope="module")
def world(server):
    with mlflow_env():
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(unique("registry-facts"))
        yield World(server, Api(server))


@pytest.fixture()
def runs(world):
    """Runs of this test are logged on the world's server."""
    with mlflow_env():
        mlflow.set_tracking_uri(world.server.url)
        mlflow.set_registry_uri(world.server.url)
        mlflow.set_experiment(unique("registry-facts"))
        yield


# -- 1. a version's project is its registered model's --------------------------------------------


def test_a_version_of_another_project_than_its_model_is_refused_on_create(world, runs):
    api, a, b = world.api, world.a, world.b
    candidate = log_candidate({"accuracy": 0.80})
    before, shown = world.state(), world.seen()

    # An improvement of b/1 (proj-b) registered as a version of a (proj-a), saying proj-b: its
    # DeltaOne would count in proj-b's contributor totals.
    refused(
        api.create_version(a, candidate, improvement_tags(f"{b}/1", project="proj-b")),
        T.PROJECT,
        "proj-b",
        f"registered model '{a}'",
        "proj-a",
    )
    # A plain Hokusai version (no baseline) of the other project.
    refused(api.create_version(a, candidate, baseline_tags("proj-b")), T.PROJECT, "proj-a")
    assert world.state() == before
    assert world.seen() == shown


def test_a_version_of_another_project_than_its_model_is_refused_on_set_tag(world, runs):
    api, a, b = world.api, world.a, world.b
    # A version with no Hokusai tags yet, then tagged one tag at a time, as set-tag allows.
    version = ok(api.create_version(a, log_candidate({"accuracy": 0.81})))["model_version"]["version"]
    for key, value in improvement_tags(f"{b}/1", project="proj-b").items():
        if key != T.PROJECT:
            ok(api.set_version_tag(a, version, key, value))
    before, shown = world.state(), world.seen()

    refused(api.set_version_tag(a, version, T.PROJECT, "proj-b"), T.PROJECT, "proj-a")
    assert world.state() == before and world.seen() == shown
    assert rows_of(world.server.store_uri, f"{a}/{version}") == (0, 0)
    assert status_in_db(world.server.store_uri, a, version) is None


# -- 2. no cross-project improvements --------------------------------------------------------------


def test_a_baseline_of_another_project_is_refused_on_create(world, runs):
    api, a, b = world.api, world.a, world.b
    candidate = log_candidate({"accuracy": 0.82})
    before, shown = world.state(), world.seen()
    # Everything else is right (same benchmark digest, the metric logged): only the project differs.
    refused(
        api.create_version(a, candidate, improvement_tags(f"{b}/1", project="proj-a")),
        T.BASELINE,
        f"baseline {b}/1 is in project proj-b, not proj-a",
    )
    assert world.state() == before and world.seen() == shown


def test_a_baseline_of_another_project_is_refused_on_set_tag(world, runs):
    api, a, b = world.api, world.a, world.b
    version = ok(api.create_version(a, log_candidate({"accuracy": 0.83})))["model_version"]["version"]
    tags = improvement_tags(f"{b}/1", project="proj-a")
    for key in (T.PROJECT, T.MODEL_TYPE, T.BENCHMARK_METRIC, T.CONTRIBUTORS):
        ok(api.set_version_tag(a, version, key, tags[key]))
    before, shown = world.state(), world.seen()

    # The tag that completes the set names the other project's baseline.
    refused(
        api.set_version_tag(a, version, T.BASELINE, f"{b}/1"),
        T.BASELINE,
        f"baseline {b}/1 is in project proj-b, not proj-a",
    )
    assert world.state() == before and world.seen() == shown
    assert rows_of(world.server.store_uri, f"{a}/{version}") == (0, 0)
    # Its own project's baseline completes it, and it is attested.
    ok(api.set_version_tag(a, version, T.BASELINE, f"{a}/1"))
    assert world.client.get_model_version(a, version).tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED


def test_a_baseline_in_no_project_is_refused(world, runs):
    api, a = world.api, world.a
    loose = unique("loose")
    ok(api.create_model(loose))
    ok(api.create_version(loose, log_candidate({"accuracy": 0.70})))  # a plain MLflow version
    candidate = log_candidate({"accuracy": 0.84})
    before, shown = world.state(loose), world.seen(loose)
    refused(
        api.create_version(a, candidate, improvement_tags(f"{loose}/1", project="proj-a")),
        T.BASELINE,
        "is in no project",
        f"'{loose}'",
    )
    assert world.state(loose) == before and world.seen(loose) == shown


# -- 3. the model's project is final once it has a Hokusai version --------------------------------


def test_the_models_project_cannot_change_or_go_once_it_has_a_hokusai_version(world, runs):
    api, a, b = world.api, world.a, world.b
    before, shown = world.state(), world.seen()
    refused(api.set_model_tag(a, T.PROJECT, "proj-b"), T.PROJECT, "final", "proj-a")
    refused(api.delete_model_tag(a, T.PROJECT), T.PROJECT, "final")
    refused(api.set_model_tag(b, T.PROJECT, "proj-a"), T.PROJECT, "final")  # b has only a baseline
    refused(api.set_model_tag(a, T.PROJECT, "Not A Project"), T.PROJECT)
    assert world.state() == before and world.seen() == shown

    # Writing the value it already has changes nothing and is allowed (the register route does).
    ok(api.set_model_tag(a, T.PROJECT, "proj-a"))
    # A model with no Hokusai version yet may still change or drop its project.
    free = unique("free")
    ok(api.create_model(free, {T.PROJECT: "proj-a"}))
    ok(api.set_model_tag(free, T.PROJECT, "proj-b"))
    ok(api.delete_model_tag(free, T.PROJECT))
    assert T.PROJECT not in world.client.get_registered_model(free).tags


# -- 4. the server's summary on an attested version -----------------------------------------------


def test_a_description_update_keeps_the_servers_summary_on_an_attested_version(world, runs):
    api, a = world.api, world.a
    stored = world.client.get_model_version(a, "2").description
    block = summary.server_block(stored)
    assert block and "DeltaOne" in block
    counts = plugin_counts(world.server.store_uri)

    # Replaced wholesale: the client's text is kept, the server's block is put back as it was.
    ok(api.update_version(a, "2", "Trust me."))
    assert world.client.get_model_version(a, "2").description == f"Trust me.\n\n{block}"
    # A forged block in place of the server's: the stored one is put back.
    forged = f"Better.\n\n{summary.MARKER}\n**Hokusai improvement** over `x/1`: **99 DeltaOne** (9900 bps)."
    ok(api.update_version(a, "2", forged))
    assert world.client.get_model_version(a, "2").description == f"Better.\n\n{block}"
    # Emptied: the block stays.
    ok(api.update_version(a, "2", ""))
    assert world.client.get_model_version(a, "2").description == block
    # The client's own text above the unchanged block is theirs (as HokusaiModelRegistry writes it).
    ok(api.update_version(a, "2", f"Our notes.\n\n{block}"))
    assert world.client.get_model_version(a, "2").description == f"Our notes.\n\n{block}"

    # The audit log recorded what was stored; the plugin's records did not move.
    last = audit_entries(world.server.store_uri, f"model_version:{a}/2")[0]  # newest first
    assert (
        last["action"] == "model_version.update" and last["after"]["description"] == f"Our notes.\n\n{block}"
    )
    after = plugin_counts(world.server.store_uri)
    assert {k: v for k, v in after.items() if k != "audit_seq"} == {
        k: v for k, v in counts.items() if k != "audit_seq"
    }
    # Too long to keep beside the block (MLflow keeps 5000 characters): refused, nothing written.
    before = world.state()
    refused(api.update_version(a, "2", "x" * 4990), "description", "5000")
    assert world.state() == before
    # A baseline (not attested) keeps a description entirely its owner's.
    ok(api.update_version(a, "1", "Anything at all"))
    assert world.client.get_model_version(a, "1").description == "Anything at all"


# -- 5. server tag keys and look-alikes -----------------------------------------------------------


@pytest.mark.parametrize("key", T.SERVER_TAGS)
def test_server_tag_keys_are_refused_on_registered_models(world, runs, key):
    api, a = world.api, world.a
    fresh = unique("fresh")
    before, shown = world.state(fresh), world.seen()
    refused(api.set_model_tag(a, key, "1"), key, "server")
    refused(api.delete_model_tag(a, key), key)
    refused(api.create_model(fresh, {T.PROJECT: "proj-a", key: "1"}), key, "server")
    assert world.state(fresh) == before and world.seen() == shown
    assert world.state(fresh)[fresh]["model"] == []  # not created


@pytest.mark.parametrize("key", LOOKALIKES + UNKNOWN)
def test_lookalike_and_unknown_hokusai_keys_are_refused_on_versions(world, runs, key):
    api, a = world.api, world.a
    plain = ok(api.create_version(a, log_candidate({"accuracy": 0.71})))["model_version"]["version"]
    candidate = log_candidate({"accuracy": 0.85})
    before, shown = world.state(), world.seen()
    # Create path: with a good improvement's tags (the look-alike would ride along) and alone.
    refused(api.create_version(a, candidate, {**improvement_tags(f"{a}/1", project="proj-a"), key: "x"}), key)
    refused(api.create_version(a, candidate, {key: T.STATUS_SIGNED}), key)
    # Set path: on the attested version (its tags are final) and on a plain one.
    for version in ("2", plain):
        refused(api.set_version_tag(a, version, key, T.STATUS_SIGNED), key)
        refused(api.delete_version_tag(a, version, key), key)
    assert world.state() == before and world.seen() == shown


@pytest.mark.parametrize("key", LOOKALIKES + UNKNOWN + [T.BASELINE, T.MODEL_TYPE])
def test_lookalike_unknown_and_version_keys_are_refused_on_registered_models(world, runs, key):
    api, a = world.api, world.a
    fresh = unique("fresh")
    before, shown = world.state(fresh), world.seen()
    refused(api.create_model(fresh, {key: "proj-b"}), key)
    refused(api.set_model_tag(a, key, "proj-b"), key)
    refused(api.delete_model_tag(a, key), key)
    assert world.state(fresh) == before and world.seen() == shown


def test_registered_model_keys_are_refused_on_versions(world, runs):
    api, a = world.api, world.a
    before = world.state()
    refused(api.set_version_tag(a, "1", T.ONCHAIN_MODEL_ID, "7"), T.ONCHAIN_MODEL_ID, "registered-model")
    refused(
        api.set_version_tag(a, "1", T.BENCHMARK_DATASET_DIGEST, "ab" * 32), T.BENCHMARK_DATASET_DIGEST, "run"
    )
    assert world.state() == before


# -- 6. what must keep working --------------------------------------------------------------------


def test_the_readme_plain_client_flow_still_attests(world, runs):
    client = world.client
    name = unique("churn")
    client.create_registered_model(name, tags={T.PROJECT: "churn"})
    baseline = log_candidate({"accuracy": 0.75})
    client.create_model_version(
        name, baseline.uri, baseline.run_id, tags=baseline_tags("churn"), model_id=baseline.model_id
    )
    improved = log_candidate({"accuracy": 0.82})
    version = client.create_model_version(
        name,
        improved.uri,
        improved.run_id,
        tags={**improvement_tags(f"{name}/1", project="churn"), T.PIPELINE_RUN_ID: "pipe-1"},
        model_id=improved.model_id,
    )
    assert version.tags[T.DELTA_ONE_BPS] == "700" and version.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    # The user's own tags stay theirs. The on-chain id is the client's to set on the model, on a
    # server with the chain's EIP-712 domain (tests/integration/test_onchain_attestations.py):
    # this one has none, so it refuses the tag rather than fail the first improvement later.
    client.set_model_version_tag(name, version.version, "team", "growth")
    with pytest.raises(MlflowException) as refusal:
        client.set_registered_model_tag(name, T.ONCHAIN_MODEL_ID, "42")
    assert f"{T.ONCHAIN_MODEL_ID}: " in refusal.value.message and "HOKUSAI_CHAIN_ID" in refusal.value.message
    client.set_registered_model_tag(name, "owner", "ml-platform")
    assert client.get_registered_model(name).tags == {T.PROJECT: "churn", "owner": "ml-platform"}


def test_the_first_hokusai_version_gives_a_project_less_model_its_project(world, runs):
    api, client = world.api, world.client
    name = unique("untagged")
    client.create_registered_model(name)  # as mlflow.register_model does: no tags
    ok(api.create_version(name, log_candidate({"accuracy": 0.70})))  # a plain version first
    baseline = log_candidate({"accuracy": 0.70})
    mlflow.register_model(baseline.uri, name, tags=baseline_tags("churn"))
    assert client.get_registered_model(name).tags == {T.PROJECT: "churn"}
    adopted = [
        e
        for e in audit_entries(world.server.store_uri, f"registered_model:{name}")
        if e["action"] == "registered_model.set_tag"
    ]
    assert [(e["before"], e["after"]) for e in adopted] == [({T.PROJECT: None}, {T.PROJECT: "churn"})]
    # From now on it is the model's project: a version of another one is refused, its own attests.
    refused(api.create_version(name, log_candidate({"accuracy": 0.9}), baseline_tags("proj-b")), T.PROJECT)
    improved = mlflow.register_model(
        log_candidate({"accuracy": 0.76}).uri, name, tags=improvement_tags(f"{name}/2", project="churn")
    )
    assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED and improved.tags[T.DELTA_ONE_BPS] == "600"

    # A model whose first Hokusai version MLflow refuses (a bad tag key) does not keep the project.
    other = unique("untagged")
    client.create_registered_model(other)
    answer = api.create_version(
        other, log_candidate({"accuracy": 0.7}), {**baseline_tags("churn"), "bad key!": "x"}
    )
    assert answer.status == 400 and answer.error()[0] == "INVALID_PARAMETER_VALUE"
    assert client.get_registered_model(other).tags == {}
    assert state(world.server, other)[other]["versions"] == []


def test_the_pipeline_registration_steps_still_work(world, runs):
    import pandas as pd

    from mlflow_hokusai_plugin.pipeline import registration, training
    from mlflow_hokusai_plugin.pipeline.sample import load_sample
    from mlflow_hokusai_plugin.services.datasets import dataframe_digest

    url = world.server.url
    sample = load_sample()
    name = unique("pipeline")
    model = training.fit(training.default_estimator("classification"), sample.baseline, "label")
    base = registration.register_baseline(
        model,
        sample.benchmark,
        model_name=name,
        model_type="classification",
        project="pipe-sec",
        tracking_uri=url,
    )
    assert base["model_id"] == f"{name}/1" and base["project"] == "pipe-sec"
    rows = pd.concat([sample.baseline, sample.contributions[0]], ignore_index=True)
    better = training.fit(training.default_estimator("classification"), rows, "label")
    with mlflow.start_run() as run:  # the candidate's run, as the flow's create_experiment opens it
        pass
    registration.log_candidate_model(run.info.run_id, better, rows, "label", url)
    metrics = training.evaluate(better, sample.benchmark, "label", "classification")
    registration.log_candidate_evaluation(
        run.info.run_id, metrics, sample.benchmark, dataframe_digest(sample.benchmark), url
    )
    result = registration.track_improvement(
        run.info.run_id,
        base["model_id"],
        [{"address": ALICE, "samples": len(sample.contributions[0])}],
        pipeline_run_id="metaflow:HokusaiEvaluationFlow/1",
        tracking_uri=url,
    )
    version = world.client.get_model_version(name, result["version"])
    assert version.tags[T.PROJECT] == "pipe-sec" and version.tags[T.PIPELINE_RUN_ID].startswith("metaflow:")
    assert version.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert world.client.get_registered_model(name).tags[T.PROJECT] == "pipe-sec"


# -- 7. the same rules in MLflow's basic-auth mode ------------------------------------------------


@pytest.fixture(scope="module")
def basic_world(hokusai_servers):
    """A basic-auth server (MLflow's users; its admin) on PostgreSQL, 2 workers, and its world."""
    server, password = hokusai_servers.start_basic_auth("postgresql", workers=2)
    with mlflow_env(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(unique("registry-facts-basic"))
        yield World(server, Api(server, ("admin", password)))


def test_basic_auth_mode_holds_the_same_rules(basic_world):
    world = basic_world
    api, a, b = world.api, world.a, world.b
    assert send(world.server.url, "GET", f"/api/2.0/mlflow/registered-models/get?name={a}").status == 401
    candidate = log_candidate({"accuracy": 0.80})
    before, shown = world.state(), world.seen()

    refused(
        api.create_version(a, candidate, improvement_tags(f"{b}/1", project="proj-b")), T.PROJECT, "proj-a"
    )
    refused(
        api.create_version(a, candidate, improvement_tags(f"{b}/1", project="proj-a")), T.BASELINE, "proj-b"
    )
    refused(api.set_model_tag(a, T.PROJECT, "proj-b"), T.PROJECT, "final")
    refused(api.set_model_tag(a, T.ATTESTATION_STATUS, T.STATUS_SIGNED), T.ATTESTATION_STATUS)
    refused(
        api.set_version_tag(a, "2", "Hokusai.Attestation.Status", T.STATUS_SIGNED),
        "Hokusai.Attestation.Status",
    )
    refused(api.create_version(a, candidate, {"\uff48okusai.baseline": f"{b}/1"}), "\uff48okusai.baseline")
    assert world.state() == before and world.seen() == shown

    block = summary.server_block(world.client.get_model_version(a, "2").description)
    ok(api.update_version(a, "2", "Rewritten by an admin"))
    assert world.client.get_model_version(a, "2").description == f"Rewritten by an admin\n\n{block}"
    actors = {e["actor"] for e in audit_entries(world.server.store_uri, f"model_version:{a}/2")}
    assert "user:admin" in actors
