"""The one byte serialization of everything that is hashed or signed.

A hash or a signature is over bytes, not over a dict: two runs that build the same dict must
produce the same bytes, or digests stop matching. ``canonical_json`` fixes those bytes (sorted
keys, no whitespace, UTF-8), and refuses values that JSON cannot carry faithfully (NaN, infinity,
non-string keys) instead of letting ``json`` write something another parser reads differently.
``parse_json`` is the matching strict reader for JSON that comes from outside.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from mlflow_hokusai_plugin.core.errors import ValidationError

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
MAX_JSON_DEPTH = 64


def canonical_json(obj: Any) -> bytes:
    """Serialize ``obj`` to canonical JSON bytes.

    UTF-8, keys sorted, separators ``,`` and ``:``, non-ASCII written as is. Only ``dict`` (string
    keys), ``list``/``tuple``, ``str``, ``int``, finite ``float``, ``bool`` and ``None`` are
    accepted; anything else raises :class:`ValidationError` naming where it sits.

    >>> canonical_json({"b": 1, "a": [True, None, "é"]})
    b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
    """
    _check_json_value(obj, "value")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def parse_json(data: bytes | str, field: str = "value", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON strictly; anything doubtful raises :class:`ValidationError` (``field``).

    Refused: invalid UTF-8 or JSON, duplicate keys and ``NaN``/``Infinity`` (another parser could
    read such a text as a different value from the one checked here), integers longer than
    Python's digit limit, and nesting deeper than ``max_depth``.

    The depth is checked before parsing because eth-account imports py_ecc, which raises the
    interpreter's recursion limit to 100000: from then on ``json.loads("[" * 100000)`` overflows the
    C stack and kills the process instead of raising RecursionError.

    >>> parse_json(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> parse_json('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    mlflow_hokusai_plugin.core.errors.ValidationError: value: duplicate key 'a'
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(field, "is not valid UTF-8") from None
    if not isinstance(data, str):
        raise ValidationError(field, f"must be JSON text, got {type(data).__name__}")
    depth = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(data):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise ValidationError(field, f"nests deeper than {max_depth} levels")
        elif bracket in ("]", "}"):
            depth -= 1
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValidationError as exc:
        raise ValidationError(field, exc.message) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ValidationError(field, f"is not valid JSON ({exc})") from None


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``.

    >>> sha256_hex(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def artifact_manifest(files: Iterable[tuple[str, str, int]]) -> dict:
    """Build the canonical manifest of a model's artifact files.

    ``files`` yields ``(relative_path, sha256_hex, size)``; reading and hashing the files is the
    caller's job. Paths are relative, ``/``-separated (a Windows ``\\`` is turned into ``/``) and
    unique; entries come out sorted by path so the order the files were listed in does not matter.

    >>> manifest = artifact_manifest([("model.pkl", "AB" * 32, 3), ("MLmodel", "cd" * 32, 1)])
    >>> [(entry["path"], entry["sha256"][:4], entry["size"]) for entry in manifest["files"]]
    [('MLmodel', 'cdcd', 1), ('model.pkl', 'abab', 3)]
    """
    entries: dict[str, dict] = {}
    for index, item in enumerate(files):
        field = f"files[{index}]"
        try:
            raw_path, digest, size = item
        except (TypeError, ValueError):
            raise ValidationError(field, "must be a (path, sha256, size) triple") from None
        path = _manifest_path(raw_path, f"{field}.path")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise ValidationError(f"{field}.sha256", "must be 64 hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValidationError(f"{field}.size", "must be an integer >= 0")
        if path in entries:
            raise ValidationError(field, f"duplicate path {path!r}")
        entries[path] = {"path": path, "sha256": digest.lower(), "size": size}
    return {"files": [entries[path] for path in sorted(entries)]}


def manifest_digest(files: Iterable[tuple[str, str, int]]) -> str:
    """SHA-256 hex of the canonical JSON of :func:`artifact_manifest` (the model's digest)."""
    return sha256_hex(canonical_json(artifact_manifest(files)))


def _manifest_path(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty relative path")
    path = value.replace("\\", "/")
    # One spelling per file: "a/./b", "a//b" or "/a" would give a second digest for the same tree,
    # and ".." would point outside the model's artifact directory.
    if path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise ValidationError(field, f"must be a normalized relative path, got {value!r}")
    return path


def _check_json_value(value: Any, where: str) -> None:
    # Walks the value once so that the error names the offending place; json.dumps alone would
    # say "Out of range float values" without saying which metric was NaN.
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(where, "contains a lone surrogate, not valid UTF-8") from None
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(where, f"is {value}, which JSON cannot represent")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                # json would silently turn 1 into "1", so {1: x, "1": y} would serialize ambiguously.
                raise ValidationError(where, f"has a non-string key {key!r}")
            _check_json_value(key, f"{where}.{key}")
            _check_json_value(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
        return
    raise ValidationError(where, f"has type {type(value).__name__}, which is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValidationError("value", f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValidationError("value", f"{name} is not JSON")
