"""Break glass, through signed Slack requests on both databases: an admin runs a high-risk
action alone with a mandatory reason; the card is flagged, the admin channel told, and it is
listed (`/warden status`, the App Home) until an approver other than that admin acknowledges
it — audited both ways. Refused for non-admins, for critical and medium calls, without a
reason, and while paused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.app import build_registry
from bot.gate import Gate
from bot.gate_types import Now
from bot.policy import parse_policy
from storage.models import Action, ActionStatus, AuditEvent, utcnow
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, buttons, card_text

BREAK, ACK = "warden_break_glass", "warden_ack"
REASON = "checkout is down for everyone; on-call approvers unreachable"


def click(slack: Slack, user: str, ts: str, action: str, **kw: Any) -> None:
    assert slack.ws.click(user, CHANNEL, ts, action, **kw).status == 200
    slack.idle()


def reason_of(text: str) -> dict[str, Any]:
    return {"reason": {"value": {"type": "plain_text_input", "value": text}}}


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


def status_text(slack: Slack, user: str = ADMIN) -> str:
    delivery = slack.ws.slash(user, CHANNEL, "/warden", "status")
    assert delivery.status == 200
    return str(delivery.body)


def break_glass(slack: Slack, action_ts: str, reason: str = REASON, user: str = ADMIN) -> Any:
    click(slack, user, action_ts, BREAK)
    (view,) = slack.ws.open_views(user)
    assert view["callback_id"] == "warden_break_glass"
    delivery = slack.ws.submit_view(user, view["id"], reason_of(reason))
    assert delivery.status == 200
    slack.idle()
    return delivery


def test_an_admin_breaks_the_glass_and_an_approver_acknowledges_it(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart checkout-api")
    assert action.risk == "high" and "Break glass" in buttons(card)
    break_glass(slack, card["ts"])

    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    assert done.break_glass_by == ADMIN and done.decided_by == ADMIN
    assert len(slack.runs()) == 1
    shown = card_text(slack.card(action.id))
    assert f"Break glass* by <@{ADMIN}>: {REASON}" in shown
    assert "Waiting for an approver to acknowledge it" in shown
    assert "Acknowledge break glass" in buttons(slack.card(action.id))
    (told,) = [m["text"] for m in slack.ws.messages(OPS) if "Break glass" in m["text"]]
    assert f"<@{ADMIN}>" in told and "restart_service" in told and REASON in told
    (row,) = audit_rows(slack, "action.break_glass")
    assert row.actor == ADMIN and json.loads(row.data)["reason"] == REASON
    assert "Break glass to review" in status_text(slack) and REASON in status_text(slack)

    # The admin who broke it cannot end its review; an approver can, once.
    click(slack, ADMIN, slack.card(action.id)["ts"], ACK)
    assert slack.store.get_action(action.id).acknowledged_by is None
    assert any("another approver must review it" in t for t in ephemerals_to(slack, ADMIN))
    click(slack, APPROVER, slack.card(action.id)["ts"], ACK)
    reviewed = slack.store.get_action(action.id)
    assert reviewed.acknowledged_by == APPROVER and reviewed.acknowledged_at is not None
    shown = card_text(slack.card(action.id))
    assert f"Acknowledged by <@{APPROVER}> at" in shown
    assert "Acknowledge break glass" not in buttons(slack.card(action.id))
    assert "Break glass to review" not in status_text(slack)
    (ack,) = audit_rows(slack, "action.break_glass_acknowledged")
    assert ack.actor == APPROVER and ack.subject == action.id
    assert len(audit_rows(slack, "action.acknowledge_denied")) == 1
    _count, problems = slack.store.verify_audit()
    assert problems == []


def test_the_app_home_lists_it_for_review_and_acknowledges_it(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart search")
    break_glass(slack, card["ts"])
    assert slack.ws.open_home(ADMIN).status == 200
    slack.idle()
    admin_home = card_text(slack.ws.home(ADMIN) or {})
    assert "Break glass to review" in admin_home and REASON in admin_home
    assert slack.ws.open_home(APPROVER2).status == 200
    slack.idle()
    assert "Break glass to review" in card_text(slack.ws.home(APPROVER2) or {})
    assert slack.ws.click_home(APPROVER2, ACK).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).acknowledged_by == APPROVER2
    assert slack.ws.open_home(ADMIN).status == 200
    slack.idle()
    assert "Break glass to review" not in card_text(slack.ws.home(ADMIN) or {})


def test_an_admin_who_asked_may_break_the_glass_only_with_the_reason_and_the_flag(
    slack: Slack,
) -> None:
    action, card = slack.mention_and_card("restart billing", user=ADMIN)
    # Their own Approve is not enough: this is their request (four eyes) — and they are no
    # approver in this policy anyway.
    click(slack, ADMIN, card["ts"], "warden_approve")
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    # No reason: the modal says so, nothing runs.
    click(slack, ADMIN, card["ts"], BREAK)
    (view,) = slack.ws.open_views(ADMIN)
    assert slack.ws.submit_view(ADMIN, view["id"], reason_of("   ")).status == 200
    slack.idle()
    (still_open,) = slack.ws.open_views(ADMIN)
    assert "reason" in still_open["errors"]
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.runs() == []
    # With a reason it runs, flagged.
    assert slack.ws.submit_view(ADMIN, view["id"], reason_of("payments outage")).status == 200
    slack.idle()
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED and done.break_glass_by == ADMIN
    assert "Break glass* by" in card_text(slack.card(action.id))


def test_break_glass_is_refused_to_non_admins_for_other_tiers_and_while_paused(
    slack: Slack,
) -> None:
    high, high_card = slack.mention_and_card("restart checkout-api")
    # An approver is no admin: told why, no modal.
    click(slack, APPROVER, high_card["ts"], BREAK)
    assert slack.ws.open_views(APPROVER) == []
    assert any("only Warden admins" in t for t in ephemerals_to(slack, APPROVER))

    # Critical and medium cards have no Break glass button; a forged click is refused.
    critical, crit_card = slack.mention_and_card("scale checkout in prod")
    medium, med_card = slack.mention_and_card("flush sessions")
    assert "Break glass" not in buttons(crit_card) and "Break glass" not in buttons(med_card)
    for other in (critical, medium):
        forged = f"{other.id}:{other.revision}"
        click(slack, ADMIN, high_card["ts"], BREAK, value=forged, seen=high_card)
    assert slack.ws.open_views(ADMIN) == []
    told = ephemerals_to(slack, ADMIN)
    assert any("never allowed for critical actions" in t for t in told)
    assert any("break glass is for high-risk actions" in t for t in told)

    # While paused, nothing runs — not even by breaking the glass.
    assert slack.ws.slash(ADMIN, CHANNEL, "/pause", "incident").status == 200
    click(slack, ADMIN, high_card["ts"], BREAK)
    assert slack.ws.open_views(ADMIN) == []
    assert any("Warden is paused" in t for t in ephemerals_to(slack, ADMIN))
    for action in (high, critical, medium):
        assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.runs() == [] and audit_rows(slack, "action.break_glass") == []


def test_a_modal_opened_before_a_pause_runs_nothing_after_it(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart checkout-api")
    click(slack, ADMIN, card["ts"], BREAK)
    (view,) = slack.ws.open_views(ADMIN)
    assert slack.ws.slash(ADMIN, CHANNEL, "/pause", "stop").status == 200
    assert slack.ws.submit_view(ADMIN, view["id"], reason_of(REASON)).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.runs() == []
    assert len(audit_rows(slack, "action.break_glass_denied")) == 1


# -- the gate's rules ----------------------------------------------------------------------


def _action(policy_version: str, **fields: Any) -> Action:
    values: dict[str, Any] = {
        "id": "a1",
        "request_id": "r1",
        "trace_id": "t1",
        "tool": "restart_service",
        "args_json": '{"service":"web"}',
        "policy_version": policy_version,
        "risk": "high",
        "requester": REQUESTER,
        "channel": CHANNEL,
        "thread_ts": "1.1",
        "status": ActionStatus.AWAITING_APPROVAL,
    }
    values.update(fields)
    return Action(**values)


def test_the_gates_break_glass_rule(tmp_path: Path) -> None:
    policy = parse_policy(policy_data(tmp_path))
    gate = Gate(policy, build_registry(policy))
    now = Now(paused=False, at=utcnow())
    high = _action(policy.version)
    assert gate.break_glass(high, ADMIN, "down", now) is None
    assert gate.break_glass(high, APPROVER, "down", now) == "only Warden admins may break the glass"
    assert "needs a reason" in (gate.break_glass(high, ADMIN, " ", now) or "")
    assert "never allowed for critical" in (
        gate.break_glass(_action(policy.version, risk="critical"), ADMIN, "x", now) or ""
    )
    assert "high-risk actions" in (
        gate.break_glass(_action(policy.version, risk="medium"), ADMIN, "x", now) or ""
    )
    assert "paused" in (gate.break_glass(high, ADMIN, "x", Now(paused=True, at=now.at)) or "")
    assert "policy" not in (gate.break_glass(high, ADMIN, "x", now) or "")
    changed = _action("pv-older")
    assert "rules changed" in (gate.break_glass(changed, ADMIN, "x", now) or "")
    # At run time: it holds only for an admin's high-risk call.
    ran = _action(
        policy.version, status=ActionStatus.APPROVED, break_glass_by=ADMIN, decided_by=ADMIN
    )
    assert gate.runnable(ran, [], now) is None
    assert gate.runnable(_action(policy.version, status=ActionStatus.APPROVED), [], now)
    stranger = _action(
        policy.version, status=ActionStatus.APPROVED, break_glass_by=APPROVER, decided_by=APPROVER
    )
    assert "break glass no longer holds" in (gate.runnable(stranger, [], now) or "")
    # Who acknowledges: an approver other than the admin who broke it.
    assert gate.may_acknowledge(ran, APPROVER) is None
    assert gate.may_acknowledge(ran, ADMIN) is not None
    assert gate.may_acknowledge(high, APPROVER) == "nobody broke the glass on this action"


def test_a_break_glass_that_never_ran_says_so_on_the_card(slack: Slack) -> None:
    """The admin broke the glass, but the run was not claimed before the rules changed (here:
    the claim finds the policy changed): the card goes back to its approvers and says the
    break glass did not run, while the review list keeps the flag."""
    action, _card = slack.mention_and_card("restart search")
    # Approved by the break glass, not yet claimed (as if a pause held the claim).
    from sqlalchemy import update

    from storage.models import Action

    with slack.store.db.write() as s:
        s.exec(
            update(Action)
            .where(Action.id == action.id)  # type: ignore[arg-type]
            .values(
                status=ActionStatus.APPROVED,
                decided_by=ADMIN,
                break_glass_by=ADMIN,
                break_glass_reason=REASON,
            )
        )
    approved = slack.store.get_action(action.id)
    slack.bot.warden.lifecycle.execution._not_runnable(
        approved, "the policy changed after approval"
    )
    slack.idle()
    back = slack.store.get_action(action.id)
    assert back.status == ActionStatus.AWAITING_APPROVAL and back.revision == approved.revision + 1
    assert back.status_note is not None and back.status_note.startswith(
        "The break glass did not run: the policy changed after approval."
    )
    assert "break glass did not run" in card_text(slack.card(action.id))
    assert slack.runs() == []
