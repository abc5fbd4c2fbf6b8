"""Benchmark: acks stay fast while the planner is slow, and clicks start runbooks quickly.

Run on demand (`make bench`); not part of the test suite. Writes bench/results.json.

1. 100 mentions whose planning takes 2 s each are fired; while they wait, 50 more mentions
   and 30 slash commands are timed (HTTP round trip of the signed request = Slack's ack).
   Every one of the 150 requests must eventually be planned.
2. Approve click → runbook process started: the runbook's first act is to write the time.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.planner import AliasPlanner, Plan, PlanRequest
from bot.policy import parse_policy
from bot.settings import Settings
from devslack import Persona, Workspace
from handlers.runtime import start

PLAN_SECONDS = 2.0


class SlowPlanner:
    """The alias planner behind a 2-second wait, standing in for a slow LLM."""

    def __init__(self, inner: AliasPlanner) -> None:
        self.inner = inner

    def plan(self, request: PlanRequest) -> Plan:
        time.sleep(PLAN_SECONDS)
        return self.inner.plan(request)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    stamp = tmp / "started.log"
    policy = parse_policy(
        {
            "access": {"admins": ["U0ADMIN"], "approvers": ["U0APPR"], "admin_channel": "C0OPS"},
            "runbooks": {
                "busy": {
                    "description": "a long-running runbook",
                    "risk": "medium",
                    "command": ["sleep", "{n}"],
                    "params": {"n": {"pattern": "^[0-9]{1,2}$"}},
                },
                "touch": {
                    "description": "write the start time",
                    "risk": "medium",
                    "command": ["sh", "-c", f'date +"$0 %s.%N" >> {stamp}', "{n}"],
                    "params": {"n": {"pattern": "^[a-z0-9]{1,20}$"}},
                },
            },
            "aliases": {"touch {n}": {"runbook": "touch"}, "busy {n}": {"runbook": "busy"}},
            "workers": {"planners": 16, "executors": 8},
        }
    )
    ws = Workspace(
        signing_secret="bench-secret",
        bot_url="",
        bot_token="xoxb-bench",
        team_id="T0B",
        bot_user_id="U0WARDEN",
        personas=[
            Persona(id="U0REQ", name="req", label="requester"),
            Persona(id="U0APPR", name="appr", label="approver"),
            Persona(id="U0ADMIN", name="admin", label="admin"),
        ],
        channels={"C0GENERAL": "general", "C0OPS": "ops"},
    )
    ws.start()
    settings = Settings(
        SLACK_BOT_TOKEN="xoxb-bench",
        SLACK_SIGNING_SECRET="bench-secret",
        SLACK_API_URL=ws.api_url,
        DATABASE_URL=f"sqlite:///{tmp / 'b.db'}",
    )
    from bot.app import build_registry

    registry = build_registry(policy)
    fast = AliasPlanner(policy, registry)
    running = start(settings, host="127.0.0.1", port=0, policy=policy, planner=fast)
    ws.bot_url = running.url + "/slack/events"
    store = running.warden.store
    results: dict[str, Any] = {"plan_seconds": PLAN_SECONDS}
    try:

        def timed(fn: Any) -> float:
            t0 = time.perf_counter()
            delivery = fn()
            assert delivery.status == 200, delivery.status
            return (time.perf_counter() - t0) * 1000

        # Several runbooks running for the whole measurement.
        for _ in range(4):
            ws.mention("U0REQ", "C0GENERAL", "busy 40")
        assert running.warden.workers.wait_idle(30)
        for action in store.actions_with_status(["awaiting_approval"], 10):
            ws.click("U0APPR", "C0GENERAL", str(action.card_ts), "warden_approve")
        running.warden.lifecycle.planner = SlowPlanner(fast)
        with ThreadPoolExecutor(20) as pool:
            list(
                pool.map(
                    lambda i: timed(lambda: ws.mention("U0REQ", "C0GENERAL", f"touch slow{i}")),
                    range(100),
                )
            )
        backlog = running.warden.workers.planners.pending
        mention_ms = [
            timed(lambda i=i: ws.mention("U0REQ", "C0GENERAL", f"touch more{i}")) for i in range(50)
        ]
        slash_ms: list[float] = []
        for i in range(30):
            cmd = (
                ("/warden", "status")
                if i % 3
                else ("/pause", "bench")
                if i % 2
                else ("/resume", "")
            )
            slash_ms.append(timed(lambda c=cmd: ws.slash("U0ADMIN", "C0GENERAL", c[0], c[1])))
        ws.slash("U0ADMIN", "C0GENERAL", "/resume")
        results["planner_backlog_when_timing"] = backlog
        results["runbooks_running_when_timing"] = len(store.actions_with_status(["executing"]))
        all_ms = mention_ms + slash_ms
        results["ack_ms"] = {
            "p50": statistics.median(all_ms),
            "p99": pct(all_ms, 0.99),
            "max": max(all_ms),
            "n": len(all_ms),
        }
        results["mention_ack_ms_p50"] = statistics.median(mention_ms)
        results["slash_ack_ms_p50"] = statistics.median(slash_ms)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if running.warden.workers.wait_idle(1.0):
                break
        with store.db.read() as s:
            from sqlmodel import col, func, select

            from storage.models import Request

            planned = s.exec(
                select(func.count()).select_from(Request).where(col(Request.status) == "planned")
            ).one()
        results["requests_planned"] = int(planned)
        results["requests_sent"] = 150
        results["requests_planned_excluding_busy"] = int(planned) - 4

        # Approve click → runbook process started.
        click_ms: list[float] = []
        running.warden.lifecycle.planner = AliasPlanner(policy, registry)
        for i in range(30):
            ws.mention("U0REQ", "C0GENERAL", f"touch c{i}")
            assert running.warden.workers.wait_idle(30)
            action = next(
                a
                for a in store.actions_with_status(["awaiting_approval"], 500)
                if f'"c{i}"' in a.args_json
            )
            card_ts = str(store.get_action(action.id).card_ts)
            t0 = time.time()
            ws.click("U0APPR", "C0GENERAL", card_ts, "warden_approve")
            assert running.warden.workers.wait_idle(30)
            line = next(ln for ln in stamp.read_text().splitlines() if ln.startswith(f"c{i} "))
            click_ms.append((float(line.split()[1]) - t0) * 1000)
        results["approve_to_process_ms"] = {
            "p50": statistics.median(click_ms),
            "p90": pct(click_ms, 0.9),
            "n": len(click_ms),
        }
    finally:
        running.stop()
        ws.stop()
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    ok = (
        results["ack_ms"]["p99"] <= 100
        and results["requests_planned_excluding_busy"] == 150
        and results["approve_to_process_ms"]["p50"] <= 50
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
