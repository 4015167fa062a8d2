"""Compile ``MintVerifier.sol`` with solc-js and run it in py-evm.

* solc: the npm ``solc`` package pinned in ``tests/evm/package.json`` (and its lock file), installed
  with ``npm ci`` into ``<cache>/npm``; the cache is ``.evm-cache/`` at the repository root (git
  ignored) or ``$HOKUSAI_EVM_CACHE``.
* The compiled ABI and bytecode are kept in ``<cache>/build/<sha256>.json``, keyed by the source, the
  solc version and the compiler settings, so a re-run does not start node at all.
* The chain is eth-tester's py-evm backend (its genesis and funded accounts); transactions are
  applied to py-evm's chain directly so a revert's data (our custom errors) is not lost.

Every failure to install or compile raises :class:`EvmSetupError` with what npm or solc said.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_canonical_address, to_checksum_address

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
PACKAGE_JSON = HERE / "package.json"
PACKAGE_LOCK = HERE / "package-lock.json"
SOLC_VERSION: str = json.loads(PACKAGE_JSON.read_text())["dependencies"]["solc"]
# py-evm's default fork in eth-tester is Prague; Cancun bytecode runs there unchanged.
SOLC_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
NPM_TIMEOUT_S = 600
COMPILE_TIMEOUT_S = 300
GAS_LIMIT = 10_000_000

_COMPILE_JS = r"""
const solc = require('solc');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const output = JSON.parse(solc.compile(input));
  output.solcVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
"""


class EvmSetupError(RuntimeError):
    """npm, node or solc failed: the EVM tests cannot run (they fail, never skip)."""


def cache_dir() -> Path:
    return Path(os.environ.get("HOKUSAI_EVM_CACHE") or REPO_ROOT / ".evm-cache")


# ----- solc -----


def _run(cmd: list[str], *, cwd: Path, timeout: int, stdin: str | None = None) -> str:
    try:
        result = subprocess.run(
            cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise EvmSetupError(f"{cmd[0]} is not installed (needed for solc-js): {exc}") from None
    except subprocess.TimeoutExpired:
        raise EvmSetupError(f"{' '.join(cmd)} did not finish within {timeout} s") from None
    if result.returncode != 0:
        raise EvmSetupError(
            f"{' '.join(cmd)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result.stdout


def ensure_solc(root: Path | None = None) -> Path:
    """The npm project directory holding ``node_modules/solc`` at the pinned version."""
    npm_dir = (root or cache_dir()) / "npm"
    installed = npm_dir / "node_modules" / "solc" / "package.json"
    lock_copy = npm_dir / "package-lock.json"
    if (
        installed.is_file()
        and json.loads(installed.read_text()).get("version") == SOLC_VERSION
        and lock_copy.is_file()
        and lock_copy.read_bytes() == PACKAGE_LOCK.read_bytes()
    ):
        return npm_dir
    npm = shutil.which("npm")
    if npm is None:
        raise EvmSetupError("npm is not on PATH: install Node.js 18+ and npm to compile MintVerifier.sol")
    npm_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGE_JSON, npm_dir / "package.json")
    shutil.copyfile(PACKAGE_LOCK, lock_copy)
    # solc-js ships its compiler (soljson.js) inside the package: no install script to run.
    _run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=npm_dir,
        timeout=NPM_TIMEOUT_S,
    )
    if not installed.is_file() or json.loads(installed.read_text()).get("version") != SOLC_VERSION:
        raise EvmSetupError(f"npm ci in {npm_dir} did not install solc {SOLC_VERSION}")
    return npm_dir


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict]
    bytecode: bytes


def compile_contract(source: Path, name: str, root: Path | None = None) -> Artifact:
    """Compile ``name`` from ``source`` (cached by source hash, solc version and settings)."""
    root = root or cache_dir()
    text = source.read_text(encoding="utf-8")
    key_material = json.dumps(
        {"source": text, "file": source.name, "solc": SOLC_VERSION, "settings": SOLC_SETTINGS},
        sort_keys=True,
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()
    cached = root / "build" / f"{key}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
    else:
        npm_dir = ensure_solc(root)
        node = shutil.which("node")
        if node is None:
            raise EvmSetupError("node is not on PATH: needed to run solc-js")
        standard_input = json.dumps(
            {"language": "Solidity", "sources": {source.name: {"content": text}}, "settings": SOLC_SETTINGS}
        )
        output = json.loads(
            _run([node, "-e", _COMPILE_JS], cwd=npm_dir, timeout=COMPILE_TIMEOUT_S, stdin=standard_input)
        )
        errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
        if errors:
            raise EvmSetupError(
                f"solc {output.get('solcVersion')} refused {source.name}:\n"
                + "\n".join(e.get("formattedMessage", e.get("message", "?")) for e in errors)
            )
        try:
            contract = output["contracts"][source.name][name]
        except KeyError:
            raise EvmSetupError(f"solc output has no contract {name} in {source.name}") from None
        if not output["solcVersion"].startswith(SOLC_VERSION + "+"):
            raise EvmSetupError(f"node loaded solc {output['solcVersion']}, expected {SOLC_VERSION}")
        data = {
            "solcVersion": output["solcVersion"],
            "abi": contract["abi"],
            "bytecode": contract["evm"]["bytecode"]["object"],
        }
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cached.parent, delete=False, suffix=".tmp") as handle:
            json.dump(data, handle)
        os.replace(handle.name, cached)
    if not data["bytecode"]:
        raise EvmSetupError(f"{name} compiled to empty bytecode (abstract contract?)")
    return Artifact(name=name, abi=data["abi"], bytecode=bytes.fromhex(data["bytecode"]))


# ----- ABI -----


def abi_type(param: dict) -> str:
    """eth-abi's type string for an ABI parameter (tuples spelled out)."""
    type_ = param["type"]
    if type_.startswith("tuple"):
        inner = ",".join(abi_type(component) for component in param["components"])
        return f"({inner}){type_[len('tuple') :]}"
    return type_


def _signature(item: dict) -> str:
    return f"{item['name']}({','.join(abi_type(p) for p in item['inputs'])})"


@dataclass
class Reverted(Exception):
    """A call or transaction reverted; ``error`` is the custom error's name (or ``Error``/``Panic``)."""

    error: str
    args: tuple
    data: bytes = b""

    def __str__(self) -> str:
        return f"reverted with {self.error}{self.args!r}"


@dataclass
class Contract:
    address: str
    abi: list[dict]
    _errors: dict[bytes, dict] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        errors = [
            {"name": "Error", "inputs": [{"type": "string"}]},
            {"name": "Panic", "inputs": [{"type": "uint256"}]},
            *(item for item in self.abi if item["type"] == "error"),
        ]
        self._errors = {keccak(text=_signature(item))[:4]: item for item in errors}

    def function(self, name: str) -> dict:
        matches = [item for item in self.abi if item["type"] == "function" and item["name"] == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} functions named {name} in the ABI")
        return matches[0]

    def encode_call(self, name: str, *args: Any) -> bytes:
        item = self.function(name)
        types = [abi_type(p) for p in item["inputs"]]
        return keccak(text=_signature(item))[:4] + encode(types, list(args))

    def decode_output(self, name: str, data: bytes) -> Any:
        types = [abi_type(p) for p in self.function(name)["outputs"]]
        values = decode(types, data)
        return values[0] if len(values) == 1 else values

    def decode_revert(self, data: bytes) -> Reverted:
        item = self._errors.get(bytes(data[:4]))
        if item is None:
            return Reverted("unknown", (), bytes(data))
        values = decode([abi_type(p) for p in item["inputs"]], bytes(data[4:]))
        return Reverted(item["name"], tuple(values), bytes(data))

    def events(self, receipt_logs: list[dict], name: str) -> list[dict]:
        """Decoded ``name`` events of this contract among ``receipt_logs`` (from :meth:`Chain.transact`)."""
        item = next(e for e in self.abi if e["type"] == "event" and e["name"] == name)
        topic0 = keccak(text=_signature(item))
        found = []
        for log in receipt_logs:
            if log["address"] != self.address or not log["topics"] or log["topics"][0] != topic0:
                continue
            indexed = [p for p in item["inputs"] if p["indexed"]]
            plain = [p for p in item["inputs"] if not p["indexed"]]
            values = {}
            for param, topic in zip(indexed, log["topics"][1:], strict=True):
                values[param["name"]] = decode([abi_type(param)], topic)[0]
            for param, value in zip(plain, decode([abi_type(p) for p in plain], log["data"]), strict=True):
                values[param["name"]] = value
            found.append(values)
        return found


# ----- chain -----


class Chain:
    """One py-evm chain (eth-tester's genesis, funded accounts) that deploys and calls contracts."""

    def __init__(self) -> None:
        from eth_tester import PyEVMBackend

        self.backend = PyEVMBackend()
        self._keys = list(self.backend.account_keys)
        self.accounts = [to_checksum_address(k.public_key.to_canonical_address()) for k in self._keys]

    @property
    def chain_id(self) -> int:
        return self.backend.chain.chain_id

    @property
    def pending_timestamp(self) -> int:
        """``block.timestamp`` for the next transaction."""
        return self.backend.chain.header.timestamp

    def time_travel(self, timestamp: int) -> None:
        """Mine a block so the next transaction runs at ``timestamp`` or later."""
        self.backend.time_travel(timestamp)

    def _apply(self, sender: int, to: bytes, data: bytes):
        chain = self.backend.chain
        key = self._keys[sender]
        vm = chain.get_vm()
        nonce = vm.state.get_nonce(key.public_key.to_canonical_address())
        unsigned = vm.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
            chain_id=chain.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=10**9,
            max_fee_per_gas=10 * 10**9,
            gas=GAS_LIMIT,
            to=to,
            value=0,
            data=data,
            access_list=(),
        )
        _block, receipt, computation = chain.apply_transaction(unsigned.as_signed_transaction(key))
        self.backend.mine_blocks()
        return receipt, computation

    def deploy(self, artifact: Artifact, sender: int = 0) -> Contract:
        receipt, computation = self._apply(sender, b"", artifact.bytecode)
        if computation.is_error:
            raise EvmSetupError(f"deploying {artifact.name} failed: {computation.error!r}")
        address = to_checksum_address(computation.msg.storage_address)
        return Contract(address=address, abi=artifact.abi)

    def transact(self, contract: Contract, name: str, *args: Any, sender: int = 0) -> dict:
        """Send a transaction; returns ``{"gas_used", "logs", "output"}`` or raises :class:`Reverted`."""
        receipt, computation = self._apply(
            sender, to_canonical_address(contract.address), contract.encode_call(name, *args)
        )
        if computation.is_error:
            raise contract.decode_revert(computation.output)
        logs = [
            {
                "address": to_checksum_address(address),
                "topics": [topic.to_bytes(32, "big") for topic in topics],
                "data": bytes(data),
            }
            for address, topics, data in computation.get_log_entries()
        ]
        return {
            "gas_used": receipt.gas_used,
            "logs": logs,
            "output": contract.decode_output(name, computation.output),
        }

    def call(self, contract: Contract, name: str, *args: Any) -> Any:
        """A read-only call at the pending block; raises :class:`Reverted` on revert."""
        from eth.vm.spoof import SpoofTransaction

        chain = self.backend.chain
        vm = chain.get_vm()
        sender = self._keys[0].public_key.to_canonical_address()
        unsigned = vm.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
            chain_id=chain.chain_id,
            nonce=vm.state.get_nonce(sender),
            max_priority_fee_per_gas=0,
            max_fee_per_gas=vm.state.base_fee,
            gas=GAS_LIMIT,
            to=to_canonical_address(contract.address),
            value=0,
            data=contract.encode_call(name, *args),
            access_list=(),
        )
        state = vm.state
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(SpoofTransaction(unsigned, from_=sender))
        finally:
            state.revert(snapshot)
        if computation.is_error:
            raise contract.decode_revert(computation.output)
        return contract.decode_output(name, computation.output)
