"""Hostile review of Memory and Personal data, through signed Slack requests and the stub
Messages API, on both databases.

Tests marked `# DEFECT:` expose a defect (they fail until it is fixed); the others prove a
property that held under attack."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import select

from bot.policy import parse_policy
from storage.models import ActionStatus, AuditEvent, utcnow
from tests.anthropic_stub import Answer, AnthropicStub, propose, reply, tool_use
from tests.anthropic_stub import text as said
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, buttons, card_text

EMAIL = "jane.doe@acme-corp.io"
LOCAL_PHONE = "07400123456"  # a UK mobile written without "+": a phone only next to a cue
RANDOM = "C0RANDOM"
SECRET_GROUP = "G0SECRET"  # a private channel / group DM (channel_type "group")


# -- helpers ---------------------------------------------------------------------------------


def everything_stored(slack: Slack, database_url: str, tmp_path: Path) -> str:
    """Every byte Warden keeps: the SQLite files (with -wal), or every PostgreSQL row; the
    zero-width spaces `Core.safe` puts into addresses are taken out."""
    if database_url.startswith("sqlite"):
        slack.store.db.engine.dispose()
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("warden.db*") if p.is_file())
        text_ = raw.replace("\u200b".encode(), b"").decode("latin-1")
        return text_.replace("\\u200b", "")
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    out: list[str] = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            out.extend(conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars())
    engine.dispose()
    return "\n".join(out).replace("\u200b", "").replace("\\u200b", "")


def sent_to_model(stub: AnthropicStub) -> str:
    return json.dumps([s.body for s in stub.seen], ensure_ascii=False)


def audit_text(slack: Slack) -> str:
    with slack.store.db.read() as s:
        return "\n".join(a.data for a in s.exec(select(AuditEvent)).all())


def posted(slack: Slack, channel: str) -> str:
    """Everything visible in a channel (messages and cards, every thread)."""
    return "\n".join(card_text(m) for m in slack.ws.messages(channel)).replace("\u200b", "")


def ask(slack: Slack, user: str, channel: str, words: str, thread_ts: str | None = None) -> None:
    assert slack.ws.mention(user, channel, words, thread_ts=thread_ts).status == 200
    slack.idle()


def cannot_help(reason: str = "Nothing to do.") -> Answer:
    return reply(tool_use("warden_cannot_help", {"reason": reason}))


def remember(args: dict[str, Any], rationale: str = "The requester said so.") -> Answer:
    return reply(propose("remember", args, 0.95, rationale))


def actions(slack: Slack, tool: str | None = None) -> list[Any]:
    rows = slack.store.actions_with_status(list(ActionStatus), 1000)
    return sorted((a for a in rows if tool is None or a.tool == tool), key=lambda a: a.created_at)


def current_facts(slack: Slack, *scopes: tuple[str, str]) -> list[Any]:
    return list(
        slack.store.facts_for(
            list(scopes) or [("user", REQUESTER), ("channel", CHANNEL), ("workspace", "")],
            utcnow(),
            None,
            500,
        )
    )


def memory_part(first_text: str) -> str:
    start = first_text.find('<data source="memory">')
    return first_text[start : first_text.find("</data>", start)] if start >= 0 else ""


def with_channels(slack: Slack, *channels: str) -> Slack:
    for channel in channels:
        slack.ws.channels[channel] = channel.lower()
    return slack


@pytest.fixture
def mail_policy(tmp_path: Path) -> dict[str, Any]:
    data = policy_data(tmp_path)
    log = tmp_path / "runbook.log"
    data["runbooks"]["send_report"] = {
        "description": "Send the weekly report to an address",
        "command": ["sh", "-c", 'echo "report $0" >> "$1"', "{to}", str(log)],
        "dry_run": ["echo", "would send the report to {to}"],
        "risk": "medium",
        "params": {"to": {"pattern": r"^[^@\s]+@[a-z0-9.-]+$"}},
    }
    return data


@pytest.fixture
def mail_slack(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, mail_policy: dict[str, Any]
) -> Slack:
    return slack_factory(policy_=parse_policy(mail_policy), claude=anthropic_stub)


# == Personal data ===========================================================================


def test_a_value_only_its_cue_marks_as_personal_is_stored_and_remembered_in_clear(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    database_url: str,
    tmp_path: Path,
) -> None:
    # DEFECT: cue-only PII re-masked value by value (mask_json) is stored and recalled in clear
    slack = with_channels(slack_factory(claude=anthropic_stub), RANDOM)
    anthropic_stub.enqueue(
        reply(
            propose(
                "post_message",
                {"channel": CHANNEL, "text": "<PHONE_1>"},
                0.95,
                "Posts the number as asked.",
            )
        )
    )
    ask(slack, REQUESTER, CHANNEL, f"call me on {LOCAL_PHONE} - post that number here please")
    first = sent_to_model(anthropic_stub)
    assert LOCAL_PHONE not in first and "<PHONE_1>" in first  # intake masked it (cue)
    (action,) = actions(slack, "post_message")
    assert action.status == ActionStatus.SUCCEEDED  # low risk, auto: ran at once
    assert LOCAL_PHONE in posted(slack, CHANNEL)  # the real call, in its own thread: fine
    # Another person, another channel, a request about posting in #general.
    anthropic_stub.enqueue(cannot_help())
    ask(slack, STRANGER, RANDOM, "post the c0general message again")
    leaks = []
    if LOCAL_PHONE in action.args_json:
        leaks.append("action.args_json")
    if LOCAL_PHONE in audit_text(slack):
        leaks.append("audit rows")
    if any(LOCAL_PHONE in f.text for f in current_facts(slack)):
        leaks.append("a workspace decision fact")
    if LOCAL_PHONE in json.dumps(anthropic_stub.seen[-1].body):
        leaks.append("another person's model input (recalled decision)")
    if LOCAL_PHONE in everything_stored(slack, database_url, tmp_path):
        leaks.append("the database")
    assert leaks == [], f"{LOCAL_PHONE} leaked into: {', '.join(leaks)}"


def test_personal_data_the_model_writes_in_a_question_is_stored_in_clear(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    database_url: str,
    tmp_path: Path,
) -> None:
    # DEFECT: warden_ask / cannot_help text skips mask_model_text, so model-written PII is stored
    slack = slack_factory(claude=anthropic_stub)
    invented = "pat.private@home-mail.io"
    anthropic_stub.enqueue(
        reply(tool_use("warden_ask", {"question": f"Should I send it to {invented}?"}))
    )
    ask(slack, REQUESTER, CHANNEL, "send the weekly report to the usual person")
    anthropic_stub.enqueue(cannot_help(f"I can't reach {invented} or +44 20 7946 0958."))
    ask(slack, REQUESTER, CHANNEL, "then tell the usual person the report is late")
    stored = everything_stored(slack, database_url, tmp_path)
    assert [v for v in (invented, "7946 0958") if v in stored] == []


def test_an_earlier_answers_placeholder_is_renumbered_in_the_thread_history(
    mail_slack: Slack, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: _history never renumbers escaped `&lt;EMAIL_1&gt;` in earlier answers: wrong address
    slack = mail_slack
    anthropic_stub.enqueue(
        reply(tool_use("warden_ask", {"question": "Should I send it to <EMAIL_1> only?"}))
    )
    ask(slack, REQUESTER, CHANNEL, "send the weekly report to first@acme-corp.io")
    (req,) = slack.store.thread_requests(
        CHANNEL, slack.store.latest_request_by(CHANNEL, REQUESTER).thread_ts
    )
    # The question was revealed into its own thread: fine.
    assert "first@acme-corp.io" in posted(slack, CHANNEL)
    anthropic_stub.enqueue(cannot_help())
    ask(
        slack,
        REQUESTER,
        CHANNEL,
        "yes, that one - and cc second@acme-corp.io",
        thread_ts=req.thread_ts,
    )
    history, _, message = anthropic_stub.seen[-1].first_text().partition("The requester's message:")
    assert "<EMAIL_1>" in message  # this request's own address: second@
    assert "<EMAIL_2>" in history  # the earlier request's address: first@
    # The earlier question asked about first@, so in this request it must read EMAIL_2 too.
    assert "EMAIL_1" not in history, history


def test_a_lookups_personal_data_is_posted_to_the_channel_when_the_model_cites_it(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    tmp_path: Path,
) -> None:
    # DEFECT: lookup-output values (never written in Slack) are revealed into the channel
    data = policy_data(tmp_path)
    data["runbooks"]["customer_info"] = {
        "description": "Show a customer's record",
        "command": [
            "echo",
            "customer {id}: email pat.private@home-mail.io, card 4111 1111 1111 1111",
        ],
        "read_only": True,
        "risk": "low",
        "params": {"id": {"pattern": "^[0-9]{1,8}$"}},
    }
    slack = slack_factory(policy_=parse_policy(data), claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(tool_use("customer_info", {"id": "42"})),
        cannot_help("Customer 42 is <EMAIL_1>, paying with <CARD_1>."),
    )
    ask(slack, REQUESTER, CHANNEL, "is customer 42 in good standing?")
    sent = sent_to_model(anthropic_stub)
    assert "pat.private" not in sent and "4111" not in sent  # the model saw placeholders
    shown = posted(slack, CHANNEL)
    assert "pat.private@home-mail.io" not in shown and "4111 1111 1111 1111" not in shown


def test_fullwidth_card_digits_and_an_encoded_email_in_a_link_reach_the_model(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # Fixed: fullwidth card digits and a %40-encoded email in a link were not masked
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(cannot_help())
    ask(
        slack,
        REQUESTER,
        CHANNEL,
        "refund card ４１１１ １１１１ １１１１ １１１１ and check "
        "<https://crm.example/users?email=jane.doe%40acme-corp.io|her crm page>",
    )
    sent = sent_to_model(anthropic_stub)
    assert "４１１１" not in sent, "fullwidth card number reached the model"
    assert "jane.doe%40acme-corp.io" not in sent, "encoded email reached the model"


def test_a_dm_value_is_not_shown_in_the_app_home_but_the_home_edit_modal_reveals_it(
    mail_slack: Slack, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: edit_form reveals DM values to an approver editing from the App Home (not in the DM)
    slack = mail_slack
    anthropic_stub.enqueue(reply(propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "As asked.")))
    assert slack.ws.dm(REQUESTER, f"send the weekly report to {EMAIL}").status == 200
    slack.idle()
    (action,) = actions(slack, "send_report")
    assert action.channel.startswith("D") and action.status == ActionStatus.AWAITING_APPROVAL
    assert slack.ws.open_home(APPROVER).status == 200
    slack.idle()
    home = json.dumps(slack.ws.home(APPROVER))
    assert action.id[:8] in home  # waiting for this approver…
    assert EMAIL not in home  # …with placeholders only: held
    assert slack.ws.click_home(APPROVER, "warden_edit").status == 200
    slack.idle()
    views = json.dumps(slack.ws.open_views(APPROVER))
    assert EMAIL not in views, "the DM's address was shown to an approver outside the DM"


def test_a_lost_update_of_the_seal_makes_an_approved_call_run_with_another_value(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    mail_policy: dict[str, Any],
    tmp_path: Path,
) -> None:
    # DEFECT: Privacy.save lost update (stale fill_preview seal): call runs with another value
    started, go = tmp_path / "started.fifo", tmp_path / "go.fifo"
    os.mkfifo(started)
    os.mkfifo(go)
    script = (
        'if [ "$0" = "x@acme-corp.io" ]; then echo s > "$1"; cat "$2" > /dev/null; '
        'echo "would send the report to $0 and copy late@corp-mail.io"; '
        'else echo "would send the report to $0"; fi'
    )
    mail_policy["runbooks"]["send_report"]["dry_run"] = [
        "sh",
        "-c",
        script,
        "{to}",
        str(started),
        str(go),
    ]
    slack = slack_factory(policy_=parse_policy(mail_policy), claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(
            propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "First copy."),
            propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "Second copy."),
        )
    )
    ask(slack, REQUESTER, CHANNEL, f"send the weekly report to {EMAIL}, two copies")
    a1, a2 = actions(slack, "send_report")
    # Both editors open their modal first.
    slack.ws.click(APPROVER2, CHANNEL, slack.card(a2.id)["ts"], "warden_edit")
    slack.ws.click(APPROVER, CHANNEL, slack.card(a1.id)["ts"], "warden_edit")
    slack.idle()
    (v2,) = slack.ws.open_views(APPROVER2)
    (v1,) = slack.ws.open_views(APPROVER)

    def value(v: str) -> dict[str, Any]:
        return {"arg:to": {"value": {"type": "plain_text_input", "value": v}}}

    # Edit 1: its dry run starts (after reading the seal) and waits on the FIFO.
    assert slack.ws.submit_view(APPROVER, v1["id"], value("x@acme-corp.io")).status == 200
    blocked = threading.Thread(target=lambda: Path(started).read_text())
    blocked.start()
    blocked.join(30)
    assert not blocked.is_alive(), "the dry run of the first edit never started"
    # Edit 2 is saved while that dry run is in flight.
    assert slack.ws.submit_view(APPROVER2, v2["id"], value("y@acme-corp.io")).status == 200
    release = threading.Thread(target=lambda: Path(go).write_text("go"))
    release.start()
    release.join(30)
    assert not release.is_alive()
    slack.idle()
    card2 = card_text(slack.card(a2.id)).replace("\u200b", "")
    slack.ws.click(REQUESTER, CHANNEL, slack.card(a2.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(a2.id).status == ActionStatus.SUCCEEDED
    assert slack.runs("report") == ["report y@acme-corp.io"], (slack.runs("report"), card2)


# == Memory ==================================================================================


def test_a_forgotten_fact_reaches_the_model_again_through_the_thread_and_stays_stored(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: a forgotten fact's text stays in args/audit and reaches the model via thread history
    slack = slack_factory(claude=anthropic_stub)
    words = "I prefer zebra canaries before every deploy"
    anthropic_stub.enqueue(
        remember({"kind": "preference", "subject": "deploys", "slot": "order", "text": words})
    )
    ask(slack, REQUESTER, CHANNEL, f"remember that {words}")
    (fact,) = current_facts(slack, ("user", REQUESTER))
    (note,) = actions(slack, "remember")
    done = slack.ws.slash(REQUESTER, CHANNEL, "/warden", f"forget {fact.id}").body
    assert "Forgotten" in done and slack.store.fact_by_id(fact.id) is None
    anthropic_stub.enqueue(cannot_help())
    ask(slack, REQUESTER, CHANNEL, "ok, what should I deploy first?", thread_ts=note.thread_ts)
    leaks = []
    if "zebra canaries" in json.dumps(anthropic_stub.seen[-1].body):
        leaks.append("the next model input in the thread")
    if "zebra canaries" in slack.store.get_action(note.id).args_json:
        leaks.append("the remember action's arguments")
    if "zebra canaries" in audit_text(slack):
        leaks.append("the audit trail")
    assert leaks == [], f"the forgotten fact is still in: {', '.join(leaks)}"


def test_forget_all_leaves_the_versions_a_fact_superseded(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: `/warden forget all` deletes only current facts; superseded versions stay stored
    slack = slack_factory(claude=anthropic_stub)
    for order in ("staging", "canary"):
        words = f"I prefer {order} first for deploys"
        anthropic_stub.enqueue(
            remember({"kind": "preference", "subject": "deploys", "slot": "order", "text": words})
        )
        ask(slack, REQUESTER, CHANNEL, f"remember that {words}")
    assert len(slack.store.fact_history("user", REQUESTER, "deploys", "order")) == 2
    done = slack.ws.slash(REQUESTER, CHANNEL, "/warden", "forget all").body
    assert "Forgotten" in done
    assert current_facts(slack, ("user", REQUESTER)) == []
    left = slack.store.fact_history("user", REQUESTER, "deploys", "order")
    assert [f.text for f in left] == []


def test_undoing_a_remember_that_replaced_a_fact_loses_the_earlier_fact(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: undoing a remember that superseded a fact leaves the earlier fact closed (lost)
    slack = slack_factory(claude=anthropic_stub)
    for owner in ("riley", "mallory"):
        anthropic_stub.enqueue(
            remember(
                {
                    "kind": "profile",
                    "about": "channel",
                    "subject": "payments",
                    "slot": "owner",
                    "text": f"payments is owned by {owner}",
                }
            )
        )
        ask(slack, REQUESTER, CHANNEL, f"remember that payments is owned by {owner}")
    _, second = actions(slack, "remember")
    assert buttons(slack.card(second.id)) == ["Forget"]
    slack.ws.click(REQUESTER, CHANNEL, slack.card(second.id)["ts"], "warden_undo")
    slack.idle()
    assert slack.store.get_action(second.id).status == ActionStatus.UNDONE
    now = [f.text for f in current_facts(slack, ("channel", CHANNEL))]
    assert now == ["payments is owned by riley"], now


def test_the_grounding_check_lets_a_model_invert_or_change_what_was_said(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: grounded() ignores stop words / 1 in 4 words: a model may invert or alter a fact
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "preference",
                "subject": "payments",
                "text": "restart payments during peak hours",
            }
        )
    )
    ask(slack, REQUESTER, CHANNEL, "remember: do not restart payments during peak hours")
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "profile",
                "about": "channel",
                "subject": "payments team",
                "slot": "owner",
                "text": "payments team owner mallory on weekdays with avery",
            }
        )
    )
    ask(
        slack,
        REQUESTER,
        CHANNEL,
        "remember that the payments team owner is riley on weekdays with avery",
    )
    stored = [f.text for f in current_facts(slack)]
    assert stored == [], f"facts the requester never said were stored: {stored}"


def test_a_decision_in_a_private_channel_reaches_other_channels(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: decisions in private channels (G…) are workspace-wide and recalled everywhere
    slack = with_channels(slack_factory(claude=anthropic_stub), SECRET_GROUP)
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payroll-db"}, 0.95, "Asked."))
    )
    ask(slack, REQUESTER, SECRET_GROUP, "restart payroll-db")
    (action,) = actions(slack, "restart_service")
    slack.ws.click(APPROVER, SECRET_GROUP, slack.card(action.id)["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    secret = "Dana in payroll is being let go on Friday"
    reason = {"value": {"type": "plain_text_input", "value": secret}}
    assert slack.ws.submit_view(APPROVER, view["id"], {"reason": reason}).status == 200
    slack.idle()
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payroll-db"}, 0.95, "Asked."))
    )
    ask(slack, STRANGER, CHANNEL, "please restart payroll-db now")
    leaks = []
    if secret in json.dumps(anthropic_stub.seen[-1].body):
        leaks.append("a stranger's model input in #general")
    if secret in posted(slack, CHANNEL):
        leaks.append("a card's Previously in #general")
    assert leaks == [], f"the private channel's reason reached: {', '.join(leaks)}"


# == Properties that held ====================================================================


def test_an_edited_message_with_personal_data_starts_nothing_and_keeps_nothing(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    database_url: str,
    tmp_path: Path,
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(cannot_help())
    ask(slack, REQUESTER, CHANNEL, "how is payments doing?")
    (msg,) = [m for m in slack.ws.messages(CHANNEL) if m.get("user") == REQUESTER]
    edited = slack.ws.edit_message(
        REQUESTER, CHANNEL, msg["ts"], f"<@U0WARDEN> email {EMAIL} on +44 20 7946 0958"
    )
    assert edited.status == 200
    slack.idle()
    assert len(anthropic_stub.seen) == 1  # an edit starts no second request
    assert EMAIL not in sent_to_model(anthropic_stub)
    stored = everything_stored(slack, database_url, tmp_path)
    assert EMAIL not in stored and "7946 0958" not in stored


def test_a_reject_reasons_personal_data_is_shown_in_its_thread_only_and_remembered_hashed(
    slack_factory: SlackFactory,
    anthropic_stub: AnthropicStub,
    database_url: str,
    tmp_path: Path,
) -> None:
    slack = with_channels(slack_factory(claude=anthropic_stub), RANDOM)
    action, card = slack.mention_and_card("restart payments-db")  # alias: no model call
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    why = f"ask {EMAIL} or call +44 20 7946 0958 first"
    reason = {"value": {"type": "plain_text_input", "value": why}}
    assert slack.ws.submit_view(APPROVER, view["id"], {"reason": reason}).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.REJECTED
    assert EMAIL in posted(slack, CHANNEL)  # the card, in the thread it was written in
    (decision,) = [f for f in current_facts(slack) if f.kind == "decision"]
    assert "<EMAIL#" in decision.text and "<PHONE#" in decision.text
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payments-db"}, 0.95, "Asked."))
    )
    # Decisions stay in the channel they were made in: a stranger elsewhere sees nothing.
    ask(slack, STRANGER, RANDOM, "please restart payments-db now")
    memory = memory_part(anthropic_stub.seen[-1].first_text())
    assert "rejected" not in memory and "EMAIL" not in memory
    assert "Previously" not in posted(slack, RANDOM)
    # In its own channel the next related request gets it, hashed.
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payments-db"}, 0.95, "Asked."))
    )
    ask(slack, REQUESTER, CHANNEL, "please restart payments-db once more")
    memory = memory_part(anthropic_stub.seen[-1].first_text())
    assert "rejected" in memory and "<EMAIL#" in memory
    shown = posted(slack, CHANNEL)
    assert "Previously" in shown and "EMAIL#" in shown  # escaped: `&lt;EMAIL#…&gt;`
    for value in (EMAIL, "7946 0958"):
        assert value not in posted(slack, RANDOM) and value not in sent_to_model(anthropic_stub)
        assert value not in everything_stored(slack, database_url, tmp_path)


def test_placeholders_typed_or_written_elsewhere_never_reveal_another_requests_values(
    mail_slack: Slack, anthropic_stub: AnthropicStub
) -> None:
    slack = with_channels(mail_slack, RANDOM)
    anthropic_stub.enqueue(reply(propose("send_report", {"to": "<EMAIL_1>"}, 0.95, "As asked.")))
    ask(slack, REQUESTER, CHANNEL, f"send the weekly report to {EMAIL} and other@acme-corp.io")
    # A stranger elsewhere types the placeholders literally (Slack escapes `<`), and the
    # model writes them back raw and escaped, and as the card's rationale.
    anthropic_stub.enqueue(
        reply(
            said("Sending to <EMAIL_2>, &lt;EMAIL_2&gt; and <EMAIL_3> as well."),
            propose(
                "send_report",
                {"to": "me@stranger.example"},
                0.95,
                "Also <EMAIL_2> and &lt;EMAIL_1&gt; and <EMAIL_1>.",
            ),
        )
    )
    typed = slack.ws.encode_typed("@warden send it to <EMAIL_1> and <EMAIL_2>")
    assert slack.ws.say(STRANGER, RANDOM, typed) is not None
    slack.idle()
    (mine,) = [a for a in actions(slack, "send_report") if a.requester == STRANGER]
    shown = posted(slack, RANDOM)
    assert "Sending to" in shown  # the answer was posted, its placeholders left as written
    assert EMAIL not in shown and "other@acme-corp.io" not in shown
    assert "me@stranger.example" in card_text(slack.card(mine.id)).replace("\u200b", "")


def test_a_post_to_another_channel_carrying_a_placeholder_is_refused(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = with_channels(slack_factory(claude=anthropic_stub), RANDOM)
    anthropic_stub.enqueue(
        reply(
            propose("post_message", {"channel": RANDOM, "text": "Call <PHONE_1>"}, 0.95, "Relay.")
        )
    )
    ask(slack, REQUESTER, CHANNEL, "call me on +44 20 7946 0958 - tell random")
    (action,) = actions(slack, "post_message")
    assert action.status == ActionStatus.REFUSED
    assert "7946" not in posted(slack, RANDOM)


def test_a_dm_decision_stays_in_the_dm(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    assert slack.ws.dm(REQUESTER, "restart payments-db").status == 200  # alias
    slack.idle()
    (action,) = actions(slack, "restart_service")
    dm = action.channel
    slack.ws.click(REQUESTER, dm, slack.card(action.id)["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(REQUESTER)
    secret = "my divorce hearing is that morning"
    reason = {"value": {"type": "plain_text_input", "value": secret}}
    assert slack.ws.submit_view(REQUESTER, view["id"], {"reason": reason}).status == 200
    slack.idle()
    (decision,) = [f for f in current_facts(slack, ("channel", dm)) if f.kind == "decision"]
    assert secret in decision.text and decision.scope == "channel"
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payments-db"}, 0.95, "Asked."))
    )
    ask(slack, STRANGER, CHANNEL, "please restart payments-db now")
    assert secret not in json.dumps(anthropic_stub.seen[-1].body)
    assert secret not in posted(slack, CHANNEL)


def test_slack_links_carrying_personal_data_never_reach_the_model(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(cannot_help())
    ask(
        slack,
        REQUESTER,
        CHANNEL,
        f"write to <mailto:{EMAIL}|{EMAIL}>, ring <tel:+442079460958|+44 20 7946 0958>, see "
        f"<https://crm.example/u/{EMAIL}|crm> and <http://10.20.30.40/status|the box>",
    )
    sent = sent_to_model(anthropic_stub)
    for value in (EMAIL, "2079460958", "7946 0958", "10.20.30.40"):
        assert value not in sent, value
    first = anthropic_stub.seen[0].first_text()
    assert "<EMAIL_1>" in first and "<PHONE_1>" in first and "<IP_1>" in first


def test_a_huge_message_full_of_numbers_is_acknowledged_fast_and_masked(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(cannot_help())
    body = "call me on +44 20 7946 0958 or 0612345678, card 4111 1111 1111 1111; " * 600
    body += "1 2 3 4 5 6 7 8 9 0 " * 500
    assert len(body) > 40_000
    began = time.monotonic()
    delivery = slack.ws.mention(REQUESTER, CHANNEL, body)
    acked = time.monotonic() - began
    assert delivery.status == 200 and acked < 3.0, acked
    slack.idle()
    sent = sent_to_model(anthropic_stub)
    assert "<PHONE_1>" in sent
    for value in ("7946 0958", "0612345678", "4111 1111"):
        assert value not in sent, value


# -- memory ------------------------------------------------------------------------------------


def test_nobody_forgets_another_persons_fact_by_forged_click_or_command(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    for user, week in ((REQUESTER, "second"), (STRANGER, "first")):
        anthropic_stub.enqueue(
            remember(
                {"kind": "profile", "subject": "pager", "text": f"my pager rota is the {week} week"}
            )
        )
        ask(slack, user, CHANNEL, f"remember my pager rota is the {week} week")
    (mine,) = current_facts(slack, ("user", REQUESTER))
    (theirs,) = current_facts(slack, ("user", STRANGER))
    assert slack.ws.open_home(STRANGER).status == 200
    slack.idle()
    # A forged App Home click (a value no button of theirs has) and a command.
    assert slack.ws.click_home(STRANGER, "warden_forget", str(mine.id)).status == 200
    refused = slack.ws.slash(STRANGER, CHANNEL, "/warden", f"forget #{mine.id}").body
    assert "can't forget" in refused
    slack.idle()
    assert slack.store.fact_by_id(mine.id) is not None
    # `forget all` by someone else, even an admin, forgets only their own facts.
    slack.ws.slash(ADMIN, CHANNEL, "/warden", "forget all")
    done = slack.ws.slash(STRANGER, CHANNEL, "/warden", "forget all").body
    assert f"#{theirs.id}" in done and f"#{mine.id}" not in done
    assert slack.store.fact_by_id(theirs.id) is None
    assert slack.store.fact_by_id(mine.id) is not None
    # An admin may forget it by id.
    assert "Forgotten" in slack.ws.slash(ADMIN, CHANNEL, "/warden", f"forget {mine.id}").body
    assert slack.store.fact_by_id(mine.id) is None


def test_remember_is_refused_for_the_workspace_from_a_non_approver_and_for_recalled_facts(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "profile",
                "about": "workspace",
                "subject": "payments",
                "slot": "owner",
                "text": "payments is owned by sky",
            }
        )
    )
    ask(slack, STRANGER, CHANNEL, "remember that payments is owned by sky")
    (ws_note,) = actions(slack, "remember")
    assert ws_note.status == ActionStatus.REFUSED and "approvers and admins" in (
        ws_note.status_note or ""
    )
    # An approver's channel fact, recalled for a stranger, repeated by the model as new.
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "profile",
                "about": "channel",
                "subject": "payments",
                "slot": "owner",
                "text": "payments is owned by riley",
            }
        )
    )
    ask(slack, REQUESTER, CHANNEL, "remember that payments is owned by riley")
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "profile",
                "about": "me",
                "subject": "payments",
                "slot": "owner",
                "text": "payments is owned by riley",
            },
            "Memory says so.",
        )
    )
    ask(slack, STRANGER, CHANNEL, "who looks after payments these days?")
    assert "owned by riley" in memory_part(anthropic_stub.seen[-1].first_text())
    repeated = actions(slack, "remember")[-1]
    assert repeated.requester == STRANGER and repeated.status == ActionStatus.REFUSED
    assert current_facts(slack, ("user", STRANGER), ("workspace", "")) == []
    # No decision is ever recorded about remember itself.
    assert [f for f in current_facts(slack) if f.kind == "decision"] == []


def test_only_the_author_can_undo_a_remember(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        remember({"kind": "preference", "subject": "deploys", "text": "I prefer canary deploys"})
    )
    ask(slack, REQUESTER, CHANNEL, "remember that I prefer canary deploys")
    (note,) = actions(slack, "remember")
    (fact,) = current_facts(slack, ("user", REQUESTER))
    for other in (APPROVER, ADMIN, STRANGER):
        slack.ws.click(other, CHANNEL, slack.card(note.id)["ts"], "warden_undo")
        slack.idle()
        assert slack.store.fact_by_id(fact.id) is not None, other
    slack.ws.click(REQUESTER, CHANNEL, slack.card(note.id)["ts"], "warden_undo")
    slack.idle()
    assert slack.store.fact_by_id(fact.id) is None
    assert slack.store.get_action(note.id).status == ActionStatus.UNDONE
    assert current_facts(slack) == []  # and no decision about remember


def test_hostile_memory_queries_neither_fail_nor_cross_people(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    for user, week in ((REQUESTER, "second"), (STRANGER, "first")):
        anthropic_stub.enqueue(
            remember(
                {"kind": "profile", "subject": "pager", "text": f"my pager rota is the {week} week"}
            )
        )
        ask(slack, user, CHANNEL, f"remember my pager rota is the {week} week")
    hostile = [
        '"',
        'pager" OR "first',
        "NEAR(pager rota, 2)",
        "pager*",
        "{scope_key} : pager",
        "scope_key:* OR text:first",
        "'; DROP TABLE fact; --",
        "\\x00 pager \x00",
        "ﬁrst Ｐａｇｅｒ ÄÖÜ 🔥",
        "pager " * 8000,
    ]
    for query in hostile:
        answer = slack.ws.slash(REQUESTER, CHANNEL, "/warden", f"memory {query}")
        assert answer.status == 200, query
        assert "first week" not in answer.body, query
    scripted = [reply(tool_use("search_memory", {"query": q[:300]})) for q in hostile]
    anthropic_stub.enqueue(*scripted, cannot_help())
    ask(slack, REQUESTER, CHANNEL, "what do you know about my pager week?")
    results = [json.dumps(s.tool_results()) for s in anthropic_stub.seen[-len(hostile) :]]
    assert all("first week" not in r for r in results)
    assert any("second week" in r for r in results)
    assert not any('"is_error": true' in r for r in results), results
    assert slack.store.verify_audit()[1] == []


def test_a_forgotten_decision_leaves_search_recall_and_the_cards_previously(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    _, card = slack.mention_and_card("restart payments-db")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    reason = {"value": {"type": "plain_text_input", "value": "during the quarterly close"}}
    slack.ws.submit_view(APPROVER, view["id"], {"reason": reason})
    slack.idle()
    (decision,) = [f for f in current_facts(slack) if f.kind == "decision"]
    anthropic_stub.enqueue(
        reply(tool_use("search_memory", {"query": "payments-db rejected restart"})),
        cannot_help(),
    )
    ask(slack, REQUESTER, CHANNEL, "what happened with payments-db?")
    assert "quarterly" in json.dumps(anthropic_stub.seen[-1].tool_results())  # found before
    searches = len(anthropic_stub.seen)
    refused = slack.ws.slash(REQUESTER, CHANNEL, "/warden", f"forget {decision.id}").body
    assert "can't forget" in refused  # nobody's own fact: admins only
    assert "Forgotten" in slack.ws.slash(ADMIN, CHANNEL, "/warden", f"forget {decision.id}").body
    anthropic_stub.enqueue(
        reply(tool_use("search_memory", {"query": "payments-db rejected restart"})),
        reply(propose("restart_service", {"service": "payments-db"}, 0.95, "Asked again.")),
    )
    _, card2 = slack.mention_and_card("please restart payments-db now")
    assert "rejected" not in json.dumps(anthropic_stub.seen[-1].tool_results())
    assert "quarterly" not in json.dumps([s.body for s in anthropic_stub.seen[searches:]])
    assert "Previously" not in card_text(card2)


def test_two_remembers_for_one_slot_in_one_plan_leave_exactly_one_current_fact(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    texts = ["I prefer staging first for deploys", "I prefer canary first for deploys"]
    anthropic_stub.enqueue(
        reply(
            *[
                propose(
                    "remember",
                    {"kind": "preference", "subject": "deploys", "slot": "order", "text": t},
                    0.95,
                    "Said so.",
                )
                for t in texts
            ]
        )
    )
    ask(slack, REQUESTER, CHANNEL, "remember I prefer staging first for deploys, no, canary first")
    history = slack.store.fact_history("user", REQUESTER, "deploys", "order")
    assert sorted(f.text for f in history) == sorted(texts)
    current = [f for f in history if f.valid_to is None]
    assert len(current) == 1
    (closed,) = [f for f in history if f.valid_to is not None]
    assert closed.superseded_by == current[0].id


def test_a_fact_holding_personal_data_can_never_be_remembered(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    # DEFECT: grounding compares the revealed fact with the masked message: PII facts refused
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        remember(
            {
                "kind": "profile",
                "subject": "backup contact",
                "text": "my backup contact is <EMAIL_1>",
            }
        )
    )
    ask(slack, REQUESTER, CHANNEL, f"remember that my backup contact is {EMAIL}")
    (note,) = actions(slack, "remember")
    assert note.status == ActionStatus.SUCCEEDED, note.status_note
    (fact,) = current_facts(slack, ("user", REQUESTER))
    assert "<EMAIL#" in fact.text and EMAIL not in fact.text
