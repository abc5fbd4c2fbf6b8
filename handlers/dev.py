"""`warden dev`: the real bot plus a local Slack-like workspace, on one machine.

The workspace (`devslack`) is a Slack Web API stand-in that also signs and delivers events,
clicks and slash commands to the bot exactly as Slack does, and serves a page that looks
like a Slack channel. It is the same fake the test suite uses.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import signal
import threading
import webbrowser
from pathlib import Path

from bot.policy import Policy, load_policy
from bot.settings import Settings
from devslack import Persona, Workspace
from handlers.runtime import Running, start

log = logging.getLogger(__name__)

DEMO_POLICY = Path(__file__).with_name("demo") / "warden.toml"
SUGGESTIONS = [
    "@warden restart checkout-api",
    "@warden flush sessions cache",
    "@warden scale search in prod to 6",
    "@warden announce lunch is here",
    "@warden declare incident sev2 checkout is slow",
    "@warden task rotate the staging keys",
    "@warden remind us every monday to rotate keys",
    "@warden create channel war-room",
    "@warden deploy checkout-api 1.4.2",
    "/warden status",
    "/pause deploy freeze",
]


DEMO_PERSONAS = [
    ("U0REQUESTER", "riley", "Riley (requester)"),
    ("U0APPROVER", "avery", "Avery (approver)"),
    ("U0ADMIN", "sam", "Sam (admin, approver)"),
]
DEMO_CHANNELS = {"C0GENERAL": "general", "C0OPS": "ops"}


def personas(policy: Policy | None = None) -> list[Persona]:
    """The page's "Acting as" people: the demo's, plus everyone a real policy names.

    With a real policy the demo approver and admin are dropped unless the policy names them
    (their labels would lie); every admin and approver it names becomes a persona, so one
    person can still try the four-eyes rule, /pause and the rest.
    """
    if policy is None:
        return [Persona(id=i, name=n, label=label) for i, n, label in DEMO_PERSONAS]
    admins = list(policy.access.admins)
    approvers = list(policy.access.approvers)
    for override in policy.tools.values():
        approvers.extend(override.approvers or [])
    people: list[Persona] = [Persona(*DEMO_PERSONAS[0])]
    for user in dict.fromkeys([*admins, *approvers]):
        if user == people[0].id:
            continue
        roles = [r for r, ids in (("admin", admins), ("approver", approvers)) if user in ids]
        demo = next((d for d in DEMO_PERSONAS if d[0] == user), None)
        name = demo[1] if demo else user.lower()
        people.append(
            Persona(
                id=user,
                name=name,
                label=f"{demo[1].title() if demo else user} ({', '.join(roles)})",
            )
        )
    return people


def channels(policy: Policy | None) -> dict[str, str]:
    """The workspace's channels: #general, #ops, and every channel a real policy names."""
    found = dict(DEMO_CHANNELS)
    if policy is None:
        return found
    if policy.access.admin_channel not in found:
        found[policy.access.admin_channel] = "warden-admin"
    for alias in policy.aliases.values():
        channel = alias.args.get("channel")
        if channel and re.fullmatch(r"[CG][A-Z0-9]{2,}", channel) and channel not in found:
            found[channel] = channel.lower()
    return found


def suggestions(policy: Policy) -> list[str]:
    """Requests to try with a real policy: its aliases, placeholders left for the user."""
    return [f"@warden {pattern}" for pattern in list(policy.aliases)[:4]] + [
        "/warden status",
        "/pause deploy freeze",
    ]


def start_dev(
    port: int, config: str | None, database_url: str | None = None, anthropic_key: str | None = None
) -> tuple[Workspace, Running]:
    """Start the workspace and the bot; return both (the caller stops them)."""
    config_path = (
        config
        or os.environ.get("WARDEN_CONFIG")
        or ("warden.toml" if Path("warden.toml").exists() else str(DEMO_POLICY))
    )
    policy = None if Path(config_path) == DEMO_POLICY else load_policy(config_path)
    secret = secrets.token_hex(16)
    token = "xoxb-dev-" + secrets.token_hex(8)
    ws = Workspace(
        signing_secret=secret,
        bot_url="",
        bot_token=token,
        team_id="T0DEV",
        bot_user_id="U0WARDEN",
        personas=personas(policy),
        channels=channels(policy),
        suggestions=SUGGESTIONS if policy is None else suggestions(policy),
        admin_channel=policy.access.admin_channel if policy else "C0OPS",
    )
    ws.start(port=port)
    env = {
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_API_URL": ws.api_url,
        "DATABASE_URL": database_url or os.environ.get("DATABASE_URL", "sqlite:///warden-dev.db"),
        "WARDEN_CONFIG": config_path,
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
    if not log.isEnabledFor(logging.DEBUG):  # keep the terminal to the URL and real problems
        for noisy in ("alembic", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        ws, running = start_dev(port, config)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"warden dev: port {port} is already in use; try --port {port + 1}", flush=True)
        return 1
    url = ws.url + "/"
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
        ws.stop()
    print("stopped.")
    return 0
