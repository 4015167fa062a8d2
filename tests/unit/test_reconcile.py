"""``Registrar.reconcile`` over versions that can and cannot be completed, with no database.

One version must never stop the others, and none may stay pending forever because of its input:
a ValidationError (or a version with nothing left to attest) marks it ``failed``; only what the
infrastructure failed stays ``pending``.
"""

from __future__ import annotations

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.store.registrar import Registrar


class FakeRegistry:
    def __init__(self, pending, refuse_tags_on=()):
        self.pending = pending
        self.refuse_tags_on = set(refuse_tags_on)
        self.tags: dict[tuple[str, str], dict] = {}

    def pending_versions(self):
        return list(self.pending)

    def set_tag(self, name, version, key, value):
        if (name, version) in self.refuse_tags_on:
            raise RuntimeError("the version was deleted meanwhile")
        self.tags.setdefault((name, version), {})[key] = value


def registrar(registry, outcomes):
    made = Registrar(registry=registry, tracking=None, store=None, signer=lambda: None)

    def complete(name, version, **_):
        outcome = outcomes[(name, version)]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    made.complete = complete
    return made


def test_each_version_is_reported_and_one_bad_version_does_not_stop_the_others():
    pending = [("m", "1"), ("m", "2"), ("m", "3"), ("m", "4"), ("m", "5"), ("m", "6")]
    registry = FakeRegistry(pending, refuse_tags_on=[("m", "6")])
    outcomes = {
        ("m", "1"): ValidationError("hokusai.contributors[0].samples", "must be between 1 and 2**63 - 1"),
        ("m", "2"): {"id": "ab" * 32},
        ("m", "3"): None,  # hokusai.baseline removed while pending: nothing to attest
        ("m", "4"): RuntimeError("S3 is down"),
        ("m", "5"): {"id": "cd" * 32},
        ("m", "6"): ValidationError("hokusai.benchmark.metric", "has 251 characters"),
    }
    results = registrar(registry, outcomes).reconcile()

    by_id = {r["model_id"]: r for r in results}
    assert [r["model_id"] for r in results] == [f"m/{v}" for _, v in pending]
    assert by_id["m/1"]["status"] == "failed" and "samples" in by_id["m/1"]["error"]
    assert by_id["m/2"] == {"model_id": "m/2", "status": "signed", "attestation_id": "ab" * 32}
    assert by_id["m/3"]["status"] == "failed" and T.BASELINE in by_id["m/3"]["error"]
    assert by_id["m/4"]["status"] == "pending" and "S3 is down" in by_id["m/4"]["error"]
    assert by_id["m/5"]["status"] == "signed"
    # Marking it failed did not work either: it stays pending, and the reason is kept.
    assert by_id["m/6"]["status"] == "pending" and "251 characters" in by_id["m/6"]["error"]
    assert registry.tags == {
        ("m", "1"): {T.ATTESTATION_STATUS: T.STATUS_FAILED},
        ("m", "3"): {T.ATTESTATION_STATUS: T.STATUS_FAILED},
    }


def test_a_second_pass_has_nothing_left_for_the_versions_marked_failed():
    registry = FakeRegistry([("m", "1")])
    outcomes = {("m", "1"): ValidationError("hokusai.contributors[0].samples", "too large")}
    assert registrar(registry, outcomes).reconcile()[0]["status"] == "failed"
    registry.pending = []  # what search_model_versions finds once the status tag says failed
    assert registrar(registry, outcomes).reconcile() == []


class Recorder:
    """A Progress that records what it was given and passes the items through."""

    def __init__(self):
        self.calls: list[tuple[str, int | None]] = []
        self.seen: list = []

    def __call__(self, items, *, total=None, desc=""):
        self.calls.append((desc, total))
        for item in items:
            self.seen.append(item)
            yield item


def test_reconcile_reports_each_version_to_the_progress_it_is_given():
    pending = [("m", "1"), ("m", "2")]
    progress = Recorder()
    results = registrar(FakeRegistry(pending), {v: {"id": "ab" * 32} for v in pending}).reconcile(progress)
    assert progress.calls == [("pending registrations", 2)] and progress.seen == pending
    assert [r["status"] for r in results] == ["signed", "signed"]


class BatchedRegistry:
    """undigested_versions as the store answers it: up to ``limit`` versions still without a digest."""

    def __init__(self, versions, limit, missing=()):
        self.undigested, self.limit, self.missing = list(versions), limit, set(missing)
        self.queries = 0

    def undigested_versions(self):
        self.queries += 1
        return self.undigested[: self.limit]

    def get_model_version(self, name, version):
        if (name, version) in self.missing:
            raise RuntimeError("the artifact is gone")
        return (name, version)


def test_backfill_goes_batch_after_batch_through_one_progress_without_a_total():
    versions = [("m", str(v)) for v in range(1, 6)]
    registry = BatchedRegistry(versions, limit=2, missing=[("m", "2")])
    made = registrar(registry, {})

    def digest(mv, _facts):
        registry.undigested.remove(mv)  # tagged: the next batch no longer lists it
        return "cd" * 32

    made._artifact_digest = digest
    progress = Recorder()
    results = made.backfill_artifact_digests(progress)
    assert progress.calls == [("baseline digests", None)] and progress.seen == versions
    assert [r["model_id"] for r in results] == [f"m/{v}" for _, v in versions]
    assert "error" in results[1] and all("digest" in r for i, r in enumerate(results) if i != 1)
    # Batches of 2 less the failed m/2: [1, 2], [3], [4], [5], then none left.
    assert registry.queries == 5
