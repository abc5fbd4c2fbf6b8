"""A call that becomes critical is escalated to the admin channel once, whichever path raised
it: an Edit or the re-check a click makes after the policy changed (`Approvals.apply_recheck`).

The policy is changed the way an operator does it: Warden stops and starts again on the same
database with the new policy file; the approvers' clients still show the card they saw.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import text as sql

from bot.policy import Policy, parse_policy
from storage.models import ActionStatus
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory

RAISED = ":rotating_light: Critical action"


def critical_posts(slack: Slack) -> list[str]:
    """The "critical action" escalations posted to the admin channel."""
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postMessage")
        if c.params.get("channel") == OPS and str(c.params.get("text")).startswith(RAISED)
    ]


def critical_rows(slack: Slack) -> list[str]:
    """The same escalations as the outbox holds them, whichever Warden process stored them."""
    return [r.text for r in slack.store.outbox_rows() if (r.text or "").startswith(RAISED)]


def critical_policy(tmp_path: Path, timeout: str = "10s") -> Policy:
    """The test policy with restart_service rated critical (`timeout` varies its version)."""
    data: dict[str, Any] = policy_data(tmp_path)
    data["runbooks"]["restart_service"]["risk"] = "critical"
    data["runbooks"]["restart_service"]["timeout"] = timeout
    return parse_policy(data)


def click(slack: Slack, user: str, card: dict[str, Any], revision: int, action_id: str) -> None:
    """`user` clicks Approve on `card` as their client shows it, at `revision`."""
    delivery = slack.ws.click(
        user,
        CHANNEL,
        card["ts"],
        "warden_approve",
        seen=card,
        value=f"{action_id}:{revision}",
    )
    assert delivery.status == 200, delivery.body
    slack.idle()


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def slash(slack: Slack, user: str, command: str, text: str = "") -> str:
    delivery = slack.ws.slash(user, CHANNEL, command, text)
    assert delivery.status == 200, delivery.body
    slack.idle()
    return str(delivery.body)


def restarted_critical(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> tuple[Any, dict[str, Any], Slack]:
    """A high-risk "restart web" card, then Warden restarted with restart_service critical."""
    action, card = slack.mention_and_card("restart web")
    assert action.risk == "high" and action.status == ActionStatus.AWAITING_APPROVAL
    card = copy.deepcopy(card)
    slack.bot.stop()
    return action, card, slack_factory(policy_=critical_policy(tmp_path))


def test_a_recheck_to_critical_escalates_once_and_later_clicks_do_not(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    action, card, again = restarted_critical(slack, slack_factory, tmp_path)
    click(again, APPROVER, card, action.revision, action.id)
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.required_approvals == 2
    assert row.revision == action.revision + 1
    (raised,) = critical_posts(again)
    assert "raised by a policy change" in raised and "restart_service" in raised, raised
    assert action.trace_id in raised

    # The approvers click the critical revision (their clients now show it): no re-check,
    # no second escalation; two approvals after the dry run run it once.
    for approver in (APPROVER, APPROVER2):
        click(again, approver, card, row.revision, action.id)
    again.ws.wait_until(lambda: again.runs() or None, 10)
    assert again.runs() == [f"restart web {action.id}"]
    assert len(critical_posts(again)) == 1
    assert len(critical_rows(again)) == 1


def test_a_stale_second_click_after_the_escalation_does_not_escalate_again(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """A second click from a client still showing the old revision is stale: it changes
    nothing and posts nothing."""
    action, card, again = restarted_critical(slack, slack_factory, tmp_path)
    click(again, APPROVER, card, action.revision, action.id)
    assert len(critical_posts(again)) == 1
    click(again, APPROVER2, card, action.revision, action.id)
    said = ephemerals_to(again, APPROVER2)
    assert any("changed since you looked" in t for t in said), said
    row = again.store.get_action(action.id)
    assert row is not None and row.revision == action.revision + 1
    assert len(critical_posts(again)) == 1
    assert len(critical_rows(again)) == 1


def test_a_recheck_of_a_call_already_critical_does_not_escalate_again(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """Another policy change (a new version, the tool still critical) re-checks the critical
    revision into a new one: it was escalated when it became critical, not again now."""
    action, card, again = restarted_critical(slack, slack_factory, tmp_path)
    click(again, APPROVER, card, action.revision, action.id)
    assert len(critical_rows(again)) == 1
    again.bot.stop()

    third = slack_factory(policy_=critical_policy(tmp_path, timeout="20s"))
    click(third, APPROVER, card, action.revision + 1, action.id)
    row = third.store.get_action(action.id)
    assert row is not None and row.risk == "critical"
    assert row.revision == action.revision + 2  # re-checked again
    assert critical_posts(third) == []
    assert len(critical_rows(third)) == 1


def test_concurrent_clicks_that_recheck_to_critical_escalate_once(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    action, card, again = restarted_critical(slack, slack_factory, tmp_path)
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(
            pool.map(
                lambda user: (
                    again.ws.click(user, CHANNEL, card["ts"], "warden_approve", seen=card).status
                ),
                (APPROVER, APPROVER2, ADMIN),
            )
        )
    again.idle()
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical"
    assert row.revision == action.revision + 1  # one re-check won
    assert len(critical_rows(again)) == 1
    assert len(critical_posts(again)) == 1


def test_a_recheck_to_critical_while_paused_is_escalated_and_runs_after_resume(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """Paused, the re-check still makes the call critical and escalates it (as an Edit that
    raises it does); the pause holds its dry run and its run, and /resume escalates nothing
    more."""
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slash(slack, ADMIN, "/pause", "change freeze")
    card = copy.deepcopy(card)
    slack.bot.stop()
    again = slack_factory(policy_=critical_policy(tmp_path))

    click(again, APPROVER, card, action.revision, action.id)
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.required_approvals == 2
    assert row.status == ActionStatus.AWAITING_APPROVAL, row.status_note
    (raised,) = critical_posts(again)
    assert "raised by a policy change" in raised, raised
    assert again.runs() == []

    assert "Resumed" in slash(again, ADMIN, "/resume")
    for approver in (APPROVER, APPROVER2):
        click(again, approver, card, row.revision, action.id)
    again.ws.wait_until(lambda: again.runs() or None, 10)
    assert again.runs() == [f"restart web {action.id}"]
    assert len(critical_rows(again)) == 1


def test_an_edit_that_raises_a_call_to_critical_still_escalates_once(slack: Slack) -> None:
    """The Edit path shares the rule: raised by an edit, escalated once, naming the editor;
    a later edit of the critical call escalates nothing more."""
    action, _card = slack.mention_and_card("scale api in staging")
    assert action.risk == "medium"
    prod = {"value": {"type": "static_select", "selected_option": {"value": "prod"}}}
    edit(slack, REQUESTER, action.id, {"arg:service": {"value": text("api")}, "arg:env": prod})
    (raised,) = critical_posts(slack)
    assert f"raised by an edit by <@{REQUESTER}>" in raised, raised
    edit(slack, REQUESTER, action.id, {"arg:service": {"value": text("web")}, "arg:env": prod})
    row = slack.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and '"web"' in row.args_json
    assert len(critical_posts(slack)) == 1


def text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def edit(slack: Slack, user: str, action_id: str, values: dict[str, Any]) -> None:
    slack.ws.click(user, CHANNEL, slack.card(action_id)["ts"], "warden_edit")
    slack.idle()
    (view,) = slack.ws.open_views(user)
    done = slack.ws.submit_view(user, view["id"], values)
    assert done.status == 200 and "errors" not in (done.body or ""), done.body
    slack.idle()


def test_an_approved_call_held_back_as_critical_is_escalated_and_gets_its_dry_run(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """Approved, with its run waiting behind a pause, then the policy makes the tool
    critical: at /resume the run's own check sends it back to its approvers
    (`Outcomes.not_runnable`) as a critical call, so it is escalated once and its dry run is
    made, as a re-check at a click would."""
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slash(slack, ADMIN, "/pause", "change freeze")
    click(slack, APPROVER, card, action.revision, action.id)  # recorded, held by the pause
    # The state a click leaves when the pause lands between its approval and the run's
    # claim: approved, not started.
    approved = slack.store.transition(
        action.id,
        [ActionStatus.AWAITING_APPROVAL],
        ActionStatus.APPROVED,
        slack.bot.warden.lifecycle.core.audit(APPROVER, "action.approved", action.trace_id),
        revision=action.revision,
        values={"decided_by": APPROVER},
    )
    assert approved is not None
    slack.bot.stop()
    again = slack_factory(policy_=critical_policy(tmp_path))

    assert "Resumed" in slash(again, ADMIN, "/resume")
    row = again.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.AWAITING_APPROVAL, row.status
    assert row.risk == "critical" and row.required_approvals == 2
    assert row.preview, "the critical call's dry run was not made"
    (raised,) = critical_posts(again)
    assert "raised by a policy change" in raised, raised
    for approver in (APPROVER, APPROVER2):
        click(again, approver, card, row.revision, action.id)
    again.ws.wait_until(lambda: again.runs() or None, 10)
    assert again.runs() == [f"restart web {action.id}"]
    assert len(critical_rows(again)) == 1


def test_a_critical_call_left_without_its_dry_run_by_a_stop_gets_it_at_start_up(
    slack: Slack, slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """A process that stops between a critical revision and its dry run (here: the re-check
    at a click made the revision; the dry run's result is gone) leaves a call no one can
    approve; the next start makes its dry run."""
    action, card, again = restarted_critical(slack, slack_factory, tmp_path)
    click(again, APPROVER, card, action.revision, action.id)
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.preview
    with again.store.db.write() as session:  # the dry run never finished
        session.execute(sql("UPDATE action SET preview = NULL WHERE id = :id"), {"id": action.id})
    again.bot.stop()
    third = slack_factory(policy_=critical_policy(tmp_path))
    third.idle()
    row = third.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.AWAITING_APPROVAL
    assert row.preview, "the dry run was not made at start-up"
    assert len(critical_rows(third)) == 1  # and it is not escalated again
