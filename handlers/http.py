"""HTTP mode: one WSGI app served by waitress (a production WSGI server).

`POST /slack/events` carries events, interactivity and slash commands; `GET /healthz`
reports liveness and whether the database answers; `GET /readyz` whether the database answers
and its schema is current; `GET /metrics` is Prometheus's (`handlers/prometheus.py`).

Order on `/slack/events`, cheapest and safest first: the body is read (at most `MAX_BODY`
bytes, else 413), then Slack's signature and 5-minute timestamp window are checked on the
raw bytes before anything parses them (else 401 and one short log line that holds no body
or header content), then the envelope is parsed exactly as Bolt will parse it and checked
for the shapes Bolt's own code relies on (else 400). Only then does Bolt see the request,
so an unsigned request never reaches it, and a signed but malformed one never makes it
crash.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from bot.errors import ConfigError
from bot.lifecycle import Lifecycle
from handlers.inbox import Inbox, arrival
from handlers.prometheus import Probes
from storage.db import Database

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
MAX_BODY = 1_000_000
WAKE_PATH = "/internal/inbox"  # the front process's "requests stored" (loopback only)
MAX_DEPTH = 64  # Slack's deepest payloads (rich text in a message) nest far less
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_ADDRESS = re.compile(r"[^0-9A-Fa-f.:]")


def _respond(start: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class WardenWSGI:
    """Routes `/healthz`, `/readyz`, `/metrics` and `/slack/events`; everything else is 404.

    `signing_secret` is the Slack app's signing secret; None (Socket Mode, where Slack does
    not sign anything) leaves the signature check to Bolt alone. An empty secret is refused:
    anyone can sign with it.
    """

    def __init__(
        self,
        app: App,
        lifecycle: Lifecycle,
        *,
        signing_secret: str | None,
        inbox: Inbox | None = None,
    ) -> None:
        if signing_secret is not None and not signing_secret.strip():
            raise ConfigError("SLACK_SIGNING_SECRET is empty")
        self.slack = SlackRequestHandler(app, path="/slack/events")
        self.lifecycle = lifecycle
        self.inbox = inbox
        self.verifier = None if signing_secret is None else SignatureVerifier(signing_secret)
        self.probes = Probes(lifecycle.store, lifecycle.core.clock)

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/healthz" and method == "GET":
            try:
                paused = self.lifecycle.store.pause_state().paused
            except Exception as exc:
                log.error("health check: database unavailable: %s", exc)
                return _respond(
                    start, "503 Service Unavailable", {"ok": False, "error": "database"}
                )
            return _respond(
                start,
                "200 OK",
                {"ok": True, "paused": paused, "policy_version": self.lifecycle.policy.version},
            )
        if path in Probes.PATHS:
            return self.probes(environ, start)
        if path == WAKE_PATH and method == "POST" and self.inbox is not None:
            # The front process stored requests (handlers/front.py): take them now. Only
            # from this machine; it makes the inbox look for due entries, nothing more.
            if _address(environ) not in ("127.0.0.1", "::1"):
                return _respond(start, "404 Not Found", {"error": "not found"})
            self.inbox.wake()
            return _respond(start, "200 OK", {"ok": True})
        if path == "/slack/events":
            if method != "POST":
                return _respond(start, "405 Method Not Allowed", {"error": "use POST"})
            return self._events(environ, start)
        return _respond(start, "404 Not Found", {"error": "not found"})

    def _events(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return _respond(start, "413 Payload Too Large", {"error": "bad length"})
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if self.verifier is not None:
            refusal = unverified(
                self.verifier,
                str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""),
                str(environ.get("HTTP_X_SLACK_SIGNATURE") or ""),
                text,
            )
            if refusal:
                log.warning(
                    "refused an unverified request on /slack/events from %s: %s",
                    _address(environ),
                    refusal,
                )
                return _respond(start, "401 Unauthorized", {"error": "invalid request"})
        content_type = str(environ.get("CONTENT_TYPE") or "")
        data, problem = (
            (None, "the body is not UTF-8") if text is None else parsed(text, content_type)
        )
        if data is None or text is None:
            log.warning("refusing a malformed request on /slack/events: %s", problem)
            return _respond(start, "400 Bad Request", {"error": problem})
        entry = arrival(data, text, content_type) if self.inbox else None
        if self.inbox and entry:
            # Answered once stored; Bolt sees it right after (handlers/inbox.py).
            with Database.urgent():
                stored = self.inbox.accept(entry, data)
            if not stored:
                return _respond(start, "503 Service Unavailable", {"error": "try again"})
            start("200 OK", [("Content-Length", "0")])
            return [b""]
        try:
            # Slack is waiting: this thread's writes go before background writers.
            with self.lifecycle.store.db.urgent():
                return self.slack(environ, start)
        except Exception:
            log.exception("could not handle a request on /slack/events")
            return _respond(start, "400 Bad Request", {"error": "malformed request"})


def unverified(
    verifier: SignatureVerifier, timestamp: str, signature: str, text: str | None
) -> str | None:
    """Why a request (its X-Slack-Request-Timestamp and X-Slack-Signature headers, its body
    as text or None if not UTF-8) is not verifiably from Slack, or None. The reasons are fixed
    phrases: they go to the log, which must never hold what a sender chose."""
    # `int()` also takes " 1", "1_0" and non-ASCII digits, and is_valid() would raise on
    # anything else: only plain ASCII digits get that far.
    if not _TIMESTAMP.fullmatch(timestamp):
        return "missing or non-numeric timestamp"
    if abs(verifier.clock.now() - int(timestamp)) > 5 * 60:
        return "timestamp outside the 5-minute window"
    # hmac.compare_digest raises on non-ASCII text, so the shape is checked first.
    if not _SIGNATURE.fullmatch(signature):
        return "missing or malformed signature"
    if text is None:
        return "the body is not UTF-8"
    if not verifier.is_valid(text, timestamp, signature):
        return "bad signature"
    return None


def _address(environ: dict[str, Any]) -> str:
    return peer_address(str(environ.get("REMOTE_ADDR") or ""))


def peer_address(raw: str) -> str:
    """The peer's address, for a log line (only the characters an IP address has)."""
    return _ADDRESS.sub("", raw)[:45] or "?"


# The envelope fields Bolt (and Warden's listeners) read, by the shape they must have.
# Bolt itself accepts a string or an object for the first group; anything else breaks it.
_ID_OR_OBJECT = ("user", "team", "channel", "enterprise")
_OBJECT = (
    "event",
    "view",
    "container",
    "message",
    "previous_message",
    "item",
    "assistant_thread",
    "function_data",
    "state",
    "values",
)
_LIST_OF_OBJECTS = ("authorizations", "actions", "response_urls")
_STRING = (
    "type",
    "subtype",
    "id",
    "team_id",
    "user_id",
    "channel_id",
    "enterprise_id",
    "app_installed_team_id",
    "api_app_id",
    "event_id",
    "trigger_id",
    "response_url",
    "callback_id",
    "private_metadata",
    "command",
    "action_id",
    "block_id",
    "value",
    "ts",
    "thread_ts",
    "event_ts",
    "message_ts",
    "channel_type",
    "bot_id",
    "tab",
)
# Interactivity payloads carry these as objects, never as bare ids.
_PAYLOAD_OBJECT = ("user", "view", "team", "channel", "container", "message")


def parsed(text: str, content_type: str) -> tuple[dict[str, Any] | None, str | None]:
    """The body as Bolt parses it, or None and why it cannot be a Slack request at all.

    Only the envelope is checked — objects, lists and strings where Slack sends them — so
    Bolt's middleware and Warden's listeners never trip over a string where they expect a
    mapping; block contents are not inspected.
    """
    media = content_type.split(";")[0] or None
    try:
        data = parse_body(text, media)
    except RecursionError:
        return None, "the body is nested too deeply"
    except ValueError:
        return None, "the body is not valid JSON or form data"
    if not isinstance(data, dict):
        return None, "the body is not a JSON object"
    if _too_deep(data):
        return None, "the body is nested too deeply"
    problem = _envelope_problem(data, "body") or _kind_problem(data, text, media)
    return (None, problem) if problem else (data, None)


def _kind_problem(data: dict[str, Any], text: str, media: str | None) -> str | None:
    is_payload = "payload" in text and not (media == "application/json" or text.startswith("{"))
    kind = data.get("type")
    if is_payload:
        for key in _PAYLOAD_OBJECT:
            if data.get(key) is not None and not isinstance(data[key], dict):
                return f"payload.{key} is not an object"
    if kind == "event_callback" and not isinstance(data.get("event"), dict):
        return "event is missing"
    if kind == "block_actions" and "actions" in data and not data["actions"]:
        return "actions is empty"
    if kind in ("view_submission", "view_closed") and not isinstance(data.get("view"), dict):
        return "view is missing"
    return None


def _too_deep(data: Any) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def _envelope_problem(node: dict[str, Any], where: str) -> str | None:
    """Check `node`'s envelope fields, then the envelope objects inside it (not blocks)."""
    for key, value in node.items():
        if value is None:
            continue
        name = f"{where}.{key}"
        if key in _STRING and not isinstance(value, str):
            return f"{name} is not a string"
        if key in _ID_OR_OBJECT and not isinstance(value, str | dict):
            return f"{name} is not an id or an object"
        if key in _OBJECT and not isinstance(value, dict):
            return f"{name} is not an object"
        if key in _LIST_OF_OBJECTS and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            return f"{name} is not a list of objects"
        if key in _ID_OR_OBJECT or key in _OBJECT:
            inner = value if key != "values" and isinstance(value, dict) else None
            problem = _envelope_problem(inner, name) if inner is not None else None
        elif key in _LIST_OF_OBJECTS:
            problem = next(
                (p for item in value if (p := _envelope_problem(item, f"{name}[]"))), None
            )
        else:
            problem = None
        if problem:
            return problem
    return None


def _server_options(threads: int) -> dict[str, Any]:
    return {
        "threads": threads,
        "ident": "warden",
        "channel_timeout": 30,
        # waitress buffers a whole body (by default up to 1 GB, spilling to disk) before the
        # app sees it. Past a few times MAX_BODY it now refuses with its own 413 and stops
        # reading; between MAX_BODY and that, the app's check answers a clean 413.
        "max_request_body_size": 4 * MAX_BODY,
    }


def freeze_startup_heap() -> None:
    """What start-up built (modules, the Bolt app, the policy) lives as long as the process:
    put it out of the garbage collector's sight. A full collection otherwise walks its
    ~130,000 objects (~75 ms on an idle core, more under load), stalling every request in
    flight; afterwards it looks only at what requests create."""
    gc.collect()
    gc.freeze()


def serve(wsgi: WardenWSGI, host: str, port: int, threads: int = 32) -> None:
    """Serve until interrupted."""
    import waitress

    waitress.serve(
        wsgi, host=host, port=port, clear_untrusted_proxy_headers=True, **_server_options(threads)
    )


def make_server(wsgi: WardenWSGI, host: str, port: int, threads: int = 32) -> Any:
    """A waitress server object (for tests and `warden dev`, which run it on a thread)."""
    from waitress.server import create_server

    return create_server(wsgi, host=host, port=port, **_server_options(threads))
