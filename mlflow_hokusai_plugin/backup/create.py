"""``hokusai backup create``: the database, then every artifact, then the manifest, then the rename.

Order matters twice. The database is dumped before the artifacts are copied: artifacts are
immutable objects written before the rows that name them, so every object the dump refers to
already exists when the copy starts (objects added meanwhile are copied too, harmlessly). And the
backup is built in a hidden ``.partial`` directory renamed into place only once the manifest is
written: a crash leaves a ``.partial`` directory, never a complete-looking backup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.backup import databases
from mlflow_hokusai_plugin.backup.artifact_stores import copy_out, open_artifacts
from mlflow_hokusai_plugin.backup.connections import database_errors, engine_for
from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.manifest import (
    ARTIFACTS_DIR,
    FileEntry,
    build_manifest,
    describe_file,
    write_manifest,
)
from mlflow_hokusai_plugin.backup.uris import dialect_of, parse_artifact_root
from mlflow_hokusai_plugin.core.progress import Progress, no_progress, one_step
from mlflow_hokusai_plugin.core.timestamps import iso_utc
from mlflow_hokusai_plugin.db.backups import record_backup
from mlflow_hokusai_plugin.db.schema import upgrade
from mlflow_hokusai_plugin.runtime.uris import without_password

NAME_PREFIX = "hokusai-backup-"


@dataclass(frozen=True)
class CreatedBackup:
    path: Path
    manifest_sha256: str
    manifest: dict
    backup_id: int

    @property
    def total_bytes(self) -> int:
        return sum(entry["size"] for entry in self.manifest["files"])


def create_backup(
    store_uri: str, artifacts: str, output_dir: Path, progress: Progress = no_progress
) -> CreatedBackup:
    """Back up the store database and the artifact root into a new directory under ``output_dir``.

    Returns where it is and its manifest; the backup is also recorded in ``hokusai_backups``.
    ``progress`` is given the database dump and the artifacts copied.
    """
    dialect = dialect_of(store_uri)
    kind = databases.for_dialect(dialect)
    root = parse_artifact_root(artifacts)
    store = open_artifacts(root)
    store.check_readable()  # a missing bucket fails now, not after a long dump
    kind.check_source(store_uri)
    with database_errors(store_uri, "prepare"):
        # The plugin tables at head, so that hokusai_backups exists to record this backup.
        upgrade(store_uri)

    output_dir = Path(output_dir).expanduser().resolve()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create the output directory {output_dir}: {exc.strerror}") from None
    started = time.time()
    stamp = datetime.fromtimestamp(started, timezone.utc)
    name = NAME_PREFIX + stamp.strftime("%Y%m%dT%H%M%SZ")
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=output_dir))
    try:
        counts, revisions = one_step(
            progress, "dumping the database", lambda: kind.dump(store_uri, partial / kind.DUMP_FILE)
        )
        files = [describe_file(partial, kind.DUMP_FILE)]
        copied = copy_out(store, partial / ARTIFACTS_DIR, progress)
        files += [FileEntry(f"{ARTIFACTS_DIR}/{key}", sha256, size) for key, sha256, size in copied]
        manifest = build_manifest(
            created_at=iso_utc(started, milliseconds=False),
            created_at_unix=started,
            source={
                "store_uri": without_password(store_uri),
                "artifacts": root.uri,
                "s3_endpoint": os.environ.get("MLFLOW_S3_ENDPOINT_URL") if root.is_s3 else None,
            },
            versions={"hokusai_plugin": __version__, "mlflow": _mlflow_version()},
            database={"kind": dialect, "file": kind.DUMP_FILE, "format": kind.DUMP_FORMAT},
            alembic=revisions,
            counts=counts,
            files=files,
        )
        manifest_sha256 = write_manifest(partial, manifest)
        final = _free_path(output_dir, name)
        os.rename(partial, final)
        _fsync_directory(output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise

    engine = engine_for(store_uri)
    try:
        with database_errors(store_uri, f"record the backup {final} in"):
            backup_id = record_backup(
                engine,
                location=str(final),
                manifest_sha256=manifest_sha256,
                counts=counts,
                created_at=started,
            )
    finally:
        engine.dispose()
    return CreatedBackup(final, manifest_sha256, manifest, backup_id)


def _free_path(output_dir: Path, name: str) -> Path:
    # Two backups started in the same second get distinct names instead of one failing.
    candidate, index = output_dir / name, 1
    while candidate.exists():
        index += 1
        candidate = output_dir / f"{name}-{index}"
    return candidate


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"
