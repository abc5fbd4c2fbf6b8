"""The gate's rules per risk tier, confidence and autonomy (PRODUCT.md, "Risk and autonomy")."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import build_registry
from bot.gate import ActionView, Decision, Gate, Verdict
from bot.policy import Policy, Risk, parse_policy
from tests.conftest import APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data


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
    paused: bool = False,
    overrides: dict[str, str] | None = None,
) -> Decision:
    return gate.decide(
        tool=tool,
        args=args,
        confidence=confidence,
        requester=requester,
        paused=paused,
        autonomy_overrides=overrides,
    )


def test_low_risk_auto_runs_at_once_only_when_confident_and_not_paused(gate: Gate) -> None:
    args = {"channel": "C0GENERAL", "text": "hello"}
    assert decide(gate, "post_message", args).verdict is Verdict.RUN_NOW
    low_conf = decide(gate, "post_message", args, 0.7)
    assert low_conf.verdict is Verdict.AWAIT and low_conf.required_approvals == 1
    paused = decide(gate, "post_message", args, paused=True)
    assert paused.verdict is Verdict.AWAIT
    demoted = decide(gate, "post_message", args, overrides={"post_message": "approve"})
    assert demoted.verdict is Verdict.AWAIT
    suggest = decide(gate, "post_message", args, overrides={"post_message": "suggest"})
    assert suggest.verdict is Verdict.SUGGEST


def test_tiers(gate: Gate) -> None:
    medium = decide(gate, "flush_cache", {"name": "pages"})
    assert (medium.verdict, medium.required_approvals, medium.exclude_requester) == (
        Verdict.AWAIT,
        1,
        False,
    )
    high = decide(gate, "restart_service", {"service": "checkout-api"})
    assert (high.verdict, high.required_approvals, high.exclude_requester) == (
        Verdict.AWAIT,
        1,
        True,
    )
    critical = decide(gate, "scale", {"service": "api", "env": "prod"})
    assert critical.risk is Risk.CRITICAL and critical.required_approvals == 2
    assert critical.needs_preview and critical.escalate and critical.exclude_requester
    staging = decide(gate, "scale", {"service": "api", "env": "staging"})
    assert staging.risk is Risk.MEDIUM


def test_confidence_never_lowers_requirements(gate: Gate) -> None:
    for confidence in (1.0, 0.99, 0.8):
        d = decide(gate, "restart_service", {"service": "web"}, confidence)
        assert d.verdict is Verdict.AWAIT and d.exclude_requester
    assert decide(gate, "restart_service", {"service": "web"}, 0.3).verdict is Verdict.CLARIFY


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
    ],
)
def test_refusals(gate: Gate, tool: str, args: object, confidence: float, reason: str) -> None:
    d = decide(gate, tool, args, confidence)
    assert d.verdict is Verdict.REFUSE
    assert reason in d.reason


def test_high_risk_refused_when_nobody_else_may_approve(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["access"]["approvers"] = [REQUESTER]
    data["tools"]["scale"] = {"autonomy": "suggest"}  # it can reach critical: two needed
    policy = parse_policy(data)
    gate = Gate(policy, build_registry(policy))
    d = decide(gate, "restart_service", {"service": "web"})
    assert d.verdict is Verdict.REFUSE and "other than the requester" in d.reason


def test_may_approve(gate: Gate) -> None:
    view = ActionView(
        tool="restart_service",
        requester=REQUESTER,
        risk=Risk.HIGH,
        status="awaiting_approval",
        exclude_requester=True,
    )
    assert gate.may_approve(view, APPROVER) is None
    assert "not an approver" in (gate.may_approve(view, STRANGER) or "")
    assert "four eyes" in (gate.may_approve(view, REQUESTER) or "")
    medium = ActionView(
        tool="flush_cache",
        requester=REQUESTER,
        risk=Risk.MEDIUM,
        status="awaiting_approval",
        exclude_requester=False,
    )
    assert gate.may_approve(medium, REQUESTER) is None
    twice = ActionView(
        tool="scale",
        requester=REQUESTER,
        risk=Risk.CRITICAL,
        status="awaiting_approval",
        exclude_requester=True,
        already_approved_by=[APPROVER],
    )
    assert "already approved" in (gate.may_approve(twice, APPROVER) or "")
    assert gate.may_approve(twice, APPROVER2) is None


def test_canonical_arguments_bind_the_call(gate: Gate) -> None:
    a = decide(gate, "scale", {"env": "staging", "service": "api"})
    b = decide(gate, "scale", {"service": "api", "env": "staging"})
    assert a.args_json == b.args_json
    assert a.policy_version == gate.policy.version


def test_may_undo(gate: Gate) -> None:
    assert gate.may_undo("restart_service", Risk.HIGH, REQUESTER, APPROVER) is None
    assert gate.may_undo("restart_service", Risk.HIGH, REQUESTER, REQUESTER) is not None
    assert gate.may_undo("restart_service", Risk.CRITICAL, REQUESTER, STRANGER) is not None
    assert gate.may_undo("flush_cache", Risk.MEDIUM, REQUESTER, REQUESTER) is None
    assert gate.may_undo("flush_cache", Risk.MEDIUM, STRANGER, APPROVER) is None
    assert gate.may_undo("flush_cache", Risk.MEDIUM, REQUESTER, STRANGER) is not None
