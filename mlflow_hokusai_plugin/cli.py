"""The ``hokusai`` command line.

Every command exits 0 on success, 1 when it ran and found a problem (an invalid attestation), and
2 for bad input, with a one-line message on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import click

from mlflow_hokusai_plugin import __version__
from mlflow_hokusai_plugin.core.errors import HokusaiError
from mlflow_hokusai_plugin.core.timestamps import iso_utc

_T = TypeVar("_T")


class HokusaiGroup(click.Group):
    """Turns our own errors into one line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HokusaiError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


def _address_argument(value: str, param_hint: str) -> str:
    """An Ethereum address given on the command line, checksummed; a bad one is a usage error
    (exit 2), never a failed verification (exit 1)."""
    from mlflow_hokusai_plugin.core.addresses import to_checksum_address

    try:
        return to_checksum_address(value, "address")
    except HokusaiError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None


def terminal_progress(items: Iterable[_T], *, total: int | None = None, desc: str = "") -> Iterable[_T]:
    """A :class:`~mlflow_hokusai_plugin.core.progress.Progress` that draws a bar on stderr only
    when stderr is a terminal (tqdm's ``disable=None``): logs, pipes and captured output get
    nothing, and stdout, which scripts read, never does."""
    if total == 0:
        return items  # nothing to do is said by the command's own summary, not by an empty bar
    from tqdm import tqdm

    try:
        sized = min(os.get_terminal_size(sys.stderr.fileno())) > 0
    except (AttributeError, OSError, ValueError):
        sized = False
    # A terminal that reports no size (a fresh pty, some `docker exec -t`) gets no bar at all
    # from tqdm: draw 80 columns there; elsewhere follow the window as it is resized.
    return tqdm(
        items,
        total=total,
        desc=desc,
        file=sys.stderr,
        disable=None,
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
    )


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
    help="Write the key into this encrypted keystore (refuses to overwrite).",
)
@click.option(
    "--env",
    "as_env",
    is_flag=True,
    help="Print the key as HOKUSAI_ATTESTER_KEY=0x... for an environment file, instead of a keystore.",
)
@click.option(
    "--password",
    envvar="HOKUSAI_ATTESTER_PASSWORD",
    help="The keystore's password (prompted for when not given).",
)
def signer_new(path: Path | None, as_env: bool, password: str | None) -> None:
    """Generate a new attester key: into an encrypted keystore (--keystore FILE, prints its
    address), or printed for the environment (--env; the address goes to stderr)."""
    from mlflow_hokusai_plugin.runtime.signer import ENV_KEY, Signer

    if (path is None) == (not as_env):
        raise click.UsageError("give one of --keystore FILE or --env")
    key = Signer.generate()
    if as_env:
        click.echo(f"{ENV_KEY}={key.private_key_hex()}")
        click.echo(f"attester {key.address}", err=True)
        return
    if password is None:
        password = click.prompt("Keystore password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.BadParameter("must not be empty", param_hint="--password")
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
    from mlflow_hokusai_plugin.runtime.signer import Signer

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
    "--attester",
    "attesters",
    multiple=True,
    callback=lambda _ctx, _param, values: tuple(_address_argument(v, "--attester") for v in values),
    help="An expected attester address; repeat for m-of-n.",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
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


# -- attestation genesis / renew / cosign / calldata -------------------------------------------------

ATTESTATION_ID_HELP = "An attestation id: the 64-hex sha256 of its DSSE payload."
tracking_uri_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="The MLflow tracking server (default $MLFLOW_TRACKING_URI).",
)


class _Problem(Exception):
    """The command ran and found a problem: one line on stderr, exit 1."""


def _problem_exits(command):
    """Run ``command``; a :class:`_Problem`, or an MLflow error of the server, exits 1 with its message."""
    import functools

    from mlflow.exceptions import MlflowException

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _Problem as exc:
            message = str(exc)
        except MlflowException as exc:
            # A Hokusai server answers {"error_code", "message"}: show its message as it is.
            body = getattr(exc, "json", None)
            message = (body.get("message") if isinstance(body, dict) else None) or exc.message
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)

    return run


def _needs_tracking_uri(tracking_uri: str | None) -> str:
    if not tracking_uri:
        raise click.UsageError("no MLflow server: set MLFLOW_TRACKING_URI or pass --tracking-uri")
    return tracking_uri


def _attestation_id(value: str, param_hint: str = "ID") -> str:
    import re

    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise click.BadParameter(f"{value!r} is not an attestation id (64 hex digits)", param_hint=param_hint)
    return value.lower()


def _read_document(source, param_hint: str = "FILE") -> dict:
    """The JSON object read from an open file (``click.File``)."""
    from mlflow_hokusai_plugin.core.canonical import parse_json

    document = parse_json(source.read(), param_hint)
    if not isinstance(document, dict):
        raise click.BadParameter("is not an attestation document (a JSON object)", param_hint=param_hint)
    return document


def _write_json(value: dict, output: Path | None, *, force: bool = True) -> None:
    """``value`` as indented JSON on stdout, or in ``output`` (refused if it exists, unless ``force``)."""
    text = json.dumps(value, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(output, flags, 0o644)
    except FileExistsError:
        raise click.BadParameter(
            f"{output} exists; add --force to overwrite it", param_hint="--output"
        ) from None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {output}: {exc.strerror or exc}", param_hint="--output"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _utc(unix: int) -> str:
    try:
        return iso_utc(unix, milliseconds=False)
    except ValueError:
        return "beyond the year 9999"


def _root_baseline(client, model_id: str, tags: dict) -> str | None:
    """The root of ``model_id``'s lineage (following ``hokusai.baseline``), None if it breaks off."""
    from mlflow.exceptions import MlflowException

    from mlflow_hokusai_plugin.core import tags as T
    from mlflow_hokusai_plugin.core.errors import ValidationError

    seen = {model_id}
    current = tags.get(T.BASELINE)
    while current:
        if current in seen or len(seen) > 10_000:
            return None  # a loop: no root to suggest
        seen.add(current)
        try:
            name, version = T.parse_model_id(current, T.BASELINE)
            parent = client.get_model_version(name, str(version))
        except (ValidationError, MlflowException):
            return None
        parent_baseline = (parent.tags or {}).get(T.BASELINE)
        if not parent_baseline:
            return current
        current = parent_baseline
    return None


def _first_baseline(client, name: str):
    """The lowest-numbered version of ``name`` with ``hokusai.project`` and no ``hokusai.baseline``."""
    from mlflow_hokusai_plugin.core import tags as T

    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{escaped}'", max_results=1000, page_token=token)
        versions += [v for v in page if v.name == name]
        token = page.token
        if not token:
            break
    if not versions:
        raise _Problem(f"registered model '{name}' has no versions (does it exist on this server?)")
    baselines = [v for v in versions if T.PROJECT in (v.tags or {}) and T.BASELINE not in (v.tags or {})]
    if not baselines:
        raise _Problem(
            f"registered model '{name}' has no Hokusai baseline: no version with {T.PROJECT} "
            f"and without {T.BASELINE}"
        )
    return min(baselines, key=lambda v: int(v.version))


@attestation.command("genesis")
@click.argument("model_id")
@tracking_uri_option
@click.option("--json", "as_json", is_flag=True, help='Print {"model_id", "genesis"} as JSON.')
@_problem_exits
def attestation_genesis(model_id: str, tracking_uri: str | None, as_json: bool) -> None:
    """Print the on-chain genesis of a model's weight lineage: 0x + its first baseline's artifact digest.

    The operator sets this value with ModelRegistry.setWeightGenesis(modelId, genesis); the first
    improvement's baselineCommitment must equal it. MODEL_ID is a baseline version 'name/version',
    or a registered model name (its root baseline: the lowest-numbered version with hokusai.project
    and no hokusai.baseline). The value is the version's hokusai.artifact_digest tag, which the
    Hokusai server writes when the version is registered.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlflow_hokusai_plugin.core import tags as T
    from mlflow_hokusai_plugin.core.eip712 import commitment
    from mlflow_hokusai_plugin.core.errors import ValidationError

    client = MlflowClient(tracking_uri=_needs_tracking_uri(tracking_uri))
    if "/" in model_id:
        try:
            name, number = T.parse_model_id(model_id, "MODEL_ID")
        except ValidationError as exc:
            raise click.BadParameter(exc.message, param_hint="MODEL_ID") from None
        try:
            version = client.get_model_version(name, str(number))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise _Problem(f"model version '{model_id}' does not exist") from None
            raise
        tags = version.tags or {}
        if T.BASELINE in tags:
            root = _root_baseline(client, model_id, tags)
            hint = f"hokusai attestation genesis {root}" if root else f"hokusai attestation genesis {name}"
            raise _Problem(
                f"{model_id} is not a baseline: it improves {tags[T.BASELINE]}; the genesis is the "
                f"artifact digest of the lineage's root baseline (try: {hint})"
            )
        if T.PROJECT not in tags:
            raise _Problem(f"{model_id} is not a Hokusai model version (it has no {T.PROJECT} tag)")
    else:
        if not model_id.strip():
            raise click.BadParameter(
                "must be 'name/version' or a registered model name", param_hint="MODEL_ID"
            )
        version = _first_baseline(client, model_id)
        tags = version.tags or {}
    baseline_id = f"{version.name}/{version.version}"
    digest = tags.get(T.ARTIFACT_DIGEST)
    if not digest:
        raise _Problem(
            f"{baseline_id} has no {T.ARTIFACT_DIGEST} tag: the Hokusai server writes it when the "
            "version is registered (or, if its artifact store failed then, when an improvement of it "
            "is registered); is this server started with --app-name hokusai on a hokusai+ store?"
        )
    try:
        genesis = commitment(digest, T.ARTIFACT_DIGEST)
    except ValidationError:
        raise _Problem(f"{baseline_id} has a malformed {T.ARTIFACT_DIGEST} tag: {digest!r}") from None
    if as_json:
        click.echo(json.dumps({"model_id": baseline_id, "genesis": genesis}, indent=2))
    else:
        click.echo(genesis)
        if baseline_id != model_id:
            click.echo(f"genesis of {baseline_id}", err=True)


@attestation.command("renew")
@click.argument("attestation_id", metavar="ID")
@tracking_uri_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the renewed document to this file (replacing it) instead of stdout.",
)
@_problem_exits
def attestation_renew(attestation_id: str, tracking_uri: str | None, output: Path | None) -> None:
    """Have the server re-sign attestation ID's EIP-712 MintRequest with a fresh deadline.

    The renewed document goes to stdout (or --output) and its new deadline to stderr. The DSSE
    Statement, attestationHash and idempotencyKey do not change; older MintRequest types are
    replaced by today's. Needs a key with the write role (MLFLOW_TRACKING_TOKEN).
    """
    from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient

    attestation_id = _attestation_id(attestation_id)
    client = HokusaiAppClient(_needs_tracking_uri(tracking_uri))
    document = client.renew_attestation(attestation_id)
    _write_json(document, output)
    part = document.get("eip712")
    deadline = (
        (((part or {}).get("typed_data") or {}).get("message") or {}).get("payload", {}).get("deadline")
    )
    if not isinstance(deadline, int):
        reason = document.get("eip712_omitted") or "the server's answer has no EIP-712 deadline"
        raise _Problem(f"attestation {attestation_id} has no renewed EIP-712 MintRequest: {reason}")
    click.echo(f"deadline {_utc(deadline)} ({deadline})", err=True)


@attestation.command("cosign")
@click.argument("file", type=click.File("r"))
@click.option(
    "--keystore",
    "keystore",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign with this keystore (password prompted, or HOKUSAI_ATTESTER_PASSWORD); "
    "default: HOKUSAI_ATTESTER_KEY or HOKUSAI_ATTESTER_KEYSTORE.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the co-signed document here instead of stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@_problem_exits
def attestation_cosign(file, keystore: Path | None, output: Path | None, force: bool) -> None:
    """Add your signatures to the attestation document in FILE ('-' for stdin), for m-of-n.

    Signs the DSSE envelope and, when the document has one, the EIP-712 MintRequest, keeping its
    signatures in the contract's order (ascending signer address). The document must verify as it
    is; a key that has already signed it, or a MintRequest of the types of before 2026-06-10
    (renew it first), is refused. Check the result with
    `hokusai attestation verify FILE --attester A --attester B --threshold 2`.
    """
    from mlflow_hokusai_plugin.core.attestation import verify_document
    from mlflow_hokusai_plugin.core.errors import ValidationError
    from mlflow_hokusai_plugin.core.issuance import cosign_document
    from mlflow_hokusai_plugin.runtime.signer import ENV_PASSWORD, Signer

    document = _read_document(file)
    if output is not None and output.exists() and not force:
        raise click.BadParameter(f"{output} exists; add --force to overwrite it", param_hint="--output")
    before = verify_document(document)
    if not before.valid:
        raise _Problem(f"the document does not verify ({before.failed_check}): {before.message}")
    if keystore is not None:
        password = os.environ.get(ENV_PASSWORD) or click.prompt(
            "Keystore password", hide_input=True, err=True
        )
        signer = Signer.from_keystore(keystore, password)
    else:
        signer = Signer.from_env()
    try:
        cosigned = cosign_document(document, signer)
    except ValidationError as exc:
        raise _Problem(f"cannot co-sign: {exc}") from None
    signers = [*before.signers, signer.address]
    after = verify_document(cosigned, attesters=signers, threshold=len(signers))
    if not after.valid:  # a bug, never a user error: do not hand out a document that fails
        raise _Problem(f"the co-signed document does not verify: {after.message}")
    _write_json(cosigned, output, force=force)
    click.echo(f"co-signed by {signer.address}; signed by {len(signers)}: {', '.join(signers)}", err=True)


@attestation.command("calldata")
@click.argument("source", metavar="ID_OR_FILE")
@tracking_uri_option
@_problem_exits
def attestation_calldata(source: str, tracking_uri: str | None) -> None:
    """Print the submitMintRequest call of an attestation's signed MintRequest, as JSON.

    ID_OR_FILE is a document file (or '-' for stdin), else an attestation id fetched from the
    server. The output, for a submitter service: {"function", "selector", "args", "calldata",
    "deadline"}; "args" are modelId, the payload (anchors nested), the contributors
    [[address, weight], ...] and the signatures, in the contract's ABI order, and "calldata" is the
    selector followed by their ABI encoding. Every uint256 in "args" is a decimal STRING: JavaScript
    numbers lose precision above 2**53. Refused (exit 1): a document without an EIP-712 part, of the
    MintRequest types of before 2026-06-10 (renew it), or whose signatures are not in strictly
    ascending signer order. A passed deadline is only a warning on stderr (renew before submitting).
    """

    from mlflow_hokusai_plugin.core.calldata import document_mint_request, submit_mint_request_call
    from mlflow_hokusai_plugin.core.errors import ValidationError

    if source == "-" or os.path.exists(source):
        if os.path.isdir(source):
            raise click.BadParameter(f"{source} is a directory", param_hint="ID_OR_FILE")
        with click.open_file(source, "r", encoding="utf-8") as handle:
            document = _read_document(handle, "ID_OR_FILE")
    else:
        if not all(c in "0123456789abcdefABCDEF" for c in source) or len(source) != 64:
            raise click.BadParameter(
                f"{source!r} is no file, nor an attestation id (64 hex digits)", param_hint="ID_OR_FILE"
            )
        from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient

        document = HokusaiAppClient(_needs_tracking_uri(tracking_uri)).get_attestation(source.lower())
    try:
        call = submit_mint_request_call(*document_mint_request(document))
    except ValidationError as exc:
        raise _Problem(f"no submittable MintRequest: {exc}") from None
    click.echo(json.dumps(call, indent=2))
    deadline = call["deadline"]
    if time.time() > deadline:
        renew = (
            f"hokusai attestation renew {document['id']}"
            if document.get("id")
            else "hokusai attestation renew ID"
        )
        click.echo(
            f"Warning: the deadline {_utc(deadline)} ({deadline}) has passed: the contract will refuse "
            f"these signatures; renew them first ({renew})",
            err=True,
        )


STORE_URI_HELP = "The server's backend store URI (hokusai+postgresql://... or hokusai+sqlite:///...)."


def store_uri_option(text: str = STORE_URI_HELP, required: bool = True) -> Callable:
    """``--store-uri`` (or ``HOKUSAI_STORE_URI``), declared once for every command that takes it."""
    return click.option("--store-uri", envvar="HOKUSAI_STORE_URI", required=required, help=text)


@main.group()
def db() -> None:
    """The plugin tables."""


@db.command("upgrade")
@click.argument("url", required=False)
@store_uri_option(STORE_URI_HELP + " The same as URL.", required=False)
def db_upgrade(url: str | None, store_uri: str | None) -> None:
    """Create or upgrade the plugin tables at URL (MLflow's own tables: `mlflow db upgrade`)."""
    from mlflow_hokusai_plugin.db.schema import upgrade

    if url and store_uri and url != store_uri:
        raise click.UsageError("URL and --store-uri name different databases: give one")
    if not (url or store_uri):
        raise click.UsageError("give the database: URL, --store-uri or HOKUSAI_STORE_URI")
    click.echo(f"hokusai tables at revision {upgrade(url or store_uri)}")


# reconcile and migrate read model files as the server would: mlflow-artifacts:/ URIs resolve
# against the server's --artifacts-destination.
ARTIFACTS_DESTINATION_ENV = ("HOKUSAI_ARTIFACTS_DESTINATION", "_MLFLOW_SERVER_ARTIFACT_DESTINATION")
artifacts_destination_option = click.option(
    "--artifacts-destination",
    envvar=list(ARTIFACTS_DESTINATION_ENV),
    help="The server's --artifacts-destination, to read models stored as mlflow-artifacts:/ URIs.",
)


def _use_artifacts_destination(artifacts_destination: str | None) -> None:
    from mlflow_hokusai_plugin.store.artifact_digest import SERVER_ARTIFACT_DESTINATION_ENV

    if artifacts_destination:
        os.environ[SERVER_ARTIFACT_DESTINATION_ENV] = artifacts_destination


@main.command()
@store_uri_option()
@artifacts_destination_option
def reconcile(store_uri: str, artifacts_destination: str | None) -> None:
    """Complete registrations a crash left pending (the server also does this at every start), and
    give every baseline without one its hokusai.artifact_digest (its model's on-chain genesis)."""
    from mlflow_hokusai_plugin.store.registry import HokusaiRegistryStore

    _use_artifacts_destination(artifacts_destination)
    registrar = HokusaiRegistryStore(store_uri).registrar
    results = registrar.reconcile(progress=terminal_progress)
    for result in results:
        detail = f" ({result['error']})" if "error" in result else ""
        click.echo(f"{result['model_id']}: {result['status']}{detail}")
    click.echo(f"{len(results)} pending registration(s) examined")
    # Baselines registered before digests were written at registration (their genesis).
    digests = registrar.backfill_artifact_digests(progress=terminal_progress)
    for result in digests:
        click.echo(
            f"{result['model_id']}: "
            + (f"digest {result['digest']}" if "digest" in result else f"no digest ({result['error']})")
        )
    if digests:
        click.echo(f"{len(digests)} baseline digest(s) computed")
    ok = all(r["status"] == "signed" for r in results) and all("digest" in r for r in digests)
    sys.exit(0 if ok else 1)


@main.command()
@store_uri_option()
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
    from mlflow_hokusai_plugin.migrate.steps import apply_migration, load_mapping, plan_migration
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
    for line in apply_migration(steps, store, attest=attest, progress=terminal_progress):
        click.echo(line)
    click.echo(f"{len(steps)} version(s) migrated")


@main.group()
def keys() -> None:
    """API keys (hk_live_...) for HOKUSAI_AUTH=apikey."""


def _key_store(store_uri: str):
    from mlflow_hokusai_plugin.db.api_keys import ApiKeyStore
    from mlflow_hokusai_plugin.db.records import make_engine
    from mlflow_hokusai_plugin.db.schema import upgrade

    upgrade(store_uri)
    return ApiKeyStore(make_engine(store_uri))


@keys.command("create")
@store_uri_option()
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
@store_uri_option()
def keys_list(store_uri: str) -> None:
    """List keys (id, prefix, name, role, project, state); never the keys themselves."""
    records = _key_store(store_uri).list()
    if not records:
        click.echo("no keys (hokusai keys create makes one)", err=True)
    for record in records:
        state = "revoked" if record.revoked_at else "active"
        click.echo(
            f"{record.id}\t{record.prefix}...\t{record.name}\t{record.role}\t{record.project or '*'}\t{state}"
        )


@keys.command("revoke")
@store_uri_option()
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
@store_uri_option()
def audit_verify(store_uri: str) -> None:
    """Check the audit hash chain; name the first altered, inserted or deleted entry."""
    from mlflow_hokusai_plugin.db.audit import AuditLog

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
@click.pass_context
def pipeline_run(ctx: click.Context, flow_args: tuple[str, ...]) -> None:
    """Run HokusaiEvaluationFlow on Metaflow with FLOW_ARGS (``hokusai pipeline run --help`` lists them).

    \b
    Examples:
      hokusai pipeline run --sample --disable-services
      hokusai pipeline run --sample --dry-run
      hokusai pipeline run --baseline-model churn/3 --benchmark-data bench.csv \\
          --contributed-data rows.csv --contributor 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed
    """
    from mlflow_hokusai_plugin.pipeline.runner import flow_help, run_flow

    if any(arg in ("--help", "-h") for arg in flow_args):
        # Metaflow's own help for ``run`` lists every parameter of the flow.
        shown = flow_help(ctx.command_path)
        click.echo(shown.stdout, nl=False)
        if shown.returncode != 0:
            click.echo(shown.stderr, err=True, nl=False)
        sys.exit(shown.returncode)
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
    from mlflow_hokusai_plugin.demo.run import DemoError, run_demo, stopped_cleanly_on_signals

    try:
        with stopped_cleanly_on_signals():
            outcome = run_demo(workdir, keep_serving=keep_serving, say=click.echo)
    except DemoError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        # Ctrl-C, SIGTERM or a vanished parent before the demo finished; everything it started is
        # stopped by now. 130: the shell's code for an interrupted command.
        why = f" ({exc})" if str(exc) else ""
        click.echo(f"Interrupted{why}: the demo's server and flow are stopped.", err=True)
        sys.exit(130)
    sys.exit(0 if outcome["verdict"]["valid"] else 1)


@main.group()
def backup() -> None:
    """Backups of the database and the artifacts: create, restore, verify (docs/backup.md)."""


ARTIFACTS_HELP = "The artifact root: s3://bucket/prefix or a local directory (the server's artifacts)."


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


def backup_artifacts_option(text: str) -> Callable:
    """The artifact root of a backup (``--artifacts`` is its older spelling)."""
    return click.option(
        "--artifacts-destination",
        "--artifacts",
        "artifacts",
        envvar=list(ARTIFACTS_DESTINATION_ENV),
        required=True,
        help=text,
    )


@backup.command("create")
@store_uri_option()
@backup_artifacts_option(ARTIFACTS_HELP)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory in which the backup directory hokusai-backup-<UTC time> is made.",
)
def backup_create(store_uri: str, artifacts: str, output: Path) -> None:
    """Back up the database (MLflow's and the plugin's tables) and every artifact, with a manifest."""
    from mlflow_hokusai_plugin.backup import create_backup

    made = _run_backup(create_backup, store_uri, artifacts, output, progress=terminal_progress)
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
@store_uri_option("The target store URI (an empty database).")
@backup_artifacts_option("The target artifact root (empty): s3://bucket/prefix or a directory.")
@click.option(
    "--force", is_flag=True, help="Restore even into a database or artifact root that is not empty."
)
def backup_restore(backup_dir: Path, store_uri: str, artifacts: str, force: bool) -> None:
    """Restore BACKUP_DIR after checking every file against its manifest (a damaged backup exits 1)."""
    from mlflow_hokusai_plugin.backup import restore_backup

    restored = _run_backup(
        restore_backup, backup_dir, store_uri, artifacts, force=force, progress=terminal_progress
    )
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
@store_uri_option("Only to find a server for the scratch database.", required=False)
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


def _show_envvars(group: click.Group) -> None:
    """Every option that may come from the environment says which variable, in --help and in the
    "missing option" error (click's show_envvar), declared here once for the whole CLI."""
    for command in group.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True
        if isinstance(command, click.Group):
            _show_envvars(command)


_show_envvars(main)
