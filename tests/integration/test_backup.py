"""``hokusai backup`` on real PostgreSQL and S3 over HTTP (moto): the disaster drill, and refusals.

The drill: a hokusai server registers a baseline and two attested improvements with artifacts in
a bucket of their own; ``hokusai backup create`` backs up; the server is stopped, the database
dropped and the bucket emptied; ``hokusai backup restore`` brings both back into a recreated empty
database of the same name; ``hokusai backup verify`` passes; a server started on the restored
database serves the same versions, tags, aliases, runs, attestations and audit chain, its models
download with the digests their attestations signed, and it keeps attesting.

Then: a tampered file is refused by restore and named by verify; a backup whose rows were altered
(a forged attestation, an edited audit entry, a dangling attestation tag) restores but fails
verify; SQLite with local artifacts; a progress bar on a terminal and none on a pipe; bad input is
one line and exit 2, never a password.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mlflow_hokusai_plugin.backup import create_backup, restore_backup, verify_backup
from mlflow_hokusai_plugin.backup.database_facts import read_counts
from mlflow_hokusai_plugin.backup.postgres import SCRATCH_PREFIX
from mlflow_hokusai_plugin.cli import main
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.db.audit import AuditLog
from mlflow_hokusai_plugin.db.backups import last_backup_time
from mlflow_hokusai_plugin.db.records import make_engine
from mlflow_hokusai_plugin.db.schema import head_revision, upgrade
from mlflow_hokusai_plugin.store.artifact_digest import directory_digest, file_sha256
from tests.integration.test_cli import HOKUSAI, hokusai
from tests.integration.test_server_plugin import (
    attester_address,
    http_get,
    mlflow_env,
    register_baseline,
    register_improvement,
    unique,
)
from tests.integration.test_services import verify_like_an_outsider

PASSWORD = "s3cr3t-backup-pw"
MALLORY = "0x" + "11" * 20


# -- helpers --------------------------------------------------------------------------------------


def cli(*args: str, env: dict | None = None):
    """Run ``hokusai <args>`` in-process; an exception other than the exit itself is a traceback."""
    result = CliRunner().invoke(main, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def with_password(store_uri: str) -> str:
    """The store URI with a password in it (trust authentication ignores it), to prove it never leaks."""
    scheme, rest = store_uri.split("://", 1)
    userinfo, host = rest.split("@", 1)
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{PASSWORD}@{host}"


def pg_store_uri(db_url: str) -> str:
    return with_password("hokusai+postgresql://" + db_url.split("://", 1)[1])


def scalar(store_uri: str, statement: str, **params):
    engine = make_engine(store_uri)
    try:
        with engine.connect() as connection:
            return connection.execute(text(statement), params).scalar()
    finally:
        engine.dispose()


def execute(store_uri: str, statement: str, **params) -> None:
    engine = make_engine(store_uri)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        engine.dispose()


def keys_under(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def scratch_databases(postgres) -> list[str]:
    engine = create_engine(postgres.base_url.replace("postgresql://", "postgresql+psycopg2://") + "/postgres")
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": SCRATCH_PREFIX + "%"}
                ).scalars()
            )
    finally:
        engine.dispose()


def facts(server, store_uri: str, name: str, tmp_path: Path) -> dict:
    """Everything a user would miss after a restore, read through the server and the tables.

    Models are downloaded through the server and digested the way attestations digest them.
    """
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    versions, runs, attestations, downloads = {}, {}, {}, {}
    for mv in client.search_model_versions(f"name = '{name}'"):
        versions[mv.version] = {
            "tags": mv.tags,
            "source": mv.source,
            "run_id": mv.run_id,
            "description": mv.description,
            "status": mv.status,
        }
        run = client.get_run(mv.run_id)
        runs[mv.run_id] = {"metrics": run.data.metrics, "tags": run.data.tags}
        if T.ATTESTATION_ID in mv.tags:
            status, document = http_get(
                f"{server.url}/api/2.0/hokusai/attestations/{mv.tags[T.ATTESTATION_ID]}"
            )
            assert status == 200, document
            attestations[document["id"]] = document
        with mlflow_env():
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            local = mlflow.artifacts.download_artifacts(
                f"models:/{name}/{mv.version}", dst_path=str(tmp_path / f"download-{uuid.uuid4().hex[:6]}")
            )
        downloads[mv.version] = directory_digest(local)
    log = AuditLog.from_store_uri(store_uri)
    try:
        audit = log.entries()
        chain = log.verify()
    finally:
        log.close()
    return {
        "versions": versions,
        "aliases": client.get_registered_model(name).aliases,
        "runs": runs,
        "attestations": attestations,
        "downloads": downloads,
        "audit": audit,
        "chain_ok": chain.ok,
        "edges": scalar(store_uri, "SELECT COUNT(*) FROM hokusai_lineage_edges"),
        "contributions": scalar(store_uri, "SELECT COUNT(*) FROM hokusai_contributions"),
    }


@dataclass
class Deployment:
    """A hokusai server on PostgreSQL with its artifacts in a bucket of its own."""

    server: object
    db_url: str
    store_uri: str
    bucket: str
    artifacts: str
    name: str
    facts: dict


@dataclass
class BackedUp:
    path: Path
    manifest: dict
    stdout: str
    stderr: str
    before: float | None  # last_backup_time() before the backup


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_env(s3):
    return dict(s3.env)


@pytest.fixture(scope="module")
def deployment(hokusai_servers, postgres, s3, tmp_path_factory):
    bucket = f"hokusai-backup-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    db_url = postgres.create_database("hokusai_backup")
    store_uri = pg_store_uri(db_url)
    artifacts = f"s3://{bucket}/mlartifacts"
    server = None
    try:  # a failed setup must not leave its database behind either
        server = hokusai_servers.start(store_uri=store_uri, artifacts_destination=artifacts, workers=1)
        name = unique("bk")
        with mlflow_env():
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            mlflow.set_experiment(unique("backup"))
            client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
            baseline = register_baseline(name)
            first = register_improvement(client, name, baseline, {"accuracy": 0.82, "f1_score": 0.74})
            second = register_improvement(
                client, name, f"{name}/{first.version}", {"accuracy": 0.85, "f1_score": 0.76}
            )
            assert second.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
            client.set_registered_model_alias(name, "champion", second.version)
        found = facts(server, store_uri, name, tmp_path_factory.mktemp("facts"))
        assert len(found["versions"]) == 3 and len(found["attestations"]) == 2 and found["chain_ok"]
        yield Deployment(server, db_url, store_uri, bucket, artifacts, name, found)
    finally:
        if server is not None:
            server.stop()
        postgres.drop_database(db_url)


@pytest.fixture(scope="module")
def backed_up(deployment, s3_env, tmp_path_factory) -> BackedUp:
    """``hokusai backup create`` of the deployment while its server runs."""
    engine = make_engine(deployment.store_uri)
    try:
        before = last_backup_time(engine)
    finally:
        engine.dispose()
    output = tmp_path_factory.mktemp("backups")
    made = cli(
        "backup",
        "create",
        "--store-uri",
        deployment.store_uri,
        "--artifacts",
        deployment.artifacts,
        "--output",
        str(output),
        env=s3_env,
    )
    assert made.exit_code == 0, made.output
    path = Path(made.stdout.strip())
    return BackedUp(path, json.loads((path / "manifest.json").read_text()), made.stdout, made.stderr, before)


# -- the drill ------------------------------------------------------------------------------------


def test_disaster_drill_restores_everything(
    deployment, backed_up, postgres, s3, s3_env, hokusai_servers, tmp_path
):
    manifest = backed_up.manifest
    # What the backup holds and says.
    assert backed_up.path.parent.name.startswith("backups")
    assert backed_up.path.name.startswith("hokusai-backup-")
    assert [p.name for p in backed_up.path.parent.iterdir()] == [backed_up.path.name]  # no .partial left
    assert manifest["database"] == {"kind": "postgresql", "file": "database.dump", "format": "pg_dump custom"}
    assert manifest["alembic"]["hokusai"] == head_revision() and manifest["alembic"]["mlflow"]
    assert manifest["source"]["artifacts"] == deployment.artifacts
    assert manifest["source"]["store_uri"] == deployment.store_uri.replace(f":{PASSWORD}", "")
    counts = manifest["counts"]
    assert (counts["model_versions"], counts["attestations"], counts["lineage_edges"]) == (3, 2, 2)
    assert counts["audit_entries"] == counts["audit_head_seq"] == len(deployment.facts["audit"])
    listed = {entry["path"]: entry for entry in manifest["files"]}
    objects = keys_under(s3, deployment.bucket, "mlartifacts/")
    assert {f"artifacts/{key[len('mlartifacts/') :]}" for key in objects} | {"database.dump"} == set(listed)
    for path, entry in listed.items():
        assert (file_sha256(backed_up.path / path), (backed_up.path / path).stat().st_size) == (
            entry["sha256"],
            entry["size"],
        )
    manifest_bytes = (backed_up.path / "manifest.json").read_bytes()
    everything_printed = backed_up.stdout + backed_up.stderr + manifest_bytes.decode()
    assert PASSWORD not in everything_printed

    # The backup is recorded: the time the gauge exports, and the manifest's hash.
    assert backed_up.before is None
    engine = make_engine(deployment.store_uri)
    try:
        recorded = last_backup_time(engine)
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT location, manifest_sha256, counts FROM hokusai_backups")
            ).one()
    finally:
        engine.dispose()
    assert recorded == pytest.approx(manifest["created_at_unix"], abs=0.002)
    assert time.time() - 300 < recorded <= time.time()
    assert row.location == str(backed_up.path)
    assert row.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert json.loads(row.counts) == counts

    # Verify before the disaster: every check passes, and the scratch database is gone after.
    scratch = postgres.base_url + "/postgres"
    verified = cli("backup", "verify", str(backed_up.path), "--scratch-uri", scratch)
    assert verified.exit_code == 0, verified.output
    lines = verified.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ok    checksums",
        "ok    database",
        "ok    schema",
        "ok    counts",
        "ok    attestations",
        "ok    attestation links",
        "ok    audit chain",
        "ok    artifacts",
    ]
    assert "2 attestation(s) verify" in verified.stdout
    assert "the files of 3 model version(s) are in the backup; 3 match" in verified.stdout
    assert lines[-1] == f"PASSED: {backed_up.path}"
    assert scratch_databases(postgres) == []

    # The disaster: the server dies, the database is dropped, the bucket emptied.
    deployment.server.stop()
    postgres.drop_database(deployment.db_url)
    client = s3.client()
    for key in objects:
        client.delete_object(Bucket=deployment.bucket, Key=key)
    assert keys_under(s3, deployment.bucket) == []

    # The restore, into a recreated empty database of the same name and the same bucket.
    database = make_url(deployment.db_url).database
    admin = create_engine(
        scratch.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    restored = cli(
        "backup",
        "restore",
        str(backed_up.path),
        "--store-uri",
        deployment.store_uri,
        "--artifacts",
        deployment.artifacts,
        env=s3_env,
    )
    assert restored.exit_code == 0, restored.output
    assert "3 model versions, 2 attestations" in restored.stdout
    assert PASSWORD not in restored.output
    assert keys_under(s3, deployment.bucket) == objects

    # A server on the restored database serves exactly what there was, and downloads the models.
    server = hokusai_servers.start(
        store_uri=deployment.store_uri, artifacts_destination=deployment.artifacts, workers=1
    )
    try:
        after = facts(server, deployment.store_uri, deployment.name, tmp_path)
        assert after == deployment.facts
        for version, entry in after["versions"].items():
            assert after["downloads"][version] == entry["tags"][T.ARTIFACT_DIGEST]
        for document in after["attestations"].values():
            assert verify_like_an_outsider(document) == attester_address(hokusai_servers)
        # The restored deployment remembers the backup it came from (the gauge is not reset).
        engine = make_engine(deployment.store_uri)
        try:
            assert last_backup_time(engine) == pytest.approx(manifest["created_at_unix"], abs=0.002)
        finally:
            engine.dispose()

        # And it keeps working: sequences and the audit head were restored, not reset.
        with mlflow_env():
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            mlflow.set_experiment(unique("after-restore"))
            client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
            newest = register_improvement(
                client, deployment.name, f"{deployment.name}/3", {"accuracy": 0.9, "f1_score": 0.78}
            )
        assert newest.version == "4" and newest.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
        log = AuditLog.from_store_uri(deployment.store_uri)
        try:
            report = log.verify()
        finally:
            log.close()
        assert report.ok and report.checked > len(deployment.facts["audit"]), report
    finally:
        server.stop()


# -- a damaged backup -----------------------------------------------------------------------------


def test_tampered_file_is_refused_by_restore_and_named_by_verify(backed_up, postgres, s3, s3_env, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(backed_up.path, copy)
    # The serialized model itself (model.skops or model.pkl, by MLflow version).
    victim = next(
        entry["path"]
        for entry in backed_up.manifest["files"]
        if entry["path"].rsplit("/", 1)[-1].startswith("model.") and entry["path"].startswith("artifacts/")
    )
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: same size, other content
    (copy / victim).write_bytes(bytes(data))

    target_db = postgres.create_database("hokusai_backup_target")
    target = pg_store_uri(target_db)
    artifacts = f"s3://{s3.bucket}/restore-{uuid.uuid4().hex[:6]}"
    try:
        refused = cli(
            "backup", "restore", str(copy), "--store-uri", target, "--artifacts", artifacts, env=s3_env
        )
        assert refused.exit_code == 1, refused.output
        assert refused.stderr.startswith("Error: ") and len(refused.stderr.strip().splitlines()) == 1
        assert victim in refused.stderr and "nothing was restored" in refused.stderr
        # Nothing was written anywhere.
        assert (
            scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'")
            == 0
        )
        assert keys_under(s3, s3.bucket, artifacts.split("/", 3)[3]) == []
    finally:
        postgres.drop_database(target_db)

    report = cli("backup", "verify", str(copy), "--scratch-uri", postgres.base_url + "/postgres")
    assert report.exit_code == 1, report.output
    failed = {
        line.split(":")[0].split(None, 1)[1]: line
        for line in report.stdout.splitlines()
        if line.startswith("FAIL ")
    }
    assert set(failed) == {"checksums", "artifacts"}, report.stdout
    assert victim in failed["checksums"]
    # The model's files no longer have the digest its attestation signed.
    assert "is not the signed" in failed["artifacts"]
    assert report.stdout.splitlines()[-1] == f"FAILED: {copy}"

    # A damaged dump: restore names it; verify does not even try to restore it.
    shutil.copyfile(backed_up.path / victim, copy / victim)
    with open(copy / "database.dump", "r+b") as handle:
        handle.truncate(1000)
    refused = cli("backup", "restore", str(copy), "--store-uri", target, "--artifacts", artifacts, env=s3_env)
    assert refused.exit_code == 1 and "database.dump: 1000 bytes" in refused.stderr
    report = cli("backup", "verify", str(copy))
    assert report.exit_code == 1
    assert "FAIL  database: not restored: database.dump is damaged" in report.stdout

    # A dump that is garbage although the manifest agrees (damaged before it was hashed): the
    # restore into the scratch database fails, the report says so, the scratch database is gone.
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "database.dump").write_bytes(b"PGDMP" + b"\x00" * 995)
    entry = next(entry for entry in manifest["files"] if entry["path"] == "database.dump")
    entry["sha256"], entry["size"] = file_sha256(copy / "database.dump"), 1000
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = cli("backup", "verify", str(copy), "--scratch-uri", postgres.base_url + "/postgres")
    assert report.exit_code == 1, report.output
    assert "ok    checksums" in report.stdout and "FAIL  database: pg_restore failed on" in report.stdout
    assert scratch_databases(postgres) == []


def test_verify_fails_on_altered_rows_in_a_consistent_backup(
    backed_up, postgres, s3, s3_env, monkeypatch, tmp_path
):
    """Checksums only prove the backup is what was dumped; verify must also judge what was dumped."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    copy_db = postgres.create_database("hokusai_backup_altered")
    store_uri = pg_store_uri(copy_db)
    artifacts = f"s3://{s3.bucket}/altered-{uuid.uuid4().hex[:6]}"
    try:
        restore_backup(backed_up.path, store_uri, artifacts)
        engine = make_engine(store_uri)
        try:
            with engine.begin() as connection:
                # A forged attestation: its signed payload changed, the signature kept.
                attestation_id, document = connection.execute(
                    text("SELECT id, document FROM hokusai_attestations ORDER BY created_at LIMIT 1")
                ).one()
                forged = json.loads(document)
                statement = json.loads(base64.b64decode(forged["dsse"]["payload"]))
                statement["predicate"]["delta_one_bps"] = 9999
                forged["dsse"]["payload"] = base64.b64encode(canonical_json(statement)).decode()
                connection.execute(
                    text("UPDATE hokusai_attestations SET document = :d WHERE id = :i"),
                    {"d": canonical_json(forged).decode(), "i": attestation_id},
                )
                # An audit entry rewritten behind the log's back.
                connection.execute(text("UPDATE hokusai_audit_log SET actor = 'mallory' WHERE seq = 2"))
                # A version pointing to an attestation that does not exist.
                connection.execute(
                    text("UPDATE model_version_tags SET value = :v WHERE key = :k AND version = 3"),
                    {"v": "0" * 64, "k": T.ATTESTATION_ID},
                )
        finally:
            engine.dispose()
        made = create_backup(store_uri, artifacts, tmp_path / "backups")
    finally:
        postgres.drop_database(copy_db)

    # No scratch URI: the source's server, through its maintenance database (the source is gone).
    report = verify_backup(made.path)
    verdicts = {check.name: check for check in report.checks}
    assert not report.ok
    assert {name for name, check in verdicts.items() if not check.ok} == {
        "attestations",
        "attestation links",
        "audit chain",
    }, report.to_dict()
    assert attestation_id[:12] in verdicts["attestations"].message
    assert "0 of the 1 expected attesters signed" in verdicts["attestations"].message  # forged payload
    assert "seq 2 was altered" in verdicts["audit chain"].message
    assert f"{'0' * 12}... is not a stored attestation" in verdicts["attestation links"].message
    # The counts still match: the rows are all there, they are just not trustworthy.
    assert verdicts["counts"].ok and verdicts["checksums"].ok and verdicts["artifacts"].ok
    assert scratch_databases(postgres) == []


# -- SQLite ---------------------------------------------------------------------------------------


def test_sqlite_backup_with_local_artifacts(hokusai_servers, tmp_path):
    artifacts = tmp_path / "mlartifacts"
    server = hokusai_servers.start("sqlite", artifacts_destination=str(artifacts), workers=1)
    try:
        name = unique("bks")
        with mlflow_env():
            mlflow.set_tracking_uri(server.url)
            mlflow.set_registry_uri(server.url)
            mlflow.set_experiment(unique("backup-sqlite"))
            client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
            baseline = register_baseline(name)
            improved = register_improvement(client, name, baseline, {"accuracy": 0.8, "f1_score": 0.72})
        assert improved.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
        # Backed up while the server runs: the online backup API copies a consistent state.
        made = cli(
            "backup",
            "create",
            "--store-uri",
            server.store_uri,
            "--artifacts",
            str(artifacts),
            "--output",
            str(tmp_path / "b"),
        )
    finally:
        server.stop()
    assert made.exit_code == 0, made.output
    path = Path(made.stdout.strip())
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "sqlite"
    assert (manifest["counts"]["model_versions"], manifest["counts"]["attestations"]) == (2, 1)

    verified = cli("backup", "verify", str(path), "--json")
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["ok"] and len(report["checks"]) == 8 and all(check["ok"] for check in report["checks"])

    target = f"hokusai+sqlite:///{tmp_path / 'restored.db'}"
    restored_artifacts = tmp_path / "restored-artifacts"
    restored = cli(
        "backup", "restore", str(path), "--store-uri", target, "--artifacts", str(restored_artifacts)
    )
    assert restored.exit_code == 0, restored.output

    source, copy = make_engine(server.store_uri), make_engine(target)
    try:
        with source.connect() as a, copy.connect() as b:
            assert read_counts(a) == read_counts(b) == manifest["counts"]
            tags = "SELECT name, version, key, value FROM model_version_tags ORDER BY name, version, key"
            assert a.execute(text(tags)).all() == b.execute(text(tags)).all()
            documents = "SELECT id, document FROM hokusai_attestations"
            assert a.execute(text(documents)).all() == b.execute(text(documents)).all()
        # Both know the backup: the source recorded it, the restore recorded where it came from.
        assert (
            last_backup_time(source)
            == last_backup_time(copy)
            == pytest.approx(manifest["created_at_unix"], abs=0.002)
        )
    finally:
        source.dispose()
        copy.dispose()
    originals = {p.relative_to(artifacts): file_sha256(p) for p in artifacts.rglob("*") if p.is_file()}
    copies = {
        p.relative_to(restored_artifacts): file_sha256(p)
        for p in restored_artifacts.rglob("*")
        if p.is_file()
    }
    assert originals == copies and originals


# -- progress -------------------------------------------------------------------------------------


def on_terminal(*args: str, size: tuple[int, int] | None, timeout: float = 120) -> tuple[int, str, str]:
    """``hokusai <args>`` with stderr on a pseudo-terminal (``size`` = rows, columns, or None for
    one that reports no size, as a fresh pty does) and stdout on a pipe: (exit code, stdout,
    everything the terminal received)."""
    master, slave = pty.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "TQDM_"))}
    try:
        process = subprocess.Popen(
            [HOKUSAI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        # Read while it runs: a full pty buffer would block the command's writes.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                block = os.read(master, 65536)
            except OSError:  # EIO: the command closed its end of the terminal
                break
            if not block:
                break
            received += block
        stdout = process.communicate(timeout=max(1, deadline - time.monotonic()))[0]
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout.decode(), received.decode(errors="replace")


BAR = re.compile(r"(?P<desc>[a-z ]+): +100%\|█+\| (?P<n>\d+)/(?P=n) ")


def test_backup_create_and_restore_draw_a_bar_on_a_terminal_and_nothing_on_a_pipe(tmp_path):
    assert HOKUSAI, "the hokusai console script is not installed (pip install -e .)"
    store_uri = f"hokusai+sqlite:///{tmp_path / 'source.db'}"
    upgrade(store_uri)  # the plugin's tables: a database the backup can record itself in
    artifacts = tmp_path / "mlartifacts"
    for index in range(5):
        (artifacts / "1" / f"run{index}" / "artifacts").mkdir(parents=True)
        (artifacts / "1" / f"run{index}" / "artifacts" / "model.pkl").write_bytes(bytes([index]) * 1000)
    create = ("backup", "create", "--store-uri", store_uri, "--artifacts", str(artifacts))

    code, stdout, terminal = on_terminal(*create, "--output", str(tmp_path / "tty"), size=(40, 120))
    assert code == 0, terminal
    bars = {m["desc"]: int(m["n"]) for m in BAR.finditer(terminal)}
    assert bars == {"dumping the database": 1, "copying artifacts": 5}, terminal
    # The bar is on the terminal only: stdout, which scripts read, is the backup's path alone.
    backup_dir = Path(stdout.strip())
    assert stdout == f"{backup_dir}\n" and (backup_dir / "manifest.json").is_file()
    assert "manifest sha256" in terminal

    # The same command on a pipe (as in a log or CI): only the one summary line on stderr.
    piped = hokusai(*create, "--output", str(tmp_path / "pipe"))
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stderr and "\r" not in piped.stderr and "it/s" not in piped.stderr
    assert len(piped.stderr.splitlines()) == 1 and "manifest sha256" in piped.stderr
    assert Path(piped.stdout.strip()).parent == tmp_path / "pipe"

    # Restore, on a terminal that reports no size: the bar is still drawn (80 columns).
    target = f"hokusai+sqlite:///{tmp_path / 'restored.db'}"
    code, stdout, terminal = on_terminal(
        "backup",
        "restore",
        str(backup_dir),
        "--store-uri",
        target,
        "--artifacts",
        str(tmp_path / "r"),
        size=None,
    )
    assert code == 0, terminal
    bars = {m["desc"]: int(m["n"]) for m in BAR.finditer(terminal)}
    assert bars == {"checking files": 6, "restoring artifacts": 5, "restoring the database": 1}, terminal
    assert all(len(line) <= 80 for line in re.split(r"[\r\n]+", terminal)), terminal
    assert stdout.startswith("restored ") and "5 artifact files" in stdout


# -- bad input ------------------------------------------------------------------------------------


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and PASSWORD not in result.output
    return result.stderr


def test_bad_input_is_one_line_and_exit_2(backed_up, deployment, postgres, s3, s3_env, monkeypatch, tmp_path):
    out = str(tmp_path / "out")
    unreachable = f"hokusai+postgresql://postgres:{PASSWORD}@127.0.0.1:1/mlflow"
    assert "Connection refused" in one_line_error(
        cli("backup", "create", "--store-uri", unreachable, "--artifacts", str(tmp_path), "--output", out)
    )
    missing_db = pg_store_uri(postgres.base_url + "/no_such_db")
    assert 'database "no_such_db" does not exist' in one_line_error(
        cli("backup", "create", "--store-uri", missing_db, "--artifacts", str(tmp_path), "--output", out)
    )
    assert "the bucket no-such-bucket-hokusai does not exist" in one_line_error(
        cli(
            "backup",
            "create",
            "--store-uri",
            pg_store_uri(deployment.db_url),
            "--artifacts",
            "s3://no-such-bucket-hokusai/x",
            "--output",
            out,
            env=s3_env,
        )
    )
    assert "is not a store URI" in one_line_error(
        cli(
            "backup", "create", "--store-uri", "mysql://u@h/db", "--artifacts", str(tmp_path), "--output", out
        )
    )
    assert "has no manifest.json" in one_line_error(cli("backup", "verify", str(tmp_path)))
    assert "restore it into a hokusai+postgresql:// store URI" in one_line_error(
        cli(
            "backup",
            "restore",
            str(backed_up.path),
            "--store-uri",
            f"hokusai+sqlite:///{tmp_path / 'x.db'}",
            "--artifacts",
            str(tmp_path / "a"),
        )
    )

    # A target that is not empty is refused unless --force; so is an artifact root with objects.
    target_db = postgres.create_database("hokusai_backup_busy")
    target = pg_store_uri(target_db)
    try:
        execute(target, "CREATE TABLE precious (id INTEGER)")
        error = one_line_error(
            cli(
                "backup",
                "restore",
                str(backed_up.path),
                "--store-uri",
                target,
                "--artifacts",
                str(tmp_path / "a"),
            )
        )
        assert "is not empty" in error and "--force" in error
        execute(target, "DROP TABLE precious")
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "keep.txt").write_text("mine")
        error = one_line_error(
            cli("backup", "restore", str(backed_up.path), "--store-uri", target, "--artifacts", str(busy))
        )
        assert f"the target artifact root {busy} is not empty" in error
        assert (
            scalar(target, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'")
            == 0
        )

        # Without the PostgreSQL client tools: a message saying what to install, before any write.
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
        assert "pg_dump is not installed" in one_line_error(
            cli("backup", "create", "--store-uri", target, "--artifacts", str(tmp_path), "--output", out)
        )
        assert "pg_restore is not installed" in one_line_error(
            cli(
                "backup",
                "restore",
                str(backed_up.path),
                "--store-uri",
                target,
                "--artifacts",
                str(tmp_path / "a"),
            )
        )
        assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    finally:
        postgres.drop_database(target_db)
    assert not Path(out).exists() or not any(Path(out).iterdir())
