"""``hokusai backup verify``: restore into a scratch database and check that nothing is missing.

A backup is only as good as the restore it allows, so the database is really restored (into a
throwaway PostgreSQL database, or a temporary SQLite copy) and read back: checksums, row counts,
schema revisions, every attestation's signature, every attested version's link to its
attestation, the audit hash chain, and every model version's files in the backup (compared, when
the version carries one, with the artifact digest its attestation signed).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mlflow_hokusai_plugin.backup import postgres, sqlite
from mlflow_hokusai_plugin.backup.connections import engine_for, one_line
from mlflow_hokusai_plugin.backup.database_facts import read_counts, read_revisions
from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.manifest import ARTIFACTS_DIR, damaged_files, read_manifest, unlisted_files
from mlflow_hokusai_plugin.backup.uris import (
    artifact_path_in_root,
    dialect_of,
    parse_artifact_root,
    resolve_model_location,
)
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.db.audit import AuditLog
from mlflow_hokusai_plugin.store.artifact_digest import directory_digest

# How many offenders a failed check names; the rest are counted.
NAMED = 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str


@dataclass
class VerifyReport:
    backup: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def to_dict(self) -> dict:
        return {"backup": self.backup, "ok": self.ok, "checks": [asdict(check) for check in self.checks]}


def verify_backup(
    backup_dir: Path, *, scratch_uri: str | None = None, store_uri: str | None = None
) -> VerifyReport:
    """Check a backup by restoring its database into a scratch one; never touches the source.

    PostgreSQL backups are restored into a temporary database created through ``scratch_uri``,
    else through the ``postgres`` database of the server of ``store_uri``, else of the manifest's
    source (password from ``PGPASSWORD`` or ``~/.pgpass`` then); it is dropped afterwards. Bad
    input raises :class:`BackupError`; failed checks are in the report.
    """
    backup_dir = Path(backup_dir).expanduser().resolve()
    manifest, _ = read_manifest(backup_dir)
    report = VerifyReport(str(backup_dir))
    damaged = damaged_files(backup_dir, manifest)
    unlisted = unlisted_files(backup_dir, manifest)
    report.checks.append(_files_check(manifest, damaged, unlisted))

    database_file = manifest["database"]["file"]
    if any(problem.startswith(database_file + ":") for problem in damaged):
        report.checks.append(Check("database", False, f"not restored: {database_file} is damaged"))
        return report
    with _scratch_copy(backup_dir, manifest, scratch_uri, store_uri) as (engine, failure):
        if failure:
            report.checks.append(Check("database", False, failure))
            return report
        report.checks.append(Check("database", True, "restored into a scratch database"))
        report.checks.extend(_database_checks(engine, manifest, backup_dir))
    return report


@contextlib.contextmanager
def _scratch_copy(
    backup_dir: Path, manifest: dict, scratch_uri: str | None, store_uri: str | None
) -> Iterator[tuple[Engine | None, str | None]]:
    """The backup's database restored somewhere disposable: (engine, None), or (None, why not)."""
    kind = manifest["database"]["kind"]
    dump = backup_dir / manifest["database"]["file"]
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="hokusai-verify-"))
        try:
            copy = directory / "mlflow.db"
            try:
                sqlite.copy_database(dump, copy)
            except BackupError as exc:
                yield None, str(exc)
                return
            engine = engine_for(f"sqlite:///{copy}")
            try:
                yield engine, None
            finally:
                engine.dispose()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    if kind != "postgresql":
        raise BackupError(f"the manifest names an unknown database kind {kind!r}")
    if scratch_uri:
        server = scratch_uri
    else:
        # The server of the store (or of the backup's source), through its maintenance database:
        # the store's own database may be the one that was lost.
        source = store_uri or manifest["source"].get("store_uri")
        server = postgres.maintenance_uri(source) if source and dialect_of(source) == "postgresql" else None
    if not server or dialect_of(server) != "postgresql":
        raise BackupError("give --scratch-uri: a PostgreSQL server where a scratch database may be created")
    postgres.check_restore_tool()
    with postgres.scratch_database(server) as scratch:
        try:
            postgres.restore(dump, scratch)
        except BackupError as exc:
            yield None, str(exc)
            return
        engine = engine_for(scratch)
        try:
            yield engine, None
        finally:
            engine.dispose()


def _files_check(manifest: dict, damaged: list[str], unlisted: list[str]) -> Check:
    problems = damaged + [f"{path}: not in the manifest" for path in unlisted]
    if problems:
        return Check("checksums", False, _named(problems, "file(s) do not match the manifest"))
    return Check("checksums", True, f"{len(manifest['files'])} files match the manifest")


def _database_checks(engine: Engine, manifest: dict, backup_dir: Path) -> list[Check]:
    checks = []
    for name, check in (
        ("schema", _schema),
        ("counts", _counts),
        ("attestations", _attestations),
        ("attestation links", _attestation_links),
        ("audit chain", _audit_chain),
        ("artifacts", _artifacts),
    ):
        try:
            with engine.connect() as connection:
                ok, message = check(connection, manifest, backup_dir)
        except (SQLAlchemyError, BackupError) as exc:
            ok, message = False, f"could not be checked: {one_line(str(getattr(exc, 'orig', None) or exc))}"
        checks.append(Check(name, ok, message))
    return checks


def _schema(connection: Connection, manifest: dict, _backup_dir: Path) -> tuple[bool, str]:
    found, expected = read_revisions(connection), manifest["alembic"]
    if found != expected:
        return False, f"revisions {found} are not the manifest's {expected}"
    return True, f"MLflow at {found['mlflow']}, hokusai at {found['hokusai']}"


def _counts(connection: Connection, manifest: dict, _backup_dir: Path) -> tuple[bool, str]:
    found, expected = read_counts(connection), manifest["counts"]
    wrong = [
        f"{name}: {found.get(name)} rows, the manifest says {expected.get(name)}"
        for name in sorted(set(found) | set(expected))
        if found.get(name) != expected.get(name)
    ]
    if wrong:
        return False, _named(wrong, "count(s) differ")
    shown = ", ".join(
        f"{name} {found[name]}"
        for name in ("model_versions", "attestations", "audit_entries")
        if name in found
    )
    return True, f"{shown} (and {len(found) - 3} more) match the manifest"


def _attestations(connection: Connection, _manifest: dict, _backup_dir: Path) -> tuple[bool, str]:
    rows = connection.execute(
        text(
            "SELECT id, model_id, baseline_model_id, attester, document FROM hokusai_attestations ORDER BY id"
        )
    ).all()
    bad = []
    for row in rows:
        try:
            document = parse_json(row.document, "document")
        except ValidationError as exc:
            bad.append(f"{row.id[:12]}... ({row.model_id}): {exc}")
            continue
        verdict = verify_document(document, attesters=[row.attester])
        if not verdict.valid:
            bad.append(f"{row.id[:12]}... ({row.model_id}): {verdict.failed_check}: {verdict.message}")
        elif (document.get("id"), document.get("model_id"), document.get("baseline_model_id")) != (
            row.id,
            row.model_id,
            row.baseline_model_id,
        ):
            bad.append(f"{row.id[:12]}... ({row.model_id}): the document names another id or model")
    if bad:
        return False, _named(bad, "attestation(s) do not verify")
    return True, f"{len(rows)} attestation(s) verify against their attesters"


def _attestation_links(connection: Connection, _manifest: dict, _backup_dir: Path) -> tuple[bool, str]:
    attested = dict(connection.execute(text("SELECT id, model_id FROM hokusai_attestations")).all())
    tags: dict[str, dict[str, str]] = {}
    for name, version, key, value in connection.execute(
        text(
            "SELECT name, version, key, value FROM model_version_tags WHERE key IN (:baseline, :attestation)"
        ),
        {"baseline": T.BASELINE, "attestation": T.ATTESTATION_ID},
    ):
        tags.setdefault(f"{name}/{version}", {})[key] = value
    bad, linked, unattested = [], 0, 0
    for model_id, version_tags in sorted(tags.items()):
        attestation_id = version_tags.get(T.ATTESTATION_ID)
        if attestation_id is None:
            unattested += 1  # pending or failed: the reconciler's business, not the backup's
            continue
        if attestation_id not in attested:
            bad.append(f"{model_id}: {T.ATTESTATION_ID} {attestation_id[:12]}... is not a stored attestation")
        elif attested[attestation_id] != model_id:
            bad.append(f"{model_id}: {T.ATTESTATION_ID} names the attestation of {attested[attestation_id]}")
        else:
            linked += 1
    for child, attestation_id in connection.execute(
        text(
            "SELECT child_model_id, attestation_id FROM hokusai_lineage_edges "
            "WHERE attestation_id IS NOT NULL"
        )
    ):
        if attestation_id not in attested:
            bad.append(f"lineage edge of {child}: attestation {attestation_id[:12]}... is not stored")
    if bad:
        return False, _named(bad, "broken link(s)")
    pending = f"; {unattested} improvement(s) not attested (pending or failed)" if unattested else ""
    return True, f"{linked} attested version(s) point to their stored attestations{pending}"


def _audit_chain(connection: Connection, _manifest: dict, _backup_dir: Path) -> tuple[bool, str]:
    report = AuditLog(connection.engine).verify()
    return report.ok, report.message


def _artifacts(connection: Connection, manifest: dict, backup_dir: Path) -> tuple[bool, str]:
    root = parse_artifact_root(manifest["source"]["artifacts"])
    tables = set(inspect(connection).get_table_names())
    logged = (
        dict(connection.execute(text("SELECT model_id, artifact_location FROM logged_models")).all())
        if "logged_models" in tables
        else {}
    )
    runs = dict(connection.execute(text("SELECT run_uuid, artifact_uri FROM runs")).all())
    versions = connection.execute(
        text("SELECT name, version, source, storage_location FROM model_versions ORDER BY name, version")
    ).all()
    locations = {(row.name, str(row.version)): row.storage_location or row.source for row in versions}
    digests = {
        f"{name}/{version}": value
        for name, version, value in connection.execute(
            text("SELECT name, version, value FROM model_version_tags WHERE key = :k"),
            {"k": T.ARTIFACT_DIGEST},
        )
    }
    listed = {entry["path"] for entry in manifest["files"]}
    bad, matched = [], 0
    for (name, version), location in sorted(locations.items()):
        model_id = f"{name}/{version}"
        try:
            resolved = resolve_model_location(location or "", logged, runs, locations)
        except BackupError as exc:
            bad.append(f"{model_id}: {exc}")
            continue
        relative = artifact_path_in_root(resolved, root)
        if relative is None:
            bad.append(f"{model_id}: {resolved} is outside the backed-up artifact root {root.uri}")
            continue
        inside = f"{ARTIFACTS_DIR}/{relative}".rstrip("/")
        if inside not in listed and not any(path.startswith(inside + "/") for path in listed):
            bad.append(f"{model_id}: no file under {resolved} is in the backup")
            continue
        if model_id in digests:
            found = directory_digest(backup_dir / inside)
            if found != digests[model_id]:
                signed = digests[model_id]
                bad.append(f"{model_id}: files' digest {found[:12]}... is not the signed {signed[:12]}...")
                continue
            matched += 1
    if bad:
        return False, _named(bad, "model version(s) without their files")
    return True, (
        f"the files of {len(locations)} model version(s) are in the backup; "
        f"{matched} match the artifact digest their attestations signed"
    )


def _named(problems: list[str], what: str) -> str:
    more = f"; and {len(problems) - NAMED} more" if len(problems) > NAMED else ""
    return f"{len(problems)} {what}: " + "; ".join(problems[:NAMED]) + more
