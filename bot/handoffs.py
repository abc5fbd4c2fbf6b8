"""Hand-offs: a run handed from an Approve click to an executor thread already waiting for it.

The click's transaction may claim the run together with its approval (`bot.execution`'s
`Execution.start_approved`) only once a thread is reserved for it, so a run claimed at the
click never waits in a queue, where a pause or an expiry could come first. The click offers
a hand-off and asks the executor pool for a thread (`Execution.submit`); the thread's
`Execution.execute` takes it and waits. `reserve` succeeds only while that thread waits, and
from then on the thread waits for `resolve`, which the click always calls (in a `finally`).
A thread that comes late, or whose click never says, claims nothing itself: it claims the
ordinary way (the gate asked again), and finds the action as the click left it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from bot.gate import Gate
from bot.gate_types import Now
from storage.models import Action, ActionStatus, Approval

ARRIVAL_S = 0.05  # how long a click waits for a free executor thread to take its run
WAIT_S = 300.0  # how long an unreserved thread waits for the click's transaction to say


@dataclass(kw_only=True, frozen=True)
class Judged:
    """What the gate judged an Approve click against: the approvals of the action's revision
    (read in the transaction that recorded the click's own) and the state then."""

    approvals: list[Approval]
    now: Now


def may_claim(gate: Gate, action: Action, user: str, judged: Judged) -> bool:
    """Whether the gate lets `action` run once `user`'s approval approves it, judged on the
    state the click was judged on (`Gate.runnable`, as the executor asks before its claim:
    pause, expiry, policy, autonomy, break glass, the approvals covering this exact call)."""
    approved = Action(
        **{**action.model_dump(), "status": ActionStatus.APPROVED, "decided_by": user}
    )
    return gate.runnable(approved, judged.approvals, judged.now) is None


class Handoff:
    """One click's run, on its way to one executor thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._state = "queued"  # → "waiting" (a thread took it) → "promised"; "resolved"
        self._approved = False
        self._claimed: Action | None = None

    def reserve(self) -> bool:
        """The click: the thread is here and will run what this click's transaction claims."""
        with self._cond:
            self._cond.wait_for(lambda: self._state != "queued", ARRIVAL_S)
            if self._state != "waiting":
                return False
            self._state = "promised"
            return True

    def resolve(self, *, approved: bool, claimed: Action | None) -> None:
        """The click: what its transaction did (`claimed`: the run, claimed with it)."""
        with self._cond:
            self._approved, self._claimed = approved, claimed
            self._state = "resolved"
            self._cond.notify_all()

    def take(self) -> tuple[bool, Action | None]:
        """The executor thread: (approved, claimed) once the click has said."""
        with self._cond:
            if self._state == "queued":
                self._state = "waiting"
                self._cond.notify_all()
            # Unreserved, it waits a while; once promised, until the click says (it always
            # does): the run may already be claimed for this thread.
            self._cond.wait_for(lambda: self._state != "waiting", WAIT_S)
            if self._state == "waiting":
                # The click never came back (its thread is stuck): claim the ordinary way.
                self._state = "resolved"
                return True, None
            self._cond.wait_for(lambda: self._state == "resolved")
            return self._approved, self._claimed


class Handoffs:
    """The hand-offs clicks are making, by action id (a few at once, at most)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offered: dict[str, list[Handoff]] = {}

    def offer(self, action_id: str) -> Handoff:
        """The click: a hand-off of this action's run, for the next thread that takes one."""
        handoff = Handoff()
        with self._lock:
            self._offered.setdefault(action_id, []).append(handoff)
        return handoff

    def take(self, action_id: str) -> Handoff | None:
        """An executor thread: the oldest hand-off of this action still offered, if any."""
        with self._lock:
            offered = self._offered.get(action_id)
            if not offered:
                return None
            handoff = offered.pop(0)
            if not offered:
                del self._offered[action_id]
            return handoff

    def withdraw(self, action_id: str, handoff: Handoff) -> None:
        """The click, once its transaction has said: a thread that comes later claims the
        ordinary way."""
        with self._lock:
            offered = self._offered.get(action_id, [])
            if handoff in offered:
                offered.remove(handoff)
            if not offered:
                self._offered.pop(action_id, None)
