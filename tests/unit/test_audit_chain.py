"""The audit hash chain, pure: link hashing and every kind of damage ``verify_chain`` must name."""

import hashlib

import pytest

from mlflow_hokusai_plugin.core.audit_chain import GENESIS_HASH, ChainReport, entry_hash, verify_chain
from mlflow_hokusai_plugin.core.canonical import canonical_json, parse_json

VECTOR = {
    "seq": 7,
    "created_at": 1700000000123,
    "actor": "admin@hokusai",
    "action": "model.register",
    "target": "models:/churn/3",
    "before": {"status": "draft"},
    "after": {"status": "registered", "score_bps": 8425, "tags": ["é", None, True]},
    "request_id": "req-42",
    "prev_hash": "ab" * 32,
}


def make_chain(length: int) -> tuple[list[dict], dict]:
    """Rows as the database stores them (before/after as canonical JSON text), and their head."""
    rows, prev = [], GENESIS_HASH
    for seq in range(1, length + 1):
        values = {
            "seq": seq,
            "created_at": 1_700_000_000_000 + seq,
            "actor": "alice",
            "action": "model.register",
            "target": f"models:/m/{seq}",
            "before": None if seq == 1 else {"version": seq - 1},
            "after": {"version": seq, "score": 0.5 + seq / 100},
            "request_id": None if seq % 2 else f"req-{seq}",
            "prev_hash": prev,
        }
        row = {**values, "hash": entry_hash(**values)}
        row["before"] = _stored(values["before"])
        row["after"] = _stored(values["after"])
        rows.append(row)
        prev = row["hash"]
    return rows, {"seq": length, "hash": prev}


def _stored(value):
    return None if value is None else canonical_json(value).decode()


def rehash(row: dict) -> dict:
    """``row`` with its hash recomputed, as a forger who knows the scheme would write it."""
    values = {key: row[key] for key in VECTOR}
    for key in ("before", "after"):
        values[key] = None if row[key] is None else parse_json(row[key])
    return {**row, "hash": entry_hash(**values)}


def assert_problem(report: ChainReport, problem: str, seq: int) -> None:
    assert (report.ok, report.problem, report.seq) == (False, problem, seq), report
    assert f"seq {seq}" in report.message


def test_entry_hash_fixed_vector():
    assert entry_hash(**VECTOR) == "d3e45c99ebd4ae0e20d65400e0a806057d10445f2292798a539230c3d46586e6"


def test_entry_hash_preimage_is_the_canonical_json_of_the_nine_fields():
    preimage = (
        '{"action":"model.register","actor":"admin@hokusai",'
        '"after":{"score_bps":8425,"status":"registered","tags":["é",null,true]},'
        '"before":{"status":"draft"},"created_at":1700000000123,'
        f'"prev_hash":"{"ab" * 32}","request_id":"req-42","seq":7,"target":"models:/churn/3"}}'
    )
    assert entry_hash(**VECTOR) == hashlib.sha256(preimage.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("field", sorted(VECTOR))
def test_every_field_is_covered_by_the_hash(field):
    changed = {**VECTOR, field: VECTOR[field] + 1 if isinstance(VECTOR[field], int) else "x"}
    assert entry_hash(**changed) != entry_hash(**VECTOR)


def test_empty_chain_with_genesis_head_is_ok():
    report = verify_chain([], {"seq": 0, "hash": GENESIS_HASH})
    assert (report.ok, report.checked, report.problem, report.seq) == (True, 0, None, None)


def test_intact_chain_is_ok_and_reports_as_a_dict():
    rows, head = make_chain(5)
    report = verify_chain(iter(rows), head)
    assert report.to_dict() == {
        "ok": True,
        "checked": 5,
        "problem": None,
        "seq": None,
        "message": "5 links ok, head at seq 5",
    }


def test_without_a_head_only_the_links_are_checked():
    rows, _ = make_chain(3)
    assert verify_chain(rows[:2], None).ok


def test_altered_value_names_the_row():
    rows, head = make_chain(5)
    rows[2] = {**rows[2], "after": '{"score":0.99,"version":3}'}
    report = verify_chain(rows, head)
    assert_problem(report, "altered", 3)
    assert report.checked == 2


@pytest.mark.parametrize(
    ("after", "why"),
    [('{"version": 3, "score": 0.53}', "canonical form"), ("{not json", "not valid JSON")],
)
def test_stored_json_that_is_respelled_or_broken_is_altered(after, why):
    rows, head = make_chain(5)
    rows[2] = {**rows[2], "after": after}
    report = verify_chain(rows, head)
    assert_problem(report, "altered", 3)
    assert why in report.message


def test_changed_prev_hash_without_rehash_is_altered():
    rows, head = make_chain(5)
    rows[2] = {**rows[2], "prev_hash": "f" * 64}
    assert_problem(verify_chain(rows, head), "altered", 3)


def test_rechained_row_is_inserted():
    # A forger rewrote row 3 consistently but could not make it follow row 2.
    rows, head = make_chain(5)
    rows[2] = rehash({**rows[2], "actor": "mallory", "prev_hash": "f" * 64})
    assert_problem(verify_chain(rows, head), "inserted", 3)


def test_first_row_must_follow_genesis():
    rows, head = make_chain(2)
    rows[0] = rehash({**rows[0], "prev_hash": "1" * 64})
    assert_problem(verify_chain(rows, head), "inserted", 1)


def test_duplicated_seq_is_inserted():
    rows, head = make_chain(5)
    rows.insert(3, dict(rows[2]))
    report = verify_chain(rows, head)
    assert_problem(report, "inserted", 3)
    assert "twice" in report.message


def test_seq_zero_is_inserted():
    rows, head = make_chain(2)
    forged = rehash({**rows[0], "seq": 0})
    assert_problem(verify_chain([forged, *rows], head), "inserted", 0)


def test_row_beyond_the_head_is_inserted():
    rows, head = make_chain(5)
    extra, _ = make_chain(6)
    report = verify_chain(extra, head)
    assert_problem(report, "inserted", 6)
    assert report.checked == 5


def test_deleted_middle_row_names_the_missing_seq():
    rows, head = make_chain(5)
    report = verify_chain(rows[:2] + rows[3:], head)
    assert_problem(report, "deleted", 3)
    assert report.checked == 2


def test_deleted_run_names_the_range():
    rows, head = make_chain(6)
    report = verify_chain(rows[:2] + rows[4:], head)
    assert_problem(report, "deleted", 3)
    assert "seq 3..4" in report.message


def test_deleted_first_row():
    rows, head = make_chain(3)
    assert_problem(verify_chain(rows[1:], head), "deleted", 1)


def test_deleted_tail_is_caught_by_the_head():
    rows, head = make_chain(5)
    report = verify_chain(rows[:4], head)
    assert_problem(report, "deleted", 5)
    assert report.checked == 4
    # Without the head, a cut tail is invisible: that is what the head row is for.
    assert verify_chain(rows[:4], None).ok


def test_every_row_deleted():
    _, head = make_chain(3)
    assert_problem(verify_chain([], head), "deleted", 1)


def test_head_hash_mismatch():
    rows, head = make_chain(5)
    report = verify_chain(rows, {**head, "hash": "e" * 64})
    assert_problem(report, "head_mismatch", 5)
    assert report.checked == 5


def test_genesis_head_with_a_wrong_hash():
    report = verify_chain([], {"seq": 0, "hash": "e" * 64})
    assert (report.ok, report.problem, report.seq) == (False, "head_mismatch", 0)


def test_entries_are_consumed_once_from_any_iterator():
    rows, head = make_chain(50)
    consumed = []

    def stream():
        for row in rows:
            consumed.append(row["seq"])
            yield row

    assert verify_chain(stream(), head).checked == 50
    assert consumed == list(range(1, 51))
