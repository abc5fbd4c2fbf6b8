"""`warden dev`: the real bot plus a local Slack-like workspace, on one machine.

The workspace (`devslack`) is a Slack Web API stand-in that also signs and delivers events,
clicks and slash commands to the bot exactly as Slack does, and serves a page that looks
like a Slack channel. It is the same fake the test suite uses.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import webbrowser
from pathlib import Path

from bot.settings import Settings
from handlers.runtime import Running, start

log = logging.getLogger(__name__)

DEMO_POLICY = Path(__file__).with_name("demo") / "warden.toml"
SUGGESTIONS = [
    "@warden restart checkout-api",
    "@warden flush sessions cache",
    "@warden scale search in prod to 6",
    "@warden announce lunch is here",
    "/warden status",
    "/pause deploy freeze",
]


def personas() -> list[object]:
    from devslack import Persona

    return [
        Persona(id="U0REQUESTER", name="riley", label="Riley (requester)"),
        Persona(id="U0APPROVER", name="avery", label="Avery (approver)"),
        Persona(id="U0ADMIN", name="sam", label="Sam (admin, approver)"),
    ]


def start_dev(
    port: int, config: str | None, database_url: str | None = None, anthropic_key: str | None = None
) -> tuple[object, Running]:
    """Start the workspace and the bot; return both (the caller stops them)."""
    from devslack import Workspace

    secret = secrets.token_hex(16)
    token = "xoxb-dev-" + secrets.token_hex(8)
    ws = Workspace(
        signing_secret=secret,
        bot_url="",
        bot_token=token,
        team_id="T0DEV",
        bot_user_id="U0WARDEN",
        personas=personas(),  # type: ignore[arg-type]
        channels={"C0GENERAL": "general", "C0OPS": "ops"},
        suggestions=SUGGESTIONS,
        admin_channel="C0OPS",
    )
    ws.start(port=port)
    env = {
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_API_URL": ws.api_url,
        "DATABASE_URL": database_url or os.environ.get("DATABASE_URL", "sqlite:///warden-dev.db"),
        "WARDEN_CONFIG": config
        or os.environ.get("WARDEN_CONFIG")
        or ("warden.toml" if Path("warden.toml").exists() else str(DEMO_POLICY)),
    }
    key = anthropic_key if anthropic_key is not None else os.environ.get("ANTHROPIC_API_KEY")
    if key:
        env["ANTHROPIC_API_KEY"] = key
    settings = Settings(**env)  # type: ignore[arg-type]
    try:
        running = start(settings, host="127.0.0.1", port=0)
    except Exception:
        ws.stop()
        raise
    ws.bot_url = running.url + "/slack/events"
    return ws, running


def run_dev(port: int, config: str | None, open_browser: bool = True) -> int:
    """Run until Ctrl-C."""
    ws, running = start_dev(port, config)
    url = f"http://127.0.0.1:{port}/"
    policy = running.warden.settings.warden_config
    print(
        f"\n  Warden dev workspace: {url}\n  policy: {policy}\n  database: "
        f"{running.warden.settings.database_url}\n  planner: "
        f"{'Claude' if running.warden.settings.anthropic_api_key else 'offline (aliases)'}"
        "\n  Ctrl-C to stop.\n",
        flush=True,
    )
    if open_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        ws.stop()  # type: ignore[attr-defined]
    print("stopped.")
    return 0
