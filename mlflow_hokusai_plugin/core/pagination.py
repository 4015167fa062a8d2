"""Page tokens of the Hokusai routes: opaque to clients, as MLflow's are."""

from __future__ import annotations

import base64
import binascii
import json

from mlflow_hokusai_plugin.core.errors import ValidationError


def encode_page_token(position: tuple[int, int]) -> str:
    """An opaque token for a keyset position.

    >>> decode_page_token(encode_page_token((1700000000000, 42)))
    (1700000000000, 42)
    """
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_page_token(token: str | None) -> tuple[int, int] | None:
    """The position a token stands for; a token this server did not make is a ValidationError."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationError("page_token", "is not a page token from this server") from None
    if (
        not isinstance(position, list)
        or len(position) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in position)
    ):
        raise ValidationError("page_token", "is not a page token from this server")
    return position[0], position[1]
