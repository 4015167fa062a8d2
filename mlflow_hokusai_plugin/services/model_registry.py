"""``HokusaiModelRegistry``: baselines, improved models and their lineage in the MLflow registry.

Every fact is written where the MLflow UI shows it: ``hokusai.*`` model-version tags (see
``core/tags.py``) and a Markdown summary in the version's description. The attestation document is
stored as an artifact of the improved version's source run, under ``hokusai/attestations/``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.core import contributors as contrib
from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.issuance import OnchainTarget, attest_improvement
from mlflow_hokusai_plugin.core.metrics import compute_improvement
from mlflow_hokusai_plugin.core.mint_request import DEFAULT_SIGNATURE_TTL
from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.runtime.signer import Signer
from mlflow_hokusai_plugin.services.hokusai_server import as_validation_error, hokusai_app_client
from mlflow_hokusai_plugin.store import mlflow_facts

ATTESTATION_ARTIFACT_DIR = "hokusai/attestations"
DEFAULT_EXPERIMENT = "hokusai_model_registry"
DEFAULT_PROJECT = "default"


class HokusaiModelRegistry:
    """The unified Hokusai model registry, on top of any MLflow tracking server.

    Example::

        registry = HokusaiModelRegistry(tracking_uri="http://127.0.0.1:5000")
        base = registry.register_baseline("runs:/<run>/model", "classification",
                                          {"project": "churn", "benchmark_metric": "accuracy"})
        better = registry.register_improved_model("runs:/<run2>/model", base["model_id"],
                                                  contributor="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        better["delta_one_bps"], better["attestation"]["id"]
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        signer: Signer | None = None,
        experiment_name: str = DEFAULT_EXPERIMENT,
    ) -> None:
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=registry_uri or self.tracking_uri
        )
        self.experiment_name = experiment_name
        self._signer = signer

    @property
    def server(self) -> Any | None:
        """The Hokusai server's app client when the tracking server is one (it then attests)."""
        return hokusai_app_client(self.tracking_uri)

    @property
    def signer(self) -> Signer:
        """The local attester (``HOKUSAI_ATTESTER_KEY`` or keystore unless one was given)."""
        if self._signer is None:
            self._signer = Signer.from_env()
        return self._signer

    # -- registration -------------------------------------------------------------------------

    def register_baseline(
        self,
        model: Any,
        model_type: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        project: str | None = None,
        benchmark_metric: str | None = None,
    ) -> dict:
        """Register a baseline model version.

        ``model`` is an MLflow model URI, a ``ModelInfo``/``LoggedModel``, or a scikit-learn /
        pyfunc object (logged in a new run with ``metadata["metrics"]`` as its metrics).
        ``metadata`` may carry ``project``, ``benchmark_metric``, ``name``, ``metrics``,
        ``dataset_digest`` and ``description``; keyword arguments win over it.
        """
        metadata = dict(metadata or {})
        model_type = T.check_model_type(model_type)
        project = T.check_project(project or metadata.get("project") or DEFAULT_PROJECT)
        benchmark_metric = benchmark_metric or metadata.get("benchmark_metric")
        name = name or metadata.get("name") or f"hokusai_{model_type}"
        tags = {T.PROJECT: project, T.MODEL_TYPE: model_type}
        if self.server is None:
            # A Hokusai server writes its own status tags and refuses them from clients.
            tags[T.ATTESTATION_STATUS] = T.STATUS_NOT_APPLICABLE
        if benchmark_metric:
            tags[T.BENCHMARK_METRIC] = benchmark_metric
        source_uri = self._model_uri(model, metadata)
        version = self._create_version(name, source_uri, tags, project)
        if benchmark_metric:
            facts = mlflow_facts.run_facts(self.client, version.run_id)
            if benchmark_metric not in facts.metrics:
                # Checked after creation because a runs:/ URI only names its run once registered;
                # a baseline without its benchmark metric could never be improved upon.
                self.client.delete_model_version(name, version.version)
                raise ValidationError(
                    "benchmark_metric",
                    f"the source run {facts.run_id} of the baseline did not log metric '{benchmark_metric}'",
                )
        if self.server is None:
            mlflow_facts.version_artifact_digest(self.client, version)
        description = summary.baseline_markdown(
            project=project, model_type=model_type, benchmark_metric=benchmark_metric
        )
        self._set_description(version, metadata.get("description"), description)
        return self._describe(self.client.get_model_version(name, version.version))

    def register_improved_model(
        self,
        model: Any,
        baseline_id: str,
        delta_metrics: Mapping[str, float] | None = None,
        contributor: str | Mapping[str, Any] | None = None,
        *,
        contributors: Any = None,
        name: str | None = None,
        benchmark_metric: str | None = None,
        pipeline_run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict:
        """Register an improved version linked to ``baseline_id`` and attest the improvement.

        The deltas come from the metrics that the two source runs really logged. ``delta_metrics``
        (the older API) is accepted: when the new run logged the metrics it must agree with them;
        when it logged none (a model object), the new metrics are the baseline's plus these deltas
        and the attestation records that they were declared, not measured.

        ``contributor`` is one address (weight 10000 bps) or one ``{"address", ...}`` entry;
        ``contributors`` is the full list (or its JSON), as in the ``hokusai.contributors`` tag.
        """
        metadata = dict(metadata or {})
        base_name, base_version = T.parse_model_id(baseline_id, "baseline_id")
        baseline = mlflow_facts.get_version(self.client, base_name, base_version, "baseline_id")
        base_tags = baseline.tags or {}
        project = T.check_project(metadata.get("project") or base_tags.get(T.PROJECT) or DEFAULT_PROJECT)
        model_type = T.check_model_type(
            metadata.get("model_type") or base_tags.get(T.MODEL_TYPE), "model_type"
        )
        benchmark_metric = (
            benchmark_metric or metadata.get("benchmark_metric") or base_tags.get(T.BENCHMARK_METRIC)
        )
        if not benchmark_metric:
            raise ValidationError("benchmark_metric", f"not given and the baseline {baseline_id} names none")
        entries = contrib.parse_contributors(_contributor_entries(contributor, contributors))
        name = name or metadata.get("name") or base_name
        baseline_facts = mlflow_facts.run_facts(self.client, baseline.run_id)

        declared = dict(delta_metrics or {})
        source_uri = self._model_uri(
            model,
            metadata,
            declared_metrics=lambda: _declared_metrics(baseline_facts.metrics, declared) if declared else {},
        )
        tags = {
            T.PROJECT: project,
            T.MODEL_TYPE: model_type,
            T.BASELINE: baseline_id,
            T.BENCHMARK_METRIC: benchmark_metric,
            T.CONTRIBUTORS: json.dumps(_tag_entries(entries)),
        }
        if self.server is None:
            tags[T.ATTESTATION_STATUS] = T.STATUS_PENDING
        if pipeline_run_id:
            tags[T.PIPELINE_RUN_ID] = pipeline_run_id
        version = self._create_version(name, source_uri, tags, project)
        if self.server is not None:
            return self._attested_by_server(version, declared, metadata)
        try:
            return self._attest(
                version, baseline, baseline_facts, entries, benchmark_metric, declared, metadata
            )
        except ValidationError:
            # The improvement cannot be attested (bad metrics, digests differ): nothing half-written.
            self.client.delete_model_version(version.name, version.version)
            raise
        except Exception:
            self.client.set_model_version_tag(
                version.name, version.version, T.ATTESTATION_STATUS, T.STATUS_FAILED
            )
            raise

    # -- lineage ------------------------------------------------------------------------------

    def get_model_lineage(self, model_id: str) -> list[dict]:
        """The chain from the root baseline down to ``model_id`` (root first).

        A bare registered-model name returns every version of that model in version order, as the
        older API did.
        """
        if "/" not in model_id:
            versions = self.client.search_model_versions(f"name = '{_quote(model_id)}'")
            return [self._describe(v) for v in sorted(versions, key=lambda v: int(v.version))]
        chain: list[dict] = []
        seen: set[str] = set()
        current: str | None = model_id
        while current:
            if current in seen:
                raise ValidationError("model_id", f"lineage of {model_id} loops back to {current}")
            seen.add(current)
            name, version = T.parse_model_id(current)
            found = mlflow_facts.get_version(self.client, name, version)
            chain.append(self._describe(found))
            current = (found.tags or {}).get(T.BASELINE)
        return list(reversed(chain))

    def get_attestation(self, model_id: str) -> dict | None:
        """The attestation document stored for an improved version, or None for a baseline."""
        name, version = T.parse_model_id(model_id)
        found = mlflow_facts.get_version(self.client, name, version)
        attestation_id = (found.tags or {}).get(T.ATTESTATION_ID)
        if not attestation_id or not found.run_id:
            return None
        return mlflow.artifacts.load_dict(
            f"runs:/{found.run_id}/{ATTESTATION_ARTIFACT_DIR}/{attestation_id}.json"
        )

    def describe(self, model_id: str) -> dict:
        """One version as the registration methods describe it (``model_id``, tags, run id ...)."""
        name, version = T.parse_model_id(model_id)
        return self._describe(mlflow_facts.get_version(self.client, name, version))

    def get_improvement(self, model_id: str, directions: Mapping[str, str] | None = None) -> dict:
        """An improved version as :meth:`register_improved_model` returned it.

        The deltas are recomputed from the two source runs; ``attestation``, ``contributors``
        and ``improvement`` are None while the attestation is not signed (pending or failed).
        """
        name, version = T.parse_model_id(model_id)
        found = mlflow_facts.get_version(self.client, name, version)
        tags = found.tags or {}
        if T.BASELINE not in tags:
            raise ValidationError("model_id", f"{model_id} is not an improved model (it has no baseline)")
        base_name, base_version = T.parse_model_id(tags[T.BASELINE], T.BASELINE)
        baseline = mlflow_facts.get_version(self.client, base_name, base_version, T.BASELINE)
        result = self._describe(found)
        attestation_id = tags.get(T.ATTESTATION_ID)
        if tags.get(T.ATTESTATION_STATUS) != T.STATUS_SIGNED or not attestation_id:
            # Pending: the server will complete it (reconcile); failed: its log says why.
            result.update(attestation=None, improvement=None, contributors=None, delta_metrics=None)
            return result
        server = self.server
        document = server.get_attestation(attestation_id) if server else self.get_attestation(model_id)
        improvement = compute_improvement(
            mlflow_facts.run_facts(self.client, baseline.run_id).metrics,
            mlflow_facts.run_facts(self.client, found.run_id).metrics,
            tags.get(T.BENCHMARK_METRIC),
            directions=directions,
        )
        result.update(
            delta_metrics={k: d["absolute_delta"] for k, d in improvement["metric_deltas"].items()},
            improvement=improvement,
            contributors=document_predicate(document)["contributors"],
            attestation=document,
        )
        return result

    # -- internals ----------------------------------------------------------------------------

    def _attest(
        self,
        version: ModelVersion,
        baseline: ModelVersion,
        baseline_facts: mlflow_facts.RunFacts,
        entries: list[dict],
        benchmark_metric: str,
        declared: dict[str, float],
        metadata: dict[str, Any],
    ) -> dict:
        model_id = T.format_model_id(version.name, version.version)
        baseline_id = T.format_model_id(baseline.name, baseline.version)
        facts = mlflow_facts.run_facts(self.client, version.run_id)
        # Lenient where one side has no digest (models logged as objects); the server plugin is strict.
        digests = {baseline_facts.dataset_digest, facts.dataset_digest} - {None}
        if len(digests) > 1:
            raise ValidationError(
                "benchmark.dataset_digest",
                f"{model_id} was measured on benchmark data {facts.dataset_digest}, "
                f"its baseline {baseline_id} on {baseline_facts.dataset_digest}",
            )
        tags = version.tags or {}
        attested = attest_improvement(
            self.signer,
            model_id=model_id,
            baseline_model_id=baseline_id,
            benchmark_metric=benchmark_metric,
            contributors=entries,
            baseline_metrics=baseline_facts.metrics,
            candidate_metrics=facts.metrics,
            baseline_run_id=baseline.run_id,
            run_id=version.run_id,
            dataset_digest=facts.dataset_digest or baseline_facts.dataset_digest,
            model_digest=mlflow_facts.version_artifact_digest(self.client, version),
            baseline_digest=mlflow_facts.version_artifact_digest(self.client, baseline),
            created_at=iso_utc(time.time()),
            plugin_version=__version__,
            project=tags.get(T.PROJECT),
            model_type=tags.get(T.MODEL_TYPE),
            pipeline_run_id=tags.get(T.PIPELINE_RUN_ID),
            onchain=self._onchain_target(version.name, metadata),
            deadline=_signature_deadline(),
            total_samples=_total_samples(entries),
            # Declared deltas (older API) say which metrics the caller vouches for: compare those.
            metrics=sorted(declared) or None,
            directions=metadata.get("directions"),
        )
        improvement, attributed, document = attested.improvement, attested.contributors, attested.document
        _check_declared(declared, improvement["metric_deltas"])
        self.client.log_dict(version.run_id, document, f"{ATTESTATION_ARTIFACT_DIR}/{document['id']}.json")
        for key, value in {
            T.DELTA_ONE_BPS: str(improvement["delta_one_bps"]),
            T.ATTESTATION_ID: document["id"],
            T.ATTESTER: document["attester"],
            T.ATTESTATION_STATUS: T.STATUS_SIGNED,
        }.items():
            self.client.set_model_version_tag(version.name, version.version, key, value)
        self._set_description(
            version,
            metadata.get("description"),
            summary.improvement_markdown(
                baseline_model_id=baseline_id,
                benchmark_metric=benchmark_metric,
                metric_deltas=improvement["metric_deltas"],
                delta_one_bps=improvement["delta_one_bps"],
                contributors=attributed,
                attestation_id=document["id"],
            ),
        )
        from mlflow_hokusai_plugin.services.performance_tracker import PerformanceTracker

        tracker = PerformanceTracker(tracking_uri=self.tracking_uri, signer=self._signer)
        for entry in attributed:
            tracker.log_contribution_impact(
                entry["address"],
                model_id,
                improvement,
                weight_bps=entry["weight_bps"],
                attributed_bps=entry["attributed_bps"],
                attestation_id=document["id"],
                project=(version.tags or {}).get(T.PROJECT),
            )
        result = self._describe(self.client.get_model_version(version.name, version.version))
        result.update(
            delta_metrics={k: d["absolute_delta"] for k, d in improvement["metric_deltas"].items()},
            improvement=improvement,
            contributors=attributed,
            attestation=document,
        )
        return result

    def _attested_by_server(
        self, version: ModelVersion, declared: dict[str, float], metadata: dict[str, Any]
    ) -> dict:
        """The Hokusai server validated and attested the version while creating it: read it back."""
        if metadata.get("description"):
            current = self.client.get_model_version(version.name, version.version)
            server_summary = summary.server_block(current.description)
            own = metadata["description"]
            self.client.update_model_version(
                version.name,
                version.version,
                description=f"{own}\n\n{server_summary}" if server_summary else own,
            )
        model_id = T.format_model_id(version.name, version.version)
        result = self.get_improvement(model_id, directions=metadata.get("directions"))
        if result["improvement"] is not None:
            _check_declared(declared, result["improvement"]["metric_deltas"])
        return result

    def _onchain_target(self, name: str, metadata: Mapping[str, Any]) -> OnchainTarget | None:
        onchain_id = self.client.get_registered_model(name).tags.get(T.ONCHAIN_MODEL_ID)
        if not onchain_id:
            return None
        chain_id = metadata.get("chain_id") or os.environ.get("HOKUSAI_CHAIN_ID")
        contract = metadata.get("verifying_contract") or os.environ.get("HOKUSAI_VERIFYING_CONTRACT")
        if not (chain_id and contract):
            raise ValidationError(
                T.ONCHAIN_MODEL_ID,
                f"model {name} has an on-chain id but HOKUSAI_CHAIN_ID / HOKUSAI_VERIFYING_CONTRACT "
                "are not set",
            )
        if not str(onchain_id).isdigit() or not str(chain_id).isdigit():
            raise ValidationError(
                T.ONCHAIN_MODEL_ID, "the on-chain model id and chain id must be decimal integers"
            )
        return OnchainTarget(
            int(chain_id), to_checksum_address(contract, "HOKUSAI_VERIFYING_CONTRACT"), int(onchain_id)
        )

    def _model_uri(
        self,
        model: Any,
        metadata: Mapping[str, Any],
        declared_metrics: Callable[[], dict[str, float]] | None = None,
    ) -> str:
        uri = mlflow_facts.model_uri_of(model)
        if uri is not None:
            return uri
        # A Python object: log it in a run of our experiment, with the metrics the caller gave
        # (``metadata["metrics"]``) or declared through the older API's delta_metrics.
        declared = declared_metrics() if declared_metrics else {}
        metrics = dict(metadata.get("metrics") or {}) or declared
        with (
            _fluent_uris(self.tracking_uri, self.client._registry_uri),
            mlflow.start_run(experiment_id=mlflow.set_experiment(self.experiment_name).experiment_id),
        ):
            uri = mlflow_facts.log_model_object(model)
            if metrics:
                mlflow.log_metrics(metrics)
            if declared and not metadata.get("metrics"):
                mlflow.set_tag("hokusai.metrics_source", "declared_delta_metrics")
            if metadata.get("dataset_digest"):
                mlflow.set_tag(T.BENCHMARK_DATASET_DIGEST, metadata["dataset_digest"])
        return uri

    def _create_version(self, name: str, source_uri: str, tags: dict[str, str], project: str) -> ModelVersion:
        try:
            registered = self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            registered = None
        if registered is None:
            try:
                self.client.create_registered_model(name, tags={T.PROJECT: project})
            except MlflowException as exc:
                # Another registration created it first: that is fine.
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        elif T.PROJECT not in registered.tags:
            self.client.set_registered_model_tag(name, T.PROJECT, project)
        try:
            with _fluent_uris(self.tracking_uri, self.client._registry_uri):
                return mlflow.register_model(source_uri, name, tags=tags)
        except MlflowException as exc:
            # A Hokusai server validates the tags and refuses bad ones before writing anything.
            raise as_validation_error(exc) from None

    def _set_description(self, version: ModelVersion, own: str | None, markdown: str) -> None:
        text = summary.replace_summary(own if own is not None else version.description, markdown)
        self.client.update_model_version(version.name, version.version, description=text)

    @staticmethod
    def _describe(version: ModelVersion) -> dict:
        tags = version.tags or {}
        described = {
            "model_id": T.format_model_id(version.name, version.version),
            "model_name": version.name,
            "version": str(version.version),
            "model_type": tags.get(T.MODEL_TYPE),
            "project": tags.get(T.PROJECT),
            "run_id": version.run_id,
            "source": version.source,
            "registration_timestamp": version.creation_timestamp,
            "benchmark_metric": tags.get(T.BENCHMARK_METRIC),
            "attestation_status": tags.get(T.ATTESTATION_STATUS),
        }
        if T.BASELINE in tags:
            described.update(
                baseline_id=tags[T.BASELINE],
                contributor=_first_contributor(tags.get(T.CONTRIBUTORS)),
                contributors=json.loads(tags.get(T.CONTRIBUTORS, "[]")),
                delta_one_bps=int(tags[T.DELTA_ONE_BPS]) if T.DELTA_ONE_BPS in tags else None,
                attestation_id=tags.get(T.ATTESTATION_ID),
                attester=tags.get(T.ATTESTER),
            )
        return described


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _contributor_entries(contributor: Any, contributors: Any) -> Any:
    if contributors is not None and contributor is not None:
        raise ValidationError("contributors", "give either contributor or contributors, not both")
    if contributors is not None:
        return contributors
    if contributor is None:
        raise ValidationError("contributor", "an improved model needs at least one contributor address")
    if isinstance(contributor, str):
        return [{"address": contributor, "weight_bps": contrib.TOTAL_BPS}]
    return [dict(contributor)]


def _tag_entries(entries: list[dict]) -> list[dict]:
    if all("samples" in e for e in entries):
        return [{"address": e["address"], "samples": e["samples"]} for e in entries]
    return [{"address": e["address"], "weight_bps": e["weight_bps"]} for e in entries]


def _first_contributor(raw: str | None) -> str | None:
    entries = json.loads(raw) if raw else []
    return entries[0]["address"] if entries else None


def _declared_metrics(
    baseline_metrics: Mapping[str, float], declared: Mapping[str, float]
) -> dict[str, float]:
    """New metrics implied by declared deltas, for a model object logged without measurements."""
    missing = [m for m in declared if m not in baseline_metrics]
    if missing:
        raise ValidationError(f"delta_metrics.{missing[0]}", "the baseline's run did not log this metric")
    return {m: baseline_metrics[m] + float(d) for m, d in declared.items()}


def _check_declared(declared: Mapping[str, float], metric_deltas: Mapping[str, Mapping[str, Any]]) -> None:
    for metric, value in declared.items():
        measured = metric_deltas.get(metric)
        if measured is not None and abs(measured["absolute_delta"] - float(value)) > 1e-9:
            raise ValidationError(
                f"delta_metrics.{metric}",
                f"declared {value} but the runs measured {measured['absolute_delta']}",
            )


def _signature_deadline() -> int:
    """Now plus ``HOKUSAI_SIGNATURE_TTL`` seconds (five days by default), as the server signs."""
    raw = os.environ.get("HOKUSAI_SIGNATURE_TTL", "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and int(raw) > 0):
        raise ValidationError("HOKUSAI_SIGNATURE_TTL", f"{raw!r}: expected a positive number of seconds")
    return int(time.time()) + (int(raw) if raw else DEFAULT_SIGNATURE_TTL)


def _total_samples(entries: list[dict]) -> int:
    """The contributed rows when every contributor states them, else 0 (unknown)."""
    samples = [entry.get("samples") for entry in entries]
    return sum(samples) if samples and all(value is not None for value in samples) else 0


_FLUENT_URIS_LOCK = threading.RLock()


@contextmanager
def _fluent_uris(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """MLflow's fluent tracking and registry URIs set to these for the block, then put back exactly.

    mlflow.register_model reads the fluent URIs (the registry's, and the tracking server's to
    resolve a ``models:/m-<id>`` source), and both must be this registry's. MLflow's own
    ``_use_tracking_uri`` cannot be used: restoring a URI that came from ``MLFLOW_TRACKING_URI``
    alone, it deletes that variable from the caller's environment. The URIs are the process's, so
    threads registering at once take turns (one lock; a thread's own fluent calls meanwhile see
    this registry's URIs, as MLflow's fluent API is process-wide anyway).
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    with _FLUENT_URIS_LOCK:
        environment = {name: os.environ.get(name) for name in names}
        fluent = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)
        try:
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = fluent
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
