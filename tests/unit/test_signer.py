import copy
import json
import os
import pickle
import stat
import traceback

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mlflow_hokusai_plugin.core.eip712 import mint_request_typed_data, recover_typed_data_signer
from mlflow_hokusai_plugin.runtime.signer import Signer, SignerError

KEY_HEX = "3c" * 32
KEY = "0x" + KEY_HEX
ADDRESS = Account.from_key(KEY).address
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def keystore_path(tmp_path_factory):
    # scrypt takes ~0.7 s per encryption or decryption: write the keystore once for the module.
    path = tmp_path_factory.mktemp("keystore") / "attester.json"
    Signer.from_private_key(KEY).write_keystore(path, PASSWORD)
    return path


def leaked_text(exc: BaseException) -> str:
    """Everything an exception shows: message, repr and the full formatted traceback."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


# --- Loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [KEY, KEY_HEX, KEY.upper().replace("0X", "0x"), f"  {KEY}\n"])
def test_from_private_key_forms(text):
    assert Signer.from_private_key(text).address == ADDRESS


@pytest.mark.parametrize(
    "bad_key",
    [
        "0x" + "3c" * 31,  # short
        "0x" + "3c" * 33,  # long
        "0x" + "zz" + "3c" * 31,  # not hex
        "0x" + "00" * 32,  # zero: not a secp256k1 key
        "0x" + "ff" * 32,  # above the curve order
        "-----BEGIN PRIVATE KEY-----3c3c3c3c3c3c3c3c3c3c-----END PRIVATE KEY-----",
    ],
)
def test_bad_private_keys_never_show_the_key(bad_key):
    with pytest.raises(SignerError) as info:
        Signer.from_private_key(bad_key)
    exc = info.value
    text = leaked_text(exc)
    body = bad_key.removeprefix("0x")
    assert body not in text
    assert body.lower() not in text.lower()
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def test_non_string_key_is_refused():
    with pytest.raises(SignerError):
        Signer.from_private_key(int(KEY, 16))


def test_generate_gives_distinct_working_keys():
    first, second = Signer.generate(), Signer.generate()
    assert first.address != second.address
    signature = first.sign_message(b"x")
    assert Account.recover_message(encode_defunct(primitive=b"x"), signature=signature) == (first.address)


# --- Secrecy --------------------------------------------------------------------------------------


def test_repr_and_str_show_only_the_address():
    signer = Signer.from_private_key(KEY)
    assert repr(signer) == f"Signer(address={ADDRESS})"
    assert str(signer) == repr(signer)
    assert KEY_HEX not in repr(signer)
    assert not hasattr(signer, "__dict__")


@pytest.mark.parametrize("copier", [pickle.dumps, copy.copy, copy.deepcopy])
def test_signer_cannot_be_pickled_or_copied(copier):
    with pytest.raises(TypeError):
        copier(Signer.from_private_key(KEY))


# --- Signing --------------------------------------------------------------------------------------


def test_sign_message_is_an_eip191_signature_recovering_to_the_address():
    signer = Signer.from_private_key(KEY)
    data = b"DSSEv1 3 abc 2 {}"
    signature = signer.sign_message(data)
    assert isinstance(signature, bytes)
    assert len(signature) == 65
    assert Account.recover_message(encode_defunct(primitive=data), signature=signature) == ADDRESS
    with pytest.raises(TypeError):
        signer.sign_message("text")


def test_sign_typed_data_recovers_to_the_address():
    typed_data = mint_request_typed_data(
        chain_id=1,
        verifying_contract="0x" + "cc" * 20,
        model_id=1,
        pipeline_run_id="p",
        baseline_score_bps=7000,
        candidate_score_bps=7100,
        total_samples=10,
        benchmark_spec_hash="01" * 32,
        dataset_hash="02" * 32,
        attestation_hash="03" * 32,
        idempotency_key="04" * 32,
        metric_name="accuracy",
        metric_family="classification",
        contributors=[{"address": "0x" + "77" * 20, "weight_bps": 10_000}],
        baseline_commitment="05" * 32,
        candidate_commitment="06" * 32,
        deadline=1_767_225_600,
    )
    signature = Signer.from_private_key(KEY).sign_typed_data(typed_data)
    assert len(signature) == 65
    assert recover_typed_data_signer(typed_data, signature) == ADDRESS


# --- Keystores ------------------------------------------------------------------------------------


def test_keystore_round_trip(keystore_path):
    assert stat.S_IMODE(os.stat(keystore_path).st_mode) == 0o600
    content = keystore_path.read_text()
    assert KEY_HEX not in content
    assert json.loads(content)["address"].lower() == ADDRESS[2:].lower()
    assert Signer.from_keystore(keystore_path, PASSWORD).address == ADDRESS


def test_write_keystore_refuses_to_overwrite(keystore_path):
    before = keystore_path.read_bytes()
    with pytest.raises(SignerError, match="overwrite"):
        Signer.generate().write_keystore(keystore_path, "other password")
    assert keystore_path.read_bytes() == before


def test_write_keystore_refuses_an_empty_password(tmp_path):
    with pytest.raises(SignerError):
        Signer.generate().write_keystore(tmp_path / "k.json", "")
    assert not (tmp_path / "k.json").exists()


def test_wrong_password(keystore_path):
    wrong = "not-the-" + "password"  # built so the traceback's source line does not contain it
    with pytest.raises(SignerError, match="wrong password") as info:
        Signer.from_keystore(keystore_path, wrong)
    assert wrong not in leaked_text(info.value)


def test_missing_keystore(tmp_path):
    with pytest.raises(SignerError, match="cannot read"):
        Signer.from_keystore(tmp_path / "absent.json", PASSWORD)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda text: text[: len(text) // 2],  # truncated: not JSON
        lambda text: "[1, 2]",
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "crypto"}),
        lambda text: json.dumps({**json.loads(text), "crypto": {"kdf": "scrypt"}}),
        lambda text: json.dumps({**json.loads(text), "crypto": "abc"}),
    ],
)
def test_corrupt_keystores(keystore_path, tmp_path, mutate):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(mutate(keystore_path.read_text()))
    with pytest.raises(SignerError) as info:
        Signer.from_keystore(corrupt, PASSWORD)
    assert KEY_HEX not in leaked_text(info.value)
    assert info.value.__cause__ is None


# --- Environment ----------------------------------------------------------------------------------


def test_from_env_with_a_key():
    assert Signer.from_env({"HOKUSAI_ATTESTER_KEY": KEY}).address == ADDRESS


def test_from_env_with_a_keystore(keystore_path):
    env = {"HOKUSAI_ATTESTER_KEYSTORE": str(keystore_path), "HOKUSAI_ATTESTER_PASSWORD": PASSWORD}
    assert Signer.from_env(env).address == ADDRESS


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.delenv("HOKUSAI_ATTESTER_KEYSTORE", raising=False)
    monkeypatch.setenv("HOKUSAI_ATTESTER_KEY", KEY)
    assert Signer.from_env().address == ADDRESS


def test_from_env_refuses_both_sources(keystore_path):
    env = {
        "HOKUSAI_ATTESTER_KEY": KEY,
        "HOKUSAI_ATTESTER_KEYSTORE": str(keystore_path),
        "HOKUSAI_ATTESTER_PASSWORD": PASSWORD,
    }
    with pytest.raises(SignerError, match="choose one") as info:
        Signer.from_env(env)
    assert KEY_HEX not in leaked_text(info.value)


@pytest.mark.parametrize("password", [None, ""])
def test_from_env_keystore_without_password(keystore_path, password):
    env = {"HOKUSAI_ATTESTER_KEYSTORE": str(keystore_path)}
    if password is not None:
        env["HOKUSAI_ATTESTER_PASSWORD"] = password
    with pytest.raises(SignerError, match="HOKUSAI_ATTESTER_PASSWORD"):
        Signer.from_env(env)


@pytest.mark.parametrize("env", [{}, {"HOKUSAI_ATTESTER_KEY": "  ", "HOKUSAI_ATTESTER_KEYSTORE": ""}])
def test_from_env_without_configuration_says_what_to_set(env):
    with pytest.raises(SignerError) as info:
        Signer.from_env(env)
    message = str(info.value)
    for variable in ("HOKUSAI_ATTESTER_KEY", "HOKUSAI_ATTESTER_KEYSTORE", "HOKUSAI_ATTESTER_PASSWORD"):
        assert variable in message


def test_from_env_bad_key_is_not_echoed():
    bad = "0x" + "5a" * 31
    with pytest.raises(SignerError) as info:
        Signer.from_env({"HOKUSAI_ATTESTER_KEY": bad})
    assert bad[2:] not in leaked_text(info.value)
