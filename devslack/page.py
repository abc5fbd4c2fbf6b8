"""The Slack-like page of `warden dev`: static HTML/JS plus small JSON endpoints."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devslack.workspace import SlackError, escape_text

if TYPE_CHECKING:
    from devslack.workspace import Workspace

STATIC = Path(__file__).with_name("static")


def state(ws: Workspace, user: str) -> dict[str, Any]:
    """Everything the page shows to `user`: channels, messages, their views and home."""
    channels = [
        {"id": c, "name": n, "admin": c == ws.admin_channel}
        for c, n in ws.visible_channels(user).items()
    ]
    dm = ws.dm_channel(user)
    channels.append({"id": dm, "name": "warden (DM)", "admin": False})
    return {
        "version": ws.version,
        "boot": ws.boot,
        "user": user,
        "bot_user_id": ws.bot_user_id,
        "personas": [{"id": p.id, "name": p.name, "label": p.label} for p in ws.personas],
        "channels": channels,
        "messages": {
            str(c["id"]): ws.messages(str(c["id"]), include_ephemeral_for=user) for c in channels
        },
        "views": [v for v in ws.open_views(user)],
        "home": ws.home(user),
        "statuses": {str(c["id"]): ws.thread_statuses(str(c["id"])) for c in channels},
        "suggestions": ws.suggestions,
    }


def handle_get(ws: Workspace, path: str, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
    if path in ("/", "/index.html"):
        return 200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8"
    if path in ("/app.js", "/app.css"):
        ctype = "text/javascript" if path.endswith(".js") else "text/css"
        return 200, (STATIC / path.lstrip("/")).read_bytes(), f"{ctype}; charset=utf-8"
    if path == "/ui/state":
        user = (query.get("user") or [""])[0]
        try:
            since = int((query.get("since") or ["-1"])[0] or -1)
        except ValueError:
            since = -1
        if since >= 0:
            with contextlib.suppress(TimeoutError):
                ws.wait_until(lambda: ws.version != since, timeout=20)
        return 200, json.dumps(state(ws, user)).encode(), "application/json"
    if path == "/favicon.ico":
        return 204, b"", "image/x-icon"
    return 404, b'{"ok": false, "error": "not_found"}', "application/json"


def handle_ui(ws: Workspace, action: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The page's actions; each goes through the same delivery as the tests use."""
    user = str(data.get("user") or "")
    if not user:
        return 400, {"ok": False, "error": "user is required"}
    try:
        if action == "send":
            text = str(data.get("text") or "").strip()
            channel = str(data.get("channel") or "")
            thread_ts = data.get("thread_ts") or None
            if not text:
                return 400, {"ok": False, "error": "empty message"}
            if text.startswith("/"):
                command, _, rest = text.partition(" ")
                d = ws.slash(user, channel, command, escape_text(rest.strip()))
                reply = d.body.strip()
                if d.status == 200 and reply and not d.late:  # late: already shown
                    try:
                        body = json.loads(reply)
                        reply = body.get("text", "") if isinstance(body, dict) else reply
                    except ValueError:
                        pass
                    if reply:
                        ws.local_ephemeral(user, channel, reply)
                elif d.status != 200:
                    ws.local_ephemeral(
                        user, channel, f"/{command.lstrip('/')} failed (HTTP {d.status})"
                    )
                return 200, {"ok": True, "status": d.status}
            d2 = ws.type_message(user, channel, text, thread_ts)
            return 200, {"ok": True, "status": d2.status if d2 else None}
        if action == "click":
            d = ws.click(user, str(data["channel"]), str(data["ts"]), str(data["action_id"]))
            return 200, {"ok": True, "status": d.status}
        if action == "submit_view":
            d = ws.submit_view(user, str(data["view_id"]), data.get("values") or {})
            return 200, {"ok": True, "status": d.status}
        if action == "close_view":
            ws.close_view(user, str(data["view_id"]))
            return 200, {"ok": True}
        if action == "react":
            d = ws.react(
                user,
                str(data["channel"]),
                str(data["ts"]),
                str(data["name"]),
                remove=bool(data.get("remove")),
            )
            return 200, {"ok": True, "status": d.status}
        if action == "home":
            d = ws.open_home(user)
            return 200, {"ok": True, "status": d.status}
    except (LookupError, KeyError) as exc:
        return 400, {"ok": False, "error": str(exc)}
    except SlackError as exc:  # already_reacted, no_reaction…: as reactions.add answers
        return 200, {"ok": False, "error": exc.error}
    return 404, {"ok": False, "error": f"unknown action {action}"}
