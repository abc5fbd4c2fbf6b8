"""The front process in front of a running Warden: events are stored before the ack (in the
spool beside a SQLite database, in the main inbox on PostgreSQL), then imported, handled once
and tidied away — through signed requests over HTTP, with the front's own code in this
process so a test can stop the worker's side at any step."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web
from sqlmodel import select

from bot.errors import ConfigError
from handlers.front import Front, open_spool
from handlers.inbox import LEASE, sealed
from handlers.runtime import Running
from storage.inbox import Arrival
from storage.models import InboxEntry, Request, utcnow
from storage.spool import Spool, SpoolError, spool_path
from tests.conftest import REQUESTER
from tests.served import free_port
from tests.slack_fixtures import CHANNEL, SECRET, Slack


@contextmanager
def front_of(slack: Slack, worker_url: str | None = None) -> Iterator[Front]:
    """A front process's request handling, on its own event loop, in front of `slack`'s
    Warden (or of `worker_url`): the workspace sends to the front from then on."""
    bot: Running = slack.bot
    path = spool_path(slack.store.db)
    front = Front(
        slack.store,
        bot.warden.lifecycle.core.privacy.sealer,
        SECRET,
        worker_url or bot.url,
        spool=None if path is None else Spool.create(path),
    )
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(front.app())
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    before, slack.ws.bot_url = slack.ws.bot_url, f"http://127.0.0.1:{port}/slack/events"
    bot.inbox.tidy_spool = False  # a worker under a front: the front tidies
    try:
        yield front
    finally:
        slack.ws.bot_url = before
        bot.inbox.tidy_spool = True
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def entries(slack: Slack) -> list[InboxEntry]:
    with slack.store.db.read() as s:
        return list(s.exec(select(InboxEntry)))


def requests(slack: Slack) -> list[Request]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Request)))


def cards(slack: Slack) -> list[Any]:
    return [a for a in slack.store.actions_with_status(["awaiting_approval"]) if a.card_ts]


def spooled(slack: Slack) -> int:
    path = spool_path(slack.store.db)
    spool = None if path is None else Spool.existing(path)
    return 0 if spool is None else spool.size()


def test_a_mention_through_the_front_is_stored_handled_once_and_tidied(slack: Slack) -> None:
    with front_of(slack) as front:
        first = slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend")
        assert first.status == 200
        (card,) = slack.ws.wait_until(lambda: cards(slack), 30)
        # Slack's retry of the same event, after it was handled, and again after tidying.
        assert slack.ws.redeliver(first).status == 200
        if front.spool is not None:
            assert front.spool.tidy(slack.store) == 1
            assert spooled(slack) == 0
        assert slack.ws.redeliver(first, retry_num=2).status == 200
        slack.bot.inbox.take_due()
        slack.idle()
    (entry,) = entries(slack)
    assert entry.key == f"e:{first.event_id}" and entry.done_at is not None
    assert len(requests(slack)) == 1 and [c.id for c in cards(slack)] == [card.id]


def test_a_request_acked_while_no_worker_answers_is_handled_once_one_does(slack: Slack) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    slack.bot.inbox.stop_recovering()  # no worker looks on its own either, until told below
    with front_of(slack, worker_url=nobody):
        assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
        if spool_path(slack.store.db) is not None:
            # Stored before the ack, sealed, in the front's own file: the main database
            # does not hold it until a worker imports it.
            assert spooled(slack) == 1 and not entries(slack)
            with sqlite3.connect(f"{spool_path(slack.store.db)}") as conn:
                (body,) = conn.execute("SELECT body FROM spool").fetchone()
            assert body and "web-frontend" not in body
        assert not requests(slack)
    # A worker comes (woken, or on its own round): the request is handled, once.
    slack.bot.inbox.take_due()
    slack.ws.wait_until(lambda: cards(slack), 30)
    slack.bot.inbox.take_due()
    slack.idle()
    assert len(requests(slack)) == 1 and len(cards(slack)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_import_repeated_after_a_crash_before_tidying_is_a_no_op(slack: Slack) -> None:
    slack.bot.inbox.stop_recovering()  # this test plays the worker's part itself
    path = spool_path(slack.store.db)
    assert path is not None
    spool = Spool.create(path)
    sealer = slack.bot.warden.lifecycle.core.privacy.sealer
    one = Arrival(key="e:Ev1", kind="event", content_type="application/json", body="{}")
    two = Arrival(key="e:Ev2", kind="event", content_type="application/json", body="{}")
    spool.append(sealed(sealer, [one, one]), utcnow())  # a key spooled twice is kept once
    assert spool.size() == 1
    up_to = spool.import_into(slack.store, 0, utcnow(), LEASE, 100)
    spool.append(sealed(sealer, [two]), utcnow())
    # A restarted worker starts from nothing: everything spooled is imported again.
    assert spool.import_into(slack.store, 0, utcnow(), LEASE, 100) > up_to
    assert sorted(e.key for e in entries(slack)) == ["e:Ev1", "e:Ev2"]
    # Tidying drops only what the main inbox holds; a row appended since stays.
    three = Arrival(key="e:Ev3", kind="event", content_type="application/json", body="{}")
    spool.append(sealed(sealer, [three]), utcnow())
    assert spool.tidy(slack.store) == 2 and spool.keys(0, 10).keys() == {"e:Ev3"}
    # Ids never go back once the spool was emptied: a worker's "imported up to" stays true.
    spool.import_into(slack.store, 0, utcnow(), LEASE, 100)
    assert spool.tidy(slack.store) == 1 and spool.size() == 0
    four = Arrival(key="e:Ev4", kind="event", content_type="application/json", body="{}")
    spool.append(sealed(sealer, [four]), utcnow())
    assert spool.pending(up_to, 10)[0].id > up_to + 2
    spool.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_worker_reads_the_spool_without_waiting_for_its_writer(slack: Slack) -> None:
    path = spool_path(slack.store.db)
    assert path is not None
    front = Spool.create(path)
    one = Arrival(key="e:Ev1", kind="event", content_type="application/json", body="{}")
    front.append([one], utcnow())
    with sqlite3.connect(path, isolation_level=None) as writer:
        writer.execute("BEGIN IMMEDIATE")  # the front, in the middle of a write
        worker = Spool.existing(path)
        assert worker is not None
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(len(worker.pending(0, 10))))
        reader.start()
        reader.join(10)  # a reader taking the write lock would wait for the busy timeout
        assert seen == [1]
        writer.execute("ROLLBACK")
    worker.dispose()
    front.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_spool_of_another_layout_is_refused_and_kept(slack: Slack) -> None:
    path = spool_path(slack.store.db)
    assert path is not None
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, what TEXT)")
        conn.execute("INSERT INTO spool (what) VALUES ('a request')")
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(SpoolError, match="another version of Warden"):
        Spool.create(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT what FROM spool").fetchall() == [("a request",)]
    # The worker logs it and goes on with the main inbox.
    assert slack.bot.inbox.recover() == 0
    assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
    slack.idle()
    assert len(cards(slack)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tidying_checkpoints_so_the_spools_log_does_not_grow(slack: Slack) -> None:
    slack.bot.inbox.stop_recovering()  # this test plays the worker's part itself
    path = spool_path(slack.store.db)
    assert path is not None
    spool = Spool.create(path)
    wal = path.with_name(path.name + "-wal")
    body = "x" * 2000

    def burst(tag: str) -> None:
        for i in range(40):
            batch = [
                Arrival(key=f"e:{tag}{i}-{j}", kind="event", content_type="", body=body)
                for j in range(25)
            ]
            spool.append(batch, utcnow())

    sizes = []
    for tag in "abc":
        burst(tag)
        spool.import_into(slack.store, 0, utcnow(), LEASE, 1000)
        assert spool.tidy(slack.store) == 1000
        sizes.append(wal.stat().st_size)
    # Each round is written over the checkpointed log, not after it.
    assert sizes[-1] < sizes[0] * 1.2
    spool.dispose()


def event(key: str) -> Arrival:
    return Arrival(key=key, kind="event", content_type="application/json", body="{}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_no_front_the_worker_tidies_a_spool_left_behind(slack: Slack) -> None:
    """`warden serve` ran with its front and was stopped with requests still spooled; it is
    started again as `--single-process` (or `warden dev`): nothing is lost, and what was
    imported is dropped by the worker itself, so it is never imported again."""
    slack.bot.inbox.stop_recovering()
    nobody = f"http://127.0.0.1:{free_port()}"
    with front_of(slack, worker_url=nobody):
        assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
    assert spooled(slack) == 1
    assert slack.bot.inbox.tidy_spool  # no front now
    slack.bot.inbox.take_due()
    slack.ws.wait_until(lambda: cards(slack), 30)
    assert spooled(slack) == 0 and len(entries(slack)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_backlog_is_imported_and_tidied_a_slice_at_a_time(slack: Slack) -> None:
    slack.bot.inbox.stop_recovering()
    path = spool_path(slack.store.db)
    assert path is not None
    spool = Spool.create(path)
    spool.append([event(f"e:Ev{i}") for i in range(5)], utcnow())
    assert spool.import_into(slack.store, 0, utcnow(), LEASE, 3) == 3
    assert len(entries(slack)) == 3
    assert spool.tidy(slack.store, limit=2) == 2  # looks at the two oldest only
    assert spool.tidy(slack.store) == 1 and spool.size() == 2
    spool.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_spool_made_again_is_read_from_its_start(slack: Slack) -> None:
    """The worker remembers how far it imported; if the file is replaced (ids start over),
    it does not skip the new file's rows."""
    slack.bot.inbox.stop_recovering()
    path = spool_path(slack.store.db)
    assert path is not None
    spool = Spool.create(path)
    spool.append([event(f"e:Old{i}") for i in range(3)], utcnow())
    up_to = spool.import_into(slack.store, 0, utcnow(), LEASE, 100)
    assert up_to == 3
    spool.dispose()
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    spool = Spool.create(path)
    spool.append([event("e:New")], utcnow())
    assert spool.import_into(slack.store, up_to, utcnow(), LEASE, 100) == 1
    assert "e:New" in {e.key for e in entries(slack)}
    spool.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_damaged_spool_stops_serve_with_one_line_and_spares_the_inbox(slack: Slack) -> None:
    path = spool_path(slack.store.db)
    assert path is not None
    path.write_bytes(b"this is not a database, " * 200)
    with pytest.raises(ConfigError, match="cannot be used as the spool"):
        open_spool(slack.store.db)
    # A worker that finds it logs it and still dispatches what the main inbox holds.
    slack.bot.inbox.take_due()
    assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
    slack.idle()
    slack.bot.inbox.take_due()
    assert len(cards(slack)) == 1
