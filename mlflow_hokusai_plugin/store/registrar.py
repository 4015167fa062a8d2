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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.entities.model_registry import ModelVersionTag
from sqlalchemy import select

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.core import storage_bounds as bounds
from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.contributors import attribute
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.issuance import (
    AttestedImprovement,
    OnchainTarget,
    attest_improvement,
    renew_mint_request,
)
from mlflow_hokusai_plugin.core.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER, compute_improvement
from mlflow_hokusai_plugin.core.mint_request import DEFAULT_SIGNATURE_TTL, LineageFacts
from mlflow_hokusai_plugin.core.progress import Progress, no_progress
from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.db.models import ContributorTotal
from mlflow_hokusai_plugin.db.records import HokusaiStore, contribution_records, edge_record
from mlflow_hokusai_plugin.runtime import metrics as prometheus_metrics
from mlflow_hokusai_plugin.store.artifact_digest import artifact_uri_digest
from mlflow_hokusai_plugin.store.mlflow_facts import RunFacts, run_facts

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

    def update_description(
        self,
        name: str,
        version: str | int,
        rewrite: Callable[[str | None, dict[str, str]], str | None],
    ) -> bool:
        """Set one version's description to ``rewrite(its description, its tags)`` (None: keep
        it), written only over the description ``rewrite`` saw (else rewritten again); whether
        anything was written."""
        ...

    def pending_versions(self) -> list[tuple[str, str]]: ...

    def undigested_versions(self) -> list[tuple[str, str]]: ...

    def first_baseline_version(self, name: str) -> str | None: ...

    def versions_with_digest(self, name: str, digest: str) -> list[str]: ...


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
        deadline: Callable[[], int] | None = None,
        audit: Any = None,
    ) -> None:
        self.registry = registry
        self.tracking = tracking
        self.store = store
        self._signer = signer
        self._onchain = onchain or (lambda name: None)
        # The EIP-712 deadline of a signature made now (unix seconds): the server's setting.
        self._deadline = deadline or (lambda: int(time.time()) + DEFAULT_SIGNATURE_TTL)
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
        already recorded only gets its server tags (re)written. Then the baseline's summary lists
        it (:meth:`_list_on_baseline`, which never fails the call).
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
        self._list_on_baseline(document["baseline_model_id"])
        return document

    def reconcile(self, progress: Progress = no_progress) -> list[dict]:
        """Complete every version left pending (a crash between MLflow's write and ours).

        One version never stops the others, and none is retried forever for its input: a version
        that can never be signed (its run deleted, a tag edited or removed, a value the store
        cannot hold) is marked ``failed`` and reported with the reason; only one that the
        infrastructure failed (artifact store, database) stays ``pending`` for the next pass.
        ``progress`` advances once per version examined.
        """
        results = []
        pending = self.registry.pending_versions()
        for name, version in progress(pending, total=len(pending), desc="pending registrations"):
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

    def record_artifact_digest(self, mv: Any) -> str | None:
        """Compute and tag the ``hokusai.artifact_digest`` of a version just registered (a
        baseline's is its model's on-chain genesis); ``mv`` is brought up to date. None, logged,
        when the artifact store fails: the digest is then computed when an improvement names it."""
        try:
            digest = self._artifact_digest(mv, None)
        except Exception:  # noqa: BLE001 - the registration itself has succeeded
            _logger.exception("the artifact digest of %s/%s is left for later", mv.name, mv.version)
            return None
        mv._add_tag(ModelVersionTag(T.ARTIFACT_DIGEST, digest))
        return digest

    def renew(
        self,
        attestation_id: str,
        may_renew: Callable[[dict, str], bool] = lambda document, model_id: True,
        *,
        actor: str = "hokusai",
        request_id: str | None = None,
    ) -> dict | None:
        """Sign the EIP-712 part of an attestation again, with a fresh deadline.

        Returns the renewed document, or None when there is no such attestation or ``may_renew``
        (given the document and its model id now) says the caller may not see it. The DSSE
        Statement, ``attestationHash`` and ``idempotencyKey`` are kept; a document of the older
        MintRequest types gets today's; the earlier signing goes to ``eip712.history``. The
        request is for the model's on-chain target now: one removed or changed since is refused.
        ``actor`` and ``request_id`` are who asked, for the audit chain.
        """
        signer = self._signer()
        samples = self.store.contributed_samples(attestation_id)
        refused: list[bool] = []
        renewed_model: list[str] = []

        def renewed(document: dict, model_id: str) -> dict:
            if not may_renew(document, model_id):
                refused.append(True)
                return document
            renewed_model[:] = [model_id]
            return renew_mint_request(
                document,
                signer,
                onchain=self._current_target(model_id),
                deadline=self._deadline(),
                total_samples=samples,
                renewed_at=iso_utc(time.time()),
            )

        document = self.store.replace_attestation(attestation_id, renewed)
        if document is None or refused:
            return None
        part = document.get("eip712") or {}
        deadline = ((part.get("typed_data") or {}).get("message") or {}).get("payload", {}).get("deadline")
        if renewed_model:
            self._tag_eip712(renewed_model[0], document)
        if self.audit is not None:
            self.audit.append(
                actor=actor,
                action="hokusai.renew",
                target=f"attestation:{attestation_id}",
                after={"deadline": deadline},
                request_id=request_id,
            )
        return document

    def _tag_eip712(self, model_id: str, document: dict) -> None:
        """Bring the version's ``hokusai.attestation.eip712`` tag up to date (a first MintRequest
        signed by a renewal); a version gone meanwhile has nothing to tag."""
        wanted = self._eip712_tag(document)
        if wanted is None:
            return
        name, _, version = model_id.rpartition("/")
        try:
            if (self.registry.get_model_version(name, version).tags or {}).get(
                T.ATTESTATION_EIP712
            ) != wanted:
                self.registry.set_tag(name, version, T.ATTESTATION_EIP712, wanted)
        except Exception:  # noqa: BLE001 - the document is stored; the tag is an index of it
            _logger.warning("could not tag %s after renewing its attestation", model_id, exc_info=True)

    @staticmethod
    def _eip712_tag(document: dict) -> str | None:
        if document.get("eip712") is not None:
            return T.EIP712_SIGNED
        if document.get("eip712_omitted"):
            return f"omitted: {document['eip712_omitted']}"[: bounds.SERVER_TAG_VALUE_LENGTH]
        return None

    def backfill_artifact_digests(self, progress: Progress = no_progress) -> list[dict]:
        """Tag every baseline that has no ``hokusai.artifact_digest`` with it (its model's genesis
        commitment); one result per version: ``{"model_id", "digest"}`` or ``{"model_id", "error"}``.
        ``progress`` advances once per version digested (their number is not known in advance)."""
        results, failed = [], set()

        def undigested() -> Iterator[tuple[str, str]]:
            # Lazily, batch after batch: the next query must see the tags the previous batch wrote
            # and the versions it failed on.
            while True:
                batch = [item for item in self.registry.undigested_versions() if item not in failed]
                if not batch:
                    return
                yield from batch

        for name, version in progress(undigested(), desc="baseline digests"):
            model_id = T.format_model_id(name, version)
            try:
                mv = self.registry.get_model_version(name, version)
                results.append({"model_id": model_id, "digest": self._artifact_digest(mv, None)})
            except Exception as exc:  # noqa: BLE001 - one missing artifact must not stop the rest
                failed.add((name, version))
                results.append({"model_id": model_id, "error": str(exc)})
        return results

    # -- internals ----------------------------------------------------------------------------

    def _current_target(self, model_id: str) -> OnchainTarget | None:
        """The target of a model version's registered model now, None if it has none (or is gone)."""
        name = model_id.rpartition("/")[0]
        try:
            return self._onchain(name)
        except ValidationError:
            raise
        except Exception:  # noqa: BLE001 - e.g. the model was deleted: no target
            return None

    def _onchain_target(self, name: str) -> tuple[OnchainTarget | None, str | None]:
        """The model's DeltaVerifier target, or why there is none (the DSSE attestation is signed
        either way: it never depends on the EIP-712 part)."""
        try:
            return self._onchain(name), None
        except ValidationError as exc:
            return None, str(exc)

    def _attest(self, mv: Any, prepared: Prepared) -> AttestedImprovement:
        parsed = prepared.tags
        baseline = prepared.baseline
        onchain, omitted = self._onchain_target(mv.name)
        samples = [entry.get("samples") for entry in parsed["contributors"]]
        model_digest = self._artifact_digest(mv, prepared.candidate_facts, save=False)
        baseline_digest = self._artifact_digest(baseline, prepared.baseline_facts)
        lineage = self._lineage_facts(mv, baseline, model_digest) if onchain is not None else None
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
            model_digest=model_digest,
            baseline_digest=baseline_digest,
            created_at=iso_utc(time.time()),
            plugin_version=__version__,
            project=parsed["project"],
            model_type=parsed["model_type"],
            pipeline_run_id=parsed["pipeline_run_id"],
            onchain=onchain,
            deadline=self._deadline(),
            total_samples=sum(samples) if all(value is not None for value in samples) else 0,
            eip712_omitted=omitted,
            lineage=lineage,
        )

    def _lineage_facts(self, mv: Any, baseline: Any, model_digest: str) -> LineageFacts:
        """What the registry says of the weights (``core.mint_request.lineage_problem``)."""
        baseline_id = T.format_model_id(baseline.name, baseline.version)
        request = None
        edge = self.store.edge_of(baseline_id)
        if edge is not None and edge.get("attestation_id"):
            earlier = self.store.get_attestation(edge["attestation_id"]) or {}
            request = (earlier.get("eip712") or {}).get("typed_data")
        genesis = edge is None and self.registry.first_baseline_version(baseline.name) == str(
            baseline.version
        )
        others = [
            v for v in self.registry.versions_with_digest(mv.name, model_digest) if v != str(mv.version)
        ]
        return LineageFacts(
            baseline_model_id=baseline_id,
            baseline_is_genesis=genesis,
            baseline_request=request,
            same_weights_as=T.format_model_id(mv.name, others[0]) if others else None,
        )

    def _artifact_digest(self, mv: Any, facts: RunFacts | None, *, save: bool = True) -> str:
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
        if self._eip712_tag(document) is not None:
            wanted[T.ATTESTATION_EIP712] = self._eip712_tag(document)
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

    def _list_on_baseline(self, baseline_model_id: str) -> None:
        """Bring the line of the baseline's latest improvements in its summary up to date (a
        baseline with no summary gets one): from the lineage, so it is right whichever
        registration writes last. Best effort: the improvement is registered and complete
        whatever happens here, and the baseline's description is written whole or not at all."""

        def rewrite(description: str | None, tags: dict[str, str]) -> str | None:
            latest, total = self.store.improvements_of(baseline_model_id, summary.IMPROVEMENTS_LISTED)
            if not total:
                return None
            listing = summary.improvements_markdown(
                [(edge["child_model_id"], edge["delta_one_bps"]) for edge in latest], total
            )
            headline = None
            if not tags.get(T.BASELINE) and tags.get(T.PROJECT) and tags.get(T.MODEL_TYPE):
                # A root baseline's block is rebuilt from its tags: its description is not
                # protected as an attested version's is, so a block found there may be anyone's
                # text (a forged "Improved by" or DeltaOne claim). A plain client's has none yet.
                headline = summary.baseline_markdown(
                    project=tags[T.PROJECT],
                    model_type=tags[T.MODEL_TYPE],
                    benchmark_metric=tags.get(T.BENCHMARK_METRIC),
                )
                description = summary.split_summary(description)[0] or None
            return summary.with_improvements(description, listing, headline)

        try:
            name, version = T.parse_model_id(baseline_model_id, T.BASELINE)
            self.registry.update_description(name, version, rewrite)
        except Exception:  # noqa: BLE001 - the improvement is registered; its baseline's list can wait
            _logger.warning(
                "could not list the improvements of %s in its description", baseline_model_id, exc_info=True
            )

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
