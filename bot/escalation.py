"""Escalation: what a call owes when it becomes critical — the admin-channel notice, once,
and a dry run of its own.

A call is escalated when it becomes critical, whichever path gave it the revision that is
critical: planning (proposed critical), an Edit, the re-check a click makes after the
policy changed (`bot.approvals`), or an approved run sent back to its approvers because the
rules changed before it started (`bot.outcomes`). The caller stores the notice in the same
transaction as that revision, so it is posted once, after the commit, by the outbox.
"""

from __future__ import annotations

from bot.core import Core
from bot.gate_types import Decision, Verdict
from bot.policy_types import Risk
from storage.models import Action
from storage.outbox import Notice


def critical_notice(core: Core, action: Action, what: str) -> Notice:
    return core.to_admins(
        f":rotating_light: Critical action {what}: *{action.tool}* requested by "
        f"<@{action.requester}> in <#{action.channel}> (trace `{action.trace_id}`). "
        "It needs two approvals."
    )


def raised_to_critical(core: Core, action: Action, decision: Decision, how: str) -> list[Notice]:
    """The notice a new revision of `action` owes under `decision`: one if it waits for
    approval as a critical call and `action` (the revision before) was not critical. A
    revision that was critical already was escalated then, and owes none."""
    if (
        decision.escalate
        and decision.verdict is Verdict.AWAIT
        and Risk(action.risk) is not Risk.CRITICAL
    ):
        return [critical_notice(core, action, how)]
    return []


def needs_new_preview(action: Action, decision: Decision) -> bool:
    """Whether the revision `decision` makes of `action` must have a dry run made for it
    (its `preview` cleared until then). A critical revision always has a dry run that
    succeeded (planning and `Planning.fill_preview` refuse a critical call whose dry run
    failed), so only one that becomes critical owes one: whatever `action` showed before —
    a lower tier's preview, or a failed dry run's message — is not a critical call's
    preview."""
    if not decision.needs_preview:
        return False
    return not action.preview or Risk(action.risk) is not Risk.CRITICAL
