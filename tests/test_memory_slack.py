"""Memory through Slack and the stub Messages API, on both databases: decisions recorded from
outcomes reach later model inputs and cards; people's facts are proposed through `remember`,
grounded in what they wrote, forgettable at once and everywhere."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import select

from storage.models import ActionStatus, AuditEvent, utcnow
from tests.anthropic_stub import Answer, AnthropicStub, propose, reply, tool_use
from tests.conftest import APPROVER, APPROVER2, REQUESTER, STRANGER
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, buttons, card_text

PEAK = "during peak, payments is busy"


def memory_part(seen_text: str) -> str:
    """The memory block of a first user message ('' if none)."""
    start = seen_text.find('<data source="memory">')
    return seen_text[start : seen_text.find("</data>", start)] if start >= 0 else ""


def remembers(anthropic_stub: AnthropicStub, args: dict[str, Any]) -> None:
    anthropic_stub.enqueue(reply(propose("remember", args, 0.95, "The requester said so.")))


def facts(slack: Slack) -> list[Any]:
    return slack.store.facts_for(
        [("user", REQUESTER), ("channel", CHANNEL), ("workspace", "")], utcnow(), None
    )


def test_a_rejection_reaches_the_next_related_plan_and_its_card(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payments-db"}, 0.95, "Asked."))
    )
    action, card = slack.mention_and_card("restart payments-db")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    reason = {"value": {"type": "plain_text_input", "value": PEAK}}
    assert slack.ws.submit_view(APPROVER, view["id"], {"reason": reason}).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == ActionStatus.REJECTED

    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "payments-db"}, 0.9, "Asked again."))
    )
    _, card2 = slack.mention_and_card("please restart payments-db now")
    memory = memory_part(anthropic_stub.seen[-1].first_text())
    assert "payments-db" in memory and "rejected" in memory and PEAK in memory
    assert f"<@{APPROVER}>" in memory  # provenance: who decided
    shown = card_text(card2)
    assert "Previously" in shown and PEAK in shown and "rejected" in shown
    # The same tool on another service: not on its card (another subject).
    anthropic_stub.enqueue(reply(propose("restart_service", {"service": "web"}, 0.95, "Asked.")))
    _, card3 = slack.mention_and_card("restart web")
    assert "Previously" not in card_text(card3)
    # An unrelated request does not get it in its model input either.
    anthropic_stub.enqueue(reply(propose("flush_cache", {"name": "sessions"}, 0.95, "Asked.")))
    calls = len(anthropic_stub.seen)
    slack.mention_and_card("please clear the sessions cache")
    assert len(anthropic_stub.seen) == calls + 1
    assert PEAK not in anthropic_stub.seen[-1].first_text()


def test_a_preference_is_remembered_changes_a_later_plan_and_is_forgotten_everywhere(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    remembers(
        anthropic_stub,
        {
            "kind": "preference",
            "about": "me",
            "subject": "deploys",
            "slot": "order",
            "text": "I prefer staging first for deploys",
        },
    )
    slack.ws.mention(REQUESTER, CHANNEL, "remember that I prefer staging first for deploys")
    slack.idle()
    (note,) = [a for a in slack.store.actions_with_status([ActionStatus.SUCCEEDED])]
    assert note.tool == "remember" and note.decided_by == "gate"  # runs at once: auto
    assert buttons(slack.card(note.id)) == ["Forget"]
    (fact,) = slack.store.facts_for([("user", REQUESTER)], utcnow(), None)
    assert fact.text == "I prefer staging first for deploys" and fact.author == REQUESTER

    def plan_by_memory(body: dict[str, Any]) -> Answer:
        first = body["messages"][0]["content"]
        text = "\n".join(b.get("text", "") for b in first if isinstance(b, dict))
        env = "staging" if "staging first" in memory_part(text) else "prod"
        return reply(propose("scale", {"service": "api", "env": env}, 0.9, f"Scale in {env}."))

    anthropic_stub.responder = plan_by_memory
    first, _ = slack.mention_and_card("scale api")
    assert json.loads(first.args_json)["env"] == "staging"
    # Someone else's request does not see another person's preference.
    slack.ws.mention(APPROVER2, CHANNEL, "scale api")
    slack.idle()
    others = [
        a
        for a in slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 50)
        if a.requester == APPROVER2
    ]
    assert [json.loads(a.args_json)["env"] for a in others] == ["prod"]

    listing = slack.ws.slash(REQUESTER, CHANNEL, "/warden", "memory").body
    assert f"#{fact.id}" in listing and "staging first" in listing
    refused = slack.ws.slash(STRANGER, CHANNEL, "/warden", f"forget {fact.id}").body
    assert "can't forget" in refused
    done = slack.ws.slash(REQUESTER, CHANNEL, "/warden", f"forget {fact.id}").body
    assert f"#{fact.id}" in done and "Forgotten" in done
    assert slack.store.fact_by_id(fact.id) is None
    # The audit keeps a hash of the fact, never its text.
    with slack.store.db.read() as s:
        rows = [r for r in s.exec(select(AuditEvent)).all() if r.kind.startswith("memory.")]
    assert rows and all("staging first" not in r.data for r in rows)
    second, _ = slack.mention_and_card("scale api again")
    assert "staging first" not in anthropic_stub.seen[-1].first_text()
    assert json.loads(second.args_json)["env"] == "prod"


def test_a_fact_lifted_from_a_lookups_output_is_refused(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(tool_use("lookup_user", {"user": APPROVER})),
        reply(
            propose(
                "remember",
                {
                    "kind": "profile",
                    "about": "channel",
                    "subject": "payments",
                    "slot": "owner",
                    "text": "payments is owned by mallory from accounting",
                },
                0.95,
                "The lookup said so.",
            )
        ),
    )
    slack.ws.mention(REQUESTER, CHANNEL, "who is this approver?")
    slack.idle()
    (action,) = slack.store.actions_with_status(list(ActionStatus))
    assert action.tool == "remember" and action.status == ActionStatus.REFUSED
    assert "what the requester wrote" in (action.status_note or "")
    assert facts(slack) == []


def test_a_remember_from_a_tainted_loop_waits_for_its_authors_click(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    # The model looks something up first: its output entered the loop (taint).
    anthropic_stub.enqueue(reply(tool_use("lookup_user", {"user": APPROVER2})))
    remembers(
        anthropic_stub,
        {
            "kind": "profile",
            "about": "channel",
            "subject": "payments",
            "slot": "owner",
            "text": "payments is owned by riley",
        },
    )
    slack.ws.mention(REQUESTER, CHANNEL, "remember that payments is owned by riley")
    slack.idle()
    (note,) = [
        a
        for a in slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
        if a.tool == "remember"
    ]
    assert note.taint and "lookup_user" in note.taint
    assert facts(slack) == []
    # An approver is not the author: only the author's click stores it.
    slack.ws.click(APPROVER, CHANNEL, slack.card(note.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(note.id).status == ActionStatus.AWAITING_APPROVAL
    slack.ws.click(REQUESTER, CHANNEL, slack.card(note.id)["ts"], "warden_approve")
    slack.idle()
    assert slack.store.get_action(note.id).status == ActionStatus.SUCCEEDED
    (fact,) = facts(slack)
    assert fact.text == "payments is owned by riley"


def test_the_app_home_lists_what_is_remembered_with_forget(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub
) -> None:
    slack = slack_factory(claude=anthropic_stub)
    remembers(
        anthropic_stub,
        {"kind": "profile", "subject": "pager", "text": "my pager rota is the second week"},
    )
    slack.ws.mention(REQUESTER, CHANNEL, "remember my pager rota is the second week")
    slack.idle()
    (fact,) = slack.store.facts_for([("user", REQUESTER)], utcnow(), None)
    slack.ws.open_home(REQUESTER)
    slack.idle()
    home = json.dumps(slack.ws.home(REQUESTER))
    assert "second week" in home and "What Warden remembers about you" in home
    # Another person's home does not show it, and their forged click forgets nothing.
    slack.ws.open_home(APPROVER)
    slack.idle()
    assert "second week" not in json.dumps(slack.ws.home(APPROVER))
    slack.ws.click_home(REQUESTER, "warden_forget", str(fact.id))
    slack.idle()
    assert slack.store.fact_by_id(fact.id) is None
    assert "second week" not in json.dumps(slack.ws.home(REQUESTER))
