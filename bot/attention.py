"""Attention: keeping a waiting card in people's sight without wearing them out.

Approval fatigue is the enemy of a human in the loop: people stop looking, or approve
without reading. Three things here answer it, each decided by the gate:

- **Reminders and escalation.** A card still waiting `gate.remind_after` after it was
  proposed sends each person whose click would count now (`Gate.to_remind`) a DM carrying
  the card's own Approve / Reject; `gate.escalate_after` after, it is posted to the admin
  channel. Every replica sweeps (`bot.jobs.remind_waiting_cards`); a conditional update of
  the action decides which one sends, so each card is reminded once and escalated once.
- **30-minute grants.** An approver's "Approve identical calls for 30 min" (`Approvals.grant`)
  is kept as a row; a new waiting card of the same tool, canonical arguments, tier and policy
  version counts it as that approver's approval when the gate says their click would count
  (`Gate.grant_counts`), recorded as an ordinary approval marked with the grant and audited
  (`approval.by_grant`); if that meets the card's rule, it starts. A grant given in the
  card's channel that does not count is named on the card with the gate's reason, and
  audited once (`approval.grant_not_counted`).
- **Break glass** lives with the other clicks in `bot/approvals.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime

from bot.cards import grant_note
from bot.core import Core
from bot.execution import Execution
from bot.gate_text import span_text
from bot.tools import canonical_json
from storage.models import Action, ActionStatus, ApprovalGrant

log = logging.getLogger(__name__)


def args_digest(core: Core, action: Action) -> str:
    """A keyed hash of the call's real canonical arguments: what a grant binds to. Real
    values (not the request's placeholders, which another request numbers its own way), and
    hashed with Warden's data key, so a grant row keeps no personal data."""
    try:
        real = canonical_json(core.privacy.real_args(action))
    except ValueError:
        real = action.args_json
    return hmac.new(core.data_key, f"{action.tool}\0{real}".encode(), hashlib.sha256).hexdigest()


def cover_by_grants(core: Core, execution: Execution, action: Action) -> bool:
    """A new card waits: approvers' 30-minute grants for this exact call count as their
    approvals where the gate says so (each recorded and audited as `approval.by_grant`), and
    if they meet the card's rule it starts. True if it started.

    A grant for this call that does not count is named on the card with the gate's reason
    (`Gate.grant_counts`), so its giver can tell why the card waits — kept on the action
    (`grant_note`) and audited once (`approval.grant_not_counted`). Only grants given on a
    card in this same channel are named on it: that an identical call was approved elsewhere
    is not this channel's to see (the audit row, which only admins read, says so)."""
    if action.status != ActionStatus.AWAITING_APPROVAL:
        return False
    now = core.now()
    at = now.at or core.clock()
    digest = args_digest(core, action)
    granted_by = ""
    misses: list[tuple[ApprovalGrant, str]] = []
    for grant in core.store.grants_for_call(action.tool, digest, at):
        approvals = core.store.approvals(action.id, action.revision)
        why_not = core.gate.grant_counts(action, approvals, grant, digest, now)
        if why_not:
            log.info("grant %s does not cover action %s: %s", grant.id, action.id, why_not)
            misses.append((grant, why_not))
            continue
        recorded = core.store.record_approval(
            action,
            grant.approver,
            core.audit(
                grant.approver,
                "approval.by_grant",
                action.trace_id,
                revision=action.revision,
                grant=grant.id,
                granted_on=grant.action_id,
                until=grant.until.isoformat(),
            ),
            via_grant=grant.id,
        )
        if recorded is not None:
            granted_by = granted_by or grant.approver
    _note_misses(core, action, misses, at)
    core.kick()
    if not granted_by:
        return False
    approvals = core.store.approvals(action.id, action.revision)
    if core.gate.missing(action, approvals, at) or core.gate.paused_for(
        action.tool, action.channel, action.risk, now
    ):
        return False  # recorded; a click (or the pause's end) does the rest
    return execution.start_approved(action, granted_by)


def _note_misses(
    core: Core, action: Action, misses: list[tuple[ApprovalGrant, str]], at: datetime
) -> None:
    """Audit (once) why grants for this call did not count, and keep on the card those
    given in its own channel."""
    if not misses:
        return
    where = core.store.channels_of(g.action_id for g, _ in misses)
    here = [where.get(g.action_id) == action.channel for g, _ in misses]
    audit_ = core.audit(
        "warden",
        "approval.grant_not_counted",
        action.trace_id,
        revision=action.revision,
        grants=[
            {
                "grant": g.id,
                "approver": g.approver,
                "granted_on": g.action_id,
                "reason": why,
                "on_card": on_card,
            }
            for (g, why), on_card in zip(misses, here, strict=True)
        ],
    )
    shown = [(g.approver, why) for (g, why), on_card in zip(misses, here, strict=True) if on_card]
    if not shown:
        core.store.audit(audit_, action.id)
        return
    core.store.note_grants_not_counted(
        action.id, action.revision, grant_note(action.revision, shown), at, audit_
    )


def remind_waiting(core: Core) -> int:
    """Remind the approvers of cards waiting longer than `gate.remind_after` (once per card
    across replicas); return how many cards this replica reminded."""
    after = core.policy.gate.remind_after
    if after is None:
        return 0
    now = core.now()
    at = now.at or core.clock()
    reminded = 0
    cards = core.store.cards_to_remind(at - after, at)
    approvals = core.store.approvals_for([a.id for a in cards])
    for action in cards:
        if core.gate.paused_for(action.tool, action.channel, action.risk, now):
            continue  # nothing it holds can run: asking now is noise (asked once it ends)
        current = [a for a in approvals[action.id] if a.revision == action.revision]
        people = core.gate.to_remind(action, current, now)
        if not people:
            continue  # nobody's click would count now (e.g. a preview still coming)
        if core.store.remind(
            action.id,
            people,
            at,
            core.audit("warden", "action.reminded", action.trace_id, after=span_text(after)),
        ):
            reminded += 1
    if reminded:
        core.kick()
    return reminded


def escalate_waiting(core: Core) -> int:
    """Post cards waiting longer than `gate.escalate_after` to the admin channel (once per
    card across replicas); return how many this replica escalated."""
    after = core.policy.gate.escalate_after
    if after is None:
        return 0
    now = core.now()
    at = now.at or core.clock()
    escalated = 0
    for action in core.store.cards_to_escalate(at - after, at):
        if core.gate.paused_for(action.tool, action.channel, action.risk, now):
            continue  # an admin paused what it needs: they know it waits
        where = "a DM" if action.channel.startswith("D") else f"<#{action.channel}>"
        reminded = ", ".join(f"<@{u}>" for u in (action.reminded_users or "").split(",") if u)
        notice = core.to_admins(
            f":mega: *{action.tool}* ({action.risk} risk), requested by <@{action.requester}> "
            f"in {where}, has waited {span_text(after)} for an approval"
            + (f" (reminded: {reminded})" if reminded else "")
            + f". Its card: action `{action.id}` in {where}, trace `{action.trace_id}`."
        )
        if core.store.escalate(
            action.id,
            at,
            core.audit("warden", "action.escalated", action.trace_id, after=span_text(after)),
            notice,
        ):
            escalated += 1
    if escalated:
        core.kick()
    return escalated
