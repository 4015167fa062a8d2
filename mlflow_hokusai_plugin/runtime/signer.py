"""The attester key: loaded from the environment or an encrypted keystore, and kept secret.

This is the one module that touches key material, and the only place with I/O for it (environment
variables, keystore files). The key must never leave it in readable form: not in ``repr``, not in
an exception message or a chained exception (eth-account's errors may echo their input, so every
one of them is replaced, never chained), not in a log line, not through pickling.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.eip712 import signable_message
from mlflow_hokusai_plugin.core.errors import HokusaiError, ValidationError

ENV_KEY = "HOKUSAI_ATTESTER_KEY"
ENV_KEYSTORE = "HOKUSAI_ATTESTER_KEYSTORE"
ENV_PASSWORD = "HOKUSAI_ATTESTER_PASSWORD"

_PRIVATE_KEY_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")


class SignerError(HokusaiError):
    """The attester key cannot be loaded or stored. The message never contains key material."""


class Signer:
    """An attester key that signs and never shows itself.

    >>> signer = Signer.from_private_key("0x" + "11" * 32)
    >>> signer
    Signer(address=0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A)
    >>> len(signer.sign_message(b"hello"))
    65
    """

    __slots__ = ("_account",)

    def __init__(self, account: LocalAccount) -> None:
        if not isinstance(account, LocalAccount):
            raise TypeError("Signer wraps an eth_account LocalAccount")
        self._account = account

    @classmethod
    def from_private_key(cls, hex_key: str) -> Signer:
        """A signer from a 32-byte private key in hex (``0x`` optional)."""
        if not isinstance(hex_key, str) or not _PRIVATE_KEY_HEX.fullmatch(hex_key.strip()):
            raise SignerError("the private key must be 64 hex digits (32 bytes), optionally 0x-prefixed")
        account = None
        try:
            account = Account.from_key(hex_key.strip())
        except (ValueError, TypeError):
            pass  # Reported below, outside the except block, so no exception is chained to it.
        if account is None:
            raise SignerError("the private key is not a valid secp256k1 key (zero or too large)")
        return cls(account)

    @classmethod
    def from_keystore(cls, path: str | os.PathLike[str], password: str) -> Signer:
        """A signer from an eth-account encrypted keystore JSON file."""
        if not isinstance(password, str) or not password:
            raise SignerError("the keystore password must be a non-empty string")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SignerError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
        try:
            keystore = parse_json(text, "keystore")
        except ValidationError:
            raise SignerError(f"keystore {path} is not JSON") from None
        if not isinstance(keystore, dict) or "crypto" not in {k.lower() for k in keystore}:
            raise SignerError(f"keystore {path} is not an encrypted keystore (no 'crypto' section)")
        key = None
        wrong_password = False
        try:
            key = Account.decrypt(keystore, password)
        except ValueError as exc:
            wrong_password = "MAC mismatch" in str(exc)
        except (KeyError, TypeError, AttributeError, NotImplementedError):
            pass
        # Raised outside the except blocks, so no eth-account exception is chained to ours.
        if key is None and wrong_password:
            raise SignerError(f"wrong password for keystore {path} (or the keystore was altered)")
        if key is None:
            raise SignerError(f"keystore {path} is corrupt or of an unsupported kind")
        return cls(Account.from_key(key))

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key (for ``hokusai signer new`` and dev mode)."""
        return cls(Account.create())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Signer:
        """The attester configured in the environment.

        Either ``HOKUSAI_ATTESTER_KEY`` (0x-hex private key), or ``HOKUSAI_ATTESTER_KEYSTORE``
        (path of an encrypted keystore) with ``HOKUSAI_ATTESTER_PASSWORD``. Empty values count as
        unset. Anything else raises :class:`SignerError` saying what to set.
        """
        env = os.environ if environ is None else environ
        key = env.get(ENV_KEY, "").strip()
        keystore = env.get(ENV_KEYSTORE, "").strip()
        password = env.get(ENV_PASSWORD, "")
        if key and keystore:
            raise SignerError(
                f"both {ENV_KEY} and {ENV_KEYSTORE} are set; choose one of them and unset the other"
            )
        if key:
            return cls.from_private_key(key)
        if keystore:
            if not password:
                raise SignerError(f"{ENV_KEYSTORE} is set but {ENV_PASSWORD} is not")
            return cls.from_keystore(keystore, password)
        raise SignerError(
            f"no attester key configured: set {ENV_KEY} (0x-hex private key), or {ENV_KEYSTORE} "
            f"and {ENV_PASSWORD} (encrypted keystore)"
        )

    @property
    def address(self) -> str:
        """The attester's EIP-55 checksummed address."""
        return self._account.address

    def sign_message(self, data: bytes) -> bytes:
        """65-byte ``r || s || v`` EIP-191 personal-message signature of ``data``."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("sign_message signs bytes")
        return bytes(self._account.sign_message(encode_defunct(primitive=bytes(data))).signature)

    def sign_typed_data(self, typed_data: dict) -> bytes:
        """65-byte ``r || s || v`` signature of an EIP-712 full message (e.g. a MintRequest)."""
        return bytes(self._account.sign_message(signable_message(typed_data)).signature)

    def private_key_hex(self) -> str:
        """The private key as 0x-hex, for ``HOKUSAI_ATTESTER_KEY`` (``hokusai signer new --env``)."""
        return "0x" + bytes(self._account.key).hex()

    def write_keystore(self, path: str | os.PathLike[str], password: str) -> None:
        """Write the key as an eth-account encrypted keystore (scrypt), mode 0600.

        Refuses to overwrite an existing file: that file may hold the only copy of another key.
        """
        if not isinstance(password, str) or not password:
            raise SignerError("the keystore password must be a non-empty string")
        content = json.dumps(Account.encrypt(self._account.key, password))
        try:
            # O_EXCL makes "does not exist yet" and "create" one atomic step.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SignerError(f"refusing to overwrite existing file {path}") from None
        except OSError as exc:
            raise SignerError(f"cannot create keystore {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # the umask could only have removed bits; be explicit
            handle.write(content)

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    def __reduce__(self):
        # Pickling would write the private key into whatever stores the pickle.
        raise TypeError("a Signer cannot be pickled or copied: it holds a private key")
