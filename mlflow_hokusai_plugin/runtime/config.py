"""Server configuration from the environment (the ``HOKUSAI_*`` variables of contract.md)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.mint_request import DEFAULT_SIGNATURE_TTL, OnchainTarget
from mlflow_hokusai_plugin.core.tags import check_onchain_model_id
from mlflow_hokusai_plugin.runtime.signer import ENV_KEY, ENV_KEYSTORE, Signer, SignerError

_logger = logging.getLogger(__name__)

AUTH_MODES = ("apikey", "basic", "none")

# Request body limits (server/body_limits.py), applied before anything parses a body.
MAX_BODY_BYTES_ENV = "HOKUSAI_MAX_BODY_BYTES"
MAX_JSON_DEPTH_ENV = "HOKUSAI_MAX_JSON_DEPTH"
# 16 MiB: MLflow's largest JSON requests are far smaller. A runs/log-batch at MLflow's own
# maximums (1000 entities: 100 params of 6000 characters, 100 tags of 8000, 800 metrics with
# 250-character keys) is under 2 MB, under 10 MB even with every character escaped as \uXXXX; a
# registry tag value is at most 100 kB, the UI's upload-artifact route takes 10 MB at most, and
# trace spans travel as artifacts or OTLP batches of a few MB. It bounds what one request holds
# in a worker's memory: MLflow's WSGI bridge buffers a whole body, once per concurrent request.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# MLflow's requests nest a few levels deep (a log-batch is 3: object, list, object; a user's
# assessment value a few more); 64 is far above that and far below what crashes a parser.
DEFAULT_MAX_JSON_DEPTH = 64
SIGNATURE_TTL_ENV = "HOKUSAI_SIGNATURE_TTL"
# py_ecc (imported with the attester's signer) raises Python's recursion limit to 100000, so a
# recursive parser no longer stops with a RecursionError: it overflows the C stack and the worker
# segfaults. A limit above Python's usual 1000 would reopen that door.
MAX_JSON_DEPTH_CEILING = 1000
DEV_MODE_BANNER = (
    "HOKUSAI DEV MODE: attestations are signed with an EPHEMERAL key that is lost when the server "
    "stops; never use this for anything real"
)


NO_CHAIN_DOMAIN = (
    "the server has no HOKUSAI_CHAIN_ID / HOKUSAI_VERIFYING_CONTRACT, so it cannot sign the "
    "DeltaVerifier's EIP-712 MintRequest of an on-chain model: configure both first"
)


class ConfigError(SignerError):
    """The server cannot start with this configuration."""


@dataclass(frozen=True)
class HokusaiConfig:
    dev_mode: bool
    auth: str
    ratelimit_storage_uri: str
    chain_id: int | None
    verifying_contract: str | None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    signature_ttl: int = DEFAULT_SIGNATURE_TTL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HokusaiConfig:
        env = os.environ if environ is None else environ
        dev_mode = env.get("HOKUSAI_DEV_MODE", "") == "1"
        auth = env.get("HOKUSAI_AUTH", "apikey")
        if auth not in AUTH_MODES:
            raise ConfigError(f"HOKUSAI_AUTH={auth!r}: expected one of {', '.join(AUTH_MODES)}")
        if auth == "none" and not dev_mode:
            raise ConfigError("HOKUSAI_AUTH=none is only allowed with HOKUSAI_DEV_MODE=1")
        chain_id, contract = env.get("HOKUSAI_CHAIN_ID"), env.get("HOKUSAI_VERIFYING_CONTRACT")
        if bool(chain_id) != bool(contract):
            raise ConfigError("set both HOKUSAI_CHAIN_ID and HOKUSAI_VERIFYING_CONTRACT, or neither")
        if chain_id and not (chain_id.isascii() and chain_id.isdigit()):
            raise ConfigError(f"HOKUSAI_CHAIN_ID={chain_id!r} is not a decimal chain id")
        try:
            contract = to_checksum_address(contract, "HOKUSAI_VERIFYING_CONTRACT") if contract else None
        except ValidationError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            dev_mode=dev_mode,
            auth=auth,
            ratelimit_storage_uri=env.get("HOKUSAI_RATELIMIT_STORAGE_URI", "memory://"),
            chain_id=int(chain_id) if chain_id else None,
            verifying_contract=contract,
            max_body_bytes=_positive_int(env, MAX_BODY_BYTES_ENV, DEFAULT_MAX_BODY_BYTES),
            max_json_depth=_positive_int(
                env, MAX_JSON_DEPTH_ENV, DEFAULT_MAX_JSON_DEPTH, ceiling=MAX_JSON_DEPTH_CEILING
            ),
            signature_ttl=_positive_int(env, SIGNATURE_TTL_ENV, DEFAULT_SIGNATURE_TTL),
        )

    @property
    def has_chain_domain(self) -> bool:
        """Whether the DeltaVerifier's EIP-712 domain is configured."""
        return self.chain_id is not None and self.verifying_contract is not None

    def deadline(self, now: float) -> int:
        """The EIP-712 ``deadline`` of a signature made at ``now`` (unix seconds): whole seconds."""
        return int(now) + self.signature_ttl

    def onchain_target(self, onchain_model_id: str | None) -> OnchainTarget | None:
        """The DeltaVerifier target for a registered model's ``hokusai.onchain_model_id``."""
        if not onchain_model_id:
            return None
        if not self.has_chain_domain:
            raise ValidationError("hokusai.onchain_model_id", NO_CHAIN_DOMAIN)
        model_id = check_onchain_model_id(onchain_model_id)
        return OnchainTarget(self.chain_id, self.verifying_contract, model_id)


def _positive_int(env: Mapping[str, str], name: str, default: int, ceiling: int | None = None) -> int:
    """A setting that is a count: decimal digits, at least 1 (and at most ``ceiling``), or unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    # Digits only: int() would also take "+5", "1_000" or "٥" (an Arabic-Indic five).
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a positive whole number")
    if ceiling is not None and int(raw) > ceiling:
        raise ConfigError(f"{name}={raw!r}: at most {ceiling}")
    return int(raw)


def load_signer(environ: Mapping[str, str] | None = None) -> tuple[Signer, bool]:
    """The attester: configured, or (dev mode only) ephemeral. Returns (signer, is_ephemeral).

    Every worker of one ``mlflow server`` must sign with the same ephemeral key, so the key is
    kept in a 0600 file named after the server's boot id, which MLflow gives all its workers.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY) or env.get(ENV_KEYSTORE):
        return Signer.from_env(env), False
    if env.get("HOKUSAI_DEV_MODE", "") != "1":
        raise ConfigError(
            f"no attester key: set {ENV_KEY} (0x-hex) or {ENV_KEYSTORE} + HOKUSAI_ATTESTER_PASSWORD; "
            "for a throwaway local server set HOKUSAI_DEV_MODE=1"
        )
    boot_id = env.get("_MLFLOW_SERVER_BOOT_ID") or str(os.getppid())
    # The boot id is no secret: a dev-mode key protects nothing and lives as long as the server.
    path = Path(tempfile.gettempdir()) / f"hokusai-dev-attester-{boot_id}.json"
    if not path.exists():
        draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        Signer.generate().write_keystore(draft, boot_id)
        try:
            # link() is atomic and refuses an existing name: the first worker's key wins.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return Signer.from_keystore(path, boot_id), True
