"""The audit log's hash chain: how a link is hashed, and how a whole chain is checked.

Each link's hash covers its own fields and the previous link's hash, so changing, removing or
slipping in a row breaks the chain at that row. The head (the last link's seq and hash, kept in
its own row) additionally catches rows cut from the end, which a chain alone cannot see.

A chain only proves that nobody edited rows *without recomputing the hashes after them*: someone
with write access to the tables can rebuild a consistent chain. It makes tampering evident to
``verify``, not impossible.

Pure: no I/O. The database side (``mlflow_hokusai_plugin.db.audit``) feeds rows in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlflow_hokusai_plugin.core.canonical import canonical_json, parse_json, sha256_hex
from mlflow_hokusai_plugin.core.errors import ValidationError

# The predecessor of the first link: what the migration writes into the head row.
GENESIS_HASH = "0" * 64

ALTERED = "altered"
INSERTED = "inserted"
DELETED = "deleted"
HEAD_MISMATCH = "head_mismatch"


def entry_hash(
    *,
    seq: int,
    created_at: int,
    actor: str,
    action: str,
    target: str,
    before: Any,
    after: Any,
    request_id: str | None,
    prev_hash: str,
) -> str:
    """The hash of one link, as lowercase hex.

    The preimage is ``canonical_json`` (sorted keys, no whitespace, UTF-8) of a dict with exactly
    these nine keys, ``before``/``after`` as JSON values (not as their JSON text) and ``None`` as
    ``null``::

        sha256(canonical_json({"action": ..., "actor": ..., "after": ..., "before": ...,
                               "created_at": ..., "prev_hash": ..., "request_id": ...,
                               "seq": ..., "target": ...}))

    >>> entry_hash(seq=1, created_at=0, actor="a", action="x", target="t", before=None,
    ...            after={"k": 1}, request_id=None, prev_hash=GENESIS_HASH)[:16]
    '9d80f1afb795990e'
    """
    preimage = {
        "seq": seq,
        "created_at": created_at,
        "actor": actor,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
        "request_id": request_id,
        "prev_hash": prev_hash,
    }
    return sha256_hex(canonical_json(preimage))


@dataclass(frozen=True)
class ChainReport:
    """The verdict on a chain.

    ``problem`` is ``None`` when ``ok``, else one of ``"altered"``, ``"inserted"``, ``"deleted"``,
    ``"head_mismatch"``; ``seq`` is the first bad row (for ``"deleted"``, the first missing seq);
    ``checked`` counts the rows that passed before the problem (all rows when ``ok``).
    """

    ok: bool
    checked: int
    problem: str | None
    seq: int | None
    message: str

    def to_dict(self) -> dict:
        """A JSON-able dict (for the CLI's ``--json`` and the REST API)."""
        return asdict(self)


def verify_chain(entries: Iterable[Mapping], head: Mapping | None) -> ChainReport:
    """Check a chain link by link; stops at the first problem.

    ``entries`` are the rows in ascending ``seq`` order, as mappings with the ``AuditEntry`` column
    names and the values *as stored*: ``before``/``after`` are the stored canonical JSON text (or
    ``None``), so a row whose stored text is not valid canonical JSON is caught as altered. Any
    iterable will do and it is consumed once, so a database cursor keeps memory flat.

    ``head`` is the head row (``seq``, ``hash``); ``None`` skips the head checks (e.g. for an
    exported copy of the log without its head).

    Checked per row, in this order: seq not increasing (``"inserted"``); seq beyond the head's
    (``"inserted"``: added without advancing the head); stored hash not the recomputed one
    (``"altered"``); a gap in seq (``"deleted"``, naming the first missing seq); ``prev_hash`` not
    the previous row's hash although the row itself is consistent (``"inserted"``: slipped in or
    re-chained). Then against the head: rows missing at the end (``"deleted"``), or the last hash
    not the head's (``"head_mismatch"``).

    >>> verify_chain([], {"seq": 0, "hash": GENESIS_HASH}).ok
    True
    """
    checked = 0
    prev_seq, prev_hash = 0, GENESIS_HASH
    head_seq = None if head is None else head["seq"]

    def bad(problem: str, seq: int | None, message: str) -> ChainReport:
        return ChainReport(ok=False, checked=checked, problem=problem, seq=seq, message=message)

    for row in entries:
        seq = row["seq"]
        if seq <= prev_seq:
            if not checked:
                what = "is not a valid first seq (the chain starts at 1)"
            elif seq == prev_seq:
                what = "appears twice"
            else:
                what = f"comes after seq {prev_seq}"
            return bad(INSERTED, seq, f"seq {seq} {what}: a row was inserted")
        if head_seq is not None and seq > head_seq:
            return bad(
                INSERTED,
                seq,
                f"seq {seq} is beyond the head (seq {head_seq}): a row was added outside append",
            )
        damage = _row_damage(row)
        if damage:
            return bad(ALTERED, seq, f"seq {seq} was altered: {damage}")
        if seq != prev_seq + 1:
            missing = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seq {prev_seq + 1}..{seq - 1}"
            return bad(DELETED, prev_seq + 1, f"{missing} missing before seq {seq}: deleted")
        if row["prev_hash"] != prev_hash:
            return bad(
                INSERTED,
                seq,
                f"seq {seq} does not follow seq {prev_seq} (prev_hash {row['prev_hash'][:12]}..., "
                f"expected {prev_hash[:12]}...): a row was inserted or re-chained",
            )
        prev_seq, prev_hash = seq, row["hash"]
        checked += 1

    if head is None:
        return ChainReport(ok=True, checked=checked, problem=None, seq=None, message=f"{checked} links ok")
    if head_seq > prev_seq:
        missing = f"seq {prev_seq + 1}" if head_seq == prev_seq + 1 else f"seq {prev_seq + 1}..{head_seq}"
        return bad(
            DELETED, prev_seq + 1, f"{missing} missing at the end (the head is at seq {head_seq}): deleted"
        )
    if head["hash"] != prev_hash:
        where = "the genesis head" if prev_seq == 0 else f"seq {prev_seq}"
        return bad(
            HEAD_MISMATCH,
            prev_seq,
            f"the head's hash {head['hash'][:12]}... is not the hash of {where} ({prev_hash[:12]}...)",
        )
    return ChainReport(
        ok=True,
        checked=checked,
        problem=None,
        seq=None,
        message=f"{checked} links ok, head at seq {prev_seq}",
    )


def _row_damage(row: Mapping) -> str | None:
    """Why the row's stored hash cannot be trusted, or ``None`` if it is the recomputed one."""
    values = {}
    for field in ("before", "after"):
        text = row[field]
        if text is None:
            values[field] = None
            continue
        try:
            values[field] = parse_json(text, field)
        except ValidationError as exc:
            return str(exc)
        # The hash covers the value, not the text; a respelled text (same value) is still an edit.
        if canonical_json(values[field]).decode("utf-8") != text:
            return f"{field}: stored JSON is not in canonical form"
    try:
        expected = entry_hash(
            seq=row["seq"],
            created_at=row["created_at"],
            actor=row["actor"],
            action=row["action"],
            target=row["target"],
            before=values["before"],
            after=values["after"],
            request_id=row["request_id"],
            prev_hash=row["prev_hash"],
        )
    except ValidationError as exc:  # a column holding something JSON cannot carry
        return str(exc)
    if expected != row["hash"]:
        return f"stored hash {str(row['hash'])[:12]}... is not the recomputed {expected[:12]}..."
    return None
