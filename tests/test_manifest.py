"""The Slack app manifest declares exactly what the bot uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from handlers.slack_app import COMMANDS, EVENT_SUBSCRIPTIONS, SCOPES

MANIFEST = json.loads((Path(__file__).parents[1] / "slack-manifest.json").read_text())


def test_events_commands_scopes_and_interactivity() -> None:
    events = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == sorted(e for group in EVENT_SUBSCRIPTIONS.values() for e in group)
    commands = [c["command"] for c in MANIFEST["features"]["slash_commands"]]
    assert sorted(commands) == sorted(COMMANDS)
    assert sorted(MANIFEST["oauth_config"]["scopes"]["bot"]) == sorted(SCOPES)
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    urls = {c["url"] for c in MANIFEST["features"]["slash_commands"]}
    urls |= {
        MANIFEST["settings"]["event_subscriptions"]["request_url"],
        MANIFEST["settings"]["interactivity"]["request_url"],
    }
    assert all(u.endswith("/slack/events") for u in urls)


# Every Web API method handlers/ calls, and the bot scopes it needs (none: no scope). A method
# that works on public and private channels alike needs one scope for each kind.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat_postMessage": ("chat:write",),
    "chat_update": ("chat:write",),
    "chat_delete": ("chat:write",),
    "chat_postEphemeral": ("chat:write",),
    "reactions_add": ("reactions:write",),
    "reactions_remove": ("reactions:write",),
    "users_info": ("users:read",),
    "assistant.threads.setStatus": ("assistant:write",),
    "views_open": (),
    "views_publish": (),
    "auth_test": (),  # Warden's own user id: was a channel created by Warden?
    # Looking for a card whose first post may have reached Slack (also groups:/im:history),
    # and for the note in a channel Warden created.
    "conversations_replies": ("channels:history",),
    "conversations_history": ("channels:history",),
    # The channel tools (bot/channel_tools.py).
    "conversations_create": ("channels:manage", "groups:write"),
    "conversations_invite": ("channels:manage", "groups:write"),
    "conversations_kick": ("channels:manage", "groups:write"),
    "conversations_setTopic": ("channels:manage", "groups:write"),
    "conversations_setPurpose": ("channels:manage", "groups:write"),
    "conversations_archive": ("channels:manage", "groups:write"),
    "conversations_unarchive": ("channels:manage", "groups:write"),
    "conversations_info": ("channels:read", "groups:read"),
    "conversations_list": ("channels:read", "groups:read"),
    "pins_add": ("pins:write",),
    "pins_remove": ("pins:write",),
    "usergroups_users_list": ("usergroups:read",),
}


def test_every_web_api_call_has_its_scope_declared() -> None:
    root = Path(__file__).parents[1] / "handlers"
    source = "\n".join((root / f).read_text() for f in ("slack_client.py", "slack_app.py"))
    called = set(re.findall(r"client\.([a-zA-Z_]+)\(", source)) - {"api_call"}
    called |= set(re.findall(r'api_call\(\s*"([a-zA-Z.]+)"', source))
    assert called == set(METHOD_SCOPES), "update METHOD_SCOPES for new Web API calls"
    declared = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    needed = {scope for scopes in METHOD_SCOPES.values() for scope in scopes}
    assert needed <= declared
    # ...and nothing is declared that nothing uses.
    assert declared - needed <= {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "commands",
        "reactions:read",  # reaction_added / reaction_removed events only
    }


def test_handlers_register_every_declared_event_and_command() -> None:
    source = (Path(__file__).parents[1] / "handlers" / "slack_app.py").read_text()
    for event in EVENT_SUBSCRIPTIONS:
        assert f'@app.event("{event}")' in source
    for command in COMMANDS:
        assert f'@app.command("{command}")' in source
