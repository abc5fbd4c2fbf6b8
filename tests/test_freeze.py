"""Change freezes (`[[freeze]]`): inside one, a call of its tiers or above also needs an
admin's approval and never runs unattended; the card says so. Through signed Slack requests
with Warden's clock set inside and outside a weekend freeze, on both databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.gate import Gate
from bot.gate_types import Now
from bot.policy import Policy, parse_policy
from bot.policy_gate import FreezeWindow
from storage.models import Action, ActionStatus, Approval
from tests.conftest import ADMIN, APPROVER, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory, card_text

# Saturday 2026-12-12 12:00 in Paris (11:00 UTC): inside "fri 16:00" → "mon 08:00". Warden's
# clock only ever moves forward from real time in tests (leases and the outbox compare them).
SATURDAY = datetime(2026, 12, 12, 11, 0, tzinfo=UTC)
WEDNESDAY = datetime(2026, 12, 16, 11, 0, tzinfo=UTC)
WEEKEND = {
    "name": "weekend",
    "start": "fri 16:00",
    "end": "mon 08:00",
    "timezone": "Europe/Paris",
    "tiers": "high",
    "reason": "nobody on call",
}


class Clock:
    """Warden's clock: a chosen instant, moving on with real time."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.started = time.monotonic()

    def __call__(self) -> datetime:
        return self.at + timedelta(seconds=time.monotonic() - self.started)


def frozen_policy(tmp_path: Path, **window: Any) -> Policy:
    return parse_policy(policy_data(tmp_path, freeze=[{**WEEKEND, **window}]))


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def click(slack: Slack, user: str, ts: str, action: str = "warden_approve") -> None:
    assert slack.ws.click(user, CHANNEL, ts, action).status == 200
    slack.idle()


# -- the window itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (datetime(2026, 12, 4, 14, 59, tzinfo=UTC), False),  # Fri 15:59 Paris
        (datetime(2026, 12, 4, 15, 0, tzinfo=UTC), True),  # Fri 16:00 Paris
        (SATURDAY, True),
        (datetime(2026, 12, 7, 6, 59, tzinfo=UTC), True),  # Mon 07:59 Paris
        (datetime(2026, 12, 7, 7, 0, tzinfo=UTC), False),  # Mon 08:00 Paris
        (WEDNESDAY, False),
        # Summer time: Fri 16:00 Paris is 14:00 UTC in July.
        (datetime(2026, 7, 3, 14, 0, tzinfo=UTC), True),
        (datetime(2026, 7, 3, 13, 59, tzinfo=UTC), False),
    ],
)
def test_a_weekly_window_wraps_the_week_in_its_time_zone(at: datetime, inside: bool) -> None:
    assert FreezeWindow.model_validate(WEEKEND).covers(at) is inside


def test_a_dated_window() -> None:
    window = FreezeWindow.model_validate(
        {
            "name": "holidays",
            "start": datetime(2026, 12, 24, tzinfo=UTC),
            "end": datetime(2026, 12, 27, tzinfo=UTC),
        }
    )
    assert window.covers(datetime(2026, 12, 25, tzinfo=UTC))
    assert not window.covers(datetime(2026, 12, 27, tzinfo=UTC))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "friday 16:00"}, "write a weekday and a time"),
        ({"end": "mon 25:00"}, "write a weekday and a time"),
        ({"end": "fri 16:00"}, "must end at another time"),
        ({"timezone": "Mars/Olympus"}, "is not a time zone"),
        ({"tiers": "urgent"}, "tiers"),
        ({"start": datetime(2026, 12, 24, tzinfo=UTC)}, "both weekly times or both datetimes"),
        (
            {"start": datetime(2026, 12, 24), "end": datetime(2026, 12, 27)},
            "need an offset",
        ),
        (
            {
                "start": datetime(2026, 12, 27, tzinfo=UTC),
                "end": datetime(2026, 12, 24, tzinfo=UTC),
            },
            "must end after it starts",
        ),
        ({"until": "mon 08:00"}, "until"),
    ],
)
def test_a_bad_window_is_a_clear_policy_error(
    tmp_path: Path, window: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        frozen_policy(tmp_path, **window)


# -- through Slack ---------------------------------------------------------------------------


def test_inside_a_freeze_a_high_risk_call_also_needs_an_admin(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=frozen_policy(tmp_path), clock=Clock(SATURDAY))
    action, card = slack.mention_and_card("restart checkout-api")
    assert action.status == ActionStatus.AWAITING_APPROVAL
    shown = card_text(slack.card(action.id))
    assert "change freeze “weekend” (nobody on call) until Mon 08:00 Europe/Paris" in shown
    assert "and an admin" in shown

    # An approver alone is not enough: recorded, nothing runs, and they are told why.
    click(slack, APPROVER, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.runs() == []
    assert any("needs an admin's approval" in t for t in ephemerals_to(slack, APPROVER))
    # A second click by the same approver still does nothing.
    click(slack, APPROVER, card["ts"])
    assert slack.runs() == []

    # The admin (not an approver in this policy) approves: it runs, exactly once.
    click(slack, ADMIN, card["ts"])
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    assert len(slack.runs()) == 1
    final = card_text(slack.card(action.id))
    assert f"<@{APPROVER}>" in final


def test_the_admin_alone_is_not_enough_either(slack_factory: SlackFactory, tmp_path: Path) -> None:
    slack = slack_factory(policy_=frozen_policy(tmp_path), clock=Clock(SATURDAY))
    action, card = slack.mention_and_card("restart checkout-api")
    click(slack, ADMIN, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert any("another approver" in t for t in ephemerals_to(slack, ADMIN))
    click(slack, APPROVER, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    assert len(slack.runs()) == 1


def test_outside_the_freeze_one_approver_is_enough(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=frozen_policy(tmp_path), clock=Clock(WEDNESDAY))
    action = slack.approved_run("restart checkout-api", APPROVER)
    assert "change freeze" not in card_text(slack.card(action.id))


def test_a_freeze_on_every_tier_holds_an_auto_tool(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=frozen_policy(tmp_path, tiers="low"), clock=Clock(SATURDAY))
    assert slack.ws.mention(REQUESTER, CHANNEL, "announce lunch is here").status == 200
    slack.idle()
    (action,) = slack.store.actions_with_status(["awaiting_approval"], 10)
    assert action.tool == "post_message" and action.decided_by is None
    assert "change freeze" in card_text(slack.card(action.id))


def test_a_medium_call_is_not_frozen_by_a_high_freeze(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=frozen_policy(tmp_path), clock=Clock(SATURDAY))
    action, card = slack.mention_and_card("flush sessions")
    assert "change freeze" not in card_text(slack.card(action.id))
    click(slack, APPROVER, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED


# -- the gate's rule at run time --------------------------------------------------------------


def test_approvals_given_before_a_freeze_do_not_start_a_run_inside_it(tmp_path: Path) -> None:
    """Approved on Friday afternoon, claimed after 16:00: the executor's last check asks for
    the admin the freeze requires."""
    policy = frozen_policy(tmp_path)
    from bot.app import build_registry

    gate = Gate(policy, build_registry(policy))
    action = Action(
        id="a1",
        request_id="r1",
        trace_id="t1",
        tool="restart_service",
        args_json='{"service":"web"}',
        risk="high",
        status=ActionStatus.APPROVED,
        requester=REQUESTER,
        channel=CHANNEL,
        thread_ts="1.0",
        confidence=1.0,
        rationale="",
        policy_version=policy.version,
        required_approvals=1,
        revision=1,
    )
    approval = Approval(
        action_id="a1",
        revision=1,
        approver=APPROVER,
        args_json=action.args_json,
        policy_version=policy.version,
    )
    before = Now(paused=False, at=datetime(2026, 12, 4, 14, 0, tzinfo=UTC))
    after = Now(paused=False, at=SATURDAY)
    assert gate.runnable(action, [approval], before) is None
    assert "an admin's approval" in (gate.runnable(action, [approval], after) or "")
    admin = Approval(**{**approval.model_dump(), "id": None, "approver": ADMIN})
    assert gate.runnable(action, [approval, admin], after) is None
