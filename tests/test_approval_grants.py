"""An approver's "Approve identical calls for 30 min", through signed Slack requests on both
databases: it approves the card and, for 30 minutes, counts as that approver's approval of a
new call with exactly the same tool, canonical arguments, tier and policy version — if their
own click would count on it (four eyes, still an approver) — shown on each card it covers and
audited. A different argument, another tool, a raised tier, a changed policy, 31 minutes
later, a critical call: not covered."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.app import build_registry
from bot.gate import Gate
from bot.gate_grants import GRANT_SPAN
from bot.gate_types import Now
from bot.policy import parse_policy
from bot.settings import Settings
from handlers.runtime import start
from storage.models import Action, ActionStatus, ApprovalGrant, AuditEvent, utcnow
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, SECRET, TOKEN, Slack, SlackFactory, buttons, card_text

GRANT = "warden_grant"
LABEL = "Approve identical calls for 30 min"


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def click(slack: Slack, user: str, ts: str, action: str = GRANT, **kw: Any) -> None:
    assert slack.ws.click(user, CHANNEL, ts, action, **kw).status == 200
    slack.idle()


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def audit_rows(slack: Slack, kind: str) -> list[AuditEvent]:
    with slack.store.db.read() as s:
        return list(
            s.exec(
                select(AuditEvent).where(col(AuditEvent.kind) == kind).order_by(col(AuditEvent.seq))
            )
        )


def granted(slack: Slack, text: str, approver: str = APPROVER) -> Action:
    """`text` is asked, and `approver` clicks "Approve identical calls for 30 min"."""
    action, card = slack.mention_and_card(text)
    assert LABEL in buttons(card)
    click(slack, approver, card["ts"])
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    return done


def covered(slack: Slack, action: Action) -> bool:
    """Whether a grant approved `action`: it ran, and its card says whose grant."""
    action = slack.store.get_action(action.id)
    shown = card_text(slack.card(action.id))
    by_grant = "30-minute grant (until" in shown
    assert by_grant == (action.status == ActionStatus.SUCCEEDED), (action.status, shown)
    return by_grant


def test_a_grant_covers_exactly_identical_calls_and_nothing_else(slack: Slack) -> None:
    first = granted(slack, "flush sessions")
    assert len(slack.runs("flush")) == 1
    assert any("count your approval until" in t for t in ephemerals_to(slack, APPROVER))
    (given,) = audit_rows(slack, "approval.granted")
    assert given.actor == APPROVER and given.subject == first.id
    assert "sessions" not in given.data  # a keyed hash binds the call, not its values

    # The same call again: approved by the grant, runs.
    again, _ = slack.mention_and_card("flush sessions")
    assert covered(slack, again)
    shown = card_text(slack.card(again.id))
    assert f"Approved by <@{APPROVER}>'s 30-minute grant (until" in shown
    # Another requester's plan recalls facts Riley's runs left (text its requester did not
    # write): tainted, it never runs unattended, so no grant covers it.
    third, _ = slack.mention_and_card("flush sessions", user=APPROVER2)
    assert third.taint and not covered(slack, third)
    assert len(slack.runs("flush")) == 2
    uses = audit_rows(slack, "approval.by_grant")
    assert [u.subject for u in uses] == [again.id]
    assert all(u.actor == APPROVER for u in uses)
    assert json.loads(uses[0].data)["granted_on"] == first.id
    decided = slack.store.get_action(again.id)
    assert decided.decided_by == APPROVER
    (approval,) = slack.store.approvals(again.id, again.revision)
    assert approval.approver == APPROVER and approval.via_grant is not None

    # A different argument, another tool with the same argument: cards that wait.
    other_arg, _ = slack.mention_and_card("flush pages")
    other_tool, _ = slack.mention_and_card("restart sessions")
    for action in (other_arg, other_tool):
        assert not covered(slack, action)
        assert slack.store.approvals(action.id, action.revision) == []
    assert len(slack.runs("flush")) == 2 and slack.runs("restart") == []


def test_four_eyes_still_holds_for_a_granted_high_risk_call(slack: Slack) -> None:
    granted(slack, "restart checkout-api")
    # The grant's giver asks for the same call: four eyes excludes them, so it waits.
    theirs, _ = slack.mention_and_card("restart checkout-api", user=APPROVER)
    assert not covered(slack, theirs)
    assert slack.store.approvals(theirs.id, theirs.revision) == []
    # Someone else asks: covered.
    again, _ = slack.mention_and_card("restart checkout-api")
    assert covered(slack, again)
    assert len(slack.runs()) == 2


def test_a_grant_runs_out_after_30_minutes(slack_factory: SlackFactory) -> None:
    clock = Clock()
    slack = slack_factory(clock=clock)
    lc = slack.bot.warden.lifecycle
    granted(slack, "flush sessions")
    clock.shift = timedelta(minutes=29)
    lc.store.heartbeat(lc.owner, clock())
    inside, _ = slack.mention_and_card("flush sessions")
    assert covered(slack, inside)
    clock.shift = GRANT_SPAN + timedelta(minutes=1)
    lc.store.heartbeat(lc.owner, clock())
    later, _ = slack.mention_and_card("flush sessions")
    assert not covered(slack, later)
    assert len(slack.runs("flush")) == 2


def test_a_changed_policy_voids_the_grant(slack: Slack, database_url: str, tmp_path: Path) -> None:
    granted(slack, "flush sessions")
    data = policy_data(tmp_path)
    data["agent"] = {"max_steps": 5}  # any change makes a new policy version
    changed = parse_policy(data)
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    other = start(settings, host="127.0.0.1", port=0, policy=changed, upgrade=False)
    try:
        slack.ws.bot_url = other.url + "/slack/events"
        assert slack.ws.mention(REQUESTER, CHANNEL, "flush sessions").status == 200
        assert other.warden.workers.wait_idle(30)
        (waiting,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
        assert waiting.policy_version == changed.version
        assert slack.store.approvals(waiting.id, waiting.revision) == []
    finally:
        other.stop()
    assert len(slack.runs("flush")) == 1


def test_no_grant_for_a_critical_call(slack: Slack) -> None:
    critical, card = slack.mention_and_card("scale checkout in prod")
    assert critical.risk == "critical" and LABEL not in buttons(card)
    # A forged click is refused and records nothing.
    medium, med_card = slack.mention_and_card("flush pages")
    forged = f"{critical.id}:{critical.revision}"
    click(slack, APPROVER, med_card["ts"], value=forged, seen=med_card)
    assert any("never given for critical" in t for t in ephemerals_to(slack, APPROVER))
    assert slack.store.get_action(critical.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.store.approvals(critical.id, critical.revision) == []
    assert audit_rows(slack, "approval.granted") == []
    assert slack.store.get_action(medium.id).status == ActionStatus.AWAITING_APPROVAL


def test_only_someone_who_may_approve_can_grant(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    click(slack, REQUESTER, card["ts"])  # four eyes: their own high-risk call
    click(slack, ADMIN, card["ts"])  # not an approver
    assert audit_rows(slack, "approval.granted") == []
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    again, _ = slack.mention_and_card("restart web")
    assert not covered(slack, again)


# -- the gate's rule ---------------------------------------------------------------------------


def test_the_gates_grant_rule(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["access"]["approvers"] = ["S0SRE"]
    policy = parse_policy(data)
    members = {"S0SRE": frozenset({APPROVER, APPROVER2})}
    gate = Gate(policy, build_registry(policy), groups=lambda g: members.get(g, frozenset()))
    at = utcnow()
    now = Now(paused=False, at=at)

    def action(**fields: Any) -> Action:
        values: dict[str, Any] = {
            "id": "a2",
            "request_id": "r2",
            "trace_id": "t2",
            "tool": "flush_cache",
            "args_json": '{"name":"sessions"}',
            "policy_version": policy.version,
            "risk": "medium",
            "requester": REQUESTER,
            "channel": CHANNEL,
            "thread_ts": "1.1",
            "status": ActionStatus.AWAITING_APPROVAL,
        }
        return Action(**{**values, **fields})

    def grant(**fields: Any) -> ApprovalGrant:
        values: dict[str, Any] = {
            "id": 1,
            "approver": APPROVER,
            "action_id": "a1",
            "tool": "flush_cache",
            "args_digest": "d",
            "risk": "medium",
            "policy_version": policy.version,
            "until": at + GRANT_SPAN,
        }
        return ApprovalGrant(**{**values, **fields})

    def counts(a: Action, g: ApprovalGrant, digest: str = "d") -> str | None:
        return gate.grant_counts(a, [], g, digest, now)

    assert counts(action(), grant()) is None
    assert counts(action(), grant(), digest="other") == "it was given for another call"
    assert counts(action(tool="restart_service"), grant()) == "it was given for another call"
    assert (
        counts(action(risk="high"), grant())
        == "it was given at medium risk, and this call is high risk"
    )
    assert (
        counts(action(), grant(policy_version="pv-old"))
        == "Warden's policy changed since it was given"
    )
    assert counts(action(), grant(until=at)) == "it ran out"
    critical = action(risk="critical", preview="would scale")
    assert (
        counts(critical, grant(risk="critical"))
        == "a critical call always needs people to click Approve"
    )
    assert (
        counts(action(taint="a lookup's output"), grant())
        == "this call was planned from text its requester did not write"
    )
    # Four eyes: the giver asked for this high-risk call.
    high = action(risk="high", requester=APPROVER)
    assert (
        counts(high, grant(risk="high"))
        == "they asked for this high-risk call, and four eyes needs someone else"
    )
    edited = action(risk="high", edited_by=APPROVER)
    assert counts(edited, grant(risk="high")) == (
        "they edited this high-risk call, and four eyes needs someone else"
    )
    # The giver left the approvers' group: their grant no longer counts.
    members["S0SRE"] = frozenset({APPROVER2})
    assert counts(action(), grant()) == "they are not an approver of this call here"
