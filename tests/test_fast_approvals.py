"""The rubber-stamp measure, through signed Slack requests on both databases: approvals people
click within `FAST_APPROVAL` of the card, in `/warden stats` (per approver for admins only)
and in `GET /metrics` by tool and tier — never by person; approvals a 30-minute grant gave
are nobody's click and count in neither."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import col

from bot.metrics import FAST_APPROVAL, ApproverPace, approver_pace
from storage.metrics import ApprovalRow
from storage.models import Action, ActionStatus
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER
from tests.slack_fixtures import CHANNEL, Slack


def stats_reply(slack: Slack, user: str, args: str = "") -> str:
    before = len(slack.ws.messages(CHANNEL, include_ephemeral_for=user))
    assert slack.ws.slash(user, CHANNEL, "/warden", f"stats {args}".strip()).status == 200
    slack.idle()
    messages = slack.ws.messages(CHANNEL, include_ephemeral_for=user)
    assert len(messages) == before + 1
    return str(messages[-1]["text"])


def metrics(slack: Slack) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    with urllib.request.urlopen(slack.bot.url + "/metrics", timeout=10) as resp:
        body = resp.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    return body, samples


def approve(slack: Slack, text: str, approver: str, button: str = "warden_approve") -> Action:
    action, card = slack.mention_and_card(text)
    assert slack.ws.click(approver, CHANNEL, card["ts"], button).status == 200
    slack.idle()
    done = slack.store.get_action(action.id)
    assert done.status == ActionStatus.SUCCEEDED, done.status_note
    return done


def posted_long_ago(slack: Slack, text: str) -> tuple[Action, str]:
    """A card for `text` as if it had been posted a minute ago (read before approving)."""
    action, card = slack.mention_and_card(text)
    with slack.store.db.write() as s:
        s.exec(
            update(Action)
            .where(col(Action.id) == action.id)
            .values(created_at=action.created_at - timedelta(minutes=1))
        )
    return action, card["ts"]


def test_fast_approvals_in_stats_and_metrics(slack: Slack) -> None:
    # A fast click (with a grant), an approval the grant gave, and a read-then-approve.
    approve(slack, "flush sessions", APPROVER, "warden_grant")
    covered, _ = slack.mention_and_card("flush sessions")
    assert slack.store.get_action(covered.id).status == ActionStatus.SUCCEEDED
    slow, ts = posted_long_ago(slack, "flush pages")
    assert slack.ws.click(APPROVER2, CHANNEL, ts, "warden_approve").status == 200
    slack.idle()
    assert slack.store.get_action(slow.id).status == ActionStatus.SUCCEEDED

    seconds = f"{FAST_APPROVAL.total_seconds():g}"
    admin = stats_reply(slack, ADMIN)
    assert f"Fast approvals (within {seconds} s of the card): 50% (none before) (1/2)" in admin
    assert "*Fast approvals by approver*" in admin
    assert f"<@{APPROVER}> 1/1 (100%)" in admin and f"<@{APPROVER2}> 0/1 (0%)" in admin
    one_tool = stats_reply(slack, ADMIN, "flush_cache")
    assert "(1/2)" in one_tool and f"<@{APPROVER}> 1/1" in one_tool
    # Approvers see the rate, not who: people's numbers are for admins.
    approver = stats_reply(slack, APPROVER)
    assert "Fast approvals (within" in approver and "by approver" not in approver
    assert f"<@{APPROVER}>" not in approver

    body, samples = metrics(slack)
    labels = frozenset({("tool", "flush_cache"), ("tier", "medium")})
    assert samples[("warden_approvals_total", labels)] == 2.0
    assert samples[("warden_fast_approvals_total", labels)] == 1.0
    overall = frozenset({("window", "24h")})
    assert samples[("warden_fast_approval_ratio", overall)] == 0.5
    for person in (REQUESTER, APPROVER, APPROVER2, ADMIN):
        assert person not in body


def test_no_approvals_yet_is_no_number(slack: Slack) -> None:
    _body, samples = metrics(slack)
    assert not any(name == "warden_fast_approval_ratio" for name, _ in samples)
    assert "Fast approvals" not in stats_reply(slack, ADMIN)  # no data at all yet


def test_each_approvers_pace() -> None:
    def row(who: str, seconds: float) -> ApprovalRow:
        return ApprovalRow(action_id="a", approver=who, tool="t", risk="low", after_seconds=seconds)

    fast = FAST_APPROVAL.total_seconds()
    paces = approver_pace([row("B", fast), row("A", 0.5), row("A", fast - 0.01), row("B", 1)])
    assert paces == [
        ApproverPace(approver="A", approvals=2, fast=2),
        ApproverPace(approver="B", approvals=2, fast=1),
    ]
    assert paces[1].fast_rate == 0.5
