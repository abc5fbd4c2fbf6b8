"""HTTP mode: one WSGI app served by waitress (a production WSGI server).

`POST /slack/events` carries events, interactivity and slash commands (Bolt verifies the
signature and the 5-minute timestamp window); `GET /healthz` reports liveness and whether
the database answers. A body Bolt cannot parse gets a 400, never a crash.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.lifecycle import Lifecycle

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
MAX_BODY = 1_000_000


def _respond(start: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class WardenWSGI:
    """Routes `/healthz` and `/slack/events`; everything else is 404."""

    def __init__(self, app: App, lifecycle: Lifecycle) -> None:
        self.slack = SlackRequestHandler(app, path="/slack/events")
        self.lifecycle = lifecycle

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
        if path == "/slack/events":
            if method != "POST":
                return _respond(start, "405 Method Not Allowed", {"error": "use POST"})
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                return _respond(start, "413 Payload Too Large", {"error": "bad length"})
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            problem = shape_problem(body, str(environ.get("CONTENT_TYPE") or ""))
            if problem:
                log.warning("refusing a malformed request on /slack/events: %s", problem)
                return _respond(start, "400 Bad Request", {"error": problem})
            try:
                return self.slack(environ, start)
            except Exception:
                log.exception("could not handle a request on /slack/events")
                return _respond(start, "400 Bad Request", {"error": "malformed request"})
        return _respond(start, "404 Not Found", {"error": "not found"})


def shape_problem(body: bytes, content_type: str) -> str | None:
    """Why a body cannot be a Slack request at all (checked before Bolt sees it), or None.

    Only the envelope is checked — JSON objects where Slack sends objects — so Bolt's own
    middleware never trips over a string where it expects a mapping.
    """
    try:
        if content_type.startswith("application/json"):
            data = json.loads(body or b"null")
            if not isinstance(data, dict):
                return "the body is not a JSON object"
            if "event" in data and not isinstance(data["event"], dict):
                return "event is not an object"
            return None
        fields = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
    except (ValueError, UnicodeDecodeError):
        return "the body is not valid JSON or form data"
    if "payload" in fields:
        try:
            payload = json.loads(fields["payload"][0])
        except ValueError:
            return "payload is not JSON"
        if not isinstance(payload, dict):
            return "payload is not an object"
        for key in ("user", "view", "team", "channel", "container", "message"):
            if key in payload and payload[key] is not None and not isinstance(payload[key], dict):
                return f"payload.{key} is not an object"
        if "actions" in payload:
            actions = payload["actions"]
            if not isinstance(actions, list) or not all(
                isinstance(a, dict) and isinstance(a.get("action_id", ""), str) for a in actions
            ):
                return "payload.actions is not a list of objects"
    return None


def serve(wsgi: WardenWSGI, host: str, port: int, threads: int = 32) -> None:
    """Serve until interrupted."""
    import waitress

    waitress.serve(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="warden",
        clear_untrusted_proxy_headers=True,
        channel_timeout=30,
    )


def make_server(wsgi: WardenWSGI, host: str, port: int, threads: int = 32) -> Any:
    """A waitress server object (for tests and `warden dev`, which run it on a thread)."""
    from waitress.server import create_server

    return create_server(
        wsgi, host=host, port=port, threads=threads, ident="warden", channel_timeout=30
    )
