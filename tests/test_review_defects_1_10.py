"""A hostile second look at the fixes for the outside review's defects 1-10 (gate and
approvals, exactly once): variations a determined user would try that the tests pinning each
defect (`tests/test_defects_approvals.py`, `tests/test_defects_slack.py`) do not cover.

Every test drives Warden only through signed Slack requests from the local workspace
(`devslack`): mentions, edits of messages, replies with subtypes, card and App Home clicks,
modals and slash commands, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlmodel import select as sql_select

from bot.policy import parse_policy
from storage.models import ActionStatus, Request
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, APPROVER2, APPROVER3, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, buttons, card_text

# -- helpers ---------------------------------------------------------------------------------


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


def card_posts(slack: Slack) -> list[Any]:
    return [c for c in slack.ws.calls("chat.postMessage") if c.params.get("blocks")]


def all_actions(slack: Slack) -> list[Any]:
    return list(slack.store.actions_with_status([s.value for s in ActionStatus], limit=1000))


def all_requests(slack: Slack) -> list[Request]:
    with slack.store.db.read() as session:
        return list(session.exec(sql_select(Request)).all())


def status_of(slack: Slack, action_id: str) -> str:
    row = slack.store.get_action(action_id)
    assert row is not None
    return str(row.status)


def text_input(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def choice(value: str) -> dict[str, Any]:
    return {"value": {"type": "static_select", "selected_option": {"value": value}}}


def submit_edit(slack: Slack, user: str, values: dict[str, Any]) -> None:
    (view,) = slack.ws.open_views(user)
    done = slack.ws.submit_view(user, view["id"], values)
    assert done.status == 200 and "errors" not in (done.body or ""), done.body
    slack.idle()


def edit_on_card(slack: Slack, user: str, action_id: str, values: dict[str, Any]) -> None:
    """`user` clicks Edit on the action's card as it is now and saves the modal."""
    slack.ws.click(user, CHANNEL, slack.card(action_id)["ts"], "warden_edit")
    slack.idle()
    submit_edit(slack, user, values)


def home_values(slack: Slack, user: str, action_id: str) -> list[str]:
    """The values of `action_id` buttons on `user`'s App Home, opened afresh."""
    slack.ws.open_home(user)
    slack.idle()
    home = slack.ws.home(user)
    assert home is not None
    out = []
    for block in home.get("blocks") or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                out.append(str(element.get("value")))
    return out


def slash(slack: Slack, user: str, command: str, text: str = "") -> str:
    delivery = slack.ws.slash(user, CHANNEL, command, text)
    assert delivery.status == 200, delivery.body
    slack.idle()
    return str(delivery.body)


def mention_of(slack: Slack, text: str) -> str:
    return f"<@{slack.ws.bot_user_id}> {text}"


# -- 1. four eyes through Edit: a second editor, and the requester editing back -------------


def test_four_eyes_follows_whoever_wrote_the_current_arguments(slack: Slack) -> None:
    """A second approver's edit makes *them* the arguments' author: they may not approve it
    alone, the first editor now may; the card names the latest editor in "why" and by the
    confidence. When the requester edits back, the approver who edited before reviews the
    requester's own words and may approve them."""
    action, _card = slack.mention_and_card("restart web-frontend", user=STRANGER)
    assert action.risk == "high"
    edit_on_card(slack, APPROVER, action.id, {"arg:service": text_input("payments-db")})
    edit_on_card(slack, APPROVER2, action.id, {"arg:service": text_input("ledger-db")})

    row = slack.store.get_action(action.id)
    assert row is not None and row.edited_by == APPROVER2 and '"ledger-db"' in row.args_json
    text = card_text(slack.card(action.id))
    assert f"Edited by <@{APPROVER2}>" in text, text
    assert f"before the edit by <@{APPROVER2}>" in text, text  # the confidence says so

    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == []
    assert any("four eyes" in t for t in ephemerals_to(slack, APPROVER2))
    assert status_of(slack, action.id) == ActionStatus.AWAITING_APPROVAL

    # The requester (not an approver) puts their own words back.
    edit_on_card(slack, STRANGER, action.id, {"arg:service": text_input("web-frontend")})
    row = slack.store.get_action(action.id)
    assert row is not None and row.edited_by == STRANGER and row.revision == 4
    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart web-frontend {action.id}"]


def test_an_editor_cannot_be_one_of_a_critical_calls_two_approvers(slack: Slack) -> None:
    """Critical: two approvers, and the approver who edited it is neither of them, even if
    they had approved the earlier revision."""
    action, card = slack.mention_and_card("scale api in prod", user=STRANGER)
    assert action.risk == "critical" and "Approve" in buttons(card)
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert len(slack.store.approvals(action.id, action.revision)) == 1

    edit_on_card(slack, APPROVER, action.id, {"arg:service": text_input("ledger"), **_prod()})
    row = slack.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.edited_by == APPROVER
    assert "Approve" in buttons(slack.card(action.id))  # its new dry run is on the card

    slack.ws.click(APPROVER, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == []  # one counted approval (APPROVER2's) of two
    slack.ws.click(APPROVER3, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == ["scale ledger prod"]


def _prod() -> dict[str, Any]:
    return {"arg:env": choice("prod")}


# -- 2. `suggest` set while an approval waits out a pause -----------------------------------


def test_suggest_set_during_a_pause_stops_an_approval_given_while_paused(slack: Slack) -> None:
    """An approval given while paused counts after /resume — unless the tool was set to
    `suggest` meanwhile: /resume must not run it."""
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slash(slack, ADMIN, "/pause", "incident 12")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("recorded" in t for t in ephemerals_to(slack, APPROVER))
    assert "suggest" in slash(slack, ADMIN, "/warden", "autonomy restart_service suggest")

    assert "Resumed" in slash(slack, ADMIN, "/resume")
    slack.idle()
    assert slack.runs() == []
    assert status_of(slack, action.id) == ActionStatus.SUGGESTED
    assert "Approve" not in buttons(slack.card(action.id))


# -- 3. raised to critical: from the App Home, and by a re-check -----------------------------


def test_an_edit_from_app_home_that_raises_to_critical_is_escalated(slack: Slack) -> None:
    slack.ws.dm(REQUESTER, "scale api in staging")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert action.risk == "medium"
    before = len(posts_to(slack, OPS))
    (edit,) = home_values(slack, APPROVER, "warden_edit")
    assert slack.ws.click_home(APPROVER, "warden_edit", edit).status == 200
    slack.idle()
    submit_edit(slack, APPROVER, {"arg:service": text_input("api"), **_prod()})
    row = slack.store.get_action(action.id)
    assert row is not None and row.risk == "critical"
    raised = [t for t in posts_to(slack, OPS)[before:] if "critical" in t.lower()]
    assert len(raised) == 1, posts_to(slack, OPS)
    assert f"<@{APPROVER}>" in raised[0] and "scale" in raised[0], raised


def test_a_recheck_that_raises_a_waiting_call_to_critical_is_escalated(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """The policy now rates restart_service critical: the waiting card is re-checked at the
    next click and becomes critical (two approvers, a dry run). A call that becomes critical
    is escalated to the admin channel, whether an edit or a re-check raised it."""
    action, card = slack.mention_and_card("restart web")
    assert action.risk == "high"
    slack.bot.stop()
    data = policy_data(tmp_path)
    data["runbooks"]["restart_service"]["risk"] = "critical"
    again = slack_factory(policy_=parse_policy(data))
    before = len(posts_to(again, OPS))
    again.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    again.idle()
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.required_approvals == 2
    assert again.runs() == []
    raised = [t for t in posts_to(again, OPS)[before:] if "critical" in t.lower()]
    assert raised, posts_to(again, OPS)


# -- 4. a call made critical by an Edit while paused -----------------------------------------


def test_a_call_edited_to_critical_while_paused_gets_its_dry_run_after_resume(
    slack: Slack,
) -> None:
    """Held, not refused, however it became critical: an Edit made while paused raises a
    medium call to critical; its dry run waits for /resume, then two approvers run it."""
    action, _card = slack.mention_and_card("scale api in staging")
    assert action.risk == "medium"
    assert "Paused" in slash(slack, ADMIN, "/pause", "change freeze")
    edit_on_card(slack, REQUESTER, action.id, {"arg:service": text_input("api"), **_prod()})
    row = slack.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.preview is None
    assert row.status == ActionStatus.AWAITING_APPROVAL, row.status_note
    assert "Approve" not in buttons(slack.card(action.id))

    assert "Resumed" in slash(slack, ADMIN, "/resume")
    slack.idle()
    card = slack.card(action.id)
    assert "would scale api in prod" in card_text(card)
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.ws.click(APPROVER2, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == ["scale api prod"]


# -- 5. approvals given while paused: voided by an edit; two of them for a critical call ----


def test_an_approval_given_while_paused_does_not_survive_an_edit(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slash(slack, ADMIN, "/pause", "incident 13")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("recorded" in t for t in ephemerals_to(slack, APPROVER))
    edit_on_card(slack, REQUESTER, action.id, {"arg:service": text_input("payments-db")})

    assert "Resumed" in slash(slack, ADMIN, "/resume")
    slack.idle()
    assert slack.runs() == []  # the approval was of "web", not of "payments-db"
    assert status_of(slack, action.id) == ActionStatus.AWAITING_APPROVAL
    slack.ws.click(APPROVER, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart payments-db {action.id}"]


def test_two_approvals_given_while_paused_run_a_critical_call_once_after_resume(
    slack: Slack,
) -> None:
    action, card = slack.mention_and_card("scale api in prod")
    assert "Approve" in buttons(card)
    assert "Paused" in slash(slack, ADMIN, "/pause", "incident 14")
    for approver in (APPROVER, APPROVER2):
        slack.ws.click(approver, CHANNEL, card["ts"], "warden_approve")
        slack.idle()
        assert any("recorded" in t for t in ephemerals_to(slack, approver))
    assert slack.runs("scale") == []
    assert len(slack.store.approvals(action.id, action.revision)) == 2

    assert "Resumed" in slash(slack, ADMIN, "/resume")
    slack.idle()
    assert slack.runs("scale") == ["scale api prod"]
    assert status_of(slack, action.id) == ActionStatus.SUCCEEDED


# -- 6. the same approver's double click, racing ---------------------------------------------


def test_the_same_approvers_racing_double_click_is_not_someone_else(slack: Slack) -> None:
    """Two clicks of one approver arrive at once (a double click on a slow network): one
    approval, one run, and neither answer says somebody else decided."""
    action, card = slack.mention_and_card("restart web")
    start = threading.Barrier(2)

    def click(_: int) -> int:
        start.wait(10)
        return slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card).status

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(click, range(2))) == [200, 200]
    slack.idle()
    assert slack.runs() == [f"restart web {action.id}"]
    assert len(slack.store.approvals(action.id, action.revision)) == 1
    told = ephemerals_to(slack, APPROVER)
    assert not any("omeone else" in t or "changed before" in t for t in told), told
    assert any("already approved" in t.lower() or "already started" in t for t in told), told


def test_a_second_click_on_a_critical_call_says_what_it_still_needs(slack: Slack) -> None:
    action, card = slack.mention_and_card("scale api in prod")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    slack.idle()
    told = ephemerals_to(slack, APPROVER)
    assert any("already approved" in t and "another approver" in t for t in told), told
    assert len(slack.store.approvals(action.id, action.revision)) == 1
    assert slack.runs("scale") == []


# -- 7. read-only runbooks in /warden autonomy -----------------------------------------------


def test_a_read_only_runbook_is_listed_as_read_only_and_has_no_stage(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    data = policy_data(tmp_path)
    data["runbooks"]["status_page"] = {
        "description": "Read the public status page",
        "command": ["echo", "all good"],
        "read_only": True,
    }
    slack = slack_factory(policy_=parse_policy(data))
    listing = slash(slack, ADMIN, "/warden", "autonomy")
    (line,) = [ln for ln in listing.splitlines() if "`status_page`" in ln]
    assert "read-only" in line and "approve" not in line, line
    refused = slash(slack, ADMIN, "/warden", "autonomy status_page approve")
    assert "read-only" in refused and "now" not in refused, refused
    assert slash(slack, ADMIN, "/warden", "autonomy") == listing


# -- 8. edits of messages, in every order and shape ------------------------------------------


def test_an_edit_delivered_before_its_original_mention_makes_one_request(slack: Slack) -> None:
    """Slack retries a mention Warden did not answer in time; meanwhile the author edited
    it and the edit's `app_mention` (same ts, new event id) arrived first. One request,
    one card, whatever the order."""
    ws = slack.ws
    full = mention_of(slack, "restart web")
    # The message exists in the channel, but its first delivery has not reached Warden yet.
    with ws._cond:
        msg = ws._store_message(CHANNEL, REQUESTER, full, None, None)
        ws._changed()
    edit = ws.edit_message(REQUESTER, CHANNEL, msg["ts"], mention_of(slack, "restart api"))
    assert edit.status == 200
    slack.idle()
    original = ws._event(
        {
            "type": "app_mention",
            "user": REQUESTER,
            "text": full,
            "ts": msg["ts"],
            "channel": CHANNEL,
            "event_ts": msg["ts"],
            "team": ws.team_id,
        }
    )
    assert original.status == 200
    slack.idle()
    assert len(all_requests(slack)) == 1
    assert len(all_actions(slack)) == 1
    assert len(card_posts(slack)) == 1


def test_editing_a_reply_that_continued_a_thread_does_not_run_it_again(slack: Slack) -> None:
    """A plain reply in a Warden thread is a request; editing it sends only
    `message_changed` (no mention): it must not start another one."""
    action, _card = slack.mention_and_card("restart web")
    delivery = slack.ws.reply(REQUESTER, CHANNEL, action.thread_ts, "flush pages")
    slack.idle()
    reply_ts = str(json.loads(delivery.raw)["event"]["ts"])
    flushes = [a for a in all_actions(slack) if a.tool == "flush_cache"]
    assert len(flushes) == 1
    for n, name in enumerate(("sessions", "pages", "sessions")):
        edit = slack.ws.edit_message(REQUESTER, CHANNEL, reply_ts, f"flush {name}")
        assert edit.status == 200
        assert json.loads(edit.raw)["event"]["subtype"] == "message_changed", n
        slack.idle()
    assert [a.tool for a in all_actions(slack)].count("flush_cache") == 1
    assert len(slack.store.thread_requests(CHANNEL, action.thread_ts)) == 2
    assert len(card_posts(slack)) == 2


def test_editing_a_mention_whose_card_waits_changes_neither_card_nor_arguments(
    slack: Slack,
) -> None:
    """An edit of the message never edits the card's call behind the approvers' backs."""
    first = slack.ws.mention(REQUESTER, CHANNEL, "restart web")
    slack.idle()
    (action,) = all_actions(slack)
    ts = str(json.loads(first.raw)["event"]["ts"])
    slack.ws.edit_message(REQUESTER, CHANNEL, ts, mention_of(slack, "restart payments-db"))
    slack.idle()
    row = slack.store.get_action(action.id)
    assert row is not None and row.revision == action.revision
    assert row.args_json == action.args_json
    slack.ws.click(APPROVER, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart web {action.id}"]
    assert len(card_posts(slack)) == 1


# -- 9. subtypes and bots, combined with mentions and threads --------------------------------


def test_a_subtyped_reply_that_mentions_warden_is_one_request(slack: Slack) -> None:
    """Slack sends `message` (`file_share` or `thread_broadcast`) and `app_mention` for one
    reply that mentions @warden: one request and one card each — not two."""
    action, _card = slack.mention_and_card("restart web")
    text = mention_of(slack, "flush sessions")
    slack.ws.reply(REQUESTER, CHANNEL, action.thread_ts, text, subtype="file_share")
    slack.idle()
    slack.ws.reply(
        REQUESTER, CHANNEL, action.thread_ts, mention_of(slack, "flush pages"), "thread_broadcast"
    )
    slack.idle()
    assert len(slack.store.thread_requests(CHANNEL, action.thread_ts)) == 3
    assert sorted(a.tool for a in all_actions(slack)).count("flush_cache") == 2
    assert len(card_posts(slack)) == 3


def test_another_apps_bot_in_a_warden_thread_is_not_a_requester(slack: Slack) -> None:
    action, _card = slack.mention_and_card("restart web")
    slack.ws.bot_mention("B0OTHERAPP", CHANNEL, "flush pages", thread_ts=action.thread_ts)
    slack.idle()
    assert len(slack.store.thread_requests(CHANNEL, action.thread_ts)) == 1
    assert len(all_actions(slack)) == 1
    assert len(card_posts(slack)) == 1


# -- 10. a DM's card, acted on from the App Home ---------------------------------------------


def test_app_home_shows_what_a_dm_action_will_run(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    """The approver cannot see the DM, so the App Home is all they see before Approve: it
    must say what will run (the card's "What will run"), not only the planner's rationale,
    which a model writes and may get wrong."""
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(
            propose(
                "restart_service",
                {"service": "payments-db"},
                0.95,
                "Restarts the staging web frontend, as asked.",
            )
        )
    )
    slack.ws.dm(REQUESTER, "the staging web frontend is stuck, can you bounce it")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert action.channel == slack.ws.dm_channel(REQUESTER)
    assert len(home_values(slack, APPROVER, "warden_approve")) == 1
    home = slack.ws.home(APPROVER)
    assert home is not None
    assert "payments-db" in card_text(home), card_text(home)


def test_a_critical_dm_action_is_approved_by_two_approvers_from_their_homes(
    slack: Slack,
) -> None:
    slack.ws.dm(REQUESTER, "scale api in prod")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert action.risk == "critical"
    assert "would scale api in prod" in card_text(slack.card(action.id))
    (first,) = home_values(slack, APPROVER, "warden_approve")
    assert slack.ws.click_home(APPROVER, "warden_approve", first).status == 200
    slack.idle()
    assert slack.runs("scale") == []
    assert home_values(slack, APPROVER, "warden_approve") == []  # theirs is given
    (second,) = home_values(slack, APPROVER2, "warden_approve")
    assert slack.ws.click_home(APPROVER2, "warden_approve", second).status == 200
    slack.idle()
    assert slack.runs("scale") == ["scale api prod"]
    assert "Succeeded" in card_text(slack.card(action.id))


def test_a_dm_action_is_rejected_from_app_home(slack: Slack) -> None:
    slack.ws.dm(REQUESTER, "restart web")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    (reject,) = home_values(slack, APPROVER, "warden_reject")
    assert slack.ws.click_home(APPROVER, "warden_reject", reject).status == 200
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    done = slack.ws.submit_view(APPROVER, view["id"], {"reason": text_input("not now")})
    assert done.status == 200
    slack.idle()
    assert status_of(slack, action.id) == ActionStatus.REJECTED
    text = card_text(slack.card(action.id))
    assert "Rejected" in text and "not now" in text
    assert slack.runs() == []
    assert home_values(slack, APPROVER, "warden_reject") == []
