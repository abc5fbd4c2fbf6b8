"""Adversarial requests on /slack/events: forged, stale, malformed, oversized, hostile."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse
import urllib.request
from typing import Any

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


# -- the signature is checked first, on the raw bytes ------------------------------------------


def count_dispatches(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the requests that reach Bolt (`App.dispatch`); the list's length is the count."""
    calls: list[int] = []
    real = slack.bot.app.dispatch

    def counting(req: Any) -> Any:
        calls.append(1)
        return real(req)

    monkeypatch.setattr(slack.bot.app, "dispatch", counting)
    return calls


def post(
    slack: Slack, body: bytes, headers: dict[str, str], ctype: str = "application/json"
) -> int:
    return slack.ws.raw_post(body, {"Content-Type": ctype, **headers}).status


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_unsigned_flood_logs_one_short_line_each_and_no_body(
    slack: Slack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    marker = "SECRETBODYTEXT"
    now = str(int(time.time()))
    variants: list[dict[str, str]] = [
        {},  # no signature headers at all
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + marker},
        {"X-Slack-Request-Timestamp": "abc" + marker, "X-Slack-Signature": "v0=" + "1" * 64},
    ]
    caplog.set_level(logging.INFO)
    caplog.clear()
    n = 200
    for i in range(n):
        body = event_body(f"EvFLOOD{i}", text=(marker + " ") * 1400)
        assert len(body) > 20_000
        assert post(slack, body, variants[i % len(variants)]) == 401
    records = list(caplog.records)
    refusals = [r for r in records if r.name == "handlers.http"]
    assert len(refusals) == n
    for record in records:
        message = record.getMessage()
        assert marker not in message and "restart web" not in message
        assert "\n" not in message and record.exc_info is None
    for record in refusals:
        assert record.levelno == logging.WARNING
        assert len(record.getMessage()) < 160
    assert not [r for r in records if r.name.startswith("slack_bolt")]
    assert sum(len(r.getMessage()) for r in records) < n * 160
    assert dispatched == []
    assert requests_stored(slack) == 0


def test_newlines_in_an_unsigned_body_cannot_forge_a_log_line(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "2025-01-01 00:00:00 CRITICAL warden: FORGED approval by U0ADMIN"
    bodies = [
        (b'{"type": "event_callback"}\n' + forged.encode() + b"\n", {}),
        (b"payload=%7B%7D%0A" + urllib.parse.quote(forged).encode(), {}),
        (("\r\n" + forged + "\r\n").encode(), {"X-Slack-Signature": "v0=" + "0" * 64}),
    ]
    caplog.set_level(logging.DEBUG)
    for body, extra in bodies:
        headers = {"X-Slack-Request-Timestamp": str(int(time.time())), **extra}
        assert post(slack, body, headers) == 401
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    lines = [ln for r in caplog.records for ln in formatter.format(r).splitlines()]
    assert lines
    assert not [ln for ln in lines if "FORGED" in ln or ln.startswith("2025-01-01")]


def test_deeply_nested_body_is_a_400_when_signed_and_a_401_when_not(
    slack: Slack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    caplog.set_level(logging.INFO)
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 30_000 + b"1" + b"}" * 30_000
    deep_form = b"payload=" + b"%5B" * 60_000 + b"%5D" * 60_000
    # Parses, but nests deeper than any Slack payload does (Bolt would parse it again).
    over_the_limit = json.dumps(
        {
            "type": "event_callback",
            "event": {"type": "app_mention", "x": json.loads("[" * 80 + "]" * 80)},
        }
    ).encode()
    for body, ctype in [
        (deep, "application/json"),
        (deep_object, "application/json"),
        (deep_object, "application/x-www-form-urlencoded"),  # Bolt parses "{…" as JSON anyway
        (deep_form, "application/x-www-form-urlencoded"),
        (over_the_limit, "application/json"),
    ]:
        assert post(slack, body, {}, ctype) == 401
        assert post(slack, body, slack.ws.sign(body), ctype) == 400
    assert dispatched == []
    assert tracebacks(caplog) == []
    assert not [r for r in caplog.records if "Recursion" in r.getMessage()]
    assert slack.ws.mention(REQUESTER, CHANNEL, "restart web").status == 200


ODD_TIMESTAMPS = ["abc", "", " 1", "1e9", "-1", "1_700_000_000", "²", "٣٣", "9" * 5000, "0x10"]
ODD_SIGNATURES = [
    "",
    "v0=",
    "v1=" + "0" * 64,
    "v0=" + "A" * 64,
    "v0=" + "0" * 63,
    "v0=é" + "0" * 62,
]


def latin1(value: str) -> str:
    """A header value as http.client can send it (latin-1 only): the UTF-8 bytes of `value`."""
    return value.encode().decode("latin-1")


def test_odd_timestamps_and_signatures_are_a_401(
    slack: Slack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    caplog.set_level(logging.INFO)
    body = event_body("EvODD")
    now = int(time.time())
    cases: dict[str, dict[str, str]] = {}
    for ts in ODD_TIMESTAMPS:  # the signature is right for the body, the timestamp is not
        cases[f"timestamp {ts[:12]!r}"] = {**slack.ws.sign(body), "X-Slack-Request-Timestamp": ts}
    for skew in (-6 * 60, -310, 310, 6 * 60, -(10**9), 10**11):  # correctly signed, but stale
        cases[f"skew {skew}"] = slack.ws.sign(body, ts=now + skew)
    for sig in ODD_SIGNATURES:
        cases[f"signature {sig[:8]!r}"] = {**slack.ws.sign(body), "X-Slack-Signature": sig}
    statuses = {
        name: post(slack, body, {k: latin1(v) for k, v in headers.items()})
        for name, headers in cases.items()
    }
    assert {name: s for name, s in statuses.items() if s != 401} == {}
    assert tracebacks(caplog) == []
    assert dispatched == []
    assert requests_stored(slack) == 0


def test_non_utf8_body_is_refused(slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = b'{"type": "event_callback", "x": "\xff\xfe"}'
    assert post(slack, body, {}) == 401
    assert post(slack, body, slack.ws.sign(body)) in (400, 401)
    assert tracebacks(caplog) == []


def test_a_correctly_signed_request_still_works(
    slack: Slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    action, card = slack.mention_and_card("restart web")
    assert action.status == "awaiting_approval" and card["ts"]
    assert len(dispatched) == 1
    # The raw route too: the exact bytes that were signed, with a charset in the type.
    body = event_body("EvRAWOK")
    headers = {**slack.ws.sign(body), "Content-Type": "application/json; charset=utf-8"}
    assert slack.ws.raw_post(body, headers).status == 200
    slack.idle()
    assert len(dispatched) == 2
    assert requests_stored(slack) == 2


def test_unsigned_requests_never_reach_bolt(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    body = event_body("EvUNSIGNED")
    form = b"payload=" + urllib.parse.quote(json.dumps({"type": "block_actions"})).encode()
    other = slack.ws.sign(b"some other body")
    for raw, headers, ctype in [
        (body, {}, "application/json"),
        (body, other, "application/json"),
        (form, other, "application/x-www-form-urlencoded"),
        (b"", {}, "application/json"),
        (b"command=%2Fpause&user_id=U0ADMIN", {}, "application/x-www-form-urlencoded"),
        (json.dumps({"type": "url_verification", "challenge": "x"}).encode(), {}, "text/plain"),
        (json.dumps({"type": "ssl_check"}).encode(), {}, "application/json"),
    ]:
        assert post(slack, raw, headers, ctype) == 401
    assert dispatched == []
    assert requests_stored(slack) == 0
    assert not slack.store.pause_state().paused


def test_oversized_body_is_a_413_before_the_signature_or_bolt(
    slack: Slack, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched = count_dispatches(slack, monkeypatch)
    caplog.set_level(logging.INFO)
    big = b'{"type": "event_callback", "x": "' + b"x" * 1_000_001 + b'"}'
    assert post(slack, big, {}) == 413
    assert post(slack, big, slack.ws.sign(big)) == 413
    assert dispatched == []
    assert not [r for r in caplog.records if "signature" in r.getMessage()]
    # Chunked bodies are counted as they arrive, too.
    host, port = slack.bot.http.server.effective_host, slack.bot.http.port
    assert chunked_post(str(host), int(port), b"x" * 1_200_000) == 413
    # A huge declared length is refused at once, without waiting for (or buffering) a body.
    started = time.monotonic()
    assert claimed_length(str(host), int(port), 50_000_000) == 413
    assert time.monotonic() - started < 5
    assert dispatched == []


def claimed_length(host: str, port: int, length: int) -> int:
    """Send only headers that declare a `length`-byte body; the status that comes back."""
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return 0  # the server is still waiting for (and would buffer) the body
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def chunked_post(host: str, port: int, body: bytes) -> int:
    """POST `body` with Transfer-Encoding: chunked; the status, or 0 if none came back."""
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(head)
            for i in range(0, len(body), 65536):
                piece = body[i : i + 65536]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has refused the body
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return 0
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def test_an_empty_signing_secret_is_refused_at_start(slack: Slack) -> None:
    """Anyone can sign with an empty secret, so HTTP mode will not start with one."""
    from bot.errors import ConfigError
    from handlers.http import WardenWSGI

    for secret in ("", "  "):
        with pytest.raises(ConfigError):
            WardenWSGI(slack.bot.app, slack.bot.warden.lifecycle, signing_secret=secret)
