"""The front's spool: where `warden serve`'s front process stores Slack's requests when the
database is SQLite.

SQLite has one writer per file. If the front stored requests in the main database, every ack
would wait whenever the worker held the write lock (a planner's, executor's or outbox's
transaction), and SQLite's busy handler sleeps in steps of up to 100 ms. So on SQLite the
front appends to a file of its own beside the database (`warden.db` → `warden.db.spool`):

* the front is the only writer of the spool, so an append never waits for a lock held by
  Warden's work (one writer thread, group commit, as for the main inbox);
* the worker only reads it (WAL: a reader never blocks the writer) and imports what it has
  not imported yet into the main inbox (`Store.store_arrivals`, unowned), where the key makes
  an import that happens twice (two replicas, a crash before the front tidied) a no-op;
* the front deletes the rows whose key the main inbox holds (`tidy`): imported, so safe.

An acknowledged request is therefore always in the spool or the main inbox (or both), and is
handed to Bolt once. PostgreSQL has no single writer lock, so there the front stores into the
main inbox directly and no spool exists. The spool's one table is created on first use; its
`user_version` guards against a file written by a different layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.inbox import Arrival, InboxQueries

LAYOUT = 1
"""The spool's `PRAGMA user_version`: bumped whenever its table changes."""

_meta = MetaData()
_spool = Table(
    "spool",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime, nullable=False),
    # AUTOINCREMENT: ids never go back, even once every row was deleted (the worker imports
    # what is above the last id it imported).
    sqlite_autoincrement=True,
)
_BATCH = 200
_APPEND = insert(_spool).prefix_with("OR IGNORE")  # a key spooled twice is spooled once


class SpoolError(RuntimeError):
    """The spool file cannot be used (written by a different layout)."""


@dataclass(frozen=True)
class Spooled:
    """A request in the spool, as the front stored it (body sealed)."""

    id: int
    arrival: Arrival
    received_at: datetime


def spool_path(db: Database) -> Path | None:
    """Where the spool of `db` lives: beside a SQLite file; None for other databases."""
    if not db.is_sqlite:
        return None
    name = make_url(db.url).database
    return Path(f"{name}.spool") if name else None


def _engine(path: Path, immediate: bool) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=4,
        max_overflow=4,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        if immediate:
            # The writer checkpoints when it tidies (`tidy`), not in the middle of an ack.
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writes take the lock up front; reads (the worker's) never take it at all.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Spool:
    """One spool file. The front creates it (`Spool.create`); the worker opens it only if it
    exists (`Spool.existing`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine, self.read_engine = _engine(path, True), _engine(path, False)

    @classmethod
    def create(cls, path: Path) -> Spool:
        spool = cls(path)
        with spool.engine.begin() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar()
            if version not in (0, LAYOUT):
                raise SpoolError(
                    f"{path} was written by another version of Warden (layout {version}); "
                    "import it with that version or move it away"
                )
            _meta.create_all(conn)
            conn.exec_driver_sql(f"PRAGMA user_version={LAYOUT}")
        return spool

    @classmethod
    def existing(cls, path: Path) -> Spool | None:
        """The spool at `path` if a front created it, else None (opened for reading: the
        reader takes no lock the front could wait for)."""
        if not path.exists():
            return None
        spool = cls(path)
        with spool.read_engine.connect() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar()
        if version == LAYOUT:
            return spool
        spool.dispose()
        if version == 0:
            return None  # the front is still making it (or made nothing): not ready yet
        raise SpoolError(
            f"{path} was written by another version of Warden (layout {version}); "
            "import it with that version or move it away"
        )

    def append(self, arrivals: Sequence[Arrival], now: datetime) -> None:
        """Store `arrivals` in one transaction (bodies as given: the caller seals them)."""
        rows = [
            {
                "key": a.key,
                "kind": a.kind,
                "content_type": a.content_type,
                "body": a.body,
                "received_at": now,
            }
            for a in arrivals
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_APPEND, rows)

    def pending(self, after: int, limit: int) -> list[Spooled]:
        """Up to `limit` spooled requests with an id above `after`, oldest first."""
        with self.read_engine.connect() as conn:
            result = conn.execute(
                select(_spool).where(_spool.c.id > after).order_by(_spool.c.id).limit(limit)
            )
            return [
                Spooled(
                    id=r.id,
                    arrival=Arrival(
                        key=r.key, kind=r.kind, content_type=r.content_type, body=r.body
                    ),
                    received_at=r.received_at,
                )
                for r in result
            ]

    def keys(self, after: int, limit: int) -> dict[str, int]:
        """{key: id} of up to `limit` spooled requests with an id above `after`, oldest
        first."""
        with self.read_engine.connect() as conn:
            rows = conn.execute(
                select(_spool.c.key, _spool.c.id)
                .where(_spool.c.id > after)
                .order_by(_spool.c.id)
                .limit(limit)
            )
            return {str(k): int(i) for k, i in rows}

    def all_keys(self) -> set[str]:
        """Every key the spool holds (imported or not)."""
        held: set[str] = set()
        after = 0
        while spooled := self.keys(after, _BATCH * 10):
            held.update(spooled)
            after = max(spooled.values())
        return held

    def drop(self, ids: Sequence[int]) -> int:
        """Delete the rows `ids` (imported into the main inbox)."""
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return int(conn.execute(delete(_spool).where(_spool.c.id.in_(list(ids)))).rowcount)

    def import_into(
        self, store: InboxQueries, after: int, now: datetime, lease: Any, limit: int
    ) -> int:
        """Copy up to `limit` spooled requests with an id above `after` into the main inbox,
        unowned (due for any worker); return the highest id copied (`after` if none).
        Copying one twice is a no-op: the main inbox keeps one entry per key. If the spool
        holds nothing above `after` but its ids are lower, the file was made again (ids
        start over): it is read from the start."""
        rows = self.pending(after, limit)
        if not rows and after and self.last_id() < after:
            rows = self.pending(0, limit)
        if rows:
            store.store_arrivals([r.arrival for r in rows], None, now, lease)
            return rows[-1].id
        return after

    def last_id(self) -> int:
        with self.read_engine.connect() as conn:
            return int(conn.execute(select(func.max(_spool.c.id))).scalar() or 0)

    def tidy(self, store: InboxQueries, limit: int = 2000) -> int:
        """Delete the spooled requests the main inbox holds (imported), looking at no more
        than `limit` of them (the oldest) per call: the front does this on the thread its
        acks are stored by, so a backlog is tidied a slice at a time. How many went."""
        dropped, after, seen = 0, 0, 0
        while seen < limit and (spooled := self.keys(after, min(_BATCH, limit - seen))):
            held = store.inbox_has(list(spooled))
            dropped += self.drop([spooled[k] for k in held])
            after, seen = max(spooled.values()), seen + len(spooled)
        self.checkpoint()
        return dropped

    def checkpoint(self) -> None:
        """Copy the write-ahead log back into the file (as far as readers allow), so it does
        not grow: the front's writer does it here, between batches."""
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
        finally:
            raw.close()

    def size(self) -> int:
        with self.read_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_spool)).scalar_one())

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
