"""A local Slack-compatible workspace: Web API stand-in, signed delivery, and state.

One HTTP server on 127.0.0.1 plays Slack for Warden: it answers the Web API methods Warden
calls (under `/api/<method>`, as slack-sdk addresses them via `SLACK_API_URL`), keeps the
channels, threads, ephemeral messages, modals and App Home views that result, and delivers
events, clicks, slash commands and view submissions to the bot signed exactly as Slack signs
them. Tests use it as their fake Slack; `warden dev` serves a Slack-like page on top of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class Persona:
    """A demo user of the workspace."""

    id: str
    name: str
    label: str


@dataclass
class Call:
    """One Web API call Warden made."""

    method: str
    params: JSON
    at: float
    response: JSON = field(default_factory=dict)


@dataclass
class Delivery:
    """What the bot answered to one delivered request."""

    status: int
    body: str
    raw: bytes
    headers: dict[str, str]
    event_id: str | None = None
    late: bool = False  # a slash command's answer that came through its response_url

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackError(Exception):
    """A Web API error answer (`ok: false`)."""

    def __init__(
        self,
        error: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        extra: JSON | None = None,
    ):
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the answer, e.g. conversations.invite's `errors`


MAX_BLOCKS_MESSAGE, MAX_BLOCKS_VIEW = 50, 100


def check_blocks(blocks: Any, limit: int) -> None:
    """Reject what Slack rejects (enough of it to catch Block Kit bugs)."""
    if blocks is None:
        return
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > limit:
        raise SlackError("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            raise SlackError("invalid_blocks")
        text = block.get("text")
        if (
            block["type"] == "section"
            and isinstance(text, dict)
            and len(str(text.get("text", ""))) > 3000
        ):
            raise SlackError("invalid_blocks")
        if (
            block["type"] == "header"
            and isinstance(text, dict)
            and len(str(text.get("text", ""))) > 150
        ):
            raise SlackError("invalid_blocks")
        for f in block.get("fields") or []:
            if len(str(f.get("text", ""))) > 2000:
                raise SlackError("invalid_blocks")
        for element in block.get("elements") or []:
            if not isinstance(element, dict):
                raise SlackError("invalid_blocks")
            if len(str(element.get("value", ""))) > 2000:
                raise SlackError("invalid_blocks")
            if len(str(element.get("action_id", ""))) > 255:
                raise SlackError("invalid_blocks")
        if len(str(block.get("block_id", ""))) > 255:
            raise SlackError("invalid_blocks")


class Workspace:
    """The local workspace. Thread-safe; every mutation wakes `wait_until` waiters."""

    def __init__(
        self,
        *,
        signing_secret: str,
        bot_url: str,
        bot_token: str,
        team_id: str = "T0WARDEN",
        bot_user_id: str = "U0WARDEN",
        personas: Iterable[Persona] = (),
        channels: dict[str, str] | None = None,
        suggestions: Iterable[str] = (),
        app_id: str = "A0WARDEN",
        admin_channel: str | None = None,
        usergroups: dict[str, list[str]] | None = None,
    ) -> None:
        self.signing_secret = signing_secret
        self.bot_url = bot_url
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.app_id = app_id
        self.personas = list(personas)
        self.channels = dict(channels or {"C0GENERAL": "general"})
        self.suggestions = list(suggestions)
        self.admin_channel = admin_channel
        # User groups (`S…` → members), as usergroups.users.list answers; a test may change
        # them while Warden runs (Warden caches them for a while).
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._messages: dict[str, list[JSON]] = {}
        self._views: dict[str, JSON] = {}
        self._homes: dict[str, JSON] = {}
        self._triggers: dict[str, tuple[str, float]] = {}
        self._response_urls: dict[str, JSON] = {}
        self._faults: dict[str, list[tuple[int, int, bool]]] = {}
        self._statuses: list[JSON] = []
        self._thread_status: dict[tuple[str, str], tuple[str, float]] = {}
        # Channels' state beyond their names (privacy, archived, topic, purpose, creator) and
        # their members; a channel named at construction (or added to `channels` directly)
        # is public with everyone in it, Warden included, until something changes it.
        self._channel_state: dict[str, JSON] = {}
        self._members: dict[str, set[str]] = {}
        self._clock = itertools.count(1)
        self._ts_base = int(time.time())
        self.version = 0
        self.boot = secrets.token_hex(4)  # tells the page a restarted workspace from a stale one
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1 (port 0: any free port) in a background thread."""
        from devslack.http import make_handler

        server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, name="devslack", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    # -- helpers ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self.version += 1
        self._cond.notify_all()

    def _new_ts(self) -> str:
        return f"{self._ts_base}.{next(self._clock):06d}"

    def persona(self, user: str) -> Persona:
        for p in self.personas:
            if p.id == user:
                return p
        return Persona(id=user, name=user.lower(), label=user)

    def dm_channel(self, user: str) -> str:
        return "D" + user[1:]

    def channel_name(self, channel: str) -> str:
        if channel.startswith("D"):
            return "directmessage"
        return self.channels.get(channel, channel.lower())

    # -- inspection (for tests and the page) ----------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_until(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Block until `fn()` is truthy (re-checked on every change); return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = fn()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s")
                self._cond.wait(remaining)

    def wait_for(self, what: str | Callable[[Call], bool], timeout: float = 10.0) -> Call:
        """Wait for a Web API call by method name or predicate; return the first match."""
        match: Callable[[Call], bool] = (
            (lambda c: c.method == what) if isinstance(what, str) else what
        )
        found: Call = self.wait_until(
            lambda: next((c for c in self._calls if match(c)), None), timeout
        )
        return found

    def messages(self, channel: str, include_ephemeral_for: str | None = None) -> list[JSON]:
        with self._cond:
            return [
                dict(m)
                for m in self._messages.get(channel, [])
                if m.get("ephemeral_to") in (None, include_ephemeral_for)
            ]

    def message(self, channel: str, ts: str) -> JSON | None:
        with self._cond:
            for m in self._messages.get(channel, []):
                if m["ts"] == ts:
                    return dict(m)
        return None

    def home(self, user: str) -> JSON | None:
        with self._cond:
            return self._homes.get(user)

    def open_views(self, user: str) -> list[JSON]:
        with self._cond:
            return [dict(v) for v in self._views.values() if v["user"] == user and v["open"]]

    def views(self, user: str) -> list[JSON]:
        with self._cond:
            return [dict(v) for v in self._views.values() if v["user"] == user]

    def statuses(self) -> list[JSON]:
        with self._cond:
            return list(self._statuses)

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        after: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` fail (429 with Retry-After, or a 5xx).
        With `after`, each call takes effect first and only its answer is the failure: a
        post that reached the channel but whose answer was lost on the way back."""
        with self._cond:
            self._faults.setdefault(method, []).extend([(status, retry_after, after)] * times)

    # -- the Web API -----------------------------------------------------------------------

    def api(self, method: str, params: JSON, token: str | None) -> tuple[int, JSON, dict[str, str]]:
        """Handle one Web API call; returns (HTTP status, body, extra headers)."""
        with self._cond:
            faults = self._faults.get(method)
            if faults:
                status, retry_after, after = faults.pop(0)
                response: JSON = {"ok": False, "error": f"fault {status}"}
                if after:  # what the call did, though its caller never hears it
                    response["done"] = self._handle(method, params, token)
                call = Call(method=method, params=params, at=time.time(), response=response)
                self._calls.append(call)
                self._changed()
                if status == 429:
                    return (
                        429,
                        {"ok": False, "error": "ratelimited"},
                        {"Retry-After": str(retry_after)},
                    )
                return status, {"ok": False, "error": "internal_error"}, {}
            call = Call(method=method, params=params, at=time.time())
            self._calls.append(call)
            call.response = self._handle(method, params, token)
            self._changed()
            return 200, call.response, {}

    def _handle(self, method: str, params: JSON, token: str | None) -> JSON:
        """What a Web API method answers (its `ok: false` refusals included)."""
        try:
            if not token:
                raise SlackError("not_authed")
            if token != self.bot_token:
                raise SlackError("invalid_auth")
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method")
            body: JSON = {"ok": True, **handler(params)}
        except SlackError as exc:
            body = {"ok": False, "error": exc.error, **exc.extra}
        return body

    def _channel(self, params: JSON, key: str = "channel") -> str:
        channel = str(params.get(key) or "")
        if not channel:
            raise SlackError("channel_not_found")
        if channel.startswith("U") or channel.startswith("W"):
            channel = self.dm_channel(channel)
        if not (channel in self.channels or channel.startswith("D")):
            raise SlackError("channel_not_found")
        return channel

    def _find(self, channel: str, ts: str) -> JSON:
        """A message the Web API can address (ephemeral messages are not addressable)."""
        for m in self._messages.get(channel, []):
            if m["ts"] == ts and not m.get("ephemeral_to"):
                return m
        raise SlackError("message_not_found")

    def _store_message(
        self, channel: str, user: str, text: str, blocks: Any, thread_ts: str | None, **extra: Any
    ) -> JSON:
        msg: JSON = {
            "type": "message",
            "ts": self._new_ts(),
            "user": user,
            "text": text,
            "blocks": blocks or [],
            "channel": channel,
            "reactions": [],
            **extra,
        }
        if thread_ts:
            msg["thread_ts"] = thread_ts
            parent = next(
                (m for m in self._messages.get(channel, []) if m["ts"] == thread_ts), None
            )
            if parent is not None:
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent.setdefault("thread_ts", thread_ts)
        self._messages.setdefault(channel, []).append(msg)
        return msg

    def _m_auth_test(self, p: JSON) -> JSON:
        return {
            "url": self.url + "/",
            "team": "Warden Dev",
            "user": "warden",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0WARDEN",
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, p: JSON) -> JSON:
        channel = self._channel(p)
        if not channel.startswith("D") and self._state(channel)["is_archived"]:
            raise SlackError("is_archived")
        text = str(p.get("text") or "")
        if len(text) > 40000:
            raise SlackError("msg_too_long")
        blocks = _json_field(p.get("blocks"))
        check_blocks(blocks, MAX_BLOCKS_MESSAGE)
        if not text and not blocks:
            raise SlackError("no_text")
        thread_ts = _opt(p.get("thread_ts"))
        extra: JSON = {"bot_id": "B0WARDEN"}
        metadata = _json_field(p.get("metadata"))
        if metadata is not None:
            if not (
                isinstance(metadata, dict)
                and isinstance(metadata.get("event_type"), str)
                and isinstance(metadata.get("event_payload"), dict)
            ):
                raise SlackError("invalid_metadata_format")
            extra["metadata"] = metadata
        msg = self._store_message(channel, self.bot_user_id, text, blocks, thread_ts, **extra)
        if thread_ts:  # Slack clears a thread's status when the app replies in it
            self._thread_status.pop((channel, thread_ts), None)
        return {"channel": channel, "ts": msg["ts"], "message": msg}

    def _m_chat_update(self, p: JSON) -> JSON:
        channel = self._channel(p)
        msg = self._find(channel, str(p.get("ts") or ""))
        if msg.get("user") != self.bot_user_id:
            raise SlackError("cant_update_message")
        blocks = _json_field(p.get("blocks"))
        check_blocks(blocks, MAX_BLOCKS_MESSAGE)
        if "text" in p:
            msg["text"] = str(p.get("text") or "")
        if blocks is not None:
            msg["blocks"] = blocks
        msg["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        return {"channel": channel, "ts": msg["ts"], "text": msg["text"], "message": msg}

    def _m_chat_delete(self, p: JSON) -> JSON:
        channel = self._channel(p)
        msg = self._find(channel, str(p.get("ts") or ""))
        if msg.get("user") != self.bot_user_id:
            raise SlackError("cant_delete_message")  # a bot token deletes only its own
        thread_ts = msg.get("thread_ts")
        if msg.get("reply_count"):
            # A parent with replies stays as a tombstone, as in Slack.
            msg.update({"subtype": "tombstone", "text": "This message was deleted.", "blocks": []})
            msg["reactions"] = []
        else:
            self._messages[channel].remove(msg)
        if thread_ts and thread_ts != msg["ts"]:
            parent = next(
                (m for m in self._messages.get(channel, []) if m["ts"] == thread_ts), None
            )
            if parent is not None and parent.get("reply_count"):
                parent["reply_count"] -= 1
        return {"channel": channel, "ts": msg["ts"]}

    def _m_chat_postEphemeral(self, p: JSON) -> JSON:
        channel = self._channel(p)
        user = str(p.get("user") or "")
        if not user:
            raise SlackError("user_not_found")
        blocks = _json_field(p.get("blocks"))
        check_blocks(blocks, MAX_BLOCKS_MESSAGE)
        msg = self._store_message(
            channel,
            self.bot_user_id,
            str(p.get("text") or ""),
            blocks,
            _opt(p.get("thread_ts")),
            ephemeral_to=user,
        )
        return {"message_ts": msg["ts"]}

    # Reactions are kept as Slack returns them on a message: [{name, users, count}]. The bot
    # token's own reactions (reactions.add/remove) are not delivered back to the bot as
    # events: Warden ignores its own reactions, and an event sent from inside a Web API call
    # would make the call wait on the bot.

    def _react(self, msg: JSON, user: str, name: str, add: bool) -> None:
        """Add or remove `user`'s reaction `name` as Slack answers reactions.add/remove."""
        if not name or not re.fullmatch(r"[a-z0-9_+'-]+(::skin-tone-[2-6])?", name):
            raise SlackError("invalid_name")
        reactions: list[JSON] = msg.setdefault("reactions", [])
        found = next((r for r in reactions if r["name"] == name), None)
        mine = found is not None and user in found["users"]
        if add:
            if mine:
                raise SlackError("already_reacted")
            if found is None:
                found = {"name": name, "users": [], "count": 0}
                reactions.append(found)
            found["users"].append(user)
        else:
            if not mine or found is None:
                raise SlackError("no_reaction")
            found["users"].remove(user)
            if not found["users"]:
                reactions.remove(found)
        if found is not None:
            found["count"] = len(found["users"])

    def _m_reactions_add(self, p: JSON) -> JSON:
        msg = self._find(self._channel(p), str(p.get("timestamp") or ""))
        self._react(msg, self.bot_user_id, str(p.get("name") or ""), add=True)
        return {}

    def _m_reactions_remove(self, p: JSON) -> JSON:
        msg = self._find(self._channel(p), str(p.get("timestamp") or ""))
        self._react(msg, self.bot_user_id, str(p.get("name") or ""), add=False)
        return {}

    def react(self, user: str, channel: str, ts: str, name: str, remove: bool = False) -> Delivery:
        """`user` adds (or, with `remove`, takes back) the reaction `name` on a message, and
        the bot gets `reaction_added` / `reaction_removed` as Slack shapes it. Raises
        SlackError as reactions.add/remove would answer (`already_reacted`, `no_reaction`,
        `message_not_found`, `invalid_name`)."""
        with self._cond:
            msg = self._find(self._channel({"channel": channel}), ts)
            self._react(msg, user, name, add=not remove)
            item_user = str(msg.get("user") or "")
            self._changed()
        event: JSON = {
            "type": "reaction_removed" if remove else "reaction_added",
            "user": user,
            "reaction": name,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": f"{time.time():.6f}",
        }
        if item_user:
            event["item_user"] = item_user
        return self._event(event)

    def _m_views_open(self, p: JSON) -> JSON:
        trigger = str(p.get("trigger_id") or "")
        owner = self._triggers.pop(trigger, None)
        if owner is None or owner[1] < time.time():
            raise SlackError("invalid_trigger_id")
        return {"view": self._open_view(owner[0], _json_field(p.get("view")))}

    def _m_views_push(self, p: JSON) -> JSON:
        return self._m_views_open(p)

    def _open_view(self, user: str, view: Any) -> JSON:
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        check_blocks(view.get("blocks"), MAX_BLOCKS_VIEW)
        view_id = "V" + secrets.token_hex(5).upper()
        stored = {
            **view,
            "id": view_id,
            "user": user,
            "open": True,
            "errors": {},
            "hash": secrets.token_hex(6),
            "team_id": self.team_id,
            "app_id": self.app_id,
            "state": {"values": {}},
        }
        self._views[view_id] = stored
        return stored

    def _m_views_update(self, p: JSON) -> JSON:
        view_id = str(p.get("view_id") or "")
        target = self._views.get(view_id)
        if target is None and p.get("external_id"):
            target = next(
                (v for v in self._views.values() if v.get("external_id") == p.get("external_id")),
                None,
            )
        if target is None:
            raise SlackError("not_found")
        view = _json_field(p.get("view"))
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        check_blocks(view.get("blocks"), MAX_BLOCKS_VIEW)
        target.update(view)
        return {"view": target}

    def _m_views_publish(self, p: JSON) -> JSON:
        user = str(p.get("user_id") or "")
        view = _json_field(p.get("view"))
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError("invalid_arguments")
        check_blocks(view.get("blocks"), MAX_BLOCKS_VIEW)
        self._homes[user] = {**view, "id": "VHOME" + user}
        return {"view": self._homes[user]}

    def _m_usergroups_users_list(self, p: JSON) -> JSON:
        group = str(p.get("usergroup") or "")
        if not group:
            raise SlackError("invalid_arguments")
        with self._cond:
            members = self.usergroups.get(group)
        if members is None:
            raise SlackError("no_such_subteam")
        return {"users": list(members)}

    def _m_users_info(self, p: JSON) -> JSON:
        user = str(p.get("user") or "")
        for persona in self.personas:
            if persona.id == user:
                return {
                    "user": {
                        "id": persona.id,
                        "name": persona.name,
                        "real_name": persona.label,
                        "tz": "UTC",
                        "is_bot": False,
                        "profile": {
                            "real_name": persona.label,
                            "display_name": persona.name,
                            "title": "",
                        },
                    }
                }
        if user == self.bot_user_id:
            return {"user": {"id": user, "name": "warden", "is_bot": True, "profile": {}}}
        raise SlackError("user_not_found")

    def _m_conversations_info(self, p: JSON) -> JSON:
        channel = self._channel(p)
        if channel.startswith("D"):
            return {
                "channel": {
                    "id": channel,
                    "name": self.channel_name(channel),
                    "is_im": True,
                    "is_channel": False,
                }
            }
        self._visible(channel)
        return {"channel": self._conversation(channel, with_count=_flag(p, "include_num_members"))}

    # -- channels ----------------------------------------------------------------------------
    # Channel management as Slack answers it to a bot token: a private channel the bot is not
    # in does not exist for it (`channel_not_found`); changing a channel needs the bot in it
    # (`not_in_channel`); an archived channel keeps its name, members, topic and messages but
    # takes no changes (`is_archived`) and no posts. Changes leave the system messages Slack
    # shows (`channel_join`, `channel_topic`…) but, like reactions.add, deliver no events.

    def _state(self, channel: str) -> JSON:
        return self._channel_state.setdefault(
            channel,
            {
                "is_private": False,
                "is_archived": False,
                "created": self._ts_base,
                "creator": "",
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            },
        )

    def _members_of(self, channel: str) -> set[str]:
        if channel not in self._members:
            self._members[channel] = {self.bot_user_id, *(p.id for p in self.personas)}
        return self._members[channel]

    def _visible(self, channel: str) -> None:
        """Raise what Slack answers for a channel the bot token cannot see."""
        if self._state(channel)["is_private"] and self.bot_user_id not in self._members_of(channel):
            raise SlackError("channel_not_found")

    def _manageable(self, p: JSON, *, archived_ok: bool = False) -> str:
        """The channel a management call names, checked as Slack checks it."""
        channel = self._channel(p)
        if channel.startswith("D"):
            raise SlackError("method_not_supported_for_channel_type")
        self._visible(channel)
        if self._state(channel)["is_archived"] and not archived_ok:
            raise SlackError("is_archived")
        if self.bot_user_id not in self._members_of(channel):
            raise SlackError("not_in_channel")
        return channel

    def _is_general(self, channel: str) -> bool:
        return self.channels.get(channel) == "general"

    def _conversation(self, channel: str, *, with_count: bool = False) -> JSON:
        """The channel object conversations.* methods answer with."""
        state = self._state(channel)
        name = self.channels[channel]
        out: JSON = {
            "id": channel,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": state["is_private"],
            "is_archived": state["is_archived"],
            "is_general": self._is_general(channel),
            "is_member": self.bot_user_id in self._members_of(channel),
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "created": state["created"],
            "creator": state["creator"],
            "unlinked": 0,
            "topic": dict(state["topic"]),
            "purpose": dict(state["purpose"]),
            "previous_names": [],
        }
        if with_count:
            out["num_members"] = len(self._members_of(channel))
        return out

    def _system_message(
        self, channel: str, user: str, subtype: str, text: str, **extra: Any
    ) -> None:
        self._store_message(channel, user, text, None, None, subtype=subtype, **extra)

    def _known_user(self, user: str) -> bool:
        return user == self.bot_user_id or any(p.id == user for p in self.personas)

    def add_channel(
        self,
        name: str,
        *,
        private: bool = False,
        members: Iterable[str] | None = None,
        channel_id: str | None = None,
    ) -> str:
        """A channel made by someone else (a test's setup): `members` default to everyone,
        Warden included. Returns its id."""
        with self._cond:
            channel = channel_id or "C" + secrets.token_hex(5).upper()
            self.channels[channel] = name
            self._state(channel)["is_private"] = private
            self._members[channel] = (
                set(members)
                if members is not None
                else {self.bot_user_id, *(p.id for p in self.personas)}
            )
            self._changed()
            return channel

    def conversation(self, channel: str) -> JSON:
        """A channel as conversations.info answers (member count included), for tests."""
        with self._cond:
            return json.loads(json.dumps(self._conversation(channel, with_count=True)))  # type: ignore[no-any-return]

    def members(self, channel: str) -> set[str]:
        with self._cond:
            return set(self._members_of(channel))

    def visible_channels(self, user: str) -> dict[str, str]:
        """The channels `user` sees in the sidebar: public ones and the private ones they are
        in, archived ones marked."""
        with self._cond:
            return {
                c: name + (" (archived)" if self._state(c)["is_archived"] else "")
                for c, name in self.channels.items()
                if not self._state(c)["is_private"] or user in self._members_of(c)
            }

    def _m_conversations_create(self, p: JSON) -> JSON:
        name = str(p.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > 80:
            raise SlackError("invalid_name_maxlength")
        if not re.fullmatch(r"[a-z0-9_-]+", name):
            raise SlackError("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise SlackError("invalid_name_punctuation")
        if name in self.channels.values():  # archived channels keep their names
            raise SlackError("name_taken")
        channel = "C" + secrets.token_hex(5).upper()
        self.channels[channel] = name
        state = self._state(channel)
        state.update(
            is_private=_flag(p, "is_private"), created=int(time.time()), creator=self.bot_user_id
        )
        self._members[channel] = {self.bot_user_id}
        return {"channel": self._conversation(channel)}

    def _m_conversations_list(self, p: JSON) -> JSON:
        types = {t.strip() for t in str(p.get("types") or "public_channel").split(",")}
        unknown = types - {"public_channel", "private_channel", "mpim", "im"}
        if unknown:
            raise SlackError("invalid_types")
        try:
            limit = int(p.get("limit") or 100)
            start = int(base64.b64decode(str(p.get("cursor") or "")).decode() or 0)
        except ValueError as exc:
            raise SlackError("invalid_cursor") from exc
        if not 1 <= limit <= 1000:
            raise SlackError("invalid_limit")
        wanted = [
            c
            for c in self.channels
            if (
                ("private_channel" if self._state(c)["is_private"] else "public_channel") in types
                and not (
                    self._state(c)["is_private"] and self.bot_user_id not in self._members_of(c)
                )
                and not (_flag(p, "exclude_archived") and self._state(c)["is_archived"])
            )
        ]
        page = wanted[start : start + limit]
        more = start + limit < len(wanted)
        return {
            "channels": [self._conversation(c, with_count=True) for c in page],
            "response_metadata": {
                "next_cursor": base64.b64encode(str(start + limit).encode()).decode()
                if more
                else ""
            },
        }

    def _m_conversations_invite(self, p: JSON) -> JSON:
        channel = self._manageable(p)
        users = [u.strip() for u in str(p.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("no_user")
        members = self._members_of(channel)
        errors: list[JSON] = []
        for user in users:
            if user == self.bot_user_id:
                code = "cant_invite_self"
            elif not self._known_user(user):
                code = "user_not_found"
            elif user in members:
                code = "already_in_channel"
            else:
                continue
            errors.append({"user": user, "ok": False, "error": code})
        refused = {str(e["user"]) for e in errors}
        # One bad id fails them all, unless `force` asks to invite the valid ones anyway.
        if errors and (not _flag(p, "force") or refused >= set(users)):
            raise SlackError(str(errors[0]["error"]), extra={"errors": errors})
        for user in dict.fromkeys(users):
            if user not in refused:
                members.add(user)
                self._system_message(
                    channel,
                    user,
                    "channel_join",
                    f"<@{user}> has joined the channel",
                    inviter=self.bot_user_id,
                )
        answer: JSON = {"channel": self._conversation(channel)}
        if errors:
            answer["errors"] = errors
        return answer

    def _m_conversations_kick(self, p: JSON) -> JSON:
        channel = self._manageable(p)
        user = str(p.get("user") or "")
        if not self._known_user(user):
            raise SlackError("user_not_found")
        if user == self.bot_user_id:
            raise SlackError("cant_kick_self")
        if self._is_general(channel):
            raise SlackError("cant_kick_from_general")
        members = self._members_of(channel)
        if user not in members:
            raise SlackError("not_in_channel")
        members.discard(user)
        self._system_message(channel, user, "channel_leave", f"<@{user}> has left the channel")
        return {"errors": {}}

    def _describe(self, p: JSON, field_name: str, subtype: str, what: str) -> JSON:
        """conversations.setTopic / setPurpose: at most 250 characters."""
        channel = self._manageable(p)
        if field_name not in p:
            raise SlackError("invalid_arguments")
        value = str(p.get(field_name) or "")
        if len(value) > 250:
            raise SlackError("too_long")
        self._state(channel)[field_name] = {
            "value": value,
            "creator": self.bot_user_id,
            "last_set": int(time.time()),
        }
        text = (
            f"<@{self.bot_user_id}> set the channel {what}: {value}"
            if value
            else f"<@{self.bot_user_id}> cleared the channel {what}"
        )
        self._system_message(channel, self.bot_user_id, subtype, text, **{field_name: value})
        return {"channel": self._conversation(channel)}

    def _m_conversations_setTopic(self, p: JSON) -> JSON:
        return self._describe(p, "topic", "channel_topic", "topic")

    def _m_conversations_setPurpose(self, p: JSON) -> JSON:
        self._describe(p, "purpose", "channel_purpose", "description")
        return {}

    def _m_conversations_archive(self, p: JSON) -> JSON:
        channel = self._channel(p)
        if channel.startswith("D"):
            raise SlackError("method_not_supported_for_channel_type")
        self._visible(channel)
        state = self._state(channel)
        if state["is_archived"]:
            raise SlackError("already_archived")
        if self._is_general(channel):
            raise SlackError("cant_archive_general")
        if self.bot_user_id not in self._members_of(channel):
            raise SlackError("not_in_channel")
        self._system_message(
            channel,
            self.bot_user_id,
            "channel_archive",
            f"<@{self.bot_user_id}> archived the channel",
        )
        state["is_archived"] = True
        return {}

    def _m_conversations_unarchive(self, p: JSON) -> JSON:
        channel = self._channel(p)
        if channel.startswith("D"):
            raise SlackError("method_not_supported_for_channel_type")
        self._visible(channel)
        state = self._state(channel)
        if not state["is_archived"]:
            raise SlackError("not_archived")
        state["is_archived"] = False
        self._system_message(
            channel,
            self.bot_user_id,
            "channel_unarchive",
            f"<@{self.bot_user_id}> un-archived the channel",
        )
        return {}

    def _pinned(self, p: JSON) -> tuple[str, JSON]:
        """The channel and message pins.add / pins.remove name."""
        channel = self._channel(p)
        is_dm = channel.startswith("D")
        if not is_dm:
            self._visible(channel)
        ts = str(p.get("timestamp") or "")
        if not ts:
            raise SlackError("no_item_specified")
        if not re.fullmatch(r"\d+\.\d+", ts):
            raise SlackError("bad_timestamp")
        if not is_dm and self.bot_user_id not in self._members_of(channel):
            raise SlackError("not_in_channel")
        return channel, self._find(channel, ts)

    def _m_pins_add(self, p: JSON) -> JSON:
        channel, msg = self._pinned(p)
        if msg.get("subtype") in ("tombstone", "channel_join", "channel_leave"):
            raise SlackError("not_pinnable")
        pinned: list[str] = msg.setdefault("pinned_to", [])
        if channel in pinned:
            raise SlackError("already_pinned")
        pinned.append(channel)
        return {}

    def _m_pins_remove(self, p: JSON) -> JSON:
        channel, msg = self._pinned(p)
        pinned: list[str] = msg.get("pinned_to") or []
        if channel not in pinned:
            raise SlackError("no_pin")
        pinned.remove(channel)
        if not pinned:
            msg.pop("pinned_to", None)
        return {}

    def _m_conversations_history(self, p: JSON) -> JSON:
        channel = self._channel(p)
        msgs = [
            m
            for m in self._messages.get(channel, [])
            if not m.get("ephemeral_to")
            and (
                m.get("thread_ts") in (None, m["ts"])
                or m.get("subtype") == "thread_broadcast"  # "also send to channel"
            )
        ]
        return {"messages": _with_metadata(list(reversed(msgs)), p), "has_more": False}

    def _m_conversations_replies(self, p: JSON) -> JSON:
        channel = self._channel(p)
        ts = str(p.get("ts") or "")
        msgs = [
            m
            for m in self._messages.get(channel, [])
            if not m.get("ephemeral_to") and (m["ts"] == ts or m.get("thread_ts") == ts)
        ]
        if not msgs:
            raise SlackError("thread_not_found")
        return {"messages": _with_metadata(msgs, p), "has_more": False}

    def _m_assistant_threads_setStatus(self, p: JSON) -> JSON:
        if "status" not in p:
            raise SlackError("invalid_arguments")
        channel = self._channel(p, "channel_id")
        thread_ts = str(p.get("thread_ts") or "")
        if not any(m["ts"] == thread_ts for m in self._messages.get(channel, [])):
            raise SlackError("invalid_thread_ts")
        self._statuses.append(dict(p))
        status = str(p.get("status") or "")
        if status:  # Slack drops it after two minutes, or when the app replies
            self._thread_status[(channel, thread_ts)] = (status, time.time() + 120)
        else:
            self._thread_status.pop((channel, thread_ts), None)
        return {}

    def thread_statuses(self, channel: str) -> dict[str, str]:
        """The live assistant statuses ("is thinking…") of `channel`'s threads."""
        now = time.time()
        with self._cond:
            return {
                ts: status
                for (c, ts), (status, until) in self._thread_status.items()
                if c == channel and until > now
            }

    # -- response_url ------------------------------------------------------------------------

    def _new_response_url(self, user: str, channel: str, message_ts: str | None) -> str:
        token = secrets.token_hex(8)
        self._response_urls[token] = {
            "user": user,
            "channel": channel,
            "ts": message_ts,
            "uses": 0,
            "expires": time.time() + 1800,
            "answers": [],
        }
        return f"{self.url}/response_url/{token}"

    def response_url(self, token: str, body: JSON) -> tuple[int, JSON]:
        with self._cond:
            entry = self._response_urls.get(token)
            if entry is None or entry["uses"] >= 5 or entry["expires"] < time.time():
                return 404, {"ok": False, "error": "used_url"}
            entry["uses"] += 1
            entry["answers"].append(body)
            entry.setdefault("answered_at", time.time())
            channel, user = entry["channel"], entry["user"]
            blocks = body.get("blocks")
            text = str(body.get("text") or "")
            if body.get("delete_original") and entry["ts"]:
                self._messages[channel] = [
                    m for m in self._messages.get(channel, []) if m["ts"] != entry["ts"]
                ]
            elif body.get("replace_original") and entry["ts"]:
                msg = next(
                    (m for m in self._messages.get(channel, []) if m["ts"] == entry["ts"]), None
                )
                if msg is None:
                    return 404, {"ok": False, "error": "message_not_found"}
                msg.update({"text": text, "blocks": blocks or []})
            elif body.get("response_type") == "in_channel":
                self._store_message(channel, self.bot_user_id, text, blocks, None)
            else:
                self._store_message(
                    channel, self.bot_user_id, text, blocks, None, ephemeral_to=user
                )
            self._changed()
            return 200, {"ok": True}

    def answered_at(self, response_url: str, timeout: float = 10.0) -> float | None:
        """When (time.time()) the first answer to `response_url` arrived, waiting for it."""
        token = response_url.rsplit("/", 1)[-1]
        with self._cond:
            entry = self._response_urls.get(token)
            if entry is None:
                return None
            self._cond.wait_for(lambda: "answered_at" in entry, timeout=timeout)
            return entry.get("answered_at")

    def local_ephemeral(self, user: str, channel: str, text: str) -> None:
        """Show a slash command's HTTP answer to its user, as Slack does."""
        with self._cond:
            self._store_message(channel, self.bot_user_id, text, None, None, ephemeral_to=user)
            self._changed()

    # -- delivering to the bot ---------------------------------------------------------------

    def sign(self, body: bytes, ts: int | None = None) -> dict[str, str]:
        """Slack's request signature for `body`."""
        stamp = str(int(time.time()) if ts is None else ts)
        base = b"v0:" + stamp.encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    def raw_post(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """POST bytes to the bot as they are (adversarial tests use this)."""
        req = urllib.request.Request(
            self.bot_url,
            data=body,
            method="POST",
            headers={"User-Agent": "Slackbot 1.0", **headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Delivery(
                    status=resp.status, body=resp.read().decode(), raw=body, headers=headers
                )
        except urllib.error.HTTPError as exc:
            return Delivery(
                status=exc.code, body=exc.read().decode(errors="replace"), raw=body, headers=headers
            )
        except (urllib.error.URLError, OSError) as exc:  # the bot is not answering at all
            return Delivery(status=0, body=str(exc), raw=body, headers=headers)

    def _deliver_json(self, payload: JSON, extra: dict[str, str] | None = None) -> Delivery:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.sign(body), **(extra or {})}
        d = self.raw_post(body, headers)
        d.event_id = payload.get("event_id")
        return d

    def _deliver_form(self, fields: dict[str, str]) -> Delivery:
        body = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **self.sign(body)}
        return self.raw_post(body, headers)

    def _event(self, event: JSON, event_id: str | None = None) -> Delivery:
        payload = {
            "token": "verification-token-unused",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(6).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return self._deliver_json(payload)

    def redeliver(
        self, delivery: Delivery, retry_num: int = 1, reason: str = "http_timeout"
    ) -> Delivery:
        """Send the same event again, as Slack's retries do (same event_id)."""
        headers = {
            "Content-Type": "application/json",
            **self.sign(delivery.raw),
            "X-Slack-Retry-Num": str(retry_num),
            "X-Slack-Retry-Reason": reason,
        }
        return self.raw_post(delivery.raw, headers)

    def replay(self, delivery: Delivery) -> Delivery:
        """POST exactly the same signed bytes and headers again: a replay (by anyone who saw
        the request) within Slack's 5-minute window, which the signature alone accepts."""
        again = self.raw_post(delivery.raw, dict(delivery.headers))
        again.event_id = delivery.event_id
        return again

    @staticmethod
    def channel_type(channel: str) -> str:
        """The `channel_type` Slack puts on message events."""
        if channel.startswith("D"):
            return "im"
        if channel.startswith("G"):
            return "group"
        return "channel"

    def edit_message(
        self, user: str, channel: str, ts: str, new_text: str, event_id: str | None = None
    ) -> Delivery:
        """`user` edits their message `ts` to `new_text` (wire format, as for `say`).

        Slack sends `message` / `message_changed` (the bot subscribes to message.channels and
        message.im) and, when the edited text mentions the app outside a DM, `app_mention`
        again: the SAME `ts`, an `edited` field and a NEW event_id (`event_id` to choose it).
        Returns the `app_mention` delivery, or the `message_changed` one if none was sent."""
        with self._cond:
            msg = next(
                (
                    m
                    for m in self._messages.get(channel, [])
                    if m["ts"] == ts and not m.get("ephemeral_to")
                ),
                None,
            )
            if msg is None:
                raise LookupError(f"no message {ts} in {channel}")
            if msg.get("user") != user:
                raise LookupError(f"{user} did not write message {ts}; only its author edits it")
            edit_ts = self._new_ts()
            previous = self._message_fields(msg)
            msg["text"] = new_text
            msg["edited"] = {"user": user, "ts": edit_ts}
            current = self._message_fields(msg)
            # A thread's root carries its own ts as thread_ts once it has replies.
            thread_ts = msg.get("thread_ts")
            self._changed()
        changed = self._event(
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "message": current,
                "previous_message": previous,
                "channel": channel,
                "ts": edit_ts,
                "event_ts": edit_ts,
                "channel_type": self.channel_type(channel),
            },
            event_id=None if self._mentions_bot(channel, new_text) else event_id,
        )
        if not self._mentions_bot(channel, new_text):
            return changed
        event: JSON = {
            "type": "app_mention",
            "user": user,
            "text": new_text,
            "ts": ts,
            "channel": channel,
            "event_ts": edit_ts,
            "team": self.team_id,
            "edited": {"user": user, "ts": edit_ts},
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self._event(event, event_id=event_id)

    def _mentions_bot(self, channel: str, text: str) -> bool:
        """Whether Slack sends `app_mention` for this text (never in a DM)."""
        return f"<@{self.bot_user_id}>" in text and not channel.startswith("D")

    def _message_fields(self, msg: JSON) -> JSON:
        """A stored message as Slack puts it inside an event (`message`, `root`, ...)."""
        keep = (
            "type",
            "subtype",
            "user",
            "bot_id",
            "bot_profile",
            "text",
            "ts",
            "thread_ts",
            "reply_count",
            "edited",
            "files",
            "upload",
        )
        out: JSON = {k: msg[k] for k in keep if k in msg}
        out["team"] = self.team_id
        return json.loads(json.dumps(out))  # type: ignore[no-any-return]

    def bot_mention(
        self,
        bot_id: str,
        channel: str,
        text: str,
        *,
        user: str | None = None,
        name: str = "other-app",
        app_id: str | None = None,
        thread_ts: str | None = None,
    ) -> Delivery:
        """Another app's bot writes "@warden text" in `channel`: Slack sends `app_mention`
        with the bot's `bot_id`, its `bot_profile` and the bot user's id in `user`."""
        bot_user = user or "U" + bot_id[1:]
        full = f"<@{self.bot_user_id}> {text}"
        profile: JSON = {
            "id": bot_id,
            "deleted": False,
            "name": name,
            "updated": int(time.time()),
            "app_id": app_id or "A" + bot_id[1:],
            "icons": {"image_36": "", "image_48": "", "image_72": ""},
            "team_id": self.team_id,
        }
        with self._cond:
            msg = self._store_message(
                channel, bot_user, full, None, thread_ts, bot_id=bot_id, bot_profile=profile
            )
            self._changed()
        event: JSON = {
            "type": "app_mention",
            "user": bot_user,
            "bot_id": bot_id,
            "bot_profile": profile,
            "text": full,
            "ts": msg["ts"],
            "channel": channel,
            "event_ts": msg["ts"],
            "team": self.team_id,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self._event(event)

    def _file(self, user: str) -> JSON:
        """A file object as it appears in a `file_share` message."""
        file_id = "F" + secrets.token_hex(5).upper()
        now = int(time.time())
        return {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": "screenshot.png",
            "title": "screenshot.png",
            "mimetype": "image/png",
            "filetype": "png",
            "pretty_type": "PNG",
            "user": user,
            "editable": False,
            "size": 92582,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self.url}/files/{file_id}/screenshot.png",
            "url_private_download": f"{self.url}/files/{file_id}/download/screenshot.png",
            "permalink": f"{self.url}/files/{user}/{file_id}/screenshot.png",
            "has_rich_preview": False,
        }

    def reply(
        self, user: str, channel: str, thread_ts: str, text: str, subtype: str | None = None
    ) -> Delivery:
        """`user` replies in a thread: a `message` event (text in wire format, as for `say`).

        `subtype`: None (a plain reply), "thread_broadcast" ("also send to channel": the event
        has `subtype`, `thread_ts` and the thread's `root`) or "file_share" (a reply with a
        file: `files`, `upload: false`). If the text mentions the app outside a DM, Slack also
        sends `app_mention`, and so does this (after the message event, which is returned)."""
        if subtype not in (None, "thread_broadcast", "file_share"):
            raise ValueError(f"unsupported subtype {subtype!r}")
        extra: JSON = {}
        if subtype == "thread_broadcast":
            extra["subtype"] = "thread_broadcast"
        elif subtype == "file_share":
            extra.update(
                subtype="file_share", files=[self._file(user)], upload=False, display_as_bot=False
            )
        with self._cond:
            msg = self._store_message(channel, user, text, None, thread_ts, **extra)
            root = next((m for m in self._messages.get(channel, []) if m["ts"] == thread_ts), None)
            root_fields: JSON | None = None
            if root is not None:
                replies = [
                    m
                    for m in self._messages.get(channel, [])
                    if m.get("thread_ts") == thread_ts
                    and m["ts"] != thread_ts
                    and not m.get("ephemeral_to")
                ]
                users = sorted({str(m.get("user")) for m in replies})
                root_fields = {
                    **self._message_fields(root),
                    "thread_ts": thread_ts,
                    "reply_count": len(replies),
                    "reply_users_count": len(users),
                    "latest_reply": msg["ts"],
                    "reply_users": users,
                    "is_locked": False,
                }
            self._changed()
        event: JSON = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": msg["ts"],
            "thread_ts": thread_ts,
            "channel": channel,
            "event_ts": msg["ts"],
            "team": self.team_id,
            "client_msg_id": str(uuid.uuid4()),
            "channel_type": self.channel_type(channel),
            **extra,
        }
        if subtype == "thread_broadcast" and root_fields is not None:
            event["root"] = root_fields
        delivery = self._event(event)
        if self._mentions_bot(channel, text):
            mention: JSON = {
                "type": "app_mention",
                "user": user,
                "text": text,
                "ts": msg["ts"],
                "thread_ts": thread_ts,
                "channel": channel,
                "event_ts": msg["ts"],
                "team": self.team_id,
            }
            if "files" in extra:
                mention.update(files=extra["files"], upload=False)
            self._event(mention)
        return delivery

    def _user_message(self, user: str, channel: str, text: str, thread_ts: str | None) -> JSON:
        with self._cond:
            msg = self._store_message(channel, user, text, None, thread_ts)
            self._changed()
            return msg

    def mention(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> Delivery:
        """`user` writes "@warden text" in `channel` (optionally in a thread)."""
        return self._app_mention(user, channel, f"<@{self.bot_user_id}> {text}", thread_ts)

    def _app_mention(self, user: str, channel: str, full: str, thread_ts: str | None) -> Delivery:
        msg = self._user_message(user, channel, full, thread_ts)
        event = {
            "type": "app_mention",
            "user": user,
            "text": full,
            "ts": msg["ts"],
            "channel": channel,
            "event_ts": msg["ts"],
            "team": self.team_id,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self._event(event)

    def say(
        self, user: str, channel: str, text: str, thread_ts: str | None = None
    ) -> Delivery | None:
        """A message whose text is already in Slack's wire format (`&amp;`, `<@U…>`).

        A message mentioning the bot in a channel is delivered as `app_mention`; any other,
        including every DM (Slack sends no `app_mention` for DMs), is delivered as a `message`
        event, as Slack does for the bot's `message.channels` / `message.im` subscriptions
        (the bot itself ignores what is not addressed to it)."""
        is_dm = channel.startswith("D")
        if f"<@{self.bot_user_id}>" in text and not is_dm:
            return self._app_mention(user, channel, text, thread_ts)
        msg = self._user_message(user, channel, text, thread_ts)
        event = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": msg["ts"],
            "channel": channel,
            "event_ts": msg["ts"],
            "team": self.team_id,
            "channel_type": "im" if is_dm else "channel",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self._event(event)

    def type_message(
        self, user: str, channel: str, typed: str, thread_ts: str | None = None
    ) -> Delivery | None:
        """What a Slack client sends when `user` types `typed` in the composer: `&`, `<` and
        `>` escaped, `@name` of a known user turned into `<@U…>` and `#name` of a channel
        into `<#C…|name>`."""
        return self.say(user, channel, self.encode_typed(typed), thread_ts)

    def encode_typed(self, typed: str) -> str:
        text = escape_text(typed)
        names = {p.name.lower(): p.id for p in self.personas}
        names["warden"] = self.bot_user_id
        by_name = {n.lower(): c for c, n in self.channels.items()}

        def at(m: re.Match[str]) -> str:
            uid = names.get(m.group(1).lower())
            return f"<@{uid}>" if uid else m.group(0)

        def hash_(m: re.Match[str]) -> str:
            cid = by_name.get(m.group(1).lower())
            return f"<#{cid}|{m.group(1)}>" if cid else m.group(0)

        text = re.sub(r"(?<![\w@])@([A-Za-z0-9._-]+)\b", at, text)
        return re.sub(r"(?<![\w&])#([a-z0-9_-]+)\b", hash_, text)

    def dm(self, user: str, text: str, thread_ts: str | None = None) -> Delivery:
        """`user` writes to Warden in their DM with it."""
        delivery = self.say(user, self.dm_channel(user), text, thread_ts)
        assert delivery is not None
        return delivery

    def open_home(self, user: str) -> Delivery:
        return self._event(
            {
                "type": "app_home_opened",
                "user": user,
                "tab": "home",
                "channel": self.dm_channel(user),
                "event_ts": self._new_ts(),
            }
        )

    def _user_obj(self, user: str) -> JSON:
        p = self.persona(user)
        return {"id": user, "username": p.name, "name": p.name, "team_id": self.team_id}

    def _trigger(self, user: str) -> str:
        trigger = f"{int(time.time())}.{secrets.token_hex(6)}"
        with self._cond:
            self._triggers[trigger] = (user, time.time() + 3)
        return trigger

    def click(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        seen: JSON | None = None,
    ) -> Delivery:
        """`user` clicks the button `action_id` on a message: as it is now, or as `seen` (a
        copy the user's client still shows, like a double click on a card being updated)."""
        msg = seen if seen is not None else self.message(channel, message_ts)
        if msg is None:
            raise LookupError(f"no message {message_ts} in {channel}")
        button, block_id = None, None
        for block in msg.get("blocks") or []:
            for element in block.get("elements") or []:
                if element.get("action_id") == action_id:
                    button, block_id = element, block.get("block_id")
        if button is None:
            raise LookupError(f"message {message_ts} has no button {action_id!r}")
        with self._cond:
            response_url = self._new_response_url(user, channel, message_ts)
        payload: JSON = {
            "type": "block_actions",
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "token": "verification-token-unused",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": bool(msg.get("ephemeral_to")),
            },
            "trigger_id": self._trigger(user),
            "team": {"id": self.team_id, "domain": "warden-dev"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.channel_name(channel)},
            "message": msg,
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": button.get("value") if value is None else value,
                    "type": "button",
                    "text": button.get("text"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self._deliver_form({"payload": json.dumps(payload)})

    def click_home(self, user: str, action_id: str, value: str | None = None) -> Delivery:
        """`user` clicks the button `action_id` in their App Home (the one whose value is
        `value`, if several; a `value` no button has is sent as given, like a forged click).

        Slack's payload for a view: container `{"type": "view", "view_id": ...}` and the
        `view`; no `channel`, no `message` and no `response_url`."""
        with self._cond:
            home = self._homes.get(user)
            view = json.loads(json.dumps(home)) if home is not None else None
        if view is None:
            raise LookupError(f"{user} has no App Home view")
        candidates: list[tuple[JSON, str | None]] = []
        for block in view.get("blocks") or []:
            accessory = block.get("accessory")
            for element in [*(block.get("elements") or []), *([accessory] if accessory else [])]:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    candidates.append((element, block.get("block_id")))
        if not candidates:
            raise LookupError(f"{user}'s App Home has no button {action_id!r}")
        button, block_id = next(
            (c for c in candidates if value is not None and c[0].get("value") == value),
            candidates[0],
        )
        view_id = str(view.get("id") or "VHOME" + user)
        sent: JSON = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "home",
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": secrets.token_hex(6),
            "title": {"type": "plain_text", "text": "View Title", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": "B0WARDEN",
        }
        payload: JSON = {
            "type": "block_actions",
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "token": "verification-token-unused",
            "container": {"type": "view", "view_id": view_id},
            "trigger_id": self._trigger(user),
            "team": {"id": self.team_id, "domain": "warden-dev"},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": sent,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": button.get("value") if value is None else value,
                    "type": "button",
                    "text": button.get("text"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self._deliver_form({"payload": json.dumps(payload)})

    def slash(
        self, user: str, channel: str, command: str, text: str = "", *, wait: float = 10.0
    ) -> Delivery:
        """`user` types `/command text` in `channel`. The answer is what the user sees: the
        bot's HTTP body, or, when that is empty, the first message it posts to the command's
        `response_url` within `wait` seconds (`Delivery.late`), as Slack shows either."""
        with self._cond:
            response_url = self._new_response_url(user, channel, None)
        delivery = self._deliver_slash(user, channel, command, text, response_url)
        if delivery.status != 200 or delivery.body.strip() or wait <= 0:
            return delivery
        token = response_url.rsplit("/", 1)[-1]
        with self._cond:
            answers = self._response_urls[token]["answers"]
            if self._cond.wait_for(lambda: bool(answers), timeout=wait):
                first = answers[0]
                text = first.get("text")
                plain = isinstance(text, str) and not first.get("blocks")
                delivery.body = text if plain else json.dumps(first)
                delivery.late = True
        return delivery

    def _deliver_slash(
        self, user: str, channel: str, command: str, text: str, response_url: str
    ) -> Delivery:
        fields = {
            "token": "verification-token-unused",
            "team_id": self.team_id,
            "team_domain": "warden-dev",
            "channel_id": channel,
            "channel_name": self.channel_name(channel),
            "user_id": user,
            "user_name": self.persona(user).name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self._trigger(user),
        }
        return self._deliver_form(fields)

    def submit_view(self, user: str, view_id: str, values: dict[str, dict[str, JSON]]) -> Delivery:
        """Submit an open modal with `values` ({block_id: {action_id: element state}})."""
        with self._cond:
            view = self._views.get(view_id)
            if view is None or not view["open"] or view["user"] != user:
                raise LookupError(f"{user} has no open view {view_id}")
            sent = {k: v for k, v in view.items() if k not in ("user", "open", "errors")}
            sent["state"] = {"values": values}
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "warden-dev"},
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "token": "verification-token-unused",
            "trigger_id": self._trigger(user),
            "view": sent,
            "response_urls": [],
            "is_enterprise_install": False,
        }
        delivery = self._deliver_form({"payload": json.dumps(payload)})
        answer: Any = None
        if delivery.status == 200 and delivery.body.strip():
            try:
                answer = json.loads(delivery.body)
            except ValueError:
                answer = None
        with self._cond:
            if isinstance(answer, dict) and answer.get("response_action") == "errors":
                view["errors"] = answer.get("errors") or {}
            elif isinstance(answer, dict) and answer.get("response_action") == "update":
                view.update(answer.get("view") or {})
                view["errors"] = {}
            elif delivery.status == 200:
                view["open"] = False
            self._changed()
        return delivery

    def close_view(self, user: str, view_id: str) -> Delivery | None:
        with self._cond:
            view = self._views.get(view_id)
            if view is None or view["user"] != user:
                return None
            view["open"] = False
            self._changed()
            notify = bool(view.get("notify_on_close"))
            sent = {k: v for k, v in view.items() if k not in ("user", "open", "errors")}
        if not notify:
            return None
        payload: JSON = {
            "type": "view_closed",
            "team": {"id": self.team_id},
            "user": self._user_obj(user),
            "api_app_id": self.app_id,
            "view": sent,
            "is_cleared": False,
        }
        return self._deliver_form({"payload": json.dumps(payload)})


def escape_text(text: str) -> str:
    """Slack's escaping of user-typed text: only `&`, `<` and `>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_field(value: Any) -> Any:
    """slack-sdk sends blocks/views as JSON objects, or as JSON strings in form bodies."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise SlackError("invalid_json") from exc
    return value


def _opt(value: Any) -> str | None:
    return str(value) if value else None


def _flag(p: JSON, key: str) -> bool:
    """A boolean argument: slack-sdk sends 1/0 in forms, true/false in JSON bodies."""
    return str(p.get(key, "")).lower() in ("1", "true")


def _with_metadata(messages: list[JSON], p: JSON) -> list[JSON]:
    """Slack returns message metadata only to `include_all_metadata=true` (slack-sdk sends
    booleans as 1/0); copies, so a caller never edits the workspace's own messages."""
    wanted = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
    return [
        m if wanted or "metadata" not in m else {k: v for k, v in m.items() if k != "metadata"}
        for m in messages
    ]
