"""API keys: their form, their stored hash, and what each role may do.

A key is ``hk_live_`` followed by 43 URL-safe characters (32 random bytes). Only its sha256 is
stored: keys are random, not passwords, so a fast hash is enough and lets a lookup be one indexed
query.
"""

from __future__ import annotations

import hashlib
import re

from mlflow_hokusai_plugin.core.errors import ValidationError

KEY_PREFIX = "hk_live_"
ROLES = ("read", "write", "admin")
_KEY_RE = re.compile(r"hk_live_[A-Za-z0-9_-]{43}")
# How many characters of a key are shown in listings and logs: the prefix and 4 more.
DISPLAY_CHARS = len(KEY_PREFIX) + 4


def looks_like_key(value: str) -> bool:
    """True for strings of the key form (the key may still be unknown or revoked).

    >>> looks_like_key("hk_live_" + "A" * 43), looks_like_key("hk_live_short")
    (True, False)
    """
    return bool(_KEY_RE.fullmatch(value or ""))


def key_hash(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_fingerprint(key: str) -> str:
    """What logs may say about a presented key: enough to correlate, useless to an attacker.

    >>> len(key_fingerprint("anything"))
    12
    """
    return "sha256:" + key_hash(key)[:5]


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def check_role(role: object, field: str = "role") -> str:
    if role not in ROLES:
        raise ValidationError(field, f"{role!r} is not a role; expected one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def role_allows(role: str, needed: str) -> bool:
    """Roles are ordered: admin can do what write can, write what read can.

    >>> role_allows("write", "read"), role_allows("read", "write"), role_allows("admin", "admin")
    (True, False, True)
    """
    return ROLES.index(role) >= ROLES.index(needed)
