"""Adversarial requests on /slack/events: forged, stale, malformed, oversized, hostile."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import APPROVER, REQUESTER
from tests.slack_fixtures import CHANNEL, Slack


def event_body(event_id: str, text: str = "<@U0WARDEN> restart web") -> bytes:
    return json.dumps(
        {
            "token": "x",
            "team_id": "T0TEST",
            "api_app_id": "A0",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": REQUESTER,
                "text": text,
                "ts": "1.000100",
                "channel": CHANNEL,
                "event_ts": "1.000100",
            },
        }
    ).encode()


def requests_stored(slack: Slack) -> int:
    with slack.store.db.read() as s:
        from sqlmodel import func, select

        from storage.models import Request

        return int(s.exec(select(func.count()).select_from(Request)).one())


def test_forged_signature_is_refused(slack: Slack) -> None:
    body = event_body("EvFORGED")
    headers = slack.ws.sign(body)
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    headers["Content-Type"] = "application/json"
    assert slack.ws.raw_post(body, headers).status == 401
    wrong_secret = dict(slack.ws.sign(body))
    tampered = body.replace(b"restart web", b"restart db")
    assert (
        slack.ws.raw_post(tampered, {**wrong_secret, "Content-Type": "application/json"}).status
        == 401
    )
    assert requests_stored(slack) == 0


def test_stale_timestamp_is_refused(slack: Slack) -> None:
    body = event_body("EvSTALE")
    headers = slack.ws.sign(body, ts=int(time.time()) - 6 * 60)
    headers["Content-Type"] = "application/json"
    assert slack.ws.raw_post(body, headers).status == 401
    assert requests_stored(slack) == 0


def test_missing_signature_headers(slack: Slack) -> None:
    body = event_body("EvNOSIG")
    assert slack.ws.raw_post(body, {"Content-Type": "application/json"}).status == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"payload=%7Bnot%20json",
        b"payload=" + urllib.parse.quote(json.dumps({"type": "block_actions"})).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps(
                {
                    "type": "block_actions",
                    "user": {"id": APPROVER},
                    "actions": [{"action_id": "warden_approve", "value": "nonsense"}],
                }
            )
        ).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps(
                {
                    "type": "block_actions",
                    "user": "not-a-dict",
                    "actions": [{"action_id": "warden_approve", "value": "abc:1"}],
                }
            )
        ).encode(),
        json.dumps(
            {"type": "event_callback", "event_id": "EvBROKEN", "event": {"type": "app_mention"}}
        ).encode(),
        json.dumps({"type": "event_callback", "event": "nope"}).encode(),
        b"payload="
        + urllib.parse.quote(
            json.dumps({"type": "block_actions", "user": {"id": APPROVER}, "actions": ["x"]})
        ).encode(),
        b"",
    ],
)
def test_malformed_signed_payloads_are_harmless(slack: Slack, body: bytes) -> None:
    content_type = (
        "application/x-www-form-urlencoded" if body.startswith(b"payload=") else "application/json"
    )
    headers = {**slack.ws.sign(body), "Content-Type": content_type}
    status = slack.ws.raw_post(body, headers).status
    assert status in (200, 400, 404)
    slack.idle()
    # The bot is still healthy and still accepts a real request afterwards.
    with urllib.request.urlopen(slack.bot.url + "/healthz") as resp:
        assert json.loads(resp.read())["ok"] is True
    assert slack.ws.mention(REQUESTER, CHANNEL, "restart web").status == 200
    slack.idle()
    assert slack.store.actions_with_status(["awaiting_approval"])


def test_oversized_body_is_refused(slack: Slack) -> None:
    body = b"x" * 2_000_001
    headers = {**slack.ws.sign(body), "Content-Type": "application/json"}
    assert slack.ws.raw_post(body, headers).status == 413


def test_hostile_text_is_stored_and_never_broadcast(slack: Slack) -> None:
    hostile = (
        "restart <!channel> <!here> @everyone <https://evil.example/x|click> "
        "'; DROP TABLE action; -- \u202e\x00"
    )
    assert slack.ws.mention(REQUESTER, CHANNEL, hostile).status == 200
    slack.idle()
    for call in slack.ws.calls("chat.postMessage") + slack.ws.calls("chat.update"):
        blob = json.dumps(call.params)
        assert "<!channel>" not in blob and "<!here>" not in blob
        assert "<https://evil.example" not in blob
    assert requests_stored(slack) == 1


@pytest.mark.parametrize(
    "event",
    [
        {"user": "U" + "X" * 60},
        {"channel": "C" + "9" * 60},
        {"ts": "not-a-ts"},
        {"thread_ts": "1" * 80},
        {"user": "u0lower"},
    ],
)
def test_odd_ids_are_ignored_harmlessly(slack: Slack, event: dict[str, str]) -> None:
    """Over-long or odd ids get a logged, harmless ack on both databases, never a 500."""
    body = {
        "type": "event_callback",
        "team_id": "T0TEST",
        "api_app_id": "A0WARDEN",
        "event_id": "Ev0ODD" + str(abs(hash(json.dumps(event))) % 10**8),
        "event_time": 1,
        "event": {
            "type": "app_mention",
            "user": REQUESTER,
            "channel": CHANNEL,
            "ts": "1700000000.000100",
            "text": "<@U0WARDEN> restart web",
            **event,
        },
    }
    raw = json.dumps(body).encode()
    delivery = slack.ws.raw_post(raw, {"content-type": "application/json", **slack.ws.sign(raw)})
    assert delivery.status == 200
    slack.idle()
    assert requests_stored(slack) == 0


def test_healthz(slack: Slack) -> None:
    with urllib.request.urlopen(slack.bot.url + "/healthz") as resp:
        body = json.loads(resp.read())
    assert body["ok"] is True and body["paused"] is False
    assert body["policy_version"] == slack.bot.warden.policy.version
