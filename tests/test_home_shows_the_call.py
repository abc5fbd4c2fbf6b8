"""The App Home says what a waiting action will run, as its card does.

An approver cannot open a requester's DM, so for an action asked in a DM the App Home is all
they see before Approve. It shows the call from the card's own data (`bot.cards.build_card`):
what will run, the planner's rationale and confidence, the risk, who edited the arguments and
the dry-run preview, neutralised as on the card and within Slack's limits (3000 characters a
section, 100 blocks a Home).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bot.cards import CardFacts, build_card
from bot.policy import parse_policy
from bot.reports import Home, HomeBreakGlass, HomeItem, HomeStats, HomeTask
from handlers.blocks import SECTION_MAX, home_view, render_card
from storage.models import Action, ActionStatus, utcnow
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import Slack, SlackFactory, card_text

HOSTILE = "<!channel> <!here> @everyone <https://evil.example/x|click> www.evil.example/y"


def open_home(slack: Slack, user: str) -> dict[str, Any]:
    assert slack.ws.open_home(user).status == 200
    slack.idle()
    home = slack.ws.home(user)
    assert home is not None
    return home


def waiting_sections(home: dict[str, Any]) -> list[str]:
    """The text of each waiting action's section (the one its buttons follow)."""
    blocks = home["blocks"]
    return [
        blocks[i - 1]["text"]["text"]
        for i, b in enumerate(blocks)
        if b.get("type") == "actions" and str(b.get("block_id")).startswith("home:")
    ]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(.*?)```", text, re.DOTALL)


def sections(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b.get("type") == "section" and "text" in b]


def test_home_shows_the_call_its_preview_its_editor_and_confidence(slack: Slack) -> None:
    """An edit made from one approver's Home shows on the next approver's Home: the new call,
    its fresh preview, who edited it and that the confidence was for the original call."""
    slack.ws.dm(REQUESTER, "restart web")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    (section,) = waiting_sections(open_home(slack, APPROVER))
    assert "*What will run*" in section and "restart" in section and "web" in section
    assert ":large_orange_circle: high risk" in section and "confidence 100%" in section
    (edit,) = [
        e["value"]
        for b in open_home(slack, APPROVER)["blocks"]
        for e in b.get("elements") or []
        if e.get("action_id") == "warden_edit"
    ]
    assert slack.ws.click_home(APPROVER, "warden_edit", edit).status == 200
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    value = {"arg:service": {"value": {"type": "plain_text_input", "value": "payments-db"}}}
    assert slack.ws.submit_view(APPROVER, view["id"], value).status == 200
    slack.idle()
    row = slack.store.get_action(action.id)
    assert row is not None and row.revision == 2 and row.edited_by == APPROVER
    (section,) = waiting_sections(open_home(slack, APPROVER2))
    what = section.split("*What will run*", 1)[1]
    assert "payments-db" in code_blocks(what)[0]
    assert f"Edited by <@{APPROVER}>" in section
    assert f"(before the edit by <@{APPROVER}>)" in section
    # The dry run of the edited call, as on the card.
    assert "*Preview (dry run)*" in section and "would restart payments-db" in section
    assert "would restart payments-db" in card_text(slack.card(action.id))


def test_hostile_arguments_are_neutralised_on_home_as_on_the_card(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    data = policy_data(tmp_path)
    data["runbooks"]["note"] = {
        "description": "Leave a note",
        "command": ["echo", "{text}"],
        "dry_run": ["echo", "would note {text}"],
        "risk": "medium",
        "params": {"text": {"pattern": "[^\\n]{1,200}"}},
    }
    slack = slack_factory(policy_=parse_policy(data), claude=anthropic_stub)
    anthropic_stub.enqueue(reply(propose("note", {"text": HOSTILE}, 0.95, f"Harmless, {HOSTILE}")))
    slack.ws.dm(REQUESTER, "leave a note for the team")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    home = open_home(slack, APPROVER)
    blob = json.dumps(home)
    for bad in ("<!channel>", "<!here>", "<https://evil.example", "<http"):
        assert bad not in blob, bad
    (section,) = waiting_sections(home)
    card = card_text(slack.card(action.id))
    what = code_blocks(section.split("*What will run*", 1)[1])[0]
    assert "evil" in what and f"```{what}```" in card  # the card's very words
    preview = code_blocks(section.split("*Preview (dry run)*", 1)[1])[0]
    assert "would note" in preview and f"```{preview}```" in card
    why = section.split("*Why*\n", 1)[1].split("\n", 1)[0]
    assert why.startswith("Harmless, ") and "evil" in why and why in card


def _waiting(n: int, **fields: Any) -> HomeItem:
    values: dict[str, Any] = {
        "id": f"{n:032x}",
        "request_id": "r1",
        "trace_id": "t1",
        "tool": "restart_service",
        "args_json": json.dumps({"service": "payments-db"}),
        "policy_version": "v1",
        "risk": "high",
        "confidence": 0.95,
        "rationale": "Restarts the staging web frontend, as asked.",
        "requester": REQUESTER,
        "channel": "D0REQUESTER",
        "thread_ts": "1.000001",
        "status": ActionStatus.AWAITING_APPROVAL,
        **fields,
    }
    action = Action(**values)
    facts = CardFacts(
        rule="one approver",
        approvers=(APPROVER,),
        approved_by=(),
        previously=(f"Rejected by <@{APPROVER}>: {HOSTILE} " + "x" * 600,) * 3,
    )
    return HomeItem(action=action, card=build_card(action, facts, utcnow()), where="a DM")


def test_a_long_call_is_cut_and_its_code_blocks_closed() -> None:
    long = "payments-db " + "A" * 6000
    item = _waiting(
        1,
        args_json=json.dumps({"service": long, "note": HOSTILE}),
        rationale=HOSTILE + " " + "why " * 2000,
        preview="would restart " + "B" * 6000,
        edited_by="U0EDITOR" + "X" * 24,
        requester="U0REQ" + "Y" * 27,
        taint="a web page " + HOSTILE + "z" * 1000,
        channel="C" + "9" * 31,
    )
    view = home_view(Home(paused_by=None, waiting=(item,)))
    (section,) = waiting_sections(view)
    assert len(section) < SECTION_MAX  # within the limit, not clipped by it
    assert section.endswith("```") and section.count("```") == 4
    what, preview = code_blocks(section)
    assert what.startswith("service=payments-db") and what.endswith("…")
    assert preview.startswith("would restart") and preview.endswith("…")
    assert "Edited by <@U0EDITOR" in section
    for block in view["blocks"]:
        if block["type"] == "context":
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
    assert "<!channel>" not in json.dumps(view) and "<https://evil" not in json.dumps(view)


def test_the_home_stays_within_100_blocks_with_many_waiting_actions() -> None:
    waiting = tuple(_waiting(n, preview="would restart payments-db") for n in range(20))
    glass = tuple(
        HomeBreakGlass(action=i.action, reason="on fire", where="a DM", may_acknowledge=True)
        for i in waiting[:10]
    )
    home = Home(
        paused_by=ADMIN,
        waiting=waiting,
        scoped_pauses=("• the tool `scale` — by someone",),
        remembered=tuple((n, f"fact {n}") for n in range(40)),
        stats=HomeStats(window="24h", rates=("Task success: 80%",), summary="1 proposed", worst=()),
        tasks=tuple(
            HomeTask(task_id=n, title="t", where="a DM", assignee=None, due=None) for n in range(15)
        ),
        break_glass=glass,
    )
    view = home_view(home)
    assert len(view["blocks"]) <= 100
    assert len(waiting_sections(view)) == 20  # no waiting action lost its buttons
    assert all(len(s) <= SECTION_MAX for s in sections(view))
    assert all("payments-db" in s for s in waiting_sections(view))


def test_home_and_card_say_the_same_call() -> None:
    """The Home's "What will run" is the card's, from the same data, neutralised alike."""
    item = _waiting(7, args_json=json.dumps({"service": "payments-db", "note": HOSTILE}))
    _, card_blocks = render_card(item.card)
    card_what = next(t for t in sections({"blocks": card_blocks}) if "*What will run*" in t)
    (section,) = waiting_sections(home_view(Home(paused_by=None, waiting=(item,))))
    assert card_what in section
