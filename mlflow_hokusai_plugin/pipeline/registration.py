"""The two Hokusai steps any Metaflow flow can call: ``register_baseline`` and ``track_improvement``.

Both talk to MLflow only through the standard client and the Hokusai server's REST routes, so on a
Hokusai server the server validates the tags and signs the attestation; the flow never holds a key.
Both are idempotent, because Metaflow retries a failed task (``@retry``) and ``resume`` re-runs
steps: a second call finds what the first one registered instead of registering it again. A rerun
of the same evaluation (a new Metaflow run, same baseline, rows in any order and contributors)
finds the improvement registered before through its :func:`improvement_key`, and takes it up once
the server's attestation of it shows this evaluation's contributors and benchmark, so the same rows
are not credited twice.

Inside a step, every run they start carries the Metaflow flow, run id, step and task as run tags
(the plugin's run context provider), so a model version leads back to the run that made it::

    from mlflow_hokusai_plugin.pipeline import register_baseline, track_improvement

    @step
    def register(self):
        self.baseline = register_baseline(self.model, self.benchmark, model_name="churn",
                                          model_type="classification")
        self.next(self.train)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import time
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin.core import contributors as contrib
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import PREDICATE_TYPE as ATTESTATION_PREDICATE_TYPE
from mlflow_hokusai_plugin.core.attestation import payload_sha256, verify_document
from mlflow_hokusai_plugin.core.canonical import canonical_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline import training
from mlflow_hokusai_plugin.services import HokusaiModelRegistry
from mlflow_hokusai_plugin.services.datasets import dataframe_digest
from mlflow_hokusai_plugin.services.hokusai_server import as_validation_error, hokusai_app_client
from mlflow_hokusai_plugin.store import mlflow_facts

DEFAULT_EXPERIMENT = "hokusai_pipeline"
BASELINE_KEY_TAG = "hokusai.pipeline.baseline_key"
# On the candidate's run: the improvement_key it was registered under.
IMPROVEMENT_KEY_TAG = "hokusai.pipeline.improvement_key"
# On the candidate's run, written by ExperimentManager.create_improvement_experiment.
DATA_HASH_TAG = "hokusai.contribution.data_hash"
IDEMPOTENCY_KEY_PREFIX = "hokusai-pipeline-improvement-"
_KEY_HEADER = "Idempotency-Key"  # the server names it first in a refusal of the key
MODEL_PATH = "model"
BENCHMARK_NAME = "benchmark"
# How long a registration refused for a key in use waits for the other run's improvement to show.
CONCURRENT_WAIT_S = 60.0


def baseline_key(
    *,
    model_name: str,
    model_type: str,
    benchmark_digest: str,
    source: str,
    benchmark_metric: str = "",
    project: str = "",
) -> str:
    """What makes two baselines the same one: the model, its type and the benchmark it is measured on.

    >>> len(baseline_key(model_name="m", model_type="classification", benchmark_digest="ab", source="s"))
    64
    """
    identity = {
        "model_name": model_name,
        "model_type": model_type,
        "benchmark_digest": benchmark_digest,
        "source": source,
        "benchmark_metric": benchmark_metric,
        "project": project,
    }
    return sha256_hex(canonical_json(identity))


def improvement_key(
    *,
    baseline_id: str,
    data_hash: str,
    contributors: Sequence[Mapping[str, Any]],
    benchmark_digest: str,
    benchmark_metric: str,
) -> str:
    """What makes two improvements the same one: the same rows, credited to the same contributors
    with the same shares, measured against the same baseline on the same benchmark and metric.
    Never a time or a run id: a rerun of one evaluation gets the same key.

    ``data_hash`` is the :func:`rows_digest` of the cleaned contribution: the rows count as a set
    (shuffled rows, or the contributors' files in another order, are the same rows). The
    contributors count as a set too (their order in a file is not part of the contribution); each
    keeps the share form it was given in (``weight_bps`` and/or ``samples``), so other shares are
    another evaluation.

    The key is the pipeline's: clients compute it, and the server does not enforce that one
    baseline credits one set of rows once. A contributor who changes a single row makes another
    evaluation, which is credited on its own merits (measured against the same baseline); a check of
    (baseline, rows) by the server is future work. A match found under the key is taken up only if
    the server attested it with this evaluation's facts (see :func:`find_improvement`).

    >>> alice = {"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "samples": 2}
    >>> bob = {"address": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", "samples": 1}
    >>> same = dict(baseline_id="churn/1", data_hash="ab", benchmark_digest="cd", benchmark_metric="rmse")
    >>> key = improvement_key(**same, contributors=[alice, bob])
    >>> key == improvement_key(**same, contributors=[bob, alice]), len(key)
    (True, 64)
    """
    identity = {
        "baseline_id": baseline_id,
        "data_hash": data_hash,
        "contributors": _contributor_identity(contributors),
        "benchmark_digest": benchmark_digest,
        "benchmark_metric": benchmark_metric,
    }
    return sha256_hex(canonical_json(identity))


def rows_digest(frame: Any) -> str:
    """sha256 hex of a DataFrame's rows as a set: neither the order of its rows nor of its columns
    changes it; any changed value, column name or row (duplicates included) does.

    Each row is written as CSV (as :func:`dataframe_digest` writes values, so it depends on the
    values only, not on pandas' or pyarrow's version), the columns in the order of their names;
    the digest covers the column names and the sorted rows. It is the ``data_hash`` of an
    :func:`improvement_key`; the manifest's ``data_hash`` stays the sha256 of the file as written.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})
    >>> rows_digest(rows) == rows_digest(rows.iloc[::-1][["label", "x"]])
    True
    >>> rows_digest(rows) == rows_digest(rows.assign(x=[1.0, 3.0]))
    False
    """
    columns = sorted(frame.columns, key=str)
    reader = csv.reader(io.StringIO(frame[columns].to_csv(index=False), newline=""))
    header = next(reader, [])
    digest = hashlib.sha256(canonical_json({"columns": header, "rows": len(frame)}) + b"\n")
    # One JSON list of strings per line: no value can be taken for a separator.
    for row in sorted(reader):
        digest.update(canonical_json(row) + b"\n")
    return digest.hexdigest()


def idempotency_key(key: str) -> str:
    """The ``Idempotency-Key`` header sent with the registration of the improvement ``key`` names."""
    return IDEMPOTENCY_KEY_PREFIX + key


def find_improvement(
    tracking_uri: str,
    baseline_id: str,
    key: str | Sequence[str],
    *,
    contributors: Sequence[Mapping[str, Any]],
    benchmark_digest: str,
    benchmark_metric: str,
) -> dict | None:
    """The improvement of ``baseline_id`` registered before under ``key`` (``model_id``,
    ``run_id``), or None. Read-only.

    ``key`` is the evaluation's :func:`improvement_key`, or several: its key first, then the keys
    earlier versions of the pipeline gave the same evaluation. A version whose attestation failed
    is not a result and is skipped. Versions registered before the key was recorded on their runs
    are recognised by the facts the key is made of (their tags and their run's), so registries
    older than the key do not credit the same rows again either.

    The key on a run is only a hint: run tags are writable by any client, so anyone could put
    this evaluation's key on the run of an improvement crediting someone else. On a Hokusai server
    a version found by its key is therefore taken up only if the server attested it with this
    evaluation's facts: an improvement of exactly ``baseline_id``, its attestation signed by the
    server's attester, naming the same ``contributors`` with the same shares and the same
    benchmark metric and dataset digest (:func:`_attested_as`); otherwise it is passed over, and
    the evaluation registers its own improvement. Against a plain MLflow tracking server (or a
    local store) there is no server to vouch for anything, every tag is a client's, and a key match
    is taken as it is.
    """
    keys = {key} if isinstance(key, str) else set(key)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    server = hokusai_app_client(tracking_uri)
    versions = client.search_model_versions(f"tags.`{T.BASELINE}` = '{_quoted(baseline_id)}'")
    # The first registration is the one that counts: later duplicates (older plugins) are not.
    for version in sorted(versions, key=lambda v: (v.creation_timestamp or 0, v.name, int(v.version))):
        tags = version.tags or {}
        if tags.get(T.BASELINE) != baseline_id or tags.get(T.ATTESTATION_STATUS) == T.STATUS_FAILED:
            continue
        if not version.run_id or _recorded_improvement_key(client, version) not in keys:
            continue
        if server is not None and not _attested_as(
            server,
            version,
            baseline_id=baseline_id,
            contributors=contributors,
            benchmark_digest=benchmark_digest,
            benchmark_metric=benchmark_metric,
        ):
            continue  # someone else's improvement carrying this evaluation's key: not this one
        return {"model_id": T.format_model_id(version.name, version.version), "run_id": version.run_id}
    return None


def log_benchmark(benchmark: Any, digest: str, name: str = BENCHMARK_NAME) -> None:
    """Record on the active run which benchmark its metrics were measured on (tag and dataset input)."""
    mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, digest)
    # MLflow's dataset digests are at most 36 characters; the tag keeps the full sha256.
    dataset = mlflow.data.from_pandas(benchmark, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=T.BENCHMARK_INPUT_CONTEXT)


def register_baseline(
    model: Any,
    benchmark: Any,
    *,
    model_name: str,
    model_type: str,
    label_column: str = "label",
    benchmark_metric: str | None = None,
    project: str = "default",
    source: str | None = None,
    experiment_name: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    dry_run: bool = False,
) -> dict:
    """Measure a scikit-learn baseline on the benchmark and register it, or reuse the earlier one.

    ``source`` names where the model came from (a file digest, a data digest and trainer); by
    default it is the digest of the pickled model. The same ``model_name``, ``model_type``,
    benchmark and source find the version an earlier call registered. Returns the registry's
    description of the version plus ``metrics``, ``benchmark_dataset_digest`` and ``reused``.

    ``dry_run``: only look; nothing is logged or registered. ``model_id`` is then the version a
    real call would reuse, or None when it would register a new one.
    """
    model_type = T.check_model_type(model_type)
    benchmark_metric = benchmark_metric or training.default_benchmark_metric(model_type)
    metrics = training.evaluate(model, benchmark, label_column, model_type)
    if benchmark_metric not in metrics:
        raise ValidationError("benchmark_metric", f"'{benchmark_metric}' is not among {sorted(metrics)}")
    digest = dataframe_digest(benchmark)
    key = baseline_key(
        model_name=model_name,
        model_type=model_type,
        benchmark_digest=digest,
        source=source or sha256_hex(pickle.dumps(model)),
        benchmark_metric=benchmark_metric,
        project=project,
    )
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    registry = HokusaiModelRegistry(tracking_uri)
    found = _earlier_baseline(registry.client, experiment_name, key)
    extra = {"metrics": metrics, "benchmark_dataset_digest": digest}
    if found is not None and found[1] is not None:
        return {**registry.describe(found[1]), **extra, "reused": True}
    if dry_run:
        return {"model_id": None, "run_id": found[0] if found else None, **extra, "reused": False}
    if found is not None:
        # An earlier call logged the run but stopped before registering it: register that run.
        model_uri = f"runs:/{found[0]}/{MODEL_PATH}"
    else:
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.set_experiment(experiment_name)
        tags = {BASELINE_KEY_TAG: key, T.PROJECT: project, T.MODEL_TYPE: model_type}
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="baseline", tags=tags):
            features, _ = training.split(benchmark, label_column)
            info = mlflow.sklearn.log_model(model, name=MODEL_PATH, input_example=features.iloc[:2])
            mlflow.log_metrics(metrics)
            log_benchmark(benchmark, digest)
        model_uri = info.model_uri
    registered = registry.register_baseline(
        model_uri,
        model_type,
        {"project": project, "benchmark_metric": benchmark_metric},
        name=model_name,
    )
    return {**registered, **extra, "reused": False}


def track_improvement(
    run_id: str,
    baseline_id: str,
    contributors: Sequence[dict],
    *,
    pipeline_run_id: str | None = None,
    model_uri: str | None = None,
    model_name: str | None = None,
    tracking_uri: str | None = None,
    idempotency_key: str | None = None,
    benchmark_digest: str | None = None,
    benchmark_metric: str | None = None,
) -> dict:
    """Register the model logged in ``run_id`` as an improvement of ``baseline_id``.

    The run must have logged the benchmark metric on the same benchmark as the baseline (see
    :func:`log_benchmark`); ``model_uri`` is the model it logged (default ``runs:/<run_id>/model``);
    ``contributors`` are ``hokusai.contributors`` entries. On a Hokusai
    server the server computes the deltas and signs the attestation. A version already registered
    from this run against this baseline is returned as it is (``reused``). Returns what
    :meth:`HokusaiModelRegistry.register_improved_model` returns, plus ``reused``.

    ``idempotency_key`` (an :func:`improvement_key`) names the evaluation: an improvement of
    ``baseline_id`` registered under it before, from any run, is returned instead (``reused``), and
    on a Hokusai server the registration carries it as its ``Idempotency-Key``, so that two runs of
    one evaluation at the same time register it once. On a Hokusai server, a version is taken up
    only if the server attested it with this evaluation's facts (:func:`find_improvement`):
    ``contributors``, ``benchmark_metric`` (default: the baseline's) and ``benchmark_digest``
    (default: the one ``run_id`` logged), as this registration would send them. A signed version
    registered from ``run_id`` that credits anything else is refused (:class:`ValidationError`):
    the run is someone else's improvement now, and registering it again would be a second one.
    """
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    registry = HokusaiModelRegistry(tracking_uri)
    evaluation = None  # what this registration would have the server attest, once needed
    for version in registry.client.search_model_versions(f"run_id = '{_quoted(run_id)}'"):
        tags = version.tags or {}
        if tags.get(T.BASELINE) == baseline_id:
            model_id = T.format_model_id(version.name, version.version)
            if tags.get(T.ATTESTATION_STATUS) == T.STATUS_FAILED:
                # Registered by an earlier attempt whose facts could not be attested: not a result.
                raise ValidationError(
                    "run_id",
                    f"{model_id}, registered from run {run_id}, failed attestation; see the server log",
                )
            server = registry.server
            if server is not None and tags.get(T.ATTESTATION_STATUS) == T.STATUS_SIGNED:
                evaluation = evaluation or _evaluation_facts(
                    registry, run_id, baseline_id, contributors, benchmark_digest, benchmark_metric
                )
                if not _attested_as(server, version, baseline_id=baseline_id, **evaluation):
                    raise ValidationError(
                        "run_id",
                        f"{model_id}, registered from run {run_id} against {baseline_id}, is attested "
                        "with other contributors, shares or benchmark than this registration's; it "
                        "is not reused and the run is not registered again (train a new run)",
                    )
            return {**registry.get_improvement(model_id), "reused": True}
    if idempotency_key:
        evaluation = evaluation or _evaluation_facts(
            registry, run_id, baseline_id, contributors, benchmark_digest, benchmark_metric
        )
        earlier = find_improvement(tracking_uri, baseline_id, idempotency_key, **evaluation)
        if earlier is not None:
            return {**registry.get_improvement(earlier["model_id"]), "reused": True}
        # Recorded before registering: a rerun then recognises this run's version by its key.
        registry.client.set_tag(run_id, IMPROVEMENT_KEY_TAG, idempotency_key)
        server = registry.server
        if server is not None:
            return _register_on_server(
                registry,
                server,
                run_id=run_id,
                baseline_id=baseline_id,
                contributors=contributors,
                model_uri=model_uri or f"runs:/{run_id}/{MODEL_PATH}",
                model_name=model_name,
                pipeline_run_id=pipeline_run_id,
                key=idempotency_key,
                benchmark_digest=evaluation["benchmark_digest"],
                benchmark_metric=evaluation["benchmark_metric"],
            )
    result = registry.register_improved_model(
        model_uri or f"runs:/{run_id}/{MODEL_PATH}",
        baseline_id,
        contributors=list(contributors),
        name=model_name,
        pipeline_run_id=pipeline_run_id,
    )
    return {**result, "reused": False}


def log_candidate_model(run_id: str, model: Any, rows: Any, label_column: str, tracking_uri: str) -> str:
    """Log the retrained model into the candidate's run (opened by ``create_experiment``)."""
    mlflow.set_tracking_uri(tracking_uri)
    features, _ = training.split(rows, label_column)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(model, name=MODEL_PATH, input_example=features.iloc[:2])
        mlflow.log_params({"training_rows": len(rows), "estimator": type(model).__name__})
    return info.model_uri


def log_candidate_evaluation(
    run_id: str, metrics: dict[str, float], benchmark: Any, benchmark_digest: str, tracking_uri: str
) -> None:
    """Log the candidate's benchmark metrics, and which benchmark, into its run."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        log_benchmark(benchmark, benchmark_digest)


def check_registered_baseline(
    tracking_uri: str, baseline_id: str, benchmark_digest: str, metric: str, model_type: str
) -> dict:
    """A baseline given by id: measured on this benchmark, with this metric, of this model type."""
    registry = HokusaiModelRegistry(tracking_uri)
    name, version = T.parse_model_id(baseline_id, "baseline_model")
    found = mlflow_facts.get_version(registry.client, name, version, "baseline_model")
    facts = mlflow_facts.run_facts(registry.client, found.run_id)
    if facts.dataset_digest != benchmark_digest:
        raise ValidationError(
            "baseline_model",
            f"{baseline_id} was measured on benchmark data {facts.dataset_digest or '(none recorded)'}, "
            f"this run's benchmark is {benchmark_digest}; pass its model URI (models:/{baseline_id}) "
            "to have the pipeline measure and register it on this benchmark",
        )
    if metric not in facts.metrics:
        raise ValidationError("baseline_model", f"the source run of {baseline_id} did not log '{metric}'")
    tags = found.tags or {}
    # The server measures DeltaOne on the baseline's own metric: a different one here would mislead.
    for tag, wanted, parameter in (
        (T.BENCHMARK_METRIC, metric, "benchmark_metric"),
        (T.MODEL_TYPE, model_type, "model_type"),
    ):
        if tags.get(tag) and tags[tag] != wanted:
            raise ValidationError(parameter, f"{baseline_id} has {tag} '{tags[tag]}', not '{wanted}'")
    return {**registry.describe(baseline_id), "metrics": facts.metrics, "reused": True}


def _earlier_baseline(client: MlflowClient, experiment_name: str, key: str) -> tuple[str, str | None] | None:
    """(run id, model id or None) of the baseline an earlier call logged under ``key``."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        # A run that died half-way (no model logged yet) is not FINISHED: it is not reused.
        f"tags.`{BASELINE_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            return run.info.run_id, T.format_model_id(version.name, version.version)
    return (runs[0].info.run_id, None) if runs else None


def _register_on_server(
    registry: HokusaiModelRegistry,
    server: Any,
    *,
    run_id: str,
    baseline_id: str,
    contributors: Sequence[dict],
    model_uri: str,
    model_name: str | None,
    pipeline_run_id: str | None,
    key: str,
    benchmark_digest: str,
    benchmark_metric: str,
) -> dict:
    """``POST /models/register`` with the evaluation's ``Idempotency-Key``.

    The server keeps one answer per key (for a day) and refuses the key for a different request.
    Another run of the same evaluation registering at the same moment sends a different request
    (its own run and model), so the later one is refused, and then finds the first one's version
    instead of registering the rows again (only one attested with this evaluation's facts:
    :func:`find_improvement`).
    """
    base_name, base_version = T.parse_model_id(baseline_id, "baseline_id")
    baseline = mlflow_facts.get_version(registry.client, base_name, base_version, "baseline_id")
    baseline_tags = baseline.tags or {}
    metric = baseline_tags.get(T.BENCHMARK_METRIC)
    if not metric:
        raise ValidationError("benchmark_metric", f"the baseline {baseline_id} names none")
    fields = {
        "name": model_name or base_name,
        "model_uri": model_uri,
        "project": T.check_project(baseline_tags.get(T.PROJECT) or "default"),
        "model_type": T.check_model_type(baseline_tags.get(T.MODEL_TYPE), "model_type"),
        "benchmark_metric": metric,
        "baseline": baseline_id,
        "contributors": [dict(entry) for entry in contributors],
    }
    if pipeline_run_id:
        fields["pipeline_run_id"] = pipeline_run_id
    deadline = time.monotonic() + CONCURRENT_WAIT_S
    while True:
        try:
            answer = server.register_model(idempotency_key=idempotency_key(key), **fields)
            return {**registry.get_improvement(answer["model_id"]), "reused": False}
        except MlflowException as exc:
            message = str((getattr(exc, "json", None) or {}).get("message") or exc.message)
            if exc.error_code == "INVALID_PARAMETER_VALUE" and message.startswith(_KEY_HEADER):
                break  # the key belongs to another run's request
            # RESOURCE_CONFLICT: this very request is still running (a retry of ours): ask again.
            if exc.error_code != "RESOURCE_CONFLICT" or time.monotonic() >= deadline:
                raise as_validation_error(exc) from None
        time.sleep(2.0)
    while True:
        earlier = find_improvement(
            registry.tracking_uri,
            baseline_id,
            key,
            contributors=contributors,
            benchmark_digest=benchmark_digest,
            benchmark_metric=benchmark_metric,
        )
        if earlier is not None:
            return {**registry.get_improvement(earlier["model_id"]), "reused": True}
        if time.monotonic() >= deadline:
            raise ValidationError(
                "contributed_data",
                f"this evaluation (improvement key {key}) is being or was registered by another run, whose "
                f"improvement of {baseline_id} cannot be found (still registering or its attestation "
                "still pending, deleted since, or a request under this key that credits someone else: "
                "the server keeps a key for a day); run again later",
            )
        time.sleep(2.0)


def _evaluation_facts(
    registry: HokusaiModelRegistry,
    run_id: str,
    baseline_id: str,
    contributors: Sequence[Mapping[str, Any]],
    benchmark_digest: str | None,
    benchmark_metric: str | None,
) -> dict:
    """What registering ``run_id`` against ``baseline_id`` would have the server attest: the
    contributors, the baseline's benchmark metric and the benchmark digest the run logged."""
    if benchmark_metric is None:
        name, version = T.parse_model_id(baseline_id, "baseline_id")
        baseline = mlflow_facts.get_version(registry.client, name, version, "baseline_id")
        benchmark_metric = (baseline.tags or {}).get(T.BENCHMARK_METRIC) or ""
    if benchmark_digest is None:
        benchmark_digest = mlflow_facts.run_facts(registry.client, run_id).dataset_digest or ""
    return {
        "contributors": [dict(entry) for entry in contributors],
        "benchmark_digest": benchmark_digest,
        "benchmark_metric": benchmark_metric,
    }


def _attested_as(
    server: Any,
    version: ModelVersion,
    *,
    baseline_id: str,
    contributors: Sequence[Mapping[str, Any]],
    benchmark_digest: str,
    benchmark_metric: str,
) -> bool:
    """Whether the Hokusai server attested ``version`` as this evaluation's improvement.

    Only what no client can write counts: the version's ``hokusai.attestation.*`` and
    ``hokusai.attester`` tags (the server's), the attestation document the server serves under
    that id (the sha256 of its signed payload), its DSSE signature, by that attester, checked here
    with eth-account (:func:`verify_document`), and the signed Statement, which must be about this
    version and its run, improve exactly ``baseline_id`` on ``benchmark_metric`` and
    ``benchmark_digest``, and credit the same checksummed addresses with the same ``weight_bps``
    as ``contributors`` (as the server derives them). The version's ``hokusai.contributors`` tag,
    final once attested, must give the same shares in the same form (``samples`` too). Anything
    missing, pending, unreadable or different is False: the caller then registers its own.
    """
    tags = version.tags or {}
    model_id = T.format_model_id(version.name, version.version)
    attestation_id = tags.get(T.ATTESTATION_ID)
    if tags.get(T.BASELINE) != baseline_id or tags.get(T.ATTESTATION_STATUS) != T.STATUS_SIGNED:
        return False
    if not attestation_id or not tags.get(T.ATTESTER):
        return False
    try:
        wanted = _contributor_identity(contributors)
        parsed = contrib.parse_contributors([dict(entry) for entry in contributors])
        shares = sorted((entry["address"], entry["weight_bps"]) for entry in parsed)
        if _contributor_identity(json.loads(tags.get(T.CONTRIBUTORS) or "null")) != wanted:
            return False
    except (ValueError, TypeError, ValidationError):
        return False
    try:
        document = server.get_attestation(attestation_id)
        if payload_sha256(document["dsse"]) != attestation_id:
            return False  # not the document the server's tag names
        # Signed by the attester the server recorded when it attested the version (its key then:
        # still the right one after the server's key is rotated).
        verdict = verify_document(document, attesters=[tags[T.ATTESTER]])
        if not verdict.valid or verdict.statement is None:
            return False
        statement = verdict.statement
        predicate = statement["predicate"]
        attested = sorted((entry["address"], entry["weight_bps"]) for entry in predicate["contributors"])
        return (
            statement.get("predicateType") == ATTESTATION_PREDICATE_TYPE
            and predicate["model"]["id"] == model_id
            and predicate["model"]["run_id"] == version.run_id
            and predicate["baseline"]["model_id"] == baseline_id
            and predicate["benchmark"]["metric"] == benchmark_metric
            and predicate["benchmark"]["dataset_digest"] == benchmark_digest
            and attested == shares
        )
    except (MlflowException, ValidationError, ValueError, TypeError, KeyError, AttributeError):
        return False


def _contributor_identity(contributors: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The contributors as the server validates them, each in the share form given, by address."""
    entries = [dict(entry) for entry in contributors]
    parsed = contrib.parse_contributors(entries)  # refused here as the server would refuse them
    identity = [
        {"address": checked["address"], **{k: given[k] for k in ("weight_bps", "samples") if k in given}}
        for checked, given in zip(parsed, entries, strict=True)
    ]
    return sorted(identity, key=lambda entry: entry["address"])


def _recorded_improvement_key(client: MlflowClient, version: ModelVersion) -> str | None:
    """The improvement key of a registered improvement: the one recorded on its run, else the one
    its recorded facts make (versions registered before the key was recorded), else None."""
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return None  # its run was deleted: nothing to compare
    tags, run_tags = version.tags or {}, run.data.tags
    if run_tags.get(IMPROVEMENT_KEY_TAG):
        return run_tags[IMPROVEMENT_KEY_TAG]
    facts = (
        run_tags.get(DATA_HASH_TAG),
        run_tags.get(T.BENCHMARK_DATASET_DIGEST),
        tags.get(T.CONTRIBUTORS),
        tags.get(T.BENCHMARK_METRIC),
    )
    if not all(facts):
        return None
    data_hash, digest, contributors, metric = facts
    try:
        return improvement_key(
            baseline_id=tags[T.BASELINE],
            data_hash=data_hash,
            contributors=json.loads(contributors),
            benchmark_digest=digest,
            benchmark_metric=metric,
        )
    except (ValueError, ValidationError):
        return None  # contributors the server would not accept now: not this evaluation


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")
