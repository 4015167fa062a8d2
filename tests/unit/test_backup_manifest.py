"""The pure parts of backups: passwords kept out of URIs and messages, artifact roots and paths,
model locations, and the manifest's check of a backup's files (on a temporary directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_hokusai_plugin.backup.errors import BackupError
from mlflow_hokusai_plugin.backup.manifest import (
    MANIFEST_NAME,
    build_manifest,
    damaged_files,
    describe_file,
    read_manifest,
    unlisted_files,
    write_manifest,
)
from mlflow_hokusai_plugin.backup.uris import (
    artifact_path_in_root,
    dialect_of,
    parse_artifact_root,
    password_of,
    redact,
    resolve_model_location,
    safe_relative_path,
)
from mlflow_hokusai_plugin.core.canonical import sha256_hex
from mlflow_hokusai_plugin.runtime.uris import without_password

# -- URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("hokusai+postgresql://u:p@db/m", "hokusai+postgresql://u@db/m"),
        (
            "hokusai+postgresql://u:p%40ss:w@db:5433/m?sslmode=require",
            "hokusai+postgresql://u@db:5433/m?sslmode=require",
        ),
        ("postgresql+psycopg2://u@db/m", "postgresql+psycopg2://u@db/m"),
        ("hokusai+postgresql://u:pa/ss@db/m", "hokusai+postgresql://u@db/m"),
        ("mysql://root:hunter2@db/m", "mysql://root@db/m"),
        ("hokusai+postgresql://db/m", "hokusai+postgresql://db/m"),
        ("hokusai+sqlite:////srv/mlflow.db", "hokusai+sqlite:////srv/mlflow.db"),
    ],
)
def test_without_password(uri, expected):
    assert without_password(uri) == expected


def test_password_of_and_redact():
    uri = "hokusai+postgresql://u:p%40ss%2Fw@db/m"
    assert password_of(uri) == "p@ss/w"
    assert password_of("hokusai+postgresql://u@db/m") is None
    message = f"failed on {uri} with p@ss/w"
    assert redact(message, password_of(uri)) == "failed on hokusai+postgresql://u:***@db/m with ***"
    assert redact("nothing to hide", None, "") == "nothing to hide"


def test_dialect_of_refuses_other_databases_without_showing_the_password():
    assert dialect_of("hokusai+postgresql://u@db/m") == "postgresql"
    with pytest.raises(BackupError) as caught:
        dialect_of("mysql://root:hunter2@db/m")
    assert "hunter2" not in str(caught.value) and "mysql://root@db/m" in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix", "normal"),
    [
        ("s3://b", "b", "", "s3://b"),
        ("s3://b/", "b", "", "s3://b"),
        ("s3://b/a/b/", "b", "a/b/", "s3://b/a/b"),
    ],
)
def test_s3_roots(uri, bucket, prefix, normal):
    root = parse_artifact_root(uri)
    assert (root.bucket, root.prefix, root.uri, root.is_s3) == (bucket, prefix, normal, True)


def test_local_roots_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_artifact_root("./mlartifacts").prefix == str(tmp_path / "mlartifacts")
    assert parse_artifact_root(f"file://{tmp_path}/a%20b").prefix == str(tmp_path / "a b")
    assert not parse_artifact_root("/srv/x").is_s3
    for bad in ("gs://bucket/x", "s3:///no-bucket"):
        with pytest.raises(BackupError):
            parse_artifact_root(bad)


def test_artifact_paths_in_a_root():
    s3 = parse_artifact_root("s3://b/root")
    assert artifact_path_in_root("mlflow-artifacts://server:5000/2/r/artifacts", s3) == "2/r/artifacts"
    assert artifact_path_in_root("s3://b/root", s3) == ""
    assert artifact_path_in_root("s3://b/rootless/x", s3) is None  # a prefix of the name is not a parent
    local = parse_artifact_root("/srv/art")
    assert artifact_path_in_root("file:///srv/art/1/m", local) == "1/m"
    assert artifact_path_in_root("/srv/art/1/m", local) == "1/m"
    assert artifact_path_in_root("/srv/artifacts/1", local) is None


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a\\b"])
def test_unsafe_relative_paths_are_refused(key):
    with pytest.raises(BackupError):
        safe_relative_path(key)


def test_model_locations_resolve_through_links():
    logged = {"m-1": "mlflow-artifacts:/1/models/m-1/artifacts"}
    runs = {"r": "s3://b/1/r/artifacts/"}
    versions = {
        ("churn", "1"): "models:/m-1",
        ("churn", "2"): "models:/churn/1",
        ("loop", "1"): "models:/loop/1",
    }
    assert resolve_model_location("models:/churn/2", logged, runs, versions) == logged["m-1"]
    assert resolve_model_location("runs:/r", logged, runs, versions) == "s3://b/1/r/artifacts"
    assert resolve_model_location("s3://b/x", {}, {}, {}) == "s3://b/x"
    for unknown in ("models:/m-2", "models:/churn/9", "runs:/nope/model"):
        with pytest.raises(BackupError, match="not in the database|no such model version"):
            resolve_model_location(unknown, logged, runs, versions)
    with pytest.raises(BackupError, match="too many"):
        resolve_model_location("models:/loop/1", logged, runs, versions)


# -- the manifest ---------------------------------------------------------------------------------


def make_backup(directory: Path) -> dict:
    (directory / "artifacts" / "1" / "m").mkdir(parents=True)
    (directory / "database.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (directory / "artifacts" / "1" / "m" / "MLmodel").write_text("flavors: {}\n")
    (directory / "artifacts" / "1" / "m" / "model.pkl").write_bytes(bytes(range(256)))
    files = [
        describe_file(directory, path)
        for path in ("artifacts/1/m/model.pkl", "database.sqlite", "artifacts/1/m/MLmodel")
    ]
    manifest = build_manifest(
        created_at="2025-01-01T00:00:00Z",
        created_at_unix=1735689600.0,
        source={"store_uri": "hokusai+sqlite:///x.db", "artifacts": "/srv/art"},
        versions={"hokusai_plugin": "0", "mlflow": "0"},
        database={"kind": "sqlite", "file": "database.sqlite", "format": "sqlite"},
        alembic={"mlflow": "a", "hokusai": "0003_backups"},
        counts={"model_versions": 2},
        files=files,
    )
    return manifest


def test_manifest_round_trip_and_its_hash(tmp_path):
    manifest = make_backup(tmp_path)
    assert [entry["path"] for entry in manifest["files"]] == sorted(
        entry["path"] for entry in manifest["files"]
    )
    digest = write_manifest(tmp_path, manifest)
    assert digest == sha256_hex((tmp_path / MANIFEST_NAME).read_bytes())
    assert read_manifest(tmp_path) == (manifest, digest)
    assert damaged_files(tmp_path, manifest) == [] and unlisted_files(tmp_path, manifest) == []


def test_damaged_files_are_named(tmp_path):
    manifest = make_backup(tmp_path)
    model = tmp_path / "artifacts/1/m/model.pkl"
    model.write_bytes(bytes(reversed(range(256))))  # same size, other content
    (tmp_path / "database.sqlite").write_bytes(b"short")
    (tmp_path / "artifacts/1/m/MLmodel").unlink()
    (tmp_path / "artifacts/extra.txt").write_text("slipped in")
    problems = damaged_files(tmp_path, manifest)
    assert problems[0] == "artifacts/1/m/MLmodel: missing"
    assert (
        problems[1].startswith("artifacts/1/m/model.pkl: sha256 ") and "is not the manifest's" in problems[1]
    )
    assert problems[2] == "database.sqlite: 5 bytes, the manifest says 116"
    assert unlisted_files(tmp_path, manifest) == ["artifacts/extra.txt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="something-else"), "not a Hokusai backup manifest"),
        (lambda m: m.update(format_version=2), "format version 2"),
        (
            lambda m: m["files"].append({"path": "../../etc/passwd", "sha256": "0", "size": 1}),
            "not a safe relative",
        ),
        (lambda m: m["files"].append({"path": "x"}), "not {path, sha256, size}"),
        (lambda m: m.update(counts=[]), "'counts' is missing"),
        (lambda m: m["database"].update(file="elsewhere.sqlite"), "database file is not among"),
    ],
)
def test_foreign_or_unsafe_manifests_are_refused(tmp_path, change, message):
    manifest = make_backup(tmp_path)
    change(manifest)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=message.replace("{", r"\{").replace("}", r"\}")):
        read_manifest(tmp_path)


def test_missing_or_unreadable_manifests(tmp_path):
    with pytest.raises(BackupError, match="has no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BackupError, match="is not JSON"):
        read_manifest(tmp_path)
    with pytest.raises(BackupError, match="is not a directory"):
        read_manifest(tmp_path / "nope")
