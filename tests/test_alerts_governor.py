"""Alerts and the autonomy governor, through signed Slack requests and the stub Messages API,
on both databases: each alert fires once per cool-down (across two replicas), only with
enough volume; an `auto` tool whose record turns bad is demoted at once, announced once,
shown on `/warden autonomy`, and an admin's promotion is not overruled by old failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.jobs import run_once
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from handlers.runtime import Running, start
from storage.models import ActionStatus, AuditEvent, utcnow
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import (
    CHANNEL,
    OPS,
    SECRET,
    TOKEN,
    Slack,
    SlackFactory,
    buttons,
)

ALERT_JOB = "bot.jobs:evaluate_alerts"
OFF = {"enabled": False}


class Clock:
    """Wall time moved on by `shift`: Warden's clock without sleeping."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def make_policy(tmp_path: Path, **overrides: Any) -> Policy:
    data = policy_data(tmp_path, **overrides)
    data["runbooks"]["break_thing"] = {
        "description": "Break a thing (always fails)",
        "command": ["sh", "-c", "echo broken >&2; exit 3"],
        "risk": "medium",
        "params": {"name": {"choices": ["a", "b", "c"]}},
    }
    data["runbooks"]["flaky"] = {
        "description": "A low-risk job that fails",
        "command": ["sh", "-c", 'echo flaky >> "$0"; exit 1', str(tmp_path / "flaky.log")],
        "risk": "low",
    }
    data["runbooks"]["tidy"] = {
        "description": "A low-risk job that works",
        "command": ["sh", "-c", 'echo tidy >> "$0"', str(tmp_path / "tidy.log")],
        "risk": "low",
    }
    data["tools"] = {
        "post_message": {"autonomy": "auto"},
        "flaky": {"autonomy": "auto"},
        "tidy": {"autonomy": "auto"},
    }
    data["aliases"]["break {name}"] = {"runbook": "break_thing"}
    return parse_policy(data)


def alerts(**rules: dict[str, Any]) -> dict[str, Any]:
    """`[alerts]` with only the given rules on."""
    out: dict[str, Any] = {
        "confidence_drop": OFF,
        "override_spike": OFF,
        "tool_error_rate": OFF,
        "daily_cost": OFF,
    }
    out.update(rules)
    return out


def quiet_scheduler(slack_or_running: Slack | Running) -> None:
    """The tests evaluate explicitly; the real each-minute cron would race them."""
    running = slack_or_running.bot if isinstance(slack_or_running, Slack) else slack_or_running
    running.warden.jobs.scheduler.remove_job(ALERT_JOB)


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
    try:
        yield running
    finally:
        running.stop()


def ops(slack: Slack, word: str) -> list[str]:
    return [
        str(m.get("text") or "") for m in slack.ws.messages(OPS) if word in (m.get("text") or "")
    ]


def audit_rows(slack: Slack, kind: str) -> list[AuditEvent]:
    with slack.store.db.read() as s:
        return list(
            s.exec(
                select(AuditEvent).where(col(AuditEvent.kind) == kind).order_by(col(AuditEvent.seq))
            )
        )


def reject(slack: Slack, text: str, reason: str = "not now") -> None:
    action, card = slack.mention_and_card(text)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject").status == 200
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    value = {"value": {"type": "plain_text_input", "value": reason}}
    assert slack.ws.submit_view(APPROVER, view["id"], {"reason": value}).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.REJECTED


def approve(slack: Slack, text: str, approver: str = APPROVER) -> Any:
    action, card = slack.mention_and_card(text)
    assert slack.ws.click(approver, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    return slack.store.get_action(action.id)


# -- alerts ---------------------------------------------------------------------------------


def test_an_override_spike_alerts_once_per_cooldown_across_two_replicas(
    slack_factory: SlackFactory, database_url: str, tmp_path: Path
) -> None:
    policy = make_policy(
        tmp_path,
        alerts=alerts(
            override_spike={"window": "1h", "above": 0.4, "min_volume": 3, "cooldown": "10m"}
        ),
    )
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    quiet_scheduler(slack)
    a = slack.bot.warden.lifecycle
    reject(slack, "restart web")
    reject(slack, "restart api")
    # Two decided cards, both overridden: 100 %, but below min_volume 3 — nothing fires.
    assert a.alerts.evaluate() == []
    # An edit (by an approver) then an approval by another: an override too.
    action, card = slack.mention_and_card("restart cache")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_edit")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    edited = {"arg:service": {"value": {"type": "plain_text_input", "value": "cache-2"}}}
    assert slack.ws.submit_view(APPROVER, view["id"], edited).status == 200
    slack.idle()
    slack.ws.click(APPROVER2, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    assert approve(slack, "restart queue").status == ActionStatus.SUCCEEDED
    assert ops(slack, "Override spike") == []

    with replica(slack, database_url, policy, clock) as other:
        quiet_scheduler(other)
        b = other.warden.lifecycle
        # Both replicas evaluate at once, twice each: the storage claim fires it once.
        with ThreadPoolExecutor(4) as pool:
            fired = list(pool.map(lambda lc: lc.alerts.evaluate(), [a, b, a, b]))
        assert sorted(k for keys in fired for k in keys) == ["override_spike"]
        for lc in (a, b):
            assert lc.workers.wait_idle(30)
        (posted,) = ops(slack, "Override spike")
        assert "75%" in posted and "3 of 4" in posted and "40%" in posted and "1h" in posted
        assert "/warden stats" in posted
        (row,) = audit_rows(slack, "alert.fired")
        data = json.loads(row.data)
        assert data["rule"] == "override_spike" and data["value"] == 0.75
        assert data["threshold"] == 0.4 and data["window"] == "1h" and data["volume"] == 4
        assert not any(u in row.data for u in (REQUESTER, APPROVER, APPROVER2))
        # Within the cool-down: the scheduled job on both replicas posts nothing.
        clock.shift = timedelta(minutes=5)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda lc: run_once(lc.owner, ALERT_JOB, every_minute=True), [a, b] * 2))
        assert a.alerts.evaluate() == [] and b.alerts.evaluate() == []
        for lc in (a, b):
            assert lc.workers.wait_idle(30)
        assert len(ops(slack, "Override spike")) == 1
        # After the cool-down the same minute's job, on whichever replica claims it, fires again.
        clock.shift = timedelta(minutes=11)
        with ThreadPoolExecutor(4) as pool:
            ran = list(
                pool.map(lambda lc: run_once(lc.owner, ALERT_JOB, every_minute=True), [a, b] * 2)
            )
        assert [r for r in ran if r is not None] == [["override_spike"]]  # one claimed the minute
        for lc in (a, b):
            assert lc.workers.wait_idle(30)
        assert len(ops(slack, "Override spike")) == 2
        assert len(audit_rows(slack, "alert.fired")) == 2


def test_a_tools_error_rate_alerts_for_that_tool_only(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    policy = make_policy(
        tmp_path,
        alerts=alerts(
            tool_error_rate={"window": "1h", "above": 0.25, "min_volume": 2, "cooldown": "1h"}
        ),
    )
    slack = slack_factory(policy_=policy)
    quiet_scheduler(slack)
    lc = slack.bot.warden.lifecycle
    assert approve(slack, "break a").status == ActionStatus.FAILED
    assert lc.alerts.evaluate() == []  # one run: below min_volume
    assert approve(slack, "break b").status == ActionStatus.FAILED
    assert approve(slack, "restart web").status == ActionStatus.SUCCEEDED
    assert approve(slack, "restart api").status == ActionStatus.SUCCEEDED
    assert lc.alerts.evaluate() == ["tool_error_rate:break_thing"]
    assert lc.alerts.evaluate() == []
    slack.idle()
    (posted,) = ops(slack, "Tool error rate")
    assert "`break_thing`" in posted and "2 of its 2 runs" in posted and "100%" in posted
    assert "25%" in posted and "/warden stats break_thing" in posted
    assert "restart_service" not in posted
    (row,) = audit_rows(slack, "alert.fired")
    assert json.loads(row.data)["subject"] == "break_thing"


def test_a_confidence_drop_alerts_with_enough_proposals(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = make_policy(
        tmp_path,
        alerts=alerts(
            confidence_drop={"window": "1h", "below": 0.7, "min_volume": 3, "cooldown": "6h"}
        ),
    )
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    quiet_scheduler(slack)
    lc = slack.bot.warden.lifecycle
    for n, service in enumerate(["web", "api", "cache"]):
        anthropic_stub.enqueue(
            reply(propose("restart_service", {"service": service}, 0.6, "Probably this."))
        )
        action, card = slack.mention_and_card(f"could you maybe bounce {service}?")
        assert action.confidence == 0.6 and "Approve" in buttons(card)
        if n < 2:
            assert lc.alerts.evaluate() == []  # a 60 % median, but too few proposals yet
    assert lc.alerts.evaluate() == ["confidence_drop"]
    slack.idle()
    (posted,) = ops(slack, "Confidence drop")
    assert "60%" in posted and "3 proposals" in posted and "70%" in posted


def test_the_daily_cost_alerts_once_over_its_threshold(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = make_policy(tmp_path, alerts=alerts(daily_cost={"above_usd": 0.02, "cooldown": "24h"}))
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    quiet_scheduler(slack)
    lc = slack.bot.warden.lifecycle
    usage = {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "output_tokens": 10}
    anthropic_stub.enqueue(
        reply(
            propose("restart_service", {"service": "web"}, 0.9, "Asked."), input_tokens=100, **usage
        )
    )
    slack.mention_and_card("please bounce web")
    assert lc.alerts.evaluate() == []  # $0.0005 so far
    anthropic_stub.enqueue(
        reply(
            propose("restart_service", {"service": "api"}, 0.9, "Asked."),
            input_tokens=10_000,
            **usage,
        )
    )
    slack.mention_and_card("please bounce api")
    assert lc.alerts.evaluate() == ["daily_cost"]
    assert lc.alerts.evaluate() == []
    slack.idle()
    (posted,) = ops(slack, "Daily cost")
    assert "$0.03" in posted and "$0.02" in posted and "since midnight UTC" in posted
    assert "2 requests" in posted


# -- the governor ---------------------------------------------------------------------------


GOVERNOR = {"window": "24h", "min_volume": 3, "max_failure_rate": 0.5, "max_downvote_rate": 0.5}
# Memory off: a failed outcome becomes a decision that, recalled for the next request, taints
# it (a click is needed anyway); these tests watch the governor alone.
NO_MEMORY = {"enabled": False}


def run_flaky(slack: Slack, stub: AnthropicStub, n: int) -> Any:
    stub.enqueue(reply(propose("flaky", {}, 0.95, "The requester asked for it.")))
    action, _card = slack.mention_and_card(f"please run the flaky job ({n})")
    return action


def test_an_auto_tool_that_keeps_failing_is_demoted_and_an_admin_may_promote_it_back(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = make_policy(tmp_path, governor=GOVERNOR, alerts=alerts(), memory=NO_MEMORY)
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    for n in range(3):
        action = run_flaky(slack, anthropic_stub, n)
        assert action.status == ActionStatus.FAILED and action.decided_by == "gate"  # ran at once
        demoted = slack.store.autonomy_setting("flaky")
        assert (demoted is not None) == (n == 2)  # at once, on the third failure
    assert (
        demoted is not None and demoted.autonomy == "approve" and demoted.changed_by == "governor"
    )
    (row,) = audit_rows(slack, "tool.demoted")
    data = json.loads(row.data)
    assert (data["rule"], data["rate"], data["limit"], data["volume"]) == (
        "failure rate",
        1.0,
        0.5,
        3,
    )
    assert data["window"] == "24h" and row.actor == "governor" and row.after == "approve"
    (announced,) = ops(slack, "took `flaky` off")
    assert "failure rate 100% (3/3) over 24h" in announced and "50% limit" in announced
    assert "/warden autonomy flaky auto" in announced

    listing = slack.ws.slash(ADMIN, CHANNEL, "/warden", "autonomy").body
    line = next(ln for ln in listing.splitlines() if "`flaky`" in ln)
    assert "approve — demoted by the governor at " in line
    assert "failure rate 100% (3/3) over 24h" in line
    assert "an admin may promote it back with /warden autonomy flaky auto" in line
    assert "demoted" not in next(ln for ln in listing.splitlines() if "`tidy`" in ln)

    # Its next call waits for a click.
    waiting = run_flaky(slack, anthropic_stub, 3)
    assert waiting.status == ActionStatus.AWAITING_APPROVAL
    assert "Approve" in buttons(slack.card(waiting.id))

    # An admin promotes it back: the failures that demoted it no longer count.
    said = slack.ws.slash(ADMIN, CHANNEL, "/warden", "autonomy flaky auto").body
    assert "now `auto`" in said
    again = run_flaky(slack, anthropic_stub, 4)
    assert again.status == ActionStatus.FAILED and again.decided_by == "gate"
    setting = slack.store.autonomy_setting("flaky")
    assert setting is not None and setting.autonomy == "auto" and setting.changed_by == ADMIN
    assert len(audit_rows(slack, "tool.demoted")) == 1
    listing = slack.ws.slash(ADMIN, CHANNEL, "/warden", "autonomy").body
    assert "demoted" not in next(ln for ln in listing.splitlines() if "`flaky`" in ln)
    # New failures since the promotion still count.
    run_flaky(slack, anthropic_stub, 5)
    run_flaky(slack, anthropic_stub, 6)
    assert slack.store.autonomy_setting("flaky").autonomy == "approve"
    rows = audit_rows(slack, "tool.demoted")
    assert len(rows) == 2
    assert json.loads(rows[1].data)["reason"] == (
        "failure rate 100% (3/3) since its autonomy last changed"
    )
    assert len(ops(slack, "took `flaky` off")) == 2


def test_two_replicas_demote_and_announce_once(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    database_url: str,
    tmp_path: Path,
) -> None:
    policy = make_policy(tmp_path, governor=GOVERNOR, alerts=alerts(), memory=NO_MEMORY)
    clock = Clock()
    slack = slack_factory(policy_=policy, claude=anthropic_stub, clock=clock)
    a = slack.bot.warden.lifecycle
    a.core.outcome_listeners.remove(a.governor.on_outcome)  # the failures pile up unchecked
    for n in range(3):
        assert run_flaky(slack, anthropic_stub, n).status == ActionStatus.FAILED
    assert slack.store.autonomy_setting("flaky") is None
    with replica(slack, database_url, policy, clock) as other:
        b = other.warden.lifecycle
        with ThreadPoolExecutor(6) as pool:
            made = list(pool.map(lambda lc: lc.governor.check("flaky"), [a, b] * 3))
        assert len([m for m in made if m is not None]) == 1
        for lc in (a, b):
            assert lc.workers.wait_idle(30)
        assert len(audit_rows(slack, "tool.demoted")) == 1
        assert len(ops(slack, "took `flaky` off")) == 1
        # Demoted, so nothing more to do.
        assert a.governor.check("flaky") is None and b.governor.check("flaky") is None


def test_an_auto_tool_people_vote_down_is_demoted(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = make_policy(tmp_path, governor=GOVERNOR, alerts=alerts(), memory=NO_MEMORY)
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    done = []
    for n in range(3):
        anthropic_stub.enqueue(reply(propose("tidy", {}, 0.95, "Asked.")))
        action, _ = slack.mention_and_card(f"please tidy up ({n})")
        assert action.status == ActionStatus.SUCCEEDED and action.decided_by == "gate"
        done.append(action)
    assert slack.store.autonomy_setting("tidy") is None  # it works: no reason to demote

    def vote(user: str, action: Any, button: str) -> None:
        card = slack.card(action.id)
        assert slack.ws.click(user, CHANNEL, card["ts"], button).status == 200
        slack.idle()
        for view in slack.ws.open_views(user):  # 👎 asks "what went wrong?": skip it
            slack.ws.close_view(user, view["id"])

    vote(REQUESTER, done[0], "warden_vote_up")
    vote(REQUESTER, done[1], "warden_vote_down")
    assert slack.store.autonomy_setting("tidy") is None  # 1 of 2 votes: below min_volume 3
    vote(APPROVER, done[2], "warden_vote_down")
    setting = slack.store.autonomy_setting("tidy")
    assert setting is not None and setting.autonomy == "approve"
    (row,) = audit_rows(slack, "tool.demoted")
    assert json.loads(row.data)["reason"] == "👎 rate 67% (2/3) over 24h"
    (announced,) = ops(slack, "took `tidy` off")
    assert "👎 rate 67% (2/3)" in announced
    # Its next call waits for a click.
    anthropic_stub.enqueue(reply(propose("tidy", {}, 0.95, "Asked.")))
    action, card = slack.mention_and_card("please tidy up once more")
    assert action.status == ActionStatus.AWAITING_APPROVAL and "Approve" in buttons(card)


def test_the_gates_demotion_rule(tmp_path: Path) -> None:
    from bot.app import build_registry
    from bot.gate import Gate
    from bot.metrics import Stats

    policy = make_policy(tmp_path, governor=GOVERNOR)
    gate = Gate(policy, build_registry(policy))
    now = utcnow()
    day = now - timedelta(hours=24)

    def stats(since: datetime = day, **counts: int) -> Stats:
        return Stats(tool="flaky", since=since, until=now, **counts)  # type: ignore[arg-type]

    assert gate.demotion(stats(outcomes=2, tool_failures=2), now) is None  # below min_volume
    assert gate.demotion(stats(outcomes=4, tool_failures=2), now) is None  # 50 %: at the limit
    failing = gate.demotion(stats(outcomes=5, tool_failures=2, verify_failures=1), now)
    assert failing is not None and failing.reason == "failure rate 60% (3/5) over 24h"
    overridden = gate.demotion(stats(decided_cards=4, overrides=3), now)
    assert overridden is not None and overridden.reason == "override rate 75% (3/4) over 24h"
    since_change = gate.demotion(stats(now - timedelta(hours=2), thumbs_up=1, thumbs_down=2), now)
    assert since_change is not None
    assert since_change.reason == "👎 rate 67% (2/3) since its autonomy last changed"
    off = make_policy(tmp_path, governor={**GOVERNOR, "enabled": False})
    assert Gate(off, build_registry(off)).demotion(stats(outcomes=5, tool_failures=5), now) is None
