"""The gate's rules per risk tier, confidence and autonomy (PRODUCT.md, "Risk and autonomy").

Every proposal goes through `Gate.decide` with its `Origin` (who asked, where, what entered
the loop) and the state `Now`; every click through `Gate.approve`, `may_edit`, `may_reject`
or `may_undo`; the executor asks `Gate.runnable`. These tests call the gate alone, with
actions and approvals built in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_registry
from bot.gate import Gate
from bot.gate_types import GATE, Decision, Now, Origin, Step, Verdict
from bot.policy import Policy, parse_policy
from bot.policy_types import Autonomy, Risk
from storage.models import Action, ActionStatus, Approval
from tests.conftest import (
    APPROVER,
    APPROVER2,
    APPROVER3,
    REQUESTER,
    STRANGER,
    policy_data,
)

CHANNEL = "C0GENERAL"
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = Now(paused=False, at=AT)


@pytest.fixture
def gate(policy: Policy) -> Gate:
    return Gate(policy, build_registry(policy))


def decide(
    gate: Gate,
    tool: str,
    args: object,
    confidence: float = 1.0,
    *,
    requester: str = REQUESTER,
    channel: str = CHANNEL,
    paused: bool = False,
    overrides: dict[str, str] | None = None,
    taint: str | None = None,
    edited_by: str | None = None,
    on_card: bool = False,
    same_tool_earlier: int = 0,
) -> Decision:
    return gate.decide(
        tool=tool,
        args=args,
        confidence=confidence,
        origin=Origin(
            requester=requester,
            channel=channel,
            taint=taint,
            edited_by=edited_by,
            on_card=on_card,
            same_tool_earlier=same_tool_earlier,
        ),
        now=Now(paused=paused, autonomy=overrides or {}, at=AT),
    )


def action_of(decision: Decision, **values: Any) -> Action:
    """The action row a decision would be stored as (awaiting approval unless told)."""
    fields: dict[str, Any] = {
        "id": "a1",
        "request_id": "r1",
        "trace_id": "t1",
        "tool": decision.tool,
        "args_json": decision.args_json,
        "policy_version": decision.policy_version,
        "risk": decision.risk.value,
        "autonomy": decision.autonomy.value,
        "confidence": 1.0,
        "required_approvals": decision.required_approvals,
        "requester": REQUESTER,
        "channel": CHANNEL,
        "thread_ts": "1.000001",
        "status": decision.status,
        "expires_at": AT + timedelta(hours=1),
        "preview": "would do it",
    }
    fields.update(values)
    return Action(**fields)


def approval(action: Action, approver: str, **values: Any) -> Approval:
    """`approver`'s approval of the action's current call, unless `values` say otherwise."""
    fields: dict[str, Any] = {
        "action_id": action.id,
        "revision": action.revision,
        "approver": approver,
        "policy_version": action.policy_version,
        "args_json": action.args_json,
    }
    fields.update(values)
    return Approval(**fields)


def waiting(gate: Gate, tool: str, args: object, **values: Any) -> Action:
    decision = decide(gate, tool, args)
    assert decision.verdict is Verdict.AWAIT, decision.reason
    return action_of(decision, **values)


def critical_decision(gate: Gate) -> Decision:
    return decide(gate, "scale", {"service": "api", "env": "prod"})


def test_low_risk_auto_runs_at_once_only_when_confident_and_not_paused(gate: Gate) -> None:
    args = {"channel": CHANNEL, "text": "hello"}
    assert decide(gate, "post_message", args).verdict is Verdict.RUN_NOW
    low_conf = decide(gate, "post_message", args, 0.7)
    assert low_conf.verdict is Verdict.AWAIT and low_conf.required_approvals == 1
    paused = decide(gate, "post_message", args, paused=True)
    assert paused.verdict is Verdict.AWAIT
    demoted = decide(gate, "post_message", args, overrides={"post_message": "approve"})
    assert demoted.verdict is Verdict.AWAIT
    suggest = decide(gate, "post_message", args, overrides={"post_message": "suggest"})
    assert suggest.verdict is Verdict.SUGGEST
    assert [d.status for d in (low_conf, suggest)] == [
        ActionStatus.AWAITING_APPROVAL,
        ActionStatus.SUGGESTED,
    ]
    assert decide(gate, "post_message", args).status == ActionStatus.APPROVED


def test_text_not_written_by_the_requester_or_a_persons_edit_means_a_click(gate: Gate) -> None:
    args = {"channel": CHANNEL, "text": "hello"}
    tainted = decide(gate, "post_message", args, taint="output of lookup_user")
    assert tainted.verdict is Verdict.AWAIT and tainted.required_approvals == 1
    assert "not written by the requester" in tainted.reason and "lookup_user" in tainted.reason
    edited = decide(gate, "post_message", args, edited_by=APPROVER)
    assert edited.verdict is Verdict.AWAIT and "edited" in edited.reason
    # A call already on a card (a re-check) is not promoted to run unattended either.
    assert decide(gate, "post_message", args, on_card=True).verdict is Verdict.AWAIT


def test_tiers(gate: Gate) -> None:
    medium = decide(gate, "flush_cache", {"name": "pages"})
    assert (medium.verdict, medium.required_approvals) == (Verdict.AWAIT, 1)
    assert gate.excluded(action_of(medium)) == set()
    assert gate.rule_text(action_of(medium)) == "one approver"
    high = decide(gate, "restart_service", {"service": "checkout-api"})
    assert (high.verdict, high.required_approvals) == (Verdict.AWAIT, 1)
    assert gate.excluded(action_of(high)) == {REQUESTER}
    assert "not the requester" in gate.rule_text(action_of(high))
    critical = decide(gate, "scale", {"service": "api", "env": "prod"})
    assert critical.risk is Risk.CRITICAL and critical.required_approvals == 2
    assert critical.needs_preview and critical.escalate
    assert gate.excluded(action_of(critical)) == {REQUESTER}
    assert gate.rule_text(action_of(critical)).startswith("two approvers")
    staging = decide(gate, "scale", {"service": "api", "env": "staging"})
    assert staging.risk is Risk.MEDIUM
    auto = decide(gate, "post_message", {"channel": CHANNEL, "text": "x"})
    assert gate.rule_text(action_of(auto, decided_by=GATE)).startswith("ran at once")
    suggested = decide(gate, "flush_cache", {"name": "pages"}, overrides={"flush_cache": "suggest"})
    assert "suggestion only" in gate.rule_text(action_of(suggested))


def test_confidence_never_lowers_requirements(gate: Gate) -> None:
    for confidence in (1.0, 0.99, 0.8):
        d = decide(gate, "restart_service", {"service": "web"}, confidence)
        assert d.verdict is Verdict.AWAIT and gate.excluded(action_of(d)) == {REQUESTER}
    assert decide(gate, "restart_service", {"service": "web"}, 0.3).verdict is Verdict.CLARIFY
    # Once a person has edited it (or it is on a card), confidence no longer asks.
    edited = decide(gate, "restart_service", {"service": "web"}, 0.3, edited_by=APPROVER)
    assert edited.verdict is Verdict.AWAIT
    on_card = decide(gate, "restart_service", {"service": "web"}, 0.3, on_card=True)
    assert on_card.verdict is Verdict.AWAIT


def test_per_tool_confidence_floors(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["tools"]["post_message"] = {"autonomy": "auto", "min_confidence": 0.95}
    data["tools"]["restart_service"] = {"clarify_below": 0.75}
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy))
    args = {"channel": CHANNEL, "text": "x"}
    assert decide(gate, "post_message", args, 0.9).verdict is Verdict.AWAIT
    assert decide(gate, "post_message", args, 0.96).verdict is Verdict.RUN_NOW
    assert decide(gate, "restart_service", {"service": "w"}, 0.7).verdict is Verdict.CLARIFY
    assert decide(gate, "flush_cache", {"name": "pages"}, 0.7).verdict is Verdict.AWAIT


@pytest.mark.parametrize(
    ("tool", "args", "confidence", "reason"),
    [
        ("rm_rf", {}, 1.0, "no tool called 'rm_rf'"),
        ("restart_service", {"service": "web; rm -rf /"}, 1.0, "invalid arguments"),
        ("restart_service", {"service": "-x"}, 1.0, "must not start with '-'"),
        ("restart_service", {"service": "web", "extra": 1}, 1.0, "Extra inputs"),
        ("restart_service", "web", 1.0, "must be an object"),
        ("flush_cache", {"name": "everything"}, 1.0, "must be one of"),
        ("post_message", {"channel": "general", "text": "x"}, 1.0, "precondition failed"),
        ("restart_service", {"service": "web"}, 1.5, "no valid confidence"),
        ("restart_service", {"service": "web"}, float("nan"), "no valid confidence"),
        ("restart_service", {"service": "web"}, True, "no valid confidence"),
        ("lookup_user", {"user": APPROVER}, 1.0, "read-only lookup"),
    ],
)
def test_refusals(gate: Gate, tool: str, args: object, confidence: float, reason: str) -> None:
    d = decide(gate, tool, args, confidence)
    assert d.verdict is Verdict.REFUSE
    assert d.status == ActionStatus.REFUSED
    assert reason in d.reason


def test_a_post_reaches_only_the_requests_channel_and_the_ones_its_policy_lists(
    tmp_path: Path,
) -> None:
    data = policy_data(tmp_path)
    data["tools"]["post_message"] = {"autonomy": "auto", "channels": ["C0RELEASE"]}
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy))

    def post(target: str, **kw: Any) -> Decision:
        return decide(gate, "post_message", {"channel": target, "text": "hi"}, **kw)

    assert post(CHANNEL).verdict is Verdict.RUN_NOW
    assert post("C0RELEASE").verdict is Verdict.RUN_NOW
    elsewhere = post("C0ELSEWHERE")
    assert elsewhere.verdict is Verdict.REFUSE and "tools.post_message.channels" in elsewhere.reason
    admin = post("C0OPS", channel="C0OPS")  # not even when asked in the admin channel
    assert admin.verdict is Verdict.REFUSE and "admin channel" in admin.reason
    # One request may call a tool `max_per_request` times (3 unless the policy says).
    assert post(CHANNEL, same_tool_earlier=2).verdict is Verdict.RUN_NOW
    capped = post(CHANNEL, same_tool_earlier=3)
    assert capped.verdict is Verdict.REFUSE and "at most 3 times" in capped.reason


def test_high_risk_refused_when_nobody_else_may_approve(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["access"]["approvers"] = [REQUESTER]
    data["tools"]["scale"] = {"autonomy": "suggest"}  # it can reach critical: two needed
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy))
    d = decide(gate, "restart_service", {"service": "web"})
    assert d.verdict is Verdict.REFUSE and "other than the requester" in d.reason


def test_an_editor_may_not_be_the_approver_a_high_or_critical_call_needs(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["access"]["approvers"] = [REQUESTER, APPROVER, APPROVER2]
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy))
    # Edited by an approver, a critical call has one eligible approver left: refused.
    critical = decide(gate, "scale", {"service": "api", "env": "prod"}, edited_by=APPROVER)
    assert critical.verdict is Verdict.REFUSE and "needs 2" in critical.reason
    high = decide(gate, "restart_service", {"service": "web"}, edited_by=APPROVER)
    assert high.verdict is Verdict.AWAIT
    action = action_of(high, edited_by=APPROVER)
    assert gate.excluded(action) == {REQUESTER, APPROVER}
    ruling = gate.approve(action, [], APPROVER, NOW)
    assert ruling.step is Step.DENY and "you edited" in ruling.reason
    assert "four eyes" in ruling.reason
    assert gate.approve(action, [], APPROVER2, NOW).step is Step.RECORD
    # An approval the editor gave before counts for nothing.
    assert gate.counted(action, [approval(action, APPROVER)]) == set()


def test_an_approve_click(gate: Gate) -> None:
    high = waiting(gate, "restart_service", {"service": "web"})
    assert gate.approve(high, [], APPROVER, NOW).step is Step.RECORD
    stranger = gate.approve(high, [], STRANGER, NOW)
    assert stranger.step is Step.DENY and "not an approver" in stranger.reason
    own = gate.approve(high, [], REQUESTER, NOW)
    assert own.step is Step.DENY and "four eyes" in own.reason
    medium = waiting(gate, "flush_cache", {"name": "pages"})
    assert gate.approve(medium, [], REQUESTER, NOW).step is Step.RECORD
    critical = waiting(gate, "scale", {"service": "api", "env": "prod"})
    given = [approval(critical, APPROVER)]
    twice = gate.approve(critical, given, APPROVER, NOW)
    assert twice.step is Step.DENY and "already approved" in twice.reason
    assert gate.approve(critical, given, APPROVER2, NOW).step is Step.RECORD
    # A critical call is approvable only once its dry-run preview is on the card.
    unseen = gate.approve(action_of(critical_decision(gate), preview=None), [], APPROVER, NOW)
    assert unseen.step is Step.DENY and "preview" in unseen.reason


def test_an_approve_click_is_ruled_against_the_state_now(gate: Gate) -> None:
    high = waiting(gate, "restart_service", {"service": "web"})
    # Enough approvals on record, yet still waiting (a pause won the race to start it):
    # the approver's next click starts it.
    mine = [approval(high, APPROVER)]
    assert gate.approve(high, mine, APPROVER, NOW).step is Step.START
    assert gate.approve(high, mine, APPROVER2, NOW).step is Step.RECORD
    # Nothing to approve once it moved on; the click says what it is now.
    started = action_of(critical_decision(gate), status=ActionStatus.EXECUTING)
    gone = gate.approve(started, [approval(started, APPROVER)], APPROVER, NOW)
    assert gone.step is Step.DENY and "already approved" in gone.reason
    assert "executing" in gone.reason
    rejected = gate.approve(
        action_of(critical_decision(gate), status="rejected"), [], APPROVER, NOW
    )
    assert rejected.step is Step.DENY and "rejected" in rejected.reason
    # Past its approval_ttl it expires at the click.
    late = Now(paused=False, at=AT + timedelta(hours=2))
    assert gate.approve(high, [], APPROVER, late).step is Step.EXPIRE
    # Its tool set to `suggest` since the card was posted: re-checked, nothing recorded.
    suggest = Now(paused=False, autonomy={"restart_service": "suggest"}, at=AT)
    ruling = gate.approve(high, [], APPROVER, suggest)
    assert ruling.step is Step.RECHECK and ruling.decision is not None
    assert ruling.decision.verdict is Verdict.SUGGEST
    # Proposed under another policy version: re-gated under this one.
    old = action_of(decide(gate, "restart_service", {"service": "web"}), policy_version="old")
    ruling = gate.approve(old, [], APPROVER, NOW)
    assert ruling.step is Step.RECHECK and ruling.decision is not None
    assert ruling.decision.verdict is Verdict.AWAIT
    assert ruling.decision.policy_version == gate.policy.version
    # A pause does not stop an approval being recorded (it stops the run).
    assert gate.approve(high, [], APPROVER, Now(paused=True, at=AT)).step is Step.RECORD


def test_a_recheck_never_promotes_a_call_to_run_unattended(gate: Gate) -> None:
    low = decide(gate, "post_message", {"channel": CHANNEL, "text": "x"})
    held = action_of(low, status=ActionStatus.AWAITING_APPROVAL, policy_version="old")
    decision = gate.recheck(held, NOW)
    assert decision is not None and decision.verdict is Verdict.AWAIT
    assert decision.required_approvals == 1
    same = action_of(low, status=ActionStatus.AWAITING_APPROVAL)
    assert gate.recheck(same, NOW) is None


def test_approvals_count_only_for_the_exact_call(gate: Gate) -> None:
    action = waiting(gate, "restart_service", {"service": "web"}, revision=2)
    assert gate.counted(action, [approval(action, APPROVER)]) == {APPROVER}
    assert gate.met(action, [approval(action, APPROVER)])
    for stale in (
        approval(action, APPROVER, revision=1),
        approval(action, APPROVER, args_json='{"service":"api"}'),
        approval(action, APPROVER, policy_version="old"),
        approval(action, STRANGER),  # not (or no longer) an approver
        approval(action, REQUESTER),  # four eyes
    ):
        assert gate.counted(action, [stale]) == set()
        assert not gate.met(action, [stale])
    critical = waiting(gate, "scale", {"service": "api", "env": "prod"})
    one = [approval(critical, APPROVER)]
    assert not gate.met(critical, one)
    assert gate.met(critical, [*one, approval(critical, APPROVER3)])


def test_canonical_arguments_bind_the_call(gate: Gate) -> None:
    a = decide(gate, "scale", {"env": "staging", "service": "api"})
    b = decide(gate, "scale", {"service": "api", "env": "staging"})
    assert a.args_json == b.args_json
    assert a.policy_version == gate.policy.version


def test_runnable(gate: Gate) -> None:
    approved = waiting(gate, "restart_service", {"service": "web"}, status="approved")
    given = [approval(approved, APPROVER)]
    assert gate.runnable(approved, given, NOW) is None
    assert "paused" in (gate.runnable(approved, given, Now(paused=True)) or "")
    assert "do not cover" in (gate.runnable(approved, [], NOW) or "")
    assert "policy changed" in (
        gate.runnable(action_of(critical_decision(gate), policy_version="old"), given, NOW) or ""
    )
    suggest = Now(paused=False, autonomy={"restart_service": "suggest"})
    assert "suggest" in (gate.runnable(approved, given, suggest) or "")
    low = decide(gate, "post_message", {"channel": CHANNEL, "text": "x"})
    auto = action_of(low, decided_by=GATE)
    assert gate.runnable(auto, [], NOW) is None
    demoted = Now(paused=False, autonomy={"post_message": "approve"})
    assert "no longer qualifies" in (gate.runnable(auto, [], demoted) or "")
    tainted = action_of(low, decided_by=GATE, taint="output of lookup_user")
    assert "no longer qualifies" in (gate.runnable(tainted, [], NOW) or "")


def test_may_edit_and_may_reject(gate: Gate) -> None:
    action = waiting(gate, "restart_service", {"service": "web"})
    for user in (REQUESTER, APPROVER):
        assert gate.may_edit(action, user) is None
        assert gate.may_reject(action, user) is None
    assert "only the requester or an approver" in (gate.may_edit(action, STRANGER) or "")
    assert "only approvers or the requester" in (gate.may_reject(action, STRANGER) or "")
    suggestion = waiting(gate, "restart_service", {"service": "web"}, status="suggested")
    assert gate.may_reject(suggestion, APPROVER) is None
    assert "can't be edited" in (gate.may_edit(suggestion, APPROVER) or "")
    done = waiting(gate, "restart_service", {"service": "web"}, status="succeeded")
    assert "can't be rejected" in (gate.may_reject(done, APPROVER) or "")
    assert "can't be edited" in (gate.may_edit(done, APPROVER) or "")


def test_may_undo(gate: Gate) -> None:
    def done(tool: str, args: object, requester: str = REQUESTER, **values: Any) -> Action:
        fields: dict[str, Any] = {
            "requester": requester,
            "status": ActionStatus.SUCCEEDED,
            "undo_until": AT + timedelta(hours=1),
        }
        return waiting(gate, tool, args, **{**fields, **values})

    high = done("restart_service", {"service": "web"})
    assert gate.may_undo(high, APPROVER, NOW) is None
    assert gate.may_undo(high, REQUESTER, NOW) is not None
    critical = done("scale", {"service": "api", "env": "prod"})
    assert gate.may_undo(critical, STRANGER, NOW) is not None
    medium = done("flush_cache", {"name": "pages"})
    assert gate.may_undo(medium, REQUESTER, NOW) is None
    assert gate.may_undo(done("flush_cache", {"name": "pages"}, STRANGER), APPROVER, NOW) is None
    assert gate.may_undo(medium, STRANGER, NOW) is not None
    # Four eyes counts the arguments' editor as a requester for undo too.
    edited = done("restart_service", {"service": "web"}, edited_by=APPROVER)
    assert gate.may_undo(edited, APPROVER, NOW) is not None
    assert gate.may_undo(edited, APPROVER2, NOW) is None
    # Never while paused, and only within the window, once.
    assert "paused" in (gate.may_undo(high, APPROVER, Now(paused=True, at=AT)) or "")
    closed = Now(paused=False, at=AT + timedelta(hours=2))
    assert "can't be undone" in (gate.may_undo(high, APPROVER, closed) or "")
    undone = done("restart_service", {"service": "web"}, status=ActionStatus.UNDONE)
    assert "can't be undone" in (gate.may_undo(undone, APPROVER, NOW) or "")


def test_autonomy_stages(gate: Gate) -> None:
    assert gate.autonomy("post_message", {}) is Autonomy.AUTO
    assert gate.autonomy("post_message", {"post_message": "approve"}) is Autonomy.APPROVE
    assert gate.autonomy("post_message", {"post_message": "bogus"}) is Autonomy.AUTO
    assert gate.autonomy_label("restart_service", {}) == "approve"
    assert gate.autonomy_label("lookup_user", {}).startswith("read-only")
    assert gate.may_set_autonomy("post_message", Autonomy.AUTO) is None
    assert gate.may_set_autonomy("restart_service", Autonomy.SUGGEST) is None
    assert "not low risk" in (gate.may_set_autonomy("restart_service", Autonomy.AUTO) or "")
    assert "read-only" in (gate.may_set_autonomy("lookup_user", Autonomy.APPROVE) or "")
    assert "no tool called" in (gate.may_set_autonomy("rm_rf", Autonomy.APPROVE) or "")
