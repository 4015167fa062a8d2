"""Request body limits, applied before anything parses a body: size and JSON nesting depth.

Everything behind these limits parses bodies before it knows who is asking: the API-key hook reads
the JSON to decide which access a request needs, and MLflow's handlers parse JSON (then protobuf)
for every method and, in places, whatever the content type. Without limits one unauthenticated
request kills a worker: ``[`` repeated 100000 times overflows the C stack of a recursive parser
(py_ecc raises Python's recursion limit to 100000, so no RecursionError stops it first), and a
body of hundreds of MB is held whole in memory by MLflow's WSGI bridge.

Two layers, the same rules:

- :class:`WsgiBodyLimits` wraps MLflow's Flask app (``app.wsgi_app``), so it runs before every
  Flask hook and handler, under uvicorn and under ``--gunicorn-opts``. It reads at most the limit
  plus one byte, counting (a chunked body has no Content-Length to trust), scans, and hands Flask
  the bytes it read.
- :class:`AsgiBodyLimits`, outermost on MLflow's FastAPI app (uvicorn). It applies the size
  limit to every request, because MLflow's bridge to Flask buffers a whole body before Flask
  runs; and the depth limit to the routes FastAPI serves natively (OTLP, jobs, gateway...),
  which Flask never sees.

Answers are MLflow's error shape: 413 ``REQUEST_TOO_LARGE`` or 400 ``INVALID_PARAMETER_VALUE``,
naming the limit and its setting. Artifact uploads (``PUT .../mlflow-artifacts/artifacts/...``)
are exempt: they stream to the artifact store and nothing parses them. The UI's upload-artifact
route and OTLP carry files and protobuf: the size limit applies, the depth scan only when they
say they are JSON.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_hokusai_plugin.runtime.config import MAX_BODY_BYTES_ENV, MAX_JSON_DEPTH_ENV
from mlflow_hokusai_plugin.server.request_log import log_request

_logger = logging.getLogger(__name__)

# What a body is to the limits.
STREAMED = "streamed"  # an artifact upload: no limit, never buffered
BINARY = "binary"  # a file or protobuf: size limit; depth only if declared JSON
JSON = "json"  # everything else: size and depth, whatever the content type says

_ARTIFACT_UPLOADS = ("/api/2.0/mlflow-artifacts/artifacts/", "/ajax-api/2.0/mlflow-artifacts/artifacts/")
_BINARY_POSTS = frozenset({"/ajax-api/2.0/mlflow/upload-artifact", "/v1/traces"})
_READ_CHUNK = 64 * 1024


def body_kind(method: str, path: str, static_prefix: str = "") -> str:
    """How the limits treat the body of ``method path`` (:data:`STREAMED`, :data:`BINARY`, :data:`JSON`).

    ``static_prefix`` is MLflow's ``--static-prefix``: Flask's routes carry it, the native
    artifact routes do not, so both spellings are recognised.

    >>> body_kind("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/model.pkl")
    'streamed'
    >>> body_kind("POST", "/mlflow/v1/traces", "/mlflow")
    'binary'
    >>> body_kind("POST", "/api/2.0/mlflow-artifacts/mpu/complete/0/model.pkl")  # a JSON part list
    'json'
    """
    if static_prefix and path.startswith(static_prefix + "/"):
        path = path[len(static_prefix) :]
    if method == "PUT" and path.startswith(_ARTIFACT_UPLOADS):
        return STREAMED
    if method == "POST" and path in _BINARY_POSTS:
        return BINARY
    return JSON


# -- the depth scan -------------------------------------------------------------------------------

# Only quotes and brackets matter to the walk; every other byte is dropped before it.
_OTHER_BYTES = bytes(sorted(set(range(256)) - set(b'"[]{}')))
# Then each byte becomes its step, as an int8: +1 opens, -1 (0xff) closes, a quote 0.
_STEPS = bytes.maketrans(b'"[{]}', b"\x00\x01\x01\xff\xff")
# Blocks keep the scan's memory small (a few MB) whatever the body's size.
_SCAN_BLOCK = 1 << 20
_JSON_WHITESPACE = b" \t\n\r"


def json_depth(body: bytes) -> int:
    """How deep the brackets of ``body`` nest, outside string literals, without parsing it.

    For valid JSON this is the nesting of the parsed value (``[]`` is 1, a scalar 0); for anything
    else it is at least the depth a parser reaches before it fails, so no parser ever goes deeper.
    A body that is one JSON string is measured by what it holds, decoded: MLflow decodes it a
    second time (older clients double-encode their requests), so ``"[[]]"`` is 2.

    >>> json_depth(b'{"metrics": [{"key": "a]]]", "value": 1}]}')
    3
    >>> json_depth(b"[" * 100000)
    100000
    >>> json_depth(json.dumps(json.dumps([[[1]]])).encode())
    3
    """
    text = _as_utf8(body)
    deepest = _bracket_depth(text)
    inner = _string_literal(text)
    # Each decoding is shorter than what it decodes, so this ends.
    while inner is not None:
        deepest = max(deepest, _bracket_depth(inner))
        inner = _string_literal(inner)
    return deepest


def _as_utf8(body: bytes) -> bytes:
    """``body`` in UTF-8: json.loads (and so Flask) also reads UTF-16 and UTF-32 bodies.

    A scan of UTF-16 bytes would misread code units such as U+2222 as quotes; transcoding first
    keeps string literals where the parser sees them.
    """
    encoding = json.detect_encoding(body)
    if encoding in ("utf-8", "utf-8-sig"):
        return body
    try:
        # Decoded exactly as json.loads decodes bytes: lone surrogates pass.
        return body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:
        return body  # json.loads cannot decode it either, so parses nothing


def _string_literal(text: bytes) -> bytes | None:
    """The decoded content of ``text`` when it is a single JSON string, else None."""
    stripped = text.removeprefix(b"\xef\xbb\xbf").strip(_JSON_WHITESPACE)
    if not stripped.startswith(b'"'):
        return None
    try:
        # A string literal nests nothing: json.loads cannot recurse here.
        value = json.loads(stripped)
    except ValueError:
        return None
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else None


def _bracket_depth(text: bytes) -> int:
    """The deepest point of the walk that ``[``/``{`` raise and ``]``/``}`` lower, outside strings.

    A linear scan in C (bytes methods and numpy), not a Python loop per byte: a 16 MiB body of
    ``[]`` takes a fraction of a second, a tenth of what json.loads spends on it. The walk is not
    clamped at 0: a stray closing bracket only lowers what follows, and a parser stops at it.
    """
    # Escapes first, so that every remaining quote opens or closes a string. Removing ``\\`` pairs
    # and then ``\"`` is the parser's own left-to-right pairing of backslashes (a run of them is
    # paired off two by two; an odd last one escapes the next byte). A backslash outside a string
    # is a syntax error at which the parser stops, so what it does to the rest does not matter.
    text = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _OTHER_BYTES)
    has_strings = b'"' in text
    deepest = depth = 0
    inside = 0  # 1 when the previous block ended inside a string literal
    for start in range(0, len(text), _SCAN_BLOCK):
        block = text[start : start + _SCAN_BLOCK]
        steps = np.frombuffer(block.translate(_STEPS), dtype=np.int8)
        if has_strings:
            # Inside a string after an odd number of quotes (the count's parity).
            quotes = np.frombuffer(block, dtype=np.uint8) == ord('"')
            in_string = (np.cumsum(quotes, dtype=np.int32) & 1) ^ inside
            steps = np.where(in_string == 0, steps, np.int8(0))
            inside = int(in_string[-1])
        walk = np.cumsum(steps, dtype=np.int32) + depth
        deepest = max(deepest, int(walk.max()))
        depth = int(walk[-1])
    return deepest


# -- the rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """An answer in MLflow's error shape."""

    status: int
    error_code: str
    message: str

    @property
    def reason(self) -> str:
        return {400: "Bad Request", 413: "Content Too Large"}[self.status]

    def body(self) -> bytes:
        return json.dumps({"error_code": self.error_code, "message": self.message}).encode()


@dataclass(frozen=True)
class BodyLimits:
    """``HOKUSAI_MAX_BODY_BYTES`` and ``HOKUSAI_MAX_JSON_DEPTH``, and the checks that apply them."""

    max_body_bytes: int
    max_json_depth: int

    # Messages name the field first, as every refusal of the server does ("body: ...").
    def too_large(self, what: str = "the request body") -> Refusal:
        return Refusal(
            413,
            "REQUEST_TOO_LARGE",
            f"body: {what} is larger than {self.max_body_bytes} bytes, the limit set by {MAX_BODY_BYTES_ENV}",
        )

    def too_deep(self) -> Refusal:
        return Refusal(
            400,
            "INVALID_PARAMETER_VALUE",
            f"body: the request body nests deeper than {self.max_json_depth} levels of JSON arrays "
            f"and objects, the limit set by {MAX_JSON_DEPTH_ENV}",
        )

    def check(
        self, body: bytes, kind: str, content_type: str | None, content_encoding: str | None = None
    ) -> Refusal | None:
        """Why ``body`` (read whole, within the size limit) is refused, or None.

        ``content_encoding`` is given only for the routes FastAPI serves, where OTLP inflates gzip
        and deflate: the limits then apply to the decoded body too, or a 16 MiB gzip bomb would be
        16 GiB in the handler. The raw body is scanned as well, for the routes that do not decode.
        """
        bodies = [body]
        if content_encoding:
            decoded = _inflate(body, content_encoding.strip().lower(), self.max_body_bytes)
            if decoded is None:
                return self.too_large("the decompressed request body")
            if decoded is not body:
                bodies.append(decoded)
        if kind == BINARY and not _declares_json(content_type):
            return None
        if any(json_depth(each) > self.max_json_depth for each in bodies):
            return self.too_deep()
        return None


def _declares_json(content_type: str | None) -> bool:
    """What Flask's ``request.is_json`` says: application/json or a ``+json`` type."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or mimetype.endswith("+json")


def _inflate(body: bytes, encoding: str, limit: int) -> bytes | None:
    """``body`` decoded from gzip or deflate, stopping past ``limit`` bytes (then None).

    An encoding it does not know, or a body that does not decode, comes back as is: the route
    answers 400 for those without parsing anything.
    """
    if encoding in ("gzip", "x-gzip"):
        attempts = [zlib.MAX_WBITS | 16]
    elif encoding == "deflate":
        attempts = [zlib.MAX_WBITS, -zlib.MAX_WBITS]  # zlib-wrapped, then raw, as MLflow tries
    else:
        return body
    for wbits in attempts:
        try:
            return _inflate_members(body, wbits, limit)
        except zlib.error:
            continue
    return body


def _inflate_members(data: bytes, wbits: int, limit: int) -> bytes | None:
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits)
        # max_length: never more than one byte past the limit, whatever the ratio.
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            return None
        if not inflater.eof or wbits < 0 or not wbits & 16:
            break
        data = inflater.unused_data  # gzip allows several members one after another
    return bytes(out)


def _static_prefix() -> str:
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    return os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/")


def _log_refusal(method: str, path: str, refusal: Refusal, remote: str | None, started: float) -> None:
    # The request log promises a line for every answered request; these never reach its hooks.
    _logger.warning("refused %s %s from %s: %s", method, path, remote, refusal.message)
    log_request(
        request_id=None,
        principal=None,
        method=method,
        route=None,
        path=path,
        status=refusal.status,
        seconds=time.perf_counter() - started,
    )


# -- WSGI: in front of Flask ----------------------------------------------------------------------


class WsgiBodyLimits:
    """Wraps a WSGI app (MLflow's ``app.wsgi_app``): the limits before Flask reads anything."""

    def __init__(self, app: Callable, limits: BodyLimits, static_prefix: str | None = None) -> None:
        self.app = app
        self.limits = limits
        self.static_prefix = _static_prefix() if static_prefix is None else static_prefix

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        started = time.perf_counter()
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        kind = body_kind(method, path, self.static_prefix)
        if kind == STREAMED:
            return self.app(environ, start_response)
        declared = _content_length(environ.get("CONTENT_LENGTH"))
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked and not declared:
            return self.app(environ, start_response)  # no body (Flask reads none either)
        limit = self.limits.max_body_bytes
        if declared is not None and declared > limit:
            # Refused before reading a byte of it.
            return self._refuse(environ, start_response, self.limits.too_large(), started)
        # Chunked: counted up to one byte past the limit, whatever a Content-Length beside it says.
        body = _read_at_most(environ["wsgi.input"], limit + 1 if chunked else declared)
        if len(body) > limit:
            return self._refuse(environ, start_response, self.limits.too_large(), started)
        refusal = self.limits.check(body, kind, environ.get("CONTENT_TYPE"))
        if refusal is not None:
            return self._refuse(environ, start_response, refusal, started)
        # Flask reads what was read here; the headers still describe it as they did.
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(environ: dict, start_response: Callable, refusal: Refusal, started: float) -> list[bytes]:
        body = refusal.body()
        start_response(
            f"{refusal.status} {refusal.reason}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        _log_refusal(
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            refusal,
            environ.get("REMOTE_ADDR"),
            started,
        )
        return [body]


def _content_length(value: Any) -> int | None:
    """The declared length, or None when absent or not a number."""
    text = (value if isinstance(value, str) else (value or b"").decode("latin-1")).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _read_at_most(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``: fewer only at its end. Reads in chunks, never all."""
    chunks, total = [], 0
    while total < size:
        chunk = stream.read(min(_READ_CHUNK, size - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


# -- ASGI: outermost on FastAPI -------------------------------------------------------------------


class AsgiBodyLimits:
    """The limits for every request uvicorn hands MLflow's FastAPI app.

    ``is_native(scope)`` says whether FastAPI serves the request itself; the others go to Flask,
    whose :class:`WsgiBodyLimits` scans them, so only their size is checked here (MLflow's bridge
    would otherwise buffer any size before Flask runs). The body is read here, within the limit,
    and replayed to the app; artifact uploads pass through untouched and keep streaming.
    """

    def __init__(
        self,
        app: Any,
        limits: BodyLimits,
        is_native: Callable[[dict], bool],
        static_prefix: str | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.is_native = is_native
        self.static_prefix = _static_prefix() if static_prefix is None else static_prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        kind = body_kind(scope["method"], scope["path"], self.static_prefix)
        if kind == STREAMED:
            await self.app(scope, receive, send)
            return
        headers = {}
        for name, value in scope.get("headers") or ():
            headers.setdefault(name.lower(), value)
        limit = self.limits.max_body_bytes
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > limit:
            # Refused before reading: the client can stop sending.
            await self._refuse(scope, send, self.limits.too_large(), started)
            return
        messages, size = deque(), 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nobody to answer
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, send, self.limits.too_large(), started)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break
        if self.is_native(scope):
            body = b"".join(message.get("body", b"") for message in messages)
            messages = deque([{"type": "http.request", "body": body, "more_body": False}])
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            encoding = headers.get(b"content-encoding", b"").decode("latin-1") or None
            refusal = self.limits.check(body, kind, content_type, encoding)
            if refusal is not None:
                await self._refuse(scope, send, refusal, started)
                return

        async def replay() -> dict:
            # The body read above, then whatever comes next (a disconnect) from the server.
            if messages:
                return messages.popleft()
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: dict, send: Callable, refusal: Refusal, started: float) -> None:
        body = refusal.body()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if refusal.status == 413:
            # The rest of the body is not read: the connection cannot carry another request.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        client = scope.get("client") or (None,)
        _log_refusal(scope["method"], scope["path"], refusal, client[0], started)
