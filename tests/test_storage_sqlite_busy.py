"""SQLite's write lock held by another process (the front process and the worker share one
database file): a writer asks for it again every `BUSY_POLL_S` instead of sleeping in
SQLite's busy handler, gets it as soon as it is free, and gives up after `BUSY_GIVE_UP_S`."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from storage import db as db_module
from storage.db import Database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'busy.db'}")
    database.upgrade()
    with database.write() as s:
        s.connection().exec_driver_sql("CREATE TABLE marks (n INTEGER)")
    return database


def _other_process_lock(path: str) -> sqlite3.Connection:
    """A connection of its own (as another process has) holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_writer_waits_for_the_lock_by_asking_again_and_gets_it_once_free(
    sqlite_db: Database, tmp_path: Path
) -> None:
    other = _other_process_lock(str(tmp_path / "busy.db"))
    attempts: list[str] = []
    asked_twice = threading.Event()

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement == "BEGIN IMMEDIATE":
            attempts.append(statement)
            if len(attempts) >= 2:
                asked_twice.set()

    event.listen(sqlite_db.engine, "before_cursor_execute", count)
    done = threading.Event()

    def write() -> None:
        with sqlite_db.write() as s:
            s.connection().exec_driver_sql("INSERT INTO marks VALUES (1)")
        done.set()

    worker = threading.Thread(target=write)
    worker.start()
    # The lock is taken: the writer keeps asking (SQLite's busy handler would ask once and
    # sleep) and has not written.
    assert asked_twice.wait(10)
    assert not done.is_set()
    other.execute("COMMIT")
    other.close()
    worker.join(10)
    assert done.is_set()
    with sqlite_db.read() as s:
        assert s.connection().execute(text("SELECT count(*) FROM marks")).scalar_one() == 1
    # Statements after BEGIN wait in SQLite's own handler again (busy_timeout restored).
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000


def test_a_writer_gives_up_when_the_lock_is_never_freed(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "BUSY_GIVE_UP_S", 0.2)
    other = _other_process_lock(str(tmp_path / "busy.db"))
    try:
        with pytest.raises(OperationalError, match="locked"), sqlite_db.write() as s:
            s.connection().exec_driver_sql("INSERT INTO marks VALUES (2)")
    finally:
        other.execute("ROLLBACK")
        other.close()
    with sqlite_db.read() as s:
        assert s.connection().execute(text("SELECT count(*) FROM marks")).scalar_one() == 0
