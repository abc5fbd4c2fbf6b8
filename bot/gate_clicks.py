"""Click rules that hang on the action alone (its status, its clock, its tool's kind), not on
who clicked: Approve on a card that no longer waits (`not_waiting`), an expired request
(`expired`), the undo window (`undo_closed`) and what Cancel can stop (`not_stoppable`)."""

from __future__ import annotations

from bot.gate_text import words
from bot.gate_types import Now, Ruling, Step
from bot.tools import ToolRegistry
from storage.models import UNDOABLE, Action, ActionStatus


def expired(action: Action, now: Now) -> bool:
    """Whether `action`'s approval request has outlived `approval_ttl` at `now`."""
    return action.expires_at is not None and now.at is not None and action.expires_at <= now.at


def not_waiting(action: Action, mine: bool, now: Now) -> Ruling | None:
    """What an Approve click does to a card that no longer waits or has expired (`mine`:
    the clicker already approved this revision); None: the card waits."""
    if action.status != ActionStatus.AWAITING_APPROVAL:
        if mine:
            return Ruling(
                step=Step.DENY,
                reason=f"you already approved this; it is now {words(action.status)}",
            )
        return Ruling(
            step=Step.DENY,
            reason=f"this action is {words(action.status)}; there is nothing to approve",
        )
    if expired(action, now):
        return Ruling(step=Step.EXPIRE, reason="this approval request has expired")
    return None


def undo_closed(action: Action, now: Now) -> str | None:
    """Why `action` can't be undone any more whoever asks (None: its window is open)."""
    if (
        action.status not in UNDOABLE
        or action.undo_until is None
        or (now.at is not None and action.undo_until <= now.at)
    ):
        return "this can't be undone any more (the undo window closed, or it was undone)"
    return None


def not_stoppable(action: Action, registry: ToolRegistry) -> str | None:
    """Why Cancel can't stop `action` whoever asks: it isn't running, or it isn't a command
    (a runbook, whose process group is signalled). None: it can be stopped."""
    if action.status != ActionStatus.EXECUTING:
        if action.status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED):
            return f"it is {words(action.status)}, not running yet"
        return (
            f"it had already ended ({words(action.status)}) when your click arrived, "
            "so nothing was stopped"
        )
    tool = registry.get(action.tool) if action.tool in registry else None
    if tool is None or tool.source != "runbook":
        return "only commands (runbooks) can be stopped; this call can't be cut off safely"
    return None
