"""``hokusai migrate``: bring model versions registered before the plugin into the Hokusai registry.

A mapping file (JSON) says what the registry could not know, one entry per existing version::

    {"models": [
      {"model_id": "churn/1", "project": "churn", "model_type": "classification",
       "benchmark_metric": "accuracy", "benchmark_dataset_digest": "<sha256 of the benchmark>"},
      {"model_id": "churn/2", "baseline": "churn/1",
       "contributors": [{"address": "0x5aAe...", "weight_bps": 10000}],
       "benchmark_dataset_digest": "<sha256 of the benchmark>"}
    ]}

An improved entry inherits ``project``, ``model_type`` and ``benchmark_metric`` from its baseline's
entry. ``benchmark_dataset_digest`` is written on the source run when the run names none (older
runs did not record which data they were measured on); a run that names another digest is an error.

The whole mapping is checked before anything is written: every version and run exists, every
improvement's source runs logged the metric on the same benchmark. Then, in order (baselines
first), each version gets its ``hokusai.*`` tags and each improvement its lineage edge and
contributions, with its DeltaOne computed from the two runs' metrics; with ``attest``, the
improvement is signed as the server would sign it (the key must be configured where this runs),
otherwise it is recorded with status ``not_applicable``. A version that already has an edge is
skipped, so a migration can be re-run. Every write is in the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.contributors import attribute
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.metrics import compute_improvement
from mlflow_hokusai_plugin.core.progress import Progress, no_progress
from mlflow_hokusai_plugin.db.records import contribution_records, edge_record
from mlflow_hokusai_plugin.store.mlflow_facts import get_version

CLIENT_FIELDS = {
    "project": T.PROJECT,
    "model_type": T.MODEL_TYPE,
    "benchmark_metric": T.BENCHMARK_METRIC,
    "baseline": T.BASELINE,
    "pipeline_run_id": T.PIPELINE_RUN_ID,
}
KNOWN_FIELDS = {"model_id", "contributors", "benchmark_dataset_digest", *CLIENT_FIELDS}


@dataclass
class Step:
    """What migrating one version means."""

    model_id: str
    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    run_tags: dict[str, str] = field(default_factory=dict)  # backfilled on the source run
    improvement: dict | None = None  # core.metrics.compute_improvement, for improved versions
    contributors: list[dict] = field(default_factory=list)  # attributed
    skip: str | None = None  # why nothing is done

    def describe(self, attest: bool) -> str:
        if self.skip:
            return f"{self.model_id}: skipped ({self.skip})"
        parts = [f"tags {', '.join(f'{k}={v}' for k, v in sorted(self.tags.items()))}"]
        if self.run_tags:
            parts.append(f"run {self.run_id}: {', '.join(f'{k}={v}' for k, v in self.run_tags.items())}")
        if self.improvement is not None:
            how = "attested" if attest else "recorded without attestation"
            parts.append(
                f"improvement of {self.tags[T.BASELINE]}: +{self.improvement['delta_one_bps']} bps, {how}"
            )
        return f"{self.model_id}: " + "; ".join(parts)


def load_mapping(path: str | Path) -> list[dict]:
    """The mapping file's entries, each checked for shape (fields, model id, project, type)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError("mapping", f"{path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValidationError("mapping", f"{path}: not valid JSON ({exc})") from None
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValidationError("mapping", f'{path}: expected {{"models": [ ... ]}} with at least one entry')
    seen = set()
    for i, entry in enumerate(entries):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            raise ValidationError(where, "must be an object")
        unknown = sorted(set(entry) - KNOWN_FIELDS)
        if unknown:
            raise ValidationError(
                f"{where}.{unknown[0]}", f"unknown field; expected {', '.join(sorted(KNOWN_FIELDS))}"
            )
        T.parse_model_id(entry.get("model_id"), f"{where}.model_id")
        if entry["model_id"] in seen:
            raise ValidationError(f"{where}.model_id", f"{entry['model_id']} appears twice")
        seen.add(entry["model_id"])
    return entries


def plan_migration(entries: list[dict], registry: Any, tracking: Any, hokusai: Any) -> list[Step]:
    """Check every entry against the registry and the runs; the steps, baselines first.

    ``registry`` and ``tracking`` are MLflow's SQL stores, ``hokusai`` the plugin's store.
    Raises ValidationError naming the entry and the field; reads only.
    """
    by_id = {entry["model_id"]: entry for entry in entries}
    steps: dict[str, Step] = {}

    def resolve(model_id: str, chain: tuple[str, ...] = ()) -> Step:
        if model_id in steps:
            return steps[model_id]
        if model_id in chain:
            raise ValidationError("mapping", f"{' -> '.join((*chain, model_id))} is a cycle")
        entry = by_id[model_id]
        where = f"models[{entries.index(entry)}]"
        baseline_id = entry.get("baseline")
        inherited: dict = {}
        if baseline_id:
            if baseline_id in by_id:
                resolve(baseline_id, (*chain, model_id))
                inherited = {k: v for k, v in steps[baseline_id].tags.items() if k != T.BASELINE}
            else:
                base_name, base_version = T.parse_model_id(baseline_id, f"{where}.baseline")
                found = get_version(registry, base_name, base_version, f"{where}.baseline")
                inherited = dict(found.tags or {})
        step = _step(entry, where, registry, tracking, hokusai, inherited)
        steps[model_id] = step
        return step

    for entry in entries:
        resolve(entry["model_id"])
    for step in steps.values():
        if step.tags.get(T.BASELINE) and not step.skip:
            _measure(step, steps, registry, tracking, by_id)
    # Baselines before what improves them: the order resolve() completed them in.
    return list(steps.values())


def apply_migration(
    steps: list[Step], store: Any, *, attest: bool, progress: Progress = no_progress
) -> list[str]:
    """Write the planned steps through the Hokusai registry store ``store``; one line per version.

    ``progress`` advances once per version written (or skipped).
    """
    from mlflow.entities import RunTag

    from mlflow_hokusai_plugin.store.registry import _PlainRegistry

    plain = _PlainRegistry(store)
    registrar = store.registrar
    done = []
    for step in progress(steps, total=len(steps), desc="migrating versions"):
        if step.skip:
            done.append(step.describe(attest))
            continue
        for key, value in step.run_tags.items():
            registrar.tracking.set_tag(step.run_id, RunTag(key, value))
        current = dict(plain.get_model_version(step.name, step.version).tags or {})
        for key, value in step.tags.items():
            if current.get(key) != value:
                plain.set_tag(step.name, step.version, key, value)
        if step.improvement is not None and attest:
            plain.set_tag(step.name, step.version, T.ATTESTATION_STATUS, T.STATUS_PENDING)
            registrar.complete(step.name, step.version)  # validates again, signs, records, tags
        elif step.improvement is not None:
            project = step.tags[T.PROJECT]
            store.hokusai.record_unattested_improvement(
                edge_record(
                    step.model_id, step.tags[T.BASELINE], project, step.tags[T.MODEL_TYPE], step.improvement
                ),
                contribution_records(step.model_id, project, step.contributors),
            )
            plain.set_tag(step.name, step.version, T.DELTA_ONE_BPS, str(step.improvement["delta_one_bps"]))
            plain.set_tag(step.name, step.version, T.ATTESTATION_STATUS, T.STATUS_NOT_APPLICABLE)
        elif T.ATTESTATION_STATUS not in current:
            plain.set_tag(step.name, step.version, T.ATTESTATION_STATUS, T.STATUS_NOT_APPLICABLE)
        store.audit.append(
            actor="hokusai migrate",
            action="hokusai.migrate",
            target=f"model_version:{step.model_id}",
            after={
                "tags": step.tags,
                "run_tags": step.run_tags,
                "attested": bool(attest and step.improvement),
            },
        )
        done.append(step.describe(attest))
    return done


def _step(entry: dict, where: str, registry: Any, tracking: Any, hokusai: Any, inherited: dict) -> Step:
    model_id = entry["model_id"]
    name, version = T.parse_model_id(model_id, f"{where}.model_id")
    found = get_version(registry, name, version, f"{where}.model_id")
    tags = {
        key: inherited[key] for key in (T.PROJECT, T.MODEL_TYPE, T.BENCHMARK_METRIC) if inherited.get(key)
    }
    for field_name, tag in CLIENT_FIELDS.items():
        if entry.get(field_name) is not None:
            tags[tag] = str(entry[field_name])
    if T.PROJECT not in tags or T.MODEL_TYPE not in tags:
        raise ValidationError(
            f"{where}.project", "project and model_type are needed (here or on the baseline)"
        )
    T.check_project(tags[T.PROJECT], f"{where}.project")
    T.check_model_type(tags[T.MODEL_TYPE], f"{where}.model_type")
    if entry.get("contributors") is not None:
        tags[T.CONTRIBUTORS] = json.dumps(entry["contributors"])
    if T.BASELINE in tags:
        try:
            T.parse_improvement_tags(tags)
        except ValidationError as exc:
            raise ValidationError(f"{where}.{exc.field}", exc.message) from None
    step = Step(model_id, name, str(version), found.run_id, tags)
    if hokusai.edge_of(model_id) is not None:
        step.skip = "already in the lineage"
        return step
    digest = entry.get("benchmark_dataset_digest")
    if digest is not None:
        if not (
            isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        ):
            raise ValidationError(
                f"{where}.benchmark_dataset_digest", "must be a sha256 hex digest (64 lower-case hex)"
            )
        if not found.run_id:
            raise ValidationError(f"{where}.benchmark_dataset_digest", f"{model_id} has no source run to tag")
        recorded = tracking.get_run(found.run_id).data.tags.get(T.BENCHMARK_DATASET_DIGEST)
        if recorded and recorded != digest:
            raise ValidationError(
                f"{where}.benchmark_dataset_digest", f"the source run {found.run_id} already names {recorded}"
            )
        if not recorded:
            step.run_tags[T.BENCHMARK_DATASET_DIGEST] = digest
    return step


def _measure(step: Step, steps: dict, registry: Any, tracking: Any, by_id: dict) -> None:
    """The improvement of ``step`` over its baseline, from the runs (with planned digests)."""
    where = f"models[{list(by_id).index(step.model_id)}]"
    baseline_id = step.tags[T.BASELINE]
    baseline = steps.get(baseline_id) or _baseline_step(registry, baseline_id, where)
    metric = step.tags[T.BENCHMARK_METRIC]
    sides = {}
    for side, s in (("baseline", baseline), ("candidate", step)):
        if not s.run_id:
            raise ValidationError(f"{where}.model_id", f"the {side} {s.model_id} has no source run")
        run = tracking.get_run(s.run_id)
        digest = s.run_tags.get(T.BENCHMARK_DATASET_DIGEST) or run.data.tags.get(T.BENCHMARK_DATASET_DIGEST)
        if metric not in run.data.metrics:
            raise ValidationError(
                f"{where}.benchmark_metric", f"the {side} run {s.run_id} did not log '{metric}'"
            )
        if not digest:
            raise ValidationError(
                f"{where}.benchmark_dataset_digest",
                f"the {side} run {s.run_id} names no benchmark digest; give benchmark_dataset_digest",
            )
        sides[side] = (run.data.metrics, digest)
    if sides["baseline"][1] != sides["candidate"][1]:
        raise ValidationError(
            f"{where}.benchmark_dataset_digest",
            f"{step.model_id} and {baseline_id} were measured on different benchmark data",
        )
    step.improvement = compute_improvement(sides["baseline"][0], sides["candidate"][0], metric)
    contributors = T.parse_improvement_tags(step.tags)["contributors"]
    step.contributors = attribute(step.improvement["delta_one_bps"], contributors)


def _baseline_step(registry: Any, baseline_id: str, where: str) -> Step:
    name, version = T.parse_model_id(baseline_id, f"{where}.baseline")
    found = get_version(registry, name, version, f"{where}.baseline")
    return Step(baseline_id, name, str(version), found.run_id, dict(found.tags or {}))
