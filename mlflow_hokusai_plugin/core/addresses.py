"""Ethereum addresses of contributors and attesters.

Users type or paste addresses into model-version tags, so every address is checked here once and
then travels in its EIP-55 checksummed form. A mixed-case address carries a checksum: if it does not
match, the address is a typo, and minting rewards to a typo would lose them for good.
"""

import string

from eth_utils import to_checksum_address as _eip55

from mlflow_hokusai_plugin.core.errors import ValidationError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_HEX_DIGITS = frozenset(string.hexdigits)
_ADDRESS_HEX_LENGTH = 40


def to_checksum_address(value: object, field: str = "address", allow_zero: bool = False) -> str:
    """Validate an address given in any case and return its EIP-55 checksummed form.

    All-lowercase and all-uppercase input carry no checksum and are accepted as they are; a
    mixed-case input must have a correct EIP-55 checksum. The zero address is refused unless
    ``allow_zero``: tokens sent there are burnt.

    >>> to_checksum_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'
    >>> to_checksum_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mlflow_hokusai_plugin.core.errors.ValidationError: address: checksum mismatch: probably a typo ...
    """
    if not isinstance(value, str):
        raise ValidationError(
            field,
            f"must be a string (0x followed by 40 hex digits), got {type(value).__name__}",
        )
    if not value.startswith("0x"):
        raise ValidationError(
            field,
            f"must start with 0x followed by 40 hex digits, got {_shorten(value)!r}",
        )
    digits = value[2:]
    # Checked before the length so that "has N hex digits" below is a true statement.
    bad = sorted(set(digits) - _HEX_DIGITS)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValidationError(
            field,
            f"contains non-hexadecimal characters ({shown}) in {_shorten(value)!r}",
        )
    if len(digits) != _ADDRESS_HEX_LENGTH:
        raise ValidationError(
            field,
            f"has {len(digits)} hex digits after 0x, an address has exactly {_ADDRESS_HEX_LENGTH}",
        )
    checksummed = _eip55(value.lower())
    if digits not in (digits.lower(), digits.upper()) and value != checksummed:
        raise ValidationError(
            field,
            f"checksum mismatch: probably a typo ({value} is mixed-case but its EIP-55 form "
            f"would be {checksummed}); check the address, or give it all in lowercase",
        )
    if checksummed == ZERO_ADDRESS and not allow_zero:
        raise ValidationError(field, "is the zero address; anything sent to it is lost")
    return checksummed


def is_address(value: object) -> bool:
    """Tell whether ``value`` is a well-formed address (the zero address counts as one).

    >>> is_address("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359")
    True
    >>> is_address("0xfb6916095CA1DF60BB79CE92CE3EA74C37C5D359")
    False
    """
    try:
        to_checksum_address(value, allow_zero=True)
    except ValidationError:
        return False
    return True


def _shorten(text: str, limit: int = 60) -> str:
    # Error messages end up in HTTP responses and logs: keep a pasted blob from flooding them.
    return text if len(text) <= limit else text[:limit] + "..."
