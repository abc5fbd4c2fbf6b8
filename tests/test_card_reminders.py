"""Reminders and escalation of waiting cards, through signed Slack requests on both
databases: a card still waiting `gate.remind_after` after it was proposed DMs each person
whose click would count now — once, however many replicas sweep — with the card's own
Approve / Reject, which work exactly like the card's; after `gate.escalate_after` it is
posted to the admin channel, once; decided and expired cards are left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.errors import ConfigError
from bot.lifecycle import Lifecycle
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from handlers.runtime import Running, start
from storage.models import ActionStatus, AuditEvent, utcnow
from tests.conftest import ADMIN, APPROVER, APPROVER2, APPROVER3, REQUESTER, policy_data
from tests.slack_fixtures import (
    CHANNEL,
    OPS,
    SECRET,
    TOKEN,
    Slack,
    SlackFactory,
    buttons,
    card_text,
)

SWEEP_JOB = "bot.jobs:remind_waiting_cards"


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def make_policy(tmp_path: Path, **gate: Any) -> Policy:
    data = policy_data(tmp_path)
    data["gate"] = {
        **data["gate"],
        "approval_ttl": "24h",
        "remind_after": "2h",
        "escalate_after": "8h",
        **gate,
    }
    return parse_policy(data)


def quiet(running: Running) -> Lifecycle:
    """The tests sweep explicitly (the 30-second job would race them); the lifecycle."""
    running.warden.jobs.scheduler.remove_job(SWEEP_JOB)
    return running.warden.lifecycle


@contextmanager
def replica(slack: Slack, database_url: str, policy: Policy, clock: Clock) -> Iterator[Running]:
    """A second Warden on the same database and Slack workspace."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    running = start(settings, host="127.0.0.1", port=0, policy=policy, clock=clock, upgrade=False)
    try:
        yield running
    finally:
        running.stop()


def move(clock: Clock, by: timedelta, *lifecycles: Lifecycle) -> None:
    """Move Warden's clock on; each replica says it is alive at the new time (otherwise the
    others would take it for dead)."""
    clock.shift = by
    for lc in lifecycles:
        lc.store.heartbeat(lc.owner, lc.core.clock())


def sweep(*lifecycles: Lifecycle, times: int = 2) -> int:
    """Every replica sweeps at once, `times` each: how many cards they reminded or
    escalated between them."""
    with ThreadPoolExecutor(4) as pool:
        done = sum(pool.map(lambda lc: lc.sweeps.waiting_cards(), list(lifecycles) * times))
    for lc in lifecycles:
        assert lc.workers.wait_idle(30)
    return done


def dms(slack: Slack, user: str) -> list[dict[str, Any]]:
    return slack.ws.messages(slack.ws.dm_channel(user))


def ops(slack: Slack, word: str) -> list[str]:
    return [str(m.get("text") or "") for m in slack.ws.messages(OPS) if word in str(m.get("text"))]


def audit_rows(slack: Slack, kind: str) -> list[AuditEvent]:
    with slack.store.db.read() as s:
        return list(
            s.exec(
                select(AuditEvent).where(col(AuditEvent.kind) == kind).order_by(col(AuditEvent.seq))
            )
        )


def click(slack: Slack, user: str, channel: str, ts: str, action: str = "warden_approve") -> None:
    assert slack.ws.click(user, channel, ts, action).status == 200
    slack.idle()


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


# -- reminder, then escalation --------------------------------------------------------------


def test_a_waiting_card_reminds_its_approvers_then_escalates_once_across_two_replicas(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path
) -> None:
    policy = make_policy(tmp_path)
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    a = quiet(slack.bot)
    action, _card = slack.mention_and_card("restart checkout-api")
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.risk == "high"

    with replica(slack, database_url, policy, clock) as other:
        b = quiet(other)
        # Not yet: an hour in, nobody is nudged.
        move(clock, timedelta(hours=1), a, b)
        assert sweep(a, b) == 0
        assert all(dms(slack, u) == [] for u in (APPROVER, APPROVER2, APPROVER3))

        # Past remind_after: both replicas sweep, twice each — one reminder, one DM each.
        move(clock, timedelta(hours=2, minutes=5), a, b)
        assert sweep(a, b) == 1
        slack.idle()
        for user in (APPROVER, APPROVER2, APPROVER3):
            (dm,) = dms(slack, user)
            assert buttons(dm) == ["Approve", "Reject"]
            text = card_text(dm)
            assert "Reminder" in text and "restart_service" in text and "2h 5m" in text
            assert f"<@{REQUESTER}>" in text and f"<#{CHANNEL}>" in text
        # The requester may not approve their own high-risk call; the admin is no approver.
        assert dms(slack, REQUESTER) == [] and dms(slack, ADMIN) == []
        shown = card_text(slack.card(action.id))
        assert f"Reminded <@{APPROVER}>, <@{APPROVER2}>, <@{APPROVER3}> at" in shown
        assert "Escalated" not in shown
        (row,) = audit_rows(slack, "action.reminded")
        assert json.loads(row.data)["reminded"] == [APPROVER, APPROVER2, APPROVER3]
        assert ops(slack, "has waited") == []

        # Past escalate_after: one post to the admin channel, the card says so; once.
        move(clock, timedelta(hours=8, minutes=1), a, b)
        assert sweep(a, b) == 1
        slack.idle()
        (posted,) = ops(slack, "has waited")
        assert "restart_service" in posted and f"<#{CHANNEL}>" in posted and action.id in posted
        assert f"<@{APPROVER}>" in posted  # who was reminded
        shown = card_text(slack.card(action.id))
        assert f"Escalated to <#{OPS}> at" in shown
        assert len(audit_rows(slack, "action.escalated")) == 1
        assert sweep(a, b) == 0
        slack.idle()
        assert len(ops(slack, "has waited")) == 1
        assert all(len(dms(slack, u)) == 1 for u in (APPROVER, APPROVER2, APPROVER3))

    # The DM's Approve is the card's Approve: same handler, same gate, runs once.
    dm_ts = dms(slack, APPROVER2)[0]["ts"]
    click(slack, APPROVER2, slack.ws.dm_channel(APPROVER2), dm_ts)
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    assert len(slack.runs()) == 1
    assert f"approved by <@{APPROVER2}>" in card_text(slack.card(action.id))
    # Another reminded approver's late click from their DM changes nothing.
    dm3 = dms(slack, APPROVER3)[0]["ts"]
    click(slack, APPROVER3, slack.ws.dm_channel(APPROVER3), dm3)
    assert len(slack.runs()) == 1
    assert any("nothing to approve" in t for t in ephemerals_to(slack, APPROVER3))
    _count, problems = slack.store.verify_audit()
    assert problems == []


def test_the_dms_reject_opens_the_cards_reject_and_four_eyes_still_holds(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    clock = Clock()
    slack = slack_factory(policy_=make_policy(tmp_path), clock=clock)
    lc = quiet(slack.bot)
    action, _card = slack.mention_and_card("restart payments")
    move(clock, timedelta(hours=3), lc)
    assert sweep(lc) == 1
    slack.idle()
    (dm,) = dms(slack, APPROVER)
    dm_channel = slack.ws.dm_channel(APPROVER)
    click(slack, APPROVER, dm_channel, dm["ts"], "warden_reject")
    (view,) = slack.ws.open_views(APPROVER)
    reason = {"reason": {"value": {"type": "plain_text_input", "value": "not today"}}}
    assert slack.ws.submit_view(APPROVER, view["id"], reason).status == 200
    slack.idle()
    rejected = slack.store.get_action(action.id)
    assert rejected.status == ActionStatus.REJECTED and rejected.decided_by == APPROVER
    assert slack.runs() == []


def test_who_is_reminded_is_whoever_may_still_approve(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    clock = Clock()
    slack = slack_factory(policy_=make_policy(tmp_path), clock=clock)
    lc = quiet(slack.bot)
    # Critical: two approvers, neither the requester; one has approved already.
    critical, card = slack.mention_and_card("scale checkout in prod")
    assert critical.risk == "critical" and critical.preview
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(critical.id).status == ActionStatus.AWAITING_APPROVAL
    # Medium: the requester is an approver here and may approve their own.
    medium, _ = slack.mention_and_card("flush sessions")
    move(clock, timedelta(hours=2, minutes=1), lc)
    assert sweep(lc) == 2
    slack.idle()
    assert card_text(slack.card(critical.id)).count("Reminded") == 1
    assert f"Reminded <@{APPROVER2}>, <@{APPROVER3}> at" in card_text(slack.card(critical.id))
    people = {APPROVER, APPROVER2, APPROVER3, REQUESTER}
    assert f"Reminded {', '.join(f'<@{u}>' for u in sorted(people))} at" in card_text(
        slack.card(medium.id)
    )
    assert len(dms(slack, APPROVER)) == 1  # the medium card only: they approved the other
    assert len(dms(slack, APPROVER2)) == 2


def test_decided_and_expired_cards_are_never_reminded(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    clock = Clock()
    policy = make_policy(tmp_path, approval_ttl="3h", remind_after="2h", escalate_after="150m")
    slack = slack_factory(policy_=policy, clock=clock)
    lc = quiet(slack.bot)
    approved, card = slack.mention_and_card("restart web")
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(approved.id).status == ActionStatus.SUCCEEDED
    rejected, card = slack.mention_and_card("restart api")
    click(slack, APPROVER, CHANNEL, card["ts"], "warden_reject")
    (view,) = slack.ws.open_views(APPROVER)
    assert slack.ws.submit_view(APPROVER, view["id"], {}).status == 200
    slack.idle()
    assert slack.store.get_action(rejected.id).status == ActionStatus.REJECTED
    waiting, _ = slack.mention_and_card("restart queue")
    # Past approval_ttl (the expiry sweep has not run yet): the card can no longer run, so
    # nobody is asked to approve it, and nothing is escalated.
    move(clock, timedelta(hours=3, minutes=1), lc)
    assert sweep(lc) == 0
    slack.idle()
    assert all(dms(slack, u) == [] for u in (APPROVER, APPROVER2, APPROVER3, REQUESTER))
    assert ops(slack, "has waited") == []
    for action in (approved, rejected, waiting):
        assert "Reminded" not in card_text(slack.card(action.id))


def test_a_paused_warden_reminds_nobody_until_resume(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    clock = Clock()
    slack = slack_factory(policy_=make_policy(tmp_path), clock=clock)
    lc = quiet(slack.bot)
    action, _ = slack.mention_and_card("restart web")
    assert slack.ws.slash(ADMIN, CHANNEL, "/pause", "maintenance").status == 200
    move(clock, timedelta(hours=2, minutes=1), lc)
    assert sweep(lc) == 0
    assert slack.ws.slash(ADMIN, CHANNEL, "/resume").status == 200
    slack.idle()
    assert sweep(lc) == 1
    slack.idle()
    assert len(dms(slack, APPROVER)) == 1
    assert "Reminded" in card_text(slack.card(action.id))


def test_reminders_can_be_turned_off(slack_factory: SlackFactory, tmp_path: Path) -> None:
    clock = Clock()
    policy = make_policy(tmp_path, remind_after="off", escalate_after="off")
    slack = slack_factory(policy_=policy, clock=clock)
    lc = quiet(slack.bot)
    action, _ = slack.mention_and_card("restart web")
    move(clock, timedelta(hours=20), lc)
    assert sweep(lc) == 0
    slack.idle()
    assert dms(slack, APPROVER) == [] and ops(slack, "has waited") == []
    assert "Reminded" not in card_text(slack.card(action.id))


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"remind_after": "24h"}, "gate.remind_after: 24h is not shorter than gate.approval_ttl"),
        ({"escalate_after": "2d"}, "gate.escalate_after: 2d is not shorter than"),
        ({"remind_after": "3h", "escalate_after": "2h"}, "must be later than gate.remind_after"),
        ({"remind_after": "9h"}, "gate.escalate_after: 8h must be later"),
        ({"remind_after": "soon"}, "gate.remind_after"),
    ],
)
def test_bad_reminder_times_are_clear_policy_errors(
    tmp_path: Path, gate: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_policy(tmp_path, **gate)


def test_default_reminder_times_never_outlive_a_short_approval_ttl(tmp_path: Path) -> None:
    """The defaults (2h, 8h) with a 1h approval_ttl are no error: they never fire, because
    the card expires first."""
    policy = parse_policy(policy_data(tmp_path))
    assert policy.gate.approval_ttl == timedelta(hours=1)
    assert policy.gate.remind_after == timedelta(hours=2)
    assert make_policy(tmp_path, remind_after="off").gate.remind_after is None
