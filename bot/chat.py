"""The chat surface Warden talks to. `Chat` is the port; `SlackChat` is slack-sdk behind it.

Only this module and `handlers/` know Slack's Web API; everything else in `bot/` talks to a
`Chat`. Web API 429s are retried after `Retry-After` and 5xx / connection errors with backoff
by slack-sdk's own retry handlers.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

log = logging.getLogger(__name__)

Blocks = list[dict[str, Any]]


class Chat(Protocol):
    """What Warden needs from a chat platform."""

    def post(
        self, channel: str, text: str, blocks: Blocks | None = None, thread_ts: str | None = None
    ) -> str:
        """Post a message; return its ts."""

    def update(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> None:
        """Replace a message's text and blocks."""

    def delete(self, channel: str, ts: str) -> None:
        """Delete a message Warden posted."""

    def ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: Blocks | None = None,
    ) -> None:
        """Show a message to one user only."""

    def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction; already-present reactions are fine."""

    def unreact(self, channel: str, ts: str, name: str) -> None:
        """Remove a reaction; a missing reaction is fine."""

    def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Publish a user's App Home view."""

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """Open a modal."""

    def user_info(self, user: str) -> dict[str, str]:
        """A user's public profile: name, real name, title, time zone."""

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        """Show (or clear, with "") an assistant-style "thinking…" status in a thread."""


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


class SlackChat:
    """`Chat` over slack-sdk's WebClient."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(
        self, channel: str, text: str, blocks: Blocks | None = None, thread_ts: str | None = None
    ) -> str:
        resp = self.client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(resp["ts"])

    def update(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> None:
        self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])

    def delete(self, channel: str, ts: str) -> None:
        self.client.chat_delete(channel=channel, ts=ts)

    def ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: Blocks | None = None,
    ) -> None:
        self.client.chat_postEphemeral(
            channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks
        )

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
