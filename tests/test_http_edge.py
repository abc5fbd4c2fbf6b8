"""Signed but odd payloads on /slack/events: a 400 or a harmless ack, never a 500 or a logged
traceback, and nothing already stored is lost.

Every case starts from a real card (a mention that created an action awaiting approval), sends
one correctly signed request whose envelope Slack would never send, and then checks the answer,
the log and that the stored request and action are exactly as before.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import APPROVER, REQUESTER
from tests.slack_fixtures import CHANNEL, Slack
from tests.test_http_security import requests_stored

JSON = dict[str, Any]
Mutation = Callable[[JSON], None]


def form(payload: JSON) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def send(slack: Slack, body: bytes, content_type: str) -> int:
    headers = {**slack.ws.sign(body), "Content-Type": content_type}
    return slack.ws.raw_post(body, headers).status


def button_ids(card: JSON) -> dict[str, str]:
    """{button text: action_id} for a card's buttons."""
    out: dict[str, str] = {}
    for block in card.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                out[element["text"]["text"]] = element["action_id"]
    return out


def state(slack: Slack, action_id: str) -> tuple[Any, ...]:
    """What must survive an odd request unchanged."""
    action = slack.store.get_action(action_id)
    assert action is not None
    card = slack.card(action_id)
    return requests_stored(slack), action.status, action.revision, json.dumps(card["blocks"])


def assert_harmless(
    slack: Slack, caplog: pytest.LogCaptureFixture, action_id: str, before: tuple[Any, ...]
) -> None:
    slack.idle()
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [f"{r.name}: {r.getMessage()}" for r in bad]
    assert state(slack, action_id) == before
    with urllib.request.urlopen(slack.bot.url + "/healthz") as resp:
        assert json.loads(resp.read())["ok"] is True


def run_cases(
    slack: Slack,
    caplog: pytest.LogCaptureFixture,
    action_id: str,
    cases: dict[str, Callable[[], int]],
    expected: tuple[int, ...],
) -> None:
    """Send every case to one bot; collect what went wrong per case and assert none did."""
    before = state(slack, action_id)
    caplog.set_level(logging.INFO)
    failures: dict[str, str] = {}
    for name, case in cases.items():
        caplog.clear()
        status = case()
        try:
            assert status in expected, f"status {status}"
            assert_harmless(slack, caplog, action_id, before)
        except AssertionError as exc:
            failures[name] = str(exc).splitlines()[0][:300]
    assert failures == {}


def event_envelope(slack: Slack) -> JSON:
    """An app_mention event_callback exactly as the workspace sends one."""
    return {
        "token": "verification-token-unused",
        "team_id": slack.ws.team_id,
        "api_app_id": slack.ws.app_id,
        "event": {
            "type": "app_mention",
            "user": REQUESTER,
            "text": "<@U0WARDEN> restart db",
            "ts": f"{time.time():.6f}",
            "channel": CHANNEL,
            "event_ts": f"{time.time():.6f}",
        },
        "type": "event_callback",
        "event_id": "Ev0EDGE" + str(time.monotonic_ns())[-8:],
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": slack.ws.team_id,
                "user_id": slack.ws.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def click_payload(slack: Slack, card: JSON, action_id: str) -> JSON:
    """A block_actions payload for a card button, as the workspace sends one."""
    value = next(
        e["value"]
        for b in card["blocks"]
        for e in b.get("elements") or []
        if e.get("action_id") == action_id
    )
    return {
        "type": "block_actions",
        "user": {"id": APPROVER, "username": "avery", "name": "avery", "team_id": "T0TEST"},
        "api_app_id": slack.ws.app_id,
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": card["ts"],
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(time.time())}.edge",
        "team": {"id": "T0TEST", "domain": "warden-dev"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "general"},
        "message": card,
        "state": {"values": {}},
        "response_url": "https://hooks.slack.invalid/actions/edge",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": "x"},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def open_reject_view(slack: Slack, card: JSON) -> JSON:
    """Open the reject modal for real and return it as a view_submission would carry it."""
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], button_ids(card)["Reject"]).status == 200
    slack.idle()
    view = slack.ws.wait_until(lambda: next(iter(slack.ws.open_views(APPROVER)), None))
    sent = {k: v for k, v in view.items() if k not in ("user", "open", "errors")}
    sent["state"] = {"values": {"reason": {"value": {"type": "plain_text_input", "value": "no"}}}}
    return sent


def view_payload(slack: Slack, view: JSON) -> JSON:
    return {
        "type": "view_submission",
        "team": {"id": "T0TEST", "domain": "warden-dev"},
        "user": {"id": APPROVER, "username": "avery", "name": "avery", "team_id": "T0TEST"},
        "api_app_id": slack.ws.app_id,
        "token": "verification-token-unused",
        "trigger_id": f"{int(time.time())}.edge",
        "view": copy.deepcopy(view),
        "response_urls": [],
        "is_enterprise_install": False,
    }


def setter(*path: str | int, value: Any) -> Mutation:
    def mutate(data: JSON) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def deleter(key: str) -> Mutation:
    return lambda data: data.pop(key)


# -- events API envelopes ------------------------------------------------------------------------

EVENT_CASES: dict[str, Mutation] = {
    "authorizations-string": setter("authorizations", value="T0TEST"),
    "authorizations-list-of-strings": setter("authorizations", value=["id"]),
    "authorizations-team_id-list": setter("authorizations", 0, "team_id", value=["T0"]),
    "event-list": setter("event", value=[{"type": "app_mention"}]),
    "event-string": setter("event", value="app_mention"),
    "event-missing": deleter("event"),
    "event-type-list": setter("event", "type", value=["app_mention"]),
    "event-channel-list": setter("event", "channel", value=["id"]),
    "event-user-list": setter("event", "user", value=["id"]),
    "event-user-object-with-number-id": setter("event", "user", value={"id": 5}),
    "event-ts-number": setter("event", "ts", value=1.5),
    "enterprise-list": setter("enterprise", value=["id"]),
    "team-number": setter("team", value=7),
    "team_id-number": setter("team_id", value=7),
    "event_id-object": setter("event_id", value={"id": "Ev1"}),
    "response_urls-string": setter("response_urls", value="https://x"),
    "type-list": setter("type", value=["event_callback"]),
}


def test_odd_event_envelopes_are_a_400(slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    action, _ = slack.mention_and_card("restart web")

    def case(mutate: Mutation) -> Callable[[], int]:
        def run() -> int:
            body = event_envelope(slack)
            mutate(body)
            return send(slack, json.dumps(body).encode(), "application/json")

        return run

    cases = {name: case(mutate) for name, mutate in EVENT_CASES.items()}
    run_cases(slack, caplog, action.id, cases, (400,))


# -- interactivity payloads: block_actions ------------------------------------------------------

CLICK_CASES: dict[str, Mutation] = {
    "actions-empty": setter("actions", value=[]),
    "actions-string": setter("actions", value="warden_approve"),
    "actions-non-dict": setter("actions", value=["warden_approve"]),
    "actions-number": setter("actions", value=[5]),
    "actions-null-item": setter("actions", value=[None]),
    "actions-mixed": lambda p: p["actions"].append(7),
    "action_id-number": setter("actions", 0, "action_id", value=5),
    "action-value-number": setter("actions", 0, "value", value=5),
    "action-value-object": setter("actions", 0, "value", value={"v": 1}),
    "team-string": setter("team", value="T0TEST"),
    "user-string": setter("user", value=APPROVER),
    "user-list": setter("user", value=["id"]),
    "user-id-number": setter("user", "id", value=5),
    "view-string": setter("view", value="V0"),
    "channel-string": setter("channel", value=CHANNEL),
    "channel-list": setter("channel", value=["id"]),
    "container-string": setter("container", value="message"),
    "message-string": setter("message", value="hello"),
    "enterprise-list": setter("enterprise", value=["id"]),
    "trigger_id-number": setter("trigger_id", value=12345),
    "response_url-number": setter("response_url", value=5),
    "state-list": setter("state", value=[]),
    "state-values-list": setter("state", "values", value=[]),
    "authorizations-string": setter("authorizations", value="x"),
}


def test_odd_block_actions_are_a_400(slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    action, card = slack.mention_and_card("restart web")

    def case(mutate: Mutation) -> Callable[[], int]:
        def run() -> int:
            payload = click_payload(slack, card, button_ids(card)["Approve"])
            mutate(payload)
            return send(slack, form(payload), "application/x-www-form-urlencoded")

        return run

    cases = {name: case(mutate) for name, mutate in CLICK_CASES.items()}
    run_cases(slack, caplog, action.id, cases, (400,))


def test_a_json_body_sent_as_form_data_is_checked_as_bolt_reads_it(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt parses any body starting with `{` as JSON, whatever its Content-Type says."""
    action, _ = slack.mention_and_card("restart web")
    before = state(slack, action.id)
    caplog.set_level(logging.INFO)
    body = event_envelope(slack)
    body["authorizations"] = "x"
    assert send(slack, json.dumps(body).encode(), "application/x-www-form-urlencoded") == 400
    assert_harmless(slack, caplog, action.id, before)


def test_a_repeated_payload_field_is_checked_as_bolt_reads_it(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    """With two `payload` fields Bolt uses the last one, so that is the one checked."""
    action, card = slack.mention_and_card("restart web")
    before = state(slack, action.id)
    caplog.set_level(logging.INFO)
    good = click_payload(slack, card, button_ids(card)["Approve"])
    good["actions"][0]["value"] = "nonsense"  # a valid shape that changes nothing
    bad = dict(good, actions=[])
    body = form(good) + b"&" + form(bad)
    assert send(slack, body, "application/x-www-form-urlencoded") == 400
    assert_harmless(slack, caplog, action.id, before)


# -- interactivity payloads: view_submission ----------------------------------------------------

VIEW_CASES: dict[str, Mutation] = {
    "state-values-list": setter("view", "state", "values", value=[]),
    "state-values-string": setter("view", "state", "values", value="reason"),
    "state-string": setter("view", "state", value="x"),
    "private_metadata-number": setter("view", "private_metadata", value=12345),
    "private_metadata-list": setter("view", "private_metadata", value=["a", 1, "C"]),
    "callback_id-number": setter("view", "callback_id", value=5),
    "view-id-number": setter("view", "id", value=5),
    "view-string": setter("view", value="warden_reject"),
    "view-list": setter("view", value=[]),
    "view-missing": deleter("view"),
    "team-string": setter("team", value="T0TEST"),
    "user-string": setter("user", value=APPROVER),
    "trigger_id-number": setter("trigger_id", value=12345),
    "response_urls-string": setter("response_urls", value="https://x"),
    "response_urls-of-numbers": setter("response_urls", value=[5]),
}


def test_odd_view_submissions_are_a_400(slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    action, card = slack.mention_and_card("restart web")
    view = open_reject_view(slack, card)

    def case(mutate: Mutation) -> Callable[[], int]:
        def run() -> int:
            payload = view_payload(slack, view)
            mutate(payload)
            return send(slack, form(payload), "application/x-www-form-urlencoded")

        return run

    cases = {name: case(mutate) for name, mutate in VIEW_CASES.items()}
    run_cases(slack, caplog, action.id, cases, (400,))


# -- well-formed envelopes with odd values: a harmless ack --------------------------------------


def odd_values(action_id: str) -> dict[str, str]:
    return {
        "superscript-two": f"{action_id}:²",
        "5000-digits": f"{action_id}:" + "9" * 5000,
        "negative": f"{action_id}:-1",
        "no-revision": f"{action_id}:",
        "no-action": ":1",
        "long-action": "x" * 40 + ":1",
        "two-colons": f"{action_id}:1:2",
        "empty": "",
        "spaces": f"{action_id}: 1",
        "plus": f"{action_id}:+1",
        "underscore": f"{action_id}:1_0",
    }


def test_odd_button_values_are_a_harmless_ack(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    """E.g. a revision of `²`: `"²".isdigit()` is True, but int("²") fails."""
    action, card = slack.mention_and_card("restart web")

    def case(button: str, value: str) -> Callable[[], int]:
        def run() -> int:
            action_id = button_ids(card)[button]
            status = slack.ws.click(APPROVER, CHANNEL, card["ts"], action_id, value).status
            slack.idle()
            return 0 if slack.ws.open_views(APPROVER) else status  # no modal may open

        return run

    cases = {
        f"{button}:{name}": case(button, value)
        for name, value in odd_values(action.id).items()
        for button in ("Approve", "Reject", "Edit")
    }
    run_cases(slack, caplog, action.id, cases, (200,))


def test_odd_private_metadata_is_a_harmless_ack(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    action, card = slack.mention_and_card("restart web")
    view = open_reject_view(slack, card)

    def case(odd: str) -> Callable[[], int]:
        def run() -> int:
            payload = view_payload(slack, view)
            payload["view"]["private_metadata"] = f"{odd}:{CHANNEL}" if odd else odd
            return send(slack, form(payload), "application/x-www-form-urlencoded")

        return run

    names = ("superscript-two", "5000-digits", "negative", "two-colons", "empty", "spaces")
    cases = {name: case(odd_values(action.id)[name]) for name in names}
    run_cases(slack, caplog, action.id, cases, (200, 400))


def test_a_real_click_and_submission_still_work_after_odd_ones(slack: Slack) -> None:
    """The guard refuses shapes, not Slack: the unmodified payloads still reject the action."""
    action, card = slack.mention_and_card("restart web")
    view = open_reject_view(slack, card)
    for case in ("actions-empty", "trigger_id-number"):
        payload = click_payload(slack, card, button_ids(card)["Approve"])
        CLICK_CASES[case](payload)
        assert send(slack, form(payload), "application/x-www-form-urlencoded") == 400
    assert send(slack, form(view_payload(slack, view)), "application/x-www-form-urlencoded") == 200
    slack.idle()
    rejected = slack.store.get_action(action.id)
    assert rejected is not None and rejected.status == "rejected"
