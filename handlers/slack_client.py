"""The Slack Web API side of the `bot.chat.Chat` port, over slack-sdk's WebClient.

Cards arrive as `bot.cards.Card` data and are rendered to Block Kit here
(`handlers/blocks.py`). Web API 429s are retried after `Retry-After`, and 5xx / connection
errors with backoff, by slack-sdk's own retry handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.cards import Card
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


class SlackChat:
    """`Chat` over slack-sdk's WebClient."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, channel: str, text: str, thread_ts: str | None = None) -> str:
        resp = self.client.chat_postMessage(
            channel=channel,
            text=text,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(resp["ts"])

    def post_card(self, channel: str, card: Card, thread_ts: str | None = None) -> str:
        text, blocks = render_card(card)
        resp = self.client.chat_postMessage(
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
                and meta.get("event_type") == CARD_EVENT
                and isinstance(meta.get("event_payload"), dict)
                and meta["event_payload"].get("action_id") == action_id
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
