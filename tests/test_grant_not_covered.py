"""When an approver's 30-minute grant for a call does not cover a new card of that same call,
the card says so, in the gate's words ("@avery's 30-minute approval doesn't cover this: …"),
through signed Slack requests on both databases: kept on the action and audited once, still
on the card when it is rendered again by another Warden after a restart, never shown where no
grant was left out, and never naming a grant given in another channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.policy import Policy, parse_policy
from bot.settings import Settings
from handlers.runtime import start
from storage.models import Action, ActionStatus, AuditEvent
from storage.outbox import Notice
from tests.conftest import APPROVER, APPROVER2, policy_data
from tests.slack_fixtures import CHANNEL, OPS, SECRET, TOKEN, Slack, SlackFactory, card_text

GRANT = "warden_grant"
NOT_COVERED = "30-minute approval doesn't cover this"
FOUR_EYES = "they asked for this high-risk call, and four eyes needs someone else"
TAINTED = "this call was planned from text its requester did not write"


@pytest.fixture
def quiet(tmp_path: Path) -> Policy:
    """The tests' policy with memory off: a repeated call recalls no facts another person's
    run left, so it is not tainted and four eyes is what keeps a grant out."""
    return parse_policy({**policy_data(tmp_path), "memory": {"enabled": False}})


def granted(slack: Slack, text: str, approver: str = APPROVER) -> Action:
    """`text` is asked (by the requester), and `approver` clicks "Approve identical calls for
    30 min": it runs."""
    action, card = slack.mention_and_card(text)
    assert slack.ws.click(approver, CHANNEL, card["ts"], GRANT).status == 200
    slack.idle()
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    return done


def not_counted(slack: Slack, store: Any = None) -> list[AuditEvent]:
    with (store or slack.store).db.read() as s:
        return list(
            s.exec(
                select(AuditEvent)
                .where(col(AuditEvent.kind) == "approval.grant_not_counted")
                .order_by(col(AuditEvent.seq))
            )
        )


def shown(slack: Slack, action: Action) -> str:
    return card_text(slack.card(action.id))


def test_the_card_says_why_a_grant_did_not_cover_it(
    slack_factory: SlackFactory, quiet: Policy
) -> None:
    slack = slack_factory(policy_=quiet)
    first = granted(slack, "restart checkout-api")
    # The grant's giver asks for the same high-risk call: four eyes keeps their grant out.
    theirs, _ = slack.mention_and_card("restart checkout-api", user=APPROVER)
    assert slack.store.get_action(theirs.id).status == ActionStatus.AWAITING_APPROVAL
    assert f"<@{APPROVER}>'s {NOT_COVERED}: {FOUR_EYES}" in shown(slack, theirs)

    # Someone else asks: the grant covers it and it runs, with no such line.
    covered, _ = slack.mention_and_card("restart checkout-api")
    assert slack.store.get_action(covered.id).status == ActionStatus.SUCCEEDED
    text = shown(slack, covered)
    assert f"Approved by <@{APPROVER}>'s 30-minute grant (until" in text
    assert NOT_COVERED not in text

    # A call nobody granted: nothing to say.
    other, _ = slack.mention_and_card("restart billing")
    assert slack.store.get_action(other.id).status == ActionStatus.AWAITING_APPROVAL
    assert NOT_COVERED not in shown(slack, other)

    # Audited once, with the gate's reason, on the card it concerns.
    (row,) = not_counted(slack)
    assert row.subject == theirs.id and row.actor == "warden"
    data = json.loads(row.data)
    (entry,) = data["grants"]
    assert entry["approver"] == APPROVER and entry["reason"] == FOUR_EYES
    assert entry["granted_on"] == first.id and entry["on_card"] is True
    assert slack.store.verify_audit()[1] == []

    # Another approver approves: the card no longer waits, and the line goes with it.
    assert slack.ws.click(APPROVER2, CHANNEL, shown_ts(slack, theirs), "warden_approve").status
    slack.idle()
    assert slack.store.get_action(theirs.id).status == ActionStatus.SUCCEEDED
    assert NOT_COVERED not in shown(slack, theirs)
    assert len(not_counted(slack)) == 1  # re-rendering audits nothing more


def shown_ts(slack: Slack, action: Action) -> str:
    return str(slack.card(action.id)["ts"])


def test_a_tainted_call_names_the_grant_it_ignored(slack: Slack) -> None:
    granted(slack, "flush sessions")
    # Another requester's plan recalls facts the first run left (text they did not write).
    tainted, _ = slack.mention_and_card("flush sessions", user=APPROVER2)
    assert tainted.taint
    assert slack.store.get_action(tainted.id).status == ActionStatus.AWAITING_APPROVAL
    assert f"<@{APPROVER}>'s {NOT_COVERED}: {TAINTED}" in shown(slack, tainted)
    assert [r.subject for r in not_counted(slack)] == [tainted.id]


def test_a_grant_given_in_another_channel_is_not_named(
    slack_factory: SlackFactory, quiet: Policy
) -> None:
    slack = slack_factory(policy_=quiet)
    granted(slack, "restart checkout-api")  # given in #general
    assert slack.ws.mention(APPROVER, OPS, "restart checkout-api").status == 200
    slack.idle()
    (theirs,) = [
        a
        for a in slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
        if a.channel == OPS
    ]
    assert slack.store.approvals(theirs.id, theirs.revision) == []  # not covered (four eyes)
    assert NOT_COVERED not in shown(slack, theirs)  # nor said where #ops can read it
    assert slack.store.get_action(theirs.id).grant_note is None
    (row,) = not_counted(slack)  # the audit trail (admins only) still has it
    assert row.subject == theirs.id
    (entry,) = json.loads(row.data)["grants"]
    assert entry["approver"] == APPROVER and entry["on_card"] is False


def test_the_line_survives_a_restart_and_a_redelivered_card(
    slack_factory: SlackFactory, database_url: str, quiet: Policy
) -> None:
    slack = slack_factory(policy_=quiet)
    granted(slack, "restart checkout-api")
    theirs, _ = slack.mention_and_card("restart checkout-api", user=APPROVER)
    line = f"<@{APPROVER}>'s {NOT_COVERED}: {FOUR_EYES}"
    assert line in shown(slack, theirs)
    slack.bot.stop()  # Warden restarts: nothing of the first process is left

    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    other = start(settings, host="127.0.0.1", port=0, policy=quiet, upgrade=False)
    try:
        slack.ws.bot_url = other.url + "/slack/events"
        card_ts = other.warden.store.get_action(theirs.id).card_ts
        before = len(slack.ws.calls("chat.update"))
        other.warden.store.notify([Notice(action_id=theirs.id)])  # the outbox owes the card
        assert other.warden.lifecycle.sweeps.outbox() == 1
        updates = [
            c for c in slack.ws.calls("chat.update")[before:] if c.params.get("ts") == card_ts
        ]
        assert updates, "the card was not delivered again"
        blocks = updates[-1].params.get("blocks")
        rendered = card_text({"blocks": json.loads(blocks) if isinstance(blocks, str) else blocks})
        assert line in rendered
        assert len(not_counted(slack, other.warden.store)) == 1  # the re-render audits nothing
    finally:
        other.stop()


def test_an_edited_card_drops_the_line(slack_factory: SlackFactory, quiet: Policy) -> None:
    slack = slack_factory(policy_=quiet)
    granted(slack, "restart checkout-api")
    theirs, card = slack.mention_and_card("restart checkout-api", user=APPROVER)
    assert NOT_COVERED in shown(slack, theirs)
    # Another approver edits the arguments: a new call, which the grant was never for.
    assert slack.ws.click(APPROVER2, CHANNEL, card["ts"], "warden_edit").status == 200
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER2)
    edited = {"arg:service": {"value": {"type": "plain_text_input", "value": "checkout-web"}}}
    assert slack.ws.submit_view(APPROVER2, view["id"], edited).status == 200
    slack.idle()
    action = slack.store.get_action(theirs.id)
    assert action.revision == 2 and action.status == ActionStatus.AWAITING_APPROVAL
    assert "checkout-web" in shown(slack, theirs)
    assert NOT_COVERED not in shown(slack, theirs)
