"""Defects from the outside review of approvals, autonomy, pause and card text.

Each test drives Warden only through signed Slack requests (mentions, clicks, modals, slash
commands) against the local workspace, and pins the behaviour the rebuilt core must have.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from bot.policy import parse_policy
from storage.models import ActionStatus
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, buttons, card_text

ZWSP = "\u200b"


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def posts_to(slack: Slack, channel: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
        if c.params.get("channel") == channel
    ]


def edit_args(slack: Slack, user: str, action_id: str, values: dict[str, Any]) -> None:
    """`user` clicks Edit on the action's current card and saves the modal with `values`."""
    slack.ws.click(user, CHANNEL, slack.card(action_id)["ts"], "warden_edit")
    slack.idle()
    (view,) = slack.ws.open_views(user)
    done = slack.ws.submit_view(user, view["id"], values)
    assert done.status == 200 and "errors" not in (done.body or ""), done.body
    slack.idle()


def text_input(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def select(value: str) -> dict[str, Any]:
    return {"value": {"type": "static_select", "selected_option": {"value": value}}}


def status_of(slack: Slack, action_id: str) -> str:
    row = slack.store.get_action(action_id)
    assert row is not None
    return str(row.status)


# -- 1. four eyes through Edit ---------------------------------------------------------------


def test_an_editor_cannot_approve_their_own_edit(slack: Slack) -> None:
    """Editing makes the approver a co-author: their own approval of the edited call is not
    the second pair of eyes a high-risk action needs."""
    action, _card = slack.mention_and_card("restart web-frontend", user=STRANGER)
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.risk == "high"

    edit_args(slack, APPROVER, action.id, {"arg:service": text_input("payments-db")})
    card = slack.card(action.id)
    edited = card_text(card)
    assert "payments-db" in edited

    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == []  # the editor alone approved their own call: nothing runs
    assert any("four eyes" in t for t in ephemerals_to(slack, APPROVER))
    assert status_of(slack, action.id) == ActionStatus.AWAITING_APPROVAL

    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart payments-db {action.id}"]
    # The edited card named the editor with a real mention (not a defused one).
    assert re.search(r"(?i:edited by) <@U0APPR1>", edited), edited


# -- 2. `suggest` is enforced on cards already waiting ---------------------------------------


def test_autonomy_suggest_applies_to_a_waiting_card(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    assert action.status == ActionStatus.AWAITING_APPROVAL
    changed = slack.ws.slash(ADMIN, CHANNEL, "/warden", "autonomy restart_service suggest")
    assert changed.status == 200 and "suggest" in changed.body
    slack.idle()

    # The approver's client still shows the card as first posted, with its Approve button.
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    slack.idle()
    assert slack.runs() == []
    assert status_of(slack, action.id) == ActionStatus.SUGGESTED
    assert "Approve" not in buttons(slack.card(action.id))


def test_suggest_in_the_policy_applies_to_a_card_waiting_across_a_restart(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    action, card = slack.mention_and_card("restart web")
    assert action.status == ActionStatus.AWAITING_APPROVAL
    old_card = copy.deepcopy(card)
    slack.bot.stop()

    policy = parse_policy(
        policy_data(
            tmp_path,
            tools={
                "post_message": {"autonomy": "auto"},
                "restart_service": {"autonomy": "suggest"},
            },
        )
    )
    again = slack_factory(policy_=policy)  # the same database, the new policy
    # The click carries the message the approver's client shows: the old card.
    again.ws.click(APPROVER, CHANNEL, old_card["ts"], "warden_approve", seen=old_card)
    again.idle()
    # Whatever the first click did, approving the current revision must not run it either.
    row = again.store.get_action(action.id)
    assert row is not None
    again.ws.click(
        APPROVER,
        CHANNEL,
        old_card["ts"],
        "warden_approve",
        seen=old_card,
        value=f"{action.id}:{row.revision}",
    )
    again.idle()
    assert again.runs() == []
    status = status_of(again, action.id)
    assert status != ActionStatus.SUCCEEDED
    assert status in (ActionStatus.SUGGESTED, ActionStatus.REFUSED), status


# -- 3. an Edit that raises the tier to critical is escalated --------------------------------


def test_an_edit_to_critical_is_escalated_to_the_admin_channel(slack: Slack) -> None:
    action, _card = slack.mention_and_card("scale api in staging")
    assert action.risk == "medium"
    before = len(posts_to(slack, OPS))
    edit_args(
        slack, APPROVER, action.id, {"arg:service": text_input("api"), "arg:env": select("prod")}
    )
    row = slack.store.get_action(action.id)
    assert row is not None and row.risk == "critical"
    escalations = [
        t for t in posts_to(slack, OPS)[before:] if "critical" in t.lower() and "scale" in t
    ]
    assert escalations, posts_to(slack, OPS)


# -- 4. a critical request made while paused is held, not refused ----------------------------


def test_a_critical_request_while_paused_waits_for_resume(slack: Slack) -> None:
    assert "Paused" in slack.ws.slash(ADMIN, CHANNEL, "/pause", "change freeze").body
    action, card = slack.mention_and_card("scale api in prod")
    assert action.risk == "critical"
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.status_note
    assert "Approve" not in buttons(card)  # no preview while paused: nothing to approve yet

    assert "Resumed" in slack.ws.slash(ADMIN, CHANNEL, "/resume").body
    slack.idle()
    card = slack.card(action.id)
    assert "would scale api in prod" in card_text(card)
    assert "Approve" in buttons(card)

    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == []
    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == ["scale api prod"]


# -- 5. approvals given while paused count after /resume -------------------------------------


def test_an_approval_while_paused_is_recorded_and_runs_after_resume(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slack.ws.slash(ADMIN, CHANNEL, "/pause", "incident 9").body
    slack.idle()
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("recorded" in t for t in ephemerals_to(slack, APPROVER))
    assert slack.runs() == []
    kinds = [r.kind for r in slack.store.audit_rows(subject=action.id)]
    assert "approval.given" in kinds, kinds

    assert "Resumed" in slack.ws.slash(ADMIN, CHANNEL, "/resume").body
    slack.idle()
    assert slack.runs() == [f"restart web {action.id}"]  # no second click needed


# -- 6. a second click by the same approver ---------------------------------------------------


def test_a_second_click_by_the_same_approver_says_already_approved(slack: Slack) -> None:
    action, card = slack.mention_and_card("flush sessions")
    assert action.risk == "medium"
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("flush") == ["flush sessions"]

    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    slack.idle()
    told = ephemerals_to(slack, APPROVER)
    assert any("already approved" in t for t in told), told
    assert not any("Someone else" in t for t in told), told
    assert slack.runs("flush") == ["flush sessions"]


# -- 7. /warden autonomy shows read-only tools as such ----------------------------------------


def test_autonomy_listing_shows_read_only_tools(slack: Slack) -> None:
    listing = slack.ws.slash(ADMIN, CHANNEL, "/warden", "autonomy").body
    for tool in ("list_pending_actions", "lookup_user"):
        (line,) = [ln for ln in listing.splitlines() if tool in ln]
        assert "read-only" in line and "approve" not in line, line
    (restart,) = [ln for ln in listing.splitlines() if "restart_service" in ln]
    assert "approve" in restart


# -- 8. Warden's own mentions on cards are real -----------------------------------------------


def test_warden_own_mentions_on_cards_are_real(slack: Slack) -> None:
    action, _card = slack.mention_and_card("restart web")
    edit_args(slack, APPROVER, action.id, {"arg:service": text_input("api")})
    edited = [ln for ln in card_text(slack.card(action.id)).splitlines() if "dited by" in ln]
    assert edited, card_text(slack.card(action.id))
    for line in edited:
        assert "<@U0APPR1>" in line, line
        assert ZWSP not in line and "&lt;" not in line and "‹" not in line, line

    announced, _card = slack.mention_and_card("announce hello")
    assert status_of(slack, announced.id) == ActionStatus.SUCCEEDED
    text = card_text(slack.card(announced.id))
    assert "<#C0GENERAL>" in text, text
    assert f"<#{ZWSP}" not in text and "&lt;#C0GENERAL" not in text, text


# -- 9. per-tool confidence thresholds --------------------------------------------------------


def _user_ts(slack: Slack, text: str) -> str:
    (msg,) = [m for m in slack.ws.messages(CHANNEL) if text in str(m.get("text"))]
    return str(msg["ts"])


def test_a_per_tool_min_confidence_holds_a_model_proposal_for_approval(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(
        policy_data(tmp_path, tools={"post_message": {"autonomy": "auto", "min_confidence": 0.95}})
    )
    slack = slack_factory(policy_=policy, claude=anthropic_stub)

    # An alias is certain (confidence 1.0): above the floor, it runs at once.
    slack.mention_and_card("announce hello")
    assert "hello" in posts_to(slack, CHANNEL)
    assert anthropic_stub.seen == []

    # The model at 0.9 clears the gate's 0.8 but not post_message's own 0.95.
    anthropic_stub.enqueue(
        reply(
            propose(
                "post_message",
                {"channel": CHANNEL, "text": "Lunch is here."},
                0.9,
                "The requester asked to tell everyone lunch arrived.",
            )
        )
    )
    action, card = slack.mention_and_card("let everyone know that lunch has arrived")
    assert action.tool == "post_message" and json.loads(action.args_json)["text"] == (
        "Lunch is here."
    )
    assert action.status == ActionStatus.AWAITING_APPROVAL
    assert "Lunch is here." not in posts_to(slack, CHANNEL)
    assert "Approve" in buttons(card)


def test_a_per_tool_clarify_below_asks_instead_of_proposing(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(
        policy_data(
            tmp_path,
            tools={
                "post_message": {"autonomy": "auto"},
                "restart_service": {"min_confidence": 0.95, "clarify_below": 0.9},
            },
        )
    )
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    # 0.85 clears the gate's clarify_below (0.5) but not restart_service's own 0.9.
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "web"}, 0.85, "web may be stuck."))
    )
    asked = "web seems wedged, could you bounce it"
    assert slack.ws.mention(REQUESTER, CHANNEL, asked).status == 200
    slack.idle()
    assert len(anthropic_stub.seen) >= 1
    assert slack.store.actions_with_status(list(ActionStatus), limit=100) == []
    thread = _user_ts(slack, asked)
    replies = [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
        if c.params.get("thread_ts") == thread and not c.params.get("blocks")
    ]
    assert any("?" in r for r in replies), replies  # a question, not an error
    assert slack.runs() == []
