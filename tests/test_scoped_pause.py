"""Scoped pauses (`/pause tool:NAME`, `channel:#C`, `tier:high`), timed pauses and their
auto-resume: each scope holds only its calls, the global pause still holds everything, a pause
that committed first wins over a claim (the gate and the claim's SQL guard agree), a timed
pause ends once across replicas and says so. Through signed Slack requests on both databases,
with Warden's clock moved forward instead of sleeping."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_registry
from bot.control import PauseOrder, Scope, parse_pause, parse_resume
from bot.gate import Gate
from bot.gate_pauses import held_tiers
from bot.gate_types import Now, Pause
from bot.policy import Policy
from bot.policy_types import Risk
from bot.settings import Settings
from handlers.runtime import Running, start
from storage.db import Database
from storage.models import Action, ActionStatus, PauseKind, Request, utcnow
from storage.repo import Audit, Store
from tests.conftest import ADMIN, APPROVER, REQUESTER
from tests.slack_fixtures import (
    CHANNEL,
    OPS,
    SECRET,
    TOKEN,
    Slack,
    SlackFactory,
    buttons,
    card_text,
)

AUTO_RESUME = "bot.jobs:auto_resume"
NOT_A_TOOL = lambda tool: None if tool in ("restart_service", "scale") else "no such tool"  # noqa: E731


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def said(delivery: Any) -> str:
    """What a slash command's ack said (Bolt answers JSON or plain text)."""
    assert delivery.status == 200, delivery.body
    try:
        return str(json.loads(delivery.body).get("text") or "")
    except ValueError:
        return str(delivery.body)


def slash(slack: Slack, user: str, command: str, text: str = "") -> str:
    out = said(slack.ws.slash(user, CHANNEL, command, text))
    slack.idle()
    return out


def ops(slack: Slack, word: str) -> list[str]:
    return [str(m.get("text") or "") for m in slack.ws.messages(OPS) if word in str(m.get("text"))]


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def ask(slack: Slack, channel: str, text: str) -> tuple[Action, dict[str, Any]]:
    """`text` asked of @warden in `channel`; the action it proposed and its card."""
    before = {a.id for a in slack.store.actions_with_status(list(ActionStatus), 1000)}
    assert slack.ws.mention(REQUESTER, channel, text).status == 200
    slack.idle()
    (action,) = [
        a for a in slack.store.actions_with_status(list(ActionStatus), 1000) if a.id not in before
    ]
    return action, slack.card(action.id)


def approve(slack: Slack, card: dict[str, Any], user: str = APPROVER) -> None:
    assert slack.ws.click(user, card["channel"], card["ts"], "warden_approve").status == 200
    slack.idle()


def status(slack: Slack, action: Action) -> str:
    row = slack.store.get_action(action.id)
    assert row is not None
    return str(row.status)


def control_audit(slack: Slack) -> list[tuple[str, str]]:
    return [(r.kind, r.actor) for r in slack.store.audit_rows(subject="control")]


def nothing_paused(store: Store) -> bool:
    pause, scopes = store.pauses()
    return not pause.paused and scopes == []


# -- what admins type ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope", "minutes", "reason"),
    [
        ("", None, None, ""),
        ("incident 7", None, None, "incident 7"),
        ("15m drill", None, 15, "drill"),
        ("tool:scale", Scope(kind=PauseKind.TOOL, value="scale"), None, ""),
        (
            "2h tool:scale deploy in progress",
            Scope(kind=PauseKind.TOOL, value="scale"),
            120,
            "deploy in progress",
        ),
        ("tool:scale 1h30m  deploy", Scope(kind=PauseKind.TOOL, value="scale"), 90, "deploy"),
        (
            "channel:<#C0DEPLOY|deploys> noisy",
            Scope(kind=PauseKind.CHANNEL, value="C0DEPLOY"),
            None,
            "noisy",
        ),
        ("channel:<#C0DEPLOY>", Scope(kind=PauseKind.CHANNEL, value="C0DEPLOY"), None, ""),
        ("channel:C0DEPLOY", Scope(kind=PauseKind.CHANNEL, value="C0DEPLOY"), None, ""),
        ("1d tier:HIGH", Scope(kind=PauseKind.TIER, value="high"), 1440, ""),
        ("7d tier:critical", Scope(kind=PauseKind.TIER, value="critical"), 7 * 1440, ""),
        ("10080m", None, 7 * 1440, ""),
        ("5xx errors spiking", None, None, "5xx errors spiking"),
        ("500 errors", None, None, "500 errors"),
    ],
)
def test_what_pause_understands(
    text: str, scope: Scope | None, minutes: int | None, reason: str
) -> None:
    duration = timedelta(minutes=minutes) if minutes is not None else None
    assert parse_pause(text, NOT_A_TOOL) == PauseOrder(
        scope=scope, duration=duration, reason=reason
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tool:nope", "no such tool"),
        ("tool:", "write the tool's name"),
        ("tier:urgent", "is not a tier"),
        ("channel:#deploys", "pick the channel from Slack's # menu"),
        ("channel:deploys", "pick the channel from Slack's # menu"),
        ("#deploys", "pick the channel from Slack's # menu"),
        ("30m #deploys", "pick the channel from Slack's # menu"),
        ("<#C0DEPLOY|deploys>", "write `channel:` before it"),
        ("8d tool:scale", "at most 7d"),
        ("0m", "at least a minute"),
        ("30s", "not a duration"),
        ("1.5h", "not a duration"),
        ("2w", "not a duration"),
        ("2d3d", "not a duration"),
    ],
)
def test_what_pause_refuses(text: str, error: str) -> None:
    result = parse_pause(text, NOT_A_TOOL)
    assert isinstance(result, str) and error in result


def test_what_resume_understands() -> None:
    assert parse_resume("") == parse_resume("  ")
    whole = parse_resume("")
    assert not isinstance(whole, str) and whole.scope is None and not whole.everything
    everything = parse_resume("ALL")
    assert not isinstance(everything, str) and everything.everything
    tool = parse_resume("tool:gone_since")  # a tool removed from the policy can be resumed
    assert not isinstance(tool, str) and tool.scope == Scope(
        kind=PauseKind.TOOL, value="gone_since"
    )
    assert isinstance(parse_resume("tier:soon"), str)
    assert parse_resume("everything") == ""


# -- the rule, and its two faces ---------------------------------------------------------------


def test_the_global_pause_holds_everything_a_scope_only_its_own(policy: Policy) -> None:
    gate = Gate(policy, build_registry(policy))
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    tool = Pause(
        kind=PauseKind.TOOL,
        value="scale",
        by=ADMIN,
        reason="deploy",
        until=at + timedelta(hours=2, minutes=30),
    )
    channel = Pause(kind=PauseKind.CHANNEL, value="C0DEPLOY", by=ADMIN)
    tier = Pause(kind=PauseKind.TIER, value="high", by=ADMIN, until=at + timedelta(days=1))
    now = Now(paused=False, at=at, pauses=(tool, channel, tier))
    assert gate.paused_for("scale", CHANNEL, Risk.MEDIUM, now) == (
        f"Paused for this tool by <@{ADMIN}> until 14:30 UTC: deploy"
    )
    assert gate.paused_for("restart_service", "C0DEPLOY", Risk.LOW, now) == (
        f"Paused for this channel by <@{ADMIN}>"
    )
    assert gate.paused_for("restart_service", CHANNEL, Risk.CRITICAL, now) == (
        f"Paused for high-risk actions and above by <@{ADMIN}> until Wed 02 Dec 12:00 UTC"
    )
    assert gate.paused_for("restart_service", CHANNEL, Risk.MEDIUM, now) is None
    assert gate.paused_for("post_message", CHANNEL, Risk.LOW, Now(paused=False, at=at)) is None
    everything = Now(paused=True, at=at)
    assert gate.paused_for("post_message", CHANNEL, Risk.LOW, everything) == (
        "Warden is paused: nothing runs until /resume"
    )
    timed = Now(paused=True, at=at, paused_until=at + timedelta(minutes=15))
    assert "until 12:15 UTC" in (gate.paused_for("scale", CHANNEL, Risk.LOW, timed) or "")


def _action(db: Database, n: int, tool: str, channel: str, risk: str) -> str:
    with db.write() as s:
        s.add(
            Request(
                id=f"r{n}",
                trace_id=f"t{n}",
                channel=channel,
                thread_ts=f"1.{n:06d}",
                message_ts=f"1.{n:06d}",
                requester=REQUESTER,
                text="something",
            )
        )
        s.flush()
        s.add(
            Action(
                id=f"a{n}",
                request_id=f"r{n}",
                trace_id=f"t{n}",
                tool=tool,
                args_json="{}",
                policy_version="v1",
                risk=risk,
                requester=REQUESTER,
                channel=channel,
                thread_ts=f"1.{n:06d}",
                status=ActionStatus.APPROVED,
            )
        )
    return f"a{n}"


def _start(store: Store, scope: Pause, at: datetime) -> int:
    row = store.start_pause_scope(
        kind=scope.kind.value,
        value=scope.value,
        tiers=held_tiers(Risk(scope.value)) if scope.kind is PauseKind.TIER else "",
        reason="",
        by=ADMIN,
        now=at,
        until=None,
        audit_=Audit(actor=ADMIN, kind="control.scope_paused"),
    )
    assert row is not None and row.id is not None
    return row.id


def _claim(store: Store, action_id: str) -> bool:
    won = store.transition(
        action_id,
        [ActionStatus.APPROVED],
        ActionStatus.EXECUTING,
        Audit(actor="warden", kind="action.executing"),
        unless_paused=True,
    )
    return won is not None


SCOPES = [
    Pause(kind=PauseKind.TOOL, value="restart_service", by=ADMIN),
    Pause(kind=PauseKind.TOOL, value="scale", by=ADMIN),
    Pause(kind=PauseKind.CHANNEL, value=CHANNEL, by=ADMIN),
    Pause(kind=PauseKind.CHANNEL, value="C0DEPLOY", by=ADMIN),
    *(Pause(kind=PauseKind.TIER, value=r.value, by=ADMIN) for r in Risk),
]
CALLS = list(itertools.product(["restart_service", "flush_cache"], [CHANNEL, "C0OTHER"], Risk))


def test_the_gate_and_the_claims_sql_guard_agree(db: Database, policy: Policy) -> None:
    """Over every kind of scope and every kind of call: the claim (`transition(…,
    unless_paused=True)`, the SQL face) wins exactly when the gate says no pause holds it."""
    store = Store(db)
    gate = Gate(policy, build_registry(policy))
    at = utcnow()
    n = 0
    disagreements = []
    held_somewhere = 0
    for scopes in [*([s] for s in SCOPES), [SCOPES[0], SCOPES[3], SCOPES[6]]]:
        ids = [_start(store, s, at) for s in scopes]
        now = Now(paused=False, at=at, pauses=tuple(scopes))
        for tool, channel, risk in CALLS:
            n += 1
            action_id = _action(db, n, tool, channel, risk.value)
            held = gate.paused_for(tool, channel, risk, now) is not None
            held_somewhere += held
            if _claim(store, action_id) == held:
                disagreements.append((scopes, tool, channel, risk, held))
        for scope_id in ids:
            assert store.end_pause_scope(scope_id, ADMIN, at, Audit(actor=ADMIN, kind="x"))
    assert disagreements == []
    assert 0 < held_somewhere < n  # the table has both answers
    # And the global pause holds every call, in both faces.
    assert store.set_paused(True, "", ADMIN, Audit(actor=ADMIN, kind="control.paused"))
    n += 1
    action_id = _action(db, n, "flush_cache", "C0OTHER", "low")
    assert gate.paused_for("flush_cache", "C0OTHER", Risk.LOW, Now(paused=True)) is not None
    assert not _claim(store, action_id)


def test_a_scope_committed_first_wins_over_a_claim_and_one_scope_is_active_at_a_time(
    db: Database,
) -> None:
    store = Store(db)
    at = utcnow()
    held = _action(db, 1, "restart_service", CHANNEL, "high")
    other = _action(db, 2, "flush_cache", CHANNEL, "high")
    scope_id = _start(store, SCOPES[0], at)
    # One active scope per (kind, value): a second pause of the same tool changes nothing.
    again = store.start_pause_scope(
        kind="tool",
        value="restart_service",
        tiers="",
        reason="again",
        by=ADMIN,
        now=at,
        until=None,
        audit_=Audit(actor=ADMIN, kind="control.scope_paused"),
    )
    assert again is None
    assert [s.id for s in store.active_pause_scopes()] == [scope_id]
    assert not _claim(store, held)
    assert _claim(store, other)
    assert status_of(store, held) == ActionStatus.APPROVED
    assert "action.executing" not in [r.kind for r in store.audit_rows(subject=held)]
    # Ended once: a second end (a replayed /resume, another replica) finds nothing to end.
    assert store.end_pause_scope(scope_id, ADMIN, at, Audit(actor=ADMIN, kind="x"))
    assert not store.end_pause_scope(scope_id, ADMIN, at, Audit(actor=ADMIN, kind="x"))
    assert _claim(store, held)
    # Once ended, the same scope may be paused again.
    assert _start(store, SCOPES[0], at) != scope_id
    assert store.verify_audit()[1] == []


def status_of(store: Store, action_id: str) -> str:
    row = store.get_action(action_id)
    assert row is not None
    return str(row.status)


# -- through Slack -----------------------------------------------------------------------------


def test_a_tool_pause_holds_only_that_tool(slack: Slack) -> None:
    reply = slash(slack, ADMIN, "/pause", "tool:restart_service deploy in progress")
    assert "Paused the tool `restart_service`" in reply and "Everything else runs" in reply
    assert ops(slack, f"<@{ADMIN}> paused the tool `restart_service`: deploy in progress.")

    action, card = slack.mention_and_card("restart web")
    shown = card_text(card)
    assert f"Paused for this tool by <@{ADMIN}>: deploy in progress." in shown
    approve(slack, card)
    assert slack.runs() == [] and status(slack, action) == ActionStatus.AWAITING_APPROVAL
    assert any("Paused for this tool" in t for t in ephemerals_to(slack, APPROVER))
    assert [a.approver for a in slack.store.approvals(action.id, 1)] == [APPROVER]

    # Another tool runs as usual.
    slack.approved_run("flush sessions")

    listing = slash(slack, APPROVER, "/warden", "status")
    assert "Running" in listing
    assert f"the tool `restart_service` — by <@{ADMIN}>: deploy in progress" in listing

    assert "Resumed the tool `restart_service`" in slash(
        slack, ADMIN, "/resume", "tool:restart_service"
    )
    slack.idle()
    assert slack.runs("restart") == [f"restart web {action.id}"]
    final = card_text(slack.card(action.id))
    assert "Succeeded" in final and "Paused for" not in final
    assert ops(slack, f"<@{ADMIN}> resumed the tool `restart_service`")
    assert control_audit(slack) == [
        ("control.scope_paused", ADMIN),
        ("control.scope_resumed", ADMIN),
    ]
    assert "is not paused" in slash(slack, ADMIN, "/resume", "tool:restart_service")


def test_a_channel_pause_holds_only_requests_asked_there(slack: Slack) -> None:
    deploys = slack.ws.add_channel("deploys")
    reply = slash(slack, ADMIN, "/pause", f"channel:<#{deploys}|deploys> noisy rollout")
    assert f"Paused actions asked in <#{deploys}>" in reply
    held, card = ask(slack, deploys, "flush sessions")
    assert "Paused for this channel" in card_text(card)
    approve(slack, card)
    assert slack.runs("flush") == [] and status(slack, held) == ActionStatus.AWAITING_APPROVAL

    # The same request in another channel runs.
    _elsewhere, card = ask(slack, CHANNEL, "flush sessions")
    assert "Paused for" not in card_text(card)
    approve(slack, card)
    assert slack.runs("flush") == ["flush sessions"]

    assert "Resumed" in slash(slack, ADMIN, "/resume", f"channel:<#{deploys}>")
    slack.idle()
    assert slack.runs("flush") == ["flush sessions", "flush sessions"]
    assert status(slack, held) == ActionStatus.SUCCEEDED


def test_a_tier_pause_holds_that_tier_and_above(slack: Slack) -> None:
    assert "Paused high-risk actions and above" in slash(slack, ADMIN, "/pause", "tier:high")
    slack.approved_run("flush sessions")  # medium: runs

    high, card = slack.mention_and_card("restart web")
    assert "Paused for high-risk actions and above" in card_text(card)
    approve(slack, card)  # approved, and still it waits
    assert slack.runs("restart") == [] and status(slack, high) == ActionStatus.AWAITING_APPROVAL

    # A critical call is held before its dry run: nothing to approve until it runs.
    critical, card = slack.mention_and_card("scale web in prod")
    assert critical.risk == Risk.CRITICAL and critical.preview is None
    assert "Held: Paused for high-risk actions and above" in card_text(card)
    assert "Approve" not in buttons(card)

    assert "Resumed high-risk actions and above" in slash(slack, ADMIN, "/resume", "tier:high")
    slack.idle()
    assert slack.runs("restart") == [f"restart web {high.id}"]
    row = slack.store.get_action(critical.id)
    assert row is not None and "would scale web in prod" in (row.preview or "")
    assert "Approve" in buttons(slack.card(critical.id))


def test_a_scope_committed_while_an_approved_action_is_about_to_be_claimed_wins(
    slack: Slack,
) -> None:
    lifecycle = slack.bot.warden.lifecycle
    core = lifecycle.core
    action, _card = slack.mention_and_card("restart web")
    assert slack.store.record_approval(action, APPROVER, core.audit(APPROVER, "approval.given"))
    won = slack.store.transition(
        action.id,
        [ActionStatus.AWAITING_APPROVAL],
        ActionStatus.APPROVED,
        core.audit(APPROVER, "action.approved"),
        values={"decided_by": APPROVER},
        unless_paused=True,
    )
    assert won is not None
    assert "Paused" in slash(slack, ADMIN, "/pause", "tool:restart_service")
    # An executor whose gate check saw nothing paused still loses to the pause in its claim.
    core.now = lambda: Now(paused=False, at=utcnow())  # type: ignore[method-assign]
    try:
        lifecycle.execution.execute(action.id)
    finally:
        del core.now
    slack.idle()
    assert slack.runs() == [] and status(slack, action) == ActionStatus.APPROVED
    assert "action.executing" not in [r.kind for r in slack.store.audit_rows(subject=action.id)]
    slash(slack, ADMIN, "/resume", "tool:restart_service")
    slack.idle()
    assert slack.runs() == [f"restart web {action.id}"]


@contextmanager
def replica(slack: Slack, database_url: str, policy: Policy, clock: Clock) -> Iterator[Running]:
    """A second Warden on the same database and Slack workspace."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    running = start(settings, host="127.0.0.1", port=0, policy=policy, clock=clock, upgrade=False)
    running.warden.jobs.scheduler.remove_job(AUTO_RESUME)
    try:
        yield running
    finally:
        running.stop()


def auto_resume_on(*replicas: Running) -> int:
    """Both replicas run the auto-resume job at the same moment, twice. Each first says it
    is alive at Warden's (moved) clock, as its heartbeat job would: otherwise a replica
    whose heartbeat the jump made old looks dead and the other takes over its outbox rows."""
    for r in replicas:
        lc = r.warden.lifecycle
        lc.store.heartbeat(lc.owner, lc.core.clock())
    with ThreadPoolExecutor(len(replicas) * 2) as pool:
        ended = sum(pool.map(lambda r: r.warden.lifecycle.sweeps.auto_resume(), replicas * 2))
    for r in replicas:
        assert r.warden.workers.wait_idle(30)
    return ended


def test_a_timed_scope_auto_resumes_once_across_two_replicas(
    slack_factory: SlackFactory, database_url: str, policy: Policy
) -> None:
    clock = Clock()
    slack = slack_factory(clock=clock)
    slack.bot.warden.jobs.scheduler.remove_job(AUTO_RESUME)
    with replica(slack, database_url, policy, clock) as second:
        reply = slash(slack, ADMIN, "/pause", "30m tool:restart_service deploy")
        assert "Paused the tool `restart_service` until " in reply and " UTC" in reply
        action, card = slack.mention_and_card("restart web")
        assert " until " in card_text(card)
        approve(slack, card)
        assert slack.runs() == []

        clock.shift = timedelta(minutes=29)
        assert auto_resume_on(slack.bot, second) == 0
        assert slack.runs() == [] and slack.store.active_pause_scopes() != []

        clock.shift = timedelta(minutes=31)
        assert auto_resume_on(slack.bot, second) == 1
        slack.idle()
        assert slack.runs() == [f"restart web {action.id}"]
        announced = ops(slack, "Auto-resumed")
        assert len(announced) == 1
        assert "the tool `restart_service`" in announced[0] and "for 30m: deploy" in announced[0]
        assert control_audit(slack) == [
            ("control.scope_paused", ADMIN),
            ("control.scope_resumed", "warden"),
        ]
        assert "Paused for" not in card_text(slack.card(action.id))
        assert nothing_paused(slack.store)
        assert auto_resume_on(slack.bot, second) == 0


def test_a_timed_global_pause_auto_resumes(slack_factory: SlackFactory) -> None:
    clock = Clock()
    slack = slack_factory(clock=clock)
    slack.bot.warden.jobs.scheduler.remove_job(AUTO_RESUME)
    reply = slash(slack, ADMIN, "/pause", "15m drill")
    assert reply.startswith(":double_vertical_bar: Paused for 15m (until ")
    assert "Nothing will run until then or /resume." in reply
    assert ops(slack, f"<@{ADMIN}> paused Warden for 15m (until ")
    assert " until " in slash(slack, APPROVER, "/warden", "status")
    _action, card = slack.mention_and_card("flush sessions")
    assert "Warden is paused until " in card_text(card)
    approve(slack, card)
    assert slack.runs("flush") == []

    clock.shift = timedelta(minutes=16)
    assert auto_resume_on(slack.bot) == 1
    slack.idle()
    assert slack.runs("flush") == ["flush sessions"]
    assert len(ops(slack, "Auto-resumed: Warden's pause")) == 1
    assert control_audit(slack) == [("control.paused", ADMIN), ("control.resumed", "warden")]
    assert "Running" in slash(slack, APPROVER, "/warden", "status")


def test_an_untimed_pause_never_auto_resumes(slack_factory: SlackFactory) -> None:
    clock = Clock()
    slack = slack_factory(clock=clock)
    slash(slack, ADMIN, "/pause", "tier:medium")
    slash(slack, ADMIN, "/pause", "incident")
    clock.shift = timedelta(days=30)
    assert auto_resume_on(slack.bot) == 0
    pause, scopes = slack.store.pauses()
    assert pause.paused and len(scopes) == 1


def test_scopes_survive_a_restart_and_resume_all_lifts_everything(
    slack_factory: SlackFactory,
) -> None:
    slack = slack_factory()
    action, card = slack.mention_and_card("restart web")
    slash(slack, ADMIN, "/pause", "tier:high change window")
    slash(slack, ADMIN, "/pause", "tool:scale")
    slack.bot.stop()  # Warden restarts…
    again = slack_factory()
    listing = said(again.ws.slash(APPROVER, CHANNEL, "/warden", "status"))
    assert "high-risk actions and above" in listing and "the tool `scale`" in listing
    again.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    again.idle()
    assert again.runs() == [] and status(again, action) == ActionStatus.AWAITING_APPROVAL
    assert said(again.ws.slash(ADMIN, CHANNEL, "/pause", "lunch")).startswith(
        ":double_vertical_bar: Paused."
    )

    reply = said(again.ws.slash(ADMIN, CHANNEL, "/resume", "all"))
    assert "Resumed everything" in reply and "Warden's pause" in reply
    again.idle()
    assert again.runs() == [f"restart web {action.id}"]
    assert nothing_paused(again.store)
    assert ops(again, f"<@{ADMIN}> resumed everything")
    kinds = [k for k, _ in control_audit(again)]
    assert kinds.count("control.scope_resumed") == 2 and kinds.count("control.resumed") == 1
    assert "Nothing is paused" in said(again.ws.slash(ADMIN, CHANNEL, "/resume", "all"))
    assert again.store.verify_audit()[1] == []


def test_the_home_tab_shows_the_pauses(slack: Slack) -> None:
    slash(slack, ADMIN, "/pause", "2h tool:scale deploy")
    slash(slack, ADMIN, "/pause", "incident 4")
    assert slack.ws.open_home(APPROVER).status == 200
    slack.idle()
    home = json.dumps(slack.ws.home(APPROVER))
    assert "*Paused* by" in home and "Scoped pauses" in home and "the tool `scale`" in home


@pytest.mark.parametrize(
    ("command", "text", "error"),
    [
        ("/pause", "tool:nope", "no tool called `nope`"),
        ("/pause", "tool:who_is_on_call", "a pause would hold nothing"),
        ("/pause", "tier:urgent", "is not a tier"),
        ("/pause", "8d tool:scale", "at most 7d"),
        ("/pause", "30s", "not a duration"),
        ("/pause", "channel:#deploys", "Slack's # menu"),
        ("/pause", "#deploys", "Slack's # menu"),
        ("/resume", "tier:soon", "is not a tier"),
        ("/resume", "everything", "Usage: `/resume`"),
    ],
)
def test_bad_input_is_a_clear_message_and_changes_nothing(
    slack: Slack, command: str, text: str, error: str
) -> None:
    reply = slash(slack, ADMIN, command, text)
    assert error in reply and "Usage:" in reply
    assert nothing_paused(slack.store)
    assert control_audit(slack) == [] and ops(slack, "paused") == []


def test_non_admins_are_refused(slack: Slack) -> None:
    assert "Only Warden admins" in slash(slack, APPROVER, "/pause", "tool:scale")
    assert "Only Warden admins" in slash(slack, REQUESTER, "/pause", "2h tier:low")
    slash(slack, ADMIN, "/pause", "tool:scale")
    assert "Only Warden admins" in slash(slack, APPROVER, "/resume", "all")
    assert "Only Warden admins" in slash(slack, APPROVER, "/resume", "tool:scale")
    assert [s.value for s in slack.store.active_pause_scopes()] == ["scale"]


def test_a_replayed_scoped_pause_is_deduped(slack: Slack) -> None:
    pause = slack.ws.slash(ADMIN, CHANNEL, "/pause", "tool:scale")
    assert "Paused the tool" in said(pause)
    assert "Resumed" in slash(slack, ADMIN, "/resume", "tool:scale")
    slack.ws.replay(pause)  # the same signed bytes (same trigger_id), inside Slack's window
    slack.idle()
    assert slack.store.active_pause_scopes() == []
    assert [k for k, _ in control_audit(slack)] == ["control.scope_paused", "control.scope_resumed"]


def test_pausing_a_scope_twice_says_so(slack: Slack) -> None:
    slash(slack, ADMIN, "/pause", "1h tool:scale first")
    reply = slash(slack, ADMIN, "/pause", "tool:scale second")
    assert "already paused by" in reply and "`/resume tool:scale`" in reply
    (scope,) = slack.store.active_pause_scopes()
    assert scope.reason == "first"
    assert len(ops(slack, "paused the tool")) == 1


def test_undo_is_held_by_a_scope_on_its_tool(slack: Slack) -> None:
    action = slack.approved_run("restart web")
    slash(slack, ADMIN, "/pause", "tool:restart_service")
    card = slack.card(action.id)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_undo").status == 200
    slack.idle()
    assert slack.runs("undo") == [] and status(slack, action) == ActionStatus.SUCCEEDED
    assert any("not even an undo" in t for t in ephemerals_to(slack, APPROVER))
    slash(slack, ADMIN, "/resume", "tool:restart_service")
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_undo").status == 200
    slack.idle()
    assert slack.runs("undo") == ["undo web"]


def test_a_card_shows_who_paused_it_and_until_when(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory()
    slash(slack, ADMIN, "/pause", "45m channel:C0GENERAL <@U0REQ> is deploying")
    _action, card = slack.mention_and_card("flush sessions")
    line = next(ln for ln in card_text(card).splitlines() if ln.startswith(":double_vertical_bar:"))
    assert line.startswith(f":double_vertical_bar: Paused for this channel by <@{ADMIN}> until ")
    assert "<@U0REQ>" not in line  # the reason is made safe: no pings from it


def test_an_outcome_check_waits_for_a_scope_on_its_tool(db: Database) -> None:
    """A runbook's outcome check is tool code too: its claim carries the same guard."""
    store = Store(db)
    at = utcnow()
    checks = [_action(db, n, tool, CHANNEL, "medium") for n, tool in ((1, "scale"), (2, "flush"))]
    with db.write() as s:
        for action_id in checks:
            row = s.get(Action, action_id)
            assert row is not None
            row.status, row.verify_status, row.verify_at = ActionStatus.SUCCEEDED, "pending", at
    _start(store, SCOPES[1], at)  # tool:scale
    audit = Audit(actor="warden", kind="action.verify_started")
    lease = at + timedelta(minutes=1)
    assert store.claim_check(checks[0], "me", at, lease, audit) is None
    assert store.claim_check(checks[1], "me", at, lease, audit) is not None
