"""Warden's exceptions, one meaning each.

::

    WardenError                      base of everything Warden raises on purpose
    ├── ConfigError                  warden.toml or the environment is wrong; refuse to start
    ├── ToolArgumentsError           arguments failed the tool's pydantic model or a runbook pattern
    ├── PreconditionFailed           a tool's precondition said no; the gate refuses
    ├── UnknownTool                  the planner named a tool that is not registered
    ├── ToolFailed                   the tool ran and failed (non-zero exit, timeout, API error)
    ├── ChatRefused                  the chat platform answered a call with a refusal; `code` is
    │                                its own error code (Slack's "name_taken", "not_in_channel")
    └── PlannerUnavailable           the planner is unreachable (rate limit, overload,
                                     outage); the request is kept and can be retried

A user-facing message says what was wrong and what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping


class WardenError(Exception):
    """Base class for errors Warden raises deliberately."""


class ConfigError(WardenError):
    """The policy file or environment is invalid; Warden refuses to start."""


class ToolArgumentsError(WardenError):
    """A tool call's arguments are invalid for that tool."""


class PreconditionFailed(WardenError):
    """A tool's precondition rejected the call; the reason is shown on the card."""


class UnknownTool(WardenError):
    """The named tool is not registered (fail closed)."""


class ToolFailed(WardenError):
    """The tool ran and did not succeed."""


class ChatRefused(WardenError):
    """The chat platform refused a call and said why: nothing was done.

    `code` is the platform's own error code (Slack's `name_taken`, `already_in_channel`,
    `not_in_channel`…), for the caller to turn into plain words; `refused` holds the items it
    refused one by one, when it says (a user id → that user's code, for an invitation)."""

    def __init__(self, code: str, *, refused: Mapping[str, str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.refused: dict[str, str] = dict(refused or {})


class PlannerUnavailable(WardenError):
    """The planner's backend is unavailable; the request is kept for a retry.

    `usage` is what the attempt consumed before it failed (a `bot.planner.Usage`), so it is
    still recorded against the request.
    """

    def __init__(self, message: str, *, usage: object = None) -> None:
        super().__init__(message)
        self.usage = usage
