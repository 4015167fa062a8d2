"""Server side: turn a tagged model version into lineage, deltas and a signed attestation.

The registry store plugin calls :meth:`Registrar.validate` before MLflow writes anything (bad tags
fail the MLflow call and nothing is written), then :meth:`Registrar.complete` after MLflow's write.
Between the two the version carries ``hokusai.attestation.status=pending``: if the process dies
there, :meth:`Registrar.reconcile` (``hokusai reconcile``, and every server start) completes it.
``complete`` is idempotent: the plugin tables' unique constraints make the first writer win.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.entities.model_registry import ModelVersionTag
from sqlalchemy import select

from mlflow_hokusai_plugin import __version__, prometheus_metrics
from mlflow_hokusai_plugin.artifact_digest import artifact_uri_digest
from mlflow_hokusai_plugin.core import storage_bounds as bounds
from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.contributors import attribute
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.issuance import AttestedImprovement, OnchainTarget, attest_improvement
from mlflow_hokusai_plugin.core.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER, compute_improvement
from mlflow_hokusai_plugin.db.models import ContributorTotal
from mlflow_hokusai_plugin.db.store import HokusaiStore, contribution_records, edge_record
from mlflow_hokusai_plugin.services.mlflow_facts import RunFacts, run_facts

_logger = logging.getLogger(__name__)

# Crash drills only: seconds to sleep after MLflow's write and before the Hokusai records, so a
# test can kill -9 the server exactly there. Never set in a deployment.
FAULT_DELAY_ENV = "HOKUSAI_FAULT_DELAY_AFTER_MLFLOW_WRITE"


class RegistryAccess(Protocol):
    """The registry operations the registrar needs, without the plugin's hooks around them."""

    def get_model_version(self, name: str, version: str | int) -> Any: ...

    def registered_model_tag(self, name: str, key: str) -> str | None: ...

    def set_tag(self, name: str, version: str | int, key: str, value: str) -> None: ...

    def set_tags(
        self,
        name: str,
        version: str | int,
        tags: dict[str, str],
        description: str | None = None,
        updated_at: int | None = None,
    ) -> None:
        """Set several tags (and the description, last updated at ``updated_at`` epoch ms) of one
        version in one transaction."""
        ...

    def pending_versions(self) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class Prepared:
    """A validated improvement, ready to be attested once MLflow has written the version."""

    tags: dict
    baseline: Any  # the baseline's ModelVersion
    baseline_facts: RunFacts
    candidate_facts: RunFacts


# MLflow cannot store an infinite metric: it logs +/-inf as +/-1.7976931348623157e308 (the largest
# float; mlflow/store/tracking/sqlalchemy_store.py, sanitize_metric_value), which reads back as a
# finite number.
MLFLOW_INFINITY = sys.float_info.max


def _refuse_infinite_metrics(facts: RunFacts, side: str, benchmark_metric: str) -> None:
    """Refuse the metrics the improvement compares that MLflow stored as infinite (see above)."""
    for name, value in facts.metrics.items():
        compared = name == benchmark_metric or name in HIGHER_IS_BETTER or name in LOWER_IS_BETTER
        if compared and isinstance(value, float) and abs(value) == MLFLOW_INFINITY:
            field = T.BENCHMARK_METRIC if name == benchmark_metric else f"metrics.{name}"
            raise ValidationError(
                field,
                f"the {side} source run {facts.run_id} logged metric '{name}' as "
                f"{'-' if value < 0 else ''}infinity (MLflow stores it as {value!r}); "
                "an improvement needs finite metrics",
            )


def utc_iso(epoch_ms: int | None = None) -> str:
    seconds = (epoch_ms if epoch_ms is not None else int(time.time() * 1000)) / 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


class Registrar:
    """Validates, attests and records improvements; one per server process."""

    def __init__(
        self,
        *,
        registry: RegistryAccess,
        tracking: Any,
        store: HokusaiStore,
        signer: Callable[[], Any],
        onchain: Callable[[str], OnchainTarget | None] | None = None,
        audit: Any = None,
    ) -> None:
        self.registry = registry
        self.tracking = tracking
        self.store = store
        self._signer = signer
        self._onchain = onchain or (lambda name: None)
        self.audit = audit

    # -- before MLflow writes -----------------------------------------------------------------

    def validate(
        self, tags: dict[str, str], run_id: str | None, child_model_id: str | None = None
    ) -> Prepared:
        """Check every Hokusai fact of a version about to be written; raise ValidationError if wrong."""
        parsed = T.parse_improvement_tags(tags)
        baseline = self._version(parsed["baseline_name"], parsed["baseline_version"])
        if child_model_id is not None and self._is_ancestor(child_model_id, parsed["baseline"]):
            raise ValidationError(T.BASELINE, f"{parsed['baseline']} descends from {child_model_id}: a cycle")
        metric = parsed["benchmark_metric"]
        baseline_facts = run_facts(self.tracking, baseline.run_id)
        candidate_facts = run_facts(self.tracking, run_id)
        if not run_id:
            raise ValidationError("run_id", "an improved version needs the source run that measured it")
        for side, facts in (("baseline", baseline_facts), ("candidate", candidate_facts)):
            if metric not in facts.metrics:
                raise ValidationError(
                    T.BENCHMARK_METRIC, f"the {side} source run {facts.run_id} did not log metric '{metric}'"
                )
            if not facts.dataset_digest:
                raise ValidationError(
                    T.BENCHMARK_DATASET_DIGEST,
                    f"the {side} source run {facts.run_id} names no benchmark dataset digest (run tag "
                    f"{T.BENCHMARK_DATASET_DIGEST} or a dataset input with context "
                    f"'{T.BENCHMARK_INPUT_CONTEXT}')",
                )
        if baseline_facts.dataset_digest != candidate_facts.dataset_digest:
            raise ValidationError(
                T.BENCHMARK_DATASET_DIGEST,
                f"measured on benchmark data {candidate_facts.dataset_digest}, but the baseline "
                f"{parsed['baseline']} on {baseline_facts.dataset_digest}",
            )
        for side, facts in (("baseline", baseline_facts), ("candidate", candidate_facts)):
            _refuse_infinite_metrics(facts, side, metric)
        # Computing it now refuses NaN, metrics with no known direction and scores or a DeltaOne
        # too large to store, up front: complete() stores exactly this.
        try:
            improvement = compute_improvement(baseline_facts.metrics, candidate_facts.metrics, metric)
        except ValidationError as exc:
            side, facts = ("baseline", baseline_facts)
            if not exc.field.startswith("baseline_metrics."):
                side, facts = ("candidate", candidate_facts)
            raise ValidationError(
                exc.field, f"{exc.message} (the {side} source run {facts.run_id})"
            ) from None
        if child_model_id is not None and len(child_model_id) > bounds.MODEL_ID_LENGTH:
            raise ValidationError("name", bounds.length_problem(child_model_id, bounds.MODEL_ID_LENGTH))
        self._refuse_overflowing_totals(
            parsed["project"], attribute(improvement["delta_one_bps"], parsed["contributors"])
        )
        return Prepared(parsed, baseline, baseline_facts, candidate_facts)

    def _refuse_overflowing_totals(self, project: str, attributed: list[dict]) -> None:
        """The contributor totals this improvement adds to must stay within their 64-bit columns.

        A read outside the recording transaction: two registrations at once may both pass it, and
        the second then fails to record and stays pending, until the reconciler's own validation
        of it (``complete`` validates again) refuses it here and marks it failed.
        """
        shares = {entry["address"]: entry["attributed_bps"] for entry in attributed}
        with self.store.sessions() as session:
            rows = session.execute(
                select(ContributorTotal.address, ContributorTotal.attributed_bps).where(
                    ContributorTotal.project == project, ContributorTotal.address.in_(list(shares))
                )
            ).all()
        for address, total in rows:
            if total + shares[address] > bounds.SCORE_BPS_MAX:
                index = list(shares).index(address)
                raise ValidationError(
                    f"{T.CONTRIBUTORS}[{index}]",
                    f"{address} already has {total} bps attributed in project '{project}'; adding "
                    f"{shares[address]} more would overflow the 64-bit total the registry keeps",
                )

    # -- after MLflow has written -------------------------------------------------------------

    def complete(
        self, name: str, version: str | int, *, written: Any = None, prepared: Prepared | None = None
    ) -> dict | None:
        """Attest and record an improved version; returns the stored attestation document.

        ``written`` and ``prepared`` are the version MLflow has just returned and the validation of
        exactly its tags, when the caller has them (the create hook): the version is then neither
        read nor validated a second time, and ``written`` is brought up to date with the tags and
        description stored, so the caller can answer with it without reading it back. Otherwise
        (a tag set later, the reconciler, a migration) both are read afresh. Idempotent: a version
        already recorded only gets its server tags (re)written.
        """
        delay = os.environ.get(FAULT_DELAY_ENV)
        if delay:
            time.sleep(float(delay))
        mv = written if written is not None else self.registry.get_model_version(name, version)
        tags = dict(mv.tags or {})
        if T.BASELINE not in tags:
            return None
        model_id = T.format_model_id(mv.name, mv.version)
        document = self.store.attestation_for(model_id, tags[T.BASELINE])
        if document is None:
            if prepared is None or written is None:
                prepared = self.validate(tags, mv.run_id)
            attested = self._attest(mv, prepared)
            project = prepared.tags["project"]
            document = self.store.record_improvement(
                edge_record(
                    model_id,
                    prepared.tags["baseline"],
                    project,
                    prepared.tags["model_type"],
                    attested.improvement,
                ),
                attested.document,
                contribution_records(model_id, project, attested.contributors),
            )
            if document is attested.document:
                # Counted once, by the worker whose record won (a racing duplicate reads it back).
                prometheus_metrics.improvement_attested(
                    tags.get(T.PROJECT), attested.improvement["delta_one_bps"]
                )
            if document is attested.document and self.audit is not None:
                self.audit.append(
                    actor="hokusai",
                    action="hokusai.attest",
                    target=f"model_version:{model_id}",
                    after={
                        "attestation_id": document["id"],
                        "delta_one_bps": attested.improvement["delta_one_bps"],
                    },
                )
        self._write_server_tags(mv, document)
        return document

    def reconcile(self) -> list[dict]:
        """Complete every version left pending (a crash between MLflow's write and ours).

        One version never stops the others, and none is retried forever for its input: a version
        that can never be signed (its run deleted, a tag edited or removed, a value the store
        cannot hold) is marked ``failed`` and reported with the reason; only one that the
        infrastructure failed (artifact store, database) stays ``pending`` for the next pass.
        """
        results = []
        for name, version in self.registry.pending_versions():
            model_id = T.format_model_id(name, version)
            try:
                document = self.complete(name, version)
                if document is None:
                    raise ValidationError(
                        T.BASELINE, "was removed while the version was pending: nothing to attest"
                    )
                results.append({"model_id": model_id, "status": "signed", "attestation_id": document["id"]})
                continue
            except ValidationError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - one bad version must not stop the others
                _logger.exception("reconcile of %s failed; it stays pending", model_id)
                results.append({"model_id": model_id, "status": "pending", "error": str(exc)})
                continue
            try:
                self.registry.set_tag(name, version, T.ATTESTATION_STATUS, T.STATUS_FAILED)
            except Exception as exc:  # noqa: BLE001 - e.g. the version deleted meanwhile
                _logger.exception("reconcile could not mark %s failed; it stays pending", model_id)
                results.append({"model_id": model_id, "status": "pending", "error": f"{error}; then: {exc}"})
                continue
            _logger.warning("reconcile: %s can never be attested, marked failed: %s", model_id, error)
            prometheus_metrics.attestation_failed()
            results.append({"model_id": model_id, "status": "failed", "error": str(error)})
        return results

    # -- internals ----------------------------------------------------------------------------

    def _attest(self, mv: Any, prepared: Prepared) -> AttestedImprovement:
        parsed = prepared.tags
        baseline = prepared.baseline
        return attest_improvement(
            self._signer(),
            model_id=T.format_model_id(mv.name, mv.version),
            baseline_model_id=parsed["baseline"],
            benchmark_metric=parsed["benchmark_metric"],
            contributors=parsed["contributors"],
            baseline_metrics=prepared.baseline_facts.metrics,
            candidate_metrics=prepared.candidate_facts.metrics,
            baseline_run_id=baseline.run_id,
            run_id=mv.run_id,
            dataset_digest=prepared.candidate_facts.dataset_digest,
            model_digest=self._artifact_digest(mv, prepared.candidate_facts, save=False),
            baseline_digest=self._artifact_digest(baseline, prepared.baseline_facts),
            created_at=utc_iso(),
            plugin_version=__version__,
            project=parsed["project"],
            model_type=parsed["model_type"],
            pipeline_run_id=parsed["pipeline_run_id"],
            onchain=self._onchain(mv.name),
        )

    def _artifact_digest(self, mv: Any, facts: RunFacts, *, save: bool = True) -> str:
        """The digest of a version's files: its cached tag, or computed (and cached when ``save``;
        the candidate's is written with the other server tags, in one transaction)."""
        known = (mv.tags or {}).get(T.ARTIFACT_DIGEST)
        if known:
            return known
        digest = artifact_uri_digest(self._artifact_location(mv.source, facts))
        if save:
            self.registry.set_tag(mv.name, mv.version, T.ARTIFACT_DIGEST, digest)
        return digest

    def _artifact_location(self, source: str, facts: RunFacts | None = None, hops: int = 0) -> str:
        """Where a version's files are: logged models, runs:/ and models:/name/version resolved.

        ``facts`` of the source run, already read, spare reading the run again for a runs:/ source.
        """
        if hops > 10:
            raise ValidationError("source", f"{source} resolves through too many models:/ hops")
        if source.startswith("models:/m-"):
            return self.tracking.get_logged_model(
                source[len("models:/") :].split("/", 1)[0]
            ).artifact_location
        if source.startswith("models:/"):
            name, _, rest = source[len("models:/") :].partition("/")
            return self._artifact_location(self.registry.get_model_version(name, rest).source, hops=hops + 1)
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            if facts is not None and facts.run_id == run_id and facts.artifact_uri:
                artifact_uri = facts.artifact_uri
            else:
                artifact_uri = self.tracking.get_run(run_id).info.artifact_uri
            return artifact_uri.rstrip("/") + "/" + path
        return source

    def _write_server_tags(self, mv: Any, document: dict) -> None:
        """The server tags and the description's summary, in one transaction: a reader sees the
        version pending, or signed with every other fact in place."""
        predicate = document_predicate(document)
        delta_one = predicate["delta_one_bps"]
        wanted = {
            # The candidate's digest is cached here, with the rest, rather than in its own write.
            **({T.ARTIFACT_DIGEST: predicate["model"]["digest"]} if predicate["model"].get("digest") else {}),
            T.DELTA_ONE_BPS: str(delta_one),
            T.ATTESTATION_ID: document["id"],
            T.ATTESTER: document["attester"],
            T.ATTESTATION_STATUS: T.STATUS_SIGNED,
        }
        current = mv.tags or {}
        markdown = summary.improvement_markdown(
            baseline_model_id=document["baseline_model_id"],
            benchmark_metric=predicate["benchmark"]["metric"],
            metric_deltas=predicate["metric_deltas"],
            delta_one_bps=delta_one,
            contributors=predicate["contributors"],
            attestation_id=document["id"],
        )
        description = None
        if summary.MARKER not in (mv.description or "") or document["id"] not in (mv.description or ""):
            description = summary.replace_summary(mv.description, markdown)
        changed = {key: value for key, value in wanted.items() if current.get(key) != value}
        if not changed and description is None:
            return
        updated_at = int(time.time() * 1000) if description is not None else None
        self.registry.set_tags(mv.name, mv.version, changed, description=description, updated_at=updated_at)
        # This copy of the version now says what is stored.
        for key, value in changed.items():
            mv._add_tag(ModelVersionTag(key, value))
        if description is not None:
            mv.description = description
            mv.last_updated_timestamp = updated_at

    def _version(self, name: str, version: int | str) -> Any:
        try:
            return self.registry.get_model_version(name, str(version))
        except Exception as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise ValidationError(
                    T.BASELINE, f"model version '{name}/{version}' does not exist"
                ) from None
            raise

    def _is_ancestor(self, candidate: str, start: str) -> bool:
        """Whether ``candidate`` is ``start`` or above it: the early, friendly refusal of a cycle.

        It reads the lineage outside any lock, so two concurrent requests can both pass it; the
        guarantee is the check the store repeats under the lineage lock in the transaction that
        inserts the edge (``HokusaiStore.record_improvement``), whose ValidationError the callers
        of :meth:`complete` treat like any other (the version is marked ``failed``).
        """
        return self.store.is_ancestor(candidate, start)
