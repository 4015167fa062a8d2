"""Store URI passwords (to redact from messages), artifact roots, and where a model's files sit in a backup.

Pure string work, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.db.urls import SCHEME_PREFIX, database_url
from mlflow_hokusai_plugin.runtime.uris import without_password


def password_of(store_uri: str) -> str | None:
    """The password in a URI (any database URL, supported or not), if any.

    >>> password_of("hokusai+postgresql://u:p%40ss@db/mlflow")
    'p@ss'
    >>> password_of("mysql://root:hunter2@db/m")
    'hunter2'
    >>> password_of("hokusai+sqlite:///mlflow.db") is None
    True
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    uri = store_uri[len(SCHEME_PREFIX) :] if store_uri.startswith(SCHEME_PREFIX) else store_uri
    try:
        return make_url(uri).password
    except (ArgumentError, ValueError):
        return None


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret (and its URL-quoted spelling) replaced by ``***``.

    >>> redact("connect postgresql://u:pa%2Fss@db failed (pa/ss)", "pa/ss")
    'connect postgresql://u:***@db failed (***)'
    """
    from urllib.parse import quote

    for secret in secrets:
        if secret:
            for spelling in {secret, quote(secret, safe="")}:
                text = text.replace(spelling, "***")
    return text


def dialect_of(store_uri: str) -> str:
    """``postgresql`` or ``sqlite``; anything else is a :class:`BackupError`.

    >>> dialect_of("hokusai+postgresql://u@db/mlflow"), dialect_of("sqlite:///x.db")
    ('postgresql', 'sqlite')
    """
    try:
        url = database_url(store_uri)
    except ValidationError:
        shown = without_password(store_uri)
        raise BackupError(
            f"{shown!r} is not a store URI: use {SCHEME_PREFIX}postgresql://... or {SCHEME_PREFIX}sqlite:///..."
        ) from None
    return url.split(":", 1)[0].split("+", 1)[0]


@dataclass(frozen=True)
class ArtifactRoot:
    """Where a deployment's artifacts live: ``s3://bucket/prefix`` or a local directory."""

    uri: str
    bucket: str | None  # S3 only
    prefix: str  # S3: the key prefix, "" or ending with "/"; local: the absolute directory

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None


def parse_artifact_root(uri: str) -> ArtifactRoot:
    """An artifact root from ``s3://bucket[/prefix]``, ``file:///dir`` or a directory path.

    >>> parse_artifact_root("s3://mlflow/artifacts/")
    ArtifactRoot(uri='s3://mlflow/artifacts', bucket='mlflow', prefix='artifacts/')
    >>> parse_artifact_root("file:///srv/mlartifacts").prefix
    '/srv/mlartifacts'
    """
    import os

    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        if not parts.netloc:
            raise BackupError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        prefix = parts.path.strip("/")
        return ArtifactRoot(
            f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else ""),
            parts.netloc,
            prefix + "/" if prefix else "",
        )
    if "://" in uri and not uri.startswith("file://"):
        raise BackupError(f"{uri!r}: artifact roots are s3://bucket/prefix or a local directory")
    path = unquote(urlsplit(uri).path) if uri.startswith("file://") else uri
    directory = os.path.abspath(os.path.expanduser(path))
    return ArtifactRoot(directory, None, directory)


def safe_relative_path(key: str) -> str:
    """``key`` as a relative POSIX path that stays inside the directory it is joined to.

    >>> safe_relative_path("1/models/m-1/artifacts/MLmodel")
    '1/models/m-1/artifacts/MLmodel'
    >>> safe_relative_path("../etc/passwd")
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.backup.errors.BackupError: '../etc/passwd' is not a safe relative path
    """
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in key:
        raise BackupError(f"{key!r} is not a safe relative path")
    return key


def artifact_path_in_root(artifact_uri: str, root: ArtifactRoot) -> str | None:
    """Where ``artifact_uri`` sits under ``root``, as a relative path; ``None`` if outside it.

    ``mlflow-artifacts:/<path>`` is how clients of a server that proxies artifacts see
    ``<--artifacts-destination>/<path>``.

    >>> root = parse_artifact_root("s3://bkt/artifacts")
    >>> artifact_path_in_root("mlflow-artifacts:/1/models/m-1/artifacts", root)
    '1/models/m-1/artifacts'
    >>> artifact_path_in_root("s3://bkt/artifacts/1/abc/artifacts/model", root)
    '1/abc/artifacts/model'
    >>> artifact_path_in_root("s3://other/1/abc", root) is None
    True
    """
    if artifact_uri.startswith("mlflow-artifacts:"):
        path = artifact_uri.split(":", 1)[1]
        if path.startswith("//"):  # mlflow-artifacts://host:port/path: drop the authority
            path = path[2:].partition("/")[2]
        return path.strip("/")
    if root.is_s3:
        base = f"s3://{root.bucket}/{root.prefix}"
        candidate = artifact_uri
    else:
        base = root.prefix.rstrip("/") + "/"
        candidate = unquote(urlsplit(artifact_uri).path) if artifact_uri.startswith("file:") else artifact_uri
    if candidate.rstrip("/") + "/" == base:
        return ""
    if candidate.startswith(base):
        return candidate[len(base) :].strip("/")
    return None


def resolve_model_location(
    location: str,
    logged_models: Mapping[str, str],
    run_artifacts: Mapping[str, str],
    versions: Mapping[tuple[str, str], str],
) -> str:
    """Where a model version's files are, from its ``storage_location`` (or ``source``).

    ``models:/m-<id>`` is a logged model (``logged_models``: id -> artifact location),
    ``models:/<name>/<version>`` another version (``versions``: (name, version) -> location),
    ``runs:/<run id>/<path>`` a run's artifacts (``run_artifacts``: run id -> artifact URI).
    Anything else is already a storage URI. Unknown ids are a :class:`BackupError`.

    >>> resolve_model_location("models:/m-1", {"m-1": "mlflow-artifacts:/1/models/m-1/artifacts"}, {}, {})
    'mlflow-artifacts:/1/models/m-1/artifacts'
    >>> resolve_model_location("runs:/r1/model", {}, {"r1": "s3://b/1/r1/artifacts"}, {})
    's3://b/1/r1/artifacts/model'
    """
    for _hop in range(10):
        if location.startswith("models:/m-"):
            model_id = location[len("models:/") :].split("/", 1)[0]
            if model_id not in logged_models:
                raise BackupError(f"{location}: the logged model {model_id} is not in the database")
            location = logged_models[model_id]
        elif location.startswith("models:/"):
            name, _, version = location[len("models:/") :].partition("/")
            if (name, version) not in versions:
                raise BackupError(f"{location}: no such model version in the database")
            location = versions[(name, version)]
        elif location.startswith("runs:/"):
            run_id, _, path = location[len("runs:/") :].partition("/")
            if run_id not in run_artifacts:
                raise BackupError(f"{location}: the run {run_id} is not in the database")
            location = run_artifacts[run_id].rstrip("/") + ("/" + path if path else "")
        else:
            return location
    raise BackupError(f"{location}: resolves through too many models:/ links")
