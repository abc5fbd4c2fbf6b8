"""How many database round trips one Approve click costs before its runbook starts.

A click is the one moment a person waits on Warden to do something: Approve → the approved
runbook's process started (`bench/ack_latency.py`'s approve_to_process_ms, p50 ≤ 50 ms). Most
of that time is database round trips, so their number is pinned here, deterministically: a
real signed click through the local Slack workspace, counting every statement, commit and
rollback (and, on PostgreSQL, every pooled connection's pre-ping) made on the click's own
path — the HTTP thread that handles the click, and the executor work it hands on, up to the
moment tool code is called. Background work the click sets off (the outbox delivering the
card, sweeps) runs on other threads and is not counted.

The ceilings sit a little above today's figures: a change that adds round trips to the
click's path fails here and must say why, or take them off the path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import APPROVER
from tests.slack_fixtures import Slack

# Statements (SQLite: BEGIN included), transactions and round trips of one Approve click that
# meets the action's rule, up to the runbook's start. Measured when this test was written:
# SQLite 29 statements in 7 transactions, PostgreSQL 22 in 7 (and a pre-ping each), the
# seventh being the click's second read of autonomy before it claims; before the click
# claimed its run in the transaction that approves it, 47 in 13 and 34 in 13.
CEILINGS = {
    "sqlite": {"statements": 31, "transactions": 8},
    "postgresql": {"statements": 24, "transactions": 8},
}

_on_path = threading.local()


@dataclass
class Counts:
    """What the click's own path sent to the database."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0
    checkouts: int = 0
    tool_called: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def transactions(self) -> int:
        return self.commits + self.rollbacks


def _counted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, with the database work of its thread counted while it runs."""

    def run(*args: Any, **kwargs: Any) -> Any:
        before = getattr(_on_path, "on", False)
        _on_path.on = True
        try:
            return fn(*args, **kwargs)
        finally:
            _on_path.on = before

    return run


@pytest.fixture
def counted(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    """Count the database work of every Approve click from here on (see the module)."""
    counts = Counts()
    warden = slack.bot.warden
    lifecycle = warden.lifecycle

    def on(*_: Any) -> bool:
        return bool(getattr(_on_path, "on", False))

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if on():
            with counts.lock:
                counts.statements.append(" ".join(sql.split())[:160])

    def commit(_conn: Any) -> None:
        if on():
            with counts.lock:
                counts.commits += 1

    def rollback(_conn: Any) -> None:
        if on():
            with counts.lock:
                counts.rollbacks += 1

    def checkout(*_: Any) -> None:
        if on():
            with counts.lock:
                counts.checkouts += 1

    engines = {id(e): e for e in (warden.db.engine, warden.db.read_engine)}.values()
    listeners = [
        ("before_cursor_execute", statement),
        ("commit", commit),
        ("rollback", rollback),
    ]
    for engine in engines:
        for name, fn in listeners:
            event.listen(engine, name, fn)
        event.listen(engine.pool, "checkout", checkout)

    # The click's path: the Approve handler, and whatever it hands to an executor, until the
    # executor calls tool code (the runbook's process starts there).
    monkeypatch.setattr(lifecycle.approvals, "approve", _counted(lifecycle.approvals.approve))
    pool = warden.workers.executors
    submit = pool.submit

    def submit_counted(fn: Callable[..., Any], *args: Any) -> Any:
        return submit(_counted(fn) if on() else fn, *args)

    monkeypatch.setattr(pool, "submit", submit_counted)
    call = lifecycle.executor._call

    def call_uncounted(*args: Any, **kwargs: Any) -> Any:
        if on():
            with counts.lock:
                counts.tool_called += 1
        _on_path.on = False  # the process starts: the click's path ends here
        return call(*args, **kwargs)

    monkeypatch.setattr(lifecycle.executor, "_call", call_uncounted)
    yield counts
    for engine in engines:
        for name, fn in listeners:
            event.remove(engine, name, fn)
        event.remove(engine.pool, "checkout", checkout)


def test_one_approve_click_stays_within_its_round_trips(
    slack: Slack, counted: Counts, database_url: str
) -> None:
    action, card = slack.mention_and_card("restart checkout-api")
    assert action.status == "awaiting_approval"
    assert slack.ws.click(APPROVER, action.channel, card["ts"], "warden_approve").status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == "succeeded"
    assert slack.runs() == [f"restart checkout-api {action.id}"]
    assert counted.tool_called == 1  # the path was followed all the way to the runbook

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    figures = {"statements": len(counted.statements), "transactions": counted.transactions}
    print(f"\n{kind}: {figures}, pre-pings/checkouts {counted.checkouts}")
    print("\n".join(counted.statements))
    ceiling = CEILINGS[kind]
    assert figures["statements"] <= ceiling["statements"], counted.statements
    assert figures["transactions"] <= ceiling["transactions"], figures
