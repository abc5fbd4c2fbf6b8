"""Channel tools: scenarios through signed Slack requests (both databases), the tools' own
idempotency and refusals against the local workspace, and devslack's channel methods
answering exactly as Slack does (through slack-sdk's WebClient)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.channel_tools import channel_tools
from bot.chat import Chat
from bot.errors import ChatRefused, ToolArgumentsError
from bot.eval_cases import EvalChat
from bot.policy import Policy, parse_policy
from bot.tools import Tool, ToolContext, ToolResult
from devslack import Persona, Workspace
from handlers.slack_client import SlackChat
from tests.conftest import APPROVER, APPROVER2, REQUESTER, STRANGER, RecordingChat, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, buttons, card_text

TOKEN = "xoxb-channel-tests"
INCIDENT = "C0INC"  # a channel the policy lets the channel tools reach besides the request's
ELSEWHERE = "C0ELSEWHERE"  # one it does not

ALIASES = {
    "create channel {name} with {members}": {"tool": "create_channel"},
    "create channel {name}": {"tool": "create_channel"},
    "invite {users} to {channel}": {"tool": "invite_to_channel"},
    "set topic of {channel} to {topic}": {"tool": "set_channel_topic"},
    "set purpose of {channel} to {purpose}": {"tool": "set_channel_purpose"},
    "pin {ts} in {channel}": {"tool": "pin_message"},
    "archive {channel}": {"tool": "archive_channel"},
}


@pytest.fixture
def channel_policy(tmp_path: Path) -> Policy:
    return parse_policy(
        policy_data(
            tmp_path,
            aliases=ALIASES,
            tools={
                "post_message": {"autonomy": "auto"},
                "invite_to_channel": {"channels": [INCIDENT]},
                "archive_channel": {"channels": [INCIDENT]},
            },
        )
    )


@pytest.fixture
def chan(slack_factory: SlackFactory, channel_policy: Policy) -> Slack:
    """Warden with the channel aliases; #incident has Warden, the requester and an approver."""
    slack = slack_factory(policy_=channel_policy)
    slack.ws.add_channel("incident", channel_id=INCIDENT, members={"U0WARDEN", REQUESTER, APPROVER})
    slack.ws.add_channel("elsewhere", channel_id=ELSEWHERE)
    return slack


def approve(slack: Slack, action: Any, user: str = APPROVER) -> Any:
    card = slack.card(action.id)
    assert slack.ws.click(user, action.channel, card["ts"], "warden_approve").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


def undo(slack: Slack, action: Any, user: str = APPROVER) -> Any:
    # The card's update may be a retried delivery (a racing worker): wait for its Undo.
    card = slack.ws.wait_until(
        lambda: (
            (c := slack.ws.message(action.channel, action.card_ts)) and "Undo" in buttons(c) and c
        ),
        timeout=30,
    )
    assert slack.ws.click(user, action.channel, card["ts"], "warden_undo").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


def channel_named(ws: Workspace, name: str) -> str | None:
    return next((c for c, n in ws.channels.items() if n == name), None)


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


# -- scenarios through signed Slack requests ---------------------------------------------------


def test_create_a_channel_approve_it_exists_undo_archives_it(chan: Slack) -> None:
    action, card = chan.mention_and_card(f"create channel #Inc Checkout with {APPROVER2}")
    text = card_text(card)
    # The card shows the canonical call and the dry run says the name is free.
    assert action.tool == "create_channel" and action.risk == "medium"
    assert "inc-checkout" in text and "The name is free" in text, text
    assert buttons(card) == ["Approve", "Approve identical calls for 30 min", "Edit", "Reject"]
    assert channel_named(chan.ws, "inc-checkout") is None

    action = approve(chan, action)
    assert action.status == "succeeded", action.status_note
    channel = channel_named(chan.ws, "inc-checkout")
    assert channel is not None
    assert chan.ws.members(channel) == {"U0WARDEN", APPROVER2}
    info = chan.ws.conversation(channel)
    assert info["creator"] == "U0WARDEN" and not info["is_private"] and not info["is_archived"]
    # The note in the new channel says who asked and carries the action id.
    note = next(m for m in chan.ws.messages(channel) if m.get("metadata"))
    assert f"<@{REQUESTER}>" in note["text"]
    assert note["metadata"]["event_payload"] == {"action_id": action.id}
    final = card_text(chan.card(action.id))
    assert "Succeeded" in final and f"<#{channel}>" in final and APPROVER2 in final
    assert buttons(chan.card(action.id)) == ["Undo"]

    action = undo(chan, action)
    assert action.status == "undone", action.result_note
    assert chan.ws.conversation(channel)["is_archived"] is True
    assert "Undone" in card_text(chan.card(action.id))
    _count, problems = chan.store.verify_audit()
    assert problems == []


def test_creating_a_taken_name_fails_plainly_and_changes_nothing(chan: Slack) -> None:
    before = dict(chan.ws.channels)
    action, card = chan.mention_and_card("create channel incident")
    assert "#incident already exists" in card_text(card)  # the dry run says so up front
    action = approve(chan, action)
    assert action.status == "failed"
    assert "#incident already exists" in (action.result_note or "")
    assert "#incident already exists" in card_text(chan.card(action.id))
    assert chan.ws.channels == before
    assert chan.ws.calls("conversations.create")[-1].response["error"] == "name_taken"
    # Nothing lost: the request is recorded, nothing to undo, the trail verifies.
    assert buttons(chan.card(action.id)) == []
    request = chan.store.get_request(action.request_id)
    assert request is not None
    _count, problems = chan.store.verify_audit()
    assert problems == []


def test_inviting_people_already_in_says_so_and_undo_removes_only_the_invited(
    chan: Slack,
) -> None:
    # Everyone named is already in: a clear result, nothing to reverse.
    action, _card = chan.mention_and_card(f"invite {APPROVER} to <#{INCIDENT}|incident>")
    action = approve(chan, action)
    assert action.status == "succeeded"
    assert "already in" in (action.result_note or "") and "nobody was invited" in (
        action.result_note or ""
    )
    assert chan.ws.members(INCIDENT) == {"U0WARDEN", REQUESTER, APPROVER}

    # One already in, one not: the other is invited; Undo removes only them.
    action, _card = chan.mention_and_card(f"invite {APPROVER} {STRANGER} to {INCIDENT}")
    action = approve(chan, action)
    assert action.status == "succeeded", action.result_note
    note = action.result_note or ""
    assert f"invited `{STRANGER}`" in note and f"`{APPROVER}` already in it" in note
    assert STRANGER in chan.ws.members(INCIDENT)
    action = undo(chan, action)
    assert action.status == "undone", action.result_note
    assert chan.ws.members(INCIDENT) == {"U0WARDEN", REQUESTER, APPROVER}

    # Someone Slack does not know: nobody is invited, and the card says who and why.
    action, _card = chan.mention_and_card(f"invite U0NOBODY {APPROVER2} to {INCIDENT}")
    action = approve(chan, action)
    assert action.status == "failed"
    assert "nobody was invited" in (action.result_note or "")
    assert "`U0NOBODY`: not found" in (action.result_note or "")
    assert APPROVER2 not in chan.ws.members(INCIDENT)


def test_archive_is_high_risk_and_needs_four_eyes(chan: Slack) -> None:
    action, card = chan.mention_and_card(f"archive {INCIDENT}")
    assert action.risk == "high"
    text = card_text(card)
    assert "Would archive #incident" in text and "members: 3" in text, text
    # The requester is an approver, but not of their own high-risk request.
    chan.ws.click(REQUESTER, CHANNEL, card["ts"], "warden_approve")
    chan.idle()
    assert any("four eyes" in t for t in ephemerals_to(chan, REQUESTER))
    assert chan.ws.conversation(INCIDENT)["is_archived"] is False
    action = approve(chan, action, APPROVER)
    assert action.status == "succeeded", action.result_note
    assert chan.ws.conversation(INCIDENT)["is_archived"] is True
    # An archived channel takes no posts, as in Slack.
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=chan.ws.api_url, token="xoxb-test-token").chat_postMessage(
            channel=INCIDENT, text="hello?"
        )
    assert refused.value.response["error"] == "is_archived"
    action = undo(chan, action)
    assert action.status == "undone", action.result_note
    assert chan.ws.conversation(INCIDENT)["is_archived"] is False


def test_channel_tools_reach_only_the_request_channel_and_listed_ones(chan: Slack) -> None:
    action, card = chan.mention_and_card(f"archive {ELSEWHERE}")
    assert action.status == "refused"
    assert "archive_channel may reach only the channel it was asked in" in card_text(card)
    assert chan.ws.calls("conversations.archive") == []
    # The admin channel is never reachable, listed or not.
    action, _card = chan.mention_and_card(f"set topic of {OPS} to hello")
    assert action.status == "refused"
    assert chan.ws.calls("conversations.setTopic") == []


def test_topic_set_then_undone_restores_the_old_topic(chan: Slack) -> None:
    client = WebClient(base_url=chan.ws.api_url, token="xoxb-test-token")
    client.conversations_setTopic(channel=CHANNEL, topic="Lunch at noon")
    action, card = chan.mention_and_card(
        f"set topic of {CHANNEL} to SEV2 checkout latency <!channel>"
    )
    assert action.risk == "low"
    assert "now: Lunch at noon" in card_text(card)
    action = approve(chan, action)
    assert action.status == "succeeded", action.result_note
    topic = chan.ws.conversation(CHANNEL)["topic"]["value"]
    assert topic.startswith("SEV2 checkout latency") and "<!channel>" not in topic
    action = undo(chan, action)
    assert action.status == "undone", action.result_note
    assert chan.ws.conversation(CHANNEL)["topic"]["value"] == "Lunch at noon"


def test_undo_leaves_a_topic_someone_changed_since(chan: Slack) -> None:
    action, _card = chan.mention_and_card(f"set purpose of {CHANNEL} to Everything general")
    action = approve(chan, action)
    assert chan.ws.conversation(CHANNEL)["purpose"]["value"] == "Everything general"
    WebClient(base_url=chan.ws.api_url, token="xoxb-test-token").conversations_setPurpose(
        channel=CHANNEL, purpose="Someone's own words"
    )
    action = undo(chan, action)
    assert action.status == "undo_failed"
    assert "changed again since" in (action.result_note or "")
    assert chan.ws.conversation(CHANNEL)["purpose"]["value"] == "Someone's own words"


def test_pin_then_unpin(chan: Slack) -> None:
    chan.ws.say(REQUESTER, CHANNEL, "Runbook: https://wiki.example.com/checkout")
    chan.idle()
    ts = chan.ws.messages(CHANNEL)[-1]["ts"]
    action, _card = chan.mention_and_card(f"pin {ts} in {CHANNEL}")
    action = approve(chan, action)
    assert action.status == "succeeded", action.result_note
    assert chan.ws.message(CHANNEL, ts)["pinned_to"] == [CHANNEL]  # type: ignore[index]
    action = undo(chan, action)
    assert action.status == "undone", action.result_note
    assert "pinned_to" not in (chan.ws.message(CHANNEL, ts) or {})


def test_pinning_a_message_pinned_before_leaves_it_pinned_on_undo(chan: Slack) -> None:
    chan.ws.say(REQUESTER, CHANNEL, "Already important")
    chan.idle()
    ts = chan.ws.messages(CHANNEL)[-1]["ts"]
    WebClient(base_url=chan.ws.api_url, token="xoxb-test-token").pins_add(
        channel=CHANNEL, timestamp=ts
    )
    action, _card = chan.mention_and_card(f"pin {ts} in {CHANNEL}")
    action = approve(chan, action)
    assert action.status == "succeeded" and "already pinned" in (action.result_note or "")
    action = undo(chan, action)
    assert action.status == "undone"
    assert chan.ws.message(CHANNEL, ts)["pinned_to"] == [CHANNEL]  # type: ignore[index]


# -- the tools against the workspace, called as the executor calls them -----------------------


@pytest.fixture
def ws() -> Iterator[Workspace]:
    workspace = Workspace(
        signing_secret="unused",
        bot_url="",
        bot_token=TOKEN,
        bot_user_id="U0WARDEN",
        personas=[Persona(id=p, name=p.lower(), label=p) for p in (REQUESTER, APPROVER)],
        channels={"C0GENERAL": "general"},
    )
    workspace.start()
    yield workspace
    workspace.stop()


def plain_client(ws: Workspace) -> WebClient:
    """A WebClient with no retry handlers: a fault stays a fault."""
    return WebClient(base_url=ws.api_url, token=TOKEN)


def tool(name: str) -> Tool[Any]:
    return next(t for t in channel_tools() if t.name == name)


def run(name: str, raw: dict[str, Any], chat: Chat, action_id: str = "act-1") -> ToolResult:
    t = tool(name)
    ctx = ToolContext(
        action_id=action_id, trace_id="t", requester=REQUESTER, channel="C0GENERAL", chat=chat
    )
    return t.run(t.validate(raw), ctx)


def test_a_second_run_of_the_same_action_finds_its_own_channel(ws: Workspace) -> None:
    chat = SlackChat(plain_client(ws))
    first = run("create_channel", {"name": "inc-db"}, chat, action_id="act-42")
    assert first.ok, first.note
    channel = first.undo_data["channel"]
    again = run("create_channel", {"name": "inc-db"}, chat, action_id="act-42")
    assert again.ok and again.undo_data["channel"] == channel
    assert "found its own" in again.note
    assert len([c for c in ws.channels.values() if c == "inc-db"]) == 1
    # Another action asking for the same name is told it exists.
    other = run("create_channel", {"name": "inc-db"}, chat, action_id="act-43")
    assert not other.ok and not other.unknown
    assert "#inc-db already exists" in other.note


def test_a_channel_warden_made_moments_ago_without_a_note_needs_review(ws: Workspace) -> None:
    # What a create whose answer was lost (and retried by slack-sdk) leaves behind.
    plain_client(ws).conversations_create(name="inc-lost")
    result = run("create_channel", {"name": "inc-lost"}, SlackChat(plain_client(ws)))
    assert not result.ok and result.unknown
    assert "perhaps for this very call" in result.note


def test_a_create_with_no_answer_is_unknown_not_failed(ws: Workspace) -> None:
    ws.fail_next("conversations.create", status=500)
    result = run("create_channel", {"name": "inc-maybe"}, SlackChat(plain_client(ws)))
    assert not result.ok and result.unknown
    assert "unknown" in result.note


def test_channel_info_lookup_hides_private_channels_asked_elsewhere(ws: Workspace) -> None:
    chat = SlackChat(plain_client(ws))
    secret = ws.add_channel("secret", private=True, members={"U0WARDEN", APPROVER})
    shown = run("channel_info", {"channel": "C0GENERAL"}, chat)
    assert shown.ok and '"name": "general"' in shown.output and '"members": 3' in shown.output
    hidden = run("channel_info", {"channel": secret}, chat)
    assert not hidden.ok and "private" in hidden.output
    t = tool("channel_info")
    inside = t.run(
        t.validate({"channel": secret}),
        ToolContext(action_id="a", trace_id="t", requester=APPROVER, channel=secret, chat=chat),
    )
    assert inside.ok and '"private": true' in inside.output


def test_arguments_take_slack_mentions_and_refuse_what_slack_would(ws: Workspace) -> None:
    invite = tool("invite_to_channel")
    args = invite.validate({"channel": "<#C0GENERAL|general>", "users": "<@U0A1>, U0A2 U0A1"})
    assert args.model_dump() == {"channel": "C0GENERAL", "users": ["U0A1", "U0A2"]}
    assert invite.failed_precondition(invite.validate({"channel": "D0DM", "users": ["U0A1"]}))
    create = tool("create_channel")
    assert create.validate({"name": "#Inc Checkout"}).model_dump()["name"] == "inc-checkout"
    for bad in ("inc.checkout", "x" * 81, "", "über"):
        with pytest.raises(ToolArgumentsError, match="lowercase letters"):
            create.validate({"name": bad})
    with pytest.raises(ToolArgumentsError, match="Extra inputs"):
        create.validate({"name": "ok", "owner": "U0A1"})


# -- every Chat keeps the port's shape; the evaluation's never acts ----------------------------


def _methods(cls: type) -> set[str]:
    return {n for n, v in inspect.getmembers(cls) if callable(v) and not n.startswith("_")}


def test_every_chat_implements_the_whole_port() -> None:
    port = {n for n in vars(Chat) if not n.startswith("_")}
    assert {"create_channel", "invite", "archive", "pin", "channel_info"} <= port
    for chat in (SlackChat, EvalChat, RecordingChat):
        assert port <= _methods(chat), (chat.__name__, port - _methods(chat))


def test_the_evaluation_chat_refuses_every_channel_operation() -> None:
    chat = EvalChat()
    for name in ("create_channel", "invite", "set_topic", "archive", "pin", "channel_info"):
        method = getattr(chat, name)
        params = [p for p in inspect.signature(method).parameters.values() if p.default is p.empty]
        with pytest.raises(ChatRefused):
            method(*(["C0X"] * len(params)))
    assert chat.posts == []


# -- devslack's channel methods answer as Slack does -------------------------------------------


def slack_error(call: Any) -> str:
    with pytest.raises(SlackApiError) as exc:
        call()
    return str(exc.value.response["error"])


def test_conversations_create_answers_and_refuses_as_slack(ws: Workspace) -> None:
    client = plain_client(ws)
    created = client.conversations_create(name="inc-42", is_private=True)["channel"]
    assert created["name"] == "inc-42" and created["is_private"] is True
    assert created["creator"] == "U0WARDEN" and created["is_member"] is True
    assert slack_error(lambda: client.conversations_create(name="inc-42")) == "name_taken"
    assert slack_error(lambda: client.conversations_create(name="Inc")) == "invalid_name_specials"
    assert slack_error(lambda: client.conversations_create(name="a b")) == "invalid_name_specials"
    assert slack_error(lambda: client.conversations_create(name="a" * 81)) == (
        "invalid_name_maxlength"
    )
    assert slack_error(lambda: client.conversations_create(name="")) == "invalid_name_required"
    assert slack_error(lambda: client.conversations_create(name="--")) == (
        "invalid_name_punctuation"
    )
    client.conversations_create(name="a" * 80)
    # An archived channel keeps its name.
    client.conversations_archive(channel=created["id"])
    assert slack_error(lambda: client.conversations_create(name="inc-42")) == "name_taken"


def test_conversations_invite_and_kick_as_slack(ws: Workspace) -> None:
    client = plain_client(ws)
    channel = client.conversations_create(name="ops-room")["channel"]["id"]
    client.conversations_invite(channel=channel, users=REQUESTER)
    assert ws.members(channel) == {"U0WARDEN", REQUESTER}
    assert any(m.get("subtype") == "channel_join" for m in ws.messages(channel))
    # One bad id fails them all, and the answer says who.
    with pytest.raises(SlackApiError) as exc:
        client.conversations_invite(channel=channel, users=[APPROVER, REQUESTER, "U0NOBODY"])
    assert exc.value.response["error"] == "already_in_channel"
    assert exc.value.response["errors"] == [
        {"user": REQUESTER, "ok": False, "error": "already_in_channel"},
        {"user": "U0NOBODY", "ok": False, "error": "user_not_found"},
    ]
    assert APPROVER not in ws.members(channel)
    # `force` invites the valid ones anyway.
    forced = client.conversations_invite(channel=channel, users=[APPROVER, "U0NOBODY"], force=True)
    assert forced["errors"][0]["user"] == "U0NOBODY" and APPROVER in ws.members(channel)
    assert slack_error(lambda: client.conversations_invite(channel=channel, users="U0WARDEN")) == (
        "cant_invite_self"
    )
    assert slack_error(lambda: client.conversations_invite(channel=channel, users="")) == "no_user"
    assert slack_error(lambda: client.conversations_invite(channel="C0NONE", users=APPROVER)) == (
        "channel_not_found"
    )
    assert slack_error(lambda: client.conversations_invite(channel="D0DM", users=APPROVER)) == (
        "method_not_supported_for_channel_type"
    )
    not_mine = ws.add_channel("theirs", members={REQUESTER})
    assert slack_error(lambda: client.conversations_invite(channel=not_mine, users=APPROVER)) == (
        "not_in_channel"
    )
    hidden = ws.add_channel("hidden", private=True, members={REQUESTER})
    assert slack_error(lambda: client.conversations_info(channel=hidden)) == "channel_not_found"

    client.conversations_kick(channel=channel, user=APPROVER)
    assert APPROVER not in ws.members(channel)
    assert slack_error(lambda: client.conversations_kick(channel=channel, user=APPROVER)) == (
        "not_in_channel"
    )
    assert slack_error(lambda: client.conversations_kick(channel=channel, user="U0WARDEN")) == (
        "cant_kick_self"
    )
    assert slack_error(lambda: client.conversations_kick(channel="C0GENERAL", user=REQUESTER)) == (
        "cant_kick_from_general"
    )
    client.conversations_archive(channel=channel)
    assert slack_error(lambda: client.conversations_invite(channel=channel, users=APPROVER)) == (
        "is_archived"
    )


def test_topic_purpose_and_info_as_slack(ws: Workspace) -> None:
    client = plain_client(ws)
    answer = client.conversations_setTopic(channel="C0GENERAL", topic="Deploys at 3pm")
    assert answer["channel"]["topic"]["value"] == "Deploys at 3pm"
    client.conversations_setPurpose(channel="C0GENERAL", purpose="All hands")
    info = client.conversations_info(channel="C0GENERAL", include_num_members=True)["channel"]
    assert info["topic"]["value"] == "Deploys at 3pm" and info["purpose"]["value"] == "All hands"
    assert info["num_members"] == 3 and info["is_general"] is True
    assert info["is_archived"] is False and info["is_private"] is False
    assert "num_members" not in client.conversations_info(channel="C0GENERAL")["channel"]
    assert slack_error(
        lambda: client.conversations_setTopic(channel="C0GENERAL", topic="x" * 251)
    ) == ("too_long")
    client.conversations_setTopic(channel="C0GENERAL", topic="x" * 250)
    assert slack_error(lambda: client.conversations_setPurpose(channel="C0NONE", purpose="p")) == (
        "channel_not_found"
    )
    not_mine = ws.add_channel("theirs", members={REQUESTER})
    assert slack_error(lambda: client.conversations_setTopic(channel=not_mine, topic="t")) == (
        "not_in_channel"
    )
    subtypes = [m.get("subtype") for m in ws.messages("C0GENERAL")]
    assert "channel_topic" in subtypes and "channel_purpose" in subtypes


def test_pins_as_slack(ws: Workspace) -> None:
    client = plain_client(ws)
    ts = client.chat_postMessage(channel="C0GENERAL", text="pin me")["ts"]
    client.pins_add(channel="C0GENERAL", timestamp=ts)
    assert slack_error(lambda: client.pins_add(channel="C0GENERAL", timestamp=ts)) == (
        "already_pinned"
    )
    client.pins_remove(channel="C0GENERAL", timestamp=ts)
    assert slack_error(lambda: client.pins_remove(channel="C0GENERAL", timestamp=ts)) == "no_pin"
    assert slack_error(lambda: client.pins_add(channel="C0GENERAL", timestamp="1.000001")) == (
        "message_not_found"
    )
    assert slack_error(lambda: client.pins_add(channel="C0GENERAL", timestamp="soon")) == (
        "bad_timestamp"
    )
    assert slack_error(lambda: client.pins_add(channel="C0NONE", timestamp=ts)) == (
        "channel_not_found"
    )


def test_archive_and_unarchive_as_slack(ws: Workspace) -> None:
    client = plain_client(ws)
    channel = client.conversations_create(name="old-stuff")["channel"]["id"]
    client.conversations_archive(channel=channel)
    assert slack_error(lambda: client.conversations_archive(channel=channel)) == (
        "already_archived"
    )
    assert slack_error(lambda: client.chat_postMessage(channel=channel, text="hi")) == (
        "is_archived"
    )
    assert slack_error(lambda: client.conversations_setTopic(channel=channel, topic="t")) == (
        "is_archived"
    )
    client.conversations_unarchive(channel=channel)
    assert slack_error(lambda: client.conversations_unarchive(channel=channel)) == "not_archived"
    assert slack_error(lambda: client.conversations_archive(channel="C0GENERAL")) == (
        "cant_archive_general"
    )
    client.chat_postMessage(channel=channel, text="back")


def test_conversations_list_pages_and_hides_what_the_bot_cannot_see(ws: Workspace) -> None:
    client = plain_client(ws)
    for n in range(5):
        client.conversations_create(name=f"room-{n}")
    hidden = ws.add_channel("hidden", private=True, members={REQUESTER})
    mine = client.conversations_create(name="mine", is_private=True)["channel"]["id"]
    seen, cursor = [], None
    while True:
        page = client.conversations_list(
            types="public_channel,private_channel", limit=2, cursor=cursor
        )
        seen += [c["id"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert mine in seen and hidden not in seen and len(seen) == 7
    public = client.conversations_list()["channels"]
    assert all(not c["is_private"] for c in public) and len(public) == 6
    # The Chat port finds a channel by name through it, archived ones included.
    chat = SlackChat(client)
    client.conversations_archive(channel=seen[-2])
    found = chat.find_channel(ws.channels[seen[-2]])
    assert found is not None and found.is_archived and found.by_warden
    assert chat.find_channel("nope") is None


def test_refusals_carry_slacks_code_and_who(ws: Workspace) -> None:
    chat = SlackChat(plain_client(ws))
    with pytest.raises(ChatRefused) as exc:
        chat.invite("C0GENERAL", [REQUESTER, "U0NOBODY"])
    assert exc.value.code == "already_in_channel"
    assert exc.value.refused == {REQUESTER: "already_in_channel", "U0NOBODY": "user_not_found"}
    # A fault is not a refusal: whether the call took effect is unknown.
    ws.fail_next("conversations.archive", status=500)
    with pytest.raises(SlackApiError):
        chat.archive("C0GENERAL")


def test_the_page_lists_new_channels_to_those_who_may_see_them(ws: Workspace) -> None:
    from devslack.page import state

    client = plain_client(ws)
    public = client.conversations_create(name="new-public")["channel"]["id"]
    private = client.conversations_create(name="new-private", is_private=True)["channel"]["id"]
    client.conversations_invite(channel=private, users=APPROVER)
    client.conversations_archive(channel=public)
    seen_by = {
        u: {c["id"]: c["name"] for c in state(ws, u)["channels"]} for u in (REQUESTER, APPROVER)
    }
    assert seen_by[REQUESTER][public] == "new-public (archived)"
    assert private not in seen_by[REQUESTER] and seen_by[APPROVER][private] == "new-private"
