"""A crash between a commit and its Slack post loses nothing: `warden serve` is killed with
SIGKILL while the card updates it owes are stuck in flight, and the restarted process brings
the card to the truth from the outbox — the action ran once and the card says so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from devslack import Workspace
from storage.db import Database
from storage.models import Instance, utcnow
from storage.repo import Store
from tests.conftest import ADMIN, APPROVER, REQUESTER
from tests.served import Served, free_port, serve_env, until
from tests.served import workspace as new_workspace
from tests.slack_fixtures import CHANNEL, OPS, card_text


def _policy(tmp: Path) -> Path:
    log = tmp / "ran.log"
    path = tmp / "warden.toml"
    path.write_text(
        f"""
[access]
admins = ["{ADMIN}"]
approvers = ["{APPROVER}"]
admin_channel = "{OPS}"

[runbooks.touch]
description = "Write a line"
command = ["sh", "-c", "echo ran $WARDEN_ACTION_ID >> {log}"]
risk = "medium"

[aliases]
"touch it" = {{ runbook = "touch" }}
"""
    )
    return path


@pytest.fixture
def workspace() -> Iterator[Workspace]:
    ws = new_workspace()
    yield ws
    ws.stop()


def test_a_card_update_lost_in_a_crash_is_made_after_restart(
    workspace: Workspace, database_url: str, tmp_path: Path
) -> None:
    ws = workspace
    port = free_port()
    env = serve_env(ws.api_url, database_url, _policy(tmp_path), port)
    ws.bot_url = f"http://127.0.0.1:{port}/slack/events"
    bot = Served(env, port)
    bot.start()
    try:
        assert ws.mention(REQUESTER, CHANNEL, "touch it").status == 200
        card_call = ws.wait_for(lambda c: c.method == "chat.postMessage" and "blocks" in c.params)
        card_ts = str(card_call.response["ts"])

        # From now on every chat.update hangs in flight: the bot commits, then cannot post.
        held = threading.Event()
        release = threading.Event()
        real_api = ws.api

        def api(method: str, params: Any, token: str | None) -> Any:
            if method == "chat.update" and not release.is_set():
                held.set()
                release.wait(timeout=60)
                return 500, {"ok": False, "error": "internal_error"}, {}
            return real_api(method, params, token)

        ws.api = api  # type: ignore[method-assign]
        assert ws.click(APPROVER, CHANNEL, card_ts, "warden_approve").status == 200

        db = Database(database_url)
        store = Store(db)
        try:
            until(lambda: store.actions_with_status(["succeeded"]))
            assert held.wait(timeout=30)
            (action,) = store.actions_with_status(["succeeded"])
            assert "Succeeded" not in card_text(ws.message(CHANNEL, card_ts) or {})
            bot.kill()  # front and worker, between the commit and the post
            release.set()
            ws.api = real_api  # type: ignore[method-assign]
            owed = [r for r in store.outbox_rows() if r.delivered_at is None]
            assert any(r.kind == "card" and r.action_id == action.id for r in owed)
            # The dead process's heartbeat ages out (30 s in real life).
            with db.write() as s:
                s.exec(update(Instance).values(heartbeat_at=utcnow() - timedelta(minutes=5)))

            bot.start()  # the restart delivers what the dead process owed
            ws.wait_until(
                lambda: "Succeeded" in card_text(ws.message(CHANNEL, card_ts) or {}), timeout=30
            )
            until(lambda: all(r.delivered_at is not None for r in store.outbox_rows()))
        finally:
            db.dispose()
        ran = (tmp_path / "ran.log").read_text().splitlines()
        assert ran == [f"ran {action.id}"]
        done = [
            c
            for c in ws.calls("chat.postMessage")
            if "succeeded" in str(c.params.get("text")) and not c.params.get("blocks")
        ]
        assert len(done) == 1
    finally:
        bot.stop()
