"""The chat surface Warden talks to, as a port. `handlers/slack_client.py` implements it with
slack-sdk (and renders cards to Block Kit); tests implement it in memory. Nothing in `bot/`
knows Slack's Web API or wire format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.cards import Card


class Chat(Protocol):
    """What Warden needs from a chat platform."""

    def post(self, channel: str, text: str, thread_ts: str | None = None) -> str:
        """Post a message; return its ts."""

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
