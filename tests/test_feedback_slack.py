"""Feedback through Slack, on both databases: 👍 / 👎 buttons on cards of actions that have
ended, the "What went wrong?" modal, reactions on cards, who may give it, the tallies on the
card, and the audit trail (which never holds a comment's text)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from sqlmodel import select

from devslack.page import handle_ui
from devslack.workspace import SlackError
from storage.models import ActionStatus, AuditEvent
from storage.outbox import Notice
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER
from tests.slack_fixtures import CHANNEL, Slack, buttons, card_text

UP, DOWN = "warden_vote_up", "warden_vote_down"


def feedback_buttons(msg: dict[str, Any]) -> list[str]:
    """The 👍 / 👎 row of a card (empty if it has none)."""
    out: list[str] = []
    for block in msg.get("blocks") or []:
        if block.get("type") == "actions" and str(block.get("block_id")).startswith("feedback:"):
            out += [e["text"]["text"] for e in block.get("elements", [])]
    return out


def votes(slack: Slack, action_id: str) -> dict[str, tuple[int, str, str]]:
    """{person: (vote, source, comment)} as stored."""
    return {f.person: (f.vote, f.source, f.comment) for f in slack.store.feedback_of(action_id)}


def feedback_audit(slack: Slack) -> list[AuditEvent]:
    with slack.store.db.read() as s:
        rows = s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()  # type: ignore[arg-type]
    return [r for r in rows if r.kind.startswith("feedback.")]


def said_to(slack: Slack, user: str) -> str:
    """Every ephemeral message `user` was shown in the channel, joined."""
    return "\n".join(
        str(m.get("text") or "")
        for m in slack.ws.messages(CHANNEL, include_ephemeral_for=user)
        if m.get("ephemeral_to") == user
    )


def finished(slack: Slack) -> Any:
    """A succeeded, undoable action (requested by REQUESTER, approved by APPROVER) and its
    card's ts."""
    action = slack.approved_run("restart web")
    return action, slack.card(action.id)["ts"]


def click(slack: Slack, user: str, ts: str, action_id: str, value: str | None = None) -> Any:
    delivery = slack.ws.click(user, CHANNEL, ts, action_id, value=value)
    assert delivery.status == 200
    slack.idle()
    return delivery


def react(slack: Slack, user: str, ts: str, name: str, remove: bool = False) -> Any:
    delivery = slack.ws.react(user, CHANNEL, ts, name, remove=remove)
    assert delivery.status == 200
    slack.idle()
    return delivery


def test_a_vote_is_one_row_per_person_and_a_changed_mind_updates_it(slack: Slack) -> None:
    told: list[str] = []
    slack.bot.warden.lifecycle.core.feedback_listeners.append(told.append)
    action, ts = finished(slack)
    card = slack.card(action.id)
    assert feedback_buttons(card) == ["👍", "👎"]
    assert buttons(card) == ["Undo"]  # Undo stays where it was
    assert "Feedback: 👍 0 · 👎 0" in card_text(card)

    click(slack, REQUESTER, ts, UP)
    assert votes(slack, action.id) == {REQUESTER: (1, "button", "")}
    assert "Feedback: 👍 1 · 👎 0" in card_text(slack.card(action.id))
    assert "👍" in said_to(slack, REQUESTER)
    assert slack.ws.open_views(REQUESTER) == []  # 👍 asks nothing more

    click(slack, REQUESTER, ts, DOWN)
    assert votes(slack, action.id) == {REQUESTER: (-1, "button", "")}
    assert "Feedback: 👍 0 · 👎 1" in card_text(slack.card(action.id))
    (view,) = slack.ws.open_views(REQUESTER)
    assert view["callback_id"] == "warden_feedback"
    meta = view["private_metadata"]
    assert meta.startswith(f"{action.id}:") and meta.endswith(f":{CHANNEL}")

    # The same vote again changes nothing and is not audited again.
    click(slack, REQUESTER, ts, DOWN)
    given = [r for r in feedback_audit(slack) if r.kind == "feedback.given"]
    assert [(json.loads(r.data)["vote"], json.loads(r.data)["source"]) for r in given] == [
        (1, "button"),
        (-1, "button"),
    ]
    assert all(r.actor == REQUESTER and r.subject == action.id for r in given)
    assert [(r.before, r.after) for r in given] == [(None, "up"), ("up", "down")]
    assert told == ["restart_service", "restart_service"]  # the governor hears of each stored vote

    # Approvers and admins may give feedback too; each has their own row.
    click(slack, APPROVER, ts, UP)
    click(slack, ADMIN, ts, UP)
    assert votes(slack, action.id) == {
        REQUESTER: (-1, "button", ""),
        APPROVER: (1, "button", ""),
        ADMIN: (1, "button", ""),
    }
    assert "Feedback: 👍 2 · 👎 1" in card_text(slack.card(action.id))
    # Redelivering the card (after a restart, a sweep) shows the same tallies.
    slack.store.notify([Notice(action_id=action.id)])
    slack.bot.warden.lifecycle.delivery.drain()
    assert "Feedback: 👍 2 · 👎 1" in card_text(slack.card(action.id))
    _count, problems = slack.store.verify_audit()
    assert problems == []


def test_the_thumbs_down_modal_keeps_a_redacted_comment_never_audited(slack: Slack) -> None:
    action, ts = finished(slack)
    click(slack, REQUESTER, ts, DOWN)
    (view,) = slack.ws.open_views(REQUESTER)
    written = (
        "It flushed the wrong cache. Use token=hunter2hunter2 next time, "
        "or mail ann.lee@example.com"
    )
    comment = {"value": {"type": "plain_text_input", "value": written}}
    assert slack.ws.submit_view(REQUESTER, view["id"], {"comment": comment}).status == 200
    slack.idle()
    ((vote, source, kept),) = votes(slack, action.id).values()
    assert (vote, source) == (-1, "button")
    assert kept.startswith("It flushed the wrong cache.")
    assert "hunter2" not in kept and "token=[redacted]" in kept
    assert "ann.lee@example.com" not in kept and "<EMAIL#" in kept
    assert "comment is recorded" in said_to(slack, REQUESTER)

    rows = feedback_audit(slack)
    assert [r.kind for r in rows] == ["feedback.given", "feedback.commented"]
    for row in rows:
        assert "flushed the wrong" not in row.data and "hunter2" not in row.data
        assert "ann.lee" not in row.data
    data = json.loads(rows[1].data)
    assert data["comment_sha256"] and data["comment_chars"] == len(kept)

    # An empty submission is fine: the vote stands, nothing else changes.
    click(slack, APPROVER, ts, DOWN)
    (view2,) = slack.ws.open_views(APPROVER)
    empty = {"comment": {"value": {"type": "plain_text_input", "value": ""}}}
    assert slack.ws.submit_view(APPROVER, view2["id"], empty).status == 200
    slack.idle()
    assert votes(slack, action.id)[APPROVER] == (-1, "button", "")
    assert slack.ws.open_views(APPROVER) == []
    assert len(feedback_audit(slack)) == 3


def test_a_strangers_click_is_refused_privately_and_changes_nothing(slack: Slack) -> None:
    action, ts = finished(slack)
    before = slack.card(action.id)
    click(slack, STRANGER, ts, UP)
    click(slack, STRANGER, ts, DOWN)
    assert votes(slack, action.id) == {}
    assert feedback_audit(slack) == []
    assert slack.ws.open_views(STRANGER) == []  # no modal for a refused 👎
    assert "can't give feedback" in said_to(slack, STRANGER)
    assert "can't give feedback" not in said_to(slack, REQUESTER)
    assert slack.card(action.id)["blocks"] == before["blocks"]


def test_a_replayed_click_is_acted_on_once(slack: Slack) -> None:
    action, ts = finished(slack)
    first = click(slack, REQUESTER, ts, UP)
    click(slack, REQUESTER, ts, DOWN)
    assert slack.ws.replay(first).status == 200  # the same signed 👍, sent again
    slack.idle()
    assert votes(slack, action.id) == {REQUESTER: (-1, "button", "")}
    assert len([r for r in feedback_audit(slack) if r.kind == "feedback.given"]) == 2


def test_reactions_on_a_card_count_and_removing_one_takes_back_only_its_vote(
    slack: Slack,
) -> None:
    action, ts = finished(slack)
    added = react(slack, REQUESTER, ts, "+1")
    assert votes(slack, action.id) == {REQUESTER: (1, "reaction", "")}
    assert "Feedback: 👍 1 · 👎 0" in card_text(slack.card(action.id))
    react(slack, REQUESTER, ts, "+1", remove=True)
    assert votes(slack, action.id) == {}
    assert "Feedback: 👍 0 · 👎 0" in card_text(slack.card(action.id))
    # Slack retries the first event (same event id): acted on once, so nothing comes back.
    assert slack.ws.redeliver(added).status == 200
    slack.idle()
    assert votes(slack, action.id) == {}

    # A button vote survives a reaction and its removal.
    click(slack, APPROVER, ts, UP)
    react(slack, APPROVER, ts, "thumbsdown")
    assert votes(slack, action.id)[APPROVER] == (1, "button", "")
    react(slack, APPROVER, ts, "thumbsdown", remove=True)
    assert votes(slack, action.id)[APPROVER] == (1, "button", "")

    # Two reactions: the latest is the vote; removing the other leaves it.
    react(slack, APPROVER2, ts, "-1")
    react(slack, APPROVER2, ts, "+1::skin-tone-3")
    assert votes(slack, action.id)[APPROVER2] == (1, "reaction", "")
    react(slack, APPROVER2, ts, "-1", remove=True)
    assert votes(slack, action.id)[APPROVER2] == (1, "reaction", "")
    assert "Feedback: 👍 2 · 👎 0" in card_text(slack.card(action.id))
    kinds = [(r.kind, json.loads(r.data)["source"]) for r in feedback_audit(slack)]
    assert kinds.count(("feedback.withdrawn", "reaction")) == 1  # only REQUESTER's removal
    _count, problems = slack.store.verify_audit()
    assert problems == []


def test_other_reactions_and_reactions_elsewhere_are_ignored(slack: Slack) -> None:
    action, ts = finished(slack)
    request_ts = next(m["ts"] for m in slack.ws.messages(CHANNEL) if m.get("user") == REQUESTER)
    react(slack, REQUESTER, request_ts, "+1")  # the request itself: not a card
    react(slack, REQUESTER, ts, "tada")  # not feedback
    react(slack, STRANGER, ts, "-1")  # not someone who may give it
    assert votes(slack, action.id) == {}
    assert feedback_audit(slack) == []
    assert said_to(slack, STRANGER) == ""  # reactions are ignored silently
    assert "Feedback: 👍 0 · 👎 0" in card_text(slack.card(action.id))
    # The workspace answers as reactions.add / reactions.remove do.
    with pytest.raises(SlackError, match="already_reacted"):
        slack.ws.react(REQUESTER, CHANNEL, ts, "tada")
    with pytest.raises(SlackError, match="no_reaction"):
        slack.ws.react(APPROVER, CHANNEL, ts, "tada", remove=True)


def test_feedback_is_offered_only_once_an_action_has_ended(slack: Slack) -> None:
    waiting, card = slack.mention_and_card("flush pages")
    assert waiting.status == ActionStatus.AWAITING_APPROVAL
    assert feedback_buttons(card) == [] and "Feedback:" not in card_text(card)
    # A forged vote on a waiting action (a finished card's button, its value swapped).
    done, ts = finished(slack)
    click(slack, REQUESTER, ts, UP, value=f"{waiting.id}:{waiting.revision}")
    assert votes(slack, waiting.id) == {}
    assert "feedback opens once it has ended" in said_to(slack, REQUESTER)
    # A reaction on a waiting card is not feedback either.
    react(slack, REQUESTER, card["ts"], "+1")
    assert votes(slack, waiting.id) == {}
    # Rejected: no feedback row on its card.
    click(slack, REQUESTER, card["ts"], "warden_reject")
    (view,) = slack.ws.open_views(REQUESTER)
    assert slack.ws.submit_view(REQUESTER, view["id"], {}).status == 200
    slack.idle()
    rejected = slack.card(waiting.id)
    assert slack.store.get_action(waiting.id).status == ActionStatus.REJECTED
    assert feedback_buttons(rejected) == [] and "Feedback:" not in card_text(rejected)
    # Undone: still ended, so feedback stays offered.
    click(slack, APPROVER, ts, "warden_undo")
    assert slack.store.get_action(done.id).status == ActionStatus.UNDONE
    assert feedback_buttons(slack.card(done.id)) == ["👍", "👎"]
    assert buttons(slack.card(done.id)) == []


def test_malformed_feedback_payloads_get_a_harmless_ack(slack: Slack) -> None:
    action, ts = finished(slack)
    before = slack.store.outbox_rows()
    for value in ("", "not-an-id", "ZZZ:1", f"{action.id}", f"{action.id}:x"):
        click(slack, REQUESTER, ts, UP, value=value)
    click(slack, REQUESTER, ts, DOWN, value="0123abcd:1")  # well formed, no such action
    assert votes(slack, action.id) == {}
    assert slack.ws.open_views(REQUESTER) == []
    assert "can't find that action" in said_to(slack, REQUESTER)
    # Reaction events with odd fields are acknowledged and ignored.
    for event in (
        {"type": "reaction_added", "user": REQUESTER, "reaction": "+1"},
        {
            "type": "reaction_added",
            "user": "not a user",
            "reaction": "+1",
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        },
        {
            "type": "reaction_added",
            "user": REQUESTER,
            "reaction": "+1",
            "item": {"type": "file", "file": "F123"},
        },
        {
            "type": "reaction_added",
            "user": REQUESTER,
            "reaction": ["+1"],
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        },
    ):
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0TEST",
                "api_app_id": "A0WARDEN",
                "event": {**event, "event_ts": f"{time.time():.6f}"},
                "event_id": "Ev" + secrets.token_hex(6).upper(),
                "event_time": int(time.time()),
            }
        ).encode()
        headers = {**slack.ws.sign(body), "Content-Type": "application/json"}
        assert slack.ws.raw_post(body, headers).status == 200
    slack.idle()
    assert votes(slack, action.id) == {}
    assert feedback_audit(slack) == []
    assert len(slack.store.outbox_rows()) == len(before)  # no card owed an update


def test_the_dev_page_reacts_as_a_person_and_warden_counts_it(slack: Slack) -> None:
    action, ts = finished(slack)
    status, answer = handle_ui(
        slack.ws, "react", {"user": REQUESTER, "channel": CHANNEL, "ts": ts, "name": "+1"}
    )
    slack.idle()
    assert (status, answer) == (200, {"ok": True, "status": 200})
    assert votes(slack, action.id) == {REQUESTER: (1, "reaction", "")}
    shown = slack.ws.message(CHANNEL, ts)
    assert shown is not None
    assert shown["reactions"] == [{"name": "+1", "users": [REQUESTER], "count": 1}]
    again = {"user": REQUESTER, "channel": CHANNEL, "ts": ts, "name": "+1"}
    assert handle_ui(slack.ws, "react", again) == (200, {"ok": False, "error": "already_reacted"})
    status, answer = handle_ui(slack.ws, "react", {**again, "remove": True})
    slack.idle()
    assert answer["ok"] and votes(slack, action.id) == {}
    assert slack.ws.message(CHANNEL, ts)["reactions"] == []  # type: ignore[index]
