"""Assembling Warden: settings + policy → database, tools, planner, gate, workers, jobs.

`build` is the composition root used by `warden serve`, `warden dev` and the tests; nothing
else constructs these pieces, so there is one way the bot is wired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.chat import Chat
from bot.endpoints import endpoint_tool
from bot.errors import ConfigError
from bot.jobs import Jobs
from bot.lifecycle import Lifecycle
from bot.pii import Detector
from bot.planner import AliasPlanner, ChainPlanner, Planner, close_planner
from bot.plugins import PluginContext, load_tools
from bot.policy import Policy, ToolShape, load_policy
from bot.policy_types import Risk
from bot.privacy import Privacy
from bot.runbooks import runbook_tool
from bot.sealing import Sealer
from bot.settings import Settings, insecure_dev_data_key
from bot.tools import ToolRegistry
from bot.workers import Workers
from storage.db import Database
from storage.models import utcnow
from storage.repo import Store

log = logging.getLogger(__name__)

NO_KEY_NOTE = (
    "Free-form requests need Claude: set ANTHROPIC_API_KEY. "
    "Until then I only understand the commands above."
)


def build_registry(
    policy: Policy,
    store: Store | None = None,
    chat: Chat | None = None,
    data_key: bytes | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ToolRegistry:
    """Every plugin's tools (Warden's built-ins, lookups and memory tools among them: they
    register through the same entry points, bot/plugins.py) and one tool per runbook and per
    endpoint, checked against the policy."""
    privacy = Privacy(
        Detector(policy.redaction), Sealer(data_key or insecure_dev_data_key()), store
    )
    builtin = load_tools(
        PluginContext(policy=policy, store=store, chat=chat, lasting=privacy.lasting, clock=clock)
    )
    for kind, name in [
        *(("runbooks", n) for n in policy.runbooks),
        *(("endpoints", n) for n in policy.endpoints),
    ]:
        taken = next((t for t in builtin if t.name == name), None)
        if taken is not None:
            raise ConfigError(f"{kind}.{name}: the name is taken by a {taken.source} tool")
    registry = ToolRegistry(
        [
            *builtin,
            *(runbook_tool(name, rb) for name, rb in policy.runbooks.items()),
            *(endpoint_tool(name, ep) for name, ep in policy.endpoints.items()),
        ]
    )
    policy.check_tools(
        {
            t.name: ToolShape(
                risk=t.risk,
                always_low=t.risk is Risk.LOW and t.risk_from_args is None,
                fields=frozenset(t.args.model_fields),
            )
            for t in registry
        }
    )
    return registry


def build_planner(settings: Settings, policy: Policy, registry: ToolRegistry) -> Planner:
    aliases = AliasPlanner(policy, registry)
    if settings.anthropic_api_key is None:
        return ChainPlanner([aliases], fallback_note=NO_KEY_NOTE)
    from bot.claude import AnthropicPlanner

    claude = AnthropicPlanner(
        policy,
        registry,
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        model=settings.warden_model,
    )
    return ChainPlanner([aliases, claude])


def check(settings: Settings, policy_path: str | Path | None = None) -> tuple[Policy, ToolRegistry]:
    """Load and cross-check the policy (what `warden check` runs); raise ConfigError."""
    policy = load_policy(policy_path or settings.warden_config)
    return policy, build_registry(policy)


@dataclass
class Warden:
    """A running Warden: the lifecycle plus what it needs to stop cleanly."""

    settings: Settings
    policy: Policy
    registry: ToolRegistry
    db: Database
    store: Store
    lifecycle: Lifecycle
    workers: Workers
    jobs: Jobs

    def start(self) -> None:
        """Recover interrupted work and start the scheduled sweeps."""
        self.lifecycle.sweeps.recover()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.workers.shutdown(wait=True)
        self.lifecycle.stop()
        self.store.forget_instance(self.lifecycle.owner)
        close_planner(self.lifecycle.planner)
        self.db.dispose()


def build(
    settings: Settings,
    *,
    policy: Policy | None = None,
    chat: Chat | None = None,
    planner: Planner | None = None,
    upgrade: bool = True,
    **lifecycle_kwargs: Any,
) -> Warden:
    """Wire up Warden around a `Chat` (handlers/ builds the Slack one). Raises ConfigError
    (fail closed) on any configuration problem."""
    if policy is None:
        policy = load_policy(settings.warden_config)
    if chat is None:
        raise ConfigError("no chat connection given")
    db = Database(settings.database_url)
    if upgrade:
        db.upgrade()
    store = Store(db)
    registry = build_registry(
        policy, store, chat, settings.data_key(), lifecycle_kwargs.get("clock", utcnow)
    )
    workers = Workers(policy.workers.planners, policy.workers.executors)
    lifecycle = Lifecycle(
        policy=policy,
        registry=registry,
        store=store,
        chat=chat,
        planner=planner or build_planner(settings, policy, registry),
        workers=workers,
        data_key=settings.data_key(),
        **lifecycle_kwargs,
    )
    return Warden(
        settings=settings,
        policy=policy,
        registry=registry,
        db=db,
        store=store,
        lifecycle=lifecycle,
        workers=workers,
        jobs=Jobs(lifecycle),
    )
