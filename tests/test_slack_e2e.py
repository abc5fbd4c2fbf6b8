"""Scenarios through Slack's real request shapes: signed HTTP in, Web API calls out."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bot.policy import Policy, parse_policy
from storage.models import ActionStatus
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, buttons, card_text


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def test_mention_to_one_approved_run(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart checkout-api")
    text = card_text(card)
    assert card.get("thread_ts") is not None
    for expected in (
        "restart_service",
        "checkout-api",
        "Confidence",
        "100%",
        "high",
        "Who may approve",
        "Expires",
        action.trace_id,
        "would restart checkout-api",
    ):
        assert expected in text, expected
    assert buttons(card) == [
        "Approve",
        "Approve identical calls for 30 min",
        "Edit",
        "Reject",
        "Break glass",
    ]

    # Someone who may not approve: an ephemeral explanation, nothing changes.
    slack.ws.click(STRANGER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("not an approver" in t for t in ephemerals_to(slack, STRANGER))
    slack.ws.click(REQUESTER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("four eyes" in t for t in ephemerals_to(slack, REQUESTER))
    assert slack.runs() == []

    # The right approver: runs once, the card says who approved and the result.
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs() == [f"restart checkout-api {action.id}"]
    card = slack.card(action.id)
    text = card_text(card)
    assert "Succeeded" in text and f"<@{APPROVER}>" in text
    assert buttons(card) == ["Undo"]
    count, problems = slack.store.verify_audit()
    assert problems == [] and count > 5


def test_event_retries_never_make_a_second_card(slack: Slack) -> None:
    first = slack.ws.mention(REQUESTER, CHANNEL, "restart web")
    for n in (1, 2, 3):
        again = slack.ws.redeliver(first, retry_num=n)
        assert again.status == 200
    slack.idle()
    cards = [c for c in slack.ws.calls("chat.postMessage") if c.params.get("blocks")]
    assert len(cards) == 1


def test_double_clicks_run_once(slack: Slack) -> None:
    _action, card = slack.mention_and_card("restart web")
    with ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(
                lambda i: (
                    slack.ws.click(
                        APPROVER if i % 2 else APPROVER2,
                        CHANNEL,
                        card["ts"],
                        "warden_approve",
                        seen=card,
                    ).status
                ),
                range(10),
            )
        )
    assert statuses == [200] * 10
    slack.idle()
    assert len(slack.runs()) == 1


def test_reject_with_reason(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    views = slack.ws.open_views(APPROVER)
    assert len(views) == 1
    view = views[0]
    resp = slack.ws.submit_view(
        APPROVER,
        view["id"],
        {"reason": {"value": {"type": "plain_text_input", "value": "not during the sale"}}},
    )
    assert resp.status == 200
    slack.idle()
    card = slack.card(action.id)
    text = card_text(card)
    assert "Rejected" in text and "not during the sale" in text and f"<@{APPROVER}>" in text
    assert buttons(card) == []
    assert slack.runs() == []


def test_edit_in_modal_revalidates_and_voids_approvals(slack: Slack) -> None:
    action, card = slack.mention_and_card("scale api in prod")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert "1 of 2" in card_text(slack.card(action.id))
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_edit")
    slack.idle()
    view = slack.ws.open_views(APPROVER)[0]
    bad = slack.ws.submit_view(
        APPROVER,
        view["id"],
        {
            "arg:service": {"value": {"type": "plain_text_input", "value": "Not Valid"}},
            "arg:env": {"value": {"type": "static_select", "selected_option": {"value": "prod"}}},
        },
    )
    body = json.loads(bad.body)
    assert body["response_action"] == "errors" and "arg:service" in body["errors"]
    good = slack.ws.submit_view(
        APPROVER,
        view["id"],
        {
            "arg:service": {"value": {"type": "plain_text_input", "value": "web"}},
            "arg:env": {
                "value": {"type": "static_select", "selected_option": {"value": "staging"}}
            },
        },
    )
    assert good.status == 200 and "errors" not in (good.body or "")
    slack.idle()
    row = slack.store.get_action(action.id)
    assert row.revision == 2 and row.risk == "medium" and '"web"' in row.args_json
    card = slack.card(action.id)
    assert "Edited by" in card_text(card) and "approved by" not in card_text(card)
    # The old card's button carries revision 1: stale.
    slack.ws.click(APPROVER2, CHANNEL, card["ts"], "warden_approve", value=f"{action.id}:1")
    slack.idle()
    assert slack.runs("scale") == []
    slack.ws.click(APPROVER2, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert slack.runs("scale") == ["scale web staging"]


def test_pause_and_resume_through_slash_commands(slack: Slack) -> None:
    action, card = slack.mention_and_card("restart web")
    denied = slack.ws.slash(APPROVER, CHANNEL, "/pause", "me too")
    assert "Only Warden admins" in denied.body
    paused = slack.ws.slash(ADMIN, CHANNEL, "/pause", "incident 7")
    assert paused.status == 200 and "Paused" in paused.body
    slack.idle()
    assert any(
        c.params.get("channel") == OPS and "incident 7" in str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
    )
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert any("paused" in t for t in ephemerals_to(slack, APPROVER))
    assert slack.runs() == []
    assert buttons(slack.card(action.id)) == [
        "Approve",
        "Approve identical calls for 30 min",
        "Edit",
        "Reject",
        "Break glass",
    ]
    status = slack.ws.slash(APPROVER, CHANNEL, "/warden", "status")
    assert "Paused" in status.body
    assert "Resumed" in slack.ws.slash(ADMIN, CHANNEL, "/resume").body
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    assert len(slack.runs()) == 1


def test_pause_survives_restart(slack_factory: SlackFactory) -> None:
    slack = slack_factory()
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slack.ws.slash(ADMIN, CHANNEL, "/pause", "freeze").body
    slack.bot.stop()  # Warden restarts…
    again = slack_factory()
    assert again.store.pause_state().paused  # …still paused
    again.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve", seen=card)
    again.idle()
    assert again.runs() == []  # the approval is recorded, nothing runs while paused
    assert again.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert "Resumed" in again.ws.slash(ADMIN, CHANNEL, "/resume").body
    again.idle()
    assert again.runs() == [f"restart web {action.id}"]


def test_undo_after_success(slack: Slack) -> None:
    action = slack.approved_run("restart web", APPROVER)
    slack.ws.click(APPROVER, CHANNEL, action.card_ts, "warden_undo")
    slack.idle()
    assert slack.runs("undo") == ["undo web"]
    card = slack.card(action.id)
    assert "Undone" in card_text(card) and buttons(card) == []


def test_warden_help_pending_and_home(slack: Slack) -> None:
    slack.mention_and_card("restart web")
    assert "/pause" in slack.ws.slash(STRANGER, CHANNEL, "/warden", "help").body
    pending = slack.ws.slash(APPROVER, CHANNEL, "/warden", "pending").body
    assert "restart_service" in pending and "1 waiting" in pending
    assert "Nothing is waiting" in slack.ws.slash(REQUESTER, CHANNEL, "/warden", "pending").body
    slack.ws.open_home(APPROVER)
    slack.idle()
    home = slack.ws.home(APPROVER)
    assert home is not None and "restart_service" in card_text(home)


def test_unknown_request_gets_help(slack: Slack) -> None:
    slack.ws.mention(REQUESTER, CHANNEL, "make me a sandwich")
    slack.idle()
    replies = [str(c.params.get("text")) for c in slack.ws.calls("chat.postMessage")]
    assert any("I don't know how" in r and "restart {service}" in r for r in replies)
    assert any("ANTHROPIC_API_KEY" in r for r in replies)


def test_dm_starts_a_request(slack: Slack) -> None:
    slack.ws.dm(REQUESTER, "restart web")
    slack.idle()
    assert slack.store.actions_with_status(["awaiting_approval"])


def test_a_dm_that_mentions_the_bot_is_a_request(slack: Slack) -> None:
    # Slack sends DMs only as message events, even when they mention the bot.
    slack.ws.dm(REQUESTER, "<@U0WARDEN> restart api")
    slack.idle()
    (action,) = slack.store.actions_with_status(["awaiting_approval"])
    assert json.loads(action.args_json) == {"service": "api"}


def test_only_the_requester_continues_a_thread_without_a_mention(slack: Slack) -> None:
    action, _card = slack.mention_and_card("restart web")
    thread = action.thread_ts
    slack.ws.say(APPROVER, CHANNEL, "lgtm, approving now", thread_ts=thread)
    slack.ws.say(REQUESTER, CHANNEL, "flush pages", thread_ts=thread)
    slack.idle()
    requests = slack.store.thread_requests(CHANNEL, thread)
    assert [r.requester for r in requests] == [REQUESTER, REQUESTER]
    # anyone may still join by mentioning the bot
    slack.ws.mention(APPROVER, CHANNEL, "flush sessions", thread_ts=thread)
    slack.idle()
    assert len(slack.store.thread_requests(CHANNEL, thread)) == 3


def test_slack_escaping_is_undone_once(slack: Slack) -> None:
    slack.ws.type_message(REQUESTER, CHANNEL, "@warden announce fish & chips <today>")
    slack.idle()
    posted = [
        c.params["text"]
        for c in slack.ws.calls("chat.postMessage")
        if "fish" in str(c.params.get("text"))
        and c.params.get("channel") == "C0GENERAL"
        and not c.params.get("blocks")
    ]
    assert posted == ["fish &amp; chips &lt;today&gt;"]  # Slack shows: fish & chips <today>


def test_a_reject_click_by_a_stranger_opens_no_modal(slack: Slack) -> None:
    _action, card = slack.mention_and_card("restart web")
    slack.ws.click(STRANGER, CHANNEL, card["ts"], "warden_reject")
    slack.idle()
    assert slack.ws.open_views(STRANGER) == []
    assert any("can't reject" in t for t in ephemerals_to(slack, STRANGER))


def test_the_card_says_running_while_the_runbook_runs(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    data = policy_data(tmp_path)
    data["runbooks"]["flush_cache"]["command"] = [
        "sh",
        "-c",
        'while [ ! -f "$1" ]; do sleep 0.02; done',
        "{name}",
        str(gate),
    ]
    slack = slack_factory(policy_=parse_policy(data))
    action, card = slack.mention_and_card("flush pages")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.ws.wait_until(lambda: "Running" in card_text(slack.card(action.id)))
    gate.touch()
    slack.idle()
    assert "Succeeded" in card_text(slack.card(action.id))


def test_long_output_stays_within_block_kit_limits(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """A runbook printing 200 kB of multi-byte, mrkdwn-heavy text still gets a valid card
    (the workspace answers invalid_blocks, as Slack does, to anything over the limits)."""
    data = policy_data(tmp_path)
    say = "import sys; sys.stdout.write(('*bold* `x` ```é<>& <!here>' * 12 + '\\n') * {n})"
    data["runbooks"]["noisy"] = {
        "description": "A runbook with a lot to say " + "really " * 200,
        "command": [sys.executable, "-c", say.format(n=2000)],
        "dry_run": [sys.executable, "-c", say.format(n=500)],
        "risk": "medium",
    }
    data["aliases"]["noisy"] = {"runbook": "noisy"}
    slack = slack_factory(policy_=parse_policy(data))
    action, card = slack.mention_and_card("noisy")
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
    slack.idle()
    row = slack.store.get_action(action.id)
    assert row.status == ActionStatus.SUCCEEDED and len(row.result or "") > 3000
    calls = slack.ws.calls("chat.update") + slack.ws.calls("chat.postMessage")
    assert calls and all(c.response.get("ok") for c in calls), [
        c.response for c in calls if not c.response.get("ok")
    ]
    text = card_text(slack.card(action.id))
    assert "Succeeded" in text and "<!here>" not in text


def test_rate_limited_card_post_is_retried(slack: Slack) -> None:
    slack.ws.fail_next("chat.postMessage", status=429, retry_after=1)
    _action, card = slack.mention_and_card("restart web")
    posts = [c for c in slack.ws.calls("chat.postMessage") if c.params.get("blocks")]
    # One refused with 429, then the same card again after Retry-After: posted once.
    assert [p.response.get("ok") for p in posts] == [False, True]
    assert posts[1].at - posts[0].at >= 0.9
    assert card is not None


def test_server_errors_are_retried(slack: Slack) -> None:
    slack.ws.fail_next("chat.update", status=503, times=1)
    slack.approved_run("restart web", APPROVER)
    assert next(c.response.get("ok") for c in slack.ws.calls("chat.update")) is False


def test_pause_holds_under_load(slack_factory: SlackFactory, tmp_path: Path) -> None:
    """/pause is acknowledged and in force while 100 requests wait on a stuck planner and
    three runbooks are running: planning and execution never occupy the threads that ack."""
    import threading

    from bot.app import build_registry
    from bot.planner import AliasPlanner, Plan, PlanRequest

    gate, log = tmp_path / "go", tmp_path / "runbook.log"
    data = policy_data(tmp_path)
    data["runbooks"]["slow"] = {
        "description": "A runbook that runs until released",
        "command": [
            "sh",
            "-c",
            'while [ ! -f "$1" ]; do sleep 0.02; done; echo "slow $0" >> "$2"',
            "{name}",
            str(gate),
            str(log),
        ],
        "risk": "medium",
        "params": {"name": {"pattern": "^[a-z0-9]{1,10}$"}},
    }
    data["aliases"]["slow {name}"] = {"runbook": "slow"}
    policy = parse_policy(data)
    blocked, release = threading.Event(), threading.Event()
    stuck = threading.Semaphore(0)

    class StuckPlanner:
        inner = AliasPlanner(policy, build_registry(policy))

        def plan(self, request: PlanRequest) -> Plan:
            if blocked.is_set():
                stuck.release()
                release.wait(60)
            return self.inner.plan(request)

    slack = slack_factory(policy_=policy, planner=StuckPlanner())
    try:
        cards = [slack.mention_and_card(f"slow {name}") for name in ("a", "b", "c")]
        waiting, waiting_card = slack.mention_and_card("restart web")
        running = [action.id for action, _ in cards]
        for _, card in cards:
            slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve")
        slack.ws.wait_until(
            lambda: all(slack.store.get_action(i).status == ActionStatus.EXECUTING for i in running)
        )
        blocked.set()
        for i in range(100):
            assert slack.ws.mention(REQUESTER, CHANNEL, f"restart svc{i}").status == 200
        assert slack.bot.warden.workers.inbox.wait_idle(10)  # each handed to intake
        for _ in range(policy.workers.planners):
            assert stuck.acquire(timeout=10)  # every planner thread is stuck
        assert slack.bot.warden.workers.planners.pending == 100
        slack.bot.warden.lifecycle.sweeps.requests()  # the minute sweep finds the backlog...
        assert slack.bot.warden.workers.planners.pending == 100  # ...and queues none twice

        reply = slack.ws.slash(ADMIN, CHANNEL, "/pause", "under load")
        assert reply.status == 200 and "Paused" in reply.body
        assert slack.store.pause_state().paused  # in force when the ack arrives
        click = slack.ws.click(APPROVER, CHANNEL, waiting_card["ts"], "warden_approve")
        assert click.status == 200
        assert "Paused" in slack.ws.slash(ADMIN, CHANNEL, "/warden", "status").body
    finally:
        release.set()
        gate.touch()
    slack.idle()
    assert slack.runs("restart") == []  # approved after /pause: never ran
    assert slack.store.get_action(waiting.id).status == ActionStatus.AWAITING_APPROVAL
    assert sorted(slack.runs("slow")) == ["slow a", "slow b", "slow c"]  # already running
    assert any("paused" in t for t in ephemerals_to(slack, APPROVER))
    # Nothing was dropped: all 100 requests were planned into cards.
    assert len(slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 500)) == 101


def test_a_card_whose_post_fails_is_posted_by_the_sweep(slack: Slack) -> None:
    from datetime import timedelta

    from storage.models import utcnow

    # The test delivers the due row itself: the every-5-s job would race it.
    slack.bot.warden.jobs.scheduler.remove_job("bot.jobs:deliver_outbox")
    # A card's post is not retried by the client on a 5xx (it may have reached Slack).
    slack.ws.fail_next("chat.postMessage", status=500, times=1)
    slack.ws.mention(REQUESTER, CHANNEL, "restart web")
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL])
    # The reservation is released as "unsure": a failed call may still have reached Slack.
    assert slack.store.get_action(action.id).card_ts == "unsure"
    missing = slack.store.cards_missing(utcnow() + timedelta(minutes=1))
    assert missing == [action.id]
    # The card is still owed: its outbox row waits for its retry, which the sweep delivers.
    owed = [r for r in slack.store.outbox_rows() if r.delivered_at is None]
    assert [(r.kind, r.action_id) for r in owed] == [("card", action.id)]
    assert owed[0].attempts == 1 and owed[0].next_at > utcnow()
    assert slack.bot.warden.lifecycle.sweeps.outbox() == 0  # not due yet
    assert slack.bot.warden.lifecycle.delivery.drain() == 0
    slack.store.db.engine.dispose()
    from sqlalchemy import update

    from storage.models import Outbox

    with slack.store.db.write() as s:  # time passes
        s.exec(update(Outbox).values(next_at=utcnow() - timedelta(seconds=1)))
    assert slack.bot.warden.lifecycle.sweeps.outbox() == 1
    slack.idle()
    card = slack.card(action.id)
    assert buttons(card) == [
        "Approve",
        "Approve identical calls for 30 min",
        "Edit",
        "Reject",
        "Break glass",
    ]


def _gated_policy(tmp_path: Path, dry_run: list[str]) -> Policy:
    data = policy_data(tmp_path)
    data["runbooks"]["scale"]["dry_run"] = dry_run
    return parse_policy(data)


def test_edit_runs_its_dry_run_after_the_ack(slack_factory: SlackFactory, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    # The dry run waits for the test to create `go`: if it ran inside the view submission's
    # ack, submit_view below could not return.
    slack = slack_factory(
        policy_=_gated_policy(
            tmp_path,
            [
                "sh",
                "-c",
                f'while [ ! -f "{gate}" ]; do sleep 0.02; done; echo "would scale $0"',
                "{service}",
            ],
        )
    )
    gate.touch()
    action, card = slack.mention_and_card("scale api in staging")
    gate.unlink()
    slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_edit")
    slack.idle()
    view = slack.ws.open_views(APPROVER)[0]
    done = slack.ws.submit_view(
        APPROVER,
        view["id"],
        {
            "arg:service": {"value": {"type": "plain_text_input", "value": "web"}},
            "arg:env": {"value": {"type": "static_select", "selected_option": {"value": "prod"}}},
        },
    )
    assert done.status == 200 and "errors" not in (done.body or "")
    slack.ws.wait_until(lambda: "Dry run in progress" in card_text(slack.card(action.id)))
    assert "Approve" not in buttons(slack.card(action.id))  # critical: no preview yet
    reply = slack.bot.warden.lifecycle.approvals.approve(action.id, 2, APPROVER2)
    assert not reply.ok and "preview" in reply.text
    gate.touch()
    slack.idle()
    card = slack.card(action.id)
    assert "would scale web" in card_text(card) and buttons(card)[0] == "Approve"


def test_a_critical_action_whose_dry_run_fails_is_refused(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=_gated_policy(tmp_path, ["sh", "-c", "echo broken; exit 3"]))
    action, card = slack.mention_and_card("scale api in prod")
    assert action.status == ActionStatus.REFUSED
    assert "the dry run failed" in card_text(card) and buttons(card) == []
    action, card = slack.mention_and_card("scale api in staging")  # medium: preview optional
    assert action.status == ActionStatus.AWAITING_APPROVAL
    assert "dry run failed" in card_text(card)


def test_a_critical_call_needs_two_approvers_and_runs_once(slack: Slack) -> None:
    slack.approved_run("scale api in prod", APPROVER, APPROVER2)
