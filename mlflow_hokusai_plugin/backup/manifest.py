"""``manifest.json``: what a backup holds, and the check that its files are still exactly that.

The manifest lists every file of the backup (relative path, sha256, size), where the data came
from (URIs without passwords), when, with which plugin and MLflow versions and schema revisions,
and the row counts that ``hokusai backup verify`` compares against a restored copy. It is written
last, into a directory that is renamed into place only afterwards: a backup with a manifest is a
complete backup.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.uris import safe_relative_path
from mlflow_hokusai_plugin.core.canonical import sha256_hex
from mlflow_hokusai_plugin.core.progress import Progress, no_progress
from mlflow_hokusai_plugin.store.artifact_digest import file_sha256

MANIFEST_NAME = "manifest.json"
FORMAT = "hokusai-backup"
FORMAT_VERSION = 1
ARTIFACTS_DIR = "artifacts"


@dataclass(frozen=True)
class FileEntry:
    """One file of a backup: path relative to the backup directory (POSIX), sha256, size."""

    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def describe_file(backup_dir: Path, relative: str) -> FileEntry:
    """Hash one file of a backup directory."""
    path = backup_dir / relative
    return FileEntry(relative, file_sha256(path), path.stat().st_size)


def build_manifest(
    *,
    created_at: str,
    created_at_unix: float,
    source: dict[str, str],
    versions: dict[str, str],
    database: dict[str, str],
    alembic: dict[str, str | None],
    counts: dict[str, int | None],
    files: Iterable[FileEntry],
) -> dict:
    """The manifest document (a JSON object); ``files`` sorted by path."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at,
        "created_at_unix": created_at_unix,
        "source": source,
        "versions": versions,
        "database": database,
        "alembic": alembic,
        "counts": counts,
        "files": [entry.to_dict() for entry in sorted(files, key=lambda entry: entry.path)],
    }


def write_manifest(backup_dir: Path, manifest: dict) -> str:
    """Write ``manifest.json`` durably; returns the sha256 of its bytes (recorded in the database)."""
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    path = backup_dir / MANIFEST_NAME
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return sha256_hex(data)


def read_manifest(backup_dir: Path) -> tuple[dict, str]:
    """The manifest of a backup directory and the sha256 of its bytes.

    A missing, unreadable or foreign manifest is a :class:`BackupError` (bad input).
    """
    path = Path(backup_dir) / MANIFEST_NAME
    if not Path(backup_dir).is_dir():
        raise BackupError(f"{backup_dir} is not a directory")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupError(
            f"{backup_dir} has no {MANIFEST_NAME}: not a backup, or one that never finished"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BackupError(f"{path} is not JSON: {exc}") from None
    _check_shape(manifest, path)
    return manifest, sha256_hex(data)


def file_entries(manifest: dict) -> list[FileEntry]:
    return [FileEntry(entry["path"], entry["sha256"], entry["size"]) for entry in manifest["files"]]


def damaged_files(backup_dir: Path, manifest: dict, progress: Progress = no_progress) -> list[str]:
    """One message per listed file that is missing, of another size or of another sha256.

    Sizes are compared first, so a truncated file is named without reading it. ``progress``
    advances once per file checked.
    """
    problems = []
    entries = file_entries(manifest)
    for entry in progress(entries, total=len(entries), desc="checking files"):
        path = Path(backup_dir) / entry.path
        if not path.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
            continue
        digest = file_sha256(path)
        if digest != entry.sha256:
            problems.append(
                f"{entry.path}: sha256 {digest[:12]}... is not the manifest's {entry.sha256[:12]}..."
            )
    return problems


def unlisted_files(backup_dir: Path, manifest: dict) -> list[str]:
    """Files in the backup directory that the manifest does not list (besides the manifest)."""
    listed = {entry["path"] for entry in manifest["files"]} | {MANIFEST_NAME}
    found = (
        path.relative_to(backup_dir).as_posix() for path in Path(backup_dir).rglob("*") if path.is_file()
    )
    return sorted(path for path in found if path not in listed)


def _check_shape(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Hokusai backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} has format version {manifest.get('format_version')!r}; "
            f"this hokusai reads version {FORMAT_VERSION}"
        )
    for key, kind in (
        ("files", list),
        ("counts", dict),
        ("database", dict),
        ("source", dict),
        ("alembic", dict),
    ):
        if not isinstance(manifest.get(key), kind):
            raise BackupError(f"{path}: {key!r} is missing or not a JSON {kind.__name__}")
    for entry in manifest["files"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            raise BackupError(f"{path}: a file entry is not {{path, sha256, size}}: {entry!r}")
        # A manifest naming ../x would make restore read (or verify hash) outside the backup.
        safe_relative_path(entry["path"])
    database_file = manifest["database"].get("file")
    if not isinstance(database_file, str) or database_file not in {e["path"] for e in manifest["files"]}:
        raise BackupError(f"{path}: the database file is not among the listed files")
