"""The Bolt app: Slack's listener API stops here.

Every listener runs on the HTTP request thread (`process_before_response=True`), so what
Slack's ack waits for is exactly what the listener does: one or two database statements and
a hand-off to `bot.workers`. Planning, running and posting never happen here. Retries of an
event (same `event_id`) are absorbed by the database, shared by every replica.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse, Respond
from slack_bolt.error import BoltError
from slack_sdk import WebClient

from bot.core import Reply
from bot.intake import Incoming
from bot.lifecycle import Lifecycle
from bot.reports import (
    HELP,
    audit_text,
    autonomy_text,
    home,
    pending_text,
    stats_text,
    status_text,
)
from handlers.blocks import (
    ACKNOWLEDGE,
    APPROVE,
    BREAK_GLASS,
    BREAK_GLASS_VIEW,
    CANCEL,
    EDIT,
    EDIT_VIEW,
    FEEDBACK_VIEW,
    FORGET,
    GRANT,
    REJECT,
    REJECT_VIEW,
    UNDO,
    VOTE_DOWN,
    VOTE_UP,
    break_glass_modal,
    edit_modal,
    feedback_modal,
    home_view,
    parse_card_value,
    parse_metadata,
    parse_reason,
    reject_modal,
)
from handlers.inbox import FROM_INBOX

log = logging.getLogger(__name__)

# What the app subscribes to and why; `slack-manifest.json` must declare exactly these.
EVENT_SUBSCRIPTIONS = {
    "app_mention": ("app_mention",),  # requests in channels
    "message": ("message.channels", "message.groups", "message.im"),  # DMs, thread follow-ups
    "app_home_opened": ("app_home_opened",),  # the approver's App Home
    "reaction_added": ("reaction_added",),  # 👍 / 👎 reactions on a card are feedback
    "reaction_removed": ("reaction_removed",),
}
COMMANDS = ("/pause", "/resume", "/warden")
SCOPES = {
    "app_mentions:read": "receive app_mention",
    "channels:history": "thread follow-ups in public channels; finding a card already posted",
    "groups:history": "thread follow-ups in private channels; finding a card already posted",
    "im:history": "requests by DM; finding a card already posted",
    "chat:write": "cards, answers, ephemeral notes, admin-channel alerts, App Home replies",
    "reactions:write": "the eyes reaction while a request is planned",
    "reactions:read": "👍 / 👎 reactions on a card count as feedback",
    "users:read": "the agent's lookup_user tool (users.info)",
    "assistant:write": "the thinking… status in assistant threads",
    "commands": "/pause, /resume, /warden",
    "channels:manage": "channel tools: create, invite, remove, topic, purpose, archive (public)",
    "groups:write": "channel tools: the same for private channels",
    "channels:read": "channel tools: a channel's details, finding a channel by name (public)",
    "groups:read": "channel tools: the same for private channels",
    "pins:write": "the pin_message tool",
    "usergroups:read": 'user groups named as approvers (access.approvers = ["S…"])',
}


def create_app(lifecycle: Lifecycle, *, signing_secret: str, client: WebClient) -> App:
    """The Bolt app wired to a Lifecycle. Signatures are checked before Bolt sees a request
    (`handlers/http.py`); Bolt checks them again."""
    app = App(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        url_verification_enabled=True,
    )
    lc = lifecycle
    replies = lc.workers.replies

    def tell(channel: str | None, user: str, reply: Reply) -> None:
        if reply.text:
            replies.submit(lc.core.chat.ephemeral, channel or "", user, reply.text)

    def refresh_home(user: str) -> None:
        replies.submit(lambda: client.views_publish(user_id=user, view=home_view(home(lc, user))))

    @app.middleware
    def once_per_trigger(body: dict[str, Any], context: BoltContext, next: Any) -> Any:
        """A click, modal or command is acted on once: Slack's signature lets a request be
        replayed for 5 minutes, so each trigger id is remembered (shared by replicas). A
        command from the inbox was de-duplicated there, by the same trigger id."""
        trigger = body.get("trigger_id") if isinstance(body, dict) else None
        if context.get(FROM_INBOX):
            return next()
        if (
            isinstance(trigger, str)
            and trigger
            and _changes_state(body)
            and not lc.store.first_delivery(f"t:{trigger}")
        ):
            log.info("ignoring a replayed request (trigger seen before)")
            return BoltResponse(status=200, body="")
        return next()

    # -- requests ------------------------------------------------------------------------

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        incoming = _incoming(event, body, mention=True, bot_user=context.bot_user_id or "")
        if incoming is not None:
            lc.intake.receive(incoming)

    @app.event("message")
    def on_message(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        incoming = _incoming(event, body, mention=False, bot_user=context.bot_user_id or "")
        if incoming is not None:
            lc.intake.receive(incoming)

    @app.event("app_home_opened")
    def on_home(event: dict[str, Any]) -> None:
        user = slack_id(event.get("user"))
        if user is not None and event.get("tab", "home") == "home":
            refresh_home(user)

    # -- card and App Home buttons -----------------------------------------------------------

    def clicked(body: dict[str, Any], action: Any) -> tuple[str, int, str, str] | None:
        parsed = parse_card_value(action.get("value") if isinstance(action, dict) else None)
        user = slack_id(dig(body, "user", "id"))
        channel = slack_id(dig(body, "channel", "id") or dig(body, "container", "channel_id"))
        if parsed is None or user is None:
            log.warning("ignoring a click with a malformed value or user")
            return None
        return parsed[0], parsed[1], user, str(channel or "")

    def from_home(body: dict[str, Any]) -> bool:
        return dig(body, "container", "type") == "view"

    @app.action(APPROVE)
    def on_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c:
            tell(c[3], c[2], lc.approvals.approve(c[0], c[1], c[2]))
            if from_home(body):
                refresh_home(c[2])

    @app.action(GRANT)
    def on_grant(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c:
            tell(c[3], c[2], lc.approvals.grant(c[0], c[1], c[2]))
            if from_home(body):
                refresh_home(c[2])

    def modal_if_allowed(
        body: dict[str, Any],
        action: dict[str, Any],
        may: Callable[[str, str], str | None],
        modal: Callable[[str, int, str], dict[str, Any]],
    ) -> None:
        """A click that opens a modal: the gate is asked first (`may`); a refusal is said
        privately and no modal opens."""
        c = clicked(body, action)
        if c is None:
            return
        action_id, revision, user, channel = c
        why_not = may(action_id, user)
        if why_not:
            tell(channel, user, Reply(ok=False, text=why_not))
            return
        trigger = body.get("trigger_id")
        if isinstance(trigger, str):
            view = modal(action_id, revision, channel)
            replies.submit(lambda: client.views_open(trigger_id=trigger, view=view))

    @app.action(BREAK_GLASS)
    def on_break_glass(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        modal_if_allowed(body, action, lc.approvals.may_break_glass, break_glass_modal)

    @app.action(ACKNOWLEDGE)
    def on_acknowledge(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c:
            tell(c[3], c[2], lc.approvals.acknowledge(c[0], c[1], c[2]))
            if from_home(body):
                refresh_home(c[2])

    @app.action(UNDO)
    def on_undo(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c:
            tell(c[3], c[2], lc.approvals.undo(c[0], c[1], c[2]))

    @app.action(CANCEL)
    def on_cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c:
            tell(c[3], c[2], lc.approvals.cancel(c[0], c[1], c[2]))

    @app.action(REJECT)
    def on_reject(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        modal_if_allowed(body, action, lc.approvals.may_reject, reject_modal)

    @app.action(EDIT)
    def on_edit(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        c = clicked(body, action)
        if c is None:
            return
        action_id, revision, user, channel = c
        form = lc.approvals.edit_form(action_id, revision, user, channel)
        if isinstance(form, Reply):
            tell(channel, user, form)
            return
        trigger = body.get("trigger_id")
        if isinstance(trigger, str):
            view = edit_modal(form, channel)
            replies.submit(lambda: client.views_open(trigger_id=trigger, view=view))

    @app.action(FORGET)
    def on_forget(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = slack_id(dig(body, "user", "id"))
        value = action.get("value") if isinstance(action, dict) else None
        if user is None or not isinstance(value, str) or not value.isdigit() or len(value) > 12:
            log.warning("ignoring a Forget click with a malformed value or user")
            return
        tell("", user, Reply(ok=True, text=lc.memory.forget(user, [value])))
        refresh_home(user)

    def on_vote(body: dict[str, Any], action: Any, vote: int) -> None:
        c = clicked(body, action)
        if c is None:
            return
        action_id, revision, user, channel = c
        reply = lc.feedback.give(action_id, user, vote)
        tell(channel, user, reply)
        trigger = body.get("trigger_id")
        if vote < 0 and reply.ok and isinstance(trigger, str):
            view = feedback_modal(action_id, revision, channel)
            replies.submit(lambda: client.views_open(trigger_id=trigger, view=view))

    @app.action(VOTE_UP)
    def on_vote_up(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        on_vote(body, action, 1)

    @app.action(VOTE_DOWN)
    def on_vote_down(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        on_vote(body, action, -1)

    def on_reaction(event: dict[str, Any], body: dict[str, Any], added: bool) -> None:
        item = event.get("item")
        vote = REACTION_VOTES.get(str(event.get("reaction") or "").split("::")[0])
        user = slack_id(event.get("user"))
        if vote is None or user is None or not isinstance(item, dict):
            return  # another emoji, or a malformed event: not feedback
        channel, ts = slack_id(item.get("channel")), item.get("ts")
        if item.get("type") != "message" or channel is None:
            return
        if not (isinstance(ts, str) and _TS.fullmatch(ts)):
            return
        event_id = body.get("event_id")
        if isinstance(event_id, str) and event_id and not lc.store.first_delivery(f"e:{event_id}"):
            return  # Slack retried an event already acted on
        lc.feedback.react(channel, ts, user, vote, added)

    @app.event("reaction_added")
    def on_reaction_added(event: dict[str, Any], body: dict[str, Any]) -> None:
        on_reaction(event, body, True)

    @app.event("reaction_removed")
    def on_reaction_removed(event: dict[str, Any], body: dict[str, Any]) -> None:
        on_reaction(event, body, False)

    # -- modals ----------------------------------------------------------------------------

    @app.view(EDIT_VIEW)
    def on_edit_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = parse_metadata(view.get("private_metadata"))
        user = slack_id(dig(body, "user", "id"))
        if meta is None or user is None:
            ack()
            return
        values = _values(view)
        args = {k.removeprefix("arg:"): v for k, v in values.items() if k.startswith("arg:")}
        result = lc.approvals.edit(meta[0], meta[1], user, args)
        first = next(iter(values), "arg:")
        if isinstance(result, dict):
            errors = {
                (f"arg:{k}" if f"arg:{k}" in values else first): v[:150] for k, v in result.items()
            }
            ack(response_action="errors", errors=errors)
            return
        if not result.ok and result.text:
            ack(response_action="errors", errors={first: result.text[:150]})
            return
        ack()
        tell(meta[2], user, result)
        refresh_home(user)

    @app.view(REJECT_VIEW)
    def on_reject_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ack()
        meta = parse_metadata(view.get("private_metadata"))
        user = slack_id(dig(body, "user", "id"))
        if meta is None or user is None:
            return
        reason = _values(view).get("reason", "")
        tell(meta[2], user, lc.approvals.reject(meta[0], meta[1], user, reason))
        refresh_home(user)

    @app.view(BREAK_GLASS_VIEW)
    def on_break_glass_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = parse_metadata(view.get("private_metadata"))
        user = slack_id(dig(body, "user", "id"))
        if meta is None or user is None:
            ack()
            return
        reason = parse_reason(_values(view).get("reason"))
        if reason is None:
            ack(response_action="errors", errors={"reason": "Say why this can't wait."})
            return
        result = lc.approvals.break_glass(meta[0], meta[1], user, reason)
        if not result.ok:
            ack(response_action="errors", errors={"reason": result.text[:150]})
            return
        ack()
        tell(meta[2], user, result)
        refresh_home(user)

    @app.view(FEEDBACK_VIEW)
    def on_feedback_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ack()
        meta = parse_metadata(view.get("private_metadata"))
        user = slack_id(dig(body, "user", "id"))
        if meta is None or user is None:
            return
        tell(meta[2], user, lc.feedback.comment(meta[0], user, _values(view).get("comment", "")))

    # -- slash commands --------------------------------------------------------------------

    @app.command("/pause")
    def on_pause(ack: Ack, command: dict[str, Any]) -> None:
        user = str(command.get("user_id"))
        ack(text=lc.control.pause(user, unescape(str(command.get("text") or ""))).text)

    @app.command("/resume")
    def on_resume(ack: Ack, command: dict[str, Any]) -> None:
        user = str(command.get("user_id"))
        ack(text=lc.control.resume(user, unescape(str(command.get("text") or ""))).text)

    @app.command("/warden")
    def on_warden(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user = str(command.get("user_id"))
        words = unescape(str(command.get("text") or "")).split()
        sub, rest = (words[0].lower(), words[1:]) if words else ("help", [])
        if sub == "stats":
            # A week of actions can take longer to read than Slack waits for an ack: the
            # answer follows through the command's response_url.
            ack()
            replies.submit(answer_stats, respond, user, rest)
            return
        if sub == "status":
            text = status_text(lc)
        elif sub == "pending":
            text = pending_text(lc, user)
        elif sub == "autonomy":
            text = autonomy_text(lc, user, rest)
        elif sub == "audit":
            text = audit_text(lc, user, rest)
        elif sub == "memory":
            channel = str(command.get("channel_id") or "")
            text = lc.memory.listing(user, channel, " ".join(rest) or None)
        elif sub == "forget":
            text = lc.memory.forget(user, rest)
        else:
            text = HELP
        ack(text=text)

    def answer_stats(respond: Respond, user: str, args: list[str]) -> None:
        try:
            text = stats_text(lc, user, args)
        except Exception:
            log.exception("could not compute /warden stats")
            text = "Sorry, I could not read the stats just now; try again in a moment."
        respond(text=text, response_type="ephemeral")

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("listener failed: %s", error, exc_info=not isinstance(error, BoltError))

    return app


def _changes_state(body: dict[str, Any]) -> bool:
    """Whether acting on this request twice could change anything: every click, modal and
    command except the read-only `/warden status|pending|help|audit` and the autonomy list
    (replaying those only shows the same answer again, so they skip the dedupe write)."""
    if body.get("command") != "/warden":
        return True
    words = str(body.get("text") or "").split()
    if words and words[0].lower() == "forget":
        return True
    return bool(words) and words[0].lower() == "autonomy" and len(words) > 1


def dig(data: Any, *keys: str) -> str | None:
    """A nested string from an untrusted payload, or None if any level is missing or odd."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, str) and data else None


REACTION_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
"""Reactions that are feedback (a skin tone, `+1::skin-tone-2`, is the same vote)."""

_ID = re.compile(r"[A-Z0-9]{2,32}")
_TS = re.compile(r"\d{1,20}\.\d{1,10}")


def slack_id(value: object) -> str | None:
    """A Slack user/channel/team id, or None for anything else (too long, odd characters)."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def unescape(text: str) -> str:
    """Slack escapes &, < and > in message and command text; Warden works on the plain text.

    (`<@U…>`-style control sequences arrive unescaped and stay as they are.)
    """
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _incoming(
    event: dict[str, Any], body: dict[str, Any], *, mention: bool, bot_user: str
) -> Incoming | None:
    """The event as intake sees it, or None if its ids are missing or malformed."""
    user, channel = slack_id(event.get("user")), slack_id(event.get("channel"))
    ts, thread_ts = event.get("ts"), event.get("thread_ts")
    event_id = body.get("event_id")
    subtype = event.get("subtype")
    if (
        user is None
        or channel is None
        or not isinstance(ts, str)
        or not _TS.fullmatch(ts)
        or (thread_ts is not None and not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)))
        or (event_id is not None and not (isinstance(event_id, str) and len(event_id) <= 64))
        or (subtype is not None and not isinstance(subtype, str))
    ):
        if not event.get("bot_id") and subtype is None:
            log.warning("ignoring an event with a missing or malformed user, channel, ts or id")
        return None
    text = unescape(str(event.get("text") or ""))[:8000]
    return Incoming(
        event_id=event_id or None,
        team_id=slack_id(body.get("team_id")) or "",
        channel=channel,
        user=user,
        text=text,
        ts=ts,
        thread_ts=thread_ts,
        mention=mention,
        is_dm=event.get("channel_type") == "im" or channel.startswith("D"),
        mentions_bot=bool(bot_user) and f"<@{bot_user}>" in text,
        from_bot=bool(event.get("bot_id") or event.get("bot_profile")),
        subtype=subtype,
        edited=isinstance(event.get("edited"), dict),
    )


def _values(view: dict[str, Any]) -> dict[str, str]:
    """Flatten a view submission's state into {block_id: value}."""
    out: dict[str, str] = {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        return out
    for block_id, actions in values.items():
        if not isinstance(actions, dict):
            continue
        for element in actions.values():
            if not isinstance(element, dict):
                continue
            if element.get("type") == "static_select":
                value = dig(element, "selected_option", "value")
            else:
                value = element.get("value")
            out[str(block_id)] = str(value or "")
    return out
