"""Is the planner's cached prefix long enough to be cached at all? (`warden check`)

Every Messages API call starts with the same tool definitions and system prompt, marked with
`cache_control` (bot/claude.py), so later calls read them from the prompt cache. The API
caches nothing, silently, when the prefix up to a breakpoint is shorter than the model's
minimum: 1 024 tokens, 2 048 for Haiku models. A small policy (few runbooks, no
instructions) can fall short; then every request pays for the whole prefix.

With an API key the prefix is counted by the API's count-tokens endpoint (the prompt with the
prefix, less the same prompt without it). Without one — or when the count fails — it is
estimated from its characters, on the low side: the estimate leaves out the API's own
tool-use preamble and assumes four characters a token, so it warns rather than stays quiet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.policy import Policy
from bot.settings import Settings
from bot.tools import ToolRegistry

CACHE_MINIMUM = 1024
HAIKU_CACHE_MINIMUM = 2048
CHARS_PER_TOKEN = 4  # English prose is about 4, JSON schemas fewer: this under-counts
COUNT_TIMEOUT_S = 15.0
COUNT_RETRIES = 1  # `warden check` should answer quickly when the API cannot be reached
_PROBE = [{"role": "user", "content": "hi"}]


def cache_minimum(model: str) -> int:
    """The fewest tokens a cached prefix needs for `model` to cache it."""
    return HAIKU_CACHE_MINIMUM if "haiku" in model.lower() else CACHE_MINIMUM


@dataclass(kw_only=True, frozen=True)
class PrefixSize:
    model: str
    tokens: int
    minimum: int
    counted: bool  # by the API's count-tokens endpoint; else estimated from characters
    why_estimated: str = ""

    @property
    def too_short(self) -> bool:
        return self.tokens < self.minimum

    def describe(self) -> str:
        how = "counted by the API" if self.counted else f"estimate ({self.why_estimated})"
        return (
            f"cached prompt prefix: {self.tokens} tokens, {how}; "
            f"{self.model} caches from {self.minimum}"
        )

    def warning(self) -> str | None:
        """The warning `warden check` prints, or None when the prefix is long enough."""
        if not self.too_short:
            return None
        about = "" if self.counted else "about "
        return (
            f"warning: the cached prompt prefix (tool definitions + system prompt) is "
            f"{about}{self.tokens} tokens, below the {self.minimum} that {self.model} needs "
            "to cache it, so every request pays for the whole prefix. More runbooks, tool "
            "examples or agent.instructions make it longer."
        )


def prefix(policy: Policy, registry: ToolRegistry) -> tuple[list[dict[str, Any]], ...]:
    """The system prompt and tool definitions exactly as every planner call sends them."""
    from bot.claude import system_prompt, tool_specs

    return system_prompt(policy), tool_specs(registry)


def estimate_tokens(system: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    chars = sum(len(str(block.get("text", ""))) for block in system)
    chars += len(json.dumps(tools, separators=(",", ":"), ensure_ascii=False))
    return chars // CHARS_PER_TOKEN


def count_tokens(settings: Settings, policy: Policy, registry: ToolRegistry) -> int:
    """The prefix's tokens by the count-tokens endpoint. Raises what the SDK raises."""
    from bot.claude import AnthropicPlanner

    assert settings.anthropic_api_key is not None
    planner = AnthropicPlanner(
        policy,
        registry,
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        model=settings.warden_model,
    )
    client: Any = planner.client.with_options(max_retries=COUNT_RETRIES)
    try:
        common: dict[str, Any] = {
            "model": settings.warden_model,
            "messages": _PROBE,
            "timeout": COUNT_TIMEOUT_S,
        }
        whole = client.messages.count_tokens(
            system=planner.system, tools=planner.tools, tool_choice={"type": "any"}, **common
        )
        bare = client.messages.count_tokens(**common)
        return max(0, int(whole.input_tokens) - int(bare.input_tokens))
    finally:
        planner.close()


def measure(settings: Settings, policy: Policy, registry: ToolRegistry) -> PrefixSize:
    """The prefix's size for the configured model: counted when a key is set, else estimated."""
    model = settings.warden_model
    minimum = cache_minimum(model)
    why = "no ANTHROPIC_API_KEY"
    if settings.anthropic_api_key is not None:
        try:
            tokens = count_tokens(settings, policy, registry)
            return PrefixSize(model=model, tokens=tokens, minimum=minimum, counted=True)
        except Exception as exc:  # an unreachable API must not fail `warden check`
            why = f"the count-tokens call failed: {type(exc).__name__}"
    system, tools = prefix(policy, registry)
    return PrefixSize(
        model=model,
        tokens=estimate_tokens(system, tools),
        minimum=minimum,
        counted=False,
        why_estimated=why,
    )
