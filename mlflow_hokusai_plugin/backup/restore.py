"""``hokusai backup restore``: every checksum first, then the artifacts, then the database.

Nothing is written before the whole backup has been checked against its manifest and both
targets found empty (or ``force`` given). Artifacts go first: a database restored without its
artifacts would serve versions whose files are missing, while artifacts without their rows are
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect

from mlflow_hokusai_plugin.backup import databases
from mlflow_hokusai_plugin.backup.artifact_stores import copy_in, open_artifacts
from mlflow_hokusai_plugin.backup.connections import database_errors, engine_for
from mlflow_hokusai_plugin.backup.errors import BackupError, DamagedBackup
from mlflow_hokusai_plugin.backup.manifest import ARTIFACTS_DIR, damaged_files, read_manifest
from mlflow_hokusai_plugin.backup.uris import dialect_of, parse_artifact_root
from mlflow_hokusai_plugin.core.progress import Progress, no_progress, one_step
from mlflow_hokusai_plugin.db.backups import record_backup
from mlflow_hokusai_plugin.db.models import Backup
from mlflow_hokusai_plugin.runtime.uris import without_password


@dataclass(frozen=True)
class RestoredBackup:
    manifest: dict
    artifacts_restored: int


def check_intact(backup_dir: Path, manifest: dict, progress: Progress = no_progress) -> None:
    """Raise :class:`DamagedBackup` naming the first file that is not what the manifest says."""
    problems = damaged_files(backup_dir, manifest, progress)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedBackup(f"the backup {backup_dir} is damaged, nothing was restored: {problems[0]}{more}")


def restore_backup(
    backup_dir: Path,
    store_uri: str,
    artifacts: str,
    *,
    force: bool = False,
    progress: Progress = no_progress,
) -> RestoredBackup:
    """Restore a backup into the database of ``store_uri`` and the artifact root ``artifacts``.

    Refuses a damaged backup, a database of the other kind, and non-empty targets unless ``force``
    (then the backup's tables and objects overwrite theirs; other tables and objects stay).
    ``progress`` is given the files checked, the artifacts uploaded and the database restore.
    """
    backup_dir = Path(backup_dir).expanduser().resolve()
    manifest, manifest_sha256 = read_manifest(backup_dir)
    kind_name = manifest["database"].get("kind")
    if dialect_of(store_uri) != kind_name:
        raise BackupError(
            f"this backup holds a {kind_name} database: restore it into a hokusai+{kind_name}:// store URI"
        )
    kind = databases.for_dialect(kind_name)
    check_intact(backup_dir, manifest, progress)

    root = parse_artifact_root(artifacts)
    store = open_artifacts(root)
    kind.check_target(store_uri)
    store.check_writable()
    if not force:
        if not kind.is_empty(store_uri):
            raise BackupError(
                f"the target database {without_password(store_uri)} is not empty: restore into an empty "
                "database, or pass --force to overwrite it"
            )
        if not store.is_empty():
            raise BackupError(
                f"the target artifact root {root.uri} is not empty: restore into an empty one, "
                "or pass --force to overwrite its objects"
            )

    prefix = ARTIFACTS_DIR + "/"
    keys = [entry["path"][len(prefix) :] for entry in manifest["files"] if entry["path"].startswith(prefix)]
    restored = copy_in(store, backup_dir / ARTIFACTS_DIR, keys, progress)
    one_step(
        progress,
        "restoring the database",
        lambda: kind.restore(backup_dir / manifest["database"]["file"], store_uri),
    )
    _remember_backup(store_uri, backup_dir, manifest, manifest_sha256)
    return RestoredBackup(manifest, restored)


def _remember_backup(store_uri: str, backup_dir: Path, manifest: dict, manifest_sha256: str) -> None:
    """Record, in the restored database, the backup it was restored from.

    The source recorded this backup only after dumping, so the dump does not contain it; without
    it the restored deployment would report its previous backup as its last one.
    """
    engine = engine_for(store_uri)
    try:
        with database_errors(store_uri, "record the restored backup in"):
            if not inspect(engine).has_table(Backup.__tablename__):
                return  # a backup from before 0003_backups; the server's migrations add the table
            record_backup(
                engine,
                location=str(backup_dir),
                manifest_sha256=manifest_sha256,
                counts=manifest["counts"],
                created_at=manifest["created_at_unix"],
            )
    finally:
        engine.dispose()
