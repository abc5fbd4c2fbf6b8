"""Where slow work runs: never on the threads that acknowledge Slack.

Four bounded pools: planners (LLM calls, seconds each), executors (runbooks), the outbox
(Slack posts and card updates, which may wait on a 429's Retry-After) and replies (ephemeral
answers, modals, App Home: what a person is waiting to see). The planner pool is fair: work
is queued per requester and taken round-robin, so one person's flood of requests never
delays another person's by more than one planning slot. The HTTP threads that ack
events, clicks and slash commands only write to the database and hand work to these pools,
so `/pause` is acknowledged at once however busy they are. Work is always re-derivable from
the database (a proposal waiting for a click is a row, not a thread), so losing a pool's queue
in a crash loses nothing: start-up recovery and the scheduled sweeps pick it up again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from storage.db import ACKS

log = logging.getLogger(__name__)


class Pool:
    """A named thread pool that counts outstanding work so tests and shutdown can wait."""

    def __init__(self, name: str, size: int, *, defer_to_acks: bool = True) -> None:
        self.name = name
        self.size = size
        # Deferrable work waits while Slack waits for acks (storage/db.py `AckGate`); work a
        # person is waiting for (a runbook just approved, the answer to a click) does not.
        self.defer_to_acks = defer_to_acks
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"warden-{name}")
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        with self._idle:
            if self._closed:
                return None
            self._pending += 1
        try:
            future = self._executor.submit(self._run, fn, *args)
        except RuntimeError:
            self._done()
            return None
        return future

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            if not self.defer_to_acks:
                with ACKS.exempt():
                    return fn(*args)
            ACKS.wait()
            return fn(*args)
        except Exception:
            log.exception("%s work failed: %s", self.name, getattr(fn, "__name__", fn))
            return None
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def saturated(self) -> bool:
        """Every thread is taken: new work waits for one to be free."""
        return self._pending >= self.size

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        with self._idle:
            self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


class FairPool(Pool):
    """A pool whose queue is one line per key (the requester), served round-robin. With
    `serial`, a line runs one item at a time, in order (a person's thread reply is never
    handled before the mention that started the thread). Work submitted `first` goes ahead
    of every line, one item per key at a time: a key's further `first` work, while one
    waits ahead (or, after it, in the key's line), joins the key's line — one person's
    flood of commands is served in turn with everyone else's work, not all before it, and
    in the order it came."""

    def __init__(self, name: str, size: int, *, serial: bool = False) -> None:
        super().__init__(name, size)
        self.serial = serial
        self._busy: set[str] = set()
        self._owed = 0  # slots that found every waiting line busy
        # Each item: (fn, args, whether it was submitted `first`).
        self._lines: OrderedDict[str, deque[tuple[Callable[..., Any], tuple[Any, ...], bool]]] = (
            OrderedDict()
        )
        self._first: deque[tuple[str, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._first_keys: set[str] = set()  # keys with an item waiting in `_first`
        self._first_in_line: dict[str, int] = {}  # `first` items waiting in a key's line
        self._ready = threading.Condition()

    def submit_fair(
        self, key: str, fn: Callable[..., Any], *args: Any, first: bool = False
    ) -> bool:
        """Queue `fn(*args)` in `key`'s line; False if the pool is shut down. `first`: ahead
        of every line (someone is looking at the screen for the answer), unless `key`
        already has such an item waiting."""
        with self._idle:
            if self._closed:
                return False
            self._pending += 1
        with self._ready:
            if first and key not in self._first_keys and not self._first_in_line.get(key):
                self._first.append((key, fn, args))
                self._first_keys.add(key)
            else:  # `first` too if one of the key's waits already: after it, in order
                self._lines.setdefault(key, deque()).append((fn, args, first))
                if first:
                    self._first_in_line[key] = self._first_in_line.get(key, 0) + 1
        try:
            self._executor.submit(self._next)
        except RuntimeError:
            self._done()
            return False
        return True

    def _next(self) -> None:
        # Each submitted slot runs whichever line's turn it is, not necessarily the work
        # submitted with it: that is what makes the order fair.
        key: str | None = None
        with self._ready:
            # In a serial pool a key's `first` item, too, waits while that key runs one.
            ahead = next(
                (i for i, (k, _, _) in enumerate(self._first) if k not in self._busy), None
            )
            if ahead is not None:
                key, fn, args = self._first[ahead]
                del self._first[ahead]
                self._first_keys.discard(key)
                if self.serial:
                    self._busy.add(key)
            else:
                key = next((k for k in self._lines if k not in self._busy), None)
                if key is None:
                    if self._lines or self._first:  # all of it waits on running keys
                        self._owed += 1
                    return
                line = self._lines.pop(key)
                fn, args, was_first = line.popleft()
                if was_first and self._first_in_line[key] > 1:
                    self._first_in_line[key] -= 1
                elif was_first:
                    del self._first_in_line[key]
                if line:
                    self._lines[key] = line  # to the back of the round
                if self.serial:
                    self._busy.add(key)
        try:
            self._run(fn, *args)
        finally:
            if key is not None and self.serial:
                with self._ready:
                    self._busy.discard(key)
                    owed, self._owed = self._owed, 0
                for _ in range(owed):
                    try:
                        self._executor.submit(self._next)
                    except RuntimeError:  # shut down
                        break


class Workers:
    """The inbox, planner, executor, outbox and replies pools."""

    def __init__(
        self, planners: int, executors: int, outbox: int = 4, replies: int = 2, inbox: int = 4
    ) -> None:
        self.planners = FairPool("planner", planners)
        # Requests from Slack stored before their ack, handed on round-robin across senders
        # (one person's flood does not hold up another's request).
        self.inbox = FairPool("inbox", inbox, serial=True)
        self.executors = Pool("executor", executors, defer_to_acks=False)
        self.outbox = Pool("outbox", outbox)
        # Answers to the person who clicked or typed (ephemerals, modals, App Home) have their
        # own threads: a modal's trigger_id dies after 3 s, so it must never queue behind
        # posts that are sleeping through a channel's Retry-After.
        self.replies = Pool("replies", replies, defer_to_acks=False)

    def all(self) -> tuple[Pool, ...]:
        return (self.inbox, self.planners, self.executors, self.outbox, self.replies)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every pool is idle at the same moment (work may spawn work)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            for pool in self.all():
                if not pool.wait_idle(max(0.0, deadline - time.monotonic())):
                    return False
            if all(p.pending == 0 for p in self.all()):
                return True

    def shutdown(self, wait: bool = True) -> None:
        for pool in self.all():
            pool.shutdown(wait=wait)
