"""What Warden forgets is gone from the SQLite files, not only from its queries.

A deleted row's bytes stay in its page, a freed page keeps its content, the write-ahead log
keeps every earlier version of a page until it is checkpointed and reset, and a contentless
FTS5 index keeps a deleted fact's terms (a delete is a tombstone that repeats them) until its
segments are merged. Each test stores a unique word, checks that the raw bytes of the database
file or its `-wal` hold it (so the check can see it), forgets it through Warden's own storage
path and reads the raw bytes again. SQLite only: PostgreSQL's files are not Warden's to read
(see the README on VACUUM).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import Database
from storage.models import Action, ActionStatus, Request, RequestStatus, utcnow
from storage.repo import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=utcnow().tzinfo)
DAY = timedelta(days=1)
WS = ("workspace", "")

# Lower case (FTS5 folds case), no suffix the porter stemmer would cut, letters no other
# word in these tests starts with.
TOKEN = "zqxjvoltrab"

FILLER = [
    "the weekly report goes to finance on mondays",
    "grafana dashboards live in the observability folder",
    "lunch orders close at eleven",
    "vpn certificates rotate every quarter",
]


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "warden.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    yield database
    database.dispose()


def holding(db: Database, word: str = TOKEN) -> list[str]:
    """Which of the database file and its write-ahead log hold `word`, read as raw bytes."""
    path = Path(str(db.engine.url.database))
    files = [path, path.with_name(path.name + "-wal")]
    return [f.name for f in files if f.exists() and word.encode() in f.read_bytes()]


def checkpoint_now(db: Database) -> None:
    """What SQLite's automatic checkpoint does sooner or later: the fact reaches the main
    file (and the log is emptied, so the main file alone is what is read below)."""
    conn = sqlite3.connect(str(db.engine.url.database))
    try:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        conn.close()


def remember(store: Store, words: str, subject: str, slot: str | None = None) -> int:
    r = store.remember(
        kind="profile",
        scope=WS[0],
        scope_id=WS[1],
        subject=subject,
        slot=slot,
        text=words,
        author="U1",
        source="person",
        expires_at=NOW + 90 * DAY,
        request_id="r1",
        channel="C1",
        message_ts="1.000001",
        now=NOW,
    )
    assert r.fact.id is not None
    return r.fact.id


def fill(store: Store) -> None:
    for i, line in enumerate(FILLER):
        remember(store, line, subject=f"filler-{i}")


@pytest.mark.parametrize("checkpointed", [True, False], ids=["in-main-file", "in-wal-only"])
def test_a_forgotten_fact_is_in_neither_the_database_file_nor_its_wal(
    sqlite_db: Database, checkpointed: bool
) -> None:
    store = Store(sqlite_db)
    fill(store)
    fact = remember(store, f"the escrow passphrase is {TOKEN} until march", subject="escrow")
    if checkpointed:
        checkpoint_now(sqlite_db)
    assert holding(sqlite_db)
    assert [i for i, _ in store.forget_facts([fact], "U1")] == [fact]
    assert holding(sqlite_db) == []
    # The other facts are still there and still found.
    assert len(store.search_facts("grafana dashboards", [WS], None, NOW, 10)) == 1
    with sqlite_db.write() as s:
        s.execute(text("INSERT INTO fact_fts (fact_fts, rank) VALUES ('integrity-check', 0)"))


def test_every_version_of_a_slot_forgotten_is_gone_from_disk(sqlite_db: Database) -> None:
    # A superseded fact left the full-text index when it was closed: its terms are in a
    # tombstone then, and forgetting it later must clear them too.
    store = Store(sqlite_db)
    fill(store)
    old = remember(store, f"deploy key is {TOKEN}", subject="deploys", slot="key")
    checkpoint_now(sqlite_db)
    new = remember(store, "deploy key is in the vault", subject="deploys", slot="key")
    assert holding(sqlite_db)
    store.forget_facts([old], "U1")
    assert holding(sqlite_db) == []
    assert store.fact_by_id(new) is not None


def test_expired_facts_purged_are_gone_from_disk(sqlite_db: Database) -> None:
    store = Store(sqlite_db)
    fill(store)
    r = store.remember(
        kind="task",
        scope=WS[0],
        scope_id=WS[1],
        subject="cutover",
        slot=None,
        text=f"cutover window code {TOKEN}",
        author="U1",
        source="person",
        expires_at=NOW - DAY,
        request_id="r1",
        channel="C1",
        message_ts="1.000001",
        now=NOW - 2 * DAY,
    )
    checkpoint_now(sqlite_db)
    assert holding(sqlite_db)
    assert store.purge_expired_facts(NOW) == 1
    assert store.fact_by_id(int(r.fact.id or 0)) is None
    assert holding(sqlite_db) == []


def test_the_message_and_call_that_stored_a_forgotten_fact_are_gone_from_disk(
    sqlite_db: Database,
) -> None:
    # `/warden forget` deletes the fact, then scrubs the `remember` call and its message.
    store = Store(sqlite_db)
    fill(store)
    said = f"remember that the escrow passphrase is {TOKEN}"
    with sqlite_db.write() as s:
        s.add(
            Request(
                id="r-forget",
                trace_id="r-forget",
                channel="C1",
                thread_ts="1.000001",
                message_ts="1.000001",
                requester="U1",
                text=said,
                status=RequestStatus.DONE,
                updated_at=NOW,
            )
        )
        s.flush()
        s.add(
            Action(
                id="a-forget",
                request_id="r-forget",
                trace_id="r-forget",
                tool="remember",
                args_json=f'{{"text": "{said}"}}',
                rationale=f"The requester said {TOKEN}.",
                policy_version="v1",
                risk="low",
                requester="U1",
                channel="C1",
                thread_ts="1.000001",
                status=ActionStatus.SUCCEEDED,
            )
        )
    fact = remember(store, f"the escrow passphrase is {TOKEN}", subject="escrow")
    checkpoint_now(sqlite_db)
    assert holding(sqlite_db)
    store.forget_facts([fact], "U1")
    assert store.scrub_remember_call("a-forget", '{"text": "(forgotten)"}')
    assert holding(sqlite_db) == []


def test_a_reader_holding_the_log_delays_the_wipe_to_a_later_write(sqlite_db: Database) -> None:
    # A checkpoint cannot empty the log while a reader (here another connection, as another
    # process's would be) still reads from it; Warden does not wait long for one (a forget
    # answers a person), and finishes with a later write.
    sqlite_db.wipe_wait = 0.0
    store = Store(sqlite_db)
    fill(store)
    fact = remember(store, f"the escrow passphrase is {TOKEN}", subject="escrow")
    reader = sqlite3.connect(str(sqlite_db.engine.url.database), isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM fact").fetchone()  # holds its snapshot
        store.forget_facts([fact], "U1")
        assert store.fact_by_id(fact) is None
        assert holding(sqlite_db) == ["warden.db-wal"]  # the reader's snapshot needs it
        remember(store, "the standup moved to ten", subject="standup")
        assert holding(sqlite_db) == ["warden.db-wal"]  # still read: tried, not waited for
        reader.execute("COMMIT")
    finally:
        reader.close()
    remember(store, "the retro moved to friday", subject="retro")
    assert holding(sqlite_db) == []
    assert len(store.search_facts("standup", [WS], None, NOW, 10)) == 1


def test_sealed_personal_data_cleared_is_gone_from_disk(sqlite_db: Database) -> None:
    store = Store(sqlite_db)
    with sqlite_db.write() as s:
        s.add(
            Request(
                id="r-sealed",
                trace_id="r-sealed",
                channel="C1",
                thread_ts="1.000002",
                message_ts="1.000002",
                requester="U1",
                text="call <PHONE_1>",
                status=RequestStatus.DONE,
                updated_at=NOW - DAY,
            )
        )
    assert store.set_request_pii("r-sealed", f"sealed-{TOKEN}")
    checkpoint_now(sqlite_db)
    assert holding(sqlite_db)
    assert store.clear_finished_pii(NOW, NOW) == 1
    assert store.request_pii("r-sealed") is None
    assert holding(sqlite_db) == []
