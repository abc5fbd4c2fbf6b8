"""Metrics through Slack's real request shapes, on both databases: a scenario of approvals,
a rejection, an edit and a failure, then `GET /metrics` parsed with prometheus_client's own
parser, `/warden stats` as a signed slash command, `/readyz`, and the App Home's admin
section; and the deploy files reference only metrics the collector exports."""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bot.claude import price_for
from bot.metrics import WINDOWS
from bot.policy import parse_policy
from bot.policy_sections import AlertsPolicy
from bot.settings import DEFAULT_MODEL, Settings
from handlers.prometheus import MetricsServer, Probes
from handlers.runtime import metrics_server
from storage.models import ActionStatus
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, card_text

ROOT = Path(__file__).resolve().parents[1]
USAGE = {
    "input_tokens": 100,
    "output_tokens": 40,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 0,
}


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, kind, body = get(url + "/metrics")
    assert status == 200 and kind.startswith("text/plain"), body
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def at(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def plans(stub: AnthropicStub, tool: str, args: dict[str, Any], confidence: float) -> None:
    stub.enqueue(reply(propose(tool, args, confidence, "Asked for it."), **USAGE))


@pytest.fixture
def scenario(slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path) -> Slack:
    """Two restarts approved and succeeded, one rejected, one edited then approved and
    succeeded, one call of a runbook that fails."""
    data = policy_data(tmp_path)
    data["runbooks"]["broken"] = {
        "description": "A runbook that always fails",
        "command": ["sh", "-c", "exit 3"],
        "risk": "medium",
    }
    slack = slack_factory(policy_=parse_policy(data), claude=anthropic_stub)
    for service in ("web", "api"):
        plans(anthropic_stub, "restart_service", {"service": service}, 0.95)
        action, card = slack.mention_and_card(f"could you bounce {service} please")
        assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
        slack.idle()
    plans(anthropic_stub, "restart_service", {"service": "db"}, 0.9)
    action, card = slack.mention_and_card("could you bounce db please")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    reason = {"reason": {"value": {"type": "plain_text_input", "value": "not now"}}}
    assert slack.ws.submit_view(APPROVER, view["id"], reason).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.REJECTED

    plans(anthropic_stub, "restart_service", {"service": "cache"}, 0.85)
    edited, card = slack.mention_and_card("could you bounce the cache please")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_edit")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    values = {"arg:service": {"value": {"type": "plain_text_input", "value": "cache-2"}}}
    assert slack.ws.submit_view(APPROVER, view["id"], values).status == 200
    slack.idle()
    slack.ws.click(APPROVER2, CHANNEL, slack.card(edited.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(edited.id).status == ActionStatus.SUCCEEDED

    plans(anthropic_stub, "broken", {}, 0.6)
    failing, card = slack.mention_and_card("run the broken thing")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(failing.id).status == ActionStatus.FAILED
    assert anthropic_stub.unscripted == 0
    return slack


def test_metrics_after_a_scenario_through_slack(
    scenario: Slack, anthropic_stub: AnthropicStub
) -> None:
    slack = scenario
    m = scrape(slack.bot.url)
    restart = {"tool": "restart_service", "tier": "high"}
    broken = {"tool": "broken", "tier": "medium"}
    assert at(m, "warden_actions_total", **restart) == 4
    assert at(m, "warden_actions_total", **broken) == 1
    assert at(m, "warden_tool_outcomes_total", **restart, outcome="succeeded") == 3
    assert at(m, "warden_tool_outcomes_total", **restart, outcome="failed") is None
    assert at(m, "warden_tool_outcomes_total", **broken, outcome="failed") == 1
    assert at(m, "warden_actions_by_status", **restart, status="rejected") == 1
    assert at(m, "warden_actions_by_status", **restart, status="succeeded") == 3
    assert at(m, "warden_edits_total", **restart) == 1
    assert at(m, "warden_requests_total") == 5
    calls = len(anthropic_stub.seen)
    assert calls == 5
    assert at(m, "warden_model_tokens_total", kind="input") == 100 * calls
    assert at(m, "warden_model_tokens_total", kind="output") == 40 * calls
    assert at(m, "warden_model_tokens_total", kind="cache_read") == 1000 * calls
    assert at(m, "warden_model_tokens_total", kind="cache_write") == 0
    price = price_for(DEFAULT_MODEL)
    cost = calls * (100 * price.input + 40 * price.output + 1000 * price.cache_read) / 1e6
    assert at(m, "warden_model_cost_usd_total") == pytest.approx(cost)
    assert at(m, "warden_model_cost_usd_today") == pytest.approx(cost)
    # The confidence histogram: 0.95, 0.95, 0.9, 0.85 for restarts; 0.6 for the broken one.
    assert at(m, "warden_confidence_bucket", **restart, le="0.9") == 2
    assert at(m, "warden_confidence_bucket", **restart, le="0.95") == 4
    assert at(m, "warden_confidence_bucket", **broken, le="0.7") == 1
    assert at(m, "warden_confidence_sum", **restart) == pytest.approx(3.65)
    # The window rates: 4 outcomes (3 succeeded, 1 failed); 5 cards decided by people
    # (a rejection and an edit overrode); 5 decided actions, 1 edited.
    for window in ("1h", "24h"):
        assert at(m, "warden_task_success_ratio", window=window) == pytest.approx(3 / 4)
        assert at(m, "warden_tool_failure_ratio", window=window) == pytest.approx(1 / 4)
        assert at(m, "warden_error_ratio", window=window) == pytest.approx(1 / 4)
        assert at(m, "warden_override_ratio", window=window) == pytest.approx(2 / 5)
        assert at(m, "warden_manual_correction_ratio", window=window) == pytest.approx(1 / 5)
        assert at(m, "warden_cache_read_ratio", window=window) == pytest.approx(1000 / 1100)
        assert at(m, "warden_cost_per_successful_task_usd", window=window) == pytest.approx(
            cost / 3
        )
        assert at(m, "warden_confidence_median", window=window) == pytest.approx(0.9)
        assert at(m, "warden_window_outcomes", window=window) == 4
    assert at(m, "warden_task_success_ratio", window="1h", tool="broken") == 0
    assert at(m, "warden_override_ratio", window="1h", tool="restart_service") == pytest.approx(
        2 / 4
    )
    for name in ("warden_request_to_card_seconds", "warden_approve_to_done_seconds"):
        for q in ("0.5", "0.95"):
            seconds = at(m, name, window="1h", quantile=q)
            assert seconds is not None and 0 <= seconds < 60
    assert at(m, "warden_approval_wait_seconds", window="1h", quantile="0.5") is not None
    # No user, channel or request ids anywhere in what a scraper sees.
    _, _, body = get(slack.bot.url + "/metrics")
    for private in (REQUESTER, APPROVER, APPROVER2, CHANNEL, "could you bounce"):
        assert private not in body


def stats_reply(slack: Slack, user: str, args: str) -> str:
    before = len(slack.ws.messages(CHANNEL, include_ephemeral_for=user))
    delivery = slack.ws.slash(user, CHANNEL, "/warden", f"stats {args}".strip())
    assert delivery.status == 200
    slack.idle()
    messages = slack.ws.messages(CHANNEL, include_ephemeral_for=user)
    assert len(messages) == before + 1
    return str(messages[-1]["text"])


def test_warden_stats_through_a_signed_slash_command(scenario: Slack) -> None:
    slack = scenario
    overall = stats_reply(slack, APPROVER, "")
    assert "last 24h" in overall
    assert "Task success: 75% (none before)" in overall
    assert "Override rate: 40% (none before)" in overall
    assert "Tool failure rate: 25% (none before)" in overall
    assert "Manual correction rate: 20% (none before)" in overall
    assert "4 runs finished: 3 succeeded, 1 failed" in overall
    assert "Worst tools" in overall and "*broken*: 100% failed outcomes (1/1)" in overall
    assert "👍 0 · 👎 0" in overall and "*Prompt cache*: 91% (none before)" in overall
    one = stats_reply(slack, ADMIN, "restart_service 7d")
    assert "`restart_service`, last 7d" in one
    assert "Task success: 100% (none before)" in one and "Override rate: 50% (none before)" in one
    assert "Prompt cache" not in one  # tokens are counted per request, not per tool
    assert "There is no tool called `nope`" in stats_reply(slack, APPROVER, "nope")
    assert "No data yet" in stats_reply(slack, APPROVER, "flush_cache 1h")
    assert "Usage" in stats_reply(slack, APPROVER, "24h 7d")
    refused = stats_reply(slack, STRANGER, "")
    assert "only Warden's approvers and admins" in refused and "Task success" not in refused
    help_text = slack.ws.slash(APPROVER, CHANNEL, "/warden", "help").body
    assert "/warden stats [tool] [24h|7d]" in help_text


def test_warden_stats_with_no_data_yet(slack: Slack) -> None:
    reply_ = stats_reply(slack, ADMIN, "")
    assert "No data yet" in reply_ and "Task success" not in reply_


def test_the_app_home_shows_the_admin_section_to_admins_only(scenario: Slack) -> None:
    slack = scenario
    for user in (ADMIN, APPROVER):
        assert slack.ws.open_home(user).status == 200
    slack.idle()
    admin = card_text(slack.ws.home(ADMIN) or {})
    assert "How Warden is doing" in admin
    assert (
        "Task success: 75% (none before)" in admin and "Override rate: 40% (none before)" in admin
    )
    assert "Worst tools" in admin and "*broken*: 100% failed outcomes" in admin
    approver = card_text(slack.ws.home(APPROVER) or {})
    assert "Waiting for you" in approver
    assert "How Warden is doing" not in approver and "Task success" not in approver


def test_readyz_over_http_follows_the_schema_revision(slack: Slack) -> None:
    script = ScriptDirectory.from_config(slack.store.db.alembic_config())
    head = script.get_current_head()
    older = script.get_revision(head).down_revision
    status, _, body = get(slack.bot.url + "/readyz")
    assert status == 200 and json.loads(body) == {"ok": True, "revision": head}
    with slack.store.db.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": older})
    status, _, body = get(slack.bot.url + "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "ok": False,
        "error": "migrations pending",
        "revision": older,
        "expected": head,
    }
    with slack.store.db.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert get(slack.bot.url + "/readyz")[0] == 200
    # No Slack signature needed, and nothing but these two paths outside /slack/events.
    assert get(slack.bot.url + "/metrics")[0] == 200
    assert get(slack.bot.url + "/metricsz")[0] == 404


def test_the_metrics_port_serves_metrics_and_readiness(slack: Slack) -> None:
    """What `warden serve --socket-mode` starts when WARDEN_METRICS_PORT is set."""
    assert metrics_server(slack.bot.warden, Settings(), "127.0.0.1") is None
    store, clock = slack.store, slack.bot.warden.lifecycle.core.clock
    server = MetricsServer(Probes(store, clock), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert get(url + "/readyz")[0] == 200
        assert at(scrape(url), "warden_requests_total") == 0
        assert get(url + "/slack/events")[0] == 404
    finally:
        server.stop()


def test_stopping_a_server_closes_the_connections_it_accepted(slack: Slack) -> None:
    """A keep-alive client's connection is closed by stop(), not left for the garbage
    collector, and no request thread is left waiting."""
    server = MetricsServer(
        Probes(slack.store, slack.bot.warden.lifecycle.core.clock), "127.0.0.1", 0
    )
    server.start()
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        client.request("GET", "/readyz")
        answer = client.getresponse()
        answer.read()
        assert answer.status == 200 and not answer.will_close  # the connection stays open
        server.stop()
        assert client.sock is not None
        assert client.sock.recv(1) == b""  # closed by the server (a timeout here if not)
        assert not server.http.server.task_dispatcher.threads
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        client.close()
        server.stop()


def alert_rules(source: str) -> list[dict[str, str]]:
    """The rules of a Prometheus rules file (the YAML subset it is written in: `groups:` of
    `rules:`, each `- alert:` with an `expr:` that is inline or a `|` block)."""
    lines = source.splitlines()
    assert lines[[ln.startswith("#") or not ln.strip() for ln in lines].index(False)] == "groups:"
    rules: list[dict[str, str]] = []
    block: list[str] | None = None
    indent = 0
    for line in lines:
        stripped = line.strip()
        if block is not None:
            if stripped and len(line) - len(line.lstrip()) > indent:
                block.append(stripped)
                continue
            rules[-1]["expr"] = " ".join(block)
            block = None
        if stripped.startswith("- alert:"):
            rules.append({"alert": stripped.removeprefix("- alert:").strip()})
        elif stripped.startswith("expr:") and rules:
            value = stripped.removeprefix("expr:").strip()
            if value in ("|", ">"):
                block, indent = [], len(line) - len(line.lstrip())
            else:
                rules[-1]["expr"] = value
    if block is not None:
        rules[-1]["expr"] = " ".join(block)
    assert all(r.get("expr") for r in rules), rules
    return rules


METRIC_NAME = re.compile(r"\bwarden_[a-z0-9_]+")


def exported_names(slack: Slack) -> set[str]:
    _, _, body = get(slack.bot.url + "/metrics")
    names: set[str] = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names |= {s.name for s in family.samples}
    # Families that have no samples yet (no data) are still declared in the exposition.
    names |= set(re.findall(r"^# TYPE (warden_[a-z0-9_]+)", body, re.M))
    return names


def test_the_deploy_files_reference_only_exported_metrics(scenario: Slack) -> None:
    exported = exported_names(scenario)
    dashboard = json.loads((ROOT / "deploy/grafana/warden.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    alerts = alert_rules((ROOT / "deploy/prometheus/warden-alerts.yml").read_text())
    assert {r["alert"] for r in alerts} >= {
        "WardenConfidenceDrop",
        "WardenOverrideSpike",
        "WardenToolErrorRate",
        "WardenDailyCost",
    }
    # The rules' thresholds and minimum volumes are `[alerts]`'s defaults.
    by_name = {r["alert"]: r["expr"] for r in alerts}
    defaults = AlertsPolicy()
    name_of = {span: name for name, span in WINDOWS.items()}
    c, o, e = defaults.confidence_drop, defaults.override_spike, defaults.tool_error_rate
    assert f"< {c.below}" in by_name["WardenConfidenceDrop"]
    assert f">= {c.min_volume}" in by_name["WardenConfidenceDrop"]
    assert f'window="{name_of[c.window]}"' in by_name["WardenConfidenceDrop"]
    assert f"> {o.above}" in by_name["WardenOverrideSpike"]
    assert f">= {o.min_volume}" in by_name["WardenOverrideSpike"]
    assert f'window="{name_of[o.window]}"' in by_name["WardenOverrideSpike"]
    assert f"> {e.above}" in by_name["WardenToolErrorRate"]
    assert f">= {e.min_volume}" in by_name["WardenToolErrorRate"]
    assert f"> {defaults.daily_cost.above_usd:g}" in by_name["WardenDailyCost"]
    used = {n for e in exprs + [r["expr"] for r in alerts] for n in METRIC_NAME.findall(e)}
    assert used and used <= exported, used - exported
    # Every rate is on the dashboard.
    for rate in (
        "warden_task_success_ratio",
        "warden_error_ratio",
        "warden_override_ratio",
        "warden_manual_correction_ratio",
        "warden_tool_failure_ratio",
        "warden_time_to_recovery_seconds",
        "warden_cost_per_successful_task_usd",
        "warden_request_to_card_seconds",
        "warden_approve_to_done_seconds",
        "warden_approval_wait_seconds",
        "warden_confidence_bucket",
        "warden_feedback_votes",
        "warden_cache_read_ratio",
    ):
        assert any(rate in e for e in exprs), rate
