"""Reading and writing every object of an artifact root: S3 (boto3) or a local directory.

An object's key below the root becomes the relative path of a file in the backup's
``artifacts/`` directory, and back on restore. S3 settings come from the environment MLflow uses
(``MLFLOW_S3_ENDPOINT_URL``, ``MLFLOW_S3_IGNORE_TLS``, ``AWS_*``), so the backup reads the bucket
the server writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.uris import ArtifactRoot, safe_relative_path
from mlflow_hokusai_plugin.core.progress import Progress, no_progress

# Objects move one request each: a few in flight hide the per-request latency of S3.
TRANSFER_THREADS = 8
_CHUNK = 1 << 20


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class _Hashing:
    """A writable file that hashes what goes through it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, block: bytes) -> None:
        self.handle.write(block)
        self.sha256.update(block)
        self.size += len(block)

    def close(self) -> tuple[str, int]:
        # Durable before the manifest names it: the manifest is only true of files on disk.
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return self.sha256.hexdigest(), self.size


class LocalArtifacts:
    """An artifact root on the local file system (``--artifacts-destination ./mlartifacts``)."""

    def __init__(self, root: ArtifactRoot) -> None:
        self.root = root
        self.directory = Path(root.prefix)

    def check_readable(self) -> None:
        if not self.directory.is_dir():
            raise BackupError(f"the artifact directory {self.directory} does not exist")

    def check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupError(
                f"cannot create the artifact directory {self.directory}: {exc.strerror}"
            ) from None

    def is_empty(self) -> bool:
        return not self.directory.exists() or next(self._files(), None) is None

    def keys(self) -> list[str]:
        return sorted(path.relative_to(self.directory).as_posix() for path in self._files())

    def download(self, key: str, destination: Path) -> tuple[str, int]:
        out = _Hashing(destination)
        try:
            with open(self.directory / key, "rb") as handle:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    out.write(block)
        finally:
            digest = out.close()
        return digest

    def upload(self, source: Path, key: str) -> None:
        target = self.directory / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        _fsync(target)

    def _files(self) -> Iterator[Path]:
        return (path for path in self.directory.rglob("*") if path.is_file())


class S3Artifacts:
    """An artifact root in an S3 bucket, under a key prefix."""

    def __init__(self, root: ArtifactRoot) -> None:
        import boto3
        from botocore.config import Config

        self.root = root
        self.endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
        ignore_tls = os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() in ("1", "true", "yes")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            verify=False if ignore_tls else None,
            config=Config(max_pool_connections=TRANSFER_THREADS * 2, retries={"mode": "standard"}),
        )

    def check_readable(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.root.bucket)

    check_writable = check_readable

    def is_empty(self) -> bool:
        with self._errors():
            page = self.client.list_objects_v2(Bucket=self.root.bucket, Prefix=self.root.prefix, MaxKeys=1)
        return not page.get("Contents")

    def keys(self) -> list[str]:
        keys = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.root.bucket, Prefix=self.root.prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.root.prefix) :]
                    # "dir/" placeholders some tools create hold no data and cannot be files.
                    if key and not key.endswith("/"):
                        keys.append(key)
        return sorted(keys)

    def download(self, key: str, destination: Path) -> tuple[str, int]:
        out = _Hashing(destination)
        try:
            with self._errors(key):
                body = self.client.get_object(Bucket=self.root.bucket, Key=self.root.prefix + key)["Body"]
                for block in body.iter_chunks(_CHUNK):
                    out.write(block)
        finally:
            digest = out.close()
        return digest

    def upload(self, source: Path, key: str) -> None:
        with self._errors(key):
            self.client.upload_file(str(source), self.root.bucket, self.root.prefix + key)

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        where = f"s3://{self.root.bucket}/{self.root.prefix}{key}" if key else self.root.uri
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchKey" or (code == "404" and key):
                raise BackupError(f"the object {where} does not exist{self._at()}") from None
            if code in ("404", "NoSuchBucket"):
                raise BackupError(f"the bucket {self.root.bucket} does not exist{self._at()}") from None
            if code in ("403", "AccessDenied"):
                raise BackupError(
                    f"access to {where} denied{self._at()}: check the AWS credentials"
                ) from None
            raise BackupError(
                f"S3 error on {where}{self._at()}: {code} {error.get('Message', '')}".strip()
            ) from None
        except NoCredentialsError:
            raise BackupError(
                f"no AWS credentials to read {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or a profile or role)"
            ) from None
        except EndpointConnectionError:
            raise BackupError(f"cannot reach the S3 endpoint{self._at() or ' of AWS'} for {where}") from None
        except BotoCoreError as exc:
            raise BackupError(f"S3 error on {where}{self._at()}: {exc}") from None

    def _at(self) -> str:
        return f" at {self.endpoint}" if self.endpoint else ""


def open_artifacts(root: ArtifactRoot) -> LocalArtifacts | S3Artifacts:
    """The store behind an artifact root."""
    return S3Artifacts(root) if root.is_s3 else LocalArtifacts(root)


def copy_out(
    store: LocalArtifacts | S3Artifacts, destination: Path, progress: Progress = no_progress
) -> list[tuple[str, str, int]]:
    """Copy every object of ``store`` under ``destination``; returns (key, sha256, size) per object.

    ``progress`` advances once per object copied.
    """
    keys = [safe_relative_path(key) for key in store.keys()]

    def fetch(key: str) -> tuple[str, str, int]:
        return (key, *store.download(key, destination / key))

    return _parallel(fetch, keys, progress, "copying artifacts")


def copy_in(
    store: LocalArtifacts | S3Artifacts, source: Path, keys: Iterable[str], progress: Progress = no_progress
) -> int:
    """Upload the files ``source/<key>`` to ``store`` under ``key``; returns how many.

    ``progress`` advances once per file uploaded.
    """
    keys = [safe_relative_path(key) for key in keys]
    return len(_parallel(lambda key: store.upload(source / key, key), keys, progress, "restoring artifacts"))


def _parallel(work: Callable, items: list, progress: Progress, desc: str) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(items))) as pool:
        # list() re-raises the first failure; the pool waits for the others before closing. map()
        # yields in order, so the count is of the longest finished prefix: never ahead of the work.
        return list(progress(pool.map(work, items), total=len(items), desc=desc))
