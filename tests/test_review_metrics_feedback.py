"""A hostile review of feedback, outcome checks, metrics, alerts, the governor and unusual
usage, through Slack's real request shapes on both databases: each test is a defect found
and fixed (it failed before its fix)."""

from __future__ import annotations

import gc
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.policy import parse_policy
from handlers.prometheus import WardenCollector
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import ADMIN, APPROVER, REQUESTER, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def tool_labels(url: str) -> set[str]:
    status, body = get(url + "/metrics")
    assert status == 200, body
    return {
        s.labels["tool"]
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if "tool" in s.labels
    }


def said_to(slack: Slack, user: str, channel: str = CHANNEL) -> str:
    return "\n".join(
        str(m.get("text") or "")
        for m in slack.ws.messages(channel, include_ephemeral_for=user)
        if m.get("ephemeral_to") == user
    )


# -- metrics labels: a hostile model cannot mint label values -----------------------------


def test_tools_the_model_invents_do_not_become_metric_labels(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    # The model's next turn is not scripted: the stub answers it 500 and planning ends
    # there. No retries of that call (the SDK's backoff cost seconds a request, and what
    # is checked here is the labels, not the retries).
    policy = parse_policy(policy_data(tmp_path, agent={"max_retries": 0}))
    slack = slack_factory(policy_=policy, claude=anthropic_stub)
    known = set(slack.bot.warden.lifecycle.core.registry.names())
    for n in range(3):
        anthropic_stub.enqueue(
            reply(propose(f"exfiltrate_{n}_<!channel>", {"x": n}, 0.99, "Trust me."))
        )
        assert slack.ws.mention(REQUESTER, CHANNEL, f"do thing {n}").status == 200
        slack.idle()
    # The planner answers the model "there is no tool called …": nothing is stored, so no
    # label value is minted (a guard: a hostile model must not grow the series).
    assert tool_labels(slack.bot.url) <= known
    stats = slack.ws.slash(ADMIN, CHANNEL, "/warden", "stats")
    assert stats.status == 200
    slack.idle()
    assert "exfiltrate" not in said_to(slack, ADMIN) + str(stats.body)


# -- counters only go up --------------------------------------------------------------------


def samples(url: str) -> dict[tuple[str, str, frozenset[tuple[str, str]]], float]:
    """(family type, sample name, labels) → value."""
    status, body = get(url + "/metrics")
    assert status == 200, body
    return {
        (family.type, s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def collector(slack: Slack) -> WardenCollector:
    """The collector behind the HTTP app's `GET /metrics`."""
    (found,) = [
        o for o in gc.get_objects() if isinstance(o, WardenCollector) and o.store is slack.store
    ]
    return found


def decreased(before: dict[Any, float], after: dict[Any, float]) -> list[Any]:
    """Counter samples (and histogram buckets) that went down or vanished between scrapes."""
    return [
        (key, value, after.get(key))
        for key, value in before.items()
        if key[0] in ("counter", "histogram") and after.get(key, 0.0) < value
    ]


def test_a_changed_vote_never_makes_a_counter_go_down(slack: Slack) -> None:
    collector(slack).ttl = 0.0  # every scrape reads the database
    action = slack.approved_run("restart web")
    ts = slack.card(action.id)["ts"]
    assert slack.ws.click(REQUESTER, CHANNEL, ts, "warden_vote_up").status == 200
    slack.idle()
    before = samples(slack.bot.url)
    assert slack.ws.click(REQUESTER, CHANNEL, ts, "warden_vote_down").status == 200
    slack.idle()
    after = samples(slack.bot.url)
    assert decreased(before, after) == []
    # The standing votes are a gauge: 0 up and 1 down now.
    up = (
        "gauge",
        "warden_feedback_votes",
        frozenset({("tool", "restart_service"), ("vote", "up")}),
    )
    down = (up[0], up[1], frozenset({("tool", "restart_service"), ("vote", "down")}))
    assert after.get(up, 0.0) == 0.0 and after[down] == 1.0


def test_an_edit_that_raises_the_tier_never_makes_a_counter_go_down(slack: Slack) -> None:
    """Counters count an action under the tier it was proposed at (`action.proposed_risk`),
    which an edit never changes; the status gauge follows the tier now."""
    collector(slack).ttl = 0.0
    action, card = slack.mention_and_card("scale api in staging")
    assert action.risk == "medium"
    before = samples(slack.bot.url)
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_edit").status == 200
    slack.idle()
    (view,) = slack.ws.open_views(APPROVER)
    prod = {"type": "static_select", "selected_option": {"value": "prod"}}
    values = {
        "arg:service": {"value": {"type": "plain_text_input", "value": "api"}},
        "arg:env": {"value": prod},
    }
    assert slack.ws.submit_view(APPROVER, view["id"], values).status == 200
    slack.idle()
    assert slack.store.get_action(action.id).risk == "critical"
    after = samples(slack.bot.url)
    assert decreased(before, after) == []
    by_status = {dict(labels)["tier"] for _, name, labels in after if name.endswith("by_status")}
    assert by_status == {"critical"}  # the gauge shows the tier now


# -- /metrics under a burst of scrapes ------------------------------------------------------


def test_scrapes_during_a_slow_read_do_not_hold_slacks_threads(
    slack: Slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/metrics` needs no signature and shares the HTTP threads with Slack's requests: while
    one scrape reads the database, the others answer from the last read at once instead of
    queueing on it (else a burst of them during a slow read leaves none for Slack's acks)."""
    assert get(slack.bot.url + "/metrics")[0] == 200  # a first read to fall back on
    collector(slack).ttl = 0.0
    reading, release = threading.Event(), threading.Event()
    read = WardenCollector.read

    def slow(self: WardenCollector) -> Any:
        reading.set()
        assert release.wait(30)
        return read(self)

    monkeypatch.setattr(WardenCollector, "read", slow)
    first = threading.Thread(target=get, args=(slack.bot.url + "/metrics",))
    first.start()
    try:
        assert reading.wait(10)
        with ThreadPoolExecutor(40) as pool:
            answers = list(
                pool.map(lambda _: get_within(slack.bot.url + "/metrics", 5.0), range(40))
            )
        assert answers == [200] * 40
        # Slack is still answered at once.
        assert slack.ws.slash(ADMIN, CHANNEL, "/warden", "help").status == 200
    finally:
        release.set()
        first.join(30)


def get_within(url: str, seconds: float) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=seconds) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None  # timed out
