"""The Slack Web API side of the `bot.chat.Chat` port, over slack-sdk's WebClient.

Cards arrive as `bot.cards.Card` data and are rendered to Block Kit here
(`handlers/blocks.py`). Web API 429s are retried after `Retry-After`, and 5xx / connection
errors with backoff, by slack-sdk's own retry handlers — except for posts that must appear
once (cards, keyed messages), whose next attempt looks for them first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.cards import Card
from bot.chat import ChannelInfo
from bot.errors import ChatRefused
from handlers.blocks import render_card

log = logging.getLogger(__name__)


def make_web_client(token: str, base_url: str | None = None) -> WebClient:
    """A WebClient that retries rate limits (honouring Retry-After), 5xx and dropped connections."""
    kwargs: dict[str, Any] = {"token": token, "timeout": 15}
    if base_url:
        kwargs["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
    client = WebClient(**kwargs)
    client.retry_handlers.extend(
        [
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=3),
        ]
    )
    if not any(isinstance(h, ConnectionErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


CARD_EVENT = "warden_card"  # message metadata type carried by every card
CREATION_EVENT = "warden_channel_created"  # carried by the note in a channel Warden created
MESSAGE_EVENT = "warden_message"  # carried by a message posted with a key (an outbox row's)


@contextmanager
def refusals() -> Iterator[None]:
    """Slack's refusals as `ChatRefused`: an `ok: false` answer (HTTP 200), or a 429 that
    outlasted the retries — either way nothing was done. A 5xx or a dropped connection stays
    as it is raised: whether the call took effect is unknown."""
    try:
        yield
    except SlackApiError as exc:
        response = exc.response
        status = getattr(response, "status_code", 0)
        code = response.get("error") if isinstance(response.data, dict) else None
        if status not in (200, 429) or not isinstance(code, str):
            raise
        refused = {
            str(item.get("user")): str(item.get("error"))
            for item in response.get("errors") or []
            if isinstance(item, dict) and item.get("user") and item.get("error")
        }
        raise ChatRefused(code, refused=refused) from None


def _text_of(field: Any) -> str:
    """A topic or purpose: Slack gives `{"value": …, "creator": …, "last_set": …}`."""
    if isinstance(field, dict):
        return str(field.get("value") or "")
    return str(field or "")


class SlackChat:
    """`Chat` over slack-sdk's WebClient."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        # Posts with a key, and cards, go through a client that retries only 429s (Slack did
        # nothing): retrying a 5xx or a dropped connection blindly could post twice; the
        # caller looks for the key (`find_message`, `find_card`) before trying again instead.
        self._once = WebClient(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            ssl=client.ssl,
            proxy=client.proxy,
            headers=client.headers,
            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5)],
        )
        self._me: str | None = None
        self._me_lock = threading.Lock()

    def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        if key is None:
            resp = self.client.chat_postMessage(
                channel=channel,
                text=text,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            )
        else:
            resp = self._once.chat_postMessage(
                channel=channel,
                text=text,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": MESSAGE_EVENT, "event_payload": {"key": key}},
            )
        return str(resp["ts"])

    def post_card(self, channel: str, card: Card, thread_ts: str | None = None) -> str:
        text, blocks = render_card(card)
        # Not retried on a 5xx or a dropped connection (only 429s): the post may have reached
        # Slack, and the next attempt looks for the card before posting (`bot/delivery.py`).
        resp = self._once.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
            # The action id travels with the message, so a post that reached Slack but whose
            # ts was never recorded (a crash, a timeout) is found instead of posted twice.
            metadata={"event_type": CARD_EVENT, "event_payload": {"action_id": card.action_id}},
        )
        return str(resp["ts"])

    def find_card(self, channel: str, thread_ts: str | None, action_id: str) -> str | None:
        return self._find(channel, thread_ts, CARD_EVENT, "action_id", action_id)

    def find_message(self, channel: str, thread_ts: str | None, key: str) -> str | None:
        with refusals():
            return self._find(channel, thread_ts, MESSAGE_EVENT, "key", key)

    def _find(
        self, channel: str, thread_ts: str | None, event_type: str, field: str, value: str
    ) -> str | None:
        """The ts of the latest 200 messages' one (in the thread, if given) whose metadata
        is `event_type` with `field` == `value`, or None."""
        if thread_ts:
            resp = self.client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
            )
        else:
            resp = self.client.conversations_history(
                channel=channel, include_all_metadata=True, limit=200
            )
        for message in resp.get("messages") or []:
            meta = message.get("metadata") if isinstance(message, dict) else None
            if (
                isinstance(meta, dict)
                and meta.get("event_type") == event_type
                and isinstance(meta.get("event_payload"), dict)
                and meta["event_payload"].get(field) == value
            ):
                return str(message["ts"])
        return None

    def update_card(self, channel: str, ts: str, card: Card) -> None:
        text, blocks = render_card(card)
        self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def delete(self, channel: str, ts: str) -> None:
        self.client.chat_delete(channel=channel, ts=ts)

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        if not channel:
            # A click from the App Home has no channel: answer in the person's DM with Warden.
            self.client.chat_postMessage(channel=user, text=text)
            return
        self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)

    def react(self, channel: str, ts: str, name: str) -> None:
        try:
            self.client.reactions_add(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":
                raise

    def unreact(self, channel: str, ts: str, name: str) -> None:
        try:
            self.client.reactions_remove(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            if exc.response.get("error") != "no_reaction":
                raise

    def publish_home(self, user: str, view: dict[str, Any]) -> None:
        self.client.views_publish(user_id=user, view=view)

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        self.client.views_open(trigger_id=trigger_id, view=view)

    def user_info(self, user: str) -> dict[str, str]:
        resp = self.client.users_info(user=user)
        u = resp.get("user") or {}
        profile = u.get("profile") or {}
        return {
            "id": str(u.get("id", user)),
            "name": str(u.get("name", "")),
            "real_name": str(u.get("real_name") or profile.get("real_name") or ""),
            "title": str(profile.get("title") or ""),
            "tz": str(u.get("tz") or ""),
        }

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        """Assistant thread status where the workspace supports it; otherwise nothing."""
        try:
            self.client.api_call(
                "assistant.threads.setStatus",
                json={"channel_id": channel, "thread_ts": thread_ts, "status": status},
            )
        except SlackApiError as exc:
            log.debug("assistant status unavailable: %s", exc.response.get("error"))

    # -- channels --------------------------------------------------------------------------

    def _bot_user(self) -> str:
        """Warden's own user id (auth.test, asked once)."""
        with self._me_lock:
            if self._me is None:
                self._me = str(self.client.auth_test().get("user_id") or "")
            return self._me

    def _channel(self, raw: Any) -> ChannelInfo:
        c: dict[str, Any] = raw if isinstance(raw, dict) else {}
        num = c.get("num_members")
        return ChannelInfo(
            id=str(c.get("id") or ""),
            name=str(c.get("name") or ""),
            is_private=bool(c.get("is_private") or c.get("is_group")),
            is_archived=bool(c.get("is_archived")),
            is_general=bool(c.get("is_general")),
            is_member=bool(c.get("is_member")),
            by_warden=bool(c.get("creator")) and c.get("creator") == self._bot_user(),
            created=int(c.get("created") or 0),
            topic=_text_of(c.get("topic")),
            purpose=_text_of(c.get("purpose")),
            num_members=int(num) if isinstance(num, int) else None,
        )

    def create_channel(self, name: str, private: bool = False) -> str:
        with refusals():
            resp = self.client.conversations_create(name=name, is_private=private)
        return str((resp.get("channel") or {}).get("id") or "")

    def find_channel(self, name: str) -> ChannelInfo | None:
        cursor: str | None = None
        with refusals():
            for _page in range(100):  # 100 000 channels at most
                resp = self.client.conversations_list(
                    types="public_channel,private_channel",
                    exclude_archived=False,
                    limit=1000,
                    cursor=cursor,
                )
                for c in resp.get("channels") or []:
                    if isinstance(c, dict) and c.get("name") == name:
                        return self._channel(c)
                cursor = str((resp.get("response_metadata") or {}).get("next_cursor") or "")
                if not cursor:
                    break
        return None

    def usergroup_members(self, group: str) -> list[str]:
        with refusals():
            resp = self.client.usergroups_users_list(usergroup=group)
        return [str(u) for u in resp.get("users") or [] if isinstance(u, str)]

    def channel_info(self, channel: str) -> ChannelInfo:
        with refusals():
            resp = self.client.conversations_info(channel=channel, include_num_members=True)
        return self._channel(resp.get("channel"))

    def post_creation_note(self, channel: str, text: str, action_id: str) -> None:
        with refusals():
            self.client.chat_postMessage(
                channel=channel,
                text=text,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": CREATION_EVENT, "event_payload": {"action_id": action_id}},
            )

    def creating_action(self, channel: str) -> str | None:
        with refusals():
            resp = self.client.conversations_history(
                channel=channel, include_all_metadata=True, limit=200
            )
        for message in resp.get("messages") or []:
            meta = message.get("metadata") if isinstance(message, dict) else None
            if (
                isinstance(meta, dict)
                and meta.get("event_type") == CREATION_EVENT
                and isinstance(meta.get("event_payload"), dict)
                and meta["event_payload"].get("action_id")
            ):
                return str(meta["event_payload"]["action_id"])
        return None

    def invite(self, channel: str, users: Sequence[str]) -> None:
        with refusals():
            self.client.conversations_invite(channel=channel, users=",".join(users))

    def kick(self, channel: str, user: str) -> None:
        with refusals():
            self.client.conversations_kick(channel=channel, user=user)

    def set_topic(self, channel: str, topic: str) -> None:
        with refusals():
            self.client.conversations_setTopic(channel=channel, topic=topic)

    def set_purpose(self, channel: str, purpose: str) -> None:
        with refusals():
            self.client.conversations_setPurpose(channel=channel, purpose=purpose)

    def pin(self, channel: str, ts: str) -> None:
        with refusals():
            self.client.pins_add(channel=channel, timestamp=ts)

    def unpin(self, channel: str, ts: str) -> None:
        with refusals():
            self.client.pins_remove(channel=channel, timestamp=ts)

    def archive(self, channel: str) -> None:
        with refusals():
            self.client.conversations_archive(channel=channel)

    def unarchive(self, channel: str) -> None:
        with refusals():
            self.client.conversations_unarchive(channel=channel)
