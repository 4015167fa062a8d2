"""Errors raised by the domain logic.

A :class:`ValidationError` always names the field that is wrong, so the REST layer can turn it into
an HTTP 400 (``INVALID_PARAMETER_VALUE``) and the CLI into a one-line message.
"""


class HokusaiError(Exception):
    """Base class of every error this package raises on purpose."""


class ValidationError(HokusaiError, ValueError):
    """Bad input. ``field`` names what is wrong, ``message`` says why.

    >>> str(ValidationError("contributors[0].address", "is the zero address"))
    'contributors[0].address: is the zero address'
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
