"""Control: the kill switch and run-time autonomy (admins only).

`/pause` commits before its ack: from then on no action starts (the executor's claim and
every start carry "and not paused" in the same statement). `/resume` lifts it, and what was
waiting on it continues (`Sweeps.after_resume`): approved actions start, approvals given
while paused count if they are still valid, critical actions held for their dry run get it.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.core import Core, Reply
from bot.governor import demotion_note
from bot.policy import Autonomy
from bot.redact import redact
from storage.models import ActionStatus
from storage.outbox import Notice


class Control:
    def __init__(self, core: Core, after_resume: Callable[[], object]) -> None:
        self.core = core
        self.after_resume = after_resume

    def _open_cards(self) -> list[Notice]:
        """Cards awaiting a decision show whether Warden is paused."""
        return [
            Notice(action_id=a.id)
            for a in self.core.store.actions_with_status(
                [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED], 100
            )
        ]

    def pause(self, user: str, reason: str) -> Reply:
        core = self.core
        if not core.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /pause.")
        reason = redact(reason.strip())[:300]
        said = f": {core.safe(reason, 300)}." if reason else "."
        if not core.store.set_paused(
            True,
            reason,
            user,
            core.audit(user, "control.paused", reason=reason),
            notices=[
                core.to_admins(
                    f":double_vertical_bar: <@{user}> paused Warden{said} "
                    "Nothing will run until /resume."
                )
            ],
        ):
            return Reply(ok=True, text="Warden is already paused.")
        core.workers.outbox.submit(self._refresh_open_cards)
        core.kick()
        return Reply(ok=True, text=":double_vertical_bar: Paused. Nothing will run until /resume.")

    def resume(self, user: str) -> Reply:
        core = self.core
        if not core.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /resume.")
        if not core.store.set_paused(
            False,
            "",
            user,
            core.audit(user, "control.resumed"),
            notices=[
                core.to_admins(
                    f":arrow_forward: <@{user}> resumed Warden. Approved actions can run again."
                )
            ],
        ):
            return Reply(ok=True, text="Warden is not paused.")
        core.workers.executors.submit(self.after_resume)
        core.workers.outbox.submit(self._refresh_open_cards)
        core.kick()
        return Reply(ok=True, text=":arrow_forward: Resumed.")

    def _refresh_open_cards(self) -> None:
        self.core.store.notify(self._open_cards())
        self.core.kick()

    def set_autonomy(self, tool: str, stage: str, user: str) -> Reply:
        """An admin changes a tool's stage; the gate says whether that stage is allowed.
        Waiting cards of the tool are re-checked at their next click (and refreshed now)."""
        core = self.core
        if not core.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can change autonomy.")
        if stage not in {a.value for a in Autonomy}:
            return Reply(ok=False, text="Usage: `/warden autonomy TOOL suggest|approve|auto`")
        why_not = core.gate.may_set_autonomy(tool, Autonomy(stage))
        if why_not:
            return Reply(ok=False, text=f"Can't: {why_not}.")
        core.store.set_autonomy(
            tool,
            stage,
            user,
            core.audit(user, "tool.autonomy", tool=tool, autonomy=stage),
            notices=[core.to_admins(f":gear: <@{user}> set `{tool}` autonomy to `{stage}`.")],
        )
        core.kick()
        return Reply(ok=True, text=f"`{tool}` autonomy is now `{stage}`.")

    def autonomy_listing(self) -> str:
        """Each tool's stage; a tool the governor demoted says when, why, and how to undo it."""
        settings = self.core.store.autonomy_settings()
        overrides = {tool: s.autonomy for tool, s in settings.items()}
        lines = []
        for t in self.core.registry.names():
            label = self.core.gate.autonomy_label(t, overrides)
            note = demotion_note(self.core, settings.get(t))
            lines.append(f"• `{t}`: {label}" + (f" — {note}" if note else ""))
        return "\n".join(lines)
