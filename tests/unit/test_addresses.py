import pytest

from mlflow_hokusai_plugin.core.addresses import (
    ZERO_ADDRESS,
    is_address,
    to_checksum_address,
)
from mlflow_hokusai_plugin.core.errors import ValidationError

# The test vectors of EIP-55 itself.
EIP55_ALL_CAPS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
]
EIP55_ALL_LOWER = [
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]
EIP55_NORMAL = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
EIP55_VECTORS = EIP55_ALL_CAPS + EIP55_ALL_LOWER + EIP55_NORMAL


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_spec_vectors_are_their_own_checksum(address):
    assert to_checksum_address(address) == address


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_any_single_case_input_gives_the_spec_form(address):
    assert to_checksum_address(address.lower()) == address
    assert to_checksum_address("0x" + address[2:].upper()) == address


@pytest.mark.parametrize("address", EIP55_NORMAL)
def test_mixed_case_with_a_wrong_checksum_is_a_typo(address):
    # Flip the case of the last letter: still mixed case, checksum now wrong.
    index = max(i for i, c in enumerate(address) if c.isalpha() and i > 1)
    typo = address[:index] + address[index].swapcase() + address[index + 1 :]
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address(typo, field="contributors[2].address")
    assert excinfo.value.field == "contributors[2].address"
    assert "checksum mismatch: probably a typo" in excinfo.value.message
    assert address in excinfo.value.message


def test_default_field_is_address():
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address(42)
    assert excinfo.value.field == "address"


@pytest.mark.parametrize("value", [None, 42, b"0x" + b"a" * 40, ["0x" + "a" * 40]])
def test_not_a_string(value):
    with pytest.raises(ValidationError, match="must be a string") as excinfo:
        to_checksum_address(value, field="attester")
    assert excinfo.value.field == "attester"


@pytest.mark.parametrize("value", ["5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0X" + "a" * 40, ""])
def test_missing_0x_prefix(value):
    with pytest.raises(ValidationError, match="must start with 0x"):
        to_checksum_address(value)


@pytest.mark.parametrize("digits", [0, 39, 41, 64])
def test_wrong_length_says_how_many_digits(digits):
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address("0x" + "a" * digits)
    assert f"has {digits} hex digits" in excinfo.value.message
    assert "exactly 40" in excinfo.value.message


@pytest.mark.parametrize(
    "value",
    [
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea d",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae\n",
    ],
)
def test_non_hex_characters(value):
    with pytest.raises(ValidationError, match="non-hexadecimal characters"):
        to_checksum_address(value)


def test_non_hex_message_names_the_character():
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg")
    assert "'g'" in excinfo.value.message


def test_zero_address_refused_by_default():
    with pytest.raises(ValidationError, match="zero address") as excinfo:
        to_checksum_address(ZERO_ADDRESS, field="contributors[0].address")
    assert excinfo.value.field == "contributors[0].address"


def test_zero_address_allowed_on_request():
    assert to_checksum_address(ZERO_ADDRESS, allow_zero=True) == ZERO_ADDRESS


def test_long_garbage_is_shortened_in_the_message():
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address("x" * 10_000)
    assert len(excinfo.value.message) < 200


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        (7, "must be a string"),
        ("abc", "must start with 0x"),
        ("0x" + "a" * 39, "has 39 hex digits"),
        ("0x" + "z" * 40, "non-hexadecimal characters"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "checksum mismatch"),
        (ZERO_ADDRESS, "is the zero address"),
    ],
)
def test_each_rejection_has_its_own_message(value, phrase):
    with pytest.raises(ValidationError) as excinfo:
        to_checksum_address(value)
    message = excinfo.value.message
    assert phrase in message
    others = {
        "must be a string",
        "must start with 0x",
        "hex digits after",
        "non-hexadecimal",
        "checksum mismatch",
        "zero address",
    }
    assert sum(other in message for other in others) == 1


@pytest.mark.parametrize("address", [*EIP55_VECTORS, ZERO_ADDRESS])
def test_is_address_true(address):
    assert is_address(address) is True


@pytest.mark.parametrize(
    "value",
    [
        None,
        1,
        "",
        "0x",
        "0x" + "a" * 39,
        "0x" + "g" * 40,
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
    ],
)
def test_is_address_false(value):
    assert is_address(value) is False
