import hashlib

import pytest

from mlflow_hokusai_plugin.core.canonical import (
    MAX_JSON_DEPTH,
    artifact_manifest,
    canonical_json,
    manifest_digest,
    parse_json,
    sha256_hex,
)
from mlflow_hokusai_plugin.core.errors import ValidationError

A = "a" * 64
B = "b" * 64


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_utf8():
    data = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "x"}}
    assert canonical_json(data) == '{"a":{"y":"x","z":"é"},"b":[1,2.5,null,true]}'.encode()


def test_canonical_json_is_independent_of_insertion_order():
    assert canonical_json({"x": 1, "y": {"p": 1, "q": 2}}) == canonical_json({"y": {"q": 2, "p": 1}, "x": 1})


def test_canonical_json_writes_tuples_as_lists():
    assert canonical_json({"t": (1, "a")}) == b'{"t":[1,"a"]}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused_with_their_place(bad):
    with pytest.raises(ValidationError) as info:
        canonical_json({"metrics": {"accuracy": bad}})
    assert info.value.field == "value.metrics.accuracy"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({1: "x"}, "value"),  # json would silently write "1"
        ({"a": {1, 2}}, "value.a"),
        ({"a": b"bytes"}, "value.a"),
        ({"a": [object()]}, "value.a[0]"),
        ({"a": "\ud800"}, "value.a"),  # lone surrogate: not encodable as UTF-8
    ],
)
def test_values_json_cannot_carry_faithfully_are_refused(bad, field):
    with pytest.raises(ValidationError) as info:
        canonical_json(bad)
    assert info.value.field == field


def test_sha256_hex_known_vector():
    assert sha256_hex(b"abc") == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_manifest_sorts_by_path_and_lowercases_digests():
    manifest = artifact_manifest([("model/b.bin", B.upper(), 2), ("MLmodel", A, 10)])
    assert manifest == {
        "files": [
            {"path": "MLmodel", "sha256": A, "size": 10},
            {"path": "model/b.bin", "sha256": B, "size": 2},
        ]
    }


def test_manifest_turns_backslashes_into_slashes():
    manifest = artifact_manifest([("model\\data\\w.bin", A, 0)])
    assert manifest["files"][0]["path"] == "model/data/w.bin"


def test_manifest_digest_is_sha256_of_canonical_manifest_and_order_free():
    files = [("b.txt", B, 2), ("a.txt", A, 1)]
    expected_bytes = (
        '{"files":[{"path":"a.txt","sha256":"' + A + '","size":1},'
        '{"path":"b.txt","sha256":"' + B + '","size":2}]}'
    ).encode()
    assert manifest_digest(files) == hashlib.sha256(expected_bytes).hexdigest()
    assert manifest_digest(reversed(files)) == manifest_digest(files)
    assert manifest_digest([("b.txt", B, 3), ("a.txt", A, 1)]) != manifest_digest(files)


def test_manifest_accepts_any_iterable():
    assert artifact_manifest(iter([("x", A, 1)])) == {"files": [{"path": "x", "sha256": A, "size": 1}]}


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ([("a", A, 1), ("a", B, 2)], "files[1]"),
        ([("a/b", A, 1), ("a\\b", B, 2)], "files[1]"),  # same file after normalization
        ([("a", "f" * 63, 1)], "files[0].sha256"),
        ([("a", "g" * 64, 1)], "files[0].sha256"),
        ([("a", None, 1)], "files[0].sha256"),
        ([("a", A, -1)], "files[0].size"),
        ([("a", A, True)], "files[0].size"),
        ([("a", A, 1.0)], "files[0].size"),
        ([("", A, 1)], "files[0].path"),
        ([(None, A, 1)], "files[0].path"),
        ([("/etc/passwd", A, 1)], "files[0].path"),
        ([("../secret", A, 1)], "files[0].path"),
        ([("a/./b", A, 1)], "files[0].path"),
        ([("a//b", A, 1)], "files[0].path"),
        ([("a/", A, 1)], "files[0].path"),
        ([("a", A)], "files[0]"),
        ([None], "files[0]"),
    ],
)
def test_manifest_rejects_bad_entries(files, field):
    with pytest.raises(ValidationError) as info:
        artifact_manifest(files)
    assert info.value.field == field


def test_parse_json_reads_what_canonical_json_writes():
    value = {"b": [1, 2.5, None, True], "a": {"z": "é"}}
    assert parse_json(canonical_json(value)) == value
    assert parse_json('{"s": "[[[{{{"}') == {"s": "[[[{{{"}  # brackets in strings do not nest


def test_parse_json_accepts_the_maximum_depth():
    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        b"\xff",
        "{",
        '{"a": 1, "a": 2}',
        '{"a": NaN}',
        "[Infinity]",
        "1" * 5000,  # beyond Python's integer digit limit
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        # Would overflow the C stack once eth-account (py_ecc) has raised the recursion limit.
        "[" * 200_000,
        '{"a":' * 200_000,
        12,
    ],
)
def test_parse_json_refuses_doubtful_input(text):
    with pytest.raises(ValidationError) as info:
        parse_json(text, "body")
    assert info.value.field == "body"
