"""A hostile review of the approval-UX features (timed and scoped pauses, 30-minute grants,
break glass, reminders, Cancel), through signed Slack requests on both databases: each test
pins a defect the review found, and fails without its fix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import build_registry
from bot.gate import Gate
from bot.gate_types import Now
from bot.policy import parse_policy
from storage.models import Action, ActionStatus, utcnow
from tests.anthropic_stub import AnthropicStub, propose, reply, text, tool_use
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, buttons, card_text

AUTO_RESUME = "bot.jobs:auto_resume"
GRANT = "warden_grant"


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def said(delivery: Any) -> str:
    assert delivery.status == 200, delivery.body
    try:
        return str(json.loads(delivery.body).get("text") or "")
    except ValueError:
        return str(delivery.body)


def slash(slack: Slack, user: str, command: str, words: str = "") -> str:
    out = said(slack.ws.slash(user, CHANNEL, command, words))
    slack.idle()
    return out


def ops(slack: Slack, word: str) -> list[str]:
    return [str(m.get("text") or "") for m in slack.ws.messages(OPS) if word in str(m.get("text"))]


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


# -- the kill switch: an untimed /pause during a timed one ----------------------------------


def test_an_untimed_pause_during_a_timed_one_holds_until_resume(
    slack_factory: SlackFactory,
) -> None:
    """An admin paused for 15 minutes (a drill); another sees a runaway and types `/pause`:
    they asked for a kill switch that holds until /resume. It used to answer "already
    paused" and the drill's timer lifted the pause by itself 15 minutes later."""
    clock = Clock()
    slack = slack_factory(clock=clock)
    slack.bot.warden.jobs.scheduler.remove_job(AUTO_RESUME)
    slash(slack, ADMIN, "/pause", "15m drill")
    reply_ = slash(slack, ADMIN, "/pause", "runaway deploys")
    assert "until /resume" in reply_, reply_
    _action, card = slack.mention_and_card("flush sessions")
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()

    clock.shift = timedelta(minutes=16)
    assert slack.bot.warden.lifecycle.sweeps.auto_resume() == 0
    slack.idle()
    pause, _scopes = slack.store.pauses()
    assert pause.paused and pause.until is None
    assert slack.runs("flush") == []
    assert ops(slack, "Auto-resumed") == []
    # Audited and announced like any pause; /resume still lifts it.
    kinds = [r.kind for r in slack.store.audit_rows(subject="control")]
    assert kinds == ["control.paused", "control.paused"]
    assert len(ops(slack, "until /resume")) == 1
    slash(slack, ADMIN, "/resume")
    assert slack.runs("flush") == ["flush sessions"]


def test_a_longer_timed_pause_extends_a_shorter_one_and_a_shorter_one_changes_nothing(
    slack_factory: SlackFactory,
) -> None:
    clock = Clock()
    slack = slack_factory(clock=clock)
    slack.bot.warden.jobs.scheduler.remove_job(AUTO_RESUME)
    slash(slack, ADMIN, "/pause", "15m drill")
    first, _ = slack.store.pauses()
    assert first.until is not None
    slash(slack, ADMIN, "/pause", "2h incident")
    longer, _ = slack.store.pauses()
    assert longer.until is not None and longer.until > first.until + timedelta(minutes=90)
    out = slash(slack, ADMIN, "/pause", "5m oops")
    assert "already paused until" in out
    same, _ = slack.store.pauses()
    assert same.until == longer.until
    clock.shift = timedelta(minutes=16)
    assert slack.bot.warden.lifecycle.sweeps.auto_resume() == 0
    assert slack.store.pauses()[0].paused


# -- 30-minute grants and untrusted text ------------------------------------------------------


def _tainted_post(stub: AnthropicStub) -> None:
    """The model reads a lookup's output (untrusted), then proposes one exact post."""
    stub.enqueue(
        reply(text("Let me check."), tool_use("lookup_user", {"user": APPROVER})),
        reply(
            propose(
                "post_message",
                {"channel": CHANNEL, "text": "deploy freeze lifted"},
                0.95,
                "Announces it.",
            )
        ),
    )


def test_a_grant_never_lets_a_tainted_call_run_unattended(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    """Untrusted text never triggers a side effect alone: a call whose plan read text not
    written by its requester always waits for a person's click, even when an approver's
    30-minute grant names exactly that call."""
    slack = slack_factory(claude=anthropic_stub)
    _tainted_post(anthropic_stub)
    assert slack.ws.mention(REQUESTER, CHANNEL, "tell everyone").status == 200
    slack.idle()
    (first,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert first.taint
    card = slack.card(first.id)
    assert "Approve identical calls for 30 min" in buttons(card)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], GRANT).status == 200
    slack.idle()
    assert slack.store.get_action(first.id).status == ActionStatus.SUCCEEDED

    # An injection makes the model propose the same post again, and again.
    _tainted_post(anthropic_stub)
    assert slack.ws.mention(APPROVER2, CHANNEL, "what's new?").status == 200
    slack.idle()
    (again,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert again.taint and again.id != first.id
    assert slack.store.approvals(again.id, again.revision) == []
    assert "30-minute grant" not in card_text(slack.card(again.id))


# -- break glass: its review is someone else's ------------------------------------------------


def test_the_requester_may_not_acknowledge_a_break_glass_on_their_own_request(
    slack: Slack,
) -> None:
    """Acknowledging a break glass is the second pair of eyes the admin skipped: the person
    who asked for the high-risk call (four eyes excluded them from approving it) is not that
    second pair, even when they are an approver."""
    action, card = slack.mention_and_card("restart checkout-api", user=APPROVER2)
    assert action.risk == "high"
    assert slack.ws.click(ADMIN, CHANNEL, card["ts"], "warden_break_glass").status == 200
    slack.idle()
    (view,) = slack.ws.open_views(ADMIN)
    reason = {"reason": {"value": {"type": "plain_text_input", "value": "site down"}}}
    assert slack.ws.submit_view(ADMIN, view["id"], reason).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED

    ts = slack.card(action.id)["ts"]
    assert slack.ws.click(APPROVER2, CHANNEL, ts, "warden_ack").status == 200
    slack.idle()
    assert slack.store.get_action(action.id).acknowledged_by is None
    assert any("asked for" in t for t in ephemerals_to(slack, APPROVER2))
    assert slack.ws.click(APPROVER, CHANNEL, ts, "warden_ack").status == 200
    slack.idle()
    assert slack.store.get_action(action.id).acknowledged_by == APPROVER


def test_a_break_glass_from_an_earlier_revision_does_not_excuse_a_later_run(
    tmp_path: Path,
) -> None:
    """A break glass that did not run (a pause held it, then a changed policy sent the card
    back to its approvers as a new revision) keeps its flag for the review; it must not
    excuse the approval rule when the card is later approved the ordinary way: the run is
    asked of the approvals on record, a freeze's admin included."""
    policy = parse_policy(policy_data(tmp_path))
    gate = Gate(policy, build_registry(policy))
    now = Now(paused=False, at=utcnow())
    later = Action(
        id="a1",
        request_id="r1",
        trace_id="t1",
        tool="restart_service",
        args_json='{"service":"web"}',
        policy_version=policy.version,
        risk="high",
        requester=REQUESTER,
        channel=CHANNEL,
        status=ActionStatus.APPROVED,
        revision=2,
        break_glass_by=ADMIN,
        decided_by=APPROVER,
    )
    assert gate.runnable(later, [], now) == "the approvals on record do not cover this exact call"
    # The break glass itself still holds for the run it approved.
    own = later.model_copy(update={"decided_by": ADMIN})
    assert gate.runnable(own, [], now) is None


def test_a_reminder_dms_at_most_ten_people_whoever_is_on_call_first(tmp_path: Path) -> None:
    """A card whose approvers are a 200-person user group does not DM 200 people: the
    reminder goes to whoever is on call first, then people named by id, then group members,
    ten at most."""
    crowd = [f"U0MEMBER{n:03d}" for n in range(200)]
    data = policy_data(tmp_path)
    data["access"]["approvers"] = ["S0EVERYONE", APPROVER2, "oncall:primary"]
    data["oncall"] = {
        "primary": {"people": ["U0ONCALL"], "start": utcnow() - timedelta(hours=1), "every": "7d"}
    }
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy), groups=lambda group: frozenset(crowd))
    waiting = Action(
        id="a1",
        request_id="r1",
        trace_id="t1",
        tool="restart_service",
        args_json='{"service":"web"}',
        policy_version=policy.version,
        risk="high",
        requester=REQUESTER,
        channel=CHANNEL,
        thread_ts="1.0",
        status=ActionStatus.AWAITING_APPROVAL,
        preview="would restart web",
    )
    reminded = gate.to_remind(waiting, [], Now(paused=False, at=utcnow()))
    assert len(reminded) == 10
    assert reminded[:2] == ["U0ONCALL", APPROVER2]
    assert set(reminded[2:]) <= set(crowd)
