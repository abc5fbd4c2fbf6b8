"""The autonomy governor: a tool on `auto` whose record turns bad is demoted to `approve` at once.

It listens to every outcome (`Core.outcome_listeners`) and every 👍 / 👎
(`Core.feedback_listeners`). For a tool whose effective autonomy (policy plus run-time
override) is `auto`, it reads the tool's stats over `[governor].window` — counted from the
tool's last autonomy change at most, so an admin who promotes a tool back is not overruled by
the failures that demoted it — and asks the gate (`Gate.demotion`) whether they call for a
demotion. If so, the run-time override becomes `approve`, set by "governor", conditioned on
the override the governor read, with its `tool.demoted` audit row and the admin channel's
announcement in the same transaction: two replicas demote and announce once.

Promoting a tool back is an admin's decision (`/warden autonomy TOOL auto`). The governor
never raises into the path that told it, and costs one stats read per outcome of an `auto`
tool (other tools: one indexed lookup). A run's end is checked on the executor's thread, so
the demotion is in place before anything else happens; a rejection or a vote, told on Slack's
ack path, is checked on a worker right after.
"""

from __future__ import annotations

import json
import logging

from bot.core import Core
from bot.gate_types import Demotion
from bot.metrics import window_stats
from bot.policy_types import Autonomy
from storage.models import Action, ActionStatus, AutonomySetting

log = logging.getLogger(__name__)

GOVERNOR = "governor"
"""The actor (and `AutonomySetting.changed_by`) of a demotion."""

DEMOTED = "tool.demoted"
"""The audit kind of a demotion."""


class Governor:
    def __init__(self, core: Core) -> None:
        self.core = core
        core.outcome_listeners.append(self.on_outcome)
        core.feedback_listeners.append(self.on_feedback)

    def on_outcome(
        self, action: Action, outcome: str, by: str | None = None, reason: str | None = None
    ) -> None:
        if outcome == ActionStatus.REJECTED.value:  # told on a click's ack path: hand it off
            self.core.workers.outbox.submit(self.check, action.tool)
        else:  # a run's end, on the executor's thread: before its next call can be planned
            self.check(action.tool)

    def on_feedback(self, tool: str) -> None:
        """A 👍 / 👎 is stored on a click's (or reaction's) ack path: checked on a worker."""
        self.core.workers.outbox.submit(self.check, tool)

    def check(self, tool: str) -> Demotion | None:
        """Demote `tool` if it is `auto` and its record calls for it; the demotion this call
        made (None: none, or another replica made it). Never raises."""
        try:
            return self._check(tool)
        except Exception:
            log.exception("the governor could not check %s", tool)
            return None

    def _check(self, tool: str) -> Demotion | None:
        core = self.core
        policy = core.policy.governor
        if not policy.enabled or tool not in core.registry:
            return None
        setting = core.store.autonomy_setting(tool)
        overrides = {tool: setting.autonomy} if setting is not None else {}
        if core.gate.autonomy(tool, overrides) is not Autonomy.AUTO:
            return None
        now = core.clock()
        since = now - policy.window
        if setting is not None and setting.changed_at > since:
            since = setting.changed_at
        demotion = core.gate.demotion(window_stats(core.store, since, now, tool), now)
        if demotion is None:
            return None
        text = (
            f":arrow_down: The governor took `{tool}` off `auto`: its {demotion.reason} is "
            f"above the {demotion.limit:.0%} limit. Its calls now wait for an approval. "
            f"Look at `/warden stats {tool}`; an admin may promote it back with "
            f"`/warden autonomy {tool} auto`."
        )
        won = core.store.set_autonomy(
            tool,
            Autonomy.APPROVE.value,
            GOVERNOR,
            core.audit(
                GOVERNOR,
                DEMOTED,
                tool=tool,
                autonomy=Autonomy.APPROVE.value,
                rule=demotion.rule,
                rate=round(demotion.rate, 4),
                limit=demotion.limit,
                count=demotion.count,
                volume=demotion.volume,
                window=demotion.window,
                window_seconds=int(policy.window.total_seconds()),
                reason=demotion.reason,
            ),
            notices=[core.to_admins(text)],
            expect=setting,
        )
        if not won:
            return None
        log.warning("governor demoted %s to approve: %s", tool, demotion.reason)
        core.kick()
        return demotion


def demotion_note(core: Core, setting: AutonomySetting | None) -> str | None:
    """How `/warden autonomy` explains a tool the governor demoted (None: it was not, or a
    person changed its stage since)."""
    if setting is None or setting.changed_by != GOVERNOR:
        return None
    row = core.store.last_autonomy_audit(setting.tool, DEMOTED)
    reason = ""
    if row is not None:
        try:
            reason = str(json.loads(row.data).get("reason") or "")
        except ValueError:
            reason = ""
    when = f"{setting.changed_at:%Y-%m-%d %H:%M} UTC"
    return (
        f"demoted by the governor at {when}"
        + (f": {reason}" if reason else "")
        + f"; an admin may promote it back with /warden autonomy {setting.tool} auto"
    )
