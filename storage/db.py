"""Engines, sessions and schema upgrades.

SQLite (the default) runs in WAL mode with a busy timeout, and write transactions start with
`BEGIN IMMEDIATE` so two writers queue instead of failing on a lock upgrade; a second,
read-only engine uses ordinary deferred transactions so reads never wait for writers. SQLite
has one writer at a time whatever we do; within a process, writers take turns on a lock
before `BEGIN` (SQLite's own busy handler polls in sleeps of up to 100 ms, which under a burst
turns a sub-millisecond wait into a convoy), and writers acknowledging Slack (`urgent()`, set
by the HTTP layer) go before background writers: a planner, sweep or outbox transaction
never makes an ack wait in line behind it. On any database, background threads also let acks go
first for CPU: every thread shares one GIL, so while an ack is in flight deferrable work
waits (briefly, `AckGate`) before its next session or task.
PostgreSQL is used as is (READ COMMITTED); conditional updates decide every race.

What Warden forgets leaves the SQLite files too: every connection runs with
`secure_delete=ON` (deleted rows and freed pages are overwritten with zeros, at the cost of
writing pages a delete would otherwise leave alone), and after a forget `erase_forgotten()`
checkpoints the write-ahead log into the main file and truncates it, so no earlier version of
a page survives in the log. It waits `wipe_wait` at most for readers still reading the log;
if one outlasts that, the next write (not an ack's) tries again without waiting.
The schema is managed by Alembic (`storage/migrations`); `Database.upgrade()` runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=64,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below be the only transaction control pysqlite sees.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


class WriterTurns:
    """SQLite's single writer, taken in turns within this process, urgent writers first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextmanager
    def turn(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
                try:
                    self._cond.wait_for(lambda: not self._busy)
                finally:
                    self._urgent_waiting -= 1
            else:
                self._cond.wait_for(lambda: not self._busy and not self._urgent_waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


_URGENT = threading.local()


class AckGate:
    """Acks first. The threads of a process share one GIL, so background work (planners,
    outbox delivery, sweeps) running while Slack waits for acks adds its CPU time to theirs.
    While any ack is in flight (`Database.urgent()`), a background thread waits before its
    next database session (and a worker pool before its next task, `bot/workers.py`) until
    none is, but never longer than `max_wait` at a time: a burst of acks goes first, and
    background work still moves on however long acks keep coming. Process-wide, like the GIL.
    """

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._in_flight = 0

    @contextmanager
    def ack(self) -> Iterator[None]:
        with self._cond:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                if not self._in_flight:
                    self._cond.notify_all()

    def wait(self) -> None:
        """Let acks in flight go first (a no-op on an ack's own thread, on an exempt one, or
        inside a session)."""
        if not self._in_flight or any(getattr(_URGENT, k, 0) for k in ("on", "exempt", "depth")):
            return
        with self._cond:
            self._cond.wait_for(lambda: not self._in_flight, timeout=self.max_wait)

    @staticmethod
    @contextmanager
    def exempt() -> Iterator[None]:
        """This thread's work is not deferred to acks (someone is waiting for it) until exit."""
        before = getattr(_URGENT, "exempt", False)
        _URGENT.exempt = True
        try:
            yield
        finally:
            _URGENT.exempt = before


ACKS = AckGate(max_wait=0.25)


@contextmanager
def _session_scope() -> Iterator[None]:
    """Background threads let acks go first; nested sessions never wait (they may hold locks)."""
    ACKS.wait()
    _URGENT.depth = getattr(_URGENT, "depth", 0) + 1
    try:
        yield
    finally:
        _URGENT.depth -= 1


class Database:
    """The database Warden uses: a write engine, a read engine and Alembic upgrades."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.wipe_wait = 0.25
        """Seconds `erase_forgotten` waits at most for readers of the write-ahead log."""
        self._wipe_pending = False
        if self.is_sqlite:
            if parsed.database in (None, "", ":memory:"):
                raise ValueError("use a SQLite file, not an in-memory database")
            self.engine = _sqlite_engine(self.url, immediate=True)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
            self._writer: WriterTurns | None = WriterTurns()
        else:
            self._writer = None
            # Enough pooled connections for every thread that can hold one (HTTP, planners,
            # executors, outbox, replies): overflow connections are closed after use, and a
            # burst would otherwise open new backends on the ack path.
            self.engine = create_engine(self.url, pool_size=64, max_overflow=16, pool_pre_ping=True)
            self.read_engine = self.engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        if self._writer is None:
            with (
                _session_scope(),
                Session(self.engine, expire_on_commit=False) as session,
                session.begin(),
            ):
                yield session
            return
        with (
            _session_scope(),
            self._writer.turn(getattr(_URGENT, "on", False)),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
        if self._wipe_pending and not getattr(_URGENT, "on", False):
            self._truncate_log(0.0)

    def erase_forgotten(self) -> None:
        """After a forget has committed (SQLite): copy the write-ahead log into the main file
        and truncate it, so the forgotten text's earlier page versions are gone from disk
        (`secure_delete` has already zeroed it in the pages themselves). Waits `wipe_wait` at
        most for readers still using the log, then leaves the rest to the next write. A no-op
        on PostgreSQL."""
        if self._writer is not None:
            self._wipe_pending = True
            self._truncate_log(self.wipe_wait)

    def _truncate_log(self, wait: float) -> None:
        """`wal_checkpoint(TRUNCATE)`, waiting `wait` seconds at most for readers and other
        processes' writers; clears the pending flag once it completes. Never from inside a
        session: this thread's own snapshot or writer turn would hold it up."""
        if self._writer is None or int(getattr(_URGENT, "depth", 0)):
            return
        with _session_scope(), self._writer.turn(getattr(_URGENT, "on", False)):
            if not self._wipe_pending:  # another thread's checkpoint did it meanwhile
                return
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                try:
                    cur.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                    busy = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    cur.execute("PRAGMA busy_timeout=30000")
                    cur.close()
            finally:
                raw.close()
            self._wipe_pending = bool(busy)

    @staticmethod
    @contextmanager
    def urgent() -> Iterator[None]:
        """Mark this thread's work as urgent (Slack is waiting for an ack) until exit: its
        SQLite writes go first, and background threads wait for it (`AckGate`)."""
        before = getattr(_URGENT, "on", False)
        _URGENT.on = True
        try:
            with ACKS.ack():
                yield
        finally:
            _URGENT.on = before

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (never blocks on SQLite writers)."""
        with _session_scope(), Session(self.read_engine, expire_on_commit=False) as session:
            yield session

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to run every start)."""
        from alembic import command

        command.upgrade(self.alembic_config(), "head")

    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
