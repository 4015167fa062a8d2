"""The digest of a model's artifact files: the in-toto subject digest of an attestation.

sha256 over the canonical manifest (relative path, sha256, size) of every file, so the digest
names the files' content and layout, not where they are stored.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mlflow_hokusai_plugin.core.canonical import manifest_digest

# MLflow writes this file into a download of ``models:/<name>/<version>``; it names the version, so
# it is not part of the model and must not change the model's digest.
DOWNLOAD_ONLY_FILES = frozenset({"registered_model_meta"})
# Where ``mlflow server --artifacts-destination`` tells its workers the proxied artifacts live.
SERVER_ARTIFACT_DESTINATION_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_digest(root: str | os.PathLike) -> str:
    """sha256 of the canonical manifest of every file under ``root``."""
    root = Path(root)
    files = [
        (path.relative_to(root).as_posix(), file_sha256(path), path.stat().st_size)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name not in DOWNLOAD_ONLY_FILES
    ]
    return manifest_digest(files)


def storage_uri(artifact_uri: str) -> str:
    """Where an artifact URI really points, seen from inside the MLflow server.

    ``mlflow-artifacts:/<path>`` only means something to a client talking to the server; the
    server itself reads ``<--artifacts-destination>/<path>``.
    """
    if not artifact_uri.startswith("mlflow-artifacts:"):
        return artifact_uri
    destination = os.environ.get(SERVER_ARTIFACT_DESTINATION_ENV)
    if not destination:
        raise RuntimeError(
            f"cannot read {artifact_uri}: this process is not an MLflow server serving artifacts "
            f"({SERVER_ARTIFACT_DESTINATION_ENV} is not set)"
        )
    path = artifact_uri.split(":", 1)[1]
    if path.startswith("//"):
        # mlflow-artifacts://host:port/path: drop the authority.
        path = "/" + path[2:].split("/", 1)[1] if "/" in path[2:] else "/"
    return destination.rstrip("/") + "/" + path.lstrip("/")


def artifact_uri_digest(artifact_uri: str) -> str:
    """Download everything under ``artifact_uri`` (any MLflow artifact store) and digest it."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(storage_uri(artifact_uri))
    with tempfile.TemporaryDirectory(prefix="hokusai-digest-") as tmp:
        local = repository.download_artifacts("", dst_path=tmp)
        return directory_digest(local)
