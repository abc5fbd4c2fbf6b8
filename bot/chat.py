"""The chat surface Warden talks to, as a port. `handlers/slack_client.py` implements it with
slack-sdk (and renders cards to Block Kit); tests implement it in memory. Nothing in `bot/`
knows Slack's Web API or wire format.

Channel operations (create, invite, topic, purpose, pins, archive) answer a refusal with
`bot.errors.ChatRefused` carrying the platform's own error code, and nothing else: any other
exception means the answer never came, so whether the change happened is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.cards import Card


@dataclass(kw_only=True, frozen=True)
class ChannelInfo:
    """A channel as Warden sees it. `topic` and `purpose` are people's words: untrusted."""

    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    is_general: bool = False  # the workspace's #general: it can be neither archived nor left
    is_member: bool = False  # Warden is in it (it must be, to change it)
    by_warden: bool = False  # Warden created it
    created: int = 0  # unix seconds
    topic: str = ""
    purpose: str = ""
    num_members: int | None = None


class Chat(Protocol):
    """What Warden needs from a chat platform."""

    def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        """Post a message; return its ts. With `key`, the message carries it (as message
        metadata), so `find_message` can tell whether a post whose answer was lost reached
        the channel; such a post is not retried blindly by the client either."""

    def find_message(self, channel: str, thread_ts: str | None, key: str) -> str | None:
        """The ts of a message posted with `key` where it would be, or None: asked before
        re-posting a message whose earlier attempt may or may not have reached the platform.
        Raises `ChatRefused` when the platform will not say (no access to the history)."""

    def post_card(self, channel: str, card: Card, thread_ts: str | None = None) -> str:
        """Post an action's card; return its ts."""

    def find_card(self, channel: str, thread_ts: str | None, action_id: str) -> str | None:
        """The ts of a card already posted for `action_id` where it would be, or None: asked
        before re-posting a card whose first post may or may not have reached Slack."""

    def update_card(self, channel: str, ts: str, card: Card) -> None:
        """Replace a posted card with its current state."""

    def delete(self, channel: str, ts: str) -> None:
        """Delete a message Warden posted."""

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        """Show a message to one user only (in a DM when `channel` is empty)."""

    def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction; already-present reactions are fine."""

    def unreact(self, channel: str, ts: str, name: str) -> None:
        """Remove a reaction; a missing reaction is fine."""

    def user_info(self, user: str) -> dict[str, str]:
        """A user's public profile: name, real name, title, time zone."""

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        """Show (or clear, with "") an assistant-style "thinking…" status in a thread."""

    def create_channel(self, name: str, private: bool = False) -> str:
        """Create a channel (Warden becomes its first member); return its id."""

    def find_channel(self, name: str) -> ChannelInfo | None:
        """The channel called `name` that Warden can see, archived ones included, or None."""

    def channel_info(self, channel: str) -> ChannelInfo:
        """What a channel is now: name, privacy, archived, topic, purpose, member count."""

    def post_creation_note(self, channel: str, text: str, action_id: str) -> None:
        """Post `text` in a channel Warden has just created, carrying `action_id` with it, so
        a retry of the same action can tell the channel is its own (`creating_action`)."""

    def creating_action(self, channel: str) -> str | None:
        """The action id a creation note in `channel` carries, or None (looked for among the
        channel's latest 200 messages: asked only of channels just created)."""

    def invite(self, channel: str, users: Sequence[str]) -> None:
        """Add people to a channel. All or none: a refusal's `refused` says who and why."""

    def kick(self, channel: str, user: str) -> None:
        """Remove a person from a channel."""

    def set_topic(self, channel: str, topic: str) -> None:
        """Set a channel's topic (at most 250 characters; "" clears it)."""

    def set_purpose(self, channel: str, purpose: str) -> None:
        """Set a channel's purpose, its description (at most 250 characters)."""

    def pin(self, channel: str, ts: str) -> None:
        """Pin a message to its channel."""

    def unpin(self, channel: str, ts: str) -> None:
        """Unpin a message."""

    def archive(self, channel: str) -> None:
        """Archive a channel: it stays readable, nobody can post in it."""

    def unarchive(self, channel: str) -> None:
        """Bring an archived channel back."""

    def usergroup_members(self, group: str) -> list[str]:
        """The user ids in a user group (`S…`), e.g. an approver group; raises ChatRefused
        when the platform says no (an unknown or disabled group)."""
