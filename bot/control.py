"""Control: the kill switch, scoped pauses and run-time autonomy (admins only).

`/pause` commits before its ack: from then on no action it holds starts (the executor's claim
and every start carry "and no pause holds it" in the same statement, `storage/pauses.py`).
The global `/pause [reason]` holds everything; a scoped one holds only its scope —
`/pause tool:NAME`, `/pause channel:#C`, `/pause tier:high` (that tier and above) — and either
may last a while (`/pause 30m …`, at most `MAX_PAUSE`), after which the auto-resume job
(`Sweeps.auto_resume`) ends it. `/resume` lifts the global pause, `/resume tool:NAME` (…) one
scope, `/resume all` everything; what was waiting on it continues (`Sweeps.after_resume`):
approved actions start, approvals given while paused count if they are still valid, critical
actions held for their dry run get it. Every pause and resume is audited and announced in the
admin channel in the same transaction. The parsing of what admins type lives here; what a
pause holds is the gate's to say (`Gate.paused_for`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core import Core, Reply
from bot.gate_pauses import held_tiers
from bot.gate_text import span_text, until_text
from bot.gate_types import Pause
from bot.governor import demotion_note
from bot.policy_types import Autonomy, Risk
from bot.redact import redact
from storage.models import ActionStatus, PauseKind, PauseScope
from storage.outbox import Notice

MAX_PAUSE = timedelta(days=7)
"""The longest a timed pause may last (a longer one is a mistake more often than a plan)."""

MIN_PAUSE = timedelta(minutes=1)

PAUSE_USAGE = (
    "Usage: `/pause [DURATION] [SCOPE] [reason]` — DURATION like `30m`, `2h`, `1h30m` or `1d` "
    f"(at most {span_text(MAX_PAUSE)}); SCOPE one of `tool:NAME`, `channel:#channel` (pick it "
    "from Slack's # menu), `tier:low|medium|high|critical` (that tier and above). With no "
    "scope, everything stops. E.g. `/pause 2h tool:scale deploy in progress`."
)
RESUME_USAGE = (
    "Usage: `/resume` lifts the global pause; `/resume tool:NAME`, `/resume channel:#channel` "
    "or `/resume tier:TIER` lifts that scope; `/resume all` lifts everything."
)

_UNITS = {
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_SPAN = re.compile(r"(\d+)([a-z]+)")
_COMPOUND = re.compile(r"(?:\d+d)?(?:\d+h)?(?:\d+m)?")
# Anything a person may have meant as a duration (a number and a unit of time), so that a
# wrong one is an error and not silently part of the reason ("5xx errors" is a reason).
_TIMELIKE = re.compile(
    r"\d+(?:[.,]\d+)?(?:s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?)"
    r"|(?:\d+[a-z]+){2,}"
)
_SCOPE = re.compile(r"(tool|channel|tier):(.*)", re.IGNORECASE)
_CHANNEL_REF = re.compile(r"<#([CGD][A-Z0-9]{2,31})(?:\|[^>]*)?>|([CGD][A-Z0-9]{2,31})")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(kw_only=True, frozen=True)
class Scope:
    """What a scoped pause holds: a tool's name, a channel id, or the lowest tier held."""

    kind: PauseKind
    value: str

    @property
    def label(self) -> str:
        """The scope in words: "the tool `scale`", "actions asked in #ops", "high-risk
        actions and above"."""
        return scope_label(self.kind, self.value)

    @property
    def command(self) -> str:
        """How an admin names it to `/resume` it."""
        if self.kind is PauseKind.CHANNEL:
            return f"/resume channel:<#{self.value}>"
        return f"`/resume {self.kind.value}:{self.value}`"


@dataclass(kw_only=True, frozen=True)
class PauseOrder:
    """A `/pause` as typed, parsed: what it holds (None: everything), for how long (None:
    until /resume) and why."""

    scope: Scope | None
    duration: timedelta | None
    reason: str


@dataclass(kw_only=True, frozen=True)
class ResumeOrder:
    """A `/resume` as typed, parsed: one scope, everything, or (neither) the global pause."""

    scope: Scope | None
    everything: bool = False


def scope_label(kind: PauseKind | str, value: str) -> str:
    kind = PauseKind(kind)
    if kind is PauseKind.TOOL:
        return f"the tool `{value}`"
    if kind is PauseKind.CHANNEL:
        return f"actions asked in <#{value}>"
    return "critical actions" if value == Risk.CRITICAL else f"{value}-risk actions and above"


def parse_duration(word: str) -> timedelta | str | None:
    """A pause's duration from what an admin typed ("30m", "2h", "1h30m", "1d"): the span, an
    error (it looks like a duration but is not one Warden takes), or None (not a duration)."""
    word = word.lower()
    total = 0
    if (m := _SPAN.fullmatch(word)) and m.group(2) in _UNITS:
        total = int(m.group(1)) * _UNITS[m.group(2)]
    elif word and _COMPOUND.fullmatch(word) and any(c.isdigit() for c in word):
        total = sum(int(n) * _UNITS[u] for n, u in _SPAN.findall(word))
    elif _TIMELIKE.fullmatch(word):
        return f"`{word[:20]}` is not a duration Warden takes: write whole minutes, hours or days"
    else:
        return None
    span = timedelta(seconds=total)
    if span < MIN_PAUSE:
        return f"a timed pause lasts at least a minute (`{word[:20]}` is too short)"
    if span > MAX_PAUSE:
        return (
            f"a timed pause lasts at most {span_text(MAX_PAUSE)} (`{word[:20]}` is longer); "
            "leave the duration out to pause until /resume"
        )
    return span


def parse_scope(word: str, may_pause_tool: Callable[[str], str | None]) -> Scope | str | None:
    """A pause's scope from what an admin typed (`tool:NAME`, `channel:<#C…|name>` as Slack
    sends a channel picked from the # menu, `channel:C…`, `tier:high`): the scope, an error,
    or None (not a scope)."""
    m = _SCOPE.fullmatch(word)
    if m is None:
        return None
    kind, value = PauseKind(m.group(1).lower()), m.group(2).strip()
    if kind is PauseKind.TOOL:
        if not _TOOL_NAME.fullmatch(value):
            return "write the tool's name after `tool:`, e.g. `tool:restart_service`"
        why_not = may_pause_tool(value)
        return f"can't pause it: {why_not}" if why_not else Scope(kind=kind, value=value)
    if kind is PauseKind.CHANNEL:
        ref = _CHANNEL_REF.fullmatch(value)
        if ref is None:
            return (
                f"`channel:{value[:40]}` names no channel Warden can recognise: type `channel:#` "
                "and pick the channel from Slack's # menu, so Slack sends its id"
            )
        return Scope(kind=kind, value=ref.group(1) or ref.group(2))
    if value.lower() not in {r.value for r in Risk}:
        return f"`tier:{value[:20]}` is not a tier: use low, medium, high or critical"
    return Scope(kind=kind, value=value.lower())


def parse_pause(text: str, may_pause_tool: Callable[[str], str | None]) -> PauseOrder | str:
    """What `/pause` was asked to do, or an error saying what was wrong. An optional duration
    and an optional scope come first, in either order; the rest is the reason."""
    rest = text.strip()
    scope: Scope | None = None
    duration: timedelta | None = None
    for _ in range(2):
        parts = rest.split(None, 1)
        if not parts:
            break
        word, after = parts[0], parts[1] if len(parts) > 1 else ""
        if scope is None and (found := parse_scope(word, may_pause_tool)) is not None:
            if isinstance(found, str):
                return found
            scope = found
        elif duration is None and (span := parse_duration(word)) is not None:
            if isinstance(span, str):
                return span
            duration = span
        else:
            break
        rest = after.strip()
    if scope is None and rest.startswith("#"):
        # `#name` typed rather than picked from the menu: Slack sends the name, not the id.
        return (
            "to pause a channel, write `channel:` and pick the channel from Slack's # menu "
            "(e.g. `/pause channel:#deploys`), so Slack sends its id"
        )
    if scope is None and rest.startswith("<#"):
        # A channel first, without `channel:`: pausing only it or everything? Ask, rather
        # than hold less than was meant (or more).
        return (
            "to pause only that channel write `channel:` before it; to pause everything, "
            "start the reason with a word"
        )
    return PauseOrder(scope=scope, duration=duration, reason=redact(rest)[:300])


def parse_resume(text: str) -> ResumeOrder | str:
    """What `/resume` was asked to lift, or an error saying what was wrong ("": not a
    scope at all)."""
    word = text.strip()
    if not word:
        return ResumeOrder(scope=None)
    if word.lower() == "all":
        return ResumeOrder(scope=None, everything=True)
    # Resuming a tool whose pause is in force works even if the tool has gone since.
    found = parse_scope(word, lambda _tool: None)
    if isinstance(found, Scope):
        return ResumeOrder(scope=found)
    return found or ""


class Control:
    def __init__(self, core: Core, after_resume: Callable[[], object]) -> None:
        self.core = core
        self.after_resume = after_resume

    def _open_cards(self, holds: Callable[[str, str, str], bool] | None = None) -> list[Notice]:
        """Cards awaiting a decision show whether a pause holds them (`holds`: only those of
        one scope)."""
        return [
            Notice(action_id=a.id)
            for a in self.core.store.actions_with_status(
                [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED], 100
            )
            if holds is None or holds(a.tool, a.channel, a.risk)
        ]

    def pause(self, user: str, text: str) -> Reply:
        """`/pause [DURATION] [SCOPE] [reason]` (see `PAUSE_USAGE`): the global pause, or one
        scope; bad input changes nothing and says what was wrong."""
        core = self.core
        if not core.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /pause.")
        order = parse_pause(text, core.gate.may_pause_tool)
        if isinstance(order, str):
            return Reply(ok=False, text=f"{order[:1].upper()}{order[1:]}.\n{PAUSE_USAGE}")
        now = core.clock()
        until = now + order.duration if order.duration is not None else None
        if order.scope is not None:
            return self._pause_scope(user, order.scope, order.reason, now, until)
        reason = order.reason
        said = f": {core.safe(reason, 300)}." if reason else "."
        if until is None:
            lasts, runs = "", "Nothing will run until /resume."
        else:
            assert order.duration is not None
            lasts = f" for {span_text(order.duration)} (until {until_text(until, now)})"
            runs = "Nothing will run until then or /resume."
        if not core.store.set_paused(
            True,
            reason,
            user,
            core.audit(
                user,
                "control.paused",
                reason=reason,
                **({"until": until.isoformat()} if until else {}),
            ),
            notices=[
                core.to_admins(f":double_vertical_bar: <@{user}> paused Warden{lasts}{said} {runs}")
            ],
            until=until,
        ):
            return self._pause_again(user, reason, now, until, lasts, said, runs)
        core.workers.outbox.submit(self._refresh_open_cards)
        core.kick()
        return Reply(ok=True, text=f":double_vertical_bar: Paused{lasts}. {runs}")

    def _pause_again(
        self,
        user: str,
        reason: str,
        now: datetime,
        until: datetime | None,
        lasts: str,
        said: str,
        runs: str,
    ) -> Reply:
        """`/pause` while Warden is already paused. The kill switch must hold as long as the
        latest admin asked: an untimed `/pause` during a timed one lasts until /resume, a
        longer one moves the end; a shorter one changes nothing and says when it ends."""
        core = self.core
        if core.store.extend_global_pause(
            until,
            reason,
            user,
            now,
            core.audit(
                user,
                "control.paused",
                reason=reason,
                extended=True,
                **({"until": until.isoformat()} if until else {}),
            ),
            notices=[
                core.to_admins(
                    f":double_vertical_bar: <@{user}> paused Warden again{lasts}{said} {runs}"
                )
            ],
        ):
            core.kick()
            return Reply(ok=True, text=f":double_vertical_bar: Paused{lasts}. {runs}")
        pause, _scopes = core.store.pauses()
        if pause.paused and pause.until is not None:
            return Reply(
                ok=True,
                text=f"Warden is already paused until {until_text(pause.until, now)} "
                "(`/pause` with no duration holds it until /resume).",
            )
        return Reply(ok=True, text="Warden is already paused.")

    def _pause_scope(
        self, user: str, scope: Scope, reason: str, now: datetime, until: datetime | None
    ) -> Reply:
        core = self.core
        said = f": {core.safe(reason, 300)}." if reason else "."
        lasts = f" until {until_text(until, now)}" if until is not None else ""
        started = core.store.start_pause_scope(
            kind=scope.kind.value,
            value=scope.value,
            tiers=held_tiers(Risk(scope.value)) if scope.kind is PauseKind.TIER else "",
            reason=reason,
            by=user,
            now=now,
            until=until,
            audit_=core.audit(
                user,
                "control.scope_paused",
                scope=scope.kind.value,
                value=scope.value,
                reason=reason,
                **({"until": until.isoformat()} if until else {}),
            ),
            notices=[
                core.to_admins(
                    f":double_vertical_bar: <@{user}> paused {scope.label}{lasts}{said} "
                    "Everything else runs as usual."
                )
            ],
        )
        if started is None:
            current = core.store.active_pause_scope(scope.kind.value, scope.value)
            by = f" by <@{current.paused_by}>" if current is not None else ""
            ends = (
                f" until {until_text(current.until, now)}"
                if current is not None and current.until is not None
                else ""
            )
            return Reply(
                ok=True,
                text=f"{scope.label[:1].upper()}{scope.label[1:]} is already paused{by}{ends}; "
                f"{scope.command} first to pause it again.",
            )
        held = self._pause_of(started)
        core.workers.outbox.submit(self._refresh_open_cards, held.holds)
        core.kick()
        return Reply(
            ok=True,
            text=f":double_vertical_bar: Paused {scope.label}{lasts}. Everything else runs as "
            f"usual; {scope.command} lifts it.",
        )

    def _pause_of(self, row: PauseScope) -> Pause:
        return Pause(kind=PauseKind(row.kind), value=row.value, by=row.paused_by)

    def resume(self, user: str, text: str = "") -> Reply:
        """`/resume` (the global pause), `/resume SCOPE` (one scope) or `/resume all`."""
        core = self.core
        if not core.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /resume.")
        order = parse_resume(text)
        if isinstance(order, str):
            said = f"{order[:1].upper()}{order[1:]}.\n" if order else ""
            return Reply(ok=False, text=f"{said}{RESUME_USAGE}")
        if order.scope is not None:
            return self._resume_scope(user, order.scope)
        if order.everything:
            return self._resume_all(user)
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
            scopes = core.store.active_pause_scopes()
            if scopes:
                return Reply(
                    ok=True,
                    text=f"Warden is not paused, but {len(scopes)} scoped pause"
                    f"{'s are' if len(scopes) > 1 else ' is'} in force (`/warden status` lists "
                    "them; `/resume all` lifts everything).",
                )
            return Reply(ok=True, text="Warden is not paused.")
        self._continue()
        return Reply(ok=True, text=":arrow_forward: Resumed.")

    def _resume_scope(self, user: str, scope: Scope) -> Reply:
        core = self.core
        current = core.store.active_pause_scope(scope.kind.value, scope.value)
        label = f"{scope.label[:1].upper()}{scope.label[1:]}"
        if current is None or current.id is None:
            return Reply(ok=True, text=f"{label} is not paused.")
        if not core.store.end_pause_scope(
            current.id,
            user,
            core.clock(),
            core.audit(user, "control.scope_resumed", scope=scope.kind.value, value=scope.value),
            notices=[
                core.to_admins(
                    f":arrow_forward: <@{user}> resumed {scope.label}. Its approved actions can "
                    "run again."
                )
            ],
        ):
            return Reply(ok=True, text=f"{label} is not paused.")
        self._continue(self._pause_of(current).holds)
        return Reply(ok=True, text=f":arrow_forward: Resumed {scope.label}.")

    def _resume_all(self, user: str) -> Reply:
        core = self.core
        pause, scopes = core.store.pauses()
        lifted = (["Warden's pause"] if pause.paused else []) + [
            scope_label(s.kind, s.value) for s in scopes
        ]
        if not lifted:
            return Reply(ok=True, text="Nothing is paused.")
        listed = "; ".join(lifted)
        was_paused, ended = core.store.end_pauses(
            [
                (s, core.audit(user, "control.scope_resumed", scope=s.kind, value=s.value))
                for s in scopes
            ],
            core.audit(user, "control.resumed", all=True) if pause.paused else None,
            user,
            core.clock(),
            notices=[
                core.to_admins(
                    f":arrow_forward: <@{user}> resumed everything ({listed}). Approved actions "
                    "can run again."
                )
            ],
        )
        if not was_paused and not ended:
            return Reply(ok=True, text="Nothing is paused (someone resumed it just now).")
        self._continue()
        return Reply(ok=True, text=f":arrow_forward: Resumed everything: {listed}.")

    def _continue(self, holds: Callable[[str, str, str], bool] | None = None) -> None:
        """After a resume: what waited on it continues, and cards it held are refreshed."""
        core = self.core
        core.workers.executors.submit(self.after_resume)
        core.workers.outbox.submit(self._refresh_open_cards, holds)
        core.kick()

    def _refresh_open_cards(self, holds: Callable[[str, str, str], bool] | None = None) -> None:
        self.core.store.notify(self._open_cards(holds))
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
