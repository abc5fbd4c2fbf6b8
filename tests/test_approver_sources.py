"""Approvers as people, wherever they are named: Slack user groups (`S…`), on-call rotations
(`oncall:NAME`) and per-channel approvers, through signed Slack requests on both databases.
Four eyes and two-of-N count people, not the sources that name them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.directory import Directory
from bot.errors import ChatRefused, ConfigError
from bot.lookup_tools import oncall_tool
from bot.policy import Policy, parse_policy
from bot.tools import ToolContext
from storage.models import ActionStatus
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER, policy_data
from tests.slack_fixtures import CHANNEL, OPS, Slack, SlackFactory, card_text

SRE = "S0SRE"


def make_policy(tmp_path: Path, **overrides: Any) -> Policy:
    data = policy_data(tmp_path)
    access = {**data["access"], **overrides.pop("access", {})}
    return parse_policy({**data, "access": access, **overrides})


def ephemerals_to(slack: Slack, user: str) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in slack.ws.calls("chat.postEphemeral")
        if c.params.get("user") == user
    ]


def click(slack: Slack, user: str, channel: str, ts: str) -> None:
    assert slack.ws.click(user, channel, ts, "warden_approve").status == 200
    slack.idle()


# -- user groups -------------------------------------------------------------------------------


def test_a_user_group_approves_through_its_members(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=make_policy(tmp_path, access={"approvers": [SRE]}))
    slack.ws.usergroups[SRE] = [APPROVER, APPROVER2]
    action, card = slack.mention_and_card("restart checkout-api")
    shown = card_text(slack.card(action.id))
    assert f"<@{APPROVER}>" in shown and f"<@{APPROVER2}>" in shown and SRE not in shown

    click(slack, STRANGER, CHANNEL, card["ts"])  # not in the group
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert any("not an approver" in t for t in ephemerals_to(slack, STRANGER))
    click(slack, APPROVER2, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    assert len(slack.runs()) == 1


def test_four_eyes_counts_the_requester_inside_a_group(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=make_policy(tmp_path, access={"approvers": [SRE]}))
    slack.ws.usergroups[SRE] = [REQUESTER, APPROVER]
    action, card = slack.mention_and_card("restart checkout-api")
    click(slack, REQUESTER, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert any("four eyes" in t for t in ephemerals_to(slack, REQUESTER))
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED


def test_two_of_n_counts_a_person_named_twice_once(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """APPROVER is both listed by id and in the group: one person, one approval."""
    policy = make_policy(tmp_path, access={"approvers": [APPROVER, SRE]})
    slack = slack_factory(policy_=policy)
    slack.ws.usergroups[SRE] = [APPROVER, APPROVER2]
    action, card = slack.mention_and_card("scale api in prod")
    assert action.risk == "critical" and action.required_approvals == 2
    slack.idle()
    card = slack.card(action.id)
    click(slack, APPROVER, CHANNEL, card["ts"])
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    assert slack.runs("scale") == []
    click(slack, APPROVER2, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    assert len(slack.runs("scale")) == 1


def test_a_group_too_small_for_critical_is_refused_at_decision(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    slack = slack_factory(policy_=make_policy(tmp_path, access={"approvers": [SRE]}))
    slack.ws.usergroups[SRE] = [REQUESTER, APPROVER]  # one person besides the requester
    assert slack.ws.mention(REQUESTER, CHANNEL, "scale api in prod").status == 200
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.REFUSED], 10)
    assert "needs 2 approvers other than the requester" in (action.status_note or "")


def test_an_unknown_group_approves_nobody(slack_factory: SlackFactory, tmp_path: Path) -> None:
    """Fail closed: a group Slack does not know (deleted, misspelt) names no approver."""
    policy = make_policy(tmp_path, access={"approvers": ["S0GONE"]})
    slack = slack_factory(policy_=policy)
    assert slack.ws.mention(REQUESTER, CHANNEL, "restart checkout-api").status == 200
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.REFUSED], 10)
    assert "only 0 may approve" in (action.status_note or "")


# -- per channel -------------------------------------------------------------------------------


def test_a_channel_has_its_own_approvers(slack_factory: SlackFactory, tmp_path: Path) -> None:
    policy = make_policy(tmp_path, access={"channels": {OPS: {"approvers": [APPROVER2]}}})
    slack = slack_factory(policy_=policy)
    assert slack.ws.mention(REQUESTER, OPS, "restart checkout-api").status == 200
    slack.idle()
    (action,) = slack.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 10)
    card = slack.ws.message(OPS, action.card_ts)
    assert card is not None
    click(slack, APPROVER, OPS, card["ts"])  # an approver elsewhere, not in #ops
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    click(slack, APPROVER2, OPS, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED
    # In #general the default approvers still hold.
    slack.approved_run("restart web", APPROVER)


# -- on-call rotations -------------------------------------------------------------------------


class Clock:
    """Warden's clock: real time plus an offset the test moves (forward only)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def rotation(start: datetime) -> dict[str, Any]:
    return {
        "primary": {
            "description": "SRE primary",
            "people": [APPROVER, APPROVER2],
            "start": start,
            "every": "7d",
        }
    }


def test_whoever_is_on_call_approves_and_the_turn_moves_on(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)  # APPROVER's turn began an hour ago
    policy = make_policy(
        tmp_path,
        oncall=rotation(start),
        tools={
            "post_message": {"autonomy": "auto"},
            "restart_service": {"approvers": ["oncall:primary"]},
        },
    )
    clock = Clock()
    slack = slack_factory(policy_=policy, clock=clock)
    action, card = slack.mention_and_card("restart checkout-api")
    click(slack, APPROVER2, CHANNEL, card["ts"])  # not on call
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED

    clock.shift = timedelta(days=7)  # the handover: APPROVER2's turn
    action, card = slack.mention_and_card("restart web")
    assert f"<@{APPROVER2}>" in card_text(slack.card(action.id))
    click(slack, APPROVER, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.AWAITING_APPROVAL
    click(slack, APPROVER2, CHANNEL, card["ts"])
    assert slack.store.get_action(action.id).status == ActionStatus.SUCCEEDED


def test_who_is_on_call_lookup(tmp_path: Path) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    policy = make_policy(tmp_path, oncall=rotation(start))
    at = start + timedelta(days=7, hours=2)  # the second turn
    tool = oncall_tool(policy, clock=lambda: at)
    ctx = ToolContext(action_id="x", trace_id="t", requester=REQUESTER, channel=CHANNEL)
    (row,) = json.loads(tool.run(tool.validate({}), ctx).output)
    assert row["on_call"] == APPROVER2 and row["next"] == APPROVER
    assert row["until"] == "2026-01-19T09:00+00:00"
    missing = tool.run(tool.validate({"rotation": "nope"}), ctx)
    assert not missing.ok and "known: primary" in missing.output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"access": {"approvers": ["everyone"]}}, "not a Slack user id"),
        ({"access": {"approvers": ["oncall:secondary"]}}, "no \\[oncall.secondary\\]"),
        (
            {"tools": {"restart_service": {"approvers": ["oncall:nope"]}}},
            "tools.restart_service.approvers",
        ),
        ({"access": {"channels": {"general": {"approvers": [APPROVER]}}}}, "not a Slack channel"),
        (
            {"oncall": {"p": {"people": [APPROVER], "start": datetime(2026, 1, 5, 9)}}},
            "with an offset",
        ),
        (
            {
                "oncall": {
                    "p": {
                        "people": [APPROVER],
                        "start": datetime(2026, 1, 5, tzinfo=UTC),
                        "every": "30m",
                    }
                }
            },
            "at least 1h",
        ),
        ({"oncall": {"p": {"people": [], "start": datetime(2026, 1, 5, tzinfo=UTC)}}}, "people"),
    ],
)
def test_bad_approver_sources_are_clear_policy_errors(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_policy(tmp_path, **overrides)


# -- the directory's cache -----------------------------------------------------------------------


class GroupChat:
    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {SRE: [APPROVER]}
        self.calls = 0
        self.down = False

    def usergroup_members(self, group: str) -> list[str]:
        self.calls += 1
        if self.down:
            raise ConnectionError("slack is unreachable")
        if group not in self.groups:
            raise ChatRefused("no_such_subteam")
        return list(self.groups[group])


def test_members_are_cached_for_the_ttl_then_read_again() -> None:
    chat, now = GroupChat(), [0.0]
    directory = Directory(chat, ttl=300, stale_for=3600, clock=lambda: now[0])  # type: ignore[arg-type]
    assert directory.members(SRE) == {APPROVER}
    chat.groups[SRE] = [APPROVER2]
    now[0] = 299
    assert directory.members(SRE) == {APPROVER} and chat.calls == 1
    now[0] = 300
    assert directory.members(SRE) == {APPROVER2} and chat.calls == 2


def test_an_unreachable_platform_keeps_the_last_members_briefly_then_none() -> None:
    chat, now = GroupChat(), [0.0]
    directory = Directory(chat, ttl=300, stale_for=3600, clock=lambda: now[0])  # type: ignore[arg-type]
    assert directory.members(SRE) == {APPROVER}
    chat.down = True
    now[0] = 1000
    assert directory.members(SRE) == {APPROVER}
    now[0] = 3600
    assert directory.members(SRE) == frozenset()
    assert directory.members("S0OTHER") == frozenset()


def test_a_refused_group_is_empty_at_once() -> None:
    chat = GroupChat()
    directory = Directory(chat, clock=time.monotonic)  # type: ignore[arg-type]
    assert directory.members("S0GONE") == frozenset()
    assert ADMIN not in directory.members(SRE)
