"""Incidents, through signed Slack requests on both databases.

Declared from a mention, approved on its card: the channel `#inc-<date>-<slug>` exists (dated
by Warden's clock), the summary is posted there, the responders are in it, the topic says
severity, status and lead, and the incident row is open. Roles, severity (sev1 needs four
eyes), status updates, timeline entries and the resolution change it, each posted in the
incident channel; the export shows the whole timeline in order. Each undo reverses its own
change; the undo of a declaration archives the channel. The lead is reminded once when no
status update came for `status_update_every` — once with two Wardens on one database, and not
after the resolution (Warden's clock moved on, never slept). A channel name that is taken is
a clear failure; the open-incidents lookup never shows a private incident's title elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlmodel import col, select

from bot.chat import Chat
from bot.claude import CANNOT_HELP
from bot.errors import ToolArgumentsError
from bot.incident_reminders import remind_due_incidents
from bot.incident_words import channel_name
from bot.incidents import incident_tools
from bot.jobs import JOBS
from bot.lifecycle import Lifecycle
from bot.policy import Policy, parse_policy
from bot.policy_types import Risk
from bot.settings import Settings
from bot.tools import Tool, ToolContext, ToolResult
from devslack import Persona, Workspace
from handlers.runtime import Running, start
from handlers.slack_client import SlackChat
from storage.db import Database
from storage.models import ActionStatus, AuditEvent, Incident, IncidentStatus, utcnow
from storage.repo import Store
from tests.anthropic_stub import AnthropicStub, reply, tool_use
from tests.conftest import APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, SECRET, TOKEN, Slack, SlackFactory, buttons, card_text

REMIND_JOB = "bot.jobs:remind_incident_leads"
WARDEN = "U0WARDEN"

ALIASES = {
    "declare incident {severity} {title} with {responders}": {"tool": "declare_incident"},
    "declare private incident {severity} {title}": {
        "tool": "declare_incident",
        "args": {"private": "true"},
    },
    "declare incident {severity} {title}": {"tool": "declare_incident"},
    "incident {incident} update {text}": {"tool": "post_incident_update"},
    "incident {incident} note {text}": {"tool": "add_incident_timeline_entry"},
    "incident {incident} severity {severity}": {"tool": "set_incident_severity"},
    "incident {incident} lead {person}": {"tool": "assign_incident_role", "args": {"role": "lead"}},
    "incident {incident} comms {person}": {
        "tool": "assign_incident_role",
        "args": {"role": "comms"},
    },
    "resolve incident {incident} {summary}": {"tool": "resolve_incident"},
}


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self, shift: timedelta = timedelta(0)) -> None:
        self.shift = shift

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def incident_policy(tmp_path: Path, **incidents: Any) -> Policy:
    data = policy_data(tmp_path)
    data["aliases"].update(ALIASES)
    if incidents:
        data["incidents"] = incidents
    return parse_policy(data)


def quiet(running: Running) -> None:
    """The tests remind explicitly; the real 30-second job would race them."""
    running.warden.jobs.scheduler.remove_job(REMIND_JOB)


def lifecycle(running: Running | Slack) -> Lifecycle:
    bot = running.bot if isinstance(running, Slack) else running
    return bot.warden.lifecycle


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


def remind_together(*instances: Lifecycle, times: int = 2) -> int:
    """Every instance runs the reminder job at the same moment, `times` each; how many posted."""
    for lc in instances:
        # The clock jumped: each replica says it is alive at the new time, or the others would
        # take its outbox rows over as a dead one's.
        lc.store.heartbeat(lc.owner, lc.core.clock())
    with ThreadPoolExecutor(len(instances) * times) as pool:
        posted = sum(pool.map(lambda lc: remind_due_incidents(lc.core), list(instances) * times))
    for lc in instances:
        assert lc.workers.wait_idle(30)
    return posted


def incidents(slack: Slack) -> list[Incident]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Incident).order_by(col(Incident.id))).all())


def channel_named(ws: Workspace, name: str) -> str | None:
    return next((c for c, n in ws.channels.items() if n == name), None)


def posts(ws: Workspace, channel: str, start: str) -> list[str]:
    """Messages in `channel` starting with `start`, oldest first."""
    return [
        str(m.get("text") or "")
        for m in ws.messages(channel)
        if str(m.get("text") or "").startswith(start)
    ]


def topic_of(ws: Workspace, channel: str) -> str:
    return str(ws.conversation(channel)["topic"]["value"])


def approve(slack: Slack, text: str, approver: str = APPROVER, user: str = REQUESTER) -> Any:
    action, card = slack.mention_and_card(text, user)
    assert action.status == ActionStatus.AWAITING_APPROVAL, action.status_note
    assert slack.ws.click(approver, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


def undo(slack: Slack, action: Any, user: str = APPROVER) -> Any:
    # The card's update may be a retried delivery (a racing worker): wait for its Undo.
    card = slack.ws.wait_until(
        lambda: (
            (c := slack.ws.message(action.channel, action.card_ts)) and "Undo" in buttons(c) and c
        ),
        timeout=30,
    )
    assert slack.ws.click(user, action.channel, card["ts"], "warden_undo").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


def ask_claude(
    slack: Slack, stub: AnthropicStub, tool: str, args: dict[str, Any], channel: str = CHANNEL
) -> str:
    """A free-form question whose model runs one lookup: what the lookup answered."""
    stub.enqueue(reply(tool_use(tool, args)), reply(tool_use(CANNOT_HELP, {"reason": "Done."})))
    assert (
        slack.ws.mention(REQUESTER, channel, "what is going on with our incidents?").status == 200
    )
    slack.idle()
    (result,) = stub.seen[-1].tool_results()
    assert not result.get("is_error"), result
    fenced = str(result["content"])
    assert fenced.startswith(f'<data source="result of {tool}">\n'), fenced
    return fenced.split("\n", 1)[1].removesuffix("\n</data>")


# -- through Slack ------------------------------------------------------------------------------


def test_an_incident_is_declared_run_resolved_and_exported_through_slack(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    # Warden's clock is three days ahead: the channel is named for its date, not the host's.
    clock = Clock(timedelta(days=3))
    slack = slack_factory(policy_=incident_policy(tmp_path), clock=clock, claude=anthropic_stub)
    quiet(slack.bot)
    day = clock().date()
    name = f"inc-{day:%Y%m%d}-checkout-is-slow"

    action, card = slack.mention_and_card(
        f"declare incident SEV2 Checkout is slow with {APPROVER2}"
    )
    assert action.tool == "declare_incident" and action.risk == "medium"
    shown = card_text(card)
    assert f"Would create the public channel #{name} (the name is free)" in shown, shown
    assert "invite @riley, @blake" in shown and "Topic: SEV2 · Open · Lead: @riley" in shown
    assert channel_named(slack.ws, name) is None  # nothing happens before the click
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    declared = slack.store.get_action(action.id)
    assert declared.status == ActionStatus.SUCCEEDED, declared.result_note

    channel = channel_named(slack.ws, name)
    assert channel is not None
    (incident,) = incidents(slack)
    assert incident.status == IncidentStatus.OPEN and incident.channel == channel
    assert incident.severity == "sev2" and incident.lead == REQUESTER
    assert incident.declared_at.date() == day != utcnow().date()
    assert slack.ws.members(channel) == {WARDEN, REQUESTER, APPROVER2}
    assert topic_of(slack.ws, channel) == "SEV2 · Open · Lead: @riley"
    assert slack.ws.conversation(channel)["purpose"]["value"] == "Checkout is slow"
    (summary,) = posts(slack.ws, channel, ":rotating_light:")
    assert f"*INC-{incident.id} · SEV2 — Checkout is slow*" in summary
    assert f"Declared by <@{REQUESTER}> · Lead: <@{REQUESTER}>" in summary
    final = card_text(slack.card(action.id))
    assert "Succeeded" in final and f"<#{channel}>" in final
    n = incident.id

    # The lead changes: invited, announced, the topic follows.
    assert approve(slack, f"incident {n} lead {APPROVER}").status == ActionStatus.SUCCEEDED
    assert APPROVER in slack.ws.members(channel)
    assert topic_of(slack.ws, channel) == "SEV2 · Open · Lead: @avery"
    assert posts(slack.ws, channel, ":busts_in_silhouette:") == [
        f":busts_in_silhouette: <@{APPROVER}> is now the incident lead, assigned by <@{REQUESTER}>."
    ]

    # Raising to sev1 is high risk: four eyes, the requester may not approve it.
    action, card = slack.mention_and_card(f"incident INC-{n} severity 1")
    assert action.risk == "high" and "from SEV2 to SEV1" in card_text(card)
    slack.ws.click(REQUESTER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    assert topic_of(slack.ws, channel) == "SEV1 · Open · Lead: @avery"
    assert posts(slack.ws, channel, ":rotating_light: Severity") == [
        f":rotating_light: Severity changed: SEV2 → SEV1, by <@{REQUESTER}>."
    ]

    # A status update is posted (neutralised) and recorded; a timeline note only recorded.
    update = approve(slack, f"incident {n} update Rolled back the 09:05 deploy <!channel>")
    assert update.status == ActionStatus.SUCCEEDED, update.result_note
    (posted,) = posts(slack.ws, channel, ":mega:")
    assert "Rolled back the 09:05 deploy" in posted and "<!channel>" not in posted
    before = len(slack.ws.messages(channel))
    assert approve(slack, f"incident {n} note Paged the DB on-call").status == "succeeded"
    assert len(slack.ws.messages(channel)) == before

    resolved = approve(slack, f"resolve incident {n} A bad config push; rolled back")
    assert resolved.status == ActionStatus.SUCCEEDED, resolved.result_note
    (incident,) = incidents(slack)
    assert incident.status == IncidentStatus.RESOLVED and incident.next_reminder_at is None
    assert incident.summary == "A bad config push; rolled back"
    assert topic_of(slack.ws, channel) == "SEV1 · Resolved · Lead: @avery"
    (done,) = posts(slack.ws, channel, ":white_check_mark:")
    assert f"*INC-{n} resolved* by <@{REQUESTER}>" in done and "A bad config push" in done

    # The export: every entry, in order, with who and when.
    text = ask_claude(slack, anthropic_stub, "export_incident_timeline", {"incident": n})
    timeline = text[text.index("Timeline (UTC):") :]
    order = [
        f"declared · <@{REQUESTER}> · SEV2, lead <@{REQUESTER}>: Checkout is slow",
        f"lead · <@{REQUESTER}> · lead: <@{REQUESTER}> → <@{APPROVER}>",
        "severity · ",
        "severity SEV2 → SEV1",
        "status update · ",
        "Rolled back the 09:05 deploy",
        "note · ",
        "Paged the DB on-call",
        "resolved · ",
        "A bad config push; rolled back",
    ]
    positions = [timeline.index(piece) for piece in order]
    assert positions == sorted(positions), timeline
    assert f"{day:%Y-%m-%d}" in timeline and "UTC" in text
    assert f"INC-{n} · SEV1 · resolved · <#{channel}> (#{name})" in text
    assert slack.store.verify_audit()[1] == []


def test_each_undo_reverses_its_own_change_and_undoing_a_declaration_archives(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=incident_policy(tmp_path))
    quiet(slack.bot)
    declared = approve(slack, "declare incident sev3 Search is flaky")
    (incident,) = incidents(slack)
    n, channel = incident.id, incident.channel
    assert channel is not None

    comms = approve(slack, f"incident {n} comms {APPROVER2}")
    assert incidents(slack)[0].comms == APPROVER2
    assert topic_of(slack.ws, channel) == "SEV3 · Open · Lead: @riley · Comms: @blake"
    assert undo(slack, comms).status == ActionStatus.UNDONE
    assert incidents(slack)[0].comms is None
    assert topic_of(slack.ws, channel) == "SEV3 · Open · Lead: @riley"

    severity = approve(slack, f"incident {n} severity sev2")
    assert incidents(slack)[0].severity == "sev2"
    assert undo(slack, severity).status == ActionStatus.UNDONE
    assert incidents(slack)[0].severity == "sev3"
    assert topic_of(slack.ws, channel) == "SEV3 · Open · Lead: @riley"

    # An undo leaves a value someone changed since.
    lead = approve(slack, f"incident {n} lead {APPROVER}")
    approve(slack, f"incident {n} lead {APPROVER2}")
    assert undo(slack, lead).status == ActionStatus.UNDO_FAILED
    assert incidents(slack)[0].lead == APPROVER2

    note = approve(slack, f"incident {n} note Restarted the indexer")
    assert undo(slack, note).status == ActionStatus.UNDONE
    timeline = slack.store.incident_timeline(n)
    assert "Restarted the indexer" not in [e.text for e in timeline]

    resolved = approve(slack, f"resolve incident {n} The indexer ran out of disk")
    assert incidents(slack)[0].status == IncidentStatus.RESOLVED
    assert undo(slack, resolved).status == ActionStatus.UNDONE
    reopened = incidents(slack)[0]
    assert reopened.status == IncidentStatus.OPEN and reopened.next_reminder_at is not None
    assert topic_of(slack.ws, channel).startswith("SEV3 · Open")
    assert posts(slack.ws, channel, ":leftwards_arrow_with_hook:")[-1].endswith("is open again.")

    assert undo(slack, declared).status == ActionStatus.UNDONE
    assert slack.ws.conversation(channel)["is_archived"] is True
    cancelled = incidents(slack)[0]
    assert cancelled.status == IncidentStatus.CANCELLED and cancelled.next_reminder_at is None
    kinds = [e.kind for e in slack.store.incident_timeline(n)]
    assert kinds[0] == "declared" and kinds[-1] == "cancelled"
    assert "comms_restored" in kinds and "severity_restored" in kinds and "reopened" in kinds
    # A cancelled incident takes no more changes: the card is refused up front.
    action, card = slack.mention_and_card(f"incident {n} update anyone there?")
    assert action.status == ActionStatus.REFUSED
    assert f"there is no incident INC-{n}" in card_text(card)


def test_the_lead_is_reminded_once_when_no_status_update_came_across_two_replicas(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path
) -> None:
    policy = incident_policy(tmp_path, status_update_every="30m")
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    quiet(slack.bot)
    approve(slack, "declare incident sev2 Login errors")
    (incident,) = incidents(slack)
    assert incident.channel is not None
    start_at = incident.declared_at
    assert incident.next_reminder_at == start_at + timedelta(minutes=30)

    def bells() -> list[str]:
        return posts(slack.ws, incident.channel or "", ":bell:")

    with replica(slack, database_url, policy, clock) as other:
        a, b = lifecycle(slack), lifecycle(other)
        clock.shift = start_at + timedelta(minutes=29) - utcnow()
        assert remind_together(a, b) == 0
        clock.shift = start_at + timedelta(minutes=31) - utcnow()
        assert remind_together(a, b) == 1
        (bell,) = bells()
        assert bell.startswith(f":bell: <@{REQUESTER}>, INC-{incident.id} (SEV2)")
        assert "no status update for 31m" in bell
        assert remind_together(a, b) == 0  # claimed: the next one is 30 minutes on

        # A status update at +40m puts the next reminder at +70m.
        clock.shift = start_at + timedelta(minutes=40) - utcnow()
        assert approve(slack, f"incident {incident.id} update Fix deploying").status == "succeeded"
        clock.shift = start_at + timedelta(minutes=65) - utcnow()
        assert remind_together(a, b) == 0
        clock.shift = start_at + timedelta(minutes=71) - utcnow()
        assert remind_together(a, b) == 1
        assert len(bells()) == 2

        # Resolved: never again.
        approve(slack, f"resolve incident {incident.id} Fixed by the 10:10 deploy")
        clock.shift = start_at + timedelta(hours=5) - utcnow()
        assert remind_together(a, b) == 0
    assert len(bells()) == 2
    with slack.store.db.read() as s:
        reminded = s.exec(
            select(AuditEvent).where(col(AuditEvent.kind) == "incident.reminded")
        ).all()
    assert [r.subject for r in reminded] == [f"incident:{incident.id}"] * 2
    assert slack.store.verify_audit()[1] == []


def test_a_taken_channel_name_is_a_clear_failure(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=incident_policy(tmp_path))
    quiet(slack.bot)
    name = channel_name("Checkout is slow", utcnow().date())
    taken = slack.ws.add_channel(name)
    action, card = slack.mention_and_card("declare incident sev2 Checkout is slow")
    assert f"#{name} already exists: this declaration would fail" in card_text(card)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    action = slack.store.get_action(action.id)
    assert action.status == ActionStatus.FAILED
    note = action.result_note or ""
    assert f"#{name} already exists" in note and "was not declared" in note, note
    assert f"#{name} already exists" in card_text(slack.card(action.id))
    # Nothing half-made: the incident is cancelled (never listed open), nobody was invited.
    (incident,) = incidents(slack)
    assert incident.status == IncidentStatus.CANCELLED and incident.channel is None
    assert slack.store.open_incidents() == []
    assert slack.ws.calls("conversations.invite") == []
    assert [n for n in slack.ws.channels.values() if n == name] == [name]
    assert slack.ws.messages(taken) == []


def test_open_incidents_never_show_a_private_incidents_title_elsewhere(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=incident_policy(tmp_path), claude=anthropic_stub)
    quiet(slack.bot)
    approve(slack, "declare incident sev3 Search is flaky")
    approve(slack, "declare private incident sev1 Payroll export leaked")
    public, private = incidents(slack)
    assert private.private and private.channel is not None
    assert slack.ws.conversation(private.channel)["is_private"] is True

    listed = json.loads(ask_claude(slack, anthropic_stub, "list_open_incidents", {}))
    assert [i["number"] for i in listed] == [f"INC-{private.id}", f"INC-{public.id}"]  # sev1 first
    secret, known = listed
    assert known["title"] == "Search is flaky" and known["channel"] == public.channel
    assert "Payroll" not in json.dumps(secret) and "payroll" not in json.dumps(secret)
    assert secret["severity"] == "sev1" and secret["lead"] == REQUESTER
    assert secret["channel"] == private.channel and secret["channel_name"] is None
    refused = ask_claude(
        slack, anthropic_stub, "export_incident_timeline", {"incident": private.id}
    )
    assert "is private" in refused and "Payroll" not in refused

    # Asked in the private incident's own channel, it is all there.
    inside = ask_claude(slack, anthropic_stub, "list_open_incidents", {}, channel=private.channel)
    assert "Payroll export leaked" in inside
    there = ask_claude(
        slack, anthropic_stub, "export_incident_timeline", {"incident": private.id}, private.channel
    )
    assert "Payroll export leaked" in there

    approve(slack, f"resolve incident {public.id} The indexer ran out of disk")
    listed = json.loads(ask_claude(slack, anthropic_stub, "list_open_incidents", {}))
    assert [i["number"] for i in listed] == [f"INC-{private.id}"]


def test_preconditions_refuse_a_missing_incident_up_front(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=incident_policy(tmp_path))
    quiet(slack.bot)
    action, card = slack.mention_and_card("incident 99 update all good")
    assert action.status == ActionStatus.REFUSED
    assert "there is no incident INC-99" in card_text(card)
    approve(slack, "declare incident sev4 Typo on the status page")
    (incident,) = incidents(slack)
    approve(slack, f"resolve incident {incident.id} Fixed the typo")
    action, card = slack.mention_and_card(f"incident {incident.id} severity sev3")
    assert action.status == ActionStatus.REFUSED
    assert f"INC-{incident.id} is resolved" in card_text(card)
    # A note after the fact is welcome on a resolved incident.
    assert (
        approve(slack, f"incident {incident.id} note Post-mortem on Friday").status == "succeeded"
    )
    assert slack.ws.calls("conversations.create")[-1].params.get("name", "").startswith("inc-")


# -- the tools against the workspace, called as the executor calls them ------------------------


class Crash(BaseException):
    """The process dies here: nothing after it in the tool runs."""


class CrashAfter:
    """The workspace's chat, dying right after `method` has done its work."""

    def __init__(self, chat: Chat, method: str) -> None:
        self.chat = chat
        self.method = method

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.chat, name)
        if name != self.method:
            return real

        def then_crash(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)
            raise Crash(name)

        return then_crash


@pytest.fixture
def ws() -> Iterator[Workspace]:
    workspace = Workspace(
        signing_secret="unused",
        bot_url="",
        bot_token=TOKEN,
        bot_user_id=WARDEN,
        personas=[Persona(id=p, name=p.lower(), label=p) for p in (REQUESTER, APPROVER, APPROVER2)],
        channels={CHANNEL: "general"},
    )
    workspace.start()
    yield workspace
    workspace.stop()


def tools_on(db: Database, tmp_path: Path) -> dict[str, Tool[Any]]:
    return {t.name: t for t in incident_tools(Store(db), incident_policy(tmp_path))}


def run(t: Tool[Any], raw: dict[str, Any], chat: Any, action_id: str = "act-1") -> ToolResult:
    ctx = ToolContext(
        action_id=action_id, trace_id="t", requester=REQUESTER, channel=CHANNEL, chat=chat
    )
    return t.run(t.validate(raw), ctx)


def summaries(store: Store) -> list[str]:
    return [r.text for r in store.outbox_rows() if r.text.startswith(":rotating_light: *INC")]


def test_declaring_twice_for_one_action_is_one_incident_even_after_a_crash(
    db: Database, ws: Workspace, tmp_path: Path
) -> None:
    store = Store(db)
    declare = tools_on(db, tmp_path)["declare_incident"]
    chat = SlackChat(WebClient(base_url=ws.api_url, token=TOKEN))
    raw = {"severity": "sev2", "title": "Queue backlog", "responders": [APPROVER]}

    # Crash once the channel exists and carries its note, before its id is stored: the retry
    # finds the row (stored first) and the channel by its note.
    with pytest.raises(Crash):
        run(declare, raw, CrashAfter(chat, "post_creation_note"), action_id="act-7")
    (row,) = store.open_incidents()
    assert row.channel is None and row.action_id == "act-7"
    first = run(declare, raw, chat, action_id="act-7")
    again = run(declare, raw, chat, action_id="act-7")
    assert first.ok and again.ok, (first.note, again.note)
    assert first.undo_data == again.undo_data
    assert first.undo_data["incident"] == row.id and first.undo_data["channel"] in ws.channels
    (row,) = store.open_incidents()
    assert row.channel == first.undo_data["channel"]
    assert [n for n in ws.channels.values() if n.endswith("queue-backlog")] == [row.channel_name]
    assert len(summaries(store)) == 1  # the summary is owed once
    assert ws.members(row.channel or "") == {WARDEN, REQUESTER, APPROVER}
    assert [e.kind for e in store.incident_timeline(int(row.id or 0))] == ["declared"]

    # Another action with the same title the same day: the name is taken, a clear failure.
    other = run(declare, raw, chat, action_id="act-8")
    assert not other.ok and not other.unknown
    assert "already exists" in other.note and "was not declared" in other.note
    assert len(store.open_incidents()) == 1


def test_a_crash_right_after_the_channel_was_made_needs_review(
    db: Database, ws: Workspace, tmp_path: Path
) -> None:
    store = Store(db)
    declare = tools_on(db, tmp_path)["declare_incident"]
    chat = SlackChat(WebClient(base_url=ws.api_url, token=TOKEN))
    raw = {"severity": "sev3", "title": "Disk filling"}
    with pytest.raises(Crash):
        run(declare, raw, CrashAfter(chat, "create_channel"), action_id="act-9")
    # No note says whose channel it is: a person decides, nothing is made twice.
    result = run(declare, raw, chat, action_id="act-9")
    assert not result.ok and result.unknown and "perhaps for this very call" in result.note
    assert len([n for n in ws.channels.values() if n.endswith("disk-filling")]) == 1
    (row,) = store.open_incidents()
    assert row.channel is None


def test_slack_refusals_become_plain_failures(db: Database, ws: Workspace, tmp_path: Path) -> None:
    tools = tools_on(db, tmp_path)
    chat = SlackChat(WebClient(base_url=ws.api_url, token=TOKEN))
    first = run(tools["declare_incident"], {"severity": "sev2", "title": "Cache down"}, chat)
    assert first.ok
    channel = first.undo_data["channel"]
    n = first.undo_data["incident"]
    # Someone archived the channel: the role changes, Slack refuses the rest, said plainly.
    WebClient(base_url=ws.api_url, token=TOKEN).conversations_archive(channel=channel)
    moved = run(
        tools["assign_incident_role"],
        {"incident": f"INC-{n}", "role": "lead", "person": APPROVER},
        chat,
        action_id="act-2",
    )
    assert moved.ok, moved.note
    assert Store(db).open_incidents()[0].lead == APPROVER
    assert f"nobody was invited: <#{channel}> is archived" in moved.note, moved.note
    assert f"the topic of <#{channel}> was not updated: <#{channel}> is archived" in moved.note


# -- units ---------------------------------------------------------------------------------------


def test_channel_names_are_dated_slugged_and_fit_slacks_limit() -> None:
    day = date(2026, 11, 25)
    assert channel_name("Checkout: 5xx in EU!", day) == "inc-20261125-checkout-5xx-in-eu"
    assert channel_name("Café crème outage", day) == "inc-20261125-cafe-creme-outage"
    # No Latin letters: "incident" and a short hash of the title (tests/test_review_chatops.py).
    assert channel_name("支付故障", day).startswith("inc-20261125-incident-")
    long = channel_name("payments " * 20, day)
    assert len(long) <= 80 and long.startswith("inc-20261125-payments-")
    assert not long.endswith("-") and long.endswith("payments")


def test_arguments_read_as_people_write_them(db: Database, tmp_path: Path) -> None:
    tools = tools_on(db, tmp_path)
    severity = tools["set_incident_severity"]
    for written in ("SEV1", "sev 1", "Sev-1", "1", 1):
        assert severity.validate({"incident": "INC-3", "severity": written}).severity == "sev1"
    for ref in ("3", "#3", "INC-3", "inc 3", "incident 3", 3):
        assert severity.validate({"incident": ref, "severity": "sev2"}).incident == 3
    for bad in ({"incident": "three", "severity": "sev2"}, {"incident": 3, "severity": "p1"}):
        with pytest.raises(ToolArgumentsError):
            severity.validate(bad)
    with pytest.raises(ToolArgumentsError, match="owner: Extra inputs"):
        tools["declare_incident"].validate({"severity": "sev2", "title": "x", "owner": "U1"})
    role = tools["assign_incident_role"].validate(
        {"incident": 2, "role": "lead", "person": f"<@{APPROVER}|avery>"}
    )
    assert role.person == APPROVER
    risks = {
        s: severity.risk_for(severity.validate({"incident": 1, "severity": s}))
        for s in (1, 2, 3, 4)
    }
    assert risks == {1: Risk.HIGH, 2: Risk.MEDIUM, 3: Risk.LOW, 4: Risk.LOW}


def test_the_reminder_interval_is_policy(tmp_path: Path) -> None:
    assert incident_policy(tmp_path).incidents.status_update_every == timedelta(minutes=30)
    assert incident_policy(tmp_path, status_update_every="45m").incidents.status_update_every == (
        timedelta(minutes=45)
    )
    with pytest.raises(Exception, match="status_update_every"):
        incident_policy(tmp_path, status_update_every="10s")
    with pytest.raises(Exception, match="status_update"):
        incident_policy(tmp_path, status_update="30m")


def test_the_reminder_job_runs_on_every_replica() -> None:
    (job,) = [j for j in JOBS if j.func == REMIND_JOB]
    assert job.seconds == 30 and not job.once
