"""The Claude planner through Slack: the real Bolt app, the real `anthropic` SDK, a stub API.

Every test here goes mention (signed HTTP) → Warden → SDK → stub Messages API → gate → card
(Web API calls to the local workspace), so request building, parsing and retries are the
SDK's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.resources.messages.messages as sdk_messages
from sqlmodel import select

from bot.claude import ASK, CANNOT_HELP
from bot.policy import parse_policy
from bot.settings import DEFAULT_MODEL
from storage.models import ActionStatus, Request, RequestStatus
from tests.anthropic_stub import (
    AnthropicStub,
    error,
    garbage,
    propose,
    reply,
    slow,
    text,
    tool_use,
)
from tests.conftest import APPROVER, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, buttons, card_text


def thread_replies(slack: Slack, thread_ts: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
        if c.params.get("thread_ts") == thread_ts and not c.params.get("blocks")
    ]


def all_requests(slack: Slack) -> list[Request]:
    with slack.store.db.read() as session:
        rows = session.exec(select(Request)).all()
        return sorted(rows, key=lambda r: r.created_at)


def restart(service: str, confidence: float = 0.9, why: str = "The service is stuck.") -> Any:
    return reply(propose("restart_service", {"service": service}, confidence, why))


# -- the happy paths -------------------------------------------------------------------------


def test_free_form_request_becomes_a_card(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        restart("checkout-api", 0.9, "checkout-api returns 502s; a restart clears it.")
    )
    action, card = slack.mention_and_card("checkout is throwing 502s, can you bounce it?")
    assert action.tool == "restart_service" and json.loads(action.args_json) == {
        "service": "checkout-api"
    }
    assert action.status == ActionStatus.AWAITING_APPROVAL
    shown = card_text(card)
    assert "90%" in shown and "a restart clears it" in shown and "high" in shown
    assert buttons(card) == [
        "Approve",
        "Approve identical calls for 30 min",
        "Edit",
        "Reject",
        "Break glass",
    ]

    sent = anthropic_stub.seen[0]
    key = sent.headers.get("x-api-key") or sent.headers["authorization"].removeprefix("Bearer ")
    assert key == "sk-ant-test"
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == DEFAULT_MODEL
    assert "checkout is throwing 502s" in sent.first_text()
    assert sent.body["tool_choice"] == {"type": "any"}

    # The card it made is an ordinary card: approval by someone else runs it once.
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart checkout-api {action.id}"]


def test_tools_come_from_the_registry_with_schemas() -> None:
    policy = parse_policy(policy_data(Path("/tmp")))
    from bot.app import build_registry
    from bot.claude import tool_specs

    registry = build_registry(policy)
    # Warden's own tools and the policy's; installed third-party plugins (`make check`
    # installs the example one) offer theirs too: tests/test_plugins.py covers those.
    specs = {
        t["name"]: t
        for t in tool_specs(registry)
        if t["name"] not in registry or not registry.get(t["name"]).source.startswith("plugin ")
    }
    assert set(specs) == {
        "flush_cache",
        "list_pending_actions",
        "lookup_user",
        "who_is_on_call",
        "post_message",
        "remember",
        "restart_service",
        "scale",
        "search_memory",
        "archive_channel",
        "channel_info",
        "create_channel",
        "invite_to_channel",
        "pin_message",
        "set_channel_purpose",
        "set_channel_topic",
        "create_task",
        "assign_task",
        "complete_task",
        "list_tasks",
        "create_reminder",
        "cancel_reminder",
        "list_reminders",
        "declare_incident",
        "assign_incident_role",
        "set_incident_severity",
        "post_incident_update",
        "add_incident_timeline_entry",
        "resolve_incident",
        "export_incident_timeline",
        "list_open_incidents",
        ASK,
        CANNOT_HELP,
    }
    scale = specs["scale"]["input_schema"]
    assert scale["required"] == ["arguments", "confidence", "rationale"]
    args = scale["properties"]["arguments"]
    assert args["properties"]["env"]["enum"] == ["staging", "prod"]
    assert args["properties"]["service"]["pattern"] == "^[a-z0-9-]{1,40}$"
    assert "raise" in specs["scale"]["description"]
    assert "READ-ONLY" in specs["lookup_user"]["description"]
    assert "U012ABCDEF" in specs["lookup_user"]["description"]  # a usage example
    # Nothing offered to the model can touch pause state, approvers, policy or the audit log.
    for name in specs:
        assert not any(w in name for w in ("pause", "resume", "autonomy", "approv", "audit"))


def test_read_only_lookup_feeds_the_plan(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(text("Let me check who that is."), tool_use("lookup_user", {"user": APPROVER})),
        reply(
            propose(
                "post_message",
                {"channel": "C0GENERAL", "text": "Avery is on call today."},
                0.95,
                "Announces the on-call person the requester named.",
            )
        ),
    )
    slack.ws.mention(REQUESTER, CHANNEL, f"tell everyone <@{APPROVER}> is on call")
    slack.idle()
    second = anthropic_stub.seen[1]
    (result,) = second.tool_results()
    assert result["tool_use_id"] == anthropic_stub.seen[1].messages[1]["content"][1]["id"]
    assert result["content"].startswith('<data source="result of lookup_user">')
    assert "Avery (approver)" in result["content"]  # users.info, from the workspace
    assert not result.get("is_error")
    lookups = [a for a in slack.store.audit_rows() if a.kind == "lookup"]
    assert len(lookups) == 1

    def posted() -> list[str]:
        return [
            c.params["text"]
            for c in slack.ws.calls("chat.postMessage")
            if c.params.get("text") == "Avery is on call today."
        ]

    # post_message is low risk with autonomy auto, but the lookup's output entered the loop
    # that proposed it (taint): it waits for a click, and the card says why.
    (action,) = slack.store.actions_with_status(list(ActionStatus))
    assert action.tool == "post_message" and action.status == ActionStatus.AWAITING_APPROVAL
    assert action.taint == "output of lookup_user"
    assert posted() == []
    card = slack.card(action.id)
    assert "not written by the requester" in card_text(card) and "lookup_user" in card_text(card)
    assert buttons(card) == ["Approve", "Approve identical calls for 30 min", "Edit", "Reject"]
    # Approved, it runs once.
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert posted() == ["Avery is on call today."]
    row = slack.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.SUCCEEDED


def test_a_thread_follow_up_answers_the_question_and_continues(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(reply(tool_use(ASK, {"question": "Which service should I restart?"})))
    first = slack.ws.mention(REQUESTER, CHANNEL, "restart the thing that is broken")
    assert first.status == 200
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    assert any("Which service should I restart?" in t for t in thread_replies(slack, thread))

    anthropic_stub.enqueue(restart("payments", 0.92, "You said payments."))
    follow = slack.ws.say(REQUESTER, CHANNEL, "payments, please", thread_ts=thread)
    assert follow is not None and follow.status == 200
    slack.idle()
    context = anthropic_stub.seen[1].first_text()
    assert "Which service should I restart?" in context
    assert "restart the thing that is broken" in context
    assert context.rstrip().endswith("payments, please")
    actions = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert [json.loads(a.args_json) for a in actions] == [{"service": "payments"}]
    assert actions[0].thread_ts == thread


def test_the_bot_remembers_what_it_proposed(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(restart("web"))
    action, card = slack.mention_and_card("web is down, restart it")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    anthropic_stub.enqueue(reply(tool_use(CANNOT_HELP, {"reason": "It already ran."})))
    slack.ws.say(REQUESTER, CHANNEL, "did that work?", thread_ts=action.thread_ts)
    slack.idle()
    context = anthropic_stub.seen[1].first_text()
    assert "proposed restart_service" in context and "succeeded" in context
    assert "It already ran." in thread_replies(slack, action.thread_ts)


def test_system_and_tools_are_identical_across_requests_and_cached(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(restart("web"), restart("db-proxy"))
    slack.ws.mention(REQUESTER, CHANNEL, "restart web please")
    slack.idle()
    slack.ws.mention(APPROVER, "C0OPS", "the db proxy needs a kick")
    slack.idle()
    a, b = anthropic_stub.seen
    assert json.dumps(a.body["system"]) == json.dumps(b.body["system"])
    assert json.dumps(a.body["tools"]) == json.dumps(b.body["tools"])
    assert a.first_text() != b.first_text()
    assert a.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert a.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in a.body["tools"][:-1])
    # The stub reports the second request's prefix as read from the cache; Warden stores it.
    reqs = all_requests(slack)
    assert reqs[0].cache_write_tokens > 0 and reqs[0].cache_read_tokens == 0
    assert reqs[1].cache_read_tokens == reqs[0].cache_write_tokens


def test_usage_is_recorded_and_shown_in_status(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(tool_use("list_pending_actions", {}), output_tokens=100),
        reply(propose("flush_cache", {"name": "pages"}, 0.9, "Stale pages."), output_tokens=200),
    )
    slack.ws.mention(REQUESTER, CHANNEL, "the pages look stale")
    slack.idle()
    (req,) = all_requests(slack)
    assert req.output_tokens == 300
    assert req.input_tokens > 0 and req.cost_usd > 0
    status = slack.ws.slash(REQUESTER, CHANNEL, "/warden", "status").body
    assert "300 out" in status and f"${req.cost_usd:.4f}" in status


# -- failures and limits ---------------------------------------------------------------------


def test_rate_limit_is_retried_by_the_sdk(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        error(429, "rate_limit_error", retry_after_ms="5"),
        error(529, "overloaded_error", retry_after_ms="5"),
        restart("web"),
    )
    action, _card = slack.mention_and_card("restart web, it's hung")
    assert action.status == ActionStatus.AWAITING_APPROVAL
    assert [s.headers.get("x-stainless-retry-count") for s in anthropic_stub.seen] == [
        "0",
        "1",
        "2",
    ]


def test_claude_unavailable_is_explained_and_the_request_can_be_retried(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(*[error(529, "overloaded_error", retry_after_ms="1")] * 4)
    slack.ws.mention(REQUESTER, CHANNEL, "restart web, it's hung")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "overloaded" in told and "retry" in told
    assert len(anthropic_stub.seen) == 4  # the first try and the SDK's three retries
    (req,) = all_requests(slack)
    assert req.status == RequestStatus.FAILED

    anthropic_stub.enqueue(restart("web"))
    slack.ws.say(REQUESTER, CHANNEL, "retry", thread_ts=thread)
    slack.idle()
    (req,) = all_requests(slack)  # the same request, not a new one
    assert req.status == RequestStatus.PLANNED
    assert len(slack.store.actions_for_request(req.id)) == 1


def test_a_slow_claude_times_out_with_a_clear_message(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(policy_data(tmp_path, agent={"call_timeout": "300ms", "max_retries": 1}))
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    anthropic_stub.enqueue(slow(5, restart("web")), slow(5, restart("web")))
    slack.ws.mention(REQUESTER, CHANNEL, "could you bounce web for me")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "did not answer in time" in told
    assert slack.store.actions_with_status(list(ActionStatus)) == []


def test_unreadable_answers_are_treated_as_unavailable(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(garbage())
    slack.ws.mention(REQUESTER, CHANNEL, "could you bounce web for me")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "couldn't plan this right now" in told


def test_invalid_arguments_are_sent_back_once(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "Checkout API!"}, 0.9, "Restart it.")),
        restart("checkout-api"),
    )
    action, _ = slack.mention_and_card("bounce checkout please")
    assert json.loads(action.args_json) == {"service": "checkout-api"}
    (result,) = anthropic_stub.seen[1].tool_results()
    assert result["is_error"] is True and "does not match the allowed pattern" in result["content"]


def test_invalid_twice_ends_with_no_safe_action(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    bad = reply(propose("restart_service", {"service": "-rf"}, 2.5, "x"))
    anthropic_stub.enqueue(bad, reply(tool_use("no_such_tool", {})))
    slack.ws.mention(REQUESTER, CHANNEL, "bounce everything now")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "couldn't work out a safe action" in told and "no_such_tool" in told
    errors = anthropic_stub.seen[1].tool_results()[0]["content"]
    assert "confidence" in errors  # 2.5 is out of range
    assert slack.store.actions_with_status(list(ActionStatus)) == []
    assert len(anthropic_stub.seen) == 2


def test_step_limit(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(policy_data(tmp_path, agent={"max_steps": 3}))
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    anthropic_stub.responder = lambda body: reply(tool_use("list_pending_actions", {}))
    slack.ws.mention(REQUESTER, CHANNEL, "what is pending? look again and again")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "3 steps" in told and "agent.max_steps" in told
    assert len(anthropic_stub.seen) == 3


def test_cost_limit(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(
        policy_data(tmp_path, agent={"max_cost_usd": 0.01, "max_tokens": 1_000_000})
    )
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    anthropic_stub.responder = lambda body: reply(
        tool_use("list_pending_actions", {}), output_tokens=1000
    )
    slack.ws.mention(REQUESTER, CHANNEL, "look things up")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "agent.max_cost_usd" in told
    # sonnet: 1000 output tokens cost $0.015, over the limit after one call
    assert len(anthropic_stub.seen) == 1
    (req,) = all_requests(slack)
    assert req.cost_usd >= 0.01


def test_token_limit(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    # Its own database: a second workspace started within the same second reuses the first
    # one's message timestamps, and one Slack message is one request.
    tokens = parse_policy(policy_data(tmp_path, agent={"max_tokens": 1000}))
    other = slack_factory(policy_=tokens, claude=anthropic_stub)
    anthropic_stub.responder = lambda body: reply(tool_use("list_pending_actions", {}))
    other.ws.mention(REQUESTER, CHANNEL, "look things up")
    other.idle()
    thread = other.ws.calls("reactions.add")[0].params["timestamp"]
    assert any("agent.max_tokens" in t for t in thread_replies(other, thread))


def test_without_a_key_free_form_requests_say_a_key_is_needed(slack: Slack) -> None:
    slack.ws.mention(REQUESTER, CHANNEL, "please look at why checkout is slow")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "ANTHROPIC_API_KEY" in told and "restart {service}" in told


def test_aliases_go_first_and_need_no_model(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    action, _ = slack.mention_and_card("restart web")
    assert action.confidence == 1.0
    assert anthropic_stub.seen == []


def test_default_model_is_current() -> None:
    assert DEFAULT_MODEL not in sdk_messages.DEPRECATED_MODELS


def test_retries_never_outlast_the_request_deadline(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    policy = parse_policy(policy_data(tmp_path, agent={"max_seconds": "3s"}))
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    # Claude asks for a 30 s back-off: waiting would blow the 3 s budget, so Warden stops.
    anthropic_stub.enqueue(error(429, "rate_limit_error", retry_after="30"))
    slack.ws.mention(REQUESTER, CHANNEL, "could you bounce web for me")
    slack.idle()
    thread = slack.ws.calls("reactions.add")[0].params["timestamp"]
    (told,) = thread_replies(slack, thread)
    assert "agent.max_seconds" in told and "retry" in told
    assert len(anthropic_stub.seen) == 1
    (req,) = all_requests(slack)
    assert req.status == RequestStatus.FAILED


def test_secrets_are_redacted_before_they_reach_the_model(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(reply(tool_use(CANNOT_HELP, {"reason": "I can't log in for you."})))
    slack.ws.mention(
        REQUESTER,
        CHANNEL,
        "log in to grafana with password=hunter22 and token xoxb-123456789012-abcdefghij",
    )
    slack.idle()
    sent = json.dumps(anthropic_stub.seen[0].body)
    assert "hunter22" not in sent and "xoxb-123456789012" not in sent
    assert "[redacted" in sent


def test_a_top_level_dm_reply_answers_the_question(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(reply(tool_use(ASK, {"question": "Which service?"})))
    slack.ws.dm(REQUESTER, "something is wedged, kick it")
    slack.idle()
    anthropic_stub.enqueue(restart("payments", 0.9, "You said payments."))
    slack.ws.dm(REQUESTER, "payments")  # not in the thread: top level, as people do in DMs
    slack.idle()
    assert "Which service?" in anthropic_stub.seen[1].first_text()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    (first, second) = all_requests(slack)
    assert action.thread_ts == first.thread_ts == second.thread_ts
    # Once it has an action, a new top-level DM starts a new request.
    anthropic_stub.enqueue(reply(tool_use(CANNOT_HELP, {"reason": "No."})))
    slack.ws.dm(REQUESTER, "also make coffee")
    slack.idle()
    assert all_requests(slack)[-1].thread_ts != first.thread_ts
