"""Personal data through Slack and the stub Messages API, on both databases.

A request carrying an email, a phone number, a card number and an IBAN: the model sees only
placeholders, the database and the audit rows hold none of the values, the card shows the
approvers the real address, and the approved call runs with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import select

from bot.policy import parse_policy
from storage.models import ActionStatus, AuditEvent
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import APPROVER, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, card_text

EMAIL = "jane.doe@acme-corp.io"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
VALUES = [EMAIL, "jane.doe", "7946 0958", "79460958", "4111 1111", "4111111111111111", "GB82"]


@pytest.fixture
def mail_slack(slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path) -> Slack:
    data = policy_data(tmp_path)
    log = tmp_path / "runbook.log"
    data["runbooks"]["send_report"] = {
        "description": "Send the weekly report to an address",
        "command": ["sh", "-c", 'echo "report $0" >> "$1"', "{to}", str(log)],
        "dry_run": ["echo", "would send the report to {to}"],
        "risk": "medium",
        "params": {"to": {"pattern": r"^[^@\s]+@[a-z0-9.-]+$"}},
    }
    return slack_factory(policy_=parse_policy(data), claude=anthropic_stub)


def everything_stored(slack: Slack, database_url: str, tmp_path: Path) -> str:
    """Every byte Warden keeps: the SQLite files, or every PostgreSQL row as text."""
    if database_url.startswith("sqlite"):
        slack.store.db.engine.dispose()
        return "".join(
            p.read_bytes().decode("latin-1") for p in tmp_path.glob("warden.db*") if p.is_file()
        )
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    out = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
            out.extend(rows)
    engine.dispose()
    return "\n".join(out)


def test_personal_data_never_reaches_the_model_or_storage_yet_the_call_runs_with_it(
    mail_slack: Slack, anthropic_stub: AnthropicStub, database_url: str, tmp_path: Path
) -> None:
    slack = mail_slack
    anthropic_stub.enqueue(
        reply(
            propose(
                "send_report",
                {"to": "<EMAIL_1>"},
                0.95,
                "Sends the report to <EMAIL_1> as asked.",
            )
        )
    )
    slack.ws.mention(
        REQUESTER,
        CHANNEL,
        f"send the weekly report to {EMAIL}; call me on {PHONE} if it fails. "
        f"Bill card {CARD}, refunds to {IBAN}.",
    )
    slack.idle()
    # The model saw placeholders, stable within the request, and none of the values.
    seen = anthropic_stub.seen[0]
    sent = json.dumps([s.body for s in anthropic_stub.seen])
    for value in VALUES:
        assert value not in sent, value
    first = seen.first_text()
    for placeholder in ("<EMAIL_1>", "<PHONE_1>", "<CARD_1>", "<IBAN_1>"):
        assert placeholder in first
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    assert json.loads(action.args_json) == {"to": "<EMAIL_1>"}
    # The card shows the channel's own people the real address, and the dry run used it.
    card = card_text(slack.card(action.id)).replace("\u200b", "")  # links defused by ZWSP
    assert EMAIL in card and "would send the report to " + EMAIL in card
    assert "<EMAIL_1>" not in card
    slack.ws.click(APPROVER, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("report") == [f"report {EMAIL}"]
    row = slack.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.SUCCEEDED
    # Nothing Warden stored holds a value: not the request, the action, the outbox, the
    # audit chain (which records keyed hashes for the placeholders instead).
    stored = everything_stored(slack, database_url, tmp_path)
    for value in VALUES:
        assert value not in stored, value
    with slack.store.db.read() as s:
        audits = [json.loads(a.data) for a in s.exec(select(AuditEvent)).all()]
    proposed = next(a for a in audits if a.get("tool") == "send_report" and "pii" in a)
    assert set(proposed["pii"]) == {"<EMAIL_1>"} and len(proposed["pii"]["<EMAIL_1>"]) == 32


def test_a_follow_up_in_the_thread_keeps_each_requests_values_apart(
    mail_slack: Slack, anthropic_stub: AnthropicStub
) -> None:
    """History is re-masked with the current request's numbers, so <EMAIL_1> never means
    two addresses to the model in one request."""
    slack = mail_slack
    anthropic_stub.enqueue(
        reply(propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "First address."))
    )
    slack.ws.mention(REQUESTER, CHANNEL, "send the weekly report to first@acme-corp.io")
    slack.idle()
    (first,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    thread = first.thread_ts
    anthropic_stub.enqueue(
        reply(propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "The new address."))
    )
    slack.ws.mention(
        REQUESTER, CHANNEL, "actually send it to second@acme-corp.io", thread_ts=thread
    )
    slack.idle()
    second_seen = anthropic_stub.seen[-1].first_text()
    assert "first@" not in second_seen and "second@" not in second_seen
    # This request's own address is <EMAIL_1>; the earlier one, in the history, <EMAIL_2>.
    history, _, message = second_seen.partition("The requester's message:")
    assert "<EMAIL_2>" in history and "<EMAIL_1>" not in history
    assert "<EMAIL_1>" in message
    waiting = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    second = next(a for a in waiting if a.id != first.id)
    slack.ws.click(APPROVER, CHANNEL, slack.card(second.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("report") == ["report second@acme-corp.io"]


def test_an_edit_shows_the_real_value_and_stores_a_placeholder(
    mail_slack: Slack, anthropic_stub: AnthropicStub
) -> None:
    slack = mail_slack
    anthropic_stub.enqueue(reply(propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "As asked.")))
    slack.ws.mention(REQUESTER, CHANNEL, f"send the weekly report to {EMAIL}")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    slack.ws.click(APPROVER, CHANNEL, slack.card(action.id)["ts"], "warden_edit")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    assert EMAIL in json.dumps(view)
    value: dict[str, Any] = {"type": "plain_text_input", "value": "ops-lead@acme-corp.io"}
    done = slack.ws.submit_view(APPROVER, view["id"], {"arg:to": {"value": value}})
    assert done.status == 200 and "errors" not in (done.body or ""), done.body
    slack.idle()
    row = slack.store.get_action(action.id)
    assert row is not None and json.loads(row.args_json) == {"to": "<EMAIL_2>"}
    assert "ops-lead@acme-corp.io" in card_text(slack.card(action.id)).replace("\u200b", "")
    slack.ws.click(REQUESTER, CHANNEL, slack.card(action.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("report") == ["report ops-lead@acme-corp.io"]


def test_slack_markup_and_allowed_values_pass_through_untouched(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    data = policy_data(tmp_path)
    data["redaction"] = {"allow": ["@example.com"]}
    slack = slack_factory(policy_=parse_policy(data), claude=anthropic_stub)
    anthropic_stub.enqueue(reply(propose("restart_service", {"service": "web"}, 0.95, "Asked.")))
    slack.ws.mention(
        REQUESTER,
        CHANNEL,
        f"restart web, tell <@{APPROVER}> in <#{CHANNEL}|general> and ops@example.com, "
        "see <https://status.example.com/x|status> (ts 1700000000.000100)",
    )
    slack.idle()
    first = anthropic_stub.seen[0].first_text()
    (request,) = slack.store.thread_requests(
        CHANNEL, slack.store.latest_request_by(CHANNEL, REQUESTER).thread_ts
    )
    assert f"<@{APPROVER}>" in request.text  # the planner drops mentions; the row keeps it
    for kept in (
        f"<#{CHANNEL}|general>",
        "ops@example.com",
        "<https://status.example.com/x|status>",
        "1700000000.000100",
    ):
        assert kept in first, kept
    assert "<EMAIL_" not in first and "<PHONE_" not in first
