"""Tasks and reminders, through signed Slack requests on both databases.

A task is created, assigned, completed and undone from Slack, listed by the read-only lookup
only where it lives, and shown on the App Home. A reminder approved on its card fires at its
time (Warden's clock moved on, never slept), once even when two Warden processes on one
database run the job at the same moment; it survives a restart, stops when cancelled and
comes back when the cancel is undone; occurrences missed while Warden was down post once;
schedules that would flood a channel, times in the past and the admin channel are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from bot.claude import CANNOT_HELP
from bot.jobs import JOBS
from bot.lifecycle import Lifecycle
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from bot.tasks import (
    ReminderArgs,
    check_frequency,
    fire_due_reminders,
    trigger,
    upcoming,
    when,
    zone,
)
from bot.tools import ToolArgumentsError
from devslack import Workspace
from handlers.runtime import Running, start
from storage.models import ActionStatus, AuditEvent, Reminder, Task, utcnow
from tests.anthropic_stub import AnthropicStub, reply, tool_use
from tests.conftest import ADMIN, APPROVER, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import (
    CHANNEL,
    SECRET,
    TOKEN,
    Slack,
    SlackFactory,
    buttons,
    card_text,
)

FIRE_JOB = "bot.jobs:fire_reminders"
ENG = "C0ENG"
BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift

    def at(self, moment: datetime) -> None:
        """Make it `moment` now (and let it run on from there)."""
        self.shift = moment - utcnow()


def task_policy(tmp_path: Path) -> Policy:
    data = policy_data(tmp_path)
    data["tools"] = {
        "post_message": {"autonomy": "auto"},
        "create_task": {"autonomy": "auto"},
        "complete_task": {"autonomy": "auto"},
    }
    data["aliases"].update(
        {
            "task {title}": {"tool": "create_task"},
            "assign task {task_id} to {assignee}": {"tool": "assign_task"},
            "done task {task_id}": {"tool": "complete_task"},
            "remind weekly {text}": {
                "tool": "create_reminder",
                "args": {"channel": CHANNEL, "cron": "0 9 * * mon", "timezone": "Europe/Berlin"},
            },
            "remind every minute {text}": {
                "tool": "create_reminder",
                "args": {"channel": CHANNEL, "cron": "* * * * *", "timezone": "UTC"},
            },
            "remind ops {text}": {
                "tool": "create_reminder",
                "args": {"channel": "C0OPS", "cron": "0 9 * * mon", "timezone": "UTC"},
            },
            "remind at {at} {text}": {"tool": "create_reminder", "args": {"channel": CHANNEL}},
            "cancel reminder {reminder_id}": {"tool": "cancel_reminder"},
        }
    )
    return parse_policy(data)


def quiet(running: Running) -> None:
    """The tests fire reminders explicitly; the real 15-second job would race them."""
    running.warden.jobs.scheduler.remove_job(FIRE_JOB)


@contextmanager
def replica(slack: Slack, database_url: str, policy: Policy, clock: Clock) -> Iterator[Running]:
    """A second Warden process on the same database and Slack workspace."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    running = start(settings, host="127.0.0.1", port=0, policy=policy, clock=clock, upgrade=False)
    quiet(running)
    try:
        yield running
    finally:
        running.stop()


def lifecycle(running: Running | Slack) -> Lifecycle:
    bot = running.bot if isinstance(running, Slack) else running
    return bot.warden.lifecycle


def alarms(ws: Workspace, channel: str = CHANNEL) -> list[str]:
    """Reminder posts in `channel`, oldest first."""
    return [
        str(m.get("text") or "")
        for m in ws.messages(channel)
        if str(m.get("text") or "").startswith(":alarm_clock:")
    ]


def fire_together(*instances: Lifecycle, times: int = 2) -> int:
    """Every instance runs the firing job at the same moment, `times` each; how many posted."""
    for lc in instances:
        # The clock jumped: each replica says it is alive at the new time (its heartbeat job
        # does this every 10 s), or the others would take over its outbox rows as a dead one's.
        lc.store.heartbeat(lc.owner, lc.core.clock())
    with ThreadPoolExecutor(len(instances) * times) as pool:
        posted = sum(pool.map(lambda lc: fire_due_reminders(lc.core), list(instances) * times))
    for lc in instances:
        assert lc.workers.wait_idle(30)
    return posted


def tasks(slack: Slack) -> list[Task]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Task).order_by(col(Task.id))).all())


def reminders(slack: Slack) -> list[Reminder]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Reminder).order_by(col(Reminder.id))).all())


def fired_audits(slack: Slack) -> list[AuditEvent]:
    with slack.store.db.read() as s:
        return list(
            s.exec(
                select(AuditEvent)
                .where(col(AuditEvent.kind) == "reminder.fired")
                .order_by(col(AuditEvent.seq))
            ).all()
        )


def next_monday_9_berlin(after: datetime) -> datetime:
    """Worked out by hand, not by the code under test."""
    day = after.astimezone(BERLIN).date()
    for i in range(8):
        d = day + timedelta(days=i)
        candidate = datetime(d.year, d.month, d.day, 9, tzinfo=BERLIN)
        if d.weekday() == 0 and candidate > after:
            return candidate.astimezone(UTC)
    raise AssertionError("no Monday within a week")


def approve(slack: Slack, text: str) -> Any:
    action, card = slack.mention_and_card(text)
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.status_note
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, (done.status, done.result)
    return done


def undo(slack: Slack, action: Any, user: str = REQUESTER) -> Any:
    assert slack.ws.click(user, CHANNEL, slack.card(action.id)["ts"], "warden_undo").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


def answers(slack: Slack, thread_ts: str) -> str:
    return "\n".join(
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
        if c.params.get("thread_ts") == thread_ts and not c.params.get("blocks")
    )


# -- tasks ----------------------------------------------------------------------------------


def test_a_task_is_created_assigned_completed_and_undone_through_slack(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=task_policy(tmp_path))
    created, card = slack.mention_and_card("task Rotate the staging keys with jane@example.com")
    assert created.status == ActionStatus.SUCCEEDED  # low risk, autonomy auto
    (task,) = tasks(slack)
    assert (task.channel, task.created_by, task.status, task.assignee) == (
        CHANNEL,
        REQUESTER,
        "open",
        None,
    )
    assert task.action_id == created.id
    # People's words are kept in their lasting form: no personal data in the table.
    assert task.title.startswith("Rotate the staging keys with <EMAIL#")
    assert "jane@" not in task.title
    assert f"Task #{task.id} created" in card_text(card)

    # A retried call (the same action run again through the one executor) finds its row.
    again = lifecycle(slack).executor.run(slack.store.get_action(created.id))
    assert again.ok and again.note == f"Task #{task.id} created."
    assert len(tasks(slack)) == 1

    # Assigning needs a click (its autonomy is `approve`); Undo gives it back.
    assigned = approve(slack, f"assign task {task.id} to {APPROVER}")
    assert slack.store.task(task.id).assignee == APPROVER
    assert f"assigned to <@{APPROVER}>" in card_text(slack.card(assigned.id))
    assert undo(slack, assigned).status == ActionStatus.UNDONE
    assert slack.store.task(task.id).assignee is None
    approve(slack, f"assign task {task.id} to {APPROVER}")

    # Completing runs at once; Undo reopens it; done again it stays done.
    done, card = slack.mention_and_card(f"done task {task.id}")
    assert done.status == ActionStatus.SUCCEEDED
    row = slack.store.task(task.id)
    assert (row.status, row.completed_by) == ("done", REQUESTER) and row.completed_at is not None
    assert "Undo" in buttons(card)
    assert undo(slack, done).status == ActionStatus.UNDONE
    row = slack.store.task(task.id)
    assert (row.status, row.completed_at, row.assignee) == ("open", None, APPROVER)
    slack.mention_and_card(f"done task {task.id}")
    assert slack.store.task(task.id).status == "done"

    # Undoing the create deletes the task.
    assert undo(slack, created).status == ActionStatus.UNDONE
    assert tasks(slack) == []


def test_tasks_and_reminders_are_listed_only_where_they_live(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=task_policy(tmp_path), claude=anthropic_stub)
    slack.ws.channels[ENG] = "eng"
    slack.mention_and_card("task Rotate the staging keys")
    assert slack.ws.mention(REQUESTER, ENG, "task Plan the secret eng migration").status == 200
    slack.idle()
    general, eng = tasks(slack)
    assert (general.channel, eng.channel) == (CHANNEL, ENG)
    approve(slack, "remind weekly Water the office plants")

    def lookup(tool: str, user: str, channel: str) -> str:
        anthropic_stub.enqueue(
            reply(tool_use(tool, {})), reply(tool_use(CANNOT_HELP, {"reason": "Listed them."}))
        )
        delivery = (
            slack.ws.dm(user, "what is on the list?")
            if channel.startswith("D")
            else slack.ws.mention(user, channel, "what is on the list?")
        )
        assert delivery.status == 200
        slack.idle()
        (result,) = anthropic_stub.seen[-1].tool_results()
        assert not result.get("is_error"), result
        return str(result["content"])

    here = lookup("list_tasks", REQUESTER, CHANNEL)
    assert "Rotate the staging keys" in here and "secret eng migration" not in here
    there = lookup("list_tasks", STRANGER, ENG)
    assert "secret eng migration" in there and "Rotate the staging keys" not in there
    # In one's own DM with Warden: one's own tasks from channels; another person's DM: none.
    own_dm = lookup("list_tasks", REQUESTER, slack.ws.dm_channel(REQUESTER))
    assert "Rotate the staging keys" in own_dm and "secret eng migration" in own_dm
    other_dm = lookup("list_tasks", STRANGER, slack.ws.dm_channel(STRANGER))
    assert "Rotate" not in other_dm and "secret" not in other_dm
    assert "Water the office plants" in lookup("list_reminders", STRANGER, CHANNEL)
    assert "Water the office plants" not in lookup("list_reminders", REQUESTER, ENG)

    # Nor can a task be changed from another channel: the call fails, the task stays open.
    assert slack.ws.mention(REQUESTER, ENG, f"done task {general.id}").status == 200
    slack.idle()
    (refused,) = [
        a
        for a in slack.store.actions_with_status(list(ActionStatus), limit=100)
        if a.tool == "complete_task"
    ]
    assert refused.status == ActionStatus.FAILED
    assert f"there is no task #{general.id} in this channel" in (refused.result or "")
    assert slack.store.task(general.id).status == "open"


def test_the_app_home_lists_the_viewers_tasks(slack_factory: SlackFactory, tmp_path: Path) -> None:
    slack = slack_factory(policy_=task_policy(tmp_path))
    slack.mention_and_card("task Rotate the staging keys")
    slack.mention_and_card("task Renew the <!channel> TLS certificate")
    first, _second = tasks(slack)
    approve(slack, f"assign task {first.id} to {APPROVER}")
    for user in (REQUESTER, APPROVER, STRANGER):
        assert slack.ws.open_home(user).status == 200
    slack.idle()
    mine = card_text(slack.ws.home(REQUESTER) or {})
    assert "Your tasks* (2)" in mine
    assert f"`#{first.id}` Rotate the staging keys" in mine and f"<@{APPROVER}>" in mine
    assert "Renew the" in mine and "<!channel>" not in mine  # titles are neutralised
    given = card_text(slack.ws.home(APPROVER) or {})
    assert "Rotate the staging keys" in given and "TLS certificate" not in given
    stranger = card_text(slack.ws.home(STRANGER) or {})
    assert "No open tasks" in stranger and "Rotate" not in stranger
    slack.mention_and_card(f"done task {first.id}")
    slack.ws.open_home(APPROVER)
    slack.idle()
    assert "Rotate the staging keys" not in card_text(slack.ws.home(APPROVER) or {})
    assert len((slack.ws.home(REQUESTER) or {})["blocks"]) <= 100


# -- reminders ------------------------------------------------------------------------------


def test_a_one_off_reminder_fires_at_its_time_once_across_two_replicas(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path
) -> None:
    policy = task_policy(tmp_path)
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    quiet(slack.bot)
    due = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    stamp = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    action, card = slack.mention_and_card(f"remind at {stamp} <!here> the deploy freeze starts")
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.risk == "medium"
    assert "Would post once" in card_text(card) and due.strftime("%H:%M") in card_text(card)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    (reminder,) = reminders(slack)
    assert reminder.next_at == due and reminder.cron is None and reminder.timezone == "UTC"

    # Not before its time.
    assert fire_due_reminders(lifecycle(slack).core) == 0
    clock.at(due - timedelta(seconds=1))
    assert fire_due_reminders(lifecycle(slack).core) == 0

    with replica(slack, database_url, policy, clock) as other:
        clock.at(due + timedelta(seconds=30))
        assert fire_together(lifecycle(slack), lifecycle(other)) == 1
        (posted,) = alarms(slack.ws)
        assert "the deploy freeze starts" in posted
        assert "<!here>" not in posted  # written by a person through the model: neutralised
        assert "late" not in posted
        assert fire_together(lifecycle(slack), lifecycle(other)) == 0
    (reminder,) = reminders(slack)
    assert reminder.next_at is None and reminder.fired_count == 1
    (audited,) = fired_audits(slack)
    assert audited.subject == f"reminder:{reminder.id}"
    assert slack.store.verify_audit()[1] == []


def test_a_weekly_reminder_survives_a_restart_is_cancellable_and_comes_back_on_undo(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path
) -> None:
    policy = task_policy(tmp_path)
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    quiet(slack.bot)
    first = next_monday_9_berlin(utcnow())
    _action, card = slack.mention_and_card("remind weekly Rotate the API keys")
    shown = card_text(card)
    # The dry run shows the next three times in the reminder's own time zone.
    for k in range(3):
        local = (first + timedelta(weeks=k)).astimezone(BERLIN)
        assert f"Mon {local:%Y-%m-%d} 09:00 {local.tzname()}" in shown
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    (reminder,) = reminders(slack)
    assert reminder.next_at == first and reminder.cron == "0 9 * * mon"
    assert reminder.timezone == "Europe/Berlin"

    # A restart: the reminder is a row, so the next Warden fires it.
    slack.bot.stop()
    after = slack_factory(policy_=policy, clock=clock)
    quiet(after.bot)
    clock.at(first + timedelta(minutes=1))
    assert fire_due_reminders(lifecycle(after).core) == 1
    assert lifecycle(after).workers.wait_idle(30)
    (posted,) = alarms(after.ws)
    assert "Rotate the API keys" in posted and "late" not in posted
    second = next_monday_9_berlin(first)
    assert reminders(after)[0].next_at == second

    with replica(after, database_url, policy, clock) as other:
        clock.at(second + timedelta(seconds=20))
        assert fire_together(lifecycle(after), lifecycle(other)) == 1
        assert len(alarms(after.ws)) == 2
        third = next_monday_9_berlin(second)
        assert reminders(after)[0].next_at == third

        # Cancelled, it does not fire; the cancel undone, it fires again.
        cancelled = approve(after, f"cancel reminder {reminder.id}")
        assert reminders(after)[0].cancelled_at is not None
        assert undo(after, cancelled).status == ActionStatus.UNDONE
        assert reminders(after)[0].cancelled_at is None
        clock.at(third + timedelta(seconds=20))
        assert fire_together(lifecycle(after), lifecycle(other)) == 1
        assert len(alarms(after.ws)) == 3

        approve(after, f"cancel reminder {reminder.id}")
        for week in range(1, 4):
            clock.at(third + timedelta(weeks=week, minutes=1))
            assert fire_together(lifecycle(after), lifecycle(other)) == 0
        assert len(alarms(after.ws)) == 3
    assert len(fired_audits(after)) == 3


def test_occurrences_missed_while_warden_was_down_or_paused_post_once(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    policy = task_policy(tmp_path)
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    quiet(slack.bot)
    approve(slack, "remind weekly Check the backups")
    (reminder,) = reminders(slack)
    first = reminder.next_at
    assert first is not None
    slack.bot.stop()

    # Down for three weeks and a day: three occurrences missed, one post.
    clock.at(first + timedelta(weeks=2, days=1))
    after = slack_factory(policy_=policy, clock=clock)
    quiet(after.bot)
    assert fire_due_reminders(lifecycle(after).core) == 1
    assert fire_due_reminders(lifecycle(after).core) == 0
    assert lifecycle(after).workers.wait_idle(30)
    (posted,) = alarms(after.ws)
    due = when(first, "Europe/Berlin")
    assert "Check the backups" in posted and f"due {due}; posted late" in posted
    upcoming_at = next_monday_9_berlin(clock())
    assert reminders(after)[0].next_at == upcoming_at

    # Paused: nothing fires; after /resume the occurrence missed fires once.
    assert after.ws.slash(ADMIN, CHANNEL, "/pause", "maintenance").status == 200
    after.idle()
    clock.at(upcoming_at + timedelta(minutes=10))
    assert fire_due_reminders(lifecycle(after).core) == 0
    assert after.ws.slash(ADMIN, CHANNEL, "/resume").status == 200
    after.idle()
    assert fire_due_reminders(lifecycle(after).core) == 1
    assert lifecycle(after).workers.wait_idle(30)
    assert len(alarms(after.ws)) == 2


def test_floods_the_past_and_the_admin_channel_are_refused_with_a_reason(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=task_policy(tmp_path))
    flood = slack.ws.mention(REQUESTER, CHANNEL, "remind every minute Drink water")
    assert flood.status == 200
    slack.idle()
    said = answers(slack, slack.ws.calls("reactions.add")[0].params["timestamp"])
    assert "fires more often than every 5 minutes" in said
    assert "a reminder may repeat at most every 5 minutes" in said
    old = slack.ws.mention(REQUESTER, CHANNEL, "remind at 2020-01-06T09:00:00Z Old news")
    assert old.status == 200
    slack.idle()
    said = answers(slack, slack.ws.calls("reactions.add")[-1].params["timestamp"])
    assert "is in the past" in said
    # Where a reminder may post is the gate's rule: never the admin channel.
    action, card = slack.mention_and_card("remind ops Rotate keys")
    assert action.status == ActionStatus.REFUSED
    assert "admin channel" in card_text(card)
    assert reminders(slack) == []


# -- the schedule, unit by unit ---------------------------------------------------------------


def test_the_firing_job_runs_every_15_seconds_on_every_replica() -> None:
    (job,) = [j for j in JOBS if j.func == FIRE_JOB]
    assert job.seconds == 15 and not job.once


def test_weekday_numbers_mean_what_cron_means() -> None:
    sunday_noon = datetime(2026, 12, 6, 12, tzinfo=UTC)  # a Sunday
    cases = {
        "0 9 * * 1": ["Mon"],
        "0 9 * * 0": ["Sun"],
        "0 9 * * 7": ["Sun"],
        "0 9 * * 1-5": ["Mon", "Tue", "Wed", "Thu", "Fri"],
        "0 9 * * mon-fri": ["Mon", "Tue", "Wed", "Thu", "Fri"],
        "0 9 * * */2": ["Tue", "Thu", "Sat", "Sun"],
    }
    for cron, days in cases.items():
        times = upcoming(cron, "UTC", sunday_noon, 7)
        assert sorted({t.strftime("%a") for t in times}) == sorted(days), cron


def test_a_schedule_follows_its_time_zone_across_daylight_saving() -> None:
    times = upcoming("0 9 * * mon", "Europe/Berlin", datetime(2027, 3, 20, tzinfo=UTC), 2)
    assert [t.hour for t in times] == [8, 7]  # 09:00 CET, then 09:00 CEST
    assert [when(t, "Europe/Berlin")[-4:] for t in times] == [" CET", "CEST"]


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("*/4 * * * *", "more often than every 5 minutes"),
        ("0,59 * * * *", "more often than every 5 minutes"),  # 23:59 then 00:00
        ("0 9 * *", "has 4 fields"),
        ("0 9 1 * mon", "a day of month and a day of week"),
        ("0 0 30 2 *", "never fires"),
        ("61 9 * * *", "higher than the maximum"),
        ("0 9 * * 5-1", "from low to high"),
    ],
)
def test_bad_schedules_are_refused_with_a_reason(cron: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_frequency(cron, "UTC")


def test_every_five_minutes_is_allowed() -> None:
    check_frequency("*/5 * * * *", "UTC")
    trigger("0 9 * * mon", "America/New_York")


def test_reminder_arguments_are_checked(tmp_path: Path) -> None:
    from bot.app import build_registry

    tool = build_registry(task_policy(tmp_path)).get("create_reminder")
    ok = tool.validate(
        {"channel": "<#C0GENERAL|general>", "text": "hi", "cron": "0 9 * * mon", "timezone": "UTC"}
    )
    assert isinstance(ok, ReminderArgs) and ok.channel == "C0GENERAL"
    one_off = {"channel": "C0GENERAL", "text": "hi"}
    bad = [
        ("give either `cron`", one_off),
        ("give either `cron`", {**ok.model_dump(), "at": "2099-01-01T09:00:00Z"}),
        ("a repeating reminder needs `timezone`", {**one_off, "cron": "0 9 * * mon"}),
        ("not a time zone", {**one_off, "cron": "0 9 * * mon", "timezone": "Mars/Olympus"}),
        ("timezone", {**one_off, "at": "2099-01-01T09:00:00"}),
        ("is in the past", {**one_off, "at": "2020-01-01T09:00:00+01:00"}),
        ("not a Slack channel id", {**one_off, "channel": "general", "at": "2099-01-01T09:00Z"}),
        ("Extra inputs are not permitted", {**one_off, "at": "2099-01-01T09:00Z", "x": 1}),
    ]
    for why, args in bad:
        with pytest.raises(ToolArgumentsError) as err:
            tool.validate(args)
        assert why in str(err.value), (why, str(err.value))


def test_zones_names_and_offsets() -> None:
    assert str(zone("Europe/Berlin")) == "Europe/Berlin"
    assert zone("UTC+02:00").utcoffset(None) == timedelta(hours=2)
    assert zone("UTC-05:30").utcoffset(None) == -timedelta(hours=5, minutes=30)
    for bad in ("", "../../etc/passwd", "Not/AZone", "UTC+25:00"):
        with pytest.raises(ValueError):
            zone(bad)
    one_off = ReminderArgs.model_validate(
        {"channel": "C0GENERAL", "text": "hi", "at": "2099-01-05T09:00:00+01:00"}
    )
    assert one_off.at is not None and one_off.at.astimezone(UTC).hour == 8
    assert date(2099, 1, 5) == one_off.at.date()


def test_a_task_listing_is_plain_json_for_the_model(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=task_policy(tmp_path), claude=anthropic_stub)
    slack.mention_and_card("task Rotate the staging keys")
    anthropic_stub.enqueue(
        reply(tool_use("list_tasks", {"status": "all"})),
        reply(tool_use(CANNOT_HELP, {"reason": "Listed them."})),
    )
    slack.ws.mention(REQUESTER, CHANNEL, "show me everything on the list")
    slack.idle()
    (result,) = anthropic_stub.seen[-1].tool_results()
    content = str(result["content"])
    body = content[content.index("\n") + 1 : content.rindex("\n")]
    (item,) = json.loads(body)
    assert item["title"] == "Rotate the staging keys" and item["status"] == "open"
    assert item["channel"] == CHANNEL and item["created_by"] == REQUESTER
