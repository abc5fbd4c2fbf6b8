"""A local Slack-compatible workspace for tests and `warden dev`."""

from devslack.workspace import Call, Delivery, Persona, SlackError, Workspace

__all__ = ["Call", "Delivery", "Persona", "SlackError", "Workspace"]
