"""Outcome checks (a runbook's `verify`) and the unusual-usage checkpoint, through signed Slack
requests on both databases.

The scheduler's own runs are paused in these tests and the check sweep is called the way the
scheduler calls it (`bot.jobs.run_checks`), with Warden's injectable clock moved past the
check's due time: no test waits for wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import build_registry
from bot.gate import Gate
from bot.gate_types import Now, Origin, Verdict
from bot.jobs import run_checks
from bot.metrics import window_stats
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from handlers.runtime import Running, start
from storage.metrics import CallCounts
from storage.models import Action, ActionStatus, Request, VerifyStatus, utcnow
from tests.conftest import ADMIN, APPROVER, APPROVER2, policy_data
from tests.slack_fixtures import CHANNEL, OPS, SECRET, TOKEN, Slack, SlackFactory, card_text

# The check appends "verify <service> <WARDEN_VERIFY>" to the runbook log, then fails for a
# service whose name starts with "broken" (saying why), and passes otherwise.
CHECK = (
    'echo "verify $0 $WARDEN_VERIFY" >> "$1"; '
    'case "$0" in broken*) echo "$0: 0/3 replicas ready"; exit 3;; esac; '
    'echo "$0: 3/3 replicas ready"'
)


def checked_policy(tmp_path: Path, **overrides: Any) -> Policy:
    data = policy_data(tmp_path, **overrides)
    runbook = data["runbooks"]["restart_service"]
    runbook["verify"] = ["sh", "-c", CHECK, "{service}", str(tmp_path / "runbook.log")]
    runbook["verify_after"] = "30s"
    return parse_policy(data)


class Clock:
    """Warden's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def quiet(slack: Slack) -> None:
    """Pause the scheduler's own runs: the test runs the sweeps it means to, when it means to."""
    slack.bot.warden.jobs.scheduler.pause()


def sweep(slack: Slack) -> None:
    run_checks(slack.bot.warden.lifecycle.owner)
    slack.idle()


def audit_kinds(slack: Slack, action_id: str) -> list[str]:
    return [r.kind for r in slack.store.audit_rows(subject=action_id)]


def checked(slack_factory: SlackFactory, tmp_path: Path, **overrides: Any) -> tuple[Slack, Clock]:
    clock = Clock()
    slack = slack_factory(policy_=checked_policy(tmp_path, **overrides), clock=clock)
    quiet(slack)
    return slack, clock


def test_a_check_that_passes_runs_once_when_due_and_the_card_says_so(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    before = clock()
    action = slack.approved_run("restart web", APPROVER)
    assert action.verify_status == VerifyStatus.PENDING
    assert before + timedelta(seconds=30) <= action.verify_at <= clock() + timedelta(seconds=30)
    shown = card_text(slack.card(action.id))
    assert "Outcome check:* :hourglass_flowing_sand: due at" in shown

    sweep(slack)  # not due yet
    assert slack.runs("verify") == []
    clock.offset = timedelta(seconds=31)
    sweep(slack)
    assert slack.runs("verify") == ["verify web 1"]  # the run's own arguments; WARDEN_VERIFY=1
    done = slack.store.get_action(action.id)
    assert done.verify_status == VerifyStatus.PASSED and done.status == ActionStatus.SUCCEEDED
    assert "web: 3/3 replicas ready" in (done.verify_note or "")
    assert "Outcome check:* :white_check_mark: passed" in card_text(slack.card(action.id))
    kinds = audit_kinds(slack, action.id)
    assert kinds.count("action.verify_started") == 1 and kinds.count("action.verified") == 1
    sweep(slack)  # nothing is checked twice
    assert slack.runs("verify") == ["verify web 1"]
    assert not [m for m in slack.ws.messages(OPS) if "Outcome check" in str(m.get("text"))]
    assert slack.store.verify_audit()[1] == []


def test_a_failed_check_shows_on_the_card_alerts_and_counts_as_a_failed_outcome(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    since = utcnow() - timedelta(minutes=1)
    action = slack.approved_run("restart broken-api", APPROVER)
    clock.offset = timedelta(seconds=31)
    sweep(slack)
    assert slack.runs("verify") == ["verify broken-api 1"]
    done = slack.store.get_action(action.id)
    assert done.verify_status == VerifyStatus.FAILED
    assert "exit status 3" in (done.verify_note or "")
    shown = card_text(slack.card(action.id))
    assert "Outcome check:* :x: failed:" in shown and "broken-api: 0/3 replicas ready" in shown
    (row,) = [r for r in slack.store.audit_rows(subject=action.id) if r.kind.endswith("_failed")]
    assert row.kind == "action.verify_failed" and (row.before, row.after) == ("running", "failed")
    alerts = [str(m.get("text")) for m in slack.ws.messages(OPS) if "Outcome check" in str(m)]
    assert len(alerts) == 1 and "restart_service" in alerts[0] and action.id in alerts[0]
    assert "0/3 replicas ready" in alerts[0]
    # The metrics count it as a failed outcome, not a success.
    stats = window_stats(slack.store, since, utcnow() + timedelta(minutes=1))
    assert stats.verify_failures == 1 and stats.outcomes == 1 and stats.successes == 0
    assert stats.failure_rate == 1.0
    # The outcome listeners heard of it: memory keeps it as a decision about the service.
    decisions = slack.store.facts_for([("channel", CHANNEL)], utcnow(), None)
    assert any("broken-api" in f.text and "outcome check failed" in f.text for f in decisions), [
        f.text for f in decisions
    ]


def test_two_replicas_run_a_due_check_once(
    slack_factory: SlackFactory, tmp_path: Path, database_url: str
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    with replica(slack, database_url, checked_policy(tmp_path), clock) as other:
        action = slack.approved_run("restart web", APPROVER)
        clock.offset = timedelta(seconds=31)
        owners = [slack.bot.warden.lifecycle.owner, other.warden.lifecycle.owner] * 4
        with ThreadPoolExecutor(len(owners)) as pool:
            list(pool.map(run_checks, owners))
        slack.idle()
        assert other.warden.workers.wait_idle(30)
        assert slack.runs("verify") == ["verify web 1"]
        kinds = audit_kinds(slack, action.id)
        assert kinds.count("action.verify_started") == 1 and kinds.count("action.verified") == 1
        assert slack.store.get_action(action.id).verify_status == VerifyStatus.PASSED


def test_a_check_whose_replica_died_is_retried_a_bounded_number_of_times(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    store = slack.store
    core = slack.bot.warden.lifecycle.core
    action = slack.approved_run("restart web", APPROVER)
    clock.offset = timedelta(seconds=31)

    def dies_while_checking(of: Action) -> None:
        """Another replica claims the check and dies: its lease runs out."""
        now = clock()
        won = store.claim_check(
            of.id,
            "dead-replica",
            now,
            now - timedelta(seconds=1),
            core.audit("warden", "action.verify_started", of.trace_id),
        )
        assert won is not None

    dies_while_checking(action)
    sweep(slack)  # back to pending, then run here
    assert slack.runs("verify") == ["verify web 1"]
    assert store.get_action(action.id).verify_status == VerifyStatus.PASSED

    second = slack.approved_run("restart api", APPROVER)
    clock.offset += timedelta(seconds=31)
    for _ in range(3):
        dies_while_checking(second)
        slack.bot.warden.lifecycle.execution.requeue_stale_checks()
    slack.idle()
    gone = store.get_action(second.id)
    assert gone.verify_status == VerifyStatus.ERROR and "interrupted 3 times" in gone.verify_note
    assert slack.runs("verify") == ["verify web 1"]  # never run for api
    shown = card_text(slack.card(second.id))
    assert "Outcome check:* :warning: could not check: interrupted 3 times" in shown
    assert any("could not be checked" in str(m.get("text")) for m in slack.ws.messages(OPS))
    assert audit_kinds(slack, second.id).count("action.verify_interrupted") == 2


def test_an_action_undone_before_its_check_is_due_is_not_checked(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    action = slack.approved_run("restart web", APPROVER)
    assert slack.ws.click(APPROVER, CHANNEL, action.card_ts, "warden_undo").status == 200
    slack.idle()
    undone = slack.store.get_action(action.id)
    assert undone.status == ActionStatus.UNDONE
    assert undone.verify_status == VerifyStatus.CANCELED
    clock.offset = timedelta(seconds=31)
    sweep(slack)
    assert slack.runs("verify") == []
    assert "Outcome check:* :heavy_minus_sign: not run" in card_text(slack.card(action.id))


def test_a_paused_warden_runs_no_check_until_resumed(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack, clock = checked(slack_factory, tmp_path)
    action = slack.approved_run("restart web", APPROVER)
    assert "Paused" in slack.ws.slash(ADMIN, CHANNEL, "/pause", "freeze").body
    clock.offset = timedelta(seconds=31)
    sweep(slack)
    slack.bot.warden.lifecycle.execution.check(action.id)  # even asked directly
    assert slack.runs("verify") == []
    assert slack.store.get_action(action.id).verify_status == VerifyStatus.PENDING
    assert "Resumed" in slack.ws.slash(ADMIN, CHANNEL, "/resume").body
    slack.idle()  # resuming starts what waited, checks included
    assert slack.runs("verify") == ["verify web 1"]
    assert slack.store.get_action(action.id).verify_status == VerifyStatus.PASSED


# -- unusual usage --------------------------------------------------------------------------

USAGE = {"window": "1h", "baseline": "4h", "factor": 3.0, "min_calls": 3}


def seed_calls(slack: Slack, tool: str, requester: str, times: list[datetime]) -> None:
    """History: `requester` asked for `tool` at `times` (what the baseline is made of)."""
    with slack.store.db.write() as s:
        for n, at in enumerate(times):
            rid = f"seed{requester.lower()}{n:04d}"
            s.add(
                Request(
                    id=rid,
                    trace_id=rid[:16],
                    channel=CHANNEL,
                    thread_ts=f"1600000000.{n:06d}",
                    message_ts=f"1600000000.{n:06d}{requester[-2:]}",
                    requester=requester,
                    text="announce earlier",
                    status="planned",
                    created_at=at,
                    updated_at=at,
                )
            )
            s.flush()
            s.add(
                Action(
                    id=f"a{rid}",
                    request_id=rid,
                    trace_id=rid[:16],
                    tool=tool,
                    args_json='{"channel":"C0GENERAL","text":"earlier"}',
                    policy_version="pv-old",
                    risk="low",
                    requester=requester,
                    channel=CHANNEL,
                    thread_ts=f"1600000000.{n:06d}",
                    card_ts=f"1600000000.{n:06d}",
                    status="succeeded",
                    created_at=at,
                    updated_at=at,
                )
            )


def test_a_burst_of_one_auto_tool_by_one_requester_turns_into_a_card(
    slack_factory: SlackFactory,
    tmp_path: Path,
) -> None:
    # Memory off: with it on, each earlier announcement's outcome is recalled as a fact not
    # written by the requester, which taints the next plan (a different hold).
    data = policy_data(tmp_path, usage=USAGE, memory={"enabled": False})
    slack = slack_factory(policy_=parse_policy(data))
    # APPROVER2 usually announces 4 times an hour (16 in the 4 h before the last hour).
    now = utcnow()
    seed_calls(
        slack,
        "post_message",
        APPROVER2,
        [now - timedelta(hours=1, minutes=5) - timedelta(minutes=14 * i) for i in range(16)],
    )
    ran = []
    for n in range(3):
        action, _ = slack.mention_and_card(f"announce build {n} is green")
        ran.append(action)
    assert [a.status for a in ran] == ["succeeded"] * 3, [(a.status_note, a.taint) for a in ran]
    assert {a.decided_by for a in ran} == {"gate"}

    held, card = slack.mention_and_card("announce build 3 is green")
    assert held.status == ActionStatus.AWAITING_APPROVAL and held.tool == "post_message"
    reason = "unusual usage: 4 calls of post_message by the requester in the last 1h; usual ≈ 0"
    assert held.status_note == reason
    assert reason in card_text(card)
    proposed = [r for r in slack.store.audit_rows(subject=held.id) if r.kind == "action.proposed"]
    assert '"verdict": "await"' in proposed[0].data or '"verdict":"await"' in proposed[0].data

    # Someone else is not affected by the requester's burst.
    other, _ = slack.mention_and_card("announce lunch is here", user=ADMIN)
    assert other.status == ActionStatus.SUCCEEDED and other.decided_by == "gate"
    # A requester who is usually busy is held only far above their own baseline (4 an hour:
    # more than 12), so five calls in the hour still run at once.
    for n in range(5):
        busy, _ = slack.mention_and_card(f"announce deploy {n} done", user=APPROVER2)
        assert busy.status == ActionStatus.SUCCEEDED, busy.status_note

    # The held card is a card like any other: one click runs it, and re-checking a card
    # already shown never holds it again.
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    assert slack.store.get_action(held.id).status == ActionStatus.SUCCEEDED


def test_an_overall_spike_holds_even_a_new_requester() -> None:
    policy = parse_policy(policy_data(Path("/nonexistent"), usage=USAGE))
    registry = build_registry(policy)
    seen: list[tuple[str, str, datetime, datetime]] = []

    def counts(tool: str, requester: str, recent: datetime, baseline: datetime) -> CallCounts:
        seen.append((tool, requester, recent, baseline))
        # Nobody called it before this hour; everyone together 9 times in it.
        return CallCounts(
            recent_by_requester=0, recent_overall=9, baseline_by_requester=0, baseline_overall=0
        )

    gate = Gate(policy, registry, usage=counts)
    at = utcnow()
    args = {"channel": CHANNEL, "text": "hi"}
    origin = Origin(requester=APPROVER2, channel=CHANNEL)
    decision = gate.decide(
        tool="post_message", args=args, confidence=1.0, origin=origin, now=Now(paused=False, at=at)
    )
    assert decision.verdict is Verdict.AWAIT
    assert decision.checkpoint == (
        "unusual usage: 10 calls of post_message by everyone in the last 1h; usual ≈ 0"
    )
    assert seen == [("post_message", APPROVER2, at - timedelta(hours=1), at - timedelta(hours=5))]
    # A card already shown (a re-check) is not held by usage again; the rule is not asked.
    shown = gate.decide(
        tool="post_message",
        args=args,
        confidence=1.0,
        origin=Origin(requester=APPROVER2, channel=CHANNEL, on_card=True),
        now=Now(paused=False, at=at),
    )
    assert shown.checkpoint == "" and len(seen) == 1
    # Without a store (`warden eval`), the only history is the plan's own earlier calls.
    strict = parse_policy(policy_data(Path("/nonexistent"), usage={**USAGE, "min_calls": 2}))
    offline = Gate(strict, build_registry(strict))
    first = offline.decide(
        tool="post_message", args=args, confidence=1.0, origin=origin, now=Now(paused=False)
    )
    assert first.verdict is Verdict.RUN_NOW
    third = offline.decide(
        tool="post_message",
        args=args,
        confidence=1.0,
        origin=Origin(requester=APPROVER2, channel=CHANNEL, same_tool_earlier=2),
        now=Now(paused=False),
    )
    assert third.verdict is Verdict.AWAIT and "3 calls" in third.checkpoint


@contextmanager
def replica(
    slack: Slack, database_url: str, policy: Policy, clock: Callable[[], datetime]
) -> Iterator[Running]:
    """A second Warden on the same database and workspace (its scheduler paused too)."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    other = start(settings, host="127.0.0.1", port=0, policy=policy, clock=clock)
    other.warden.jobs.scheduler.pause()
    try:
        yield other
    finally:
        other.stop()
