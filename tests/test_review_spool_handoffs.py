"""Review of the SQLite spool and of the Approve click that claims its run: what a crash, a
restart or a change of the rules at the wrong moment must not do — act on a request twice,
or run what the gate no longer allows. Driven through signed Slack requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from handlers.inbox import KEEP, Inbox
from storage.models import ActionStatus, utcnow
from storage.spool import spool_path
from tests.conftest import ADMIN, APPROVER
from tests.served import free_port
from tests.slack_fixtures import CHANNEL, Slack
from tests.test_spool import front_of


@contextmanager
def restarted_worker(slack: Slack, clock: Callable[[], datetime]) -> Iterator[Inbox]:
    """The worker's inbox as a restarted worker process builds it (nothing imported yet),
    with its own clock."""
    bot = slack.bot
    lc = bot.warden.lifecycle
    inbox = Inbox(
        bot.app,
        bot.warden.store,
        bot.warden.workers.inbox,
        lc.owner,
        clock,
        lc.core.privacy.sealer,
        spool_path=spool_path(bot.warden.store.db),
    )
    try:
        yield inbox
    finally:
        if inbox._spool is not None:
            inbox._spool.dispose()


def paused(slack: Slack) -> bool:
    state, _scopes = slack.store.pauses()
    return bool(state.paused)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_command_imported_but_not_tidied_is_not_acted_on_again_once_its_key_is_forgotten(
    slack: Slack,
) -> None:
    """A `/resume` is spooled by the front, which is then gone (killed after the worker
    imported it, or the next start is `--single-process`, where no front tidies). The worker
    imports and handles it. An admin pauses again. An hour later the main inbox forgets the
    key; the spool still holds the row. The next worker start imports it again: a stale
    `/resume` lifts the admin's new pause."""
    assert slack.bot.warden.lifecycle.control.pause(ADMIN, "deploy freeze").ok
    nobody = f"http://127.0.0.1:{free_port()}"
    with front_of(slack, worker_url=nobody):
        assert slack.ws.slash(ADMIN, CHANNEL, "/resume", wait=0).status == 200
    slack.bot.inbox.take_due()  # the worker imports it and acts on it
    slack.idle()
    assert not paused(slack)
    assert slack.bot.warden.lifecycle.control.pause(ADMIN, "incident: hands off").ok
    later = utcnow() + KEEP + timedelta(minutes=5)
    with restarted_worker(slack, lambda: later) as worker:
        worker.recover()  # an hour on: done keys are forgotten
    slack.idle()
    with restarted_worker(slack, lambda: later) as worker:
        worker.take_due()  # any later start of a worker
    slack.idle()
    assert paused(slack), "a /resume handled an hour ago was acted on again"


def test_autonomy_set_to_suggest_while_the_click_records_its_approval_holds_the_run(
    slack: Slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/warden autonomy restart_service suggest` commits while an Approve click waits to
    record its approval (on SQLite: for the write lock). The click's claim must not run the
    tool on the state it read before that: the gate, asked on the state now, says no."""
    action, card = slack.mention_and_card("restart web-frontend")
    assert action.status == ActionStatus.AWAITING_APPROVAL
    store = slack.store
    record = store.record_approval
    control = slack.bot.warden.lifecycle.control

    def admin_first(*args: Any, **kwargs: Any) -> Any:
        assert control.set_autonomy(action.tool, "suggest", ADMIN).ok
        return record(*args, **kwargs)

    monkeypatch.setattr(store, "record_approval", admin_first)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    assert slack.runs() == [], "the click ran a tool whose autonomy is now 'suggest'"
    after = store.get_action(action.id)
    assert after is not None and after.status != ActionStatus.SUCCEEDED
