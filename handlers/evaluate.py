"""`warden eval CASES…`: run scenario cases against the planner and the gate.

A case file is TOML with `[[case]]` tables::

    [[case]]
    name = "restart in staging"
    request = "restart checkout-api"
    requester = "U0REQ"              # optional
    expect = "await"                  # refuse | run_now | await | suggest | clarify | answer
    tool = "restart_service"          # optional: the tool the first proposal must use
    args = { service = "checkout-api" }   # optional: arguments that must match
    risk = "high"                     # optional

Nothing runs: planners only propose (read-only lookups are refused here) and the gate only
decides. Exit status 1 if any case fails.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from bot.app import build_planner, check
from bot.errors import ConfigError, PlannerUnavailable
from bot.gate import Gate, Now, Origin
from bot.planner import Clarify, PlanRequest, Proposals, close_planner
from bot.settings import Settings


def _refuse_lookup(name: str, args: dict[str, Any]) -> str:
    return "(lookups are not run during eval)"


def evaluate_case(case: dict[str, Any], gate: Gate, planner: Any) -> tuple[bool, str]:
    request = str(case.get("request", ""))
    requester = str(case.get("requester", "U0EVAL"))
    channel = str(case.get("channel", "C0GENERAL"))
    plan = planner.plan(
        PlanRequest(
            request_id="eval",
            trace_id="eval",
            text=request,
            requester=requester,
            channel=channel,
            run_read_only=_refuse_lookup,
        )
    )
    expect = str(case.get("expect", "await"))
    if isinstance(plan, Clarify):
        got = "clarify"
        detail = plan.question
    elif not isinstance(plan, Proposals) or not plan.calls:
        got = "answer"
        detail = getattr(plan, "message", "")
    else:
        call = plan.calls[0]
        decision = gate.decide(
            tool=call.tool,
            args=call.args,
            confidence=call.confidence,
            origin=Origin(requester=requester, channel=channel),
            now=Now(paused=False),
        )
        got = decision.verdict.value
        detail = f"{call.tool} {json.dumps(call.args, sort_keys=True)} risk={decision.risk}"
        if "tool" in case and call.tool != case["tool"]:
            return False, f"expected tool {case['tool']}, got {detail}"
        if "args" in case and any(
            str(call.args.get(k)) != str(v) for k, v in dict(case["args"]).items()
        ):
            return False, f"expected args {case['args']}, got {detail}"
        if "risk" in case and decision.risk.value != case["risk"]:
            return False, f"expected risk {case['risk']}, got {detail}"
    if got != expect:
        return False, f"expected {expect}, got {got}: {detail[:200]}"
    return True, f"{got}: {detail[:200]}"


def run_eval(settings: Settings, paths: list[str]) -> int:
    policy, registry = check(settings)
    gate = Gate(policy, registry)
    planner = build_planner(settings, policy, registry)
    try:
        return _run_cases(gate, planner, paths)
    finally:
        close_planner(planner)


def _run_cases(gate: Gate, planner: Any, paths: list[str]) -> int:
    failures = total = 0
    for path in paths:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read cases: {exc}") from None
        for i, case in enumerate(data.get("case", [])):
            total += 1
            name = case.get("name", f"{path}#{i + 1}")
            try:
                ok, detail = evaluate_case(case, gate, planner)
            except PlannerUnavailable as exc:
                ok, detail = False, f"planner unavailable: {exc}"
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures or not total else 0
