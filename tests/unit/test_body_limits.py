"""The body limits without a server: the depth scanner, the rules, the settings, both middlewares.

The scanner is checked against json itself: on any valid JSON it says exactly how deep the value
nests, and on any text at all it says at least how deep json's parser gets before it succeeds or
fails (measured with json's own pure-Python scanner, instrumented).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import json.decoder
import json.scanner
import zlib

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlflow_hokusai_plugin.core.errors import HokusaiError
from mlflow_hokusai_plugin.runtime.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_JSON_DEPTH,
    ConfigError,
    HokusaiConfig,
)
from mlflow_hokusai_plugin.server import body_limits
from mlflow_hokusai_plugin.server.body_limits import (
    BINARY,
    JSON,
    STREAMED,
    AsgiBodyLimits,
    BodyLimits,
    WsgiBodyLimits,
    body_kind,
    json_depth,
)

LIMITS = BodyLimits(max_body_bytes=1000, max_json_depth=8)


def nesting(value) -> int:
    """How deep a parsed JSON value nests: a scalar 0, ``[]`` 1."""
    if isinstance(value, list):
        return 1 + max((nesting(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(item) for item in value.values()), default=0)
    return 0


def parser_reach(text: str) -> int:
    """The deepest json's parser gets in ``text``, whether it then succeeds or fails."""
    state = {"depth": 0, "deepest": 0}

    def tracked(parse):
        def parse_nested(*args, **kwargs):
            state["depth"] += 1
            state["deepest"] = max(state["deepest"], state["depth"])
            try:
                return parse(*args, **kwargs)
            finally:
                state["depth"] -= 1

        return parse_nested

    decoder = json.JSONDecoder()
    decoder.parse_array = tracked(json.decoder.JSONArray)
    decoder.parse_object = tracked(json.decoder.JSONObject)
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # reads parse_array/_object now
    try:
        decoder.decode(text)
    except ValueError:
        pass
    return state["deepest"]


# Characters that matter to a scanner, often, and any others: in UTF-16 or UTF-32, U+2200 and
# U+2222 hold a quote byte and U+5B22 a bracket; lone surrogates are decoded by json.loads.
TRICKY = st.sampled_from(
    [*'"\\[]{}/:,u0 ', "\u2200", "\u2222", "\u5b22", "\ud800", "\udc00", "\x00", "é", "\U0001f600"]
)
# Joined from a list: st.text would drop the lone surrogates.
STRINGS = st.lists(TRICKY | st.characters(), max_size=12).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | STRINGS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(STRINGS, children, max_size=4),
    max_leaves=40,
)
DUMPS = st.fixed_dictionaries(
    {"ensure_ascii": st.booleans(), "indent": st.sampled_from([None, 0, 2]), "sort_keys": st.booleans()}
)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


# -- the scanner ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, depth",
    [
        (b"", 0),
        (b"1", 0),
        (b'"plain"', 0),
        (b"[]", 1),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["]]]]", "[[[["]', 1),  # brackets inside strings do not count
        (b'["\\"[[["]', 1),  # an escaped quote does not end the string
        (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote after it
        (b'["\\\\\\"[", []]', 2),  # three backslashes: one pair, then an escaped quote
        (b'["\\u005b\\u005b"]', 1),  # escaped brackets are characters of the string
        (b"[[[", 3),  # unterminated: as deep as the parser gets
        (b"]]][[[", 0),  # the parser stops at the first ]
        (b'["unterminated [[[[', 1),
        (b'  "[[[[]]]]"  ', 4),  # a body that is one JSON string is measured decoded
        (json.dumps(json.dumps(json.dumps([[[[1]]]]))).encode(), 4),  # and again
        (json.dumps("\\" * 7 + "[[").encode(), 2),  # decoded, not JSON: still an upper bound
        (b"\xef\xbb\xbf[[]]", 2),  # a UTF-8 BOM
        # U+2200 is 0x00 0x22 in UTF-16-LE: a quote to a byte scan, which would then miss 5 levels.
        ('["\u2200", [[[[[]]]]]]'.encode("utf-16-le"), 6),
        ('["\u2200", [[[[[]]]]]]'.encode("utf-32-be"), 6),
        # A lone surrogate, which json.loads decodes (surrogatepass), must not make the scan fall
        # back to the raw bytes, where U+2200 hides what follows.
        ('["\ud800\u2200", [[[[[]]]]]]'.encode("utf-16-le", "surrogatepass"), 6),
        (b"[" * 100_000, 100_000),
        (b'{"a":' * 100_000, 100_000),
    ],
)
def test_json_depth_examples(body, depth):
    assert json_depth(body) == depth


@settings(database=None, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES, dumps=DUMPS, encoding=st.sampled_from(ENCODINGS))
def test_json_depth_is_the_nesting_of_any_valid_json(value, dumps, encoding):
    assume(not isinstance(value, str))  # a string is measured by what it holds (the next tests)
    text = json.dumps(value, **dumps)
    body = text.encode(encoding, "surrogatepass")
    assert nesting(json.loads(body)) == nesting(value)  # json reads the encoding, as Flask does
    assert json_depth(body) == nesting(value)


@settings(database=None, max_examples=200, deadline=None)
@given(value=JSON_VALUES, dumps=DUMPS)
def test_a_json_string_holding_json_is_measured_as_what_it_holds(value, dumps):
    """What MLflow decodes a second time (a double-encoded request) is what is measured."""
    inner = json.dumps(value, **dumps)
    wrapped = json.dumps(inner, ensure_ascii=dumps["ensure_ascii"])
    assert json_depth(wrapped.encode("utf-8", "surrogatepass")) == json_depth(
        inner.encode("utf-8", "surrogatepass")
    )
    if not isinstance(value, str):
        assert json_depth(wrapped.encode("utf-8", "surrogatepass")) == nesting(value)


@settings(database=None, max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from(list('[]{}"\\:,1 au0')), max_size=60))
def test_a_string_body_is_never_below_what_its_second_decoding_reaches(text):
    """MLflow's json.loads of the decoded string: the scan of the body covers it."""
    assert json_depth(json.dumps(text).encode()) >= parser_reach(text)


@settings(database=None, max_examples=500, deadline=None)
@given(
    text=st.text(st.sampled_from([*'[]{}"\\:,1 a', "\ud800", "\udc00", "\u2200", "\u2222"]), max_size=60),
    encoding=st.sampled_from(ENCODINGS),
)
def test_json_depth_is_never_below_what_the_parser_reaches(text, encoding):
    """Any text, in any encoding json.loads reads (lone surrogates pass, as they do there)."""
    assert json_depth(text.encode(encoding, "surrogatepass")) >= parser_reach(text)


@settings(database=None, max_examples=300, deadline=None)
@given(value=JSON_VALUES, data=st.data())
def test_broken_json_is_never_deeper_than_scanned(value, data):
    """Valid JSON cut, or with a byte inserted: json's parser still gets no deeper than the scan."""
    text = json.dumps(value)
    cut = data.draw(st.integers(0, len(text)))
    inserted = data.draw(st.sampled_from(list('[]{}"\\')))
    for broken in (text[:cut], text[:cut] + inserted + text[cut:]):
        assert json_depth(broken.encode("utf-8", "surrogatepass")) >= parser_reach(broken)


@settings(database=None, max_examples=200, deadline=None)
@given(value=JSON_VALUES, block=st.integers(1, 9))
def test_the_scan_does_not_depend_on_its_block_size(value, block):
    """A string or a nesting across the boundary of two blocks is carried over."""
    body = json.dumps(value).encode()
    expected = json_depth(body)
    original = body_limits._SCAN_BLOCK
    body_limits._SCAN_BLOCK = block
    try:
        assert json_depth(body) == expected
    finally:
        body_limits._SCAN_BLOCK = original
    if not isinstance(value, str):  # a string is measured by what it holds
        assert expected == nesting(value)


# -- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, prefix, kind",
    [
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/model.pkl", "", STREAMED),
        ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/0/a/b.txt", "", STREAMED),
        ("PUT", "/mlflow/api/2.0/mlflow-artifacts/artifacts/0/x", "/mlflow", STREAMED),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x", "/mlflow", STREAMED),  # FastAPI's route
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/x", "", JSON),  # a download has no body
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/0/x", "", JSON),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/0/x", "", JSON),
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact", "", BINARY),
        ("POST", "/v1/traces", "", BINARY),
        ("POST", "/mlflow/v1/traces", "/mlflow", BINARY),
        ("POST", "/mlflow/v1/traces", "", JSON),
        ("POST", "/api/2.0/mlflow/runs/log-batch", "", JSON),
        ("PUT", "/api/2.0/mlflow/anything", "", JSON),
    ],
)
def test_body_kind(method, path, prefix, kind):
    assert body_kind(method, path, prefix) == kind


def test_a_binary_body_is_scanned_only_when_it_says_it_is_json():
    deep = b"[" * 100
    assert LIMITS.check(deep, BINARY, "application/x-protobuf") is None
    assert LIMITS.check(deep, BINARY, None) is None
    for content_type in ("application/json", "Application/JSON; charset=utf-8", "application/vnd.x+json"):
        assert LIMITS.check(deep, BINARY, content_type).status == 400
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        refusal = LIMITS.check(deep, JSON, content_type)
        assert refusal.status == 400 and refusal.error_code == "INVALID_PARAMETER_VALUE"
        assert "8 levels" in refusal.message and "HOKUSAI_MAX_JSON_DEPTH" in refusal.message
    assert LIMITS.check(b"[" * 8 + b"]" * 8, JSON, None) is None


def test_compressed_bodies_are_limited_by_what_they_inflate_to():
    deep = b"[" * 100
    gzip_bomb = gzip.compress(b"\0" * 10_000)
    assert len(gzip_bomb) < LIMITS.max_body_bytes
    refusal = LIMITS.check(gzip_bomb, BINARY, "application/x-protobuf", "gzip")
    assert refusal.status == 413 and refusal.error_code == "REQUEST_TOO_LARGE"
    assert "decompressed" in refusal.message and "HOKUSAI_MAX_BODY_BYTES" in refusal.message
    # gzip members one after another, as gzip.decompress reads them: counted together.
    members = gzip.compress(b"\0" * 600) + gzip.compress(b"\0" * 600)
    assert LIMITS.check(members, BINARY, None, "gzip").status == 413
    assert LIMITS.check(gzip.compress(b"\0" * 900), BINARY, None, "gzip") is None
    # deflate, zlib-wrapped or raw (MLflow tries both), and a deep JSON inside.
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for encoded, encoding in [
        (zlib.compress(b"\0" * 5000), "deflate"),
        (raw.compress(b"\0" * 5000) + raw.flush(), "deflate"),
        (gzip.compress(b"\0" * 5000), "x-gzip"),
    ]:
        assert LIMITS.check(encoded, BINARY, None, encoding).status == 413, encoding
    assert LIMITS.check(gzip.compress(deep), BINARY, "application/json", "gzip").status == 400
    assert LIMITS.check(gzip.compress(deep), BINARY, None, "gzip") is None
    # A body that says it is compressed and is not: scanned as it is.
    assert LIMITS.check(deep, JSON, None, "deflate").status == 400
    assert LIMITS.check(deep, JSON, None, "br").status == 400


# -- the settings ---------------------------------------------------------------------------------

BASE_ENV = {"HOKUSAI_AUTH": "apikey"}


def test_settings_default_and_accept_whole_numbers():
    config = HokusaiConfig.from_env(BASE_ENV)
    assert (config.max_body_bytes, config.max_json_depth) == (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_JSON_DEPTH)
    assert (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_JSON_DEPTH) == (16 * 1024 * 1024, 64)
    config = HokusaiConfig.from_env(
        {**BASE_ENV, "HOKUSAI_MAX_BODY_BYTES": " 1048576 ", "HOKUSAI_MAX_JSON_DEPTH": "1000"}
    )
    assert (config.max_body_bytes, config.max_json_depth) == (1048576, 1000)
    assert (
        HokusaiConfig.from_env({**BASE_ENV, "HOKUSAI_MAX_BODY_BYTES": ""}).max_body_bytes
        == DEFAULT_MAX_BODY_BYTES
    )


@pytest.mark.parametrize("name", ["HOKUSAI_MAX_BODY_BYTES", "HOKUSAI_MAX_JSON_DEPTH"])
@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "+5", "1_000", "1e6", "\u0665", "16MiB"])
def test_a_setting_that_is_not_a_positive_whole_number_is_refused(name, value):
    with pytest.raises(ConfigError, match=name) as raised:
        HokusaiConfig.from_env({**BASE_ENV, name: value})
    assert isinstance(raised.value, HokusaiError)
    assert "positive whole number" in str(raised.value)


def test_a_depth_above_the_parsers_safe_range_is_refused():
    """Python's recursion limit is 100000 once py_ecc is imported: a parser allowed that deep
    overflows the C stack instead of raising RecursionError."""
    with pytest.raises(ConfigError, match="HOKUSAI_MAX_JSON_DEPTH='1001': at most 1000"):
        HokusaiConfig.from_env({**BASE_ENV, "HOKUSAI_MAX_JSON_DEPTH": "1001"})


# -- WSGI -----------------------------------------------------------------------------------------


def echo_app() -> Flask:
    """A Flask app that answers with the body it read, however it was sent."""
    app = Flask(__name__)

    @app.route("/<path:anything>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def echo(anything):
        return request.get_data()

    return app


class MustNotBeRead(io.RawIOBase):
    def read(self, size=-1):
        raise AssertionError("the body was read")


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed_out = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.handed_out += len(chunk)
        return chunk


def wsgi_call(app, method: str, path: str, stream, headers: dict[str, str]) -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "wsgi.input_terminated": True,  # what gunicorn says: a chunked body ends on its own
        **headers,
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_wsgi_refuses_a_declared_length_over_the_limit_without_reading():
    app = WsgiBodyLimits(echo_app().wsgi_app, LIMITS, static_prefix="")
    status, headers, body = wsgi_call(app, "POST", "/x", MustNotBeRead(), {"CONTENT_LENGTH": "1001"})
    assert status.startswith("413") and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["error_code"] == "REQUEST_TOO_LARGE" and "1000 bytes" in payload["message"]


def test_wsgi_counts_a_chunked_body_and_reads_one_byte_past_the_limit_at_most():
    app = WsgiBodyLimits(echo_app().wsgi_app, LIMITS, static_prefix="")
    stream = CountingStream(b"x" * 50_000)
    status, _, _ = wsgi_call(app, "POST", "/x", stream, {"HTTP_TRANSFER_ENCODING": "chunked"})
    assert status.startswith("413") and stream.handed_out == LIMITS.max_body_bytes + 1
    status, _, body = wsgi_call(
        app, "POST", "/x", CountingStream(b"y" * 1000), {"HTTP_TRANSFER_ENCODING": "chunked"}
    )
    assert status.startswith("200") and body == b"y" * 1000


def test_wsgi_hands_flask_the_body_it_read_and_refuses_deep_ones():
    app = WsgiBodyLimits(echo_app().wsgi_app, LIMITS, static_prefix="")
    sent = b'{"a": [1, 2, {"b": "[[[[[[[[[[[["}]}'
    status, _, body = wsgi_call(
        app, "POST", "/x", io.BytesIO(sent), {"CONTENT_LENGTH": str(len(sent)), "CONTENT_TYPE": "text/plain"}
    )
    assert status.startswith("200") and body == sent
    deep = b"[" * 9
    for method in ("POST", "PATCH", "DELETE", "GET"):
        status, headers, body = wsgi_call(app, method, "/x", io.BytesIO(deep), {"CONTENT_LENGTH": "9"})
        assert status.startswith("400") and json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    # No body at all (no length, not chunked): the input is handed on unread.
    seen = {}

    def record_input(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        start_response("200 OK", [])
        return [b""]

    stream = MustNotBeRead()
    status, _, _ = wsgi_call(WsgiBodyLimits(record_input, LIMITS, static_prefix=""), "GET", "/x", stream, {})
    assert status.startswith("200") and seen["input"] is stream


def test_wsgi_leaves_artifact_uploads_streaming():
    seen = {}

    def upload_app(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        start_response("200 OK", [])
        return [b""]

    app = WsgiBodyLimits(upload_app, LIMITS, static_prefix="/prefix")
    for path in (
        "/prefix/api/2.0/mlflow-artifacts/artifacts/0/big.bin",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/x",
    ):
        stream = MustNotBeRead()
        status, _, _ = wsgi_call(app, "PUT", path, stream, {"CONTENT_LENGTH": str(10**10)})
        assert status.startswith("200") and seen["input"] is stream


# -- ASGI -----------------------------------------------------------------------------------------


class AsgiRecorder:
    """An ASGI app that reads its whole body and answers 200 with it."""

    def __init__(self) -> None:
        self.calls = 0
        self.receive = None

    async def __call__(self, scope, receive, send):
        self.calls += 1
        self.receive = receive
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def asgi_call(app, method, path, messages, headers=()):
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": list(headers),
        "client": ("1.2.3.4", 5),
    }
    incoming = list(messages)
    received = {"count": 0}
    sent = []

    async def receive():
        received["count"] += 1
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def run():
        await app(scope, receive, send)

    asyncio.run(run())
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    headers_out = next((dict(m["headers"]) for m in sent if m["type"] == "http.response.start"), {})
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, headers_out, body, received["count"]


def chunks(*parts: bytes) -> list[dict]:
    return [
        {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
        for index, part in enumerate(parts)
    ]


def test_asgi_refuses_by_declared_length_before_receiving_and_by_count_while_receiving():
    inner = AsgiRecorder()
    app = AsgiBodyLimits(inner, LIMITS, is_native=lambda scope: False, static_prefix="")
    status, headers, body, received = asgi_call(
        app, "POST", "/x", chunks(b"x"), [(b"content-length", b"5000")]
    )
    assert (status, received, inner.calls) == (413, 0, 0)
    assert headers[b"connection"] == b"close" and json.loads(body)["error_code"] == "REQUEST_TOO_LARGE"
    status, _, _, received = asgi_call(app, "POST", "/x", chunks(*[b"x" * 300] * 10))
    assert (status, received, inner.calls) == (413, 4, 0)  # stopped at the 4th chunk, 1200 bytes


def test_asgi_replays_the_body_and_scans_only_what_flask_does_not():
    inner = AsgiRecorder()
    deep = b"[" * 20
    flask_side = AsgiBodyLimits(inner, LIMITS, is_native=lambda scope: False, static_prefix="")
    status, _, body, _ = asgi_call(
        flask_side, "POST", "/api/2.0/mlflow/runs/log-batch", chunks(b"[[", b"[1]]]")
    )
    assert (status, body) == (200, b"[[[1]]]")
    # Deep, but bound for Flask: WsgiBodyLimits scans it there.
    assert asgi_call(flask_side, "POST", "/x", chunks(deep))[0] == 200
    native = AsgiBodyLimits(inner, LIMITS, is_native=lambda scope: True, static_prefix="")
    status, _, body, _ = asgi_call(native, "POST", "/ajax-api/3.0/jobs/search", chunks(deep[:7], deep[7:]))
    assert status == 400 and json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert (
        asgi_call(native, "POST", "/v1/traces", chunks(deep), [(b"content-type", b"application/x-protobuf")])[
            0
        ]
        == 200
    )
    assert (
        asgi_call(native, "POST", "/v1/traces", chunks(deep), [(b"content-type", b"application/json")])[0]
        == 400
    )
    # After the replayed body, the app's next receive reaches the server (a disconnect here).
    asgi_call(native, "POST", "/ajax-api/3.0/jobs/search", chunks(b"[]"))

    async def next_message():
        return await inner.receive()

    assert asyncio.run(next_message()) == {"type": "http.disconnect"}


def test_asgi_leaves_artifact_uploads_streaming_and_ignores_a_client_that_left():
    inner = AsgiRecorder()
    app = AsgiBodyLimits(inner, LIMITS, is_native=lambda scope: True, static_prefix="")
    status, _, body, _ = asgi_call(
        app,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/0/big.bin",
        chunks(*[b"z" * 900] * 5),
        [(b"content-length", b"4500")],
    )
    assert (status, len(body)) == (200, 4500)
    calls = inner.calls
    status, _, _, _ = asgi_call(
        app, "POST", "/x", [{"type": "http.request", "body": b"[", "more_body": True}]
    )
    assert status is None and inner.calls == calls  # disconnected mid-body: no answer, no app
