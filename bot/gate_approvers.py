"""Approver rules: who a policy's approver sources name now (`people`), four eyes
(`excluded`), which approvals are bound to the exact call (`bound`), the change freeze that
also asks for an admin (`frozen`), the rule in words (`rule_text`) and who a waiting card
reminds first (`rank_reminded`). Reading the policy's approver lists stays in `Gate`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from bot.gate_types import GATE
from bot.policy import Policy
from bot.policy_gate import FreezeWindow
from bot.policy_types import ONCALL_SOURCE, SLACK_GROUP_ID, Risk
from storage.models import Action, ActionStatus, Approval

MAX_REMINDED = 10
"""The most people one waiting card's reminder DMs (on call first, then named, then groups)."""


def people(
    policy: Policy, groups: Callable[[str], frozenset[str]], at: datetime, sources: Iterable[str]
) -> set[str]:
    """Approver sources as the people they name at `at`: user groups expanded to their
    members, rotations to whoever is on call."""
    found: set[str] = set()
    for source in sources:
        if SLACK_GROUP_ID.match(source):
            found |= groups(source)
        elif (rotation := ONCALL_SOURCE.match(source)) is not None:
            found.add(policy.oncall[rotation.group(1)].on_call(at))
        else:
            found.add(source)
    return found


def every_approver_source(policy: Policy) -> list[str]:
    """Every approver source the policy names: everyone's, each channel's, each tool's."""
    access = policy.access
    sources = [*access.approvers, *(s for c in access.channels.values() for s in c.approvers)]
    return sources + [s for o in policy.tools.values() for s in o.approvers or ()]


def excluded_for(risk: Risk | str, requester: str | None, edited_by: str | None) -> set[str]:
    """Who may not approve a call of `risk`: for high and critical, the requester and
    whoever wrote its current arguments (four eyes)."""
    if Risk(risk) in (Risk.HIGH, Risk.CRITICAL):
        return {u for u in (requester, edited_by) if u}
    return set()


def excluded(action: Action) -> set[str]:
    """Who four eyes keeps from approving `action` (`excluded_for`)."""
    return excluded_for(action.risk, action.requester, action.edited_by)


def bound(action: Action, approvals: Iterable[Approval], allowed: set[str]) -> set[str]:
    """Approvers in `allowed` whose approval is bound to this exact call (revision,
    arguments, policy version)."""
    return {
        a.approver
        for a in approvals
        if a.revision == action.revision
        and a.args_json == action.args_json
        and a.policy_version == action.policy_version
        and a.approver in allowed
    }


def frozen(policy: Policy, risk: Risk | str, at: datetime | None) -> FreezeWindow | None:
    """The change freeze in force at `at` for calls of `risk`, if any."""
    if at is None:
        return None
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return next(
        (
            f
            for f in policy.freeze
            if Risk(risk).at_least(f.tiers) is Risk(risk) and f.covers(aware)
        ),
        None,
    )


def freeze_text(freeze: FreezeWindow) -> str:
    why = f" ({freeze.reason})" if freeze.reason else ""
    return f"change freeze “{freeze.name}”{why} until {freeze.until_text()}"


def rule_text(action: Action, freeze: FreezeWindow | None) -> str:
    """The approval rule in plain words, for the card (`freeze`: the change freeze in
    force for it, if any)."""
    if action.status == ActionStatus.SUGGESTED:
        return "suggestion only: nobody can approve it from here"
    if action.decided_by == GATE:
        return "ran at once (low risk, autonomy auto)"
    risk = Risk(action.risk)
    editor = " or the arguments' editor" if action.edited_by else ""
    if risk is Risk.CRITICAL:
        rule = f"two approvers, neither the requester{editor}"
    elif risk is Risk.HIGH:
        rule = f"one approver who is not the requester{editor}"
    else:
        rule = "one approver"
    if freeze is not None and action.status == ActionStatus.AWAITING_APPROVAL:
        rule += f", and an admin — {freeze_text(freeze)}"
    return rule


def rank_reminded(eligible: Iterable[str], sources: list[str], on_call: set[str]) -> list[str]:
    """Who of `eligible` a reminder DMs: a card whose approvers are a big group does not DM
    all of them: whoever is on call first, then people named by id (in the approver
    `sources`), then group members, at most MAX_REMINDED."""
    named = {s for s in sources if not SLACK_GROUP_ID.match(s) and not ONCALL_SOURCE.match(s)}
    ranked = sorted(eligible, key=lambda u: (u not in on_call, u not in named, u))
    return ranked[:MAX_REMINDED]
