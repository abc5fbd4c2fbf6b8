"""Tasks and reminders: to-dos kept in a channel, and messages posted on a schedule.

Tools (the `warden.tools` entry point `tasks`, so they come through the plugin door):

- `create_task`, `assign_task`, `complete_task` (low risk; undo deletes, restores the
  previous assignee, reopens) and the read-only `list_tasks`. A task lives in the channel it
  was created in, and only a lookup or call made there (or in its creator's or assignee's own
  DM with Warden) may see or change it — the same rule as the other lookups
  (`bot.lookup_tools.visible`).
- `create_reminder` (medium; it posts, so it declares `target_channel` and the gate keeps it
  to where it may reach; the dry run shows the next three times; undo cancels it),
  `cancel_reminder` (low; undo restores it) and the read-only `list_reminders`.

Each call is idempotent on its action id: a retried create returns the row the first one made,
a retried assignment or completion repeats its answer. Titles and reminder texts are kept in
their lasting form (personal data as keyed placeholders) and posted neutralised.

Schedules are a 5-field cron expression read in an IANA time zone, computed by APScheduler 3's
`CronTrigger` (never parsed here), or a one-off time with its UTC offset. Two fixes to
APScheduler 3's reading of crontab, so an expression means what cron means: weekday numbers
are cron's (0 and 7 are Sunday; APScheduler 3 counts 0 as Monday), and a day of month and a
day of week may not both be given (cron fires on either, APScheduler only on both). Nothing
may repeat more often than every `MIN_INTERVAL`.

Firing (`fire_due_reminders`, the `bot.jobs:fire_reminders` job every 15 s on every replica):
each due reminder is claimed by a conditional update of its `next_at` in storage, which also
writes the message to the outbox and its audit row, so two replicas post each occurrence
once. Occurrences missed while Warden was down (or paused) fire once, late and saying so,
and the next one is the first still to come.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.channel_args import no_controls
from bot.lookup_tools import visible
from bot.plugins import PluginContext
from bot.policy_types import SLACK_CHANNEL_ID, SLACK_USER_ID, Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.models import Reminder, Task, utcnow
from storage.outbox import Notice
from storage.repo import Store
from storage.tasks import Change

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

REMINDER_TOOL = "create_reminder"

MIN_INTERVAL = timedelta(minutes=5)
"""Flood protection: no reminder repeats more often than this."""

LATE = timedelta(minutes=2)
"""An occurrence posted this long after its time says it is late (Warden was down or paused)."""

PREVIEW_TIMES = 3
# How far a schedule's gaps are checked: a whole leap cycle, so a schedule that fires only on
# 29 February is measured too (its next one may be almost four years away).
GAP_FIRES, GAP_SPAN = 1000, timedelta(days=4 * 366 + 1)

_USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_MENTION = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$")
_OFFSET_ZONE = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMERIC_DAYS = re.compile(r"^(\*|[0-7](?:-[0-7])?)(?:/([1-7]))?$")


# -- arguments -------------------------------------------------------------------------------


def _user_id(value: Any) -> Any:
    """`<@U123|name>` (how Slack writes a mention) is read as `U123`."""
    if isinstance(value, str):
        value = value.strip()
        m = _USER_MENTION.match(value)
        if m:
            return m.group(1)
        if not SLACK_USER_ID.match(value):
            raise ValueError(f"{value[:40]!r} is not a Slack user id (like U012ABCDEF)")
    return value


def _channel_id(value: Any) -> Any:
    """`<#C123|name>` (how Slack writes a channel link) is read as `C123`."""
    if isinstance(value, str):
        value = value.strip()
        m = _CHANNEL_MENTION.match(value)
        if m:
            return m.group(1)
        if not SLACK_CHANNEL_ID.match(value):
            raise ValueError(f"{value[:40]!r} is not a Slack channel id (like C0123ABCD)")
    return value


class CreateTaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(description="What is to be done", min_length=1, max_length=200)
    assignee: str | None = Field(default=None, description="Slack user id of who does it")
    due: date | None = Field(default=None, description="Due date, YYYY-MM-DD")

    _assignee = field_validator("assignee", mode="before")(_user_id)
    _plain = field_validator("title")(no_controls)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the title is empty")
        return value


class AssignTaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: int = Field(description="The task's number, as in 'task #12'", ge=1)
    assignee: str = Field(description="Slack user id of who does it")

    _assignee = field_validator("assignee", mode="before")(_user_id)


class TaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: int = Field(description="The task's number, as in 'task #12'", ge=1)


class ListTasksArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["open", "done", "all"] = "open"
    assignee: str | None = Field(default=None, description="Only tasks of this Slack user id")

    _assignee = field_validator("assignee", mode="before")(_user_id)


class ReminderArgs(BaseModel):
    """A reminder: `cron` with `timezone` repeats; `at` fires once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(description="Slack channel id to post in, like C0123ABCD")
    text: str = Field(description="What to post", min_length=1, max_length=1000)
    cron: str | None = Field(
        default=None,
        description=(
            "Repeating: 5-field cron 'minute hour day-of-month month day-of-week' read in "
            "`timezone`, e.g. '0 9 * * mon' (Mondays 09:00), '30 8 * * 1-5' (weekdays 08:30; "
            "0 and 7 are Sunday); a day of month or a day of week, not both; at most every "
            "5 minutes"
        ),
        max_length=64,
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone, like Europe/Berlin: required with `cron`",
        max_length=64,
    )
    at: AwareDatetime | None = Field(
        default=None,
        description="One-off: ISO 8601 time with its UTC offset, like 2026-12-01T09:00:00+01:00",
    )

    _channel = field_validator("channel", mode="before")(_channel_id)
    _text = field_validator("text")(no_controls)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return " ".join(value.split()) if value is not None else None

    @model_validator(mode="after")
    def _schedule(self) -> ReminderArgs:
        if (self.cron is None) == (self.at is None):
            raise ValueError(
                "give either `cron` (with `timezone`) for a repeating reminder, or `at` for a "
                "one-off"
            )
        if self.timezone is not None:
            zone(self.timezone)  # raises ValueError naming it
        if self.cron is not None:
            if self.timezone is None:
                raise ValueError(
                    "a repeating reminder needs `timezone` (an IANA name like Europe/Berlin), "
                    "so that 9:00 means 9:00 where the people are"
                )
            check_frequency(self.cron, self.timezone)
        elif self.at is not None and self.at <= utcnow():
            raise ValueError(f"`at` ({self.at.isoformat()}) is in the past")
        return self


class ReminderIdArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reminder_id: int = Field(description="The reminder's number, as in 'reminder #4'", ge=1)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- schedules -------------------------------------------------------------------------------


def zone(name: str) -> tzinfo:
    """The time zone `name` names: an IANA name, or "UTC+02:00" (a one-off's own offset).
    Raises ValueError for anything else."""
    m = _OFFSET_ZONE.match(name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        offset = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{name!r} is not a UTC offset")
        return timezone(sign * offset)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{name[:64]!r} is not a time zone; give an IANA name like Europe/Berlin or "
            "America/New_York"
        ) from None


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field in names, which APScheduler 3 reads as cron does (its
    numbers are off by one: 0 is Monday there, Sunday in cron)."""
    if not any(ch.isdigit() for ch in field):
        return field
    days: list[int] = []
    for part in field.split(","):
        m = _NUMERIC_DAYS.match(part)
        if m is None:
            raise ValueError(
                f"day of week {field!r}: use numbers 0-7 (0 and 7 are Sunday), ranges like "
                "1-5, or names like mon-fri"
            )
        span, step = m.group(1), int(m.group(2) or 1)
        if span == "*":
            first, last = 0, 6
        else:
            first_s, _, last_s = span.partition("-")
            first, last = int(first_s), int(last_s or first_s)
            if last < first:
                raise ValueError(f"day of week {part!r}: a range goes from low to high")
        days += [d % 7 for d in range(first, last + 1, step)]
    return ",".join(_CRON_DAYS[d] for d in sorted(set(days)))


@lru_cache(maxsize=512)
def trigger(cron: str, tz: str) -> CronTrigger:
    """The APScheduler trigger of a crontab expression read in time zone `tz` (ValueError
    with a readable reason when it is not one)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {cron!r} has {len(fields)} fields; give 5: minute hour day-of-month month "
            "day-of-week, like '0 9 * * mon'"
        )
    if fields[2] not in ("*", "?") and fields[4] not in ("*", "?"):
        raise ValueError(
            f"cron {cron!r} gives both a day of month and a day of week; give one of them"
        )
    fields[4] = _cron_weekdays(fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone(tz))
    except ValueError as exc:
        raise ValueError(f"cron {cron!r}: {exc}") from None


def after(cron: str, tz: str, moment: datetime) -> datetime | None:
    """The first occurrence strictly after `moment`, in UTC (None: it never fires)."""
    found = trigger(cron, tz).get_next_fire_time(moment, moment)
    return None if found is None else found.astimezone(UTC)


def upcoming(cron: str, tz: str, start: datetime, count: int) -> list[datetime]:
    """The next `count` occurrences after `start`, in UTC."""
    out: list[datetime] = []
    moment: datetime | None = start
    while moment is not None and len(out) < count:
        moment = after(cron, tz, moment)
        if moment is not None:
            out.append(moment)
    return out


@lru_cache(maxsize=512)
def _closest(cron: str, tz: str) -> tuple[datetime, datetime] | None:
    """The two consecutive occurrences closest together over the coming `GAP_SPAN` (at
    most `GAP_FIRES` of them), or None when it fires only once. Raises ValueError when it
    never fires."""
    start = utcnow()
    previous = after(cron, tz, start)
    if previous is None:
        raise ValueError(f"cron {cron!r} never fires")
    best: tuple[datetime, datetime] | None = None
    for _ in range(GAP_FIRES):
        following = after(cron, tz, previous)
        if following is None:
            break
        # Measured before the look-ahead ends: the pair that crosses it counts too, so a
        # schedule whose first occurrences are far away ("* * 29 2 *") is still measured.
        if best is None or following - previous < best[1] - best[0]:
            best = (previous, following)
            if following - previous < MIN_INTERVAL:
                break
        if following - start > GAP_SPAN:
            break
        previous = following
    return best


def check_frequency(cron: str, tz: str) -> None:
    """Raise ValueError, saying when, if the schedule repeats more often than
    `MIN_INTERVAL` (flood protection)."""
    closest = _closest(cron, tz)
    if closest is not None and closest[1] - closest[0] < MIN_INTERVAL:
        first, second = (when(t, tz) for t in closest)
        raise ValueError(
            f"cron {cron!r} fires more often than every {int(MIN_INTERVAL.total_seconds() // 60)}"
            f" minutes (at {first} and again at {second}); a reminder may repeat at most every "
            f"{int(MIN_INTERVAL.total_seconds() // 60)} minutes"
        )


def when(moment: datetime, tz: str) -> str:
    """A time as people there read it: "Mon 2026-12-07 09:00 CET"."""
    local = moment.astimezone(zone(tz))
    name = local.tzname() or tz
    return f"{local:%a %Y-%m-%d %H:%M} {name}"


def offset_zone(moment: datetime) -> str:
    """The zone name a one-off given only with an offset is shown in ("UTC+01:00")."""
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    sign = "+" if offset > timedelta(0) else "-"
    minutes = int(abs(offset).total_seconds() // 60)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def schedule_text(reminder: Reminder) -> str:
    """How a reminder repeats, in Warden's words: "`0 9 * * mon` (Europe/Berlin)" or
    "once"."""
    if reminder.cron:
        return f"`{reminder.cron}` ({reminder.timezone})"
    return "once"


def next_occurrence(reminder: Reminder, now: datetime) -> datetime | None:
    """The occurrence after the one firing at `now`: for a cron reminder the first still to
    come (missed ones are not made up), for a one-off none."""
    if not reminder.cron:
        return None
    found = after(reminder.cron, reminder.timezone, max(now, reminder.next_at or now))
    return None if found is None else found.replace(microsecond=0)


# -- tools -----------------------------------------------------------------------------------


def _task_line(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "assignee": task.assignee,
        "due": task.due.isoformat() if task.due else None,
        "created_by": task.created_by,
        "channel": task.channel,
    }


def _may_see(task: Task, ctx: ToolContext) -> bool:
    """The lookups' rule (`visible`): the task's own channel, or the person's own DM for a
    task they created or were given."""
    return visible(task.channel, task.created_by, ctx) or (
        task.assignee is not None and visible(task.channel, task.assignee, ctx)
    )


def _dm_person(ctx: ToolContext) -> str | None:
    return ctx.requester if (ctx.channel or "").startswith("D") else None


def task_tools(store: Store | None, lasting: Callable[[str], str] = str) -> list[Tool[Any]]:
    """The task tools, bound to a store (None while only checking configuration)."""

    def offline() -> ToolResult:
        return ToolResult(ok=False, output="not connected")

    def seen(task_id: int, ctx: ToolContext) -> Task | None:
        task = store.task(task_id) if store is not None else None
        return task if task is not None and _may_see(task, ctx) else None

    def not_here(task_id: int) -> ToolResult:
        return ToolResult(ok=False, output=f"there is no task #{task_id} in this channel")

    def create(args: CreateTaskArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        if not ctx.channel:
            return ToolResult(ok=False, output="a task needs a channel to live in")
        task = store.create_task(
            title=lasting(args.title),
            channel=ctx.channel,
            created_by=ctx.requester,
            assignee=args.assignee,
            due=args.due,
            action_id=ctx.action_id,
            now=utcnow(),
        )
        who = f", assigned to <@{task.assignee}>" if task.assignee else ""
        return ToolResult(
            ok=True,
            output=task.title,
            note=f"Task #{task.id} created{who}.",
            undo_data={"task_id": task.id},
        )

    def delete(_args: CreateTaskArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        task_id = int(data["task_id"])
        change = store.delete_task(task_id, ctx.action_id)
        if change is Change.CHANGED:
            return ToolResult(
                ok=False,
                note=f"Task #{task_id} was changed since by someone else; it was left as it is.",
            )
        if change is Change.MISSING:
            return ToolResult(ok=True, note=f"Task #{task_id} was already gone.")
        return ToolResult(ok=True, note=f"Task #{task_id} deleted.")

    def assign(args: AssignTaskArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        if seen(args.task_id, ctx) is None:
            return not_here(args.task_id)
        done = store.assign_task(args.task_id, args.assignee, ctx.action_id)
        if done.change is Change.MISSING or done.task is None:
            return not_here(args.task_id)
        before = done.previous_assignee
        note = (
            f"Task #{args.task_id} was already assigned to <@{args.assignee}>."
            if done.change is Change.ALREADY
            else f"Task #{args.task_id} assigned to <@{args.assignee}>"
            + (f" (was <@{before}>)." if before else ".")
        )
        return ToolResult(
            ok=True,
            output=done.task.title,
            note=note,
            undo_data={
                "task_id": args.task_id,
                "previous": before,
                "changed": done.change is not Change.ALREADY,
            },
        )

    def unassign(args: AssignTaskArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        if not data.get("changed"):
            return ToolResult(ok=True, note="Nothing to undo: the assignment changed nothing.")
        previous = data.get("previous")
        if not store.unassign_task(args.task_id, ctx.action_id, previous):
            return ToolResult(
                ok=False,
                output=f"task #{args.task_id} was changed since; its assignee is left as it is",
            )
        back = f"<@{previous}>" if previous else "nobody"
        return ToolResult(ok=True, note=f"Task #{args.task_id} is assigned to {back} again.")

    def complete(args: TaskArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        if seen(args.task_id, ctx) is None:
            return not_here(args.task_id)
        done = store.complete_task(args.task_id, ctx.requester, ctx.action_id, utcnow())
        if done.change is Change.MISSING or done.task is None:
            return not_here(args.task_id)
        note = (
            f"Task #{args.task_id} was already done."
            if done.change is Change.ALREADY
            else f"Task #{args.task_id} done."
        )
        return ToolResult(
            ok=True,
            output=done.task.title,
            note=note,
            undo_data={"task_id": args.task_id, "changed": done.change is not Change.ALREADY},
        )

    def reopen(args: TaskArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        if not data.get("changed"):
            return ToolResult(ok=True, note="Nothing to undo: it was already done.")
        if not store.reopen_task(args.task_id, ctx.action_id):
            return ToolResult(ok=False, output=f"task #{args.task_id} was changed since")
        return ToolResult(ok=True, note=f"Task #{args.task_id} is open again.")

    def listing(args: ListTasksArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        rows = store.tasks_visible(
            ctx.channel or "",
            dm_person=_dm_person(ctx),
            status=None if args.status == "all" else args.status,
            assignee=args.assignee,
        )
        # The storage filter and the lookups' rule agree; asking both fails closed.
        items = [_task_line(t) for t in rows if _may_see(t, ctx)]
        return ToolResult(ok=True, output=json.dumps(items, ensure_ascii=False))

    return [
        Tool(
            name="create_task",
            args=CreateTaskArgs,
            run=create,
            undo=delete,
            risk=Risk.LOW,
            timeout_s=10,
            description=(
                "Create a task (a to-do) in this channel, optionally assigned to someone and "
                "with a due date"
            ),
            examples=(
                {"title": "Rotate the staging API keys", "assignee": "U012ABCDEF"},
                {"title": "Write the incident report", "due": "2026-12-04"},
            ),
        ),
        Tool(
            name="assign_task",
            args=AssignTaskArgs,
            run=assign,
            undo=unassign,
            risk=Risk.LOW,
            timeout_s=10,
            description="Assign one of this channel's tasks to someone (by task number)",
            examples=({"task_id": 12, "assignee": "U012ABCDEF"},),
        ),
        Tool(
            name="complete_task",
            args=TaskArgs,
            run=complete,
            undo=reopen,
            risk=Risk.LOW,
            timeout_s=10,
            description="Mark one of this channel's tasks done (by task number)",
            examples=({"task_id": 12},),
        ),
        Tool(
            name="list_tasks",
            args=ListTasksArgs,
            run=listing,
            risk=Risk.LOW,
            read_only=True,
            timeout_s=5,
            description=(
                "List this channel's tasks (open by default) with their numbers, assignees and "
                "due dates"
            ),
            examples=({"status": "open"}, {"status": "all", "assignee": "U012ABCDEF"}),
        ),
    ]


def reminder_tools(store: Store | None, lasting: Callable[[str], str] = str) -> list[Tool[Any]]:
    """The reminder tools, bound to a store (None while only checking configuration)."""

    def offline() -> ToolResult:
        return ToolResult(ok=False, output="not connected")

    def first(args: ReminderArgs, now: datetime) -> tuple[str, datetime | None]:
        """The zone a reminder is read and shown in, and its first occurrence."""
        if args.cron is not None and args.timezone is not None:
            found = after(args.cron, args.timezone, now)
            return args.timezone, None if found is None else found.replace(microsecond=0)
        assert args.at is not None
        return args.timezone or offset_zone(args.at), args.at.astimezone(UTC)

    def preview(args: ReminderArgs, _ctx: ToolContext) -> str:
        tz, next_at = first(args, utcnow())
        if args.cron is None or args.timezone is None:
            shown = when(next_at, tz) if next_at else "never"
            return f"Would post once in <#{args.channel}> at {shown}."
        times = upcoming(args.cron, args.timezone, utcnow(), PREVIEW_TIMES)
        lines = "\n".join(f"• {when(t, tz)}" for t in times)
        return (
            f"Would post in <#{args.channel}> on `{args.cron}` ({tz}). "
            f"The next {len(times)}:\n{lines}"
        )

    def create(args: ReminderArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        now = utcnow()
        tz, next_at = first(args, now)
        if next_at is None:
            return ToolResult(ok=False, output=f"cron {args.cron!r} never fires")
        reminder = store.create_reminder(
            channel=args.channel,
            text=lasting(args.text),
            cron=args.cron,
            timezone=tz,
            at=args.at,
            next_at=next_at,
            created_by=ctx.requester,
            action_id=ctx.action_id,
            now=now,
        )
        upcoming_at = reminder.next_at
        due = when(upcoming_at, reminder.timezone) if upcoming_at else "—"
        return ToolResult(
            ok=True,
            output=reminder.text,
            note=(
                f"Reminder #{reminder.id} set for <#{reminder.channel}>, "
                f"{schedule_text(reminder)}; next: {due}. Undo cancels it."
            ),
            undo_data={"reminder_id": reminder.id},
        )

    def cancel_created(args: ReminderArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        reminder_id = int(data["reminder_id"])
        change, _row = store.cancel_reminder(reminder_id, ctx.requester, utcnow())
        if change is Change.DONE:
            return ToolResult(ok=True, note=f"Reminder #{reminder_id} cancelled.")
        return ToolResult(ok=True, note=f"Reminder #{reminder_id} was no longer active.")

    def seen(reminder_id: int, ctx: ToolContext) -> Reminder | None:
        row = store.reminder(reminder_id) if store is not None else None
        return row if row is not None and visible(row.channel, row.created_by, ctx) else None

    def cancel(args: ReminderIdArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        if seen(args.reminder_id, ctx) is None:
            return ToolResult(
                ok=False, output=f"there is no reminder #{args.reminder_id} in this channel"
            )
        change, row = store.cancel_reminder(args.reminder_id, ctx.requester, utcnow())
        if row is None:
            return ToolResult(
                ok=False, output=f"there is no reminder #{args.reminder_id} in this channel"
            )
        if change is not Change.DONE:
            state = "was already cancelled" if row.cancelled_at else "has already fired"
            return ToolResult(ok=True, note=f"Reminder #{args.reminder_id} {state}.")
        assert row.cancelled_at is not None
        return ToolResult(
            ok=True,
            output=row.text,
            note=f"Reminder #{args.reminder_id} cancelled. Undo restores it.",
            undo_data={
                "reminder_id": args.reminder_id,
                "cancelled_at": row.cancelled_at.isoformat(),
            },
        )

    def restore(args: ReminderIdArgs, _ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        if "cancelled_at" not in data:
            return ToolResult(ok=True, note="Nothing to undo: this call cancelled nothing.")
        at = datetime.fromisoformat(str(data["cancelled_at"]))
        if not store.restore_reminder(args.reminder_id, at):
            return ToolResult(ok=False, output=f"reminder #{args.reminder_id} was changed since")
        return ToolResult(ok=True, note=f"Reminder #{args.reminder_id} is active again.")

    def listing(_args: NoArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        rows = store.reminders_visible(ctx.channel or "", dm_person=_dm_person(ctx))
        items = [
            {
                "id": r.id,
                "channel": r.channel,
                "text": r.text,
                "schedule": {"cron": r.cron, "timezone": r.timezone}
                if r.cron
                else {"at": r.at.isoformat() if r.at else None},
                "next": when(r.next_at, r.timezone) if r.next_at else None,
                "created_by": r.created_by,
            }
            for r in rows
            if visible(r.channel, r.created_by, ctx)
        ]
        return ToolResult(ok=True, output=json.dumps(items, ensure_ascii=False))

    return [
        Tool(
            name=REMINDER_TOOL,
            args=ReminderArgs,
            run=create,
            undo=cancel_created,
            dry_run=preview,
            risk=Risk.MEDIUM,
            timeout_s=10,
            # It posts: the gate keeps it to the request's channel (and
            # `tools.create_reminder.channels`), never the admin channel.
            target_channel=lambda args: args.channel,
            description=(
                "Set a reminder Warden posts in a channel: repeating on a cron schedule in a "
                "time zone, or once at a given time"
            ),
            examples=(
                {
                    "channel": "C0123ABCD",
                    "text": "Rotate the API keys",
                    "cron": "0 9 * * mon",
                    "timezone": "Europe/Berlin",
                },
                {
                    "channel": "C0123ABCD",
                    "text": "Release freeze starts",
                    "at": "2099-01-05T09:00:00+01:00",
                },
            ),
        ),
        Tool(
            name="cancel_reminder",
            args=ReminderIdArgs,
            run=cancel,
            undo=restore,
            risk=Risk.LOW,
            timeout_s=10,
            description="Cancel one of this channel's reminders (by reminder number)",
            examples=({"reminder_id": 4},),
        ),
        Tool(
            name="list_reminders",
            args=NoArgs,
            run=listing,
            risk=Risk.LOW,
            read_only=True,
            timeout_s=5,
            description=(
                "List this channel's active reminders with their numbers, schedules and next time"
            ),
        ),
    ]


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of the task and reminder tools."""
    return [*task_tools(ctx.store, ctx.lasting), *reminder_tools(ctx.store, ctx.lasting)]


# -- firing ----------------------------------------------------------------------------------


def reminder_message(
    reminder: Reminder, due: datetime, now: datetime, safe: Callable[..., str]
) -> str:
    """What an occurrence posts: the reminder's text neutralised (a person wrote it through
    the model), and — when it is late — when it was due."""
    text = f":alarm_clock: *Reminder:* {safe(reminder.text, 2000)}"
    footer = f"reminder #{reminder.id} · {schedule_text(reminder)}"
    if now - due > LATE:
        footer += (
            f" · due {when(due, reminder.timezone)}; posted late: Warden was paused or not "
            "running then"
        )
    return f"{text}\n_{footer}_"


def fire_due_reminders(core: Core) -> int:
    """Post every reminder due at the core's clock, each occurrence once across replicas (the
    storage claim decides), and move each on to its next occurrence still to come. Returns
    how many this replica posted."""
    now = core.clock()
    fired = 0
    # A scope pausing the tool that sets reminders up, or its tier, holds their posts too.
    tool = core.registry.get(REMINDER_TOOL) if REMINDER_TOOL in core.registry else None
    risk = tool.risk.value if tool is not None else None
    for reminder in core.store.due_reminders(now):
        due = reminder.next_at
        if due is None:  # pragma: no cover - the query excludes them
            continue
        try:
            following = next_occurrence(reminder, now)
        except ValueError as exc:  # e.g. its time zone is gone from this system's tz data
            log.warning("reminder %s has a bad schedule (%s); it fires once", reminder.id, exc)
            following = None
        notice = Notice(
            channel=reminder.channel, text=reminder_message(reminder, due, now, core.safe)
        )
        if core.store.fire_reminder(
            int(reminder.id or 0),
            due=due,
            next_at=following,
            now=now,
            notice=notice,
            policy_version=core.policy.version,
            tool=REMINDER_TOOL,
            risk=risk,
        ):
            fired += 1
    if fired:
        core.kick()
    return fired
