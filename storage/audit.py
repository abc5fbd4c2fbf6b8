"""The append-only, hash-chained audit trail.

Each row's hash covers its own fields and the previous row's hash, and `seq` is part of the
hashed content, so altering, deleting, inserting or reordering rows breaks the chain. The
chain's tip is kept in `audit_head` (one row, seeded by the migrations), locked for each append
(`SELECT … FOR UPDATE`; SQLite serialises writers anyway), which also reveals rows removed from
the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from storage.models import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")


def row_hash(row: AuditEvent) -> str:
    body = json.dumps(
        [
            row.seq,
            _iso(row.at),
            row.actor,
            row.kind,
            row.subject,
            row.trace_id,
            row.policy_version,
            row.before,
            row.after,
            row.data,
            row.prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


_HEAD = "warden_audit_head"  # the tip locked by this session's transaction, in session.info


def _locked_head(session: Session) -> AuditHead:
    """The chain's tip, locked for the rest of the session's transaction (`FOR UPDATE`). A
    second row appended in the same transaction reuses the tip it already holds (nobody else
    can have moved it) instead of reading it again; never inside a savepoint."""
    transaction = session.get_transaction()
    held = session.info.get(_HEAD)
    if held is not None and held[0] is transaction and not session.in_nested_transaction():
        head: AuditHead = held[1]
        return head
    found = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).first()
    if found is None:
        # Migration 0002 seeds the tip; recreating it here would restart the chain at row 1.
        raise RuntimeError(
            "the audit chain tip (audit_head) is missing: run `warden db upgrade`, "
            "then `warden audit verify`"
        )
    if not session.in_nested_transaction():
        session.info[_HEAD] = (transaction, found)
    return found


def append(
    session: Session,
    *,
    actor: str,
    kind: str,
    subject: str = "",
    trace_id: str = "",
    policy_version: str = "",
    before: str | None = None,
    after: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one row inside the caller's transaction (so it commits with the change)."""
    head = _locked_head(session)
    at = utcnow()
    row = AuditEvent(
        seq=head.seq + 1,
        at=at,
        actor=actor[:64],
        kind=kind[:48],
        subject=subject[:64],
        trace_id=trace_id[:32],
        policy_version=policy_version[:32],
        before=before,
        after=after,
        data=json.dumps(data or {}, sort_keys=True, separators=(",", ":"), default=str),
        prev_hash=head.hash,
        hash="",
    )
    row.hash = row_hash(row)
    head.seq, head.hash = row.seq, row.hash
    session.add(row)
    session.add(head)
    session.flush()
    return row


@dataclass(kw_only=True, frozen=True)
class Problem:
    seq: int
    message: str


def _rows(session: Session, batch: int = 2000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        chunk = session.exec(
            select(AuditEvent)
            .where(AuditEvent.seq > last)
            .order_by(col(AuditEvent.seq))
            .limit(batch)
        ).all()
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def verify(session: Session, anchors: Sequence[tuple[int, str]] = ()) -> tuple[int, list[Problem]]:
    """Walk the chain; return (rows checked, problems). No problems means it verifies.

    The chain alone cannot tell a consistent rewrite (every hash after a change recomputed,
    the tip updated) from the truth. `anchors` are (seq, hash) pairs published earlier outside
    the database (Warden posts one to the admin channel each day): a row that no longer has
    its anchored hash, or is gone, means the chain was rewritten.
    """
    problems: list[Problem] = []
    expected_seq, prev = 1, GENESIS
    count = 0
    pinned = dict(anchors)
    for row in _rows(session):
        count += 1
        anchored = pinned.pop(row.seq, None)
        if anchored is not None and anchored != row.hash:
            problems.append(
                Problem(
                    seq=row.seq,
                    message=(
                        f"row {row.seq}: its hash differs from the published anchor — the "
                        "chain was rewritten up to here"
                    ),
                )
            )
        if row.seq != expected_seq:
            problems.append(
                Problem(
                    seq=row.seq,
                    message=(
                        f"row {row.seq}: expected row {expected_seq} here — rows were deleted, "
                        "inserted or renumbered"
                    ),
                )
            )
        if row.prev_hash != prev:
            problems.append(
                Problem(
                    seq=row.seq,
                    message=(
                        f"row {row.seq}: does not follow the row before it "
                        "(previous hash mismatch) — "
                        "a row was removed, inserted or reordered"
                    ),
                )
            )
        if row_hash(row) != row.hash:
            problems.append(
                Problem(
                    seq=row.seq,
                    message=(f"row {row.seq}: its contents were altered (hash mismatch)"),
                )
            )
        expected_seq, prev = row.seq + 1, row.hash
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
        problems.append(
            Problem(
                seq=head.seq,
                message=(
                    f"the chain should end at row {head.seq} but ends at row {expected_seq - 1} — "
                    "rows were removed from the end or the tip was altered"
                ),
            )
        )
    if head is None and count:
        problems.append(Problem(seq=0, message="the chain tip record is missing"))
    for seq in sorted(pinned):
        problems.append(
            Problem(seq=seq, message=f"row {seq}: anchored, but no longer in the chain")
        )
    return count, problems


def tip(session: Session) -> tuple[int, str]:
    """The chain's newest (seq, hash): what an anchor records."""
    head = session.get(AuditHead, 1)
    return (head.seq, head.hash) if head is not None else (0, GENESIS)
