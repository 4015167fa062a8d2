"""The ``hokusai`` command line.

Every command exits 0 on success, 1 when it ran and found a problem (an invalid attestation), and
2 for bad input, with a one-line message on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.core.errors import HokusaiError


class HokusaiGroup(click.Group):
    """Turns our own errors into one line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HokusaiError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=HokusaiGroup)
@click.version_option(__version__, prog_name="hokusai")
def main() -> None:
    """Hokusai model lineage, DeltaOne and signed attestations on MLflow."""


@main.group()
def signer() -> None:
    """The attester key."""


@signer.command("new")
@click.option(
    "--keystore",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the encrypted keystore (refuses to overwrite).",
)
@click.password_option(
    "--password",
    envvar="HOKUSAI_ATTESTER_PASSWORD",
    help="Keystore password (or HOKUSAI_ATTESTER_PASSWORD; prompted otherwise).",
)
def signer_new(path: Path, password: str) -> None:
    """Generate a new attester key into an encrypted keystore and print its address."""
    from mlflow_hokusai_plugin.signer import Signer

    if not password:
        raise click.BadParameter("must not be empty", param_hint="--password")
    key = Signer.generate()
    key.write_keystore(path, password)
    click.echo(key.address)


@signer.command("address")
@click.option(
    "--keystore",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read this keystore instead of HOKUSAI_ATTESTER_KEY / HOKUSAI_ATTESTER_KEYSTORE.",
)
@click.option("--password", envvar="HOKUSAI_ATTESTER_PASSWORD", help="Keystore password.")
def signer_address(path: Path | None, password: str | None) -> None:
    """Print the attester address of the configured key."""
    from mlflow_hokusai_plugin.signer import Signer

    if path is not None:
        if password is None:
            password = click.prompt("Keystore password", hide_input=True)
        click.echo(Signer.from_keystore(path, password).address)
    else:
        click.echo(Signer.from_env().address)


@main.group()
def attestation() -> None:
    """Attestation documents."""


@attestation.command("verify")
@click.argument("file", type=click.File("r"))
@click.option(
    "--attester", "attesters", multiple=True, help="An expected attester address; repeat for m-of-n."
)
@click.option(
    "--threshold",
    type=int,
    default=1,
    show_default=True,
    help="How many distinct expected attesters must have signed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def attestation_verify(file, attesters: tuple[str, ...], threshold: int, as_json: bool) -> None:
    """Verify an attestation document (or a bare DSSE envelope) from FILE ('-' for stdin)."""
    from mlflow_hokusai_plugin.core.attestation import verify_document, verify_envelope
    from mlflow_hokusai_plugin.core.canonical import parse_json

    document = parse_json(file.read(), "FILE")
    is_envelope = isinstance(document, dict) and "payloadType" in document
    verify = verify_envelope if is_envelope else verify_document
    verdict = verify(document, attesters=attesters, threshold=threshold)
    if as_json:
        click.echo(json.dumps({k: v for k, v in verdict.to_dict().items() if k != "statement"}, indent=2))
    else:
        state = "VALID" if verdict.valid else f"INVALID (check failed: {verdict.failed_check})"
        click.echo(f"{state}: {verdict.message}")
        for address in verdict.signers:
            click.echo(f"  signed by {address}")
    sys.exit(0 if verdict.valid else 1)


STORE_URI_HELP = "The server's backend store URI (hokusai+postgresql://... or hokusai+sqlite:///...)."


@main.group()
def db() -> None:
    """The plugin tables."""


@db.command("upgrade")
@click.argument("url")
def db_upgrade(url: str) -> None:
    """Create or upgrade the plugin tables at URL (MLflow's own tables: `mlflow db upgrade`)."""
    from mlflow_hokusai_plugin.db.migrate import upgrade

    click.echo(f"hokusai tables at revision {upgrade(url)}")


# reconcile and migrate read model files as the server would: mlflow-artifacts:/ URIs resolve
# against the server's --artifacts-destination.
artifacts_destination_option = click.option(
    "--artifacts-destination",
    envvar="_MLFLOW_SERVER_ARTIFACT_DESTINATION",
    help="The server's --artifacts-destination, to read models stored as mlflow-artifacts:/ URIs.",
)


def _use_artifacts_destination(artifacts_destination: str | None) -> None:
    from mlflow_hokusai_plugin.artifact_digest import SERVER_ARTIFACT_DESTINATION_ENV

    if artifacts_destination:
        os.environ[SERVER_ARTIFACT_DESTINATION_ENV] = artifacts_destination


@main.command()
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
@artifacts_destination_option
def reconcile(store_uri: str, artifacts_destination: str | None) -> None:
    """Complete registrations a crash left pending (the server also does this at every start)."""
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    _use_artifacts_destination(artifacts_destination)
    results = HokusaiRegistryStore(store_uri).registrar.reconcile()
    for result in results:
        detail = f" ({result['error']})" if "error" in result else ""
        click.echo(f"{result['model_id']}: {result['status']}{detail}")
    click.echo(f"{len(results)} pending registration(s) examined")
    sys.exit(0 if all(result["status"] == "signed" for result in results) else 1)


@main.command()
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help='JSON {"models": [...]}: each existing version\'s project, type, metric, baseline, contributors.',
)
@click.option("--apply", "apply_", is_flag=True, help="Write the changes (without it: print the plan only).")
@click.option(
    "--attest", is_flag=True, help="Sign each improvement (needs HOKUSAI_ATTESTER_KEY or a keystore)."
)
@artifacts_destination_option
def migrate(
    store_uri: str, mapping_path: Path, apply_: bool, attest: bool, artifacts_destination: str | None
) -> None:
    """Backfill Hokusai tags, lineage (and attestations) for versions registered before the plugin.

    A dry run unless --apply: the whole mapping is checked and the plan printed; nothing is written.
    """
    from mlflow_hokusai_plugin.migration import apply_migration, load_mapping, plan_migration
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    _use_artifacts_destination(artifacts_destination)
    entries = load_mapping(mapping_path)
    store = HokusaiRegistryStore(store_uri)
    if attest and apply_:
        store._get_signer()  # no key: stop now, before the first write
    steps = plan_migration(entries, store, store.registrar.tracking, store.hokusai)
    if not apply_:
        for step in steps:
            click.echo(step.describe(attest))
        click.echo(f"dry run: {len(steps)} version(s) checked, nothing written (add --apply to write)")
        return
    for line in apply_migration(steps, store, attest=attest):
        click.echo(line)
    click.echo(f"{len(steps)} version(s) migrated")


@main.group()
def keys() -> None:
    """API keys (hk_live_...) for HOKUSAI_AUTH=apikey."""


def _key_store(store_uri: str):
    from mlflow_hokusai_plugin.db.api_keys import ApiKeyStore
    from mlflow_hokusai_plugin.db.migrate import upgrade
    from mlflow_hokusai_plugin.db.store import make_engine

    upgrade(store_uri)
    return ApiKeyStore(make_engine(store_uri))


@keys.command("create")
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True)
@click.option("--project", default=None, help="Limit the key to one project's models and records.")
def keys_create(store_uri: str, name: str, role: str, project: str | None) -> None:
    """Create a key and print it once (only its hash is stored)."""
    key, record = _key_store(store_uri).create(name, role, project)
    click.echo(key)
    scope = f", project {record.project}" if record.project else ""
    click.echo(f"key {record.id} ({record.prefix}...): role {record.role}{scope}", err=True)


@keys.command("list")
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
def keys_list(store_uri: str) -> None:
    """List keys (id, prefix, name, role, project, state); never the keys themselves."""
    for record in _key_store(store_uri).list():
        state = "revoked" if record.revoked_at else "active"
        click.echo(
            f"{record.id}\t{record.prefix}...\t{record.name}\t{record.role}\t{record.project or '*'}\t{state}"
        )


@keys.command("revoke")
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
@click.argument("key_id", type=int)
def keys_revoke(store_uri: str, key_id: int) -> None:
    """Revoke a key by id; every worker stops accepting it within a few seconds."""
    try:
        record = _key_store(store_uri).revoke(key_id)
    except LookupError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY_ID") from None
    click.echo(f"key {record.id} ({record.prefix}...) revoked")


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
def audit_verify(store_uri: str) -> None:
    """Check the audit hash chain; name the first altered, inserted or deleted entry."""
    from mlflow_hokusai_plugin.audit import AuditLog

    report = AuditLog.from_store_uri(store_uri).verify()
    click.echo(("OK: " if report.ok else "BROKEN: ") + report.message)
    sys.exit(0 if report.ok else 1)


@main.group()
def pipeline() -> None:
    """The Hokusai evaluation flow (Metaflow)."""


@pipeline.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("flow_args", nargs=-1, type=click.UNPROCESSED)
def pipeline_run(flow_args: tuple[str, ...]) -> None:
    """Run HokusaiEvaluationFlow on Metaflow with FLOW_ARGS (``hokusai pipeline run --help`` lists them).

    \b
    Examples:
      hokusai pipeline run --dry-run --disable-services
      hokusai pipeline run --baseline-model churn/3 --benchmark-data bench.csv \\
          --contributed-data rows.csv --contributor 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed
    """
    from mlflow_hokusai_plugin.pipeline.runner import run_flow

    if any(arg in ("--help", "-h") for arg in flow_args):
        # Metaflow's own help for ``run`` lists every parameter of the flow.
        from mlflow_hokusai_plugin.pipeline.runner import flow_environment, flow_file

        sys.exit(subprocess.call([sys.executable, flow_file(), "run", "--help"], env=flow_environment()))
    outcome = run_flow(flow_args)
    if outcome.ok:
        for name, path in sorted((outcome.report.get("output_files") or {}).items()):
            click.echo(f"{name}: {path}")
        return
    if outcome.failed_step:
        click.echo(f"Error: the pipeline stopped at step {outcome.failed_step}: {outcome.error}", err=True)
    else:
        click.echo("Error: the pipeline did not run (see Metaflow's message above)", err=True)
    sys.exit(2 if outcome.bad_input or not outcome.run_id else 1)


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".hokusai-demo"),
    show_default=True,
    help="Where the demo keeps its SQLite database, artifacts and demo key.",
)
@click.option("--keep-serving", is_flag=True, help="Keep the MLflow server (and UI) up until Ctrl-C.")
def demo(workdir: Path, keep_serving: bool) -> None:
    """Run the evaluation flow on an embedded MLflow server: baseline, improvement, verified attestation."""
    from mlflow_hokusai_plugin.demo import DemoError, run_demo

    try:
        outcome = run_demo(workdir, keep_serving=keep_serving, say=click.echo)
    except DemoError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    sys.exit(0 if outcome["verdict"]["valid"] else 1)


@main.group()
def backup() -> None:
    """Backups of the database and the artifacts: create, restore, verify (docs/backup.md)."""


ARTIFACTS_HELP = (
    "The artifact root: s3://bucket/prefix or a local directory (the server's --artifacts-destination; "
    "default $HOKUSAI_ARTIFACTS_DESTINATION)."
)


def _run_backup(operation, *args, **kwargs):
    """``operation(*args, **kwargs)``, its failure as one line, never a traceback.

    A damaged backup exits 1 (the command ran and found a problem); anything else that stops it
    (missing tool, unreachable database or bucket, bad input, a full disk) exits 2.
    """
    from mlflow_hokusai_plugin.backup import BackupError, DamagedBackup

    try:
        return operation(*args, **kwargs)
    except DamagedBackup as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except BackupError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)


@backup.command("create")
@click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help=STORE_URI_HELP)
@click.option("--artifacts", envvar="HOKUSAI_ARTIFACTS_DESTINATION", required=True, help=ARTIFACTS_HELP)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory in which the backup directory hokusai-backup-<UTC time> is made.",
)
def backup_create(store_uri: str, artifacts: str, output: Path) -> None:
    """Back up the database (MLflow's and the plugin's tables) and every artifact, with a manifest."""
    from mlflow_hokusai_plugin.backup import create_backup

    made = _run_backup(create_backup, store_uri, artifacts, output)
    counts = made.manifest["counts"]
    click.echo(made.path)
    click.echo(
        f"{len(made.manifest['files'])} files, {made.total_bytes} bytes; "
        f"{counts.get('model_versions')} model versions, {counts.get('attestations')} attestations, "
        f"{counts.get('audit_entries')} audit entries; "
        f"manifest sha256 {made.manifest_sha256}",
        err=True,
    )


@backup.command("restore")
@click.argument("backup_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--store-uri", envvar="HOKUSAI_STORE_URI", required=True, help="The target store URI (an empty database)."
)
@click.option(
    "--artifacts",
    envvar="HOKUSAI_ARTIFACTS_DESTINATION",
    required=True,
    help="The target artifact root (empty): s3://bucket/prefix or a directory.",
)
@click.option(
    "--force", is_flag=True, help="Restore even into a database or artifact root that is not empty."
)
def backup_restore(backup_dir: Path, store_uri: str, artifacts: str, force: bool) -> None:
    """Restore BACKUP_DIR after checking every file against its manifest (a damaged backup exits 1)."""
    from mlflow_hokusai_plugin.backup import restore_backup

    restored = _run_backup(restore_backup, backup_dir, store_uri, artifacts, force=force)
    counts = restored.manifest["counts"]
    click.echo(
        f"restored {restored.manifest['created_at']} backup: {counts.get('model_versions')} model versions, "
        f"{counts.get('attestations')} attestations, {restored.artifacts_restored} artifact files"
    )


@backup.command("verify")
@click.argument("backup_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--scratch-uri",
    help="A PostgreSQL server (URL) where a temporary database may be created and dropped; "
    "default: the 'postgres' database of the server of --store-uri, else of the backup's source.",
)
@click.option(
    "--store-uri", envvar="HOKUSAI_STORE_URI", help="Only to find a server for the scratch database."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backup_verify(backup_dir: Path, scratch_uri: str | None, store_uri: str | None, as_json: bool) -> None:
    """Restore BACKUP_DIR into a scratch database and check it: exit 0 if every check passes, 1 if not."""
    from mlflow_hokusai_plugin.backup import verify_backup

    report = _run_backup(verify_backup, backup_dir, scratch_uri=scratch_uri, store_uri=store_uri)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for check in report.checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.message}")
        click.echo(f"{'PASSED' if report.ok else 'FAILED'}: {report.backup}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
