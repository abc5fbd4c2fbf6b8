"""Live runs and Cancel, through signed Slack requests on both databases: a long runbook's
card shows how long it has been running and its last lines of output (redacted, neutralised,
bounded) while it runs; an approver's Cancel stops its process group, records `cancelled`
under their name and offers the tool's Undo; a stranger's Cancel changes nothing; a Cancel
that comes after the end says so; a Cancel clicked on another replica stops the run where it
runs. Beside them, unit tests of the pieces: the stop switch (SIGTERM, then SIGKILL), the
bounded tail, the gate's rule, the card and the metrics."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.execution
import bot.live_card
from bot.app import build_registry
from bot.cards import CardFacts, build_card, duration_text
from bot.gate import Gate
from bot.gate_types import Now
from bot.metrics import compute
from bot.policy import Policy, parse_policy
from bot.runbooks import LIVE_RUN, LiveRun, run_argv
from bot.settings import Settings
from handlers.blocks import render_card
from handlers.runtime import Running, start
from storage.metrics import ActionRow
from storage.models import Action, ActionStatus, utcnow
from tests.conftest import ADMIN, APPROVER, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, SECRET, TOKEN, Slack, SlackFactory, buttons, card_text

CANCEL, UNDO, APPROVE = "warden_cancel", "warden_undo", "warden_approve"
WAIT = 30.0


@pytest.fixture(autouse=True)
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look for a Cancel every 0.1 s and refresh a running card every 0.4 s (5 s in
    production), so the tests see several refreshes in well under a second."""
    monkeypatch.setattr(bot.execution, "WATCH_EVERY", 0.1)
    monkeypatch.setattr(bot.live_card, "PROGRESS_EVERY", 0.4)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Where the test runbooks write their pid and log, and the file that ends their loop
    (always created at the end, so no command outlives a failed test)."""
    paths = {
        "pid": tmp_path / "deploy.pid",
        "release": tmp_path / "release",
        "log": tmp_path / "runbook.log",
    }
    try:
        yield paths
    finally:
        paths["release"].touch()


def live_policy(tmp_path: Path, risk: str = "medium", approvers: list[str] | None = None) -> Policy:
    """The usual policy plus `deploy`: writes its pid, then prints a numbered line (with a
    secret and a broadcast ping in it) every 0.05 s until released, then logs its run; its
    undo logs too. `approvers`: the tool's own (the usual ones include the requester)."""
    data = policy_data(tmp_path)
    if approvers is not None:
        data["tools"]["deploy"] = {"approvers": approvers}
    pid, release, log = (str(tmp_path / n) for n in ("deploy.pid", "release", "runbook.log"))
    data["runbooks"]["deploy"] = {
        "description": "Deploy a service, slowly",
        "command": [
            "sh",
            "-c",
            'echo $$ > "$0"; i=0; while [ ! -e "$1" ]; do i=$((i+1)); '
            'echo "step $i of $2 password=hunter2 <!channel>"; sleep 0.05; done; '
            'echo "deploy $2" >> "$3"',
            pid,
            release,
            "{service}",
            log,
        ],
        "undo": ["sh", "-c", 'echo "undo deploy $0" >> "$1"', "{service}", log],
        "risk": risk,
        "timeout": "120s",
        "params": {"service": {"pattern": "^[a-z0-9-]{1,40}$"}},
    }
    data["aliases"]["deploy {service}"] = {"runbook": "deploy"}
    return parse_policy(data)


def said(slack: Slack, user: str) -> list[str]:
    """What Warden told `user` privately in the channel."""
    return [
        str(m.get("text") or "")
        for m in slack.ws.messages(CHANNEL, include_ephemeral_for=user)
        if m.get("ephemeral_to") == user
    ]


def card_now(slack: Slack, action: Action) -> str:
    return card_text(slack.card(action.id))


def output_so_far(slack: Slack, action: Action) -> str:
    """The running card's "Output so far" section."""
    sections = [
        str(b["text"]["text"])
        for b in slack.card(action.id)["blocks"]
        if b.get("type") == "section" and "Output so far" in str(b.get("text"))
    ]
    assert len(sections) == 1
    return sections[0]


def status_of(slack: Slack, action: Action) -> str:
    row = slack.store.get_action(action.id)
    assert row is not None
    return str(row.status)


def start_deploy(slack: Slack, service: str = "web") -> tuple[Action, dict[str, Any]]:
    """Mention → card → an approver's Approve → the card shows the run's output, live."""
    action, card = slack.mention_and_card(f"deploy {service}")
    assert action.tool == "deploy" and action.status == ActionStatus.AWAITING_APPROVAL
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], APPROVE).status == 200
    slack.ws.wait_until(lambda: progress_lines(card_now(slack, action)), WAIT)
    return action, card


def progress_lines(text: str) -> list[str]:
    return re.findall(r"step (\d+) of ", text)


def test_a_running_card_shows_its_output_and_an_approvers_cancel_stops_it(
    slack_factory: SlackFactory, tmp_path: Path, files: dict[str, Path]
) -> None:
    slack = slack_factory(policy_=live_policy(tmp_path))
    action, card = start_deploy(slack)
    # Live: the card is refreshed while it runs, each time with later lines.
    first = max(int(n) for n in progress_lines(card_now(slack, action)))
    slack.ws.wait_until(
        lambda: max(map(int, progress_lines(card_now(slack, action)) or ["0"])) > first + 5, WAIT
    )
    assert re.search(r"Running for \d+ s", card_now(slack, action))
    live = output_so_far(slack, action)
    assert 1 <= len(progress_lines(live)) <= 10  # the last lines only
    assert "hunter2" not in live and "password=[redacted]" in live  # redacted like output
    assert "<!channel>" not in live and "channel" in live  # neutralised like output
    assert buttons(slack.card(action.id)) == ["Cancel"]
    row = slack.store.get_action(action.id)
    assert row is not None and row.progress and "step" in row.progress
    pid = int(files["pid"].read_text())
    os.kill(pid, 0)  # running

    # A stranger's Cancel changes nothing, and says why.
    assert slack.ws.click(STRANGER, CHANNEL, card["ts"], CANCEL).status == 200
    slack.ws.wait_until(lambda: said(slack, STRANGER), WAIT)
    assert "You can't cancel this: only its approvers" in said(slack, STRANGER)[0]
    assert status_of(slack, action) == ActionStatus.EXECUTING
    os.kill(pid, 0)

    # An approver's Cancel stops the process group; the card and the thread say so.
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], CANCEL).status == 200
    slack.ws.wait_until(lambda: "Cancelled by" in card_now(slack, action), WAIT)
    slack.idle()
    assert status_of(slack, action) == ActionStatus.CANCELLED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not slack.runs("deploy")  # it never got to its end
    assert any(t.startswith("Stopping *deploy*") for t in said(slack, APPROVER))
    final = card_now(slack, action)
    assert f"Cancelled by <@{APPROVER}> after " in final
    assert "may have done part of its work" in final
    assert "Output until it was stopped" in final and "stopped by a cancel" in final
    assert "Output so far" not in final
    assert buttons(slack.card(action.id)) == ["Undo"]  # part of its work may be done
    thread = [m["text"] for m in slack.ws.messages(CHANNEL) if m.get("thread_ts")]
    assert any(f"*deploy* cancelled by <@{APPROVER}>" in t for t in thread)
    done = slack.store.get_action(action.id)
    assert done is not None and done.progress is None and done.finished_at is not None
    assert done.cancel_requested_by == APPROVER

    # Audited: who asked, and the move to `cancelled` under their name.
    rows = slack.store.audit_rows(subject=action.id)
    asked = [r for r in rows if r.kind == "cancel.requested"]
    assert [(r.actor, r.before, r.after) for r in asked] == [(APPROVER, None, None)]
    stopped = [r for r in rows if r.kind == "action.cancelled"]
    assert [(r.actor, r.before, r.after) for r in stopped] == [(APPROVER, "executing", "cancelled")]
    assert not [r for r in rows if r.actor == STRANGER]

    # The tool's undo is the way back.
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], UNDO).status == 200
    slack.idle()
    assert status_of(slack, action) == ActionStatus.UNDONE
    assert slack.runs("undo") == ["undo deploy web"]
    assert slack.store.verify_audit()[1] == []


def test_a_cancel_after_the_run_ended_changes_nothing_and_says_so(
    slack_factory: SlackFactory,
    tmp_path: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = slack_factory(policy_=live_policy(tmp_path))
    action, card = start_deploy(slack)
    running = slack.card(action.id)  # what a slow client still shows
    files["release"].touch()
    slack.ws.wait_until(lambda: "Succeeded" in card_now(slack, action), WAIT)
    slack.idle()
    assert slack.runs("deploy") == ["deploy web"]
    assert "Cancel" not in buttons(slack.card(action.id))

    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], CANCEL, seen=running).status == 200
    slack.idle()
    assert said(slack, APPROVER) == [
        "You can't cancel this: it had already ended (succeeded) when your click arrived, "
        "so nothing was stopped."
    ]
    row = slack.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.SUCCEEDED
    assert row.cancel_requested_by is None
    assert not [r for r in slack.store.audit_rows(subject=action.id) if "cancel" in r.kind]

    # A Cancel that is recorded while it runs, but that the run outpaces (it ends before
    # the watch looks again): the run's own outcome stands, and the card says so.
    monkeypatch.setattr(bot.execution, "WATCH_EVERY", 3600.0)
    files["release"].unlink()
    files["pid"].unlink()
    other, other_card = slack.mention_and_card("deploy api")
    assert slack.ws.click(APPROVER, CHANNEL, other_card["ts"], APPROVE).status == 200
    slack.ws.wait_until(lambda: "Cancel" in buttons(slack.card(other.id)), WAIT)
    assert slack.ws.click(ADMIN, CHANNEL, other_card["ts"], CANCEL).status == 200
    slack.ws.wait_until(lambda: "clicked Cancel" in card_now(slack, other), WAIT)
    files["release"].touch()
    slack.ws.wait_until(lambda: "Succeeded" in card_now(slack, other), WAIT)
    slack.idle()
    assert status_of(slack, other) == ActionStatus.SUCCEEDED
    assert slack.runs("deploy") == ["deploy web", "deploy api"]
    assert f"<@{ADMIN}> clicked Cancel as it was ending; nothing was stopped" in (
        card_now(slack, other)
    )
    kinds = [r.kind for r in slack.store.audit_rows(subject=other.id)]
    assert "cancel.requested" in kinds and "action.cancelled" not in kinds


@contextmanager
def replica(slack: Slack, database_url: str, policy: Policy) -> Iterator[Running]:
    """A second Warden on the same database and the same Slack workspace."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    running = start(settings, host="127.0.0.1", port=0, policy=policy, upgrade=False)
    try:
        yield running
    finally:
        running.stop()


def test_a_cancel_clicked_on_another_replica_stops_the_run_where_it_runs(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path, files: dict[str, Path]
) -> None:
    policy = live_policy(tmp_path)
    slack = slack_factory(policy_=policy)
    action, card = start_deploy(slack)
    first = slack.bot.warden.lifecycle.owner
    row = slack.store.get_action(action.id)
    assert row is not None and row.owner == first
    pid = int(files["pid"].read_text())
    with replica(slack, database_url, policy) as other:
        assert other.warden.lifecycle.owner != first
        here = slack.ws.bot_url
        slack.ws.bot_url = other.url + "/slack/events"  # Slack's load balancer picks B
        try:
            assert slack.ws.click(ADMIN, CHANNEL, card["ts"], CANCEL).status == 200
        finally:
            slack.ws.bot_url = here
        slack.ws.wait_until(lambda: "Cancelled by" in card_now(slack, action), WAIT)
        assert other.warden.workers.wait_idle(WAIT)
    slack.idle()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    done = slack.store.get_action(action.id)
    assert done is not None and done.status == ActionStatus.CANCELLED and done.owner == first
    stopped = [r for r in slack.store.audit_rows(subject=action.id) if r.kind.endswith("cancelled")]
    assert [(r.actor, r.after) for r in stopped] == [(ADMIN, "cancelled")]
    assert f"Cancelled by <@{ADMIN}>" in card_now(slack, action)


def test_a_high_risk_run_is_cancelled_by_approvers_not_its_requester(
    slack_factory: SlackFactory, tmp_path: Path, files: dict[str, Path]
) -> None:
    slack = slack_factory(policy_=live_policy(tmp_path, "high", approvers=[APPROVER]))
    action, card = start_deploy(slack)
    assert slack.ws.click(REQUESTER, CHANNEL, card["ts"], CANCEL).status == 200
    slack.ws.wait_until(lambda: said(slack, REQUESTER), WAIT)
    assert said(slack, REQUESTER) == [
        "You can't cancel this: a high-risk action is cancelled by its approvers or an admin."
    ]
    assert status_of(slack, action) == ActionStatus.EXECUTING
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], CANCEL).status == 200
    slack.ws.wait_until(lambda: "Cancelled by" in card_now(slack, action), WAIT)
    slack.idle()
    assert status_of(slack, action) == ActionStatus.CANCELLED


# -- the pieces -------------------------------------------------------------------------------


def _stubborn(tmp_path: Path) -> list[str]:
    """A command that ignores SIGTERM (only SIGKILL stops it) and prints as it goes."""
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('got SIGTERM, carrying on', flush=True))\n"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\n"
        "for i in range(100000):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    return [sys.executable, str(script)]


class CancelAtFirstLine(LiveRun):
    """A live run whose Cancel is clicked as soon as the command has printed something (so
    it has started, and set up whatever signal handling it has)."""

    def feed(self, chunk: bytes) -> None:
        super().feed(chunk)
        self.stop()


def test_the_stop_switch_sends_sigterm_then_sigkill_after_the_grace(tmp_path: Path) -> None:
    live = CancelAtFirstLine(grace_s=0.5)
    token = LIVE_RUN.set(live)
    try:
        result = run_argv(_stubborn(tmp_path), 60, dict(os.environ))
    finally:
        LIVE_RUN.reset(token)
    assert live.stopped and not result.ok and result.unknown
    assert result.output.startswith("stopped by a cancel (SIGKILL)")
    assert "got SIGTERM, carrying on" in result.output  # it was asked nicely first
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_command_that_stops_on_sigterm_is_not_killed(tmp_path: Path) -> None:
    live = CancelAtFirstLine(grace_s=30)
    token = LIVE_RUN.set(live)
    try:
        result = run_argv(["sh", "-c", "echo started; sleep 30"], 60, dict(os.environ))
    finally:
        LIVE_RUN.reset(token)
    assert live.stopped
    assert result.output.startswith("stopped by a cancel (SIGTERM)")


def test_a_run_nobody_stops_is_unchanged_by_its_live_run(tmp_path: Path) -> None:
    live = LiveRun()
    token = LIVE_RUN.set(live)
    try:
        result = run_argv(["sh", "-c", "echo one; echo two >&2"], 10, dict(os.environ))
    finally:
        LIVE_RUN.reset(token)
    assert result.ok and not live.stopped
    assert result.output == "one\ntwo\n" and live.last_lines() == "one\ntwo"
    # A timeout is still a timeout.
    token = LIVE_RUN.set(LiveRun())
    try:
        late = run_argv(["sleep", "5"], 0.2, dict(os.environ))
    finally:
        LIVE_RUN.reset(token)
    assert not late.ok and late.unknown and late.output.startswith("timed out after 0.2s")


def test_the_live_tail_keeps_the_last_lines_within_bounds() -> None:
    live = LiveRun()
    live.feed(b"".join(f"line {i}\n".encode() for i in range(500)))
    assert live.last_lines().splitlines() == [f"line {i}" for i in range(490, 500)]
    live.feed(b"x" * 5000 + b"\n")
    assert len(live.last_lines()) == 1500
    live.feed(b"progress 10%\rprogress 20%\r\n\n")
    assert live.last_lines(lines=2) == "progress 10%\nprogress 20%"
    # A character split across two reads is decoded whole.
    euro = "€".encode()
    live.feed(euro[:1])
    live.feed(euro[1:] + b"\n")
    assert live.last_lines(lines=1) == "€"


def _running(tool: str = "deploy", risk: str = "medium", **fields: Any) -> Action:
    now = utcnow()
    values: dict[str, Any] = {
        "id": "a" * 32,
        "request_id": "r1",
        "trace_id": "t1",
        "tool": tool,
        "args_json": '{"service":"web"}',
        "policy_version": "v1",
        "risk": risk,
        "requester": REQUESTER,
        "channel": CHANNEL,
        "thread_ts": "1.000001",
        "status": ActionStatus.EXECUTING,
        "started_at": now - timedelta(seconds=75),
        **fields,
    }
    return Action(**values)


def test_the_gates_cancel_rule(tmp_path: Path) -> None:
    policy = live_policy(tmp_path, approvers=[APPROVER])
    gate = Gate(policy, build_registry(policy))
    now = Now(paused=True, at=utcnow())  # a pause never stops a Cancel
    medium, high = _running(), _running(risk="high")
    assert gate.may_cancel(medium, APPROVER, now) is None
    assert gate.may_cancel(medium, ADMIN, now) is None  # admins, approvers of it or not
    assert gate.may_cancel(medium, REQUESTER, now) is None  # low/medium: the requester too
    assert gate.may_cancel(high, APPROVER, now) is None
    assert gate.may_cancel(high, ADMIN, now) is None
    assert gate.may_cancel(high, REQUESTER, now) == (
        "a high-risk action is cancelled by its approvers or an admin"
    )
    assert "only its approvers" in str(gate.may_cancel(medium, STRANGER, now))
    # Four eyes does not apply to stopping: a requester who is an approver may stop it.
    both = live_policy(tmp_path)
    assert Gate(both, build_registry(both)).may_cancel(high, REQUESTER, now) is None
    for status, words in (
        (ActionStatus.SUCCEEDED, "already ended (succeeded)"),
        (ActionStatus.FAILED, "already ended (failed)"),
        (ActionStatus.CANCELLED, "already ended (cancelled)"),
        (ActionStatus.APPROVED, "not running yet"),
    ):
        assert words in str(gate.may_cancel(_running(status=status), APPROVER, now))
    # Only commands can be stopped.
    assert "only commands (runbooks)" in str(
        gate.may_cancel(_running(tool="post_message"), APPROVER, now)
    )


def test_a_running_card_without_a_command_shows_only_its_time() -> None:
    facts = CardFacts(rule="one approver", approvers=(APPROVER,), approved_by=(APPROVER,))
    card = build_card(_running(tool="post_message"), facts, utcnow())
    assert card.status_line.startswith(":gear: Running for 1 min 1") and card.buttons == ()
    _, blocks = render_card(card)
    assert "Output so far" not in str(blocks)  # only commands show output while they run
    runbook = CardFacts(
        rule="one approver", approvers=(APPROVER,), approved_by=(APPROVER,), command="deploy web"
    )
    quiet = build_card(_running(), runbook, utcnow())
    assert "_(no output yet)_" in str(render_card(quiet)[1])
    card = build_card(_running(progress="step 1"), runbook, utcnow())
    assert [b.label for b in card.buttons] == ["Cancel"] and card.progress == "step 1"
    _, blocks = render_card(card)
    (cancel,) = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert cancel["action_id"] == CANCEL and cancel["style"] == "danger"
    assert cancel["confirm"]["confirm"]["text"] == "Stop it"
    asked = build_card(_running(cancel_requested_by=ADMIN), runbook, utcnow())
    assert asked.buttons == ()  # asked once: no second Cancel
    assert f"stopping: <@{ADMIN}> clicked Cancel" in str(render_card(asked)[1])


def test_durations_in_words() -> None:
    assert [duration_text(s) for s in (0, 12.7, 65, 3599, 3725)] == [
        "0 s",
        "12 s",
        "1 min 05 s",
        "59 min 59 s",
        "1 h 02 min",
    ]


def test_a_cancelled_run_is_a_manual_correction_and_not_a_success() -> None:
    now = utcnow()

    def row(status: str) -> ActionRow:
        return ActionRow(
            id=status,
            tool="deploy",
            risk="medium",
            status=status,
            confidence=0.9,
            revision=1,
            edited=False,
            required_approvals=1,
            requester=REQUESTER,
            request_id=status,
            requested_at=now,
            created_at=now,
            decided_at=now,
            started_at=now,
            finished_at=now,
            verify_status=None,
        )

    stats = compute(
        [row("succeeded"), row("cancelled")],
        [],
        tool="deploy",
        since=now - timedelta(hours=1),
        until=now,
    )
    assert stats.outcomes == 2 and stats.successes == 1
    assert stats.tool_failures == 0 and stats.corrections == 1 and stats.overrides == 0


def test_progress_owes_one_card_refresh_at_a_time(slack: Slack) -> None:
    store = slack.store
    action, _card = slack.mention_and_card("restart web")
    owner = slack.bot.warden.lifecycle.owner
    assert not store.live_progress(action.id, owner, "x")  # not running: nothing written
    with store.db.write() as s:
        row = s.get(Action, action.id)
        assert row is not None
        row.status, row.owner = ActionStatus.EXECUTING, owner
        s.add(row)
    assert not store.live_progress(action.id, "someone-else", "x")
    before = len(store.outbox_rows())
    delivered = [r for r in store.outbox_rows() if r.delivered_at is not None]
    assert len(delivered) == before  # everything owed so far was delivered
    assert store.live_progress(action.id, owner, "step 1")
    assert store.live_progress(action.id, owner, "step 2")  # written, no second refresh owed
    owed = [r for r in store.outbox_rows() if r.delivered_at is None]
    assert [(r.kind, r.action_id) for r in owed] == [("card", action.id)]
    got = store.get_action(action.id)
    assert got is not None and got.progress == "step 2"
