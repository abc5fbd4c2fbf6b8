"""Feedback: 👍 / 👎 on an action once it has ended, from its card's buttons or reactions.

Who may give it is the gate's rule (`Gate.may_give_feedback`: the requester, the tool's
approvers, anyone who approved it, admins), asked again on every click and reaction. Each
person has one vote per action; a changed mind updates it (`Store.give_feedback`), audited
and the card's tallies refreshed through the outbox in the same transaction. A 👎 may carry
a comment ("What went wrong?"): secrets are redacted and personal data replaced by keyed
hashes (`Privacy.lasting`: a comment outlives its request), bounded, kept on the person's row
and never in the audit trail. Every stored change tells `Core.feedback_listeners` (the
autonomy governor re-checks the tool's rates). Called on Slack's ack path: database only.
"""

from __future__ import annotations

from bot.core import Core, Reply
from bot.redact import redact
from storage.models import Action

MAX_COMMENT = 1000
"""The longest comment kept (the modal allows this much, and a forged submission no more)."""

UP, DOWN = 1, -1
SHOWN = {UP: "👍", DOWN: "👎"}


class Feedback:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _allowed(self, action_id: str, user: str) -> Action | str:
        """The action, if `user` may give feedback on it now; else why not."""
        core = self.core
        action = core.store.get_action(action_id)
        if action is None:
            return "I can't find that action any more."
        approved = {a.approver for a in core.store.approvals_for([action.id])[action.id]}
        why_not = core.gate.may_give_feedback(action, user, approved)
        if why_not:
            return f"You can't give feedback on this: {why_not}."
        return action

    def give(self, action_id: str, user: str, vote: int) -> Reply:
        """A 👍 / 👎 click on a card: the person's vote, stored or changed."""
        if vote not in SHOWN:
            return Reply(ok=False)
        core = self.core
        found = self._allowed(action_id, user)
        if isinstance(found, str):
            return Reply(ok=False, text=found)
        action = found
        changed = core.store.give_feedback(
            action,
            user,
            vote,
            "button",
            core.audit(user, "feedback.given", action.trace_id, vote=vote, source="button"),
        )
        if not changed:
            return Reply(ok=True, text=f"You already gave this a {SHOWN[vote]}.")
        core.kick()
        core.record_feedback(action.tool)
        if vote == DOWN:  # the "What went wrong?" modal says the rest
            return Reply(ok=True)
        return Reply(ok=True, text=f"Thanks: your {SHOWN[vote]} on {action.tool} is recorded.")

    def comment(self, action_id: str, user: str, text: str) -> Reply:
        """What a person wrote in "What went wrong?" after their 👎 (empty: nothing to keep)."""
        core = self.core
        written = redact(text[: MAX_COMMENT * 4]).strip()
        if not written:
            return Reply(ok=True)
        found = self._allowed(action_id, user)
        if isinstance(found, str):
            return Reply(ok=False, text=found)
        action = found
        kept = core.privacy.lasting(written)[:MAX_COMMENT]
        stored = core.store.comment_feedback(
            action, user, kept, core.audit(user, "feedback.commented", action.trace_id)
        )
        if not stored:
            return Reply(ok=False, text="Click 👍 or 👎 on the card first, then add a comment.")
        return Reply(ok=True, text="Thanks: your comment is recorded.")

    def react(self, channel: str, ts: str, user: str, vote: int, added: bool) -> bool:
        """A 👍 / 👎 reaction added to (or removed from) a message. Only reactions on a card,
        by someone who may give feedback, count; anything else is ignored. True if a vote
        changed."""
        core = self.core
        if vote not in SHOWN:
            return False
        action = core.store.action_by_card(channel, ts)
        if action is None or isinstance(self._allowed(action.id, user), str):
            return False
        if added:
            changed = core.store.give_feedback(
                action,
                user,
                vote,
                "reaction",
                core.audit(user, "feedback.given", action.trace_id, vote=vote, source="reaction"),
            )
        else:
            changed = core.store.remove_reaction_vote(
                action,
                user,
                vote,
                core.audit(
                    user, "feedback.withdrawn", action.trace_id, vote=vote, source="reaction"
                ),
            )
        if changed:
            core.kick()
            core.record_feedback(action.tool)
        return changed
