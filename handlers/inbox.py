"""The inbox: Slack's events and slash commands are answered as soon as they are stored.

Slack waits 3 s for the HTTP answer to a request and retries when it is late, so the answer
should cost as little as possible and never wait for Warden's work. `handlers/http.py` checks
the signature and shape, then hands each event callback and slash command here:

1. `Inbox.accept` queues it for the writer thread and waits for it to be stored. The writer
   stores every request waiting at that moment in one transaction (group commit), so a burst
   of 80 costs a few writes, not 80 contending ones.
2. Once stored, the HTTP answer goes out (200, empty): the request is safe whatever happens
   next. A request that cannot be stored is answered 503, so Slack sends it again.
3. A worker (`Workers.inbox`: commands first, then events round-robin across the people who
   sent them) hands the stored request to Bolt exactly as it arrived, and marks it done. A
   slash command's answer, which used to be the HTTP body, is posted to the command's
   `response_url`, which Slack shows the same way.

If the process dies between 2 and 3, the stored request is not lost: another replica (or
this one, restarted) takes it over once its owner stops sending heartbeats, and dispatches
it; an entry this process holds but is no longer handling (its release failed with the
database) is taken back too. Dispatching an event twice is harmless (intake stores a request
once per message); a command taken over from a replica that died while acting on it is acted
on again — better than a `/pause` nobody sees — and a replay of it never gets past the key.
Clicks and modal submissions do not come through here: their answer (a modal's validation
errors) is the HTTP body itself, so Bolt handles them inline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.webhook import WebhookClient
from sqlalchemy.exc import SQLAlchemyError

from bot.sealing import Sealer, SealError
from bot.workers import FairPool
from storage.db import Database
from storage.inbox import Arrival
from storage.repo import Store
from storage.spool import Spool, SpoolError

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=30)
"""How long a live replica holds a stored request before another live one may take it over
too (a dead one's are taken over once its heartbeat is stale, within a minute)."""
RETRY_AFTER = timedelta(seconds=10)
GIVE_UP_AFTER = 5
"""Dispatch attempts of an event before it is dropped (each failure is logged)."""
KEEP = timedelta(hours=1)
"""Done requests are kept this long, so Slack's retries of them (within minutes) find their
key taken."""
RECOVER_EVERY = 10.0
MAX_BATCH = 200
STORE_TIMEOUT = 2.0
"""How long a request thread waits for its request to be stored before answering 503."""
SORRY = "Sorry, I could not act on that command just now; please try again."
FROM_INBOX = "warden_from_inbox"
"""Set in the Bolt context of a request the inbox dispatches (already de-duplicated)."""


def arrival(data: dict[str, Any], text: str, content_type: str) -> Arrival | None:
    """The inbox entry for a parsed, verified request, or None if Bolt must answer it inline
    (a URL check, a click, a modal submission: their HTTP answer carries content)."""
    media = content_type.split(";")[0].strip()[:100]  # all that parsing the body needs
    if data.get("type") == "event_callback":
        key = _key("e", data.get("event_id"), text)
        return Arrival(key=key, kind="event", content_type=media, body=text)
    if isinstance(data.get("command"), str) and "payload" not in data:
        key = _key("t", data.get("trigger_id"), text)
        return Arrival(key=key, kind="command", content_type=media, body=text)
    return None


def sealed(sealer: Sealer, arrivals: list[Arrival]) -> list[Arrival]:
    """`arrivals` with their bodies sealed under the data key (they hold what people wrote)."""
    return [replace(a, body=sealer.seal_text(a.body)) for a in arrivals]


def store_sealed(
    store: Store, sealer: Sealer, arrivals: list[Arrival], owner: str | None, now: datetime
) -> dict[str, int]:
    """Store a batch of requests in one transaction, bodies sealed; {key: id} of the new
    ones. `owner` None: due for any replica."""
    return store.store_arrivals(sealed(sealer, arrivals), owner, now, LEASE)


def _key(prefix: str, value: object, text: str) -> str:
    """`prefix:value` (Slack's own id), a hash of it when it is long, or of the whole body
    when there is none: two different requests never share a key."""
    if isinstance(value, str) and value:
        if len(value) <= 64:
            return f"{prefix}:{value}"
        return f"{prefix}#{hashlib.sha256(value.encode()).hexdigest()}"
    return f"b#{hashlib.sha256(text.encode()).hexdigest()}"


def sender(data: dict[str, Any]) -> str:
    """Whose request this is, for the round-robin (malformed ids share one line)."""
    event = data.get("event")
    user = event.get("user") if isinstance(event, dict) else data.get("user_id")
    return user if isinstance(user, str) and len(user) <= 32 else "?"


@dataclass
class _Waiter:
    arrival: Arrival
    data: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    stored: bool = False


class Inbox:
    """Stores requests before they are acknowledged, then hands them to Bolt."""

    def __init__(
        self,
        app: App,
        store: Store,
        pool: FairPool,
        owner: str,
        clock: Callable[[], datetime],
        sealer: Sealer,
        *,
        answer: Callable[[str, dict[str, Any]], None] | None = None,
        spool_path: Path | None = None,
        tidy_spool: bool = True,
    ) -> None:
        self.app, self.store, self.pool, self.owner, self.clock = app, store, pool, owner, clock
        self.sealer = sealer
        # The front process's spool (SQLite, `storage/spool.py`), opened once a front made it.
        self._spool_path, self._spooled_up_to, self.tidy_spool = spool_path, 0, tidy_spool
        self._spool: Spool | None = None
        self.answer = answer or _post_to_response_url
        self._queue: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._no_recovery = threading.Event()
        self._wake = threading.Event()
        # Entries this process has queued or is dispatching: the only ones of its own that
        # recovery must not take back.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name="warden-inbox", daemon=True)
        self._recoverer = threading.Thread(
            target=self._recover_loop, name="warden-inbox-recover", daemon=True
        )

    def start(self) -> Inbox:
        self._writer.start()
        self._recoverer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._writer.join(timeout=10)
        self.stop_recovering()
        if self._spool is not None:
            self._spool.dispose()

    def stop_recovering(self) -> None:
        """Stop looking for requests to take over in the background (`recover` still works)."""
        self._no_recovery.set()
        self._wake.set()
        if self._recoverer.is_alive():
            self._recoverer.join(timeout=10)

    # -- the ack path --------------------------------------------------------------------------

    def accept(self, entry: Arrival, data: dict[str, Any]) -> bool:
        """Store `entry` (with every other request arriving meanwhile); True once it is
        stored, or was stored before. False if it could not be stored in time."""
        if self._stop.is_set():
            return False
        waiter = _Waiter(entry, data)
        self._queue.put(waiter)
        return waiter.done.wait(STORE_TIMEOUT) and waiter.stored

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                self._write(batch)
            except Exception:  # the writer must outlive any one batch
                log.exception("could not store a batch of requests from Slack")
                for w in batch:
                    w.done.set()

    def _write(self, batch: list[_Waiter]) -> None:
        try:
            # Slack is waiting on every request in the batch: this write goes first.
            with Database.urgent():
                new = store_sealed(
                    self.store, self.sealer, [w.arrival for w in batch], self.owner, self.clock()
                )
        except Exception:
            log.exception("could not store %d request(s) from Slack; answering 503", len(batch))
            for w in batch:
                w.done.set()
            return
        for w in batch:
            entry_id = new.pop(w.arrival.key, None)
            # Queued before the HTTP answer goes out, so whoever waits for Warden to be idle
            # after a request was answered also waits for it to be handled.
            if entry_id is not None:
                self._hand_on(entry_id, w.arrival, w.data)
            w.stored = True
            w.done.set()

    # -- after the ack -------------------------------------------------------------------------

    def _hand_on(self, entry_id: int, entry: Arrival, data: dict[str, Any]) -> None:
        # Someone is looking at the screen for a command's answer: commands go before events.
        first = entry.kind == "command"
        with self._held_lock:
            self._held.add(entry_id)
        if not self.pool.submit_fair(
            sender(data), self._dispatch, entry_id, entry, data, first=first
        ):
            self._let_go(entry_id)  # shutting down: a later start takes it over

    def _let_go(self, entry_id: int) -> None:
        with self._held_lock:
            self._held.discard(entry_id)

    def _dispatch(self, entry_id: int, entry: Arrival, data: dict[str, Any]) -> None:
        """Hand a stored request to Bolt, as it arrived (its signature was checked then)."""
        try:
            self._dispatch_held(entry_id, entry, data)
        finally:
            self._let_go(entry_id)

    def _dispatch_held(self, entry_id: int, entry: Arrival, data: dict[str, Any]) -> None:
        body, status = "", 500
        try:
            # Socket Mode's request shape: a parsed body Bolt does not verify again (it was
            # verified on arrival, and may be older than the signature's 5-minute window).
            # The inbox's key already made it once per event or trigger id (FROM_INBOX).
            request = BoltRequest(body=data, mode="socket_mode", context={FROM_INBOX: True})
            response = self.app.dispatch(request)
            status, body = response.status, response.body
        except Exception:
            log.exception("could not dispatch a stored request from Slack")
        failed = status >= 500
        if entry.kind == "command":
            self._answer_command(data, body if status == 200 else "", status != 200)
            failed = False  # acted on (or answered "sorry") once; not retried
        now = self.clock()
        if not failed:
            self.store.inbox_done(entry_id, now)
        elif self.store.inbox_release(entry_id, self.owner, now + RETRY_AFTER, GIVE_UP_AFTER):
            log.warning("a stored request from Slack failed; it will be tried again")
        else:
            log.error("a stored request from Slack failed and is not tried again")

    def _answer_command(self, data: dict[str, Any], body: str, failed: bool) -> None:
        url = data.get("response_url")
        if not isinstance(url, str) or not url:
            return
        message: dict[str, Any] = {"text": SORRY} if failed else {}
        if body:
            # Bolt's ack(text=...) answers with the bare text; with blocks, a JSON object.
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            message = parsed if isinstance(parsed, dict) else {"text": body}
        if not message:
            return  # the listener answers through response_url itself (or not at all)
        message.setdefault("response_type", "ephemeral")
        try:
            self.answer(url, message)
        except Exception:
            log.exception("could not post a slash command's answer")

    # -- taking over -------------------------------------------------------------------------

    def wake(self) -> None:
        """Requests were stored for this replica to take (by the front process,
        `handlers/front.py`): look for them now rather than at the next round."""
        self._wake.set()

    def recover(self) -> int:
        """Take and dispatch due entries, then forget done ones past `KEEP`."""
        taken = self.take_due()
        # A key whose row is still in the front's spool (not tidied yet: the front died
        # first) stays: forgotten, the row would be imported again and acted on twice.
        spooled = self._spool.all_keys() if self._spool is not None else set()
        self.store.forget_inbox_before(self.clock() - KEEP, keep=spooled)
        return taken

    def take_due(self) -> int:
        """Dispatch stored requests nobody is handling (stored by the front process, their
        replica died, or a dispatch failed and is due again), oldest first. Returns how many
        were taken."""
        taken = 0
        while not self._stop.is_set():
            self._import_spool()  # a slice at a time: dispatch starts before a backlog is in
            with self._held_lock:
                held = set(self._held)
            entries = self.store.claim_inbox(self.owner, self.clock(), LEASE, held=held)
            if not entries:
                break
            for e in entries:
                assert e.id is not None
                try:
                    text = self.sealer.open_text(e.body)
                    data = parse_body(text, e.content_type.split(";")[0] or None)
                except (SealError, ValueError):
                    log.error("a stored request from Slack cannot be read (data key changed?)")
                    data = {}
                item = Arrival(key=e.key, kind=e.kind, content_type=e.content_type, body="")
                if not isinstance(data, dict) or not data:
                    self.store.inbox_done(e.id, self.clock())
                    continue
                self._hand_on(e.id, item, data)
                taken += 1
        return taken

    def _import_spool(self) -> None:
        """Copy (a slice of) what the front spooled into the inbox, where it is claimed like
        the rest. With no front (`tidy_spool`: `--single-process`, `warden dev`, a spool left
        by an earlier `warden serve`), this process also drops what it imported."""
        try:
            if self._spool is None and self._spool_path is not None:
                self._spool = Spool.existing(self._spool_path)
            if self._spool is not None:
                self._spooled_up_to = self._spool.import_into(
                    self.store, self._spooled_up_to, self.clock(), LEASE, MAX_BATCH
                )
                if self.tidy_spool:
                    self._spool.tidy(self.store)
        except SpoolError as e:
            log.error("%s", e)  # the main inbox still works
            self._spool_path = None
        except SQLAlchemyError:
            # A damaged spool file must not stop the main inbox from being dispatched.
            log.exception("could not read the front's spool; trying again later")

    def _recover_loop(self) -> None:
        next_round = 0.0
        while not self._no_recovery.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + RECOVER_EVERY
                    if n := self.recover():
                        log.info("took %d stored request(s) from Slack", n)
                elif woken:
                    self.take_due()
            except Exception:
                log.exception("could not look for stored requests to take")
            self._wake.wait(max(0.0, next_round - time.monotonic()))


def _post_to_response_url(url: str, message: dict[str, Any]) -> None:
    response = WebhookClient(url, timeout=10).send_dict(message)
    if response.status_code >= 300:
        log.warning("a slash command's answer was refused: HTTP %s", response.status_code)
