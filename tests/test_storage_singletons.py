"""The singleton rows (`audit_head`, `control`) exist from the migration on, so the first
writers on a fresh database never race to create them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from storage.db import Database
from storage.models import Request
from storage.repo import Accepted, Audit, Store

THREADS = 8


def _request(i: int) -> Request:
    return Request(
        id=f"r{i:04d}",
        trace_id=f"t{i:04d}",
        event_id=f"Ev{i:04d}",
        channel="C0GENERAL",
        thread_ts=f"1.{i:06d}",
        message_ts=f"1.{i:06d}",
        requester="U0REQ",
        text="restart web",
    )


def test_migration_seeds_the_singleton_rows(db: Database) -> None:
    with db.read() as s:
        head = s.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).all()
        control = s.execute(text("SELECT paused FROM control WHERE id = 1")).all()
    assert [tuple(r) for r in head] == [(0, "0" * 64)]
    assert [bool(r[0]) for r in control] == [False]


def test_first_writers_on_a_fresh_database_all_succeed(db: Database) -> None:
    """8 threads do the first accept or pause at once: none fails, the chain verifies."""
    store = Store(db)
    barrier = threading.Barrier(THREADS)

    def first_write(i: int) -> bool:
        barrier.wait(timeout=30)
        if i % 2:
            return store.set_paused(
                i % 4 == 1, "why", "U0ADMIN", Audit(actor="U0ADMIN", kind="control.paused")
            )
        return store.accept_request(_request(i), in_flight_cap=100) is Accepted.NEW

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(first_write, range(THREADS)))  # re-raises any failure

    assert all(results[0::2]), "every request was stored"
    # Two threads pause and two resume: pauses and resumes alternate, so at least one won.
    assert any(results[1::2])
    count, problems = store.verify_audit()
    assert problems == []
    # Accepting writes no audit row (a request's is written when a planner claims it).
    assert count == sum(results[1::2])


def test_audit_append_never_recreates_a_missing_head(db: Database) -> None:
    """A missing chain tip is tampering, not a fresh database: appends refuse, loudly."""
    store = Store(db)
    store.audit(Audit(actor="warden", kind="test"))
    with db.write() as s:
        s.execute(text("DELETE FROM audit_head"))
    with pytest.raises(RuntimeError, match="audit_head"):
        store.audit(Audit(actor="warden", kind="test"))
    assert store.verify_audit()[0] == 1


def test_pause_works_even_if_the_control_row_was_removed(db: Database) -> None:
    store = Store(db)
    with db.write() as s:
        s.execute(text("DELETE FROM control"))
    assert store.set_paused(True, "why", "U0ADMIN", Audit(actor="U0ADMIN", kind="control.paused"))
    assert store.pause_state().paused
